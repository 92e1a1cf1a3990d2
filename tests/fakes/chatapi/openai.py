"""The fake chat API's OpenAI dialect: chat completions, streamed or whole."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.chatapi.script import Script
from tests.fakes.chatapi.state import ChatAPIState
from tests.fakes.chatapi.wire import _compact, _id, _reason, _sse


class OpenAI(ChatAPIState):
    """OpenAI's wire: POST /openai/v1/chat/completions."""

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
            tail=lambda: (
                (chunk(notes) if notes else b"")
                + chunk({}, script.finish_reason)
                + b"data: [DONE]\n\n"
            ),
        )


def _openai_cites(script: Script) -> tuple[dict[str, Any], dict[str, Any]]:
    """A script's sources as a message's (or delta's) annotations, or as the answer's
    top-level `citations` and `search_results`, as its `cite_form` says."""
    if not script.sources:
        return {}, {}
    if script.cite_form == "citations":
        results = [{"title": title, "url": url} for url, title in script.sources]
        return {}, {"citations": [url for url, _ in script.sources], "search_results": results}
    notes = [
        {"type": "url_citation", "url_citation": {"url": url, "title": title}}
        for url, title in script.sources
    ]
    return {"annotations": notes}, {}


def _openai_stream_error(message: str, form: str) -> bytes:
    if form == "event":
        return b"event: error\n" + _sse({"message": message, "code": 503})
    if form == "field":
        error = {"code": 400, "message": message, "type": "exceed_context_size_error"}
        return b"error: " + _compact({"error": error}) + b"\n\ndata: [DONE]\n\n"
    return _sse({"error": {"message": message, "type": "server_error"}})


def _openai_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}
