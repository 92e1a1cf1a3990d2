"""ChatMount: `POST /v1/chat`, Bearer key, SSE token/sources/done events or one JSON answer.

The bridge chooses the session id (`cb-<hex>`) and sends it as `session_id`;
ChatMount keeps the conversation. Questions are 1..2000 characters. Every
response carries X-RateLimit-Limit/Remaining/Reset, kept in `last_rate_limit`
for health metrics; the credits left arrive in the answer's `usage`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any, ClassVar, Literal

import httpx

from adapters.apis._http import Event, HTTPDialect, HTTPOptions, RequiredKey
from adapters.apis._wire import DataLineParser, json_or_none
from bridge.errors import APIReportedError, ProtocolError
from bridge.interfaces import (
    ChatEvent,
    ChatRequest,
    DialectOptions,
    Done,
    Source,
    Sources,
    Token,
)

log = logging.getLogger("adapters.apis")


class ChatMountOptions(HTTPOptions):
    """`backends.<name>` with `kind: chatmount`."""

    kind: Literal["chatmount"] = "chatmount"
    url: str = "https://services.chatmount.co/v1/chat"
    api_key: RequiredKey
    include_sources: bool = True
    stream: bool = True


class ChatMount(HTTPDialect):
    """The ChatMount REST API (stateful; the bridge generates session ids)."""

    kind: ClassVar[str] = "chatmount"
    stateful: ClassVar[bool] = True
    streams: ClassVar[bool] = True
    client_sessions: ClassVar[bool] = True
    max_message_chars: ClassVar[int | None] = 2000
    Options: ClassVar[type[ChatMountOptions]] = ChatMountOptions
    options: ChatMountOptions

    def __init__(self, name: str, options: DialectOptions, http: httpx.AsyncClient) -> None:
        super().__init__(name, options, http)
        #: The latest X-RateLimit-* values: {"limit", "remaining", "reset"} (ints).
        self.last_rate_limit: dict[str, int] = {}
        #: The latest `usage` an answer reported (credits_used, credits_remaining).
        self.last_usage: dict[str, Any] = {}

    def health(self) -> Mapping[str, float]:
        out: dict[str, float] = {}
        if "remaining" in self.last_rate_limit:
            out["ratelimit_remaining"] = float(self.last_rate_limit["remaining"])
        credits = self.last_usage.get("credits_remaining")
        if isinstance(credits, int | float) and not isinstance(credits, bool):
            out["credits_remaining"] = float(credits)
        return out

    def on_response(self, response: httpx.Response) -> None:
        for key in ("limit", "remaining", "reset"):
            value = response.headers.get(f"x-ratelimit-{key}")
            if value is not None:
                try:
                    self.last_rate_limit[key] = int(float(value))
                except ValueError:
                    pass

    async def _attempt(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        opts = self.options
        body: dict[str, Any] = {
            "message": req.message,
            "stream": opts.stream,
            "include_sources": opts.include_sources,
        }
        if req.session:
            body["session_id"] = req.session
        if not opts.stream:
            answer = await self._request_json("POST", opts.url, json=body)
            for event in self._answer(answer, req.session):
                yield event
            return

        def convert(line: str) -> Event:
            data = json_or_none(line, self.name)
            if not isinstance(data, dict):
                return None
            kind = data.get("type")
            if kind == "token":
                text = data.get("content")
                return text if isinstance(text, str) else ""
            if kind == "sources":
                sources = _sources(data.get("sources"))
                return Sources(sources) if sources else ""
            if kind == "done":
                return self._done(data, req.session)
            if kind == "error":
                message = data.get("error") or data.get("message")
                raise APIReportedError(
                    self._scrub(message if isinstance(message, str) else None),
                    backend=self.name,
                )
            if not isinstance(kind, str):
                return None  # no event of this stream: a JSON answer, say
            log.debug("ignoring a %r event", kind, extra={"backend": self.name})
            return ""

        # One event per `data:` line, as ChatMount's own clients read it: the blank
        # line SSE ends an event with is not always sent between them.
        parser = DataLineParser(backend=self.name)
        batches = self._stream_batches(parser, "POST", opts.url, json=body)
        async for event in self._events(batches, convert):
            yield event

    def _answer(self, answer: Any, session: str | None) -> list[ChatEvent]:
        if not isinstance(answer, dict) or not isinstance(answer.get("message"), str):
            raise ProtocolError(
                "The assistant's answer could not be read (no message in it).",
                backend=self.name,
            )
        events: list[ChatEvent] = [Token(answer["message"])]
        sources = _sources(answer.get("sources"))
        if sources:
            events.append(Sources(sources))
        events.append(self._done(answer, session))
        return events

    def _done(self, data: dict[str, Any], session: str | None) -> Done:
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.last_usage = dict(usage)
        message = data.get("message")
        new_session = data.get("session_id")
        return Done(
            text=message if isinstance(message, str) else None,
            session=new_session if isinstance(new_session, str) and new_session else session,
            usage=dict(usage) if isinstance(usage, dict) else None,
        )


def _sources(items: Any) -> tuple[Source, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        Source(url=item["url"], title=str(item.get("title") or ""))
        for item in items
        if isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]
    )
