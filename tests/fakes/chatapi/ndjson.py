"""The fake chat API's NDJSON dialect: one JSON object a line."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from tests.fakes.chatapi.state import ChatAPIState
from tests.fakes.chatapi.wire import _line, _reason

_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class NDJSON(ChatAPIState):
    """The NDJSON wire: POST /ndjson/v1/chat/stream."""

    async def _ndjson(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        key = rec.headers.get("x-api-key") or rec.headers.get("x-widget-api-key")
        if key != self.api_key:
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = rec.json
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("sessionId"), str)
            or not _SESSION_ID.match(body["sessionId"])
            or not isinstance(body.get("message"), str)
            or not body["message"]
        ):
            return web.json_response({"error": "Invalid request payload"}, status=400)
        script = self._next()
        if script.status != 200 or script.body is not None:
            return self._scripted_error(script, {"error": _reason(script.status)})
        cid = script.conversation_id or uuid.uuid4().hex[:32]
        return await self._stream(
            request,
            script,
            "application/x-ndjson",
            lambda t: _line({"type": "token", "token": t}),
            head=_line({"type": "start", "conversationId": cid}),
            malformed=b'{"type": "token", "tok\n',
            error=lambda e: _line({"type": "error", "error": e}),
            tail=lambda: _line({"type": "done", "message": script.answer, "conversationId": cid}),
        )
