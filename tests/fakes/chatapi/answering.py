"""What every dialect of the fake chat API shares: recording, errors, streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.chatapi.script import Recorded, Script
from tests.fakes.chatapi.state import ChatAPIState

UNENDED_BYTES = 2 << 20


class Answering(ChatAPIState):
    """Taking a request in and streaming a script out, with its faults."""

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
