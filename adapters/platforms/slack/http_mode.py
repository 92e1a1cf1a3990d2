"""HTTP mode: Slack's requests to the events endpoint of the daemon's HTTP listener.

The endpoint faces the internet: a request is checked before it is read (its
headers), and as it is read (in time and size), and one that is not Slack's is refused
in a word, not a traceback. Only then does bolt see it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger("chat_bridge.slack")

# HTTP mode: a request's timestamp must be this close to now (Slack's own rule,
# which the signature check applies too), and its body arrive within this time.
SIGNED_WITHIN = 300
BODY_SECONDS = 10.0
# A body is read before its signature can be checked: by anyone's request with a
# fresh timestamp. Slack's longest, a 40,000-character message, carries its text
# twice (text and blocks) at up to 12 bytes a character escaped: under 1 MiB.
MAX_BODY = 1024 * 1024
# Slack's events are a few KB: a body up to SMALL_BODY is read however many arrive
# (the listener's 512 connections hold 32 MiB of them at most). Larger ones read at
# once hold LARGE_BODIES in all at most; one past it is answered 503 at once (Slack
# sends it again), so a crowd of large bodies cannot make the daemon hold 1 MiB a
# connection.
SMALL_BODY = 64 * 1024
LARGE_BODIES = 16 * 1024 * 1024
# A refused signed request is warned of at most this often, with a count of the rest.
WARN_EVERY = 60.0


def _kind(body: str) -> str | None:
    """The `type` of a JSON request body, or None."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload.get("type") if isinstance(payload, dict) else None


def _bolt_request(
    body: str, content_type: str, query: str, headers: dict[str, str | Sequence[str]]
) -> AsyncBoltRequest:
    """Bolt's request for a signed body.

    Bolt takes any form body in which the word "payload" appears, anywhere, for an
    interactivity form and finds no fields in it: a slash command typed in #payload-api,
    by a user named payloadops, or about "the payload", went unanswered. A form is
    parsed here instead, and bolt told its fields; the raw body stays as it was signed.
    """
    request = AsyncBoltRequest(body=body, query=query, headers=headers)
    if content_type == "application/json" or body.startswith("{"):
        return request  # JSON: bolt reads it as such
    fields: dict[str, Any] = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" in fields:
        return request  # an interactivity form: bolt reads its payload field
    request.body = fields
    request.context = build_async_context(AsyncBoltContext(), fields)
    return request


class _Refusals:
    """Warns of requests refused for their signature or timestamp, at most once in
    `WARN_EVERY` seconds and with a count of those refused since: a wrong secret, a
    proxy that changes bodies or a clock that is off refuses every request Slack sends,
    and said once a minute that is found without flooding the log."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._unsaid = 0  # refused since the last warning, not warned of

    def refused(self, cause: str) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < WARN_EVERY:
            self._unsaid += 1
            log.debug("slack: refused a request to the events endpoint: %s", cause)
            return
        since = f"; {self._unsaid} more refused since the last such warning" if self._unsaid else ""
        log.warning("slack: refused a request to the events endpoint: %s%s", cause, since)
        self._last, self._unsaid = now, 0


class EventsEndpoint:
    """The handler of Slack's requests (events, slash commands) in HTTP mode."""

    def __init__(self, signing_secret: str, app: AsyncApp, ready: Callable[[], bool]) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._app = app
        self._ready = ready  # whether questions are taken (started, not stopping)
        self._refusals = _Refusals()
        self._large = 0  # bytes held by the large bodies being read (see LARGE_BODIES)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._ready():
            # Not started (or shutting down): Slack retries later.
            return web.Response(status=503, text="not ready")
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (signature and timestamp):
            # Not even claiming to be Slack's: the internet's noise, not worth a warning.
            log.debug("slack: refused a request without Slack's headers to the events endpoint")
            return web.Response(status=401, text="invalid signature")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            self._refusals.refused("its timestamp is not a number of seconds")
            return web.Response(status=401, text="invalid signature")
        off = int(time.time()) - int(timestamp)
        if abs(off) > SIGNED_WITHIN:
            self._refusals.refused(
                f"timestamp {abs(off)} s off this machine's clock "
                "(clock skew, or a replayed request)"
            )
            return web.Response(status=401, text="invalid signature")
        raw = await self._read(request)
        if isinstance(raw, web.Response):
            return raw
        try:
            body = raw.decode("utf-8")
            signed = self._verifier.is_valid(body, timestamp, signature)  # headers checked above
        except (ValueError, TypeError):  # not UTF-8; a signature that is not ASCII
            signed = False
        if not signed:
            self._refusals.refused(
                "signature does not match the body "
                "(a wrong slack.signing_secret, or a proxy that changes the body)"
            )
            return web.Response(status=401, text="invalid signature")
        if not self._ready():
            # The stop began while the body arrived: acked, the event would be lost.
            return web.Response(status=503, text="not ready")
        if '"app_rate_limited"' in body and _kind(body) == "app_rate_limited":
            # Slack's notice that it is dropping this app's events (more than 30,000
            # in an hour for a workspace): acknowledged, and said plainly.
            log.warning(
                "slack: Slack is dropping this app's events for now (app_rate_limited): "
                "questions asked meanwhile are not delivered"
            )
            return web.Response(status=200)
        try:
            bolt_request = _bolt_request(
                body, request.content_type, request.query_string, {**request.headers}
            )
        except (ValueError, AttributeError, TypeError):
            log.debug("slack: refused a signed request whose body could not be read")
            return web.Response(status=400, text="malformed body")
        bolt_response = await self._app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def _read(self, request: web.Request) -> bytes | web.Response:
        """The request's body, or the answer refusing it: too large, one large body
        too many, too slow, cut short, or not what its encoding says."""
        declared = request.content_length or 0
        if declared > MAX_BODY:
            self._refusals.refused(f"its body ({declared} bytes) is over {MAX_BODY} bytes")
            return web.Response(status=413, text="body too large")
        body = bytearray()
        held = 0  # of LARGE_BODIES, by this body
        try:
            async with asyncio.timeout(BODY_SECONDS):
                # Counted as it grows too: chunked or compressed, it has no known size.
                while (size := max(len(body), declared)) <= MAX_BODY:
                    if size > max(SMALL_BODY, held):
                        if self._large - held + size > LARGE_BODIES:
                            self._refusals.refused(
                                f"large bodies arriving at once hold {LARGE_BODIES} bytes, "
                                "the most read before a signature is checked; Slack sends "
                                "its own again"
                            )
                            return web.Response(status=503, text="busy")
                        self._large += size - held
                        held = size
                    # Not kept in a name of its own: a body stalled after a large piece
                    # would be held twice.
                    read = len(body)
                    body += await request.content.readany()
                    if len(body) == read:  # the end: readany() is empty only there
                        return bytes(body)
        except TimeoutError:
            log.debug("slack: a request's body did not arrive within %g s", BODY_SECONDS)
            return web.Response(status=408, text="body too slow")
        except (ConnectionError, web.RequestPayloadError) as exc:
            # The request's stream keeps the exception it raised, and its traceback this
            # frame (the request, the body read so far): a cycle, which kept every body cut
            # short until the collector's next full pass, hundreds of MiB in a flood of
            # connections closed mid-body (by their clients, or to make room).
            exc.__traceback__ = None
            if isinstance(exc, ConnectionError):
                log.debug("slack: a client left before its request's body arrived")
                return web.Response(status=400, text="body not received")
            # Not what its chunking or Content-Encoding says.
            log.debug("slack: refused a request whose body could not be decoded")
            return web.Response(status=400, text="malformed body")
        finally:
            self._large -= held
        self._refusals.refused(f"its body is over {MAX_BODY} bytes")
        return web.Response(status=413, text="body too large")
