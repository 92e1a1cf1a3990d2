"""Discord end to end: while the bridge stops (an answer finishing within the grace), a
question asked is told to ask again, as a slash command is: Discord never delivers a
message again, and the next process would never see it. Other messages are left
unsaid (the real Bridge and discord.py client against the fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bridge.app import Bridge
from bridge.interfaces import STOPPING_TEXT
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import fake_discord  # noqa: F401
from tests.platforms.discord_support import Setup, assert_never_pinged, setup  # noqa: F401


@asynccontextmanager
async def stopping(setup: Setup) -> AsyncIterator[Bridge]:
    """A bridge stopping while the block runs: its stop waits for an answer in #general
    held back (its first words gated), and ends, the answer shown, as the block does."""
    gate = asyncio.Event()
    setup.chat.enqueue(tokens=["Answered before the stop."], gate=gate)
    async with setup.bridge() as bridge:
        asked = len(setup.chat.requests)
        await setup.discord.mention(setup.general, setup.alice, "asked before the stop?")
        await setup.chat.wait_requests(asked + 1)
        drain = asyncio.create_task(bridge.drain())
        await wait_for(lambda: not bridge.relay.accepting)
        try:
            yield bridge
        finally:
            gate.set()
            assert await asyncio.wait_for(drain, 20)
    answers = [
        m for m in setup.discord.channel_messages(setup.general) if m.get("webhook_id") is None
    ]
    assert [m["content"] for m in answers] == ["Answered before the stop."]


def told(setup: Setup, channel: str) -> list[str]:
    return [m["content"] for m in setup.discord.channel_messages(channel)]


async def test_a_question_asked_during_a_stop_is_told_to_ask_again(setup: Setup) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First answer."])
    async with setup.bridge() as bridge:  # a thread the bot answers in, followed without a mention
        first = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = first["id"]
        await setup.final(thread, "First answer.")
        # Its record ended too, or the next start would mark the answer interrupted.
        await wait_for(lambda: bridge.relay.live == 0)
    async with stopping(setup):
        mention = await fake.mention(setup.help, setup.bob, "asked during the stop?")
        dm = await fake.dm(setup.alice, "a private one during the stop?")
        follow_up = await fake.say(thread, setup.bob, "and its height?")
        await fake.wait_until(
            lambda: (
                told(setup, setup.help) == [STOPPING_TEXT]
                and told(setup, dm["channel_id"]) == [STOPPING_TEXT]
                and told(setup, thread) == ["First answer.", STOPPING_TEXT]
            )
        )
        await fake.redeliver(mention)  # a gateway replay: not told twice
    assert told(setup, setup.help) == [STOPPING_TEXT]
    for question in (mention, dm, follow_up):
        [notice] = [
            r
            for r in fake.sent("POST", rf"/channels/{question['channel_id']}/messages$")
            if r.body["content"] == STOPPING_TEXT
        ]
        assert notice.body["message_reference"]["message_id"] == int(question["id"])
    assert_never_pinged(fake)
    asked = [r.json["message"] for r in setup.chat.requests]
    assert asked == ["How long is the bridge?", "asked before the stop?"]


async def test_messages_that_ask_nothing_during_a_stop_stay_unsaid(setup: Setup) -> None:
    fake = setup.discord
    unrouted = fake.add_channel(setup.guild, "random")
    setup.chat.enqueue(tokens=["First answer."])
    async with setup.bridge() as bridge:  # a thread the bot follows
        first = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = first["id"]
        await setup.final(thread, "First answer.")
        await wait_for(lambda: bridge.relay.live == 0)
    async with stopping(setup):
        await fake.say(setup.general, setup.bob, "just chatting, no mention")
        await fake.mention(unrouted, setup.bob, "a channel no route serves")
        # A picture alone where the bot follows: nobody asked (as outside a stop).
        await fake.say(thread, setup.bob, "", files=("cat.png",))
        # After them: once it is told, they were taken or left.
        question = await fake.say(thread, setup.bob, "and a question?")
        await fake.wait_until(lambda: told(setup, thread) == ["First answer.", STOPPING_TEXT])
    assert told(setup, unrouted) == []  # (and #general holds the answer alone)
    [notice] = [
        r
        for r in fake.sent("POST", rf"/channels/{thread}/messages$")
        if r.body["content"] == STOPPING_TEXT
    ]
    assert notice.body["message_reference"]["message_id"] == int(question["id"])
    asked = [r.json["message"] for r in setup.chat.requests]
    assert asked == ["How long is the bridge?", "asked before the stop?"]


async def test_a_slash_command_during_a_stop_is_told_the_same_privately(setup: Setup) -> None:
    fake = setup.discord
    async with stopping(setup):
        await fake.invoke(setup.general, setup.bob, "ask", {"question": "now?"})
        [callback] = await fake.wait_until(lambda: fake.sent("POST", r"/callback$"))
    assert callback.body["data"]["content"] == STOPPING_TEXT
    assert callback.body["data"]["flags"] & 64  # only the asker sees it
    assert [r.json["message"] for r in setup.chat.requests] == ["asked before the stop?"]
