"""The fake chat API's ChatMount dialect: SSE answers, with rate-limit headers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from tests.fakes.chatapi.state import ChatAPIState
from tests.fakes.chatapi.wire import _reason, _sse

CHATMOUNT_MAX = 2000


RATE_LIMIT = 60


class ChatMount(ChatAPIState):
    """ChatMount's wire: POST /v1/chat."""

    def _rate_headers(self, remaining: int | None = None, reset: float | None = None) -> dict:
        now = time.time()
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(self._remaining if remaining is None else remaining),
            "X-RateLimit-Reset": str(int(reset if reset is not None else now - now % 60 + 60)),
        }

    async def _chatmount(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        if not self._bearer_ok(rec):
            return web.json_response({"error": "Invalid or missing API key"}, status=401)
        body = rec.json
        if not isinstance(body, dict):
            return web.json_response({"error": "Invalid JSON body"}, status=400)
        message = body.get("message")
        if not isinstance(message, str) or not 1 <= len(message) <= CHATMOUNT_MAX:
            return web.json_response(
                {"error": "Message must be between 1 and 2000 characters"},
                status=400,
                headers=self._rate_headers(),
            )
        script = self._next(message)
        self._remaining = max(0, self._remaining - 1)
        if script.status == 429:
            reset = time.time() + (script.reset_in if script.reset_in is not None else 30)
            return self._scripted_error(
                script, {"error": "Rate limit exceeded"}, self._rate_headers(0, reset)
            )
        if script.status != 200:
            return self._scripted_error(
                script, {"error": _reason(script.status)}, self._rate_headers()
            )
        usage = script.usage or {"credits_used": 1, "credits_remaining": 99}
        sources = [{"url": u, "title": t} for u, t in script.sources]
        if script.body is not None:
            return self._scripted_error(script, None, self._rate_headers())
        if not body.get("stream"):
            if script.first_delay:  # the whole answer, after it
                await asyncio.sleep(script.first_delay)
            answer: dict[str, Any] = {"message": script.answer, "usage": usage}
            if body.get("include_sources"):
                answer["sources"] = sources
            return web.json_response(answer, headers=self._rate_headers())

        def sse(event: Any) -> bytes:
            return _sse(event)[:-1] if script.one_newline else _sse(event)

        def done() -> bytes:
            out = b""
            if sources and body.get("include_sources", True):
                out += sse({"type": "sources", "sources": sources})
            event: dict[str, Any] = {"type": "done", "usage": usage}
            if script.final is not None:
                event["message"] = script.final
            if script.session_id is not None:
                event["session_id"] = script.session_id
            return out + sse(event)

        return await self._stream(
            request,
            script,
            "text/event-stream",
            lambda t: sse({"type": "token", "content": t}),
            malformed=b'data: {"type": "token", "content": \n\n',
            error=lambda e: sse({"type": "error", "error": e}),
            tail=done,
            headers=self._rate_headers(),
        )
