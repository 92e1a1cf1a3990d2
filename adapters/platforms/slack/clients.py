"""The Slack Web API clients the platform talks through, and the loggers they and bolt
write to: how each client retries (a 429 told to the bridge each time), its logger
(never below INFO: its debug lines hold messages' text), and its proxy."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms import never_below_info
from bridge.errors import PlatformError
from bridge.logs import relevel

from .app_token import AppTokenRefused
from .options import SlackOptions
from .refusal import status, told


class _QuietBolt(logging.Filter):
    """Drop bolt's start-up warning about SLACK_BOT_TOKEN: bolt reads that variable
    itself, but the bridge hands it a client already holding the configured token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


# slack-sdk's lines for a failed try to open Socket Mode again; the first is always
# followed by one of the others, for the same failure. (The last: the new connection
# Slack's `disconnect` message asks for, opened by slack-sdk's message listener.)
_WSS_URL = "Failed to retrieve WSS URL"
_RECONNECT_FAILED = (
    _WSS_URL,
    "Failed to check the current session",
    "Failed to receive or enqueue a message",
    "Failed to connect (error:",
    "Failed to run message listeners",
)


class _ReconnectLines(logging.Filter):
    """slack-sdk logs each failed try to open Socket Mode again at ERROR, often twice,
    with the raw error (a URL): every few seconds of an outage it rides out by itself.
    Each is one WARNING line here, with what failed (the kind only: a Socket Mode URL
    holds a ticket); a refused app token is told by `SocketURLs` alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if not text.startswith(_RECONNECT_FAILED):
            return True
        # slack-sdk logs these in its `except`, mostly with the error in the text
        # only: the exception being handled is that error.
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if isinstance(exc, AppTokenRefused):
            return False
        cause = _socket_failure(exc)
        if cause is None:
            return True  # not Slack out of reach: as it is
        if text.startswith(_WSS_URL):
            return False  # the line after it says the same
        record.msg = f"slack: Socket Mode could not reconnect: {cause}; trying again"
        record.args = ()
        relevel(record, logging.WARNING)
        return True


def _socket_failure(exc: BaseException | None) -> str | None:
    if isinstance(exc, PlatformError) and exc.__cause__ is not None:
        # apps.connections.open, asked through `guard` (`SocketURLs.reopen`): what
        # Slack answered is the cause.
        return _socket_failure(exc.__cause__) or str(exc)
    if isinstance(exc, SlackApiError):
        code = status(exc)
        if told(exc) is None:
            said = f" (HTTP {code})" if code else ""
            return f"Slack answered with a page that is not JSON{said}"
        return f"Slack answered HTTP {code}" if code >= 500 else None
    if isinstance(exc, aiohttp.ClientResponseError):  # the websocket's handshake
        return f"Slack answered HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "Slack did not answer in time"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"Slack could not be reached ({type(exc).__name__})"
    return None


BOLT_LOG = logging.getLogger("chat_bridge.slack.bolt")
BOLT_LOG.addFilter(_QuietBolt())
BOLT_LOG.addFilter(_ReconnectLines())
_WEB_LOG = logging.getLogger("chat_bridge.slack.web")


def _web_log() -> logging.Logger:
    """The Web API clients' logger, with a level of its own (slack-sdk checks its
    logger's own level, not the effective one, before it formats a debug line per
    API call), never below INFO, as bolt's: their debug lines hold messages' text."""
    never_below_info(_WEB_LOG.name, BOLT_LOG.name)
    return _WEB_LOG


class WebClients(NamedTuple):
    """One token's Web API clients, each retrying what is safe for its calls."""

    client: AsyncWebClient  # every call but those below
    once: AsyncWebClient  # new messages and appends: never sent again unanswered
    decor: AsyncWebClient  # "thinking" indicators
    bolt: AsyncWebClient  # bolt's own


def web_clients(
    opts: SlackOptions, proxy: str | None, on_rate_limited: Callable[[], None] | None
) -> WebClients:
    """The clients for `opts`' bot token and API URL, all through `proxy`."""
    token = opts.bot_token.get_secret_value()
    # slack-sdk does not retry 429 by default; honour Retry-After.
    rate_limits = _CountedRateLimitRetries(on_rate_limited, max_retry_count=opts.max_retries)
    retries = [AsyncConnectionErrorRetryHandler(max_retry_count=2), rate_limits]
    web_log = _web_log()
    timeout = math.ceil(opts.timeout)  # the session's timeout is the one that counts
    client = AsyncWebClient(
        token=token,
        base_url=opts.api_url,
        timeout=timeout,
        retry_handlers=retries,
        logger=web_log,
    )
    # New messages (posted, or streams started) and appends to a stream are not safe
    # to repeat: one whose connection dropped after Slack took it would show twice if
    # sent again (see `lost`). A 429 is, and a connection refused before sending.
    refused = AsyncConnectionErrorRetryHandler(
        max_retry_count=2, error_types=[aiohttp.ClientConnectorError]
    )
    once = AsyncWebClient(
        token=token,
        base_url=opts.api_url,
        timeout=timeout,
        retry_handlers=[refused, rate_limits],
        logger=web_log,
    )
    # "Thinking" indicators are decoration: never wait out a rate limit for them
    # in the call (their 429s are counted all the same). A reaction's removal is
    # tried again, after its Retry-After, by `reactions`.
    decor = AsyncWebClient(
        token=token,
        base_url=opts.api_url,
        timeout=timeout,
        retry_handlers=[_CountedRateLimitRetries(on_rate_limited, max_retry_count=0)],
        logger=web_log,
    )
    # bolt's own client, which it copies for each request with the token that
    # `authorize` gives: it asks Slack nothing itself.
    bolt = AsyncWebClient(base_url=opts.api_url, timeout=timeout, logger=web_log)
    clients = WebClients(client, once, decor, bolt)
    for each in clients:
        each.proxy = proxy
    return clients


class _CountedRateLimitRetries(AsyncRateLimitErrorRetryHandler):
    """Honours 429 + Retry-After, and tells the bridge each time Slack said 429."""

    def __init__(self, on_rate_limited: Callable[[], None] | None, **kw: Any) -> None:
        super().__init__(**kw)
        self._on_rate_limited = on_rate_limited

    async def can_retry_async(self, **kw: Any) -> bool:
        # Counted here, before the retry budget is looked at: a 429 that ends a
        # call (its retries spent, or none allowed) is one too.
        response = kw.get("response")
        if response is not None and response.status_code == 429 and self._on_rate_limited:
            self._on_rate_limited()
        return await super().can_retry_async(**kw)
