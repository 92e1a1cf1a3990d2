"""When a message is taken (what an acknowledging platform waits for): claimed, recorded, once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bridge.errors import StoreError
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for, platform, store_down
from tests.fakes.chatapi import FakeChatAPI


async def test_a_message_is_taken_once_its_event_is_claimed_and_its_record_written(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # What a platform that acknowledges deliveries (Slack) waits for: acknowledged
    # before, a question lost in a crash was neither answered nor marked interrupted.
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(20)], token_delay=0.05)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store, local = bridge.store, platform(bridge)
        claim, claiming, go_on = store.claim_event, asyncio.Event(), asyncio.Event()

        async def held(event_id: str, now: float) -> bool:
            claiming.set()
            await go_on.wait()  # a busy store
            return await claim(event_id, now)

        store.claim_event = held  # type: ignore[method-assign]
        target = await local.say("Kept?", event_id="ev-kept")
        taken = local.taken
        assert taken is not None
        await asyncio.wait_for(claiming.wait(), 5)
        assert not taken.is_set()
        go_on.set()
        await asyncio.wait_for(taken.wait(), 5)
        assert await store.event_claimed("ev-kept")
        [record] = await store.inflight_orphans(bridge.relay.owner, 0.0)
        assert record.address == target.address
        assert not target.ended.is_set()  # taken is not answered: the answer follows
        await asyncio.wait_for(target.ended.wait(), 10)


async def test_a_message_not_to_be_answered_is_taken_too(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Nothing waits for ever: a duplicate, chatter nobody asked the bot, a message a
    # store failure kept from being recorded (its asker told), one the stop cut.
    fake_chat_api.enqueue(tokens=["Once."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        local = platform(bridge)

        async def taken_at(text: str, **kw: Any) -> RecordingTarget:
            target = await local.say(text, **kw)
            assert local.taken is not None
            await asyncio.wait_for(local.taken.wait(), 5)
            return target

        first = await taken_at("Once?", event_id="ev-once")
        await asyncio.wait_for(first.ended.wait(), 10)
        await taken_at("Once?", event_id="ev-once")  # delivered again
        await taken_at("just chatting", mentioned=False)
        store_down(bridge, "inflight_begin")
        down = await taken_at("Anyone there?")
        await wait_for(lambda: down.notices == [StoreError.user_message])
        recording = asyncio.Event()

        async def never(*args: object) -> None:
            recording.set()
            await asyncio.Event().wait()  # a store that never answers

        bridge.store.inflight_begin = never  # type: ignore[method-assign]
        flags = []
        for text in ("cut?", "cut too?"):  # one place: the second waits behind the first
            await local.say(text, channel="C9", thread="T9")
            flags.append(local.taken)
        await asyncio.wait_for(recording.wait(), 5)
        assert not any(f is None or f.is_set() for f in flags)
        await bridge.relay.drain(0)
        assert all(f is not None and f.is_set() for f in flags)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["Once?"]


async def test_a_message_being_taken_as_the_drain_begins_is_answered_within_the_grace(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["All ", "done."], token_delay=0.05)
    db = tmp_path / "b.db"
    async with bridge_for(fake_chat_api, db, extra="limits: {shutdown_grace: 10}") as bridge:
        claim = bridge.store.claim_event
        taking, go_on = asyncio.Event(), asyncio.Event()

        async def held(event_id: str, now: float) -> bool:
            taking.set()
            await go_on.wait()  # a busy store: the message is still being taken
            return await claim(event_id, now)

        bridge.store.claim_event = held  # type: ignore[method-assign]
        target = await platform(bridge).say("Quick one?")
        await asyncio.wait_for(taking.wait(), 5)
        draining = asyncio.create_task(bridge.relay.drain(10))
        await wait_for(lambda: not bridge.relay.accepting)  # the drain has begun
        go_on.set()
        cancelled = await asyncio.wait_for(draining, 10)
    assert cancelled == 0
    assert target.visible() == ["All done."]


async def test_duplicate_event_is_answered_once(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        target = await p.say("hello", thread="T1", event_id="Ev1")
        await asyncio.wait_for(target.ended.wait(), 10)
        await p.say("hello", thread="T1", event_id="Ev1")
        second = await p.say("other", thread="T2", event_id="Ev2")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["hello", "other"]


async def test_a_message_slow_to_take_holds_up_no_answer_before_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The first question's answer waited for the second's intake; a stop meanwhile
    # left it never started and never ended.
    fake_chat_api.enqueue(tokens=["First ", "answer."])
    fake_chat_api.enqueue(tokens=["Second."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store = bridge.relay.store
        claim, calls, hold = store.claim_event, 0, asyncio.Event()

        async def slow_claim(event_id: str, at: float) -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                await hold.wait()
            return await claim(event_id, at)

        store.claim_event = slow_claim  # type: ignore[method-assign]
        first = await platform(bridge).say("one", thread="T1")
        second = await platform(bridge).say("two", thread="T1")
        await wait_for(lambda: first.visible() == ["First answer."])
        assert "Second." not in second.visible()  # answered while the second is still taken
        hold.set()
        await wait_for(lambda: second.visible()[-1:] == ["Second."] and bridge.relay.live == 0)
        assert first.visible() == ["First answer.", "Second."] and calls == 2
