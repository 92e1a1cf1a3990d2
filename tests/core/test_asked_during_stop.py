"""A question that comes while the bridge stops, from a platform that never delivers a
message again (Discord's), is told to ask again once its event is claimed; one from a
platform that does (Slack's, unacknowledged), and any other message, is left unsaid."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.interfaces import STOPPING_TEXT
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


@asynccontextmanager
async def stopping(fake: FakeChatAPI, db: Path) -> AsyncIterator[tuple[Bridge, LocalPlatform]]:
    """A bridge whose stop waits for an answer held back (its first words gated) while
    the block runs; the stop ends as the block does, once what the stop's messages
    started has ended (the stop waits for it, within its grace)."""
    gate = asyncio.Event()
    fake.enqueue(tokens=["Answered."], gate=gate)
    async with bridge_for(fake, db) as bridge:
        local = platform(bridge)
        live = await local.say("Asked before the stop?", channel="C1")
        await fake.wait_requests(1)
        drain = asyncio.create_task(bridge.drain())
        await wait_for(lambda: not bridge.relay.accepting)
        try:
            yield bridge, local
        finally:
            gate.set()
            assert await asyncio.wait_for(drain, 10)
        assert live.visible() == ["Answered."]


async def test_a_question_during_a_stop_is_told_to_ask_again_once(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with stopping(fake_chat_api, tmp_path / "b.db") as (bridge, local):
        target = await local.say("Asked during the stop?", channel="C2", event_id="ev-late")
        await wait_for(lambda: target.notices == [STOPPING_TEXT])
        assert await bridge.store.event_claimed("ev-late")
        again = await local.say("Asked during the stop?", channel="C2", event_id="ev-late")
    assert target.notices == [STOPPING_TEXT] and again.ops == []  # told once
    assert [r.json["message"] for r in fake_chat_api.requests] == ["Asked before the stop?"]


async def test_a_question_another_replica_claimed_is_told_nothing(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # On a shared store, a replica already connected took it: it answers it.
    async with stopping(fake_chat_api, tmp_path / "b.db") as (bridge, local):
        await bridge.store.claim_event("ev-taken", time.time())
        target = await local.say("Answered elsewhere?", channel="C2", event_id="ev-taken")
    assert target.notices == [] and target.ops == []


async def test_a_message_that_asks_nothing_during_a_stop_is_left_unsaid(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with stopping(fake_chat_api, tmp_path / "b.db") as (bridge, local):
        chatter = await local.say(
            "just talking", channel="C2", mentioned=False, event_id="ev-chatter"
        )
        sentinel = await local.say("and a question?", channel="C3", event_id="ev-sentinel")
        await wait_for(lambda: sentinel.notices == [STOPPING_TEXT])
        assert not await bridge.store.event_claimed("ev-chatter")
    assert chatter.ops == []


async def test_a_platform_that_delivers_again_is_left_to_deliver_it_again(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slack sends an event it was not acknowledged for again: to the next process.
    monkeypatch.setattr(RecordingTarget, "redelivered", True)
    async with stopping(fake_chat_api, tmp_path / "b.db") as (bridge, local):
        before = set(bridge.relay._tasks)
        target = await local.say("Asked during the stop?", channel="C2", event_id="ev-again")
        assert local.taken is not None and local.taken.is_set()
        assert set(bridge.relay._tasks) <= before  # nothing to tell it
        assert not await bridge.store.event_claimed("ev-again")  # the next process answers it
    assert target.ops == []


async def test_a_question_as_the_platforms_close_is_told_nothing(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Its notice would go to a platform closing.
    async with stopping(fake_chat_api, tmp_path / "b.db") as (bridge, local):
        bridge.relay.intake.closing()
        before = set(bridge.relay._tasks)
        target = await local.say("Asked as it closes?", channel="C2", event_id="ev-closing")
        assert set(bridge.relay._tasks) <= before  # nothing to tell it
        assert not await bridge.store.event_claimed("ev-closing")
    assert target.ops == []
