"""`chat-bridge demo`: a local stand-in chat API and a terminal conversation.

The stand-in speaks the ChatMount protocol over real HTTP on a free loopback
port (SSE token / sources / done events), so the demo runs the same dialect,
relay and renderer as Slack and Discord do, with no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import tempfile
from pathlib import Path

from aiohttp import web

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.interfaces import Registry

DEMO_QUESTION = "What is chat-bridge, and how do I try it?"

_ANSWERS = {
    "default": (
        "**chat-bridge** puts a hosted chatbot into Slack and Discord.\n\n"
        "When someone mentions the bot, it:\n"
        "1. maps the conversation (thread, channel or user) to the chatbot's session,\n"
        "2. relays the question to the chat API,\n"
        "3. edits its reply in place as the answer streams in, within the platform's "
        "rate limits,\n"
        "4. finishes with the sources the answer cites.\n\n"
        "To try it with your own chatbot, validate a config and ask one question:\n\n"
        "```sh\n"
        "chat-bridge check -c config.yaml\n"
        'chat-bridge ask -c config.yaml --backend docs "What are your business hours?"\n'
        "```\n\n"
        "Then run `chat-bridge run -c config.yaml` and mention the bot in Slack or Discord."
    ),
    "session": (
        "This conversation keeps one session with the chat API: your follow-up questions "
        "are answered with the earlier ones in mind. Type `reset` to start over."
    ),
}
_SOURCES = [
    {"url": "https://example.com/docs/chat-bridge/overview", "title": "chat-bridge overview"},
    {"url": "https://example.com/docs/chat-bridge/configuration", "title": "Configuration"},
]


class StandInChatAPI:
    """A tiny ChatMount-compatible server with canned answers."""

    def __init__(self, token_delay: float = 0.03) -> None:
        self.api_key = f"cm_demo_{secrets.token_hex(8)}"
        self.token_delay = token_delay
        self._sessions: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> StandInChatAPI:
        app = web.Application()
        app.router.add_post("/v1/chat", self._chat)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1/chat"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "Invalid API key"}, status=401)
        body = await request.json()
        message = body.get("message", "")
        if not 1 <= len(message) <= 2000:
            return web.json_response(
                {"error": "Message must be between 1 and 2000 characters"}, status=400
            )
        session = body.get("session_id") or ""
        turn = self._sessions[session] = self._sessions.get(session, 0) + 1
        answer = _ANSWERS["default" if turn == 1 else "session"]
        headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59"}
        if not body.get("stream"):
            return web.json_response(
                {"message": answer, "sources": _SOURCES, "usage": {"credits_used": 1}},
                headers=headers,
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
        )
        await response.prepare(request)
        try:
            for token in re.findall(r"\S*\s*", answer):
                if not token:
                    continue
                event = {"type": "token", "content": token}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
                await asyncio.sleep(self.token_delay)  # a pace a person can watch
            if body.get("include_sources", True):
                sources = {"type": "sources", "sources": _SOURCES}
                await response.write(f"data: {json.dumps(sources)}\n\n".encode())
            done = {"type": "done", "usage": {"credits_used": 1, "credits_remaining": 99}}
            await response.write(f"data: {json.dumps(done)}\n\n".encode())
            await response.write_eof()
        except ConnectionResetError:  # the reader left (Ctrl-C): nobody to tell
            pass
        return response


async def run_demo(registry: Registry, questions: list[str], read_stdin: bool) -> int:
    """Start the stand-in API and a console conversation; return when input ends: 0,
    or 1 when the terminal failed (its output could not be written; logged)."""
    async with StandInChatAPI() as api:
        with tempfile.TemporaryDirectory(prefix="chat-bridge-demo-") as tmp:
            db = Path(tmp) / "demo.db"
            config = parse_config(
                f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  demo:
    kind: chatmount
    url: {api.url}
    api_key: ${{DEMO_API_KEY}}
console:
  questions: {json.dumps(questions)}
  read_stdin: {json.dumps(read_stdin)}
routes:
  - platform: console
    backend: demo
    session: user
reply:
  edit_interval: 0.15
limits:
  shutdown_grace: 0
""",
                env={"DEMO_API_KEY": api.api_key},
                registry=registry,
            )
            async with Bridge(config, registry) as bridge:
                console = bridge.platforms["console"]
                try:
                    await console.finished.wait()  # type: ignore[attr-defined]
                except asyncio.CancelledError:
                    # Ctrl-C: stopped as `run` stops, at once (no grace): no further
                    # prompt, and the reply it cut says so.
                    with contextlib.suppress(Exception):
                        await bridge.drain()
                    raise
                failed: bool = console.failed  # type: ignore[attr-defined]
    return 1 if failed else 0
