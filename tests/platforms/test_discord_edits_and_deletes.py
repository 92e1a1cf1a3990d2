"""Discord end to end: a question edited, deleted or delivered again before, while or after it is
answered is answered once, or not at all once deleted (the real Bridge and discord.py client
against the fakes)."""

from __future__ import annotations

import asyncio

import pytest

from adapters.platforms.discord import inbound as discord_inbound
from adapters.platforms.discord.inbound import EDIT_WINDOW
from bridge.intake import MENTION_HELP
from tests.platforms.discord_support import Setup


@pytest.mark.parametrize("where", ["general", "help"])
async def test_a_question_deleted_while_it_is_answered_ends_the_answer(
    setup: Setup, where: str
) -> None:
    # Deleted as its answer streamed (a secret pasted by mistake): the answer stopped,
    # but what it had shown stayed for good, cut mid-sentence with no mark, looking
    # whole, drawn from the question taken back. Now it goes with its question, in
    # the channel or in the thread opened on the question.
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"word{i} " for i in range(100)], token_delay=0.05)
    channel = getattr(setup, where)
    async with setup.bridge() as bridge:
        question = await fake.mention(channel, setup.alice, "Something a moderator removes")
        shown_in = question["id"] if where == "help" else channel
        await fake.wait_until(
            lambda: any("word3" in m["content"] for m in fake.channel_messages(shown_in))
        )
        sent = len(fake.requests)
        await fake.delete_message(question["id"])
        await setup.chat.wait_disconnects(1)  # the answer's stream is let go
        await fake.wait_until(lambda: not fake.channel_messages(shown_in))
        failed = 'outcome="failed",platform="discord"} 1.0'
        async with asyncio.timeout(10):  # counted as before
            while failed not in bridge.metrics.render().decode():
                await asyncio.sleep(0.01)
        later = fake.requests[sent:]
    assert len([r for r in later if r.method in ("POST", "PATCH") and "/messages" in r.path]) <= 1
    assert [r.method for r in later if r.method == "DELETE"] == ["DELETE"]  # its one message


async def test_a_question_deleted_while_it_waits_its_turn_is_never_asked(setup: Setup) -> None:
    # Deleted (a password posted by mistake) while the answer before it streamed: it
    # was sent to the chat API all the same, and paid for.
    setup.chat.enqueue(tokens=["First ", "answer."], token_delay=0.5)
    setup.chat.enqueue(tokens=["After."])
    fake = setup.discord
    async with setup.bridge() as bridge:
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread_id = question["id"]
        await fake.wait_until(lambda: fake.channel_messages(thread_id))
        oops = await fake.say(thread_id, setup.bob, "my password is hunter2")
        await fake.delete_message(oops["id"])
        await setup.final(thread_id, "First answer.")
        await fake.say(thread_id, setup.bob, "And then?")
        await setup.final(thread_id, "After.")
        metrics = bridge.metrics.render().decode()
    assert [r.json["message"] for r in setup.chat.requests] == [
        "How long is the bridge?",
        "And then?",
    ]
    # Counted: every message taken ends in one outcome.
    assert 'outcome="withdrawn",platform="discord"} 1.0' in metrics


@pytest.mark.parametrize("window", [EDIT_WINDOW, 0.0])
async def test_a_question_edited_to_mention_the_bot_is_answered_once_if_recent(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, window: float
) -> None:
    # Someone forgot to mention the bot, and edits the message to add it.
    monkeypatch.setattr(discord_inbound, "EDIT_WINDOW", window)
    fake, me = setup.discord, f"<@{setup.discord.app_id}>"
    if window:
        setup.chat.enqueue(tokens=["Now answered."])
    setup.chat.enqueue(tokens=["Next."])
    async with setup.bridge():
        question = await fake.say(setup.general, setup.alice, "how do bridges work?")
        await fake.edit(question["id"], f"{me} how do bridges work?")
        if window:
            await setup.final(setup.general, "Now answered.")
            # Edited again (a typo): it was answered already.
            await fake.edit(question["id"], f"{me} how do bridges work, then?")
        await fake.mention(setup.general, setup.bob, "and then?")
        msgs = await setup.final(setup.general, "Next.")
    asked = [r.json["message"] for r in setup.chat.requests]
    if window:
        assert asked == ["how do bridges work?", "and then?"]
        assert [m["content"] for m in msgs] == ["Now answered.", "Next."]
    else:  # an edit of an older message is not taken as a question
        assert asked == ["and then?"]


async def test_a_question_edited_while_it_is_answered_is_answered_once_and_still_withdrawn(
    setup: Setup,
) -> None:
    # A typo fixed while the answer streams: that answer goes on alone, and a
    # moderator deleting the question still stops it (what it showed goes too).
    fake = setup.discord
    setup.chat.enqueue(tokens=["word "] * 100, token_delay=0.05)
    async with setup.bridge():
        question = await fake.mention(setup.general, setup.alice, "Something with a tpyo")
        await fake.wait_until(lambda: fake.channel_messages(setup.general))
        await fake.edit(question["id"], f"<@{fake.app_id}> Something with a typo")
        await fake.delete_message(question["id"])
        await setup.chat.wait_disconnects(1)  # the answer's stream is let go
        await fake.wait_until(lambda: not fake.channel_messages(setup.general))
    assert len(setup.chat.requests) == 1


async def test_an_empty_mention_edited_to_hold_its_question_is_answered_once(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered."])
    setup.chat.enqueue(tokens=["Sentinel."])
    async with setup.bridge():
        empty = await fake.mention(setup.general, setup.bob, "")
        await setup.final(setup.general, "I will answer it.")
        await fake.redeliver(empty)  # delivered again: told once
        edited = await fake.edit(empty["id"], f"<@{fake.app_id}> how do I deploy?")
        await setup.final(setup.general, "Answered.")
        await fake.redeliver(edited)  # and again: answered once
        await fake.mention(setup.general, setup.bob, "sentinel")  # taken after it
        msgs = await setup.final(setup.general, "Sentinel.")
    assert [m["content"] for m in msgs] == [MENTION_HELP, "Answered.", "Sentinel."]
    assert [r.json["message"] for r in setup.chat.requests] == ["how do I deploy?", "sentinel"]


async def test_a_replayed_message_is_answered_once(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["Once."])
    setup.chat.enqueue(tokens=["Twice."])
    async with setup.bridge():
        question = await setup.discord.mention(setup.general, setup.alice, "only once")
        await setup.final(setup.general, "Once.")
        await setup.discord.redeliver(question)  # a gateway replay of the same event
        await setup.discord.mention(setup.general, setup.alice, "a new question")
        msgs = await setup.final(setup.general, "Twice.")
    assert [m["content"] for m in msgs] == ["Once.", "Twice."]
    assert [r.json["message"] for r in setup.chat.requests] == ["only once", "a new question"]


async def test_an_answered_question_edited_down_to_the_mention_is_told_nothing(
    setup: Setup,
) -> None:
    # A secret pasted by mistake and cut from the question after its answer: the edit
    # asks nothing, and the bot is not to post that it should be asked something.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered."])
    setup.chat.enqueue(tokens=["Sentinel."])
    async with setup.bridge():
        question = await fake.mention(
            setup.general, setup.bob, "why does login fail with password hunter2?"
        )
        await setup.final(setup.general, "Answered.")
        await fake.edit(question["id"], f"<@{fake.app_id}>")
        await fake.mention(setup.general, setup.bob, "sentinel")
        await setup.final(setup.general, "Sentinel.")
    shown = [m["content"] for m in fake.channel_messages(setup.general)]
    assert MENTION_HELP not in shown and "Answered." in shown
