"""A fake Slack: the Web API, Socket Mode, and signed HTTP event delivery.

It speaks the real wire format (slack-sdk and slack-bolt run against it
unmodified) and enforces the limits that matter to a streaming bot:
chat.update text past 4,000 characters is `msg_too_long` (as is a markdown_text
past 12,000 in any method, the stream methods' included), and methods given a
rate answer 429 with `Retry-After`: by default the methods a reply calls, at
Slack's tiers (chat.update, the stream methods and reactions per workspace,
chat.postMessage per channel). Every message is kept as a channel history, so
tests assert what a person would finally see.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.slack.events import Events
from tests.fakes.slack.history import FakeMessage, History, pings_in
from tests.fakes.slack.limits import MARKDOWN_LIMIT, POST_TEXT_LIMIT, TEXT_LIMIT, Limits, RateRule
from tests.fakes.slack.signed_http import SignedHTTP
from tests.fakes.slack.socket_mode import SocketMode
from tests.fakes.slack.webapi import WebAPI

__all__ = [
    "MARKDOWN_LIMIT",
    "POST_TEXT_LIMIT",
    "TEXT_LIMIT",
    "FakeMessage",
    "FakeSlack",
    "RateRule",
    "fake_slack",
    "pings_in",
]


class FakeSlack(WebAPI, SocketMode, Events, SignedHTTP, History, Limits):
    """One workspace with one installed app; see the module docstring."""

    def __init__(
        self,
        *,
        team_id: str = "T0TEAM001",
        bot_user_id: str = "U0BOT0001",
        bot_id: str = "B0BOT0001",
    ) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = "A0APP0001"
        self.bot_token = "xoxb-fake-bot-token"
        self.app_token = "xapp-fake-app-token"
        self.signing_secret = "fake-signing-secret"
        self.channels: dict[str, str] = {}
        # Channels shared with another organisation (Slack Connect): events there say
        # `is_ext_shared_channel`, and Slack's descriptions `is_ext_shared`.
        self.shared: set[str] = set()
        # Channels the bot is not a member of: chat.* methods there are refused
        # not_in_channel, until `invite_bot`.
        self.outside: set[str] = set()
        self.messages: dict[str, list[FakeMessage]] = defaultdict(list)
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.reactions: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.statuses: list[dict[str, Any]] = []
        # method -> seconds each of its next calls takes before it is handled (carried
        # out, then answered: past the client's timeout, to no one)
        self.slow: dict[str, list[float]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pings: list[tuple[str, str, str]] = []
        self.rejected: Counter[str] = Counter()  # (method, error) -> count of ok:false answers
        self.rate_limited: Counter[str] = Counter()  # method -> 429s sent
        # Slack's tiers for the methods a reply calls (Tier 2 20, Tier 3 50, Tier 4
        # 100 a minute per workspace); `set_rate` changes one (a shorter window).
        self.rates: dict[str, RateRule] = {
            "chat.update": RateRule(50, 60.0, "team"),
            "chat.postMessage": RateRule(1, 1.0, "channel"),
            "chat.startStream": RateRule(20, 60.0, "team"),
            "chat.appendStream": RateRule(100, 60.0, "team"),
            "chat.stopStream": RateRule(20, 60.0, "team"),
            "reactions.add": RateRule(50, 60.0, "team"),
            "reactions.remove": RateRule(20, 60.0, "team"),
        }
        self.stream_error: str | None = None  # make chat.startStream refuse with this error
        # method -> errors its next calls answer with (ok: false), one per call
        self.fail: dict[str, list[str]] = {}
        # method -> HTTP statuses its next calls answer with, one per call, with a page
        # that is not JSON (an outage's, a proxy's 502)
        self.unavailable: dict[str, list[int]] = {}
        # The bot token's scopes (the manifest's), told in X-OAuth-Scopes on every
        # answer; a chat.* method without chat:write is refused missing_scope, as are
        # a reactions.* one without reactions:write and conversations.info without
        # the :read scope of the channel's type.
        self.scopes = {
            "app_mentions:read",
            "channels:history",
            "groups:history",
            "im:history",
            "mpim:history",
            "channels:read",
            "groups:read",
            "mpim:read",
            "chat:write",
            "commands",
            "reactions:write",
        }
        # method -> its next calls are carried out, then the connection closes unanswered
        self.lose_answer: Counter[str] = Counter()
        # method -> its next calls are dropped: the connection closes, nothing carried out
        self.drop: Counter[str] = Counter()
        # method -> seconds each of its next calls' answer takes once it is carried out
        # (`slow`: before it is)
        self.slow_answer: dict[str, list[float]] = {}
        self.acks: dict[str, dict[str, Any] | None] = {}
        self.connections = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._ts = itertools.count(1)
        self._ts_seconds = 0
        self._event_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = 0
        # The host its URLs name (it serves on 127.0.0.1): a `.test` one for a
        # Slack reached through `FakeProxy`, as the daemon goes direct to loopback.
        self.host = "127.0.0.1"

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL (`slack.api_url`)."""
        return f"{self.base}/api/"

    async def start(self, port: int = 0) -> None:
        """Serve on `port` (a free one if 0; the one it had, to come back after `stop`)."""
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack-sdk GETs a few (conversations.info)
        app.router.add_get("/socket-mode", self._socket)
        app.router.add_post("/commands/response/{n}", self._response_url)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._client = aiohttp.ClientSession()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every change); returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError("timed out waiting for the fake Slack")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def _touch(self) -> None:
        self._changed.set()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started fake Slack on a free loopback port."""
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
