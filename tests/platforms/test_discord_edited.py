"""Discord end to end: a question edited after (or while) it is answered is kept in its
conversation's history as it reads now, which a stateless chat API is sent with every
later question; edited down to the bot's mention, it is forgotten. One edited while it
waits its turn is asked as it reads then, or not at all (the real Bridge and
discord.py client against the fakes)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.app import Bridge
from bridge.deletions import question_id
from tests.fakes.chatapi import fake_chat_api  # noqa: F401
from tests.fakes.discord import fake_discord  # noqa: F401
from tests.platforms.discord_support import Setup, setup  # noqa: F401
from tests.platforms.test_discord_deleted import SECRET, place, secret_kept, sent

EDITED = "it says my password is wrong"


async def kept_as(bridge: Bridge, key: str, wanted: list[str]) -> None:
    """Wait until the conversation `key` keeps `wanted` (an edit is taken after its event)."""
    async with asyncio.timeout(10):
        while [turn.content for turn in await bridge.store.history(key)] != wanted:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("where", ["thread", "post", "channel", "dm"])
async def test_a_question_edited_once_answered_is_sent_as_it_reads_now(
    setup: Setup, where: str
) -> None:
    # Edited once its answer was shown (a password cut from it): its turn kept the text
    # it had, and a stateless chat API was sent the password again with every question.
    fake, chat = setup.discord, setup.chat
    setup.stateless = True
    if where == "post":
        setup.ask = fake.add_forum(setup.guild, "questions")
        chat.enqueue(tokens=["Hello."])
    for text in ("First.", "Second.", "Third."):
        chat.enqueue(tokens=[text])
    async with setup.bridge() as bridge:
        here = await place(setup, where)
        if where == "post":
            await setup.final(here.shown_in, "Hello.")
        await here.say("how do I log in?")
        await setup.final(here.shown_in, "First.")
        secret = await here.say(SECRET)
        await setup.final(here.shown_in, "Second.")
        kept = await secret_kept(bridge, here.key)
        # Read as a question is: the mention that only addresses the bot goes.
        mention = f"<@{fake.app_id}> " if where == "channel" else ""
        await fake.edit(secret["id"], f"{mention}{EDITED}")
        await kept_as(bridge, here.key, [EDITED if t == SECRET else t for t in kept])
        await here.say("where are the docs?")
        await setup.final(here.shown_in, "Third.")
    assert sent(chat)[-5:] == [
        "how do I log in?",
        "First.",
        EDITED,
        "Second.",
        "where are the docs?",
    ]
    assert not any("hunter2" in content for content in sent(chat))


@pytest.mark.parametrize("content", [True, False], ids=["read", "unread"])
async def test_a_question_edited_down_to_the_mention_is_forgotten(
    setup: Setup, content: bool
) -> None:
    # The secret cut and nothing left but the mention: the asker is told nothing, and
    # the turn goes as a deleted question's does. Without the Message Content intent,
    # an edit that drops the mention comes without its text: the turn goes too.
    fake, chat = setup.discord, setup.chat
    setup.stateless = True
    if not content:
        setup.discord_extra = "message_content: false"
        fake.message_content_enabled = False
    for text in ("First.", "Second.", "Third."):
        chat.enqueue(tokens=[text])
    async with setup.bridge() as bridge:
        here = await place(setup, "channel")
        await here.say("how do I log in?")
        await setup.final(here.shown_in, "First.")
        secret = await here.say(SECRET)
        await setup.final(here.shown_in, "Second.")
        await secret_kept(bridge, here.key)
        await fake.edit(secret["id"], f"<@{fake.app_id}>" if content else EDITED)
        await kept_as(bridge, here.key, ["how do I log in?", "First."])
        await here.say("where are the docs?")
        await setup.final(here.shown_in, "Third.")
    assert sent(chat) == ["how do I log in?", "First.", "where are the docs?"]
    # Nobody was told anything (the bot's messages there are its three answers).
    assert [m["content"] for m in fake.channel_messages(here.shown_in)] == [
        "First.",
        "Second.",
        "Third.",
    ]


async def test_a_question_edited_while_it_is_answered_is_kept_as_edited(
    setup: Setup,
) -> None:
    # Edited as its answer streamed, before its turn was kept: the edit found no turn
    # to change, and the turn was kept with the password.
    fake, chat = setup.discord, setup.chat
    setup.stateless = True
    chat.enqueue(tokens=["First."])
    chat.enqueue(tokens=["word "] * 30, token_delay=0.05)
    chat.enqueue(tokens=["Third."])
    async with setup.bridge() as bridge:
        here = await place(setup, "thread")
        await here.say("how do I log in?")
        await setup.final(here.shown_in, "First.")
        secret = await here.say(SECRET)
        await fake.wait_until(lambda: "word" in fake.channel_messages(here.shown_in)[-1]["content"])
        await fake.edit(secret["id"], EDITED)
        await kept_as(bridge, here.key, ["how do I log in?", "First.", EDITED, "word " * 30])
        await here.say("where are the docs?")
        await setup.final(here.shown_in, "Third.")
    assert not any("hunter2" in content for content in sent(chat))
    assert EDITED in sent(chat)


async def edited_while_it_waits(setup: Setup, bridge: Bridge, text: str) -> None:
    """alice asks in #general, holding SECRET, while a long answer streams there, and
    edits it to `text` (after the bot's mention) while it waits its turn."""
    fake, chat = setup.discord, setup.chat
    await fake.mention(setup.general, setup.alice, "tell me a long story")
    await fake.wait_until(
        lambda: any("w1" in m["content"] for m in fake.channel_messages(setup.general))
    )
    q = await fake.mention(setup.general, setup.alice, SECRET)
    await fake.edit(q["id"], f"<@{fake.app_id}> {text}".rstrip())
    question = question_id("discord", setup.guild, setup.general, q["id"])
    async with asyncio.timeout(10):
        while (await bridge.relay.edits.latest(question)).text is None:
            await asyncio.sleep(0.01)
    assert len(chat.requests) == 1  # edited while it waited behind the story


async def test_a_question_edited_while_it_waits_is_asked_as_it_reads_now(
    setup: Setup,
) -> None:
    # Edited (the password cut) while it waited its turn: a stateful chat API was asked
    # the text it came with, and kept it in its session.
    chat = setup.chat
    chat.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.05)
    chat.enqueue(tokens=["Second."])
    async with setup.bridge() as bridge:
        await edited_while_it_waits(setup, bridge, EDITED)
        await setup.final(setup.general, "Second.")
    assert chat.requests[-1].json["message"] == EDITED
    assert not any("hunter2" in r.json["message"] for r in chat.requests)


async def test_a_question_edited_down_to_the_mention_while_it_waits_is_not_asked(
    setup: Setup,
) -> None:
    # Nothing left but the mention: not asked (nor told anything), as if deleted.
    fake, chat = setup.discord, setup.chat
    chat.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.05)
    chat.enqueue(tokens=["Third."])
    async with setup.bridge() as bridge:
        await edited_while_it_waits(setup, bridge, "")
        await setup.final(setup.general, "w39 ")
        await fake.mention(setup.general, setup.alice, "where are the docs?")
        await setup.final(setup.general, "Third.")
    assert [r.json["message"] for r in chat.requests] == [
        "tell me a long story",
        "where are the docs?",
    ]
    assert [
        m["content"]
        for m in fake.channel_messages(setup.general)
        if m["author"]["id"] == fake.app_id
    ][-1:] == ["Third."]
