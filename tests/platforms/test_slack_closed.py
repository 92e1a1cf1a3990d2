"""Channels the bot may not post in: remembered for a while, warned about once, and
never more of them than MAX_CLOSED; end to end, no question there is asked of the chat
API meanwhile."""

from __future__ import annotations

import logging
import time

import pytest

from adapters.platforms.slack import closed as slack_closed
from adapters.platforms.slack import platform as slack_platform
from adapters.platforms.slack.closed import CLOSED_SECONDS, MAX_CLOSED, ClosedChannels
from tests.core.fakeplatform import wait_for
from tests.platforms.slack_support import CHANNEL_2, Harness


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_channel_closed_again_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    closed = ClosedChannels(clock=lambda: now[0])
    closed.bot_name = "docs-bot"
    closed.close("T1", "C1", "not_in_channel")
    assert closed.closed("T1", "C1") and not closed.closed("T2", "C1")
    now[0] += CLOSED_SECONDS
    assert not closed.closed("T1", "C1")  # the next question tries again
    closed.close("T1", "C1", "not_in_channel")  # and is refused again
    assert closed.closed("T1", "C1")
    [warned] = warnings(caplog)
    assert "C1" in warned and "T1" in warned and "/invite @docs-bot" in warned
    closed.opened("T1", "C1", joined=True)
    assert not closed.closed("T1", "C1")
    closed.close("T1", "C1", "restricted_action")  # a new closing: said again
    assert "who may post" in warnings(caplog)[-1] and len(warnings(caplog)) == 2


def test_no_more_channels_are_remembered_than_max_closed() -> None:
    closed = ClosedChannels()
    for n in range(MAX_CLOSED + 50):
        closed.close("T1", f"C{n}", "channel_not_found")
    assert len(closed._until) == MAX_CLOSED
    assert not closed.closed("T1", "C0") and closed.closed("T1", f"C{MAX_CLOSED + 49}")


def not_answered_in(caplog: pytest.LogCaptureFixture, channel: str) -> int:
    """Questions in `channel` left unanswered because the bot cannot post there."""
    return sum(f"not answering in channel {channel}" in r.getMessage() for r in caplog.records)


async def test_a_channel_the_bot_is_not_in_is_asked_nothing_until_it_is_invited(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Each question there went to the chat API (paid for) for an answer nobody could
    # see, and the log said only "Slack refused chat.postMessage: not_in_channel".
    caplog.set_level(logging.INFO)
    slack, chat = harness.slack, harness.chat
    slack.outside.add(CHANNEL_2)
    chat.enqueue(tokens=["Never shown."])
    await harness.ask(CHANNEL_2, "one?")  # how the bridge learns it
    await wait_for(lambda: harness.bridge.relay.live == 0 and len(chat.requests) == 1)
    await harness.ask(CHANNEL_2, "two?")
    assert not_answered_in(caplog, CHANNEL_2) == 1
    assert await harness.sentinel() == ["one?", "sentinel"]
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "cannot post" in r.getMessage()
    ]
    assert len(warned) == 1
    assert CHANNEL_2 in warned[0] and "/invite @chat-bridge" in warned[0]
    await harness.send(slack.invite_bot(CHANNEL_2))  # member_joined_channel
    chat.enqueue(tokens=["Answered."])
    root = await harness.ask(CHANNEL_2, "three?")
    await harness.answer(CHANNEL_2, root, "Answered.")
    assert [r.json["message"] for r in chat.requests] == ["one?", "sentinel", "three?"]


async def test_questions_waiting_when_the_bot_loses_its_channel_are_not_asked(
    harness: Harness,
) -> None:
    # Taken before Slack refused the bot the channel, they went to the chat API one
    # by one when their turn came, each for an answer nobody could see.
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.05)
    root = await harness.ask(CHANNEL_2, "first?")
    await slack.wait_for(lambda: any("w1" in m.text for m in slack.bot_replies(CHANNEL_2, root)))
    for text in ("second?", "third?"):
        [body] = slack.user_message(CHANNEL_2, text, thread_ts=root)
        await harness.send(body)
        taken = (CHANNEL_2, body["event"]["ts"])
        await slack.wait_for(lambda taken=taken: bool(slack.reactions[taken]))
    slack.outside.add(CHANNEL_2)  # the bot is removed while it answers the first
    relay = harness.bridge.relay
    await wait_for(lambda: relay.ahead == 0, timeout=10)  # nothing taken is left
    assert [r.json["message"] for r in chat.requests] == ["first?"]
    assert relay.metrics.answered.labels("slack", "docs", "withdrawn")._value.get() == 2


@pytest.mark.parametrize(
    "refusal",
    [
        "restricted_action",  # only admins may post there
        # Each was taken for a brief failure: every question asked (paid), then its post
        # tried again for 19 s, and the log never said which channel nor what to do.
        "restricted_action_read_only_channel",
        "no_permission",
        "ekm_access_denied",
        "team_access_not_granted",
    ],
)
async def test_a_channel_the_bot_could_not_post_in_is_tried_again_after_a_while(
    harness: Harness, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    caplog.set_level(logging.INFO)
    slack, chat = harness.slack, harness.chat
    slack.fail["chat.postMessage"] = [refusal]
    chat.enqueue(tokens=["Never shown."])
    await harness.ask(CHANNEL_2, "one?")
    await wait_for(lambda: harness.bridge.relay.live == 0 and len(chat.requests) == 1)
    await harness.ask(CHANNEL_2, "two?")
    assert not_answered_in(caplog, CHANNEL_2) == 1
    # An admin lets the bot post; a while later, the next question is answered.
    platform = harness.bridge.platforms["slack"]
    assert isinstance(platform, slack_platform.SlackPlatform)
    platform.closed.clock = lambda: time.monotonic() + slack_closed.CLOSED_SECONDS
    chat.enqueue(tokens=["Answered."])
    root = await harness.ask(CHANNEL_2, "three?")
    await harness.answer(CHANNEL_2, root, "Answered.")
    assert [r.json["message"] for r in chat.requests] == ["one?", "three?"]
