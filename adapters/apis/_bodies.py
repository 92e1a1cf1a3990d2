"""What the HTTP dialects read of an answer besides its stream.

A body read whole up to a cap (`read_at_most`: a whole JSON answer;
`error_body`: an error status's), a Content-Type's media type, where a redirect
leads without what could carry a key (`without_query`), and when a 429 says to
come back (`retry_at`). Only the first two do I/O.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import cast

import httpx

from bridge.transport import CompressedBody

# The longest wait a 429 is taken at its word for (a day).
MAX_RETRY_AFTER = 86400.0
# The most seconds an answer's Date may be off this host's clock and still be read as
# the API's: a host started before its clock was set may be minutes off.
DATE_TRUSTED = 900.0


async def read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed response's body, or None once it passes `limit` bytes (the rest
    is left unread: the connection is closed with the response)."""
    body = bytearray()
    # httpx hints aiter_bytes() as an AsyncIterator; it is an async generator.
    chunks = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
    async with aclosing(chunks):
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                return None
    return bytes(body)


async def error_body(response: httpx.Response, limit: int) -> bytes | None:
    """An error status's body as `read_at_most` reads it, or None where it came
    compressed (the transport refuses such a body unread: the status still says
    what went wrong)."""
    try:
        return await read_at_most(response, limit)
    except CompressedBody:
        return None


def media_type(content_type: str) -> str:
    """`text/event-stream` of `text/event-stream; charset=utf-8`."""
    return content_type.partition(";")[0].strip().lower()


def without_query(response: httpx.Response, location: str) -> str:
    """Where a redirect leads (a relative `location` read against the request's URL),
    without credentials, query or fragment (where a key might be)."""
    if not location:
        return ""
    try:
        where = response.request.url.join(location)
        return str(where.copy_with(userinfo=b"", query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError, RuntimeError):  # RuntimeError: no request
        return ""


def retry_at(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The epoch time a 429 says to come back, from X-RateLimit-Reset or Retry-After.

    X-RateLimit-Reset is an epoch time (a small number is taken as seconds
    from now); Retry-After is seconds or an HTTP date. With both, the later wins.
    A time named by the API's clock is read against the answer's Date, where it
    has one within `DATE_TRUSTED` of this host's clock: a host clock behind the
    API's does not add its lag to the wait (further off, the Date is more likely a
    proxy's wrong clock than the API's).
    """
    now = time.time() if now is None else now
    skew = now - sent if (sent := http_date(headers.get("date", ""))) is not None else 0.0
    if abs(skew) > DATE_TRUSTED:
        skew = 0.0
    found: list[float] = []
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            value = -1.0
        if value >= 1e9:
            found.append(value + skew)
        elif value >= 0:
            found.append(now + value)
    after = headers.get("retry-after")
    if after:
        try:
            seconds = float(after)
            if math.isfinite(seconds):
                found.append(now + max(0.0, seconds))
        except ValueError:
            if (when := http_date(after)) is not None:
                found.append(when + skew)
    # A value that is no time at all (inf, nan) or absurdly far is not taken at its word.
    found = [t for t in found if math.isfinite(t)]
    return min(max(found), now + MAX_RETRY_AFTER) if found else None


def http_date(value: str) -> float | None:
    """An HTTP date (any of its three forms) as epoch seconds, or None."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # HTTP dates are GMT; the asctime form carries no zone of its own.
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()
