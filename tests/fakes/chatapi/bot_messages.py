"""The fake chat API's bot-messages dialect: FastAPI-style, SSE or whole."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.chatapi.state import ChatAPIState
from tests.fakes.chatapi.wire import _compact, _reason


class BotMessages(ChatAPIState):
    """The bot-messages wire: POST /bot-messages/v1/chat."""

    async def _bot_messages(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        auth = rec.headers.get("authorization")
        if auth is not None and auth != f"Bearer {self.api_key}":
            return web.json_response({"detail": "Could not validate credentials"}, status=401)
        body = rec.json
        problems = _bot_messages_problems(body)
        if problems:
            return web.json_response({"detail": problems}, status=422)
        script = self._next()
        if script.status != 200 or script.body is not None:
            return self._scripted_error(script, {"detail": _reason(script.status)})
        if not body["stream"]:
            return web.json_response({"content": script.answer})
        prefix = b"" if script.bare else b"data: "
        end = b"\n" if script.bare else b"\n\n"
        return await self._stream(
            request,
            script,
            "text/event-stream",
            lambda t: prefix + _compact({"content": t}) + end,
            head=prefix + b'{"content":""}' + end,
            malformed=prefix + b'{"content": "tr' + end,
            error=lambda e: prefix + _compact({"error": e}) + end,
            tail=lambda: prefix + b"[DONE]" + end,
        )


def _bot_messages_problems(body: Any) -> list[dict[str, Any]]:
    """FastAPI-style validation of a bot-messages request body."""

    def problem(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
        return {"loc": ["body", *loc], "msg": msg, "type": kind}

    if not isinstance(body, dict):
        return [problem([], "field required", "value_error.missing")]
    problems = []
    if "stream" not in body:
        problems.append(problem(["stream"], "field required", "value_error.missing"))
    elif not isinstance(body["stream"], bool):
        problems.append(
            problem(["stream"], "value could not be parsed to a boolean", "type_error.bool")
        )
    for one, other in (("bot_uid", "bot_slug"), ("prompt", "messages")):
        if not body.get(one) and not body.get(other):
            msg = f'Either "{one}" or "{other}" is required'
            problems.append(problem(["__root__"], msg, "value_error"))
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            problems.append(
                problem(
                    ["messages", i, "role"],
                    "value is not a valid enumeration member",
                    "type_error.enum",
                )
            )
    return problems


_ROLES = ("system", "user", "assistant")
