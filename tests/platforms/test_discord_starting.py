"""Discord while it starts: what comes between a shard's READY and discord.py's `ready`
(which waits for every server, and for each shard of the process, 5 s apart) is
delivered once the start is done, not dropped; a start that fails delivers none of it;
and the start waits for every shard to log in (the real discord.py client against the
fake Discord)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters.platforms.discord import DiscordPlatform
from adapters.platforms.discord.startup import Early
from bridge.errors import PlatformError
from bridge.interfaces import STOPPING_TEXT, Inbound, PlatformContext, ReplyTarget
from tests.core.fakeplatform import wait_for
from tests.fakes.discord import FakeDiscord
from tests.platforms.discord_support import World, options


def platform_for(world: World, spacing: float = 0.0, **extra: Any) -> DiscordPlatform:
    opts = options(world.fake).model_copy(update=extra)
    platform = DiscordPlatform(PlatformContext(options=opts))
    platform.identify_spacing = spacing  # discord.py's 5 s between two shards' IDENTIFYs
    return platform


def handler_of(world: World) -> Any:
    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        await world.got.put((msg, target))

    return handler


async def starting_on_shard_zero(
    world: World, **extra: Any
) -> tuple[DiscordPlatform, asyncio.Task[None]]:
    """A platform of two shards (`extra`: its options) starting, and its start: shard
    0 is up (READY, its servers sent), shard 1's IDENTIFY unanswered, the start still
    waiting."""
    fake = world.fake
    fake.gateway_shards = 2
    fake.unanswered_shards.add(1)
    platform = platform_for(world, **extra)
    starting = asyncio.create_task(platform.start(handler_of(world)))
    await fake.wait_until(
        lambda: fake.gateways and any(i["shard"] == [1, 2] for i in fake.identifies)
    )
    assert not starting.done()
    return platform, starting


async def asked_while_starting(world: World, platform: DiscordPlatform) -> None:
    """A DM and a command come, and are held (the command acknowledged: Discord wants it
    within 3 s) while the start waits."""
    await world.fake.dm(world.alice, "asked while the bot was starting")
    dm = world.fake.dm_channel(world.alice)
    await world.fake.invoke(dm, world.alice, "ask", {"question": "and a command?"})
    await wait_for(lambda: platform._early is not None and len(platform._early) == 2)


def stopping_notices(fake: FakeDiscord) -> list[Any]:
    return [
        r
        for r in fake.requests
        if "/webhooks/" in r.path
        and isinstance(r.body, dict)
        and r.body.get("content") == STOPPING_TEXT
    ]


async def test_questions_while_the_shards_log_in_are_delivered_once_started(
    world: World,
) -> None:
    fake = world.fake
    platform, starting = await starting_on_shard_zero(world, shard_count=2)
    try:
        # DMs come on shard 0, up while shard 1 logs in (5 s a shard, on Discord). A
        # command is acknowledged at once, answered once started.
        await asked_while_starting(world, platform)
        await fake.dm(world.alice, "and one more")
        await wait_for(lambda: platform._early is not None and len(platform._early) == 3)
        assert world.got.empty() and not starting.done()
        await fake.answer_identify(1)
        await starting
        got = [(await world.next())[0] for _ in range(3)]
        assert [(m.text, m.command) for m in got] == [
            ("asked while the bot was starting", None),
            ("and a command?", "ask"),
            ("and one more", None),
        ]
        [callback] = fake.sent("POST", r"/callback$")
        assert callback.body["type"] == 5  # deferred ("thinking…"), not told "restarting"
        await fake.dm(world.alice, "after the start")
        msg, _ = await world.next()
        assert msg.text == "after the start"
    finally:
        await platform.aclose()
    assert not stopping_notices(fake)


async def test_a_question_in_the_first_seconds_is_delivered(world: World) -> None:
    # One connection: discord.py says `ready` guild_ready_timeout after the last server
    # (3 s: time enough, on a loaded host too, to ask before it).
    platform = platform_for(world, guild_ready_timeout=3.0)
    starting = asyncio.create_task(platform.start(handler_of(world)))
    try:
        await world.fake.wait_until(lambda: world.fake.gateways)
        await world.fake.mention(world.general, world.alice, "asked as the bot came online")
        assert not starting.done()
        await starting
        msg, _ = await world.next()
        assert msg.text == "asked as the bot came online"
    finally:
        await platform.aclose()


async def test_a_start_timed_out_as_shards_log_in_says_so_and_delivers_nothing(
    world: World,
) -> None:
    fake = world.fake
    platform, starting = await starting_on_shard_zero(
        world, spacing=0.1, shard_count="auto", connect_timeout=1.0
    )
    await asked_while_starting(world, platform)
    with pytest.raises(PlatformError) as caught:
        await starting
    said = str(caught.value)
    assert "within 1.1 s: 1 of the 2 shards this process runs had not logged in" in said
    assert "raise discord.connect_timeout (now 1 s)" in said
    assert "network" not in said
    # Nothing reached the core, which is not running; the command was told to ask again.
    assert world.got.empty()
    [notice] = stopping_notices(fake)
    assert notice.body["flags"] & 64  # the asker's alone


async def test_a_start_cut_short_delivers_nothing_it_held(world: World) -> None:
    # A stop signal while the bot starts cancels the start.
    fake = world.fake
    platform, starting = await starting_on_shard_zero(world, shard_count=2)
    await asked_while_starting(world, platform)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert world.got.empty() and not platform.connected
    assert len(stopping_notices(fake)) == 1


async def test_many_shards_in_one_process_get_the_time_to_log_in(world: World) -> None:
    # Shards log in one after another (5 s apart on Discord): four take three spacings,
    # longer than connect_timeout alone.
    world.fake.gateway_shards = 4
    platform = platform_for(world, spacing=0.5, shard_count="auto", connect_timeout=1.0)
    await platform.start(handler_of(world))
    try:
        assert sorted(i["shard"][0] for i in world.fake.identifies) == [0, 1, 2, 3]
        assert platform.connected
    finally:
        await platform.aclose()


async def test_what_comes_past_the_limit_while_starting_is_not_held(caplog: Any) -> None:
    early, handed = Early(limit=1), []

    async def hand_on(n: int) -> None:
        handed.append(n)

    early.hold(lambda: hand_on(1))
    early.hold(lambda: hand_on(2))
    early.hold(lambda: hand_on(3))
    await early.hand_on()
    assert handed == [1]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "more than 1 messages came while Discord was still connecting: the later ones go unanswered"
    ]
