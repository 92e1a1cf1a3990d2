"""Refusals posted in a Discord channel (Discord has no ephemeral messages there), in a
burst: after the answers taken in the channel, and in time or not at all."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge import refusals
from bridge.intake import CONVERSATION_BUSY
from tests.core.fakeplatform import wait_for
from tests.platforms.discord_support import Setup, setup  # noqa: F401

BUSY = "I am busy right now; please try again shortly."


def limited(setup: Setup, monkeypatch: pytest.MonkeyPatch, post_rate: str, limits: str) -> None:
    """The channel's post budget as the bridge counts it, and the bridge's limits."""
    config = (
        setup.config()
        .replace("post_rate: {count: 5, per: 1.0}", f"post_rate: {post_rate}")
        .replace(
            "limits: {rate_limit: {messages: 50, per: 60}}",
            f"limits: {{rate_limit: {{messages: 50, per: 60}}, {limits}}}",
        )
    )
    monkeypatch.setattr(Setup, "config", lambda self: config)


def untold(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "chat_bridge.intake" and "not told" in r.getMessage()
    ]


async def test_a_bursts_refusals_leave_the_channels_posts_to_its_answers_and_come_in_time_or_not(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 30 people at once, 5 taken (2 answering, 3 waiting): their refusals took the
    # channel's posts first, so three answers waited a window (Discord's: 5 s) to show,
    # and the refusals came five a window, the last "busy" half a minute late.
    # A window of a minute here: no refusal finds room within its seconds.
    limited(setup, monkeypatch, "{count: 5, per: 60.0}", "max_concurrent_streams: 2, queue_size: 3")
    monkeypatch.setattr(refusals, "REFUSAL_WITHIN", 2.0)
    caplog.set_level(logging.INFO, logger="chat_bridge")
    fake = setup.discord
    users = [fake.add_user(f"u{i}") for i in range(30)]
    for user in users:
        fake.add_member(setup.guild, user)
    # The answers begin once every message is taken or refused: no answer ends early
    # and lets a later question in.
    begin = asyncio.Event()
    for i in range(5):
        setup.chat.enqueue(tokens=[f"Answer {i} ", "in full."], token_delay=0.1, gate=begin)

    def posts() -> list[str]:
        return [r.body["content"] for r in fake.sent("POST", rf"/channels/{setup.ask}/messages$")]

    async with setup.bridge():
        for i, user in enumerate(users):
            await fake.say(setup.ask, user, f"question {i}")
        await wait_for(lambda: untold(caplog))  # the refusals, given up
        begin.set()
        await setup.final(setup.ask, "in full.", count=5)
        assert all(post.startswith("Answer ") for post in posts()[:5]), posts()
        assert BUSY not in posts()
    assert [r.json["message"] for r in setup.chat.requests] == [f"question {i}" for i in range(5)]
    [line] = untold(caplog)  # one line for the burst, not one a refusal
    assert line.startswith(f"25 refusal(s) in discord channel {setup.ask} ")


async def test_refusals_are_told_where_the_channels_posts_have_room_beyond_its_answers(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Discord's own window: 2 answers taken, and room for the 3 refused in it.
    limited(setup, monkeypatch, "{count: 5, per: 5.0}", "max_concurrent_streams: 1, queue_size: 1")
    caplog.set_level(logging.INFO, logger="chat_bridge")
    fake = setup.discord
    users = [fake.add_user(f"u{i}") for i in range(5)]
    for user in users:
        fake.add_member(setup.guild, user)
    begin = asyncio.Event()  # (as above)
    for i in range(2):
        setup.chat.enqueue(tokens=[f"Answer {i} ", "in full."], token_delay=0.1, gate=begin)
    async with setup.bridge():
        for i, user in enumerate(users):
            await fake.say(setup.ask, user, f"question {i}")
        await fake.wait_until(
            lambda: [m["content"] for m in fake.channel_messages(setup.ask)].count(BUSY) == 3
        )
        begin.set()
        await setup.final(setup.ask, "in full.", count=2)
    assert not untold(caplog)
    assert fake.rate_limited == 0


async def test_a_busy_conversations_refusal_is_told_though_its_queue_is_long(
    setup: Setup,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every question waiting in the conversation held a post for its first words:
    # with five and more, a refusal never found room, and "already has questions
    # waiting" was never said. Those behind another show nothing until it ends.
    caplog.set_level(logging.INFO, logger="chat_bridge")
    fake = setup.discord
    users = [fake.add_user(f"u{i}") for i in range(13)]
    for user in users:
        fake.add_member(setup.guild, user)
    begin = asyncio.Event()
    for i in range(13):
        setup.chat.enqueue(tokens=[f"Answer {i} ", "in full."], gate=begin)
    async with setup.bridge():
        for i, user in enumerate(users):  # one conversation: the channel's
            await fake.mention(setup.general, user, f"question {i}")
        await fake.wait_until(
            lambda: (
                CONVERSATION_BUSY in [m["content"] for m in fake.channel_messages(setup.general)]
            )
        )
        begin.set()
        await setup.final(setup.general, "in full.", count=11)
    assert not untold(caplog)
