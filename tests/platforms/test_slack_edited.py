"""End to end: a Slack question edited once it was answered (a password cut from it)
is kept in its conversation's history as it reads now, which a stateless chat API is
sent with every later question; edited down to the bot's mention, it is forgotten. One
edited while it waits its turn is asked as it reads then, or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.deletions import question_id
from tests.core.fakeplatform import wait_for
from tests.core.relay_support import refused
from tests.platforms.slack_support import CHANNEL, DM, Harness
from tests.platforms.test_slack_deleted import SECRET, harness, sent  # noqa: F401

EDITED = "it says my password is wrong"


async def kept_as(harness: Harness, key: str, wanted: list[str]) -> None:
    """Wait until the conversation `key` keeps `wanted` (an edit is taken after its ack)."""
    async with asyncio.timeout(10):
        while [turn.content for turn in await harness.bridge.store.history(key)] != wanted:
            await asyncio.sleep(0.01)


async def secret_answered(harness: Harness) -> tuple[str, dict[str, Any], str]:
    """A thread whose second question, holding SECRET, is answered: the thread's ts,
    that question's event body, and the conversation's key."""
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["First."])
    root = await harness.ask(CHANNEL, "how do I log in?")
    await harness.answer(CHANNEL, root, "First.")
    chat.enqueue(tokens=["Second."])
    [body] = slack.user_message(CHANNEL, SECRET, thread_ts=root)
    await harness.send(body)
    await harness.answer(CHANNEL, root, "Second.", n=2)
    return root, body, f"slack:{slack.team_id}:thread:{CHANNEL}:{root}|docs"


async def test_a_question_edited_once_answered_is_sent_as_it_reads_now(
    harness: Harness,
) -> None:
    # Edited once its answer was shown: its turn kept the text it had, and a stateless
    # chat API was sent the password again with every later question.
    slack, chat = harness.slack, harness.chat
    root, body, key = await secret_answered(harness)
    for edit in slack.user_edit(CHANNEL, body["event"]["ts"], f"<@{slack.bot_user_id}> {EDITED}"):
        await harness.send(edit)
    # Read as a question is: the bot's mention that only addresses it goes.
    await kept_as(harness, key, ["how do I log in?", "First.", EDITED, "Second."])
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert sent(chat) == ["how do I log in?", "First.", EDITED, "Second.", "where are the docs?"]
    assert len(slack.bot_replies(CHANNEL, root)) == 3  # the edit is not answered again


async def test_a_question_edited_down_to_the_mention_is_forgotten(
    harness: Harness,
) -> None:
    # The secret cut and nothing left but the mention: the asker is told nothing,
    # and the turn goes as a deleted question's does.
    slack, chat = harness.slack, harness.chat
    root, body, key = await secret_answered(harness)
    for edit in slack.user_edit(CHANNEL, body["event"]["ts"], f"<@{slack.bot_user_id}>"):
        await harness.send(edit)
    await kept_as(harness, key, ["how do I log in?", "First."])
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert sent(chat) == ["how do I log in?", "First.", "where are the docs?"]


async def test_a_question_edited_while_it_is_answered_is_kept_as_edited(
    harness: Harness,
) -> None:
    # Edited as its answer streamed, before its turn was kept: the edit found no turn
    # to change, and the turn was kept with the password.
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["First."])
    root = await harness.ask(CHANNEL, "how do I log in?")
    await harness.answer(CHANNEL, root, "First.")
    chat.enqueue(tokens=[f"w{i} " for i in range(30)], token_delay=0.05)
    [body] = slack.user_message(CHANNEL, SECRET, thread_ts=root)
    await harness.send(body)
    await slack.wait_for(lambda: any("w1" in m.text for m in slack.bot_replies(CHANNEL, root)))
    for edit in slack.user_edit(CHANNEL, body["event"]["ts"], EDITED):
        await harness.send(edit)
    await harness.answer(CHANNEL, root, "w29 ", n=2)
    key = f"slack:{slack.team_id}:thread:{CHANNEL}:{root}|docs"
    answer = "".join(f"w{i} " for i in range(30))
    await kept_as(harness, key, ["how do I log in?", "First.", EDITED, answer])
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert not any("hunter2" in content for content in sent(chat))
    assert EDITED in sent(chat)


async def test_a_question_edited_in_a_dm_is_sent_as_it_reads_now(
    harness: Harness,
) -> None:
    # A DM's edits come as `message_changed` alone (no app_mention).
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["First."])
    [body] = slack.user_message(DM, SECRET)
    await harness.send(body)
    await harness.answer(DM, None, "First.")
    key = f"slack:{slack.team_id}:user:U0USER001|docs"
    await kept_as(harness, key, [SECRET, "First."])
    for edit in slack.user_edit(DM, body["event"]["ts"], EDITED):
        await harness.send(edit)
    await kept_as(harness, key, [EDITED, "First."])


async def test_only_an_edit_that_adds_the_mention_is_told_as_asked(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One that kept the mention is not asked again: told as asked, on a shared store
    # its turn kept the password an edit made while it was answered had cut.
    slack = harness.slack
    told: list[bool] = []
    edits = harness.bridge.relay.edits
    record = edits._record

    async def spy(
        question: str, edit: Any, before: Any, message_id: str, where: Any, asks: bool
    ) -> None:
        told.append(asks)
        await record(question, edit, before, message_id, where, asks)

    monkeypatch.setattr(edits, "_record", spy)
    mention = f"<@{slack.bot_user_id}>"
    harness.chat.enqueue(tokens=["First."])
    root = await harness.ask(CHANNEL, "my password hunter2 fails")
    await harness.answer(CHANNEL, root, "First.")
    for edit in slack.user_edit(CHANNEL, root, f"{mention} my password fails"):
        await harness.send(edit)
    [body] = slack.user_message(CHANNEL, "and now?", thread_ts=root)
    for edit in slack.user_edit(CHANNEL, body["event"]["ts"], f"{mention} and now?"):
        await harness.send(edit)
    async with asyncio.timeout(10):
        while len(told) < 2:
            await asyncio.sleep(0.01)
    assert told == [False, True]


async def edited_while_it_waits(harness: Harness, text: str) -> str:
    """A thread whose third question, holding SECRET, is edited to `text` while it waits
    behind a long answer of the thread; the thread's ts."""
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["First."])
    root = await harness.ask(CHANNEL, "how do I log in?")
    await harness.answer(CHANNEL, root, "First.")
    chat.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.05)
    [slow] = slack.user_message(CHANNEL, "tell me a long story", thread_ts=root)
    await harness.send(slow)
    await slack.wait_for(lambda: any("w1" in m.text for m in slack.bot_replies(CHANNEL, root)))
    [body] = slack.user_message(CHANNEL, SECRET, thread_ts=root)
    await harness.send(body)
    for edit in slack.user_edit(CHANNEL, body["event"]["ts"], text):
        await harness.send(edit)
    question = question_id("slack", slack.team_id, CHANNEL, body["event"]["ts"])
    edits = harness.bridge.relay.edits
    async with asyncio.timeout(10):
        while (await edits.latest(question)).text is None:
            await asyncio.sleep(0.01)
    assert len(chat.requests) == 2  # edited while it waited behind the story
    return root


async def test_a_question_edited_while_it_waits_is_asked_as_it_reads_now(
    harness: Harness,
) -> None:
    # Edited (the password cut) while it waited its turn: the chat API was asked the
    # text it came with, password and all.
    chat = harness.chat
    root = await edited_while_it_waits(harness, EDITED)
    chat.enqueue(tokens=["Third."])
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert sent(chat)[-1] == EDITED
    assert not any("hunter2" in m["content"] for r in chat.requests for m in r.json["messages"])
    key = f"slack:{harness.slack.team_id}:thread:{CHANNEL}:{root}|docs"
    await kept_as(
        harness,
        key,
        [
            "how do I log in?",
            "First.",
            "tell me a long story",
            "".join(f"w{i} " for i in range(40)),
            EDITED,
            "Third.",
        ],
    )


async def test_a_question_edited_down_to_the_mention_while_it_waits_is_not_asked(
    harness: Harness,
) -> None:
    # Nothing left but the mention: not asked (nor told anything), as if deleted.
    slack, chat = harness.slack, harness.chat
    root = await edited_while_it_waits(harness, f"<@{slack.bot_user_id}>")
    await harness.answer(CHANNEL, root, "w39 ", n=2)
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert len(chat.requests) == 3
    assert sent(chat)[-1] == "where are the docs?"
    assert not any("hunter2" in m["content"] for r in chat.requests for m in r.json["messages"])
    assert [m.text for m in slack.bot_replies(CHANNEL, root)][-1] == "Third."
    assert len(slack.bot_replies(CHANNEL, root)) == 3


async def test_a_question_edited_past_the_limit_while_it_waits_is_refused(
    harness: Harness,
) -> None:
    # As a new question that long is: its asker is told, and the chat API asked nothing.
    slack, chat = harness.slack, harness.chat
    root = await edited_while_it_waits(harness, "why? " + "x" * 4100)
    await harness.answer(CHANNEL, root, "w39 ", n=2)
    await slack.wait_for(lambda: slack.ephemerals)
    assert [e["text"][:39] for e in slack.ephemerals] == ["That question is 4,105 characters long;"]
    await wait_for(lambda: refused(harness.bridge, "too_long", "yes", "slack") == 1)
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert len(chat.requests) == 3
    assert not any("hunter2" in m["content"] for r in chat.requests for m in r.json["messages"])
