"""HTTP mode: Slack's requests to the events endpoint of the daemon's HTTP listener.

The endpoint faces the internet: a request is checked before it is read (its
headers), and as it is read (in time), and one that is not Slack's is refused
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


class EventsEndpoint:
    """The handler of Slack's requests (events, slash commands) in HTTP mode."""

    def __init__(self, signing_secret: str, app: AsyncApp, ready: Callable[[], bool]) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._app = app
        self._ready = ready  # whether questions are taken (started, not stopping)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._ready():
            # Not started (or shutting down): Slack retries later.
            return web.Response(status=503, text="not ready")
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (
            signature
            and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
            and abs(time.time() - int(timestamp)) <= SIGNED_WITHIN
        ):
            log.debug("slack: refused an unsigned or stale request to the events endpoint")
            return web.Response(status=401, text="invalid signature")
        try:
            async with asyncio.timeout(BODY_SECONDS):
                raw = await request.read()
        except TimeoutError:
            log.debug("slack: a request's body did not arrive within %g s", BODY_SECONDS)
            return web.Response(status=408, text="body too slow")
        except ConnectionError:
            log.debug("slack: a client left before its request's body arrived")
            return web.Response(status=400, text="body not received")
        try:
            body = raw.decode("utf-8")
            signed = self._verifier.is_valid(body, timestamp, signature)  # headers checked above
        except (ValueError, TypeError):  # not UTF-8; a signature that is not ASCII
            signed = False
        if not signed:
            log.debug("slack: refused an unsigned or stale request to the events endpoint")
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
