"""The NDJSON widget stream API: `POST /v1/chat/stream` (alias `/chat`), one JSON event a line.

Body `{sessionId, message}`, key in `x-api-key` (or `x-widget-api-key`).
Events: `start` (conversationId), `token`, `done` (the full message, which
wins over the tokens), `error`. The bridge chooses the session id; it must
match `^[A-Za-z0-9._:-]{1,128}$`. The conversation id is handed back in
`Done.usage["conversation_id"]` so the store can keep it with the session.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Literal

from adapters.apis._http import Event, HTTPDialect, HTTPOptions, RequiredKey
from adapters.apis._wire import NDJSONParser
from bridge.errors import APIReportedError, BadRequest
from bridge.interfaces import ChatEvent, ChatRequest, Done

log = logging.getLogger("adapters.apis")

SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class NDJSONOptions(HTTPOptions):
    """`backends.<name>` with `kind: ndjson`."""

    kind: Literal["ndjson"] = "ndjson"
    api_key: RequiredKey
    auth_header: Literal["x-api-key", "x-widget-api-key"] = "x-api-key"


class NDJSONStream(HTTPDialect):
    """The NDJSON widget stream API (stateful; the bridge generates session ids)."""

    kind: ClassVar[str] = "ndjson"
    stateful: ClassVar[bool] = True
    streams: ClassVar[bool] = True
    client_sessions: ClassVar[bool] = True
    Options: ClassVar[type[NDJSONOptions]] = NDJSONOptions
    options: NDJSONOptions

    def auth_headers(self) -> dict[str, str]:
        return {self.options.auth_header: self._key} if self._key else {}

    def check_request(self, req: ChatRequest) -> None:
        super().check_request(req)
        if req.session is not None and not SESSION_ID.fullmatch(req.session):
            raise BadRequest(
                "The conversation's session id does not suit this assistant "
                "(it must be 1-128 letters, digits or . _ : -); start a new conversation.",
                backend=self.name,
            )

    async def _attempt(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        session = req.session or self.new_session()
        body = {"sessionId": session, "message": req.message}
        conversation: str | None = None

        def convert(event: Any) -> Event:
            nonlocal conversation
            if not isinstance(event, dict):
                return None
            kind = event.get("type")
            conversation = _str(event.get("conversationId")) or conversation
            if kind == "token":
                return _str(event.get("token")) or ""
            if kind == "done":
                usage: dict[str, Any] | None = (
                    {"conversation_id": conversation} if conversation else None
                )
                return Done(text=_str(event.get("message")), session=session, usage=usage)
            if kind == "error":
                raise APIReportedError(
                    self._scrub(_str(event.get("error")) or _str(event.get("message"))),
                    backend=self.name,
                )
            if not isinstance(kind, str):
                return None  # no event of this stream: a JSON answer, say
            if kind != "start":
                log.debug("ignoring a %r event", kind, extra={"backend": self.name})
            return ""

        parser = NDJSONParser(backend=self.name)
        batches = self._stream_batches(parser, "POST", self.options.url, json=body)
        async for item in self._events(batches, convert):
            yield item


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
