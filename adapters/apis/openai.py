"""OpenAI-compatible chat completions: `POST {url}/chat/completions` with `stream: true`.

Serves OpenAI and the servers that copy its API (Ollama, vLLM, LiteLLM,
OpenRouter, ...). Stateless: the bridge sends the history. Streamed chunks
carry `choices[0].delta.content`; the stream ends with `data: [DONE]`. Plain
httpx, no client library. The sources a server cites (Perplexity's
`citations`, the `url_citation` annotations of OpenAI's search models and
OpenRouter's web search) are read by `_Cited`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Literal

from pydantic import Field

from adapters.apis._http import JSON_BODY_BYTES, Event, answer_too_large
from adapters.apis._stateless import StatelessDialect, StatelessOptions, chat_messages, end_user
from adapters.apis._urls import under
from adapters.apis._wire import SSEEvent, SSEParser, json_or_none
from bridge.errors import APIReportedError, CutOff, ProtocolError
from bridge.interfaces import ChatEvent, ChatRequest, Done, Source, Sources, Token

log = logging.getLogger("adapters.apis")

_PATH = "/chat/completions"


# finish_reason values that end an answer before its end.
_CUT = {
    "length": "The answer was cut short: it reached the assistant's length limit.",
    "content_filter": "The answer was stopped by the assistant's content filter.",
    # vLLM's own: a request aborted, an engine error, a repetition detected.
    "abort": "The answer was cut short: the assistant stopped it before its end.",
    "error": "The answer was cut short by an error on the assistant's side.",
    "repetition": "The answer was cut short: the assistant stopped it for repeating itself.",
}
_WHOLE = "whole answer"  # the SSEEvent type of a JSON body given instead of a stream


class OpenAIOptions(StatelessOptions):
    """`backends.<name>` with `kind: openai`. `url` is the API base (…/v1)."""

    kind: Literal["openai"] = "openai"
    url: str = "https://api.openai.com/v1"
    model: str = Field(min_length=1)
    stream: bool = True
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    user_id: Literal["hashed", "raw", "none"] = "none"


class OpenAICompatible(StatelessDialect):
    """An OpenAI-compatible chat-completions server (stateless)."""

    kind: ClassVar[str] = "openai"
    streams: ClassVar[bool] = True
    Options: ClassVar[type[OpenAIOptions]] = OpenAIOptions
    options: OpenAIOptions

    @property
    def endpoint(self) -> str:
        # The url may name the endpoint itself; its query (Azure's api-version) is kept.
        url = self.options.url
        given = url.partition("#")[0].partition("?")[0].rstrip("/").endswith(_PATH)
        return under(url, "" if given else _PATH)

    def _check_finish(self, reason: str | None) -> None:
        """An answer that stopped short of its end is cut off, not complete."""
        if reason in _CUT:
            raise CutOff(_CUT[reason], backend=self.name)

    async def _attempt(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        opts = self.options
        body: dict[str, Any] = {
            "model": opts.model,
            "messages": chat_messages(req, opts, self.sent_chars(req)),
            "stream": opts.stream,
        }
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        if opts.max_tokens is not None:
            body["max_tokens"] = opts.max_tokens
        user = end_user(req, opts)
        if user:
            body["user"] = user
        cited = _Cited()
        if not opts.stream:
            answer = await self._request_json("POST", self.endpoint, json=body)
            text = _message_text(answer)
            if text is None:
                raise ProtocolError(
                    "The assistant's answer could not be read (no choices in it).",
                    backend=self.name,
                )
            yield Token(text)
            self._check_finish(_finish_reason(answer))
            cited.read(answer, (_first_choice(answer) or {}).get("message"))
            if sources := cited.sources():
                yield Sources(sources)
            yield Done(text=text, usage=_usage(answer))
            return

        finished = False
        reason: str | None = None
        usage: dict[str, Any] | None = None

        def convert(sse: SSEEvent) -> Event:
            nonlocal finished, usage, reason
            if sse.event == "error":  # `event: error`, or llama.cpp's `error:` line
                said = sse.data.strip()
                chunk = json_or_none(said, self.name) if said.startswith("{") else None
                raise APIReportedError(
                    self._scrub(self.error_text(chunk) or said or None), backend=self.name
                )
            if sse.data.strip() == "[DONE]":
                self._check_finish(reason)
                return Done(usage=usage)
            chunk = json_or_none(sse.data, self.name)
            if not isinstance(chunk, dict):
                return None
            if chunk.get("error"):
                raise APIReportedError(self._scrub(self.error_text(chunk)), backend=self.name)
            if sse.event == _WHOLE:
                text = _message_text(chunk)
                if text is None:
                    raise ProtocolError(
                        "The assistant's answer could not be read (no choices in it).",
                        backend=self.name,
                    )
                finished, reason, usage = True, _finish_reason(chunk), _usage(chunk)
                cited.read(chunk, (_first_choice(chunk) or {}).get("message"))
                return text
            usage = _usage(chunk) or usage
            cited.read(chunk, None)
            texts: list[str] = []
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                cited.read(None, delta)
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    texts.append(text)
                if choice.get("finish_reason"):
                    finished = True
                    reason = str(choice["finish_reason"])
            return "".join(texts)  # "" for a chunk without text (the role's, the usage's)

        def at_end() -> Done | None:
            # Some compatible servers close the stream without `[DONE]`;
            # a finish_reason already said the answer is complete.
            self._check_finish(reason)
            return Done(usage=usage) if finished else None

        parser = _StreamOrWhole(self.name)
        batches = self._stream_batches(parser, "POST", self.endpoint, json=body)
        async for event in self._events(batches, convert, at_end):
            if isinstance(event, Done) and (sources := cited.sources()):
                yield Sources(sources)  # once, whole: the list the [n] markers number
            yield event


class _Cited:
    """The sources an answer cites, in the API's order.

    Perplexity's `citations` (top level: a list of URLs) come first: its text
    marks them `[1]`, `[2]`, ... in that list's order, and every chunk repeats
    the whole list, so the last one sent is kept. Its `search_results` give
    them titles. Then the `url_citation` annotations (OpenAI's search models,
    OpenRouter's web search), on a streamed delta or a whole answer's message,
    each URL once however many chunks repeat it.
    """

    __slots__ = ("_listed", "_titles", "_annotated")

    def __init__(self) -> None:
        self._listed: list[str] = []
        self._titles: dict[str, str] = {}
        self._annotated: dict[str, str] = {}

    def read(self, top: Any, message: Any) -> None:
        """From a chunk or whole answer (`top`) and a delta or message (`message`)."""
        if isinstance(top, dict):
            listed = top.get("citations")
            if isinstance(listed, list) and listed:
                self._listed = [url for url in listed if isinstance(url, str)]
            for result in top.get("search_results") or ():
                if isinstance(result, dict) and _text(result.get("url")):
                    self._titles.setdefault(result["url"], _text(result.get("title")))
        annotations = message.get("annotations") if isinstance(message, dict) else None
        for note in annotations if isinstance(annotations, list) else ():
            cite = note.get("url_citation") if isinstance(note, dict) else None
            if isinstance(cite, dict) and note.get("type") == "url_citation":
                url = _text(cite.get("url"))
                if url and url not in self._annotated:
                    self._annotated[url] = _text(cite.get("title"))

    def sources(self) -> tuple[Source, ...]:
        listed = [Source(url, self._titles.get(url, "")) for url in self._listed]
        return (*listed, *(Source(url, title) for url, title in self._annotated.items()))


class _StreamOrWhole:
    """The SSE stream asked for, or the whole answer as one JSON body (from a
    server that does not stream), as one `_WHOLE` event at the end."""

    __slots__ = ("_sse", "_whole", "_began", "backend")

    def __init__(self, backend: str) -> None:
        self._sse = SSEParser(backend=backend)
        self._whole: bytearray | None = None
        self._began = False
        self.backend = backend

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._whole is not None:
            self._whole += chunk
            if len(self._whole) > JSON_BODY_BYTES:  # as one to `stream: false`
                raise answer_too_large(self.backend)
            return []
        if not self._began:
            head = chunk.lstrip()
            if not head:
                return []
            self._began = True
            if head[:1] == b"{":  # no event stream starts so
                self._whole = bytearray()
                return self.feed(head)
        return self._sse.feed(chunk)

    def close(self) -> list[SSEEvent]:
        if self._whole is not None:
            return [SSEEvent(self._whole.decode("utf-8", "replace"), _WHOLE)]
        return self._sse.close()


def _first_choice(answer: Any) -> dict[str, Any] | None:
    """`choices[0]` of a non-streamed answer, if it has one."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _finish_reason(answer: Any) -> str | None:
    reason = (_first_choice(answer) or {}).get("finish_reason")
    return reason if isinstance(reason, str) else None


def _message_text(answer: Any) -> str | None:
    choice = _first_choice(answer)
    if choice is None:
        return None
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    return text if isinstance(text, str) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _usage(data: Any) -> dict[str, Any] | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    return dict(usage) if isinstance(usage, dict) else None
