"""The bot-messages API: `POST /v1/chat` with `{bot_uid | bot_slug, messages, stream, user_id}`.

Stateless: the bridge sends the history as `messages`. The stream is lines of
`{"content": ...}` then `[DONE]`, each with or without an SSE `data: ` prefix;
the non-streamed answer is one `{"content": ...}`. Validation errors come back
as 422 with FastAPI's `detail[]`, turned into a message naming the field.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from adapters.apis._http import Event
from adapters.apis._stateless import StatelessDialect, StatelessOptions, chat_messages, end_user
from adapters.apis._wire import DataLineParser, json_or_none
from bridge.errors import APIReportedError, ProtocolError
from bridge.interfaces import ChatEvent, ChatRequest, Done, Token

log = logging.getLogger("adapters.apis")


class BotMessagesOptions(StatelessOptions):
    """`backends.<name>` with `kind: bot-messages`; exactly one of bot_uid / bot_slug."""

    kind: Literal["bot-messages"] = "bot-messages"
    bot_uid: str | None = None
    bot_slug: str | None = None
    stream: bool = True

    @model_validator(mode="after")
    def _one_bot(self) -> BotMessagesOptions:
        if bool(self.bot_uid) == bool(self.bot_slug):
            which = "both are set" if self.bot_uid else "neither is set"
            raise ValueError(f"set exactly one of bot_uid or bot_slug ({which})")
        return self


class BotMessages(StatelessDialect):
    """The bot-messages chat API (stateless; the bridge keeps the history)."""

    kind: ClassVar[str] = "bot-messages"
    streams: ClassVar[bool] = True
    Options: ClassVar[type[BotMessagesOptions]] = BotMessagesOptions
    options: BotMessagesOptions
    # Its 422 is a request that fails validation (a field missing or mistyped): less
    # history would not mend it, and the asker would be told to start over.
    refused_as_too_large: ClassVar[frozenset[int]] = frozenset({400, 413})

    def error_text(self, body: Any) -> str | None:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list):
            parts = [_describe(item) for item in detail if isinstance(item, dict)]
            return "; ".join(p for p in parts if p) or None
        return super().error_text(body)

    async def _attempt(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        opts = self.options
        # A ChatMessage has only a role and content: an asker's name goes in the text.
        messages = chat_messages(req, opts, self.sent_chars(req), names="prefix")
        body: dict[str, Any] = {"stream": opts.stream, "messages": messages}
        if opts.bot_uid:
            body["bot_uid"] = opts.bot_uid
        else:
            body["bot_slug"] = opts.bot_slug
        user = end_user(req, opts)
        if user:
            body["user_id"] = user
        if not opts.stream:
            answer = await self._request_json("POST", opts.url, json=body)
            if not isinstance(answer, dict) or not isinstance(answer.get("content"), str):
                raise ProtocolError(
                    "The assistant's answer could not be read (no content in it).",
                    backend=self.name,
                )
            yield Token(answer["content"])
            yield Done(text=answer["content"])
            return

        def convert(payload: str) -> Event:
            if payload == "[DONE]":
                return Done()
            chunk = json_or_none(payload, self.name)
            if not isinstance(chunk, dict):
                return None
            text = chunk.get("content")
            if isinstance(text, str):
                return text
            if "error" in chunk or "detail" in chunk:
                raise APIReportedError(self._scrub(self.error_text(chunk)), backend=self.name)
            return None

        parser = DataLineParser(backend=self.name)
        batches = self._stream_batches(parser, "POST", opts.url, json=body)
        async for event in self._events(batches, convert):
            yield event


def _describe(item: dict[str, Any]) -> str:
    """`{"loc": ["body", "stream"], "msg": "field required"}` -> "stream: field required"."""
    loc = item.get("loc")
    parts = [str(p) for p in loc if p not in ("body", "__root__")] if isinstance(loc, list) else []
    msg = str(item.get("msg") or "invalid")
    return f"{'.'.join(parts)}: {msg}" if parts else msg
