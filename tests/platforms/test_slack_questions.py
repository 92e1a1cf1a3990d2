"""End to end: which Slack messages are questions: edits, empty mentions, messages
addressed to someone else, /me messages and integrations added."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.platforms.slack import inbound as slack_inbound
from adapters.platforms.slack import platform as slack_platform
from adapters.platforms.slack.inbound import EDIT_WINDOW
from bridge.intake import HELP_TEXT
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, DM, Harness, open_harness


async def test_an_edited_question_is_not_answered_again(harness: Harness) -> None:
    harness.chat.enqueue(tokens=["First answer."])
    root = await harness.ask(CHANNEL, "how do I deploy?")
    await harness.answer(CHANNEL, root, "First answer.")
    mention = f"<@{harness.slack.bot_user_id}>"
    edits = harness.slack.user_edit(CHANNEL, root, f"{mention} how do I deploy to staging?")
    assert [b["event"]["type"] for b in edits] == ["message", "app_mention"]
    for body in edits:
        await harness.send(body)
    assert await harness.sentinel() == ["how do I deploy?", "sentinel"]
    assert len(harness.slack.bot_replies(CHANNEL, root)) == 1


@pytest.mark.parametrize("window", [EDIT_WINDOW, 0.0])
async def test_a_question_edited_to_mention_the_bot_is_answered_if_recent(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, window: float
) -> None:
    # Someone forgot to mention the bot, and edits the message to add it.
    monkeypatch.setattr(slack_inbound, "EDIT_WINDOW", window)
    if window:
        harness.chat.enqueue(tokens=["Now answered."])
    root = await harness.ask(CHANNEL, "how do I deploy?", mention=False)
    mention = f"<@{harness.slack.bot_user_id}>"
    for body in harness.slack.user_edit(CHANNEL, root, f"{mention} how do I deploy?"):
        await harness.send(body)
    if window:
        await harness.answer(CHANNEL, root, "Now answered.")
        assert await harness.sentinel() == ["how do I deploy?", "sentinel"]
        assert len(harness.slack.bot_replies(CHANNEL, root)) == 1
        # Its event record outlives the window, whatever `limits.event_ttl` says.
        assert slack_platform.SlackPlatform.redelivers_within >= EDIT_WINDOW
    else:  # an edit of an older message is not taken as a question
        assert await harness.sentinel() == ["sentinel"]
        assert harness.slack.bot_replies(CHANNEL, root) == []


async def test_a_question_refused_as_too_long_is_answered_once_an_edit_shortens_it(
    harness: Harness,
) -> None:
    slack = harness.slack
    harness.chat.enqueue(tokens=["Now answered."])
    root = await harness.ask(CHANNEL, "why? " + "x" * 4100)
    await slack.wait_for(lambda: slack.ephemerals)
    mention = f"<@{slack.bot_user_id}>"
    for body in slack.user_edit(CHANNEL, root, f"{mention} why does deploy fail?"):
        await harness.send(body)
    await harness.answer(CHANNEL, root, "Now answered.")
    assert [e["text"] for e in slack.ephemerals] == [
        "That question is 4,105 characters long; the limit is 2,000. "
        "Please shorten it and ask again."
    ]
    assert await harness.sentinel() == ["why does deploy fail?", "sentinel"]


async def test_a_question_written_in_the_thread_of_an_empty_mention_is_answered(
    harness: Harness,
) -> None:
    # "@bot" alone, Enter hit too early: the bot says, in the message's thread, that
    # it will answer there; the question then written there needs no mention.
    slack = harness.slack
    harness.chat.enqueue(tokens=["Deployed."])
    root = await harness.ask(CHANNEL, "")
    await slack.wait_for(lambda: slack.ephemerals)
    [told] = slack.ephemerals
    assert (told["text"], told["thread_ts"]) == (HELP_TEXT, root)
    await harness.ask(CHANNEL, "how do I deploy?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Deployed.")
    assert await harness.sentinel() == ["how do I deploy?", "sentinel"]


async def test_an_empty_mention_edited_to_hold_its_question_is_answered_once(
    harness: Harness,
) -> None:
    slack = harness.slack
    harness.chat.enqueue(tokens=["Deployed."])
    [empty] = slack.user_message(CHANNEL, f"<@{slack.bot_user_id}>")[1:]  # its app_mention
    await harness.send(empty)
    await harness.send(empty, retry=1)
    root = empty["event"]["ts"]
    edits = slack.user_edit(CHANNEL, root, f"<@{slack.bot_user_id}> how do I deploy?")
    for body in edits:
        await harness.send(body)
    await harness.answer(CHANNEL, root, "Deployed.")
    for body in edits:  # delivered again: answered already
        await harness.send(body, retry=1)
    assert await harness.sentinel() == ["how do I deploy?", "sentinel"]
    assert len(slack.bot_replies(CHANNEL, root)) == 1
    assert [e["text"] for e in slack.ephemerals] == [HELP_TEXT]


async def test_a_message_addressed_to_someone_else_in_a_followed_thread_is_not_answered(
    harness: Harness,
) -> None:
    harness.chat.enqueue(tokens=["First answer."])
    harness.chat.enqueue(tokens=["Second answer."])
    harness.chat.enqueue(tokens=["Third answer."])
    root = await harness.ask(CHANNEL, "how do I deploy?")
    await harness.answer(CHANNEL, root, "First answer.")
    for text in ("<@U0OTHERBOT> please summarise this thread", "<!subteam^S0ONCALL> look?"):
        await harness.ask(CHANNEL, text, thread_ts=root, mention=False)
    # Mentioning the bot too, it is the bot's.
    mention = f"<@{harness.slack.bot_user_id}>"
    await harness.ask(
        CHANNEL, f"<@U0OTHERBOT> what do you think, {mention}?", thread_ts=root, mention=False
    )
    await harness.answer(CHANNEL, root, "Second answer.", n=2)
    await harness.ask(CHANNEL, "and on staging?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third answer.", n=3)
    first, mentioned, follow_up = [r.json["message"] for r in harness.chat.requests]
    assert (first, follow_up) == ("how do I deploy?", "and on staging?")
    assert mentioned.startswith("@U0OTHERBOT what do you think")


async def test_a_me_message_is_a_question(harness: Harness) -> None:
    # `/me is stuck deploying` comes as subtype me_message: it was dropped, unanswered.
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["In private."])
    for body in slack.user_message(DM, "is stuck deploying, help?", subtype="me_message"):
        await harness.send(body)
    await harness.answer(DM, None, "In private.")
    chat.enqueue(tokens=["First."])
    chat.enqueue(tokens=["In the thread."])
    root = await harness.ask(CHANNEL, "how do I deploy?")
    await harness.answer(CHANNEL, root, "First.")
    for body in slack.user_message(CHANNEL, "tried that", thread_ts=root, subtype="me_message"):
        await harness.send(body)
    await harness.answer(CHANNEL, root, "In the thread.", n=2)
    assert [r.json["message"] for r in chat.requests] == [
        "is stuck deploying, help?",
        "how do I deploy?",
        "tried that",
    ]


async def test_an_integration_added_is_no_question_with_bots_let_in(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path, mode: str
) -> None:
    # With `ignore_bots: false`, "added an integration to this channel: Jira" (a
    # bot_add system message, which carries the integration's bot_id) was taken as a
    # question from the person who added it.
    h, bridge = await open_harness(fake_slack, fake_chat_api, tmp_path, mode, "ignore_bots: false")
    try:
        fake_chat_api.enqueue(tokens=["First."])
        root = await h.ask(CHANNEL, "hello")
        await h.answer(CHANNEL, root, "First.")
        # Where any message is answered: a DM, and a thread the bot follows.
        for n, (subtype, channel) in enumerate(
            [("bot_add", DM), ("bot_remove", DM), ("bot_add", CHANNEL), ("bot_remove", CHANNEL)]
        ):
            verb = "added" if subtype == "bot_add" else "removed"
            ts = f"9.00000{n}"
            event = {
                "type": "message",
                "subtype": subtype,
                "channel": channel,
                "user": "U0USER001",
                "bot_id": "B0OTHER01",
                "bot_link": "<https://x.slack.com/services/B0OTHER01|Jira>",
                "text": f"{verb} an integration to this channel: <https://x|Jira>",
                "ts": ts,
                "event_ts": ts,
                "channel_type": "im" if channel == DM else "channel",
            }
            if channel == CHANNEL:
                event["thread_ts"] = root
            await h.send(fake_slack.event_body(event))
        assert await h.sentinel() == ["hello", "sentinel"]
    finally:
        await bridge.aclose()
