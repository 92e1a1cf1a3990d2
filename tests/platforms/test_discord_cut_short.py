"""Discord end to end: an answer that can go no further where it shows (its live message
deleted by a moderator, the bot's Send Messages taken away before its next message, the
channel deleted) says so in what is left of it, and its stop is logged once (the real
Bridge and discord.py client against the fakes)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge.render import CUT_SHORT
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import SEND_MESSAGES, fake_discord  # noqa: F401
from tests.platforms.discord_support import Setup, setup  # noqa: F401

MARK = f"_⚠️ {CUT_SHORT}_"
# 60 lines of 50 characters: two messages.
LINES = [f"Line {i:03d}: " + "x" * 39 + "\n" for i in range(60)]


def answers(setup: Setup) -> list[dict[str, Any]]:
    return [m for m in setup.discord.channel_messages(setup.general) if m["author"]["bot"]]


def stopped(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_answer_whose_live_second_message_is_deleted_marks_its_first(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # The first message stayed as it was, cut mid-answer with nothing saying so.
    fake = setup.discord
    setup.chat.enqueue(tokens=LINES, token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "A long one?")
        await fake.wait_until(lambda: len(answers(setup)) == 2 or None)
        first, second = answers(setup)
        await fake.delete_message(second["id"])  # a moderator removes it
        await setup.chat.wait_disconnects(1)  # the answer's stream is let go
        await wait_for(lambda: bridge.relay.live == 0)
    [left] = answers(setup)
    assert left["id"] == first["id"]
    assert left["content"].startswith("Line 000: ") and left["content"].endswith(MARK)
    assert len(left["content"]) <= 2000
    [line] = stopped(caplog)  # one line for the one answer, not one per module
    assert line.getMessage().startswith("answer stopped: Discord could not edit the reply")
    assert "marked as cut short" in line.getMessage()
    assert line.__dict__["platform"] == "discord"
    assert line.__dict__["channel"] == setup.general
    assert line.__dict__["conversation"].startswith("discord:")


async def test_an_answer_whose_next_message_the_bot_may_no_longer_send_marks_its_first(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=LINES, token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "A long one?")
        await fake.wait_until(
            lambda: any("Line 005" in m["content"] for m in answers(setup)) or None
        )
        # A moderator mutes the bot; Discord still lets it edit its own messages.
        await fake.deny_bot(setup.general, SEND_MESSAGES, quietly=True)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: bridge.relay.live == 0)
    [left] = answers(setup)
    assert left["content"].startswith("Line 000: ") and left["content"].endswith(MARK)
    assert len(left["content"]) <= 2000
    [line] = stopped(caplog)
    assert "missing permission" in line.getMessage() or "lacks a permission" in line.getMessage()
    assert "marked as cut short" in line.getMessage()


async def test_an_answer_whose_channel_is_deleted_is_logged_once(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # The renderer and the relay each logged a WARNING for it.
    fake = setup.discord
    setup.chat.enqueue(tokens=LINES, token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "A long one?")
        await fake.wait_until(lambda: answers(setup) or None)
        fake.delete_channel(setup.general)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: bridge.relay.live == 0)
    [line] = stopped(caplog)
    assert line.getMessage().startswith("answer stopped: Discord could not edit the reply")
    assert line.__dict__["platform"] == "discord"
    assert line.__dict__["conversation"].startswith("discord:")
