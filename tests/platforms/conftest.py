"""Fixtures shared by this directory's test modules: the Slack adapter over Socket Mode and
what it delivers, the whole daemon against the fake Slack (Socket Mode and HTTP), and the
Discord adapter and daemon against the fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.platforms.slack import SlackPlatform
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack

# The Discord modules' fixtures: `world` (the adapter alone against the fake Discord) and
# `setup` (the real Bridge against the fake Discord and chat API).
from tests.platforms.discord_support import setup, world  # noqa: F401
from tests.platforms.slack_support import Harness, Inbox, open_harness, running


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def socket_platform(fake_slack: FakeSlack, inbox: Inbox) -> AsyncIterator[SlackPlatform]:
    async with running(fake_slack, inbox) as platform:
        yield platform


@pytest.fixture(params=["socket", "http"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def harness(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path, mode: str
) -> AsyncIterator[Harness]:
    h, bridge = await open_harness(fake_slack, fake_chat_api, tmp_path, mode)
    try:
        yield h
    finally:
        await bridge.aclose()
