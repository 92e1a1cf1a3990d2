"""Discord end to end: where the bot may not post, reply or open threads, nothing is asked of the
chat API that could not be shown, and what can be shown goes where it may (the real Bridge
and discord.py client against the fakes)."""

from __future__ import annotations

import logging

import pytest

from tests.core.fakeplatform import wait_for
from tests.fakes.discord import (
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
)
from tests.platforms.discord_support import Setup


async def test_where_a_moderator_took_the_bots_voice_nothing_is_asked_of_the_chat_api(
    setup: Setup,
) -> None:
    # Denying Send Messages is how a moderator mutes a bot in one channel: every
    # message there went to the (paid, outside) chat API, for answers nobody saw.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered ", "elsewhere."])
    async with setup.bridge():
        await fake.deny_bot(setup.ask, SEND_MESSAGES)
        await fake.say(setup.ask, setup.alice, "a plain message in the muted channel")
        await fake.mention(setup.ask, setup.bob, "and one that asks the bot")
        await fake.mention(setup.general, setup.alice, "Still there?")  # comes after them
        await setup.final(setup.general, "Answered elsewhere.")
    assert [r.json["message"] for r in setup.chat.requests] == ["Still there?"]
    assert fake.channel_messages(setup.ask) == []
    assert not fake.errors  # not even a refused typing request


async def test_without_read_message_history_the_answer_is_posted_as_no_reply(
    setup: Setup,
) -> None:
    # A reply (message reference) needs Read Message History: every answer there was
    # refused, after the chat API had been asked and paid. The same goes for a reply
    # to the answer's own message before (a long answer's second one).
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"word{i:05d} " for i in range(250)] + ["Posted ", "plainly."])
    async with setup.bridge():
        await fake.deny_bot(setup.ask, READ_MESSAGE_HISTORY)
        await fake.mention(setup.ask, setup.bob, "How do I deploy?")
        await setup.final(setup.ask, "Posted plainly.")
    answers = fake.channel_messages(setup.ask)
    assert len(answers) == 2
    assert all("message_reference" not in answer for answer in answers)
    assert not fake.errors


async def test_a_channel_for_threads_only_is_answered_in_a_thread(setup: Setup) -> None:
    # Send Messages denied, threads allowed: a route that answers in a new thread
    # needs no more (it was left silent with the rest).
    fake = setup.discord
    setup.chat.enqueue(tokens=["In ", "a thread."])
    async with setup.bridge():
        await fake.deny_bot(setup.help, SEND_MESSAGES)
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await setup.final(question["id"], "In a thread.")
    assert fake.channels[question["id"]]["parent_id"] == setup.help
    assert fake.channel_messages(setup.help) == []


async def test_a_voice_channels_chat_is_answered_in_it_without_asking_for_a_thread(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # No thread opens there: asking for one every time spent the bot-wide budget
    # and logged a warning an admin would chase.
    fake = setup.discord
    fake.channels[setup.help].update(type=2, bitrate=64000, user_limit=0, rtc_region=None)
    setup.chat.enqueue(tokens=["In the channel."])
    async with setup.bridge():
        await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await setup.final(setup.help, "In the channel.")
    assert not [r for r in fake.requests if r.path.endswith("/threads")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_voice_channels_chat_where_the_bot_may_not_post_asks_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # A voice channel's chat has no threads to answer in, whatever the permissions say.
    fake = setup.discord
    fake.channels[setup.help].update(type=2, bitrate=64000, user_limit=0, rtc_region=None)
    async with setup.bridge():
        await fake.deny_bot(setup.help, SEND_MESSAGES)
        await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await wait_for(
            lambda: any(
                "the bot lacks Send Messages there" in r.getMessage() for r in caplog.records
            )
        )
    assert setup.chat.requests == []
    assert not [r for r in fake.requests if r.path.endswith("/threads")]


async def test_a_channel_for_threads_only_where_no_thread_opens_asks_and_says_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # The answer would have been posted where the bot may not post (403), and a
    # refusal the same: the chat API was paid for an answer nobody saw.
    fake = setup.discord
    async with setup.bridge():
        await fake.deny_bot(setup.help, SEND_MESSAGES)
        sent = len(fake.requests)
        fake.drop.append(("POST", r"/messages/\d+/threads$"))  # the thread does not open
        await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await fake.mention(setup.help, setup.alice, "")  # a refusal: "ask me in words"
        await fake.wait_until(lambda: not fake.drop)
        await wait_for(
            lambda: (
                sum(
                    "no thread could be opened" in r.getMessage()
                    or "not telling the asker" in r.getMessage()
                    for r in caplog.records
                )
                == 2
            )
        )
        posts = [
            r
            for r in fake.requests[sent:]
            if r.method == "POST" and r.path.endswith(f"/channels/{setup.help}/messages")
        ]
    assert setup.chat.requests == []
    assert posts == []  # neither the answer nor the refusal


async def test_a_locked_thread_is_left_to_its_moderators_until_unlocked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # In a locked thread only members with Manage Threads may post: each message a
    # moderator wrote there was asked of the chat API, and its answer refused
    # (160005 "Thread is locked"), with a WARNING for each.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    setup.chat.enqueue(tokens=["First ", "answer."])
    setup.chat.enqueue(tokens=["Open ", "again."])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = question["id"]
        await setup.final(thread, "First answer.")
        await fake.lock_thread(thread)
        await fake.say(thread, setup.alice, "Locking this: resolved.")
        await wait_for(
            lambda: any(
                "the bot lacks Manage Threads (the thread is locked) there" in r.getMessage()
                for r in caplog.records
            )
        )
        await fake.lock_thread(thread, locked=False)
        await fake.say(thread, setup.bob, "Reopened: one more thing?")
        await setup.final(thread, "Open again.")
    asked = [r.json["message"] for r in setup.chat.requests]
    assert asked == ["How long is the bridge?", "Reopened: one more thing?"]
    assert fake.rejected == []  # neither a post nor typing while it was locked
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_bot_that_may_manage_threads_answers_in_a_locked_one(setup: Setup) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First ", "answer."])
    setup.chat.enqueue(tokens=["Still ", "here."])
    async with setup.bridge():
        await fake.allow_bot(setup.help, MANAGE_THREADS)
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = question["id"]
        await setup.final(thread, "First answer.")
        await fake.lock_thread(thread)
        await fake.say(thread, setup.alice, "Locked, but one more thing?")
        await setup.final(thread, "Still here.")
    assert fake.rejected == []


async def test_a_thread_the_bot_never_heard_of_where_it_may_not_post_asks_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # discord.py gives only the id of a thread it has not seen (no THREAD_CREATE for a
    # private thread the bot was not in): what the bot may do there went unread, and
    # the question was asked of the chat API for an answer Discord refused.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    async with setup.bridge():
        await fake.deny_bot(setup.general, SEND_MESSAGES_IN_THREADS)
        thread = await fake.add_thread(setup.general, "hr", private=True, quietly=True)
        await fake.mention(thread, setup.alice, "Who do I ask about leave?")
        await wait_for(
            lambda: any(
                "the bot lacks Send Messages in Threads there" in r.getMessage()
                for r in caplog.records
            )
        )
    assert setup.chat.requests == []
    assert fake.rejected == []
