"""Channels the bot may not post in: remembered for a while, warned about once, and
never more of them than MAX_CLOSED."""

from __future__ import annotations

import logging

import pytest

from adapters.platforms.slack.closed import CLOSED_SECONDS, MAX_CLOSED, ClosedChannels


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
