"""Bot messages in a row in a conversation: counted once each, reset by a person, and
never more conversations remembered than MAX_PLACES; end to end, two bots do not answer
each other for ever."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.platforms.slack.loops import BOT_TURNS, MAX_PLACES, BotTurns
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Harness, open_harness


async def bot_asks(
    h: Harness, text: str, *, user: str = "U0OTHERBOT", bot_id: str = "B0OTHER01"
) -> str:
    """Another bot asks the bridge `text` at the channel's top level: its post's ts."""
    mention = f"<@{h.slack.bot_user_id}>"
    bodies = h.slack.user_message(CHANNEL, f"{mention} {text}", user=user, bot_id=bot_id)
    for body in bodies:
        await h.send(body)
    return str(bodies[0]["event"]["ts"])


def test_bot_turns_are_counted_per_conversation_until_a_person_writes() -> None:
    turns = BotTurns()
    thread, other = ("T1", "C1", "1.1"), ("T1", "C1", "2.2")
    assert [turns.bot(thread, f"3.{n}") for n in range(BOT_TURNS + 1)] == list(
        range(1, BOT_TURNS + 2)
    )
    assert turns.bot(thread, f"3.{BOT_TURNS}") == BOT_TURNS + 1  # the same message again
    assert turns.bot(other, "4.1") == 1  # another thread's are its own
    turns.person(thread)
    assert turns.bot(thread, "5.1") == 1
    assert turns.bot(other, "4.2") == 2


def test_no_more_conversations_are_remembered_than_max_places() -> None:
    turns = BotTurns()
    for n in range(MAX_PLACES + 50):
        turns.bot(("T1", "C1", f"{n}.0"), "9.9")
    assert len(turns._turns) == MAX_PLACES
    assert turns.bot(("T1", "C1", "0.0"), "9.9") == 1  # forgotten
    assert turns.bot(("T1", "C1", f"{MAX_PLACES + 49}.0"), "9.9") == 1  # the same message


async def test_two_bots_do_not_answer_each_other_for_ever(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With `ignore_bots: false`, another assistant that answers in the threads it is in
    # and the bridge answered each other for ever, each turn a chat API request.
    caplog.set_level(logging.INFO)
    h, bridge = await open_harness(fake_slack, fake_chat_api, tmp_path, mode, "ignore_bots: false")
    chat = fake_chat_api

    async def other_bot(text: str, *, retried: bool = False) -> None:
        [body] = fake_slack.user_message(
            CHANNEL, text, thread_ts=root, user="U0OTHERBOT", bot_id="B0OTHER01"
        )
        await h.send(body)
        if retried:  # Slack's retry is the same message: one turn
            await h.send(body, retry=1)

    try:
        for n in range(BOT_TURNS + 1):
            chat.enqueue(tokens=[f"Answer {n}."])
        root = await h.ask(CHANNEL, "what is a bridge?")
        await h.answer(CHANNEL, root, "Answer 0.")
        for n in range(1, BOT_TURNS + 1):
            await other_bot(f"Bot reply {n}", retried=n == 1)
            await h.answer(CHANNEL, root, f"Answer {n}.", n=n + 1)
        for n in range(BOT_TURNS + 1, BOT_TURNS + 4):
            await other_bot(f"Bot reply {n}")
        asked = [f"Bot reply {n}" for n in range(1, BOT_TURNS + 1)]
        assert await h.sentinel() == ["what is a bridge?", *asked, "sentinel"]
        [warned] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert "U0OTHERBOT" in warned and CHANNEL in warned and root in warned
        # A person writes there: the other bot is answered there again.
        chat.enqueue(tokens=["To the person."])
        chat.enqueue(tokens=["To the bot."])
        await h.ask(CHANNEL, "and now?", thread_ts=root, mention=False)
        await h.answer(CHANNEL, root, "To the person.", n=BOT_TURNS + 2)
        await other_bot("Bot again")
        await h.answer(CHANNEL, root, "To the bot.", n=BOT_TURNS + 3)
        assert [r.json["message"] for r in chat.requests][-2:] == ["and now?", "Bot again"]
    finally:
        await bridge.aclose()


async def test_a_bot_that_answers_at_the_top_level_is_no_endless_loop_either(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Another bot that posts in the channel, mentioning the bridge, for each of its
    # answers: each of its posts opened a thread of its own for its answer, counted
    # apart, so the brake never held and every post was a chat API request.
    caplog.set_level(logging.INFO)
    h, bridge = await open_harness(
        fake_slack, fake_chat_api, tmp_path, "socket", "ignore_bots: false"
    )
    chat = fake_chat_api
    try:
        for n in range(BOT_TURNS + 1):
            chat.enqueue(tokens=[f"Answer {n}."])
        root = await h.ask(CHANNEL, "what is a bridge?")
        await h.answer(CHANNEL, root, "Answer 0.")
        for n in range(1, BOT_TURNS + 4):
            post = await bot_asks(h, f"echo {n}")
            if n <= BOT_TURNS:
                await h.answer(CHANNEL, post, f"Answer {n}.")
        asked = [f"echo {n}" for n in range(1, BOT_TURNS + 1)]
        assert await h.sentinel() == ["what is a bridge?", *asked, "sentinel"]
        [warned] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert "U0OTHERBOT" in warned and "its top level" in warned
    finally:
        await bridge.aclose()


async def test_a_notifier_whose_posts_people_discuss_in_their_threads_is_answered(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A CI bot asking the bridge at the top level about each failure, people talking
    # in each post's thread: no loop, and every post is answered.
    h, bridge = await open_harness(
        fake_slack, fake_chat_api, tmp_path, "socket", "ignore_bots: false"
    )
    try:
        for n in range(BOT_TURNS + 1):
            fake_chat_api.enqueue(tokens=[f"Build {n} broke on a test."])
            fake_chat_api.enqueue(tokens=["Revert it."])
            post = await bot_asks(h, f"build {n} failed", user="U0CIBOT01", bot_id="B0CIBOT01")
            await h.answer(CHANNEL, post, f"Build {n} broke on a test.")
            await h.ask(CHANNEL, "what now?", thread_ts=post)
            await h.answer(CHANNEL, post, "Revert it.", n=2)
        asked = [f"build {n} failed" for n in range(BOT_TURNS + 1)]
        assert (await h.sentinel())[::2] == [*asked, "sentinel"]
    finally:
        await bridge.aclose()


async def test_people_talking_in_a_thread_of_their_own_do_not_lift_the_top_levels_brake(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Any person's message in any thread of the channel reset the top level's count: a
    # bot looping with the bridge there was never held while people chatted elsewhere.
    h, bridge = await open_harness(
        fake_slack, fake_chat_api, tmp_path, "socket", "ignore_bots: false"
    )
    try:
        [lunch] = fake_slack.user_message(CHANNEL, "lunch?", user="U0PERSON2")
        await h.send(lunch)
        for n in range(1, BOT_TURNS + 1):
            fake_chat_api.enqueue(tokens=[f"Answer {n}."])
        for n in range(1, BOT_TURNS + 4):
            post = await bot_asks(h, f"echo {n}")
            if n <= BOT_TURNS:
                await h.answer(CHANNEL, post, f"Answer {n}.")
            [chatter] = fake_slack.user_message(
                CHANNEL, f"pizza {n}", user="U0PERSON2", thread_ts=lunch["event"]["ts"]
            )
            await h.send(chatter)
        asked = [f"echo {n}" for n in range(1, BOT_TURNS + 1)]
        assert await h.sentinel() == [*asked, "sentinel"]
    finally:
        await bridge.aclose()
