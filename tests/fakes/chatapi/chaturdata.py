"""The fake chat API's chaturdata dialect: threads, runs and the polls of them."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.chatapi.script import Script
from tests.fakes.chatapi.state import ChatAPIState
from tests.fakes.chatapi.wire import _id, _reason


@dataclass
class _Thread:
    id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    script: Script | None = None
    polls_left: int = 0
    status: str = "completed"


class Chaturdata(ChatAPIState):
    """chaturdata's wire: POST newMessage starts a run, GET getThread polls it."""

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
                    {"error": "Too many requests"},
                    status=429,
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
        return web.json_response({"messages": list(reversed(thread.messages)), "run_status": run})

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
