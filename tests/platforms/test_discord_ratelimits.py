"""Discord's rate limits: its 429s counted and summed up in the log, and answers kept within a
channel's and the bot's limits so that none is drawn."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from adapters.platforms.discord import indicator, ratelimits
from bridge.errors import PlatformError
from tests.core.fakeplatform import wait_for
from tests.fakes.discord import RateRule
from tests.platforms.discord_support import (
    SOURCE,
    SOURCES_BLOCK,
    Setup,
    World,
    assert_never_pinged,
    running,
)


async def test_fake_rate_limit_is_honoured_by_discord_py(world: World) -> None:
    """Control for the zero-429 tests: overspending the budget does draw 429s."""
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["post"] = RateRule(2, 0.5)
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        ids = await asyncio.gather(*(target.post(f"burst {i}") for i in range(4)))
    assert fake.rate_limited >= 1  # discord.py saw the 429, waited and retried
    assert len(seen) == fake.rate_limited  # and each one was counted for /metrics
    assert len(set(ids)) == 4
    assert sorted(m["content"] for m in fake.channel_messages(world.general)) == [
        f"burst {i}" for i in range(4)
    ]
    limited = [r for r in fake.requests if r.method == "POST" and "/messages" in r.path]
    assert len(limited) == 4 + fake.rate_limited


async def test_429s_on_ask_answers_are_counted_too(world: World) -> None:
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["edit"] = RateRule(1, 1.0)  # the second edit of the answer draws a 429
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.invoke(world.general, world.alice, "ask", {"question": "q"})
        _, target = await world.next()
        answer = await target.post("a")  # an interaction's answer goes by its webhook
        await target.edit(answer, "ab")
        await target.edit(answer, "abc")
    assert fake.rate_limited >= 1 and len(seen) == fake.rate_limited


async def test_429s_are_counted_whatever_the_log_level(world: World) -> None:
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["edit"] = RateRule(1, 1.0)
    seen: list[int] = []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # `logging.level: ERROR`
    try:
        async with running(world, on_rate_limited=lambda: seen.append(1)):
            await fake.mention(world.general, world.alice, "q")
            _, target = await world.next()
            message = await target.post("a")
            await target.edit(message, "ab")
            await target.edit(message, "abc")
    finally:
        root.setLevel(level)
        for name in ("discord.http", "discord.webhook.async_"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert fake.rate_limited >= 1 and len(seen) == fake.rate_limited


def _429_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name in ("discord.http", "discord.webhook.async_") and r.levelno == level
    ]


def _summed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "chat_bridge.discord" and "Discord rate-limited" in r.getMessage()
    ]


async def test_a_run_of_429s_is_one_warning_line_and_every_one_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["post"] = RateRule(1, 0.2)
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        await asyncio.gather(*(target.post(f"burst {i}") for i in range(4)))
        assert fake.rate_limited >= 2
        assert len(seen) == fake.rate_limited  # each one still counted for /metrics
        told = _429_lines(caplog, logging.WARNING)
        assert len(told) == 1 and "responded with 429" in told[0].getMessage()
        # The rest at DEBUG, summed up once the minute is over (or at close).
        assert len(_429_lines(caplog, logging.DEBUG)) == fake.rate_limited - 1
        assert _summed(caplog) == []
    [summary] = _summed(caplog)
    assert summary.levelno == logging.WARNING
    assert f"rate-limited {fake.rate_limited - 1} more request" in summary.getMessage()


async def test_429s_are_summed_up_once_a_minute_bot_wide_ones_told_apart(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimits, "QUIET_FOR", 0.3)
    fake = world.fake
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        fake.global_rule = RateRule(1, 0.2)
        await asyncio.gather(*(target.post(f"burst {i}") for i in range(4)))
        fake.global_rule = RateRule(50, 1.0)  # Discord's again
        assert fake.global_limited >= 2
        # Logged while still running: the minute (here 0.3 s) is over.
        await wait_for(lambda: _summed(caplog))
    assert len(seen) == fake.global_limited + fake.rate_limited
    told = _429_lines(caplog, logging.WARNING)
    said = [r.getMessage() for r in _summed(caplog)]
    assert all(r.levelno == logging.WARNING for r in _summed(caplog))
    # Every 429 told: logged whole, or in a sum.
    summed = sum(int(n) for m in said for n in re.findall(r"rate-limited (\d+) more", m))
    assert sum("responded with 429" in r.getMessage() for r in told) + summed == len(seen)
    bot_wide = sum(int(n) for m in said for n in re.findall(r"(\d+) bot-wide", m))
    assert sum("Global rate limit" in r.getMessage() for r in told) + bot_wide == (
        fake.global_limited
    )
    assert bot_wide >= 1


async def test_fake_rejects_overlong_content_with_discords_error(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        with pytest.raises(PlatformError, match="50035"):
            await target.post("z" * 2001)
        await target.post("z" * 2000)
    assert len(world.fake.rejected) == 1


async def test_ten_replies_at_once_in_one_channel_cause_no_429(setup: Setup) -> None:
    fake = setup.discord
    fake.ratelimit_headers = False  # only the bridge's own budget keeps it in line
    users = [fake.add_user(f"user{i}") for i in range(10)]
    for i in range(10):
        setup.chat.enqueue(
            tokens=[f"Answer {i}: "] + ["more words "] * 15 + ["end."],
            sources=[SOURCE],
            token_delay=0.03,
        )
    async with setup.bridge():
        for i, user in enumerate(users):
            fake.add_member(setup.guild, user)
            await fake.say(setup.ask, user, f"question {i}")
        msgs = await setup.final(setup.ask, SOURCES_BLOCK, count=10)
    assert len(msgs) == 10
    assert sorted(m["content"].split(":")[0] for m in msgs) == [f"Answer {i}" for i in range(10)]
    assert fake.rate_limited == 0
    assert not fake.rejected
    writes = fake.message_writes()
    # Each reply was posted with its first words and edited after: not one post each.
    # (The channel's 5 edits in 5 s leave ten replies little more than that.)
    assert len(writes) >= 20
    assert_never_pinged(fake)


async def test_notices_among_answers_in_one_channel_cause_no_429(setup: Setup) -> None:
    fake = setup.discord
    fake.ratelimit_headers = False  # only the bridge's own budget keeps it in line
    users = [fake.add_user(f"user{i}") for i in range(6)]
    for i in range(5):
        setup.chat.enqueue(tokens=[f"Answer {i}."], token_delay=0.01)
    async with setup.bridge():
        for user in users:
            fake.add_member(setup.guild, user)
        for i, user in enumerate(users[:5]):
            await fake.say(setup.ask, user, f"question {i}")
        await fake.mention(setup.ask, users[5], "")  # no words: told to ask in words
        await fake.wait_until(lambda: len(fake.channel_messages(setup.ask)) >= 6, timeout=30)
    # A notice is a message in the channel: it keeps to the channel's 5 posts in 5 s.
    assert fake.rate_limited == 0
    assert not fake.rejected


async def test_replies_across_channels_stay_within_the_bots_global_limit(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = setup.discord
    fake.ratelimit_headers = False
    channels = [fake.add_channel(setup.guild, f"ask-{i}") for i in range(8)]
    for i in range(8):
        setup.chat.enqueue(tokens=[f"Answer {i}: "] + ["word "] * 30, token_delay=0.02)
    config = (
        setup.config()
        .replace(
            f'channels: ["{setup.ask}"]',
            "channels: [" + ", ".join(f'"{c}"' for c in channels) + "]",
        )
        .replace(
            "post_rate: {count: 5, per: 1.0}",
            "post_rate: {count: 5, per: 1.0}\n  global_rate: {count: 8, per: 1.0}",
        )
    )
    monkeypatch.setattr(Setup, "config", lambda self: config)
    # A small limit on all the bot's requests, so these replies reach it, and the bridge
    # told of it: the replies keep 8 a second, typing renewals 1, and the rest stay
    # unbudgeted.
    # (Questions that wait for the replies' budget show typing by renewals meanwhile.)
    monkeypatch.setattr(indicator, "BOT_LIMIT", 12)
    async with setup.bridge():
        fake.global_rule = RateRule(12, 1.0)
        for i, channel in enumerate(channels):
            await fake.say(channel, setup.alice, f"question {i}")
        answers = [(await setup.final(channel, "word "))[0]["content"] for channel in channels]
    assert sorted(a.split(":")[0] for a in answers) == [f"Answer {i}" for i in range(8)]
    assert fake.global_limited == 0
    assert fake.rate_limited == 0
    # More requests than the fake's global limit allows in one second, and no 429.
    assert len([r for r in fake.requests if r.path.startswith("/api/v10/channels/")]) > 12
