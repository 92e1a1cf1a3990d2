"""Discord end to end: an answer that can go no further where it shows (its channel
deleted) has its stop logged once (the real Bridge and discord.py client against the
fakes)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import fake_discord  # noqa: F401
from tests.platforms.discord_support import Setup, setup  # noqa: F401

# 60 lines of 50 characters: two messages.
LINES = [f"Line {i:03d}: " + "x" * 39 + "\n" for i in range(60)]


def answers(setup: Setup) -> list[dict[str, Any]]:
    return [m for m in setup.discord.channel_messages(setup.general) if m["author"]["bot"]]


def stopped(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


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
