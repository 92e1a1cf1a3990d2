"""End to end: a Slack answer whose live second message a workspace admin deletes says
so under its first, and its stop is logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.render import CUT_SHORT
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, open_harness

# Slack's italics: the note as the bridge formats it.
MARK = f"_⚠️ {CUT_SHORT}_"


async def test_an_answer_whose_live_second_message_is_deleted_marks_its_first(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
    tokens = [f"{i}. {paragraph}\n\n" for i in range(16)]  # about 8,000 characters
    fake_chat_api.enqueue(tokens=tokens, token_delay=0.1)
    h, bridge = await open_harness(fake_slack, fake_chat_api, tmp_path, "socket")
    try:
        root = await h.ask(CHANNEL, "tell me everything")
        await fake_slack.wait_for(lambda: len(fake_slack.bot_replies(CHANNEL, root)) == 2 or None)
        first, second = fake_slack.bot_replies(CHANNEL, root)
        fake_slack.messages[CHANNEL].remove(second)  # an admin deletes it
        await fake_chat_api.wait_disconnects(1)  # the answer's stream is let go
        await wait_for(lambda: bridge.relay.live == 0)
    finally:
        await bridge.aclose()
    [left] = fake_slack.bot_replies(CHANNEL, root)
    assert left.ts == first.ts
    assert left.text.startswith("0. Lorem ipsum") and left.text.endswith(MARK)
    assert len(left.text) <= 4000
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "marked as cut short" in line.getMessage()
    assert line.__dict__["platform"] == "slack" and line.__dict__["channel"] == CHANNEL


async def test_a_native_answer_its_asker_stops_on_its_second_message_is_left_as_it_is(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Stop pressed on the live second stream: its first message was trimmed of its last
    # lines to take "Cut short: ... its next message was deleted ... please ask again",
    # though the second was still there below it, and a WARNING said so.
    caplog.set_level(logging.INFO, logger="chat_bridge")
    tokens = [f"Line {i:03d}: " + "x" * 39 + "\n" for i in range(60)]
    fake_chat_api.enqueue(tokens=tokens, token_delay=0.05)
    h, bridge = await open_harness(
        fake_slack, fake_chat_api, tmp_path, "socket", "mode: native\n  max_chars: 500"
    )
    try:
        root = await h.ask(CHANNEL, "tell me everything")
        await fake_slack.wait_for(lambda: len(fake_slack.bot_replies(CHANNEL, root)) == 2 or None)
        fake_slack.fail["chat.appendStream"] = ["stopped_by_user"]  # the person presses Stop
        await fake_chat_api.wait_disconnects(1)
        await wait_for(lambda: bridge.relay.live == 0)
        counted = bridge.metrics.render().decode()
    finally:
        await bridge.aclose()
    first, second = fake_slack.bot_replies(CHANNEL, root)
    assert CUT_SHORT not in first.text + second.text
    shown = [line for reply in (first, second) for line in reply.text.splitlines()]
    numbers = [int(line[5:8]) for line in shown if line.startswith("Line ")]
    assert numbers == list(range(len(numbers)))  # no line lost between the two
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("its asker stopped it" in r.getMessage() for r in caplog.records)
    assert 'outcome="stopped"' in counted
    # Not a platform's error: it did as the person asked.
    gone = 'chat_bridge_platform_errors_total{kind="gone",platform="slack"}'
    assert [line for line in counted.splitlines() if line.startswith(gone)] == [f"{gone} 0.0"]
