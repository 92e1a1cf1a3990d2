"""A fake Discord: REST API and gateway websocket, on a loopback port.

Speaks enough of Discord's wire format for the real discord.py client to log
in, identify, receive guilds, messages, forum posts, slash-command interactions
and the deletion of messages, threads and channels, and to post, edit, type,
open threads and answer interactions. It enforces what the real service
enforces and the bridge must respect:

- message content is at most 2,000 characters (400 with Discord's error JSON);
- per-channel budgets for posting and for editing messages (429 with
  `Retry-After`, `X-RateLimit-*`, a `Via` header and a JSON `retry_after`,
  which is what discord.py needs to wait and retry), counted in `rate_limited`;
- 50 requests a second for all of the bot's (a 429 with `global: true`),
  counted in `global_limited`;
- the privileged message-content intent (gateway close 4014 when it is asked
  for but not enabled, and blank message text without it);
- REST responses with `Content-Type: application/json` exactly.

Every REST request is recorded (`requests`) with its JSON body, and channel
messages are kept (`messages`, `edits`) for assertions. Tests wait for state
with `wait_until(predicate)`, never with sleeps.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.discord.gateway import GatewayServer, _Gateway
from tests.fakes.discord.interactions import Interactions
from tests.fakes.discord.limits import RateLimits, RateRule
from tests.fakes.discord.messages import Messages
from tests.fakes.discord.rest import RestRoutes
from tests.fakes.discord.wire import (
    ADD_REACTIONS,
    CREATE_PUBLIC_THREADS,
    DISCORD_EPOCH_MS,
    EMBED_LINKS,
    EPHEMERAL,
    EVERYONE_DEFAULT,
    FORWARD,
    HAS_SNAPSHOT,
    LOADING,
    MANAGE_THREADS,
    MAX_CONTENT,
    MESSAGE_CONTENT,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    SUPPRESS_EMBEDS,
    VIEW_CHANNEL,
    Recorded,
    attachment,
    snowflake,
)
from tests.fakes.discord.world import World

__all__ = [
    "ADD_REACTIONS",
    "CREATE_PUBLIC_THREADS",
    "DISCORD_EPOCH_MS",
    "EMBED_LINKS",
    "EPHEMERAL",
    "EVERYONE_DEFAULT",
    "FORWARD",
    "HAS_SNAPSHOT",
    "LOADING",
    "MANAGE_THREADS",
    "MAX_CONTENT",
    "MESSAGE_CONTENT",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "SUPPRESS_EMBEDS",
    "VIEW_CHANNEL",
    "FakeDiscord",
    "RateRule",
    "Recorded",
    "attachment",
    "fake_discord",
    "snowflake",
]


class FakeDiscord(RestRoutes, Interactions, GatewayServer, Messages, World, RateLimits):
    """The fake service. Build guilds, channels and users, then drive events."""

    def __init__(self) -> None:
        self.token = "fake.discord-bot.token"
        self.app_id = snowflake()
        self.bot: dict[str, Any] = self._user_obj(self.app_id, "bridgebot", bot=True)
        self.message_content_enabled = True
        self.ratelimit_headers = True
        self.rates = {"post": RateRule(), "edit": RateRule()}
        # Discord's limit on every request of the bot: 50 a second (None: not enforced).
        self.global_rule: RateRule | None = RateRule(50, 1.0)
        self.global_limited = 0
        self.tolerance = 0.05  # network jitter the fake forgives at a window's edge
        self.users: dict[str, dict[str, Any]] = {self.app_id: self.bot}
        self.guilds: dict[str, dict[str, Any]] = {}
        self.left: set[str] = set()  # servers the bot was removed from
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.edits: dict[str, list[str]] = {}
        self.requests: list[Recorded] = []
        self.rate_limited = 0
        self.rejected: list[Recorded] = []
        # (method, path pattern): the next such request loses its connection, unanswered
        # (as a keep-alive connection the server closed does); one entry per drop.
        self.drop: list[tuple[str, str]] = []
        # (method, path pattern, seconds): the next such request is answered (or
        # dropped) that much later, as over a slow network; one entry per request.
        self.slow: list[tuple[str, str, float]] = []
        # (method, path pattern, status, code): every such request is refused so (a
        # DM's recipient who blocked the bot: 403 50007), until the entry is removed.
        self.refuse: list[tuple[str, str, int, int]] = []
        # Guilds listed at READY whose GUILD_CREATE is held back (a big bot's
        # guilds still streaming in): discord.py knows them only by id.
        self.late_guilds: set[str] = set()
        self.commands: list[dict[str, Any]] = []
        self.interactions: dict[str, dict[str, Any]] = {}
        self.identifies: list[dict[str, Any]] = []
        self.resumes = 0
        self.gateway_down = False  # True: gateway connections are refused (an outage)
        self._sessions: dict[str, tuple[tuple[int, int], int]] = {}
        self.errors: list[str] = []
        self.gateway_shards = 1
        # Shards whose IDENTIFY is left unanswered (no READY) until `answer_identify`:
        # a process's last shards let in late (discord.py waits for every shard).
        self.unanswered_shards: set[int] = set()
        self._unanswered: list[_Gateway] = []
        self.gateways: list[_Gateway] = []
        self._windows: dict[str, deque[float]] = {}
        self._tick = asyncio.Event()
        self._runner: web.AppRunner | None = None
        # The host its URLs name (it serves on 127.0.0.1): a `.test` one for a
        # Discord reached through `FakeProxy`, as the daemon goes direct to loopback.
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/gateway", self._gateway)
        base = "/api/v10"
        r.add_get(f"{base}/users/@me", self._me)
        r.add_get(f"{base}/oauth2/applications/@me", self._application)
        r.add_get(f"{base}/gateway", self._gateway_info)
        r.add_get(f"{base}/gateway/bot", self._gateway_info)
        r.add_put(f"{base}/applications/{{app}}/commands", self._put_commands)
        r.add_get(f"{base}/channels/{{cid}}", self._get_channel)
        r.add_post(f"{base}/channels/{{cid}}/messages", self._post_message)
        r.add_patch(f"{base}/channels/{{cid}}/messages/{{mid}}", self._edit_message)
        r.add_delete(f"{base}/channels/{{cid}}/messages/{{mid}}", self._delete_message)
        r.add_post(f"{base}/channels/{{cid}}/typing", self._typing)
        r.add_post(f"{base}/channels/{{cid}}/messages/{{mid}}/threads", self._open_thread)
        r.add_post(f"{base}/interactions/{{iid}}/{{token}}/callback", self._callback)
        r.add_post(f"{base}/webhooks/{{app}}/{{token}}", self._followup)
        r.add_patch(f"{base}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._webhook_edit)
        r.add_delete(f"{base}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._webhook_delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        for gw in list(self.gateways):
            await gw.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"{self.url.replace('http://', 'ws://')}/gateway"

    def _changed(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every change); returns it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := predicate()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError("the fake Discord never reached the expected state")
            try:
                await asyncio.wait_for(self._tick.wait(), remaining)
            except TimeoutError:
                continue
        return result

    def sent(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests whose path matches the regex `pattern`."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def message_writes(self) -> list[Recorded]:
        """Every request that created or changed message content."""

        def writes(r: Recorded) -> bool:
            if r.path.endswith("/callback"):
                return isinstance(r.body, dict) and r.body.get("type") == 4
            if r.method == "POST" and "/webhooks/" in r.path:
                return True
            content = re.search(r"/messages(/\d+|/@original)?$", r.path) is not None
            return r.method in ("POST", "PATCH") and content

        return [r for r in self.requests if writes(r)]


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A running fake Discord on a free loopback port."""
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.aclose()
    assert not fake.errors, f"the fake Discord failed: {fake.errors}"
