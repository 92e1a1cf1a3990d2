"""A fake of every chat API the bridge speaks, on one loopback port.

Endpoints (each speaks its API's wire format and enforces its limits):

    chatmount     POST /v1/chat                      (also /chatmount/v1/chat)
    ndjson        POST /ndjson/v1/chat/stream        (alias /ndjson/chat)
    chaturdata    POST /chaturdata/api/newMessage, GET /chaturdata/api/getThread
    bot-messages  POST /bot-messages/v1/chat         (alias /bot-messages/chat)
    openai        POST /openai/v1/chat/completions

Each answering request takes the next script from `enqueue(...)` (or a short
canned answer when none is queued); chaturdata's getThread polls follow the
script of the thread's latest run. Every request is recorded in `requests`;
`wait_requests(n)` and `wait_disconnects(n)` wait for them with a deadline.
With `compress` set, every answer's body is gzip-compressed (Content-Encoding:
gzip), whatever the request's Accept-Encoding asked for, as a misconfigured
server or proxy sends it.

    from tests.fakes.chatapi import fake_chat_api  # noqa: F401

    async def test_x(fake_chat_api):
        fake_chat_api.enqueue(tokens=["Hi", "!"], sources=[("https://a", "A")])
        url = fake_chat_api.endpoint("chatmount")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web

DEFAULT_TOKENS = ("Hello", " from", " the", " fake", ".")
CHATMOUNT_MAX = 2000
RATE_LIMIT = 60
UNENDED_BYTES = 2 << 20
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

ENDPOINTS = {
    "chatmount": "/v1/chat",
    "ndjson": "/ndjson/v1/chat/stream",
    "chaturdata": "/chaturdata/api",
    "bot-messages": "/bot-messages/v1/chat",
    "openai": "/openai/v1",
}


@dataclass
class Script:
    """One scripted answer. Counters (`*_after`) count tokens already sent.

    `cut_after` ends the body cleanly without the terminal event; `drop_after`
    closes the connection mid-body; `hang_after` stops sending until the client
    hangs up; `malformed_after` inserts one unparsable line; `error_after`
    sends the API's error event; `unended_after` sends 2 MiB of token lines
    with no blank line between them (SSE: one event that never ends) and ends
    the body. `status`/`body`/`headers` answer with an error (429:
    `retry_after` sets Retry-After, `reset_in` X-RateLimit-Reset).
    chaturdata: the run completes on poll number `polls` with `run_status`;
    `hang_after`/`malformed_after` count polls instead of tokens (each hits one
    poll: the next answers), the poll
    after `limited_after` polls is answered 429 (Retry-After: `retry_after`),
    and the one after `failed_after` polls 502 (`error` its message; `failed_polls`
    of them in a row).
    """

    tokens: list[str] | None = None
    sources: list[tuple[str, str]] = field(default_factory=list)
    final: str | None = None
    first_delay: float = 0.0  # before the first token (a stream's opening event comes at once)
    gate: asyncio.Event | None = None  # set by the test: the first token waits for it too
    token_delay: float = 0.0
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    malformed_after: int | None = None
    hang_after: int | None = None
    drop_after: int | None = None
    error_after: int | None = None
    unended_after: int | None = None
    error: str = "Internal server error"
    usage: dict[str, Any] | None = None
    session_id: str | None = None
    retry_after: float | None = None
    reset_in: float | None = None
    conversation_id: str | None = None
    bare: bool = False
    polls: int = 1
    limited_after: int | None = None
    failed_after: int | None = None
    failed_polls: int = 1  # polls answered 502 in a row from `failed_after` on
    run_status: str = "completed"
    file_citations: list[tuple[str, str]] = field(default_factory=list)
    finish_reason: str = "stop"  # openai: "length" (max_tokens reached), "content_filter"
    # openai: how `error_after` says its error, as servers do: "data" (OpenAI's
    # `data: {"error": ...}`), "event" (`event: error`, a bare message object) or
    # "field" (llama.cpp's `error: {...}` line, then `data: [DONE]`).
    error_form: str = "data"
    ignore_stream: bool = False  # openai: the whole answer as JSON, though a stream was asked
    # openai: how `sources` are cited: "annotations" (url_citation, OpenAI's and
    # OpenRouter's) or "citations" (Perplexity's URL list in every chunk, titled by
    # its search_results).
    cite_form: str = "annotations"
    # SSE comments (": keep-alive") during first_delay: one at once, then this often.
    keepalive_every: float = 0.0
    one_newline: bool = False  # chatmount: events end at one newline, not SSE's blank line

    @property
    def token_list(self) -> list[str]:
        return list(DEFAULT_TOKENS if self.tokens is None else self.tokens)

    @property
    def answer(self) -> str:
        return self.final if self.final is not None else "".join(self.token_list)


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    query: dict[str, str]
    at: float = 0.0  # time.monotonic() as it came


@dataclass
class _Thread:
    id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    script: Script | None = None
    polls_left: int = 0
    status: str = "completed"


class FakeChatAPI:
    """The fake server; see the module docstring."""

    def __init__(self, api_key: str = "cm_test_key_5ecret") -> None:
        self.api_key = api_key
        self.url = ""
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.threads: dict[str, _Thread] = {}
        # chaturdata: newMessage names the thread it added to (the contract's examples
        # treat the field as optional when a thread_id was sent).
        self.chaturdata_echo_thread = True
        self.compress = False
        self._scripts: deque[Script] = deque()
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._ids = itertools.count(1)
        self._remaining = RATE_LIMIT
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ test API

    #: When no script is queued, ChatMount requests are answered with
    #: `answer_for(question)` if set (e.g. an answer that names its question).
    answer_for: Callable[[str], Script] | None = None

    def enqueue(self, **script: Any) -> Script:
        """Queue the answer for the next answering request."""
        item = Script(**script)
        self._scripts.append(item)
        return item

    def endpoint(self, kind: str) -> str:
        """The URL to configure for a dialect."""
        return self.url + ENDPOINTS[kind]

    async def wait_requests(self, n: int, timeout: float = 5.0) -> Recorded:
        """Wait until `n` requests were received; returns the n-th."""
        await self._wait(lambda: len(self.requests) >= n, timeout)
        return self.requests[n - 1]

    async def wait_disconnects(self, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until clients hung up mid-answer `n` times."""
        await self._wait(lambda: self.disconnects >= n, timeout)

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._compressed])
        for prefix in ("", "/chatmount"):
            app.router.add_post(prefix + "/v1/chat", self._chatmount)
        app.router.add_post("/ndjson/v1/chat/stream", self._ndjson)
        app.router.add_post("/ndjson/chat", self._ndjson)
        app.router.add_post("/chaturdata/api/newMessage", self._chaturdata_new)
        app.router.add_get("/chaturdata/api/getThread", self._chaturdata_get)
        app.router.add_post("/bot-messages/v1/chat", self._bot_messages)
        app.router.add_post("/bot-messages/chat", self._bot_messages)
        app.router.add_post("/openai/v1/chat/completions", self._openai)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ shared pieces

    @web.middleware
    async def _compressed(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)  # a stream is compressed by `_stream`
        if self.compress and not response.prepared:
            response.enable_compression(web.ContentCoding.gzip)
        return response

    async def _record(self, request: web.Request) -> Recorded:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        rec = Recorded(
            request.method,
            request.path,
            {k.lower(): v for k, v in request.headers.items()},
            body,
            dict(request.query),
            time.monotonic(),
        )
        self.requests.append(rec)
        await self._notify()
        return rec

    def _next(self, question: str | None = None) -> Script:
        if self._scripts:
            return self._scripts.popleft()
        if self.answer_for is not None and question is not None:
            return self.answer_for(question)
        return Script()

    def _bearer_ok(self, rec: Recorded) -> bool:
        return rec.headers.get("authorization") == f"Bearer {self.api_key}"

    def _scripted_error(
        self, script: Script, default_body: Any, extra: dict[str, str] | None = None
    ) -> web.Response:
        headers = {**(extra or {}), **script.headers}
        if script.status == 429:
            if script.retry_after is not None:
                headers["Retry-After"] = f"{script.retry_after:g}"
        body = default_body if script.body is None else script.body
        if isinstance(body, dict | list):
            return web.json_response(body, status=script.status, headers=headers)
        text = body.decode() if isinstance(body, bytes) else str(body)
        return web.Response(text=text, status=script.status, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        script: Script,
        content_type: str,
        token: Callable[[str], bytes],
        *,
        head: bytes = b"",
        malformed: bytes,
        error: Callable[[str], bytes],
        tail: Callable[[], bytes],
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """Stream a script: head, tokens (with the scripted faults), tail."""
        resp = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
        resp.headers.update(script.headers)
        if self.compress:
            resp.enable_compression(web.ContentCoding.gzip)
        try:
            await resp.prepare(request)
            # The opening event (NDJSON's start, bot-messages' empty content,
            # OpenAI's role chunk) goes out as the stream opens, before the
            # model has written anything, as real servers send it.
            if head:
                await resp.write(head)
            if script.first_delay:
                await self._wait_alive(resp, script)
            if script.gate is not None:
                await script.gate.wait()
            tokens = script.token_list
            for i in range(len(tokens) + 1):
                if i == script.malformed_after:
                    await resp.write(malformed)
                if i == script.hang_after:
                    await self._closing.wait()
                    return resp
                if i == script.drop_after:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if i == script.cut_after:
                    await resp.write_eof()
                    return resp
                if i == script.unended_after:
                    line = token("x" * 100).rstrip(b"\n") + b"\n"
                    block = line * (65536 // len(line))
                    for _ in range(UNENDED_BYTES // len(block) + 1):
                        await resp.write(block)
                    await resp.write_eof()
                    return resp
                if i == script.error_after:
                    await resp.write(error(script.error))
                    await resp.write_eof()
                    return resp
                if i == len(tokens):
                    break
                if i and script.token_delay:
                    await asyncio.sleep(script.token_delay)
                await resp.write(token(tokens[i]))
            await resp.write(tail())
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            await asyncio.shield(self._notify())
            raise
        return resp

    @staticmethod
    async def _wait_alive(resp: web.StreamResponse, script: Script) -> None:
        """Wait `first_delay`, sending keep-alive comments meanwhile if the script says."""
        if not script.keepalive_every:
            await asyncio.sleep(script.first_delay)
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + script.first_delay
        await resp.write(b": keep-alive\n\n")  # one at once, as proxies and servers do
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(left, script.keepalive_every))
            if end - loop.time() > 0:
                await resp.write(b": keep-alive\n\n")

    # ------------------------------------------------------------------ chatmount

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

    # ------------------------------------------------------------------ ndjson

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

    # ------------------------------------------------------------------ chaturdata

    async def _chaturdata_new(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if not self._bearer_ok(rec):
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = rec.json
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return web.json_response({"error": "message is required"}, status=400)
        thread_id = body.get("thread_id")
        if thread_id is None:
            thread = _Thread(f"thread_{uuid.uuid4().hex[:24]}")
            self.threads[thread.id] = thread
        elif thread_id in self.threads:
            thread = self.threads[thread_id]
        else:
            return web.json_response({"error": "Thread not found"}, status=404)
        script = self._next()
        if script.status != 200 or script.body is not None:
            return self._scripted_error(script, {"error": _reason(script.status)})
        if script.first_delay:
            await asyncio.sleep(script.first_delay)
        thread.messages.append(self._thread_message("user", body["message"], []))
        thread.script = script
        thread.polls_left = script.polls
        thread.status = "queued"
        answer: dict[str, Any] = {"run_status": {"status": "queued", "id": _id("run")}}
        if thread_id is None or self.chaturdata_echo_thread:
            answer["thread_id"] = thread.id
        return web.json_response(answer)

    async def _chaturdata_get(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if not self._bearer_ok(rec):
            return web.json_response({"error": "Unauthorized"}, status=401)
        thread = self.threads.get(rec.query.get("threadId", ""))
        if thread is None:
            return web.json_response({"error": "Thread not found"}, status=404)
        script = thread.script
        if script is not None and thread.status in ("queued", "in_progress"):
            polled = script.polls - thread.polls_left
            if polled == script.hang_after:
                script.hang_after = None  # the poll after it answers
                return await self._hang(request)
            if polled == script.malformed_after:
                script.malformed_after = None
                return web.Response(text="<html>Bad gateway</html>", content_type="text/html")
            if polled == script.limited_after:
                script.limited_after = None
                return web.json_response(
                    {"error": "Too many requests"}, status=429,
                    headers={"Retry-After": f"{script.retry_after or 1:g}"},
                )
            if polled == script.failed_after:
                script.failed_polls -= 1
                if script.failed_polls <= 0:
                    script.failed_after = None
                return web.json_response({"error": script.error}, status=502)
            thread.polls_left -= 1
            if thread.polls_left > 0:
                thread.status = "in_progress"
            else:
                thread.status = script.run_status
                if script.run_status == "completed":
                    thread.messages.append(self._assistant_message(script))
        run: dict[str, Any] = {"status": thread.status}
        if thread.status in ("failed", "expired", "cancelled") and script is not None:
            run["last_error"] = {"code": "server_error", "message": script.error}
        # The newest message first, as the assistants API lists them.
        return web.json_response(
            {"messages": list(reversed(thread.messages)), "run_status": run}
        )

    async def _hang(self, request: web.Request) -> web.Response:
        """Answer nothing until the client hangs up (or the fake closes)."""
        try:
            await self._closing.wait()
        except asyncio.CancelledError:
            self.disconnects += 1
            await asyncio.shield(self._notify())
            raise
        return web.Response(status=503)

    def _thread_message(
        self, role: str, text: str, annotations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "id": _id("msg"),
            "object": "thread.message",
            "created_at": int(time.time()) + next(self._ids),
            "role": role,
            "content": [{"type": "text", "text": {"value": text, "annotations": annotations}}],
        }

    def _assistant_message(self, script: Script) -> dict[str, Any]:
        """The answer, with a citation marker and annotation per source and file."""
        citations = [
            ("url_citation", f"【{n}:0†source】", {"url": url, "title": title})
            for n, (url, title) in enumerate(script.sources)
        ] + [
            ("file_citation", f"【{n}:0†{file_id}.md】", {"file_id": file_id, "quote": quote})
            for n, (file_id, quote) in enumerate(script.file_citations, len(script.sources))
        ]
        text = script.answer
        annotations: list[dict[str, Any]] = []
        for kind, marker, detail in citations:
            annotations.append(
                {
                    "type": kind,
                    "text": marker,
                    "start_index": len(text),
                    "end_index": len(text) + len(marker),
                    kind: detail,
                }
            )
            text += marker
        return self._thread_message("assistant", text, annotations)

    # ------------------------------------------------------------------ bot-messages

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

    # ------------------------------------------------------------------ openai

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        if not self._bearer_ok(rec):
            return web.json_response(
                _openai_error("Incorrect API key provided.", "invalid_api_key"), status=401
            )
        body = rec.json
        if not isinstance(body, dict) or not body.get("model"):
            return web.json_response(
                _openai_error("you must provide a model parameter"), status=400
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return web.json_response(
                _openai_error("'messages' must be a non-empty array"), status=400
            )
        script = self._next()
        if script.status != 200 or script.body is not None:
            return self._scripted_error(script, _openai_error(_reason(script.status)))
        cid = _id("chatcmpl")
        model = body["model"]
        notes, listed = _openai_cites(script)
        if not body.get("stream") or script.ignore_stream:
            message = {"role": "assistant", "content": script.answer, **notes}
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": script.finish_reason}
                    ],
                    "usage": script.usage or {"prompt_tokens": 5, "completion_tokens": 5},
                    **listed,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **listed,
                }
            )

        return await self._stream(
            request,
            script,
            "text/event-stream",
            lambda t: chunk({"content": t}),
            head=chunk({"role": "assistant", "content": ""}),
            malformed=b'data: {"id": "x", "choices": [\n\n',
            error=lambda e: _openai_stream_error(e, script.error_form),
            # OpenAI's search models annotate in a chunk of their own, after the text.
            tail=lambda: (chunk(notes) if notes else b"")
            + chunk({}, script.finish_reason) + b"data: [DONE]\n\n",
        )


def _openai_cites(script: Script) -> tuple[dict[str, Any], dict[str, Any]]:
    """A script's sources as a message's (or delta's) annotations, or as the answer's
    top-level `citations` and `search_results`, as its `cite_form` says."""
    if not script.sources:
        return {}, {}
    if script.cite_form == "citations":
        results = [{"title": title, "url": url} for url, title in script.sources]
        return {}, {"citations": [url for url, _ in script.sources], "search_results": results}
    notes = [{"type": "url_citation", "url_citation": {"url": url, "title": title}}
             for url, title in script.sources]
    return {"annotations": notes}, {}


def _openai_stream_error(message: str, form: str) -> bytes:
    if form == "event":
        return b"event: error\n" + _sse({"message": message, "code": 503})
    if form == "field":
        error = {"code": 400, "message": message, "type": "exceed_context_size_error"}
        return b"error: " + _compact({"error": error}) + b"\n\ndata: [DONE]\n\n"
    return _sse({"error": {"message": message, "type": "server_error"}})


# ---------------------------------------------------------------------- helpers


def _sse(event: Any) -> bytes:
    return b"data: " + _compact(event) + b"\n\n"


def _line(event: Any) -> bytes:
    return _compact(event) + b"\n"


def _compact(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # half a UTF-16 pair: sent escaped, as a JSON server would
        return json.dumps(value, separators=(",", ":")).encode()


_counter = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_counter):06d}{uuid.uuid4().hex[:8]}"


def _reason(status: int) -> str:
    return {
        400: "Bad request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not found",
        422: "Unprocessable entity",
        429: "Too many requests",
    }.get(status, "Internal server error")


def _openai_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


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


@pytest_asyncio.fixture
async def fake_chat_api() -> AsyncIterator[FakeChatAPI]:
    """A running FakeChatAPI on a free loopback port."""
    fake = FakeChatAPI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
