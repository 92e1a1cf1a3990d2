"""A message that asks the bot where no route serves is said at INFO, once per place."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge import intake
from bridge.app import Bridge
from bridge.config import parse_config
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.fakes.chatapi import FakeChatAPI


def bridge_for(fake: FakeChatAPI, db: Path) -> Bridge:
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "{fake.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {{}}
routes:
  - {{platform: console, channels: [C9], backend: docs}}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.getMessage().startswith("no route serves")
    ]


async def test_asking_where_no_route_serves_is_said_once_per_place(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A route naming a channel wrongly looked like a bot ignoring people: only a DEBUG
    # line said the mention was not routed.
    caplog.set_level(logging.INFO, logger="chat_bridge.intake")
    monkeypatch.setattr(intake, "UNROUTED_PLACES", 2)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        await console.say("how do I deploy?", channel="C1")
        await console.say("anyone?", channel="C1")
        # A command in the same place is taken after them, and gets a refusal.
        last = await console.say("hello", channel="C1", command="ask")
        await asyncio.wait_for(last.ended.wait(), 10)
        assert said(caplog) == [
            "no route serves console channel C1 (workspace W1): the bot was asked there "
            "and does not answer; check the routes' platform, workspace, channels (ids), "
            "dm, users and roles"
        ]
        await console.say("hi", channel="D1", is_dm=True)
        await wait_for(lambda: len(said(caplog)) == 2)
        assert said(caplog)[1].startswith("no route serves console DM D1 (workspace W1)")
        # Only the latest places are remembered: C1, the oldest, is said again.
        await console.say("hi", channel="C2")
        await wait_for(lambda: len(said(caplog)) == 3)
        await console.say("again", channel="C1")
        await wait_for(lambda: len(said(caplog)) == 4)
        assert len(bridge.relay.intake._unrouted_places) == 2
    assert fake_chat_api.requests == []
