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
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.chatapi.answering import UNENDED_BYTES, Answering
from tests.fakes.chatapi.bot_messages import BotMessages
from tests.fakes.chatapi.chatmount import CHATMOUNT_MAX, RATE_LIMIT, ChatMount
from tests.fakes.chatapi.chaturdata import Chaturdata, _Thread
from tests.fakes.chatapi.ndjson import NDJSON
from tests.fakes.chatapi.openai import OpenAI
from tests.fakes.chatapi.script import DEFAULT_TOKENS, Recorded, Script

__all__ = [
    "CHATMOUNT_MAX",
    "DEFAULT_TOKENS",
    "ENDPOINTS",
    "RATE_LIMIT",
    "UNENDED_BYTES",
    "FakeChatAPI",
    "Recorded",
    "Script",
    "fake_chat_api",
]


ENDPOINTS = {
    "chatmount": "/v1/chat",
    "ndjson": "/ndjson/v1/chat/stream",
    "chaturdata": "/chaturdata/api",
    "bot-messages": "/bot-messages/v1/chat",
    "openai": "/openai/v1",
}


class FakeChatAPI(ChatMount, NDJSON, Chaturdata, BotMessages, OpenAI, Answering):
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


@pytest_asyncio.fixture
async def fake_chat_api() -> AsyncIterator[FakeChatAPI]:
    """A running FakeChatAPI on a free loopback port."""
    fake = FakeChatAPI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
