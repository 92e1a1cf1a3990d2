"""What the Discord test modules share: the adapter alone against the fake Discord (a World),
and the real Bridge and discord.py client against the fake Discord and chat API (a Setup)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.platforms.discord import DiscordOptions, DiscordPlatform
from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.interfaces import Inbound, PlatformContext, ReplyTarget
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.discord import FakeDiscord, RateRule


@dataclass
class World:
    """A guild with two channels, two members (one with a role), and a stranger."""

    fake: FakeDiscord
    guild: str
    general: str
    other: str
    alice: str
    bob: str
    role: str
    got: asyncio.Queue[tuple[Inbound, ReplyTarget]] = field(default_factory=asyncio.Queue)

    async def next(self) -> tuple[Inbound, ReplyTarget]:
        return await asyncio.wait_for(self.got.get(), 10)


def build_world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("Community")
    general, other = fake.add_channel(guild, "general"), fake.add_channel(guild, "ask-ai")
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    role = fake.add_role(guild, "helpers")
    fake.add_member(guild, alice, [role])
    fake.add_member(guild, bob)
    return World(fake, guild, general, other, alice, bob, role)


def options(fake: FakeDiscord, **extra: Any) -> DiscordOptions:
    return DiscordOptions(
        token=fake.token,
        api_url=fake.api_url,
        gateway_url=fake.gateway_url,
        guild_ready_timeout=0.05,
        **extra,
    )


@asynccontextmanager
async def running(
    world: World, on_rate_limited: Callable[[], None] | None = None, **extra: Any
) -> AsyncIterator[DiscordPlatform]:
    platform = DiscordPlatform(
        PlatformContext(options=options(world.fake, **extra), on_rate_limited=on_rate_limited)
    )

    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        await world.got.put((msg, target))

    await platform.start(handler)
    try:
        yield platform
    finally:
        await platform.aclose()


@pytest.fixture
def world(fake_discord: FakeDiscord) -> World:
    return build_world(fake_discord)


SOURCE = ("https://docs.example/bridges", "Bridges 101")


SOURCES_BLOCK = "**Sources**\n- [Bridges 101](<https://docs.example/bridges>)"


@dataclass
class Setup:
    """A guild with a mention channel, an auto-reply channel and a thread channel."""

    discord: FakeDiscord
    chat: FakeChatAPI
    db: Path
    guild: str
    general: str  # mention; one conversation per channel
    ask: str  # auto-reply (trigger: all), one conversation per message/thread
    help: str  # mention; answers in a new thread
    alice: str
    bob: str
    role: str
    discord_extra: str = ""
    stateless: bool = False  # a backend that keeps no history: it is sent every time

    def config(self) -> str:
        kind = "openai" if self.stateless else "chatmount"
        model = "model: m" if self.stateless else ""
        return f"""
store: sqlite://{self.db}
http: {{listen: null}}
backends:
  docs:
    kind: {kind}
    url: {self.chat.endpoint(kind)}
    api_key: ${{CHAT_KEY}}
    {model}
discord:
  token: ${{DISCORD_BOT_TOKEN}}
  api_url: {self.discord.api_url}
  gateway_url: {self.discord.gateway_url}
  guild_ready_timeout: 0.05
  edit_rate: {{count: 5, per: 1.0}}
  post_rate: {{count: 5, per: 1.0}}
  {self.discord_extra}
routes:
  - platform: discord
    channels: ["{self.ask}"]
    trigger: all
    session: thread
    backend: docs
  - platform: discord
    channels: ["{self.help}"]
    trigger: mention
    session: thread
    reply_in_thread: true
    backend: docs
  - platform: discord
    channels: ["{self.general}"]
    trigger: mention
    session: channel
    backend: docs
  - platform: discord
    dm: true
    session: user
    backend: docs
reply: {{edit_interval: 0.05}}
limits: {{rate_limit: {{messages: 50, per: 60}}}}
"""

    @asynccontextmanager
    async def bridge(self) -> AsyncIterator[Bridge]:
        env = {"CHAT_KEY": self.chat.api_key, "DISCORD_BOT_TOKEN": self.discord.token}
        config = parse_config(self.config(), env=env, registry=REGISTRY)
        async with Bridge(config, REGISTRY) as bridge:
            yield bridge

    async def final(self, channel: str, text: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` bot messages in `channel` end with `text`; returns them all."""

        def done() -> list[dict[str, Any]] | None:
            msgs = self.discord.channel_messages(channel)
            finished = [m for m in msgs if m["content"].endswith(text)]
            return msgs if len(finished) >= count else None

        result: list[dict[str, Any]] = await self.discord.wait_until(done)
        return result

    async def command_answered(self, iid: str, ending: str = "") -> dict[str, Any]:
        """Wait until the command `iid`'s answer shows text ending with `ending`."""
        fake = self.discord

        def answered() -> dict[str, Any] | None:
            m = fake.messages.get(fake.interactions[iid]["original"] or "")
            return m if m and m["content"] and m["content"].endswith(ending) else None

        result: dict[str, Any] = await fake.wait_until(answered)
        return result

    async def slash_ask(self, question: str) -> None:
        """Alice runs /ask in #general; returns once its answer (ending ".") shows."""
        iid = await self.discord.invoke(self.general, self.alice, "ask", {"question": question})
        await self.command_answered(iid, ".")

    def sessions(self) -> list[str | None]:
        return [r.json.get("session_id") for r in self.chat.requests if r.path.endswith("/chat")]


@pytest.fixture
def setup(fake_discord: FakeDiscord, fake_chat_api: FakeChatAPI, tmp_path: Path) -> Setup:
    fake = fake_discord
    fake.rates = {"post": RateRule(5, 1.0), "edit": RateRule(5, 1.0)}
    guild = fake.add_guild("Community")
    general = fake.add_channel(guild, "general")
    ask = fake.add_channel(guild, "ask-ai")
    help_ = fake.add_channel(guild, "help")
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    role = fake.add_role(guild, "moderators")
    fake.add_member(guild, alice, [role])
    fake.add_member(guild, bob)
    return Setup(
        fake, fake_chat_api, tmp_path / "bridge.db", guild, general, ask, help_, alice, bob, role
    )


def assert_never_pinged(fake: FakeDiscord) -> None:
    writes = fake.message_writes()
    assert writes
    for write in writes:
        assert write.body["allowed_mentions"]["parse"] == [], write
        assert not write.body["allowed_mentions"].get("replied_user"), write
