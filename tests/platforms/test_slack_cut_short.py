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
