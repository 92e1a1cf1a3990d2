"""A replica whose heartbeat no longer reaches the shared store fences itself.

Two replicas in one process on one PostgreSQL store; the first one's heartbeat
fails (its connection to the store is lost) while the second's does not. The
second takes the first's conversation over after three heartbeats: by then the
first has stopped answering it, and takes no turn until its heartbeat is back.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.app import Bridge
from bridge.errors import PlatformRefused, StoreError
from bridge.interruptions import INTERRUPTED
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.relay_support import sample
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(30)]

FENCED = "no heartbeat reached the store"
CUT_NOT_MARKED = "could not mark a reply cut off as interrupted"
BACK = "heartbeat again"


def cut_off(bridge: Bridge) -> asyncio.Event:
    """Make `bridge`'s heartbeats fail until the event returned is set."""
    back = asyncio.Event()
    beat = bridge._beat_once

    async def failing_beat() -> None:
        if not back.is_set():
            raise StoreError("store: the connection was lost")
        await beat()

    bridge._beat_once = failing_beat  # type: ignore[method-assign]
    return back


def said(caplog: pytest.LogCaptureFixture, level: int, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == level and text in r.getMessage())


async def test_a_replica_cut_off_stops_answering_before_the_other_takes_over(
    fake_chat_api: FakeChatAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # It answered on beside the replica that took its conversation over (the
    # next question was answered alongside), and its late edits undid the mark.
    caplog.set_level(logging.INFO)
    fake_chat_api.enqueue(tokens=[f"word{i} " for i in range(30)], token_delay=0.1)
    fake_chat_api.enqueue(tokens=["Then ", "this."])
    fake_chat_api.enqueue(tokens=["And ", "more."])
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url) as a,
        shared_bridge(fake_chat_api, url) as b,
    ):
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
        first = await on_a.say("first", thread="T1", sent_at=1_700_000_000.1)
        await wait_for(lambda: any("word1" in t for t in first.visible()))
        back = cut_off(a)
        second = await on_b.say("second", thread="T1", sent_at=1_700_000_000.2)
        await wait_for(lambda: second.visible() == ["Then this."])

        # The first replica's answer stopped, marked, before the second one began.
        [shown] = first.visible()
        assert shown.endswith(INTERRUPTED) and "word29" not in shown
        mark = next(op.at for op in first.ops if INTERRUPTED in op.text)
        assert all(op.at <= mark for op in first.ops)
        assert mark < second.ops[0].at
        assert fake_chat_api.disconnects == 1
        assert said(caplog, logging.ERROR, FENCED) == 1

        # Back once a heartbeat reaches the store; it answers in its turn again.
        back.set()
        await wait_for(lambda: not a.relay.fence.up)
        third = await on_a.say("third", thread="T1", sent_at=1_700_000_000.3)
        assert third is first  # the thread's one place on that replica
        await wait_for(lambda: third.visible() == [shown, "And more."])
        assert said(caplog, logging.WARNING, BACK) == 1
        assert said(caplog, logging.ERROR, FENCED) == 1
    asked = [r.json["message"] for r in fake_chat_api.requests]
    assert asked == ["first", "second", "third"]
    assert len({r.json["session_id"] for r in fake_chat_api.requests}) == 1


async def test_a_mark_the_platform_fails_is_counted(
    fake_chat_api: FakeChatAPI,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fence's mark failing moved no metric: the other replica marks it later.
    fake_chat_api.enqueue(tokens=[f"word{i} " for i in range(30)], token_delay=0.1)
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as a:
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        first = await on_a.say("first", thread="T1")
        await wait_for(lambda: any("word1" in t for t in first.visible()))
        edit = first.edit

        async def refused_mark(message_id: str, text: str) -> None:
            if INTERRUPTED in text:
                raise PlatformRefused("the platform refused the edit")
            await edit(message_id, text)

        monkeypatch.setattr(first, "edit", refused_mark)
        cut_off(a)
        await wait_for(lambda: said(caplog, logging.WARNING, CUT_NOT_MARKED) == 1)
        assert (
            sample(a, "chat_bridge_platform_errors_total", platform="console", kind="refused")
            == 1.0
        )


async def test_a_question_taken_while_fenced_waits_for_the_store(
    fake_chat_api: FakeChatAPI,
) -> None:
    fake_chat_api.enqueue(tokens=["An ", "answer."])
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as a:
        console: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        back = cut_off(a)
        await wait_for(lambda: a.relay.fence.up)
        target = await console.say("held", thread="T1")
        await wait_for(lambda: a.relay.fence.held == 1)
        assert not fake_chat_api.requests
        back.set()
        await wait_for(lambda: target.visible() == ["An answer."])
    assert [r.json["message"] for r in fake_chat_api.requests] == ["held"]


async def test_a_question_held_is_dropped_once_another_replica_took_it_over(
    fake_chat_api: FakeChatAPI,
) -> None:
    # Fenced past three heartbeats: another replica marked the question's reply
    # interrupted (the asker is told to ask again); answering it too would be twice.
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as a:
        console: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        back = cut_off(a)
        await wait_for(lambda: a.relay.fence.up)
        target = await console.say("held", thread="T1")
        await wait_for(lambda: a.relay.fence.held == 1)
        [record] = [rec for rec, _ in a.relay.records()]
        # As the other replica read it: the heartbeat as the store dated it.
        [seen] = await a.store.inflight_for_key(record.key)
        assert await a.store.inflight_claim(record.id, "replica-b", seen.heartbeat_at)
        back.set()
        await wait_for(lambda: a.relay.live == 0 and not a.relay.records())
        await target.ended.wait()
    assert not fake_chat_api.requests


@pytest.mark.parametrize(("fails", "taking"), [(2, 0.0), (1, 0.5)])
async def test_a_blip_of_the_store_cuts_no_answer(
    fake_chat_api: FakeChatAPI, caplog: pytest.LogCaptureFixture, fails: int, taking: float
) -> None:
    # Two heartbeats in a row failed (or one that took half an interval to fail)
    # within about a second: the live answer was cut, on a single replica too.
    caplog.set_level(logging.INFO)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.1)
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, limits="heartbeat_interval: 1.0") as bridge,
    ):
        beat, failed = bridge._beat_once, []

        async def blipping_beat() -> None:
            if len(failed) < fails:
                failed.append(True)
                await asyncio.sleep(taking)  # a beat that takes long to fail
                raise StoreError("store: connection refused")
            await beat()

        bridge._beat_once = blipping_beat  # type: ignore[method-assign]
        console: LocalPlatform = bridge.platforms["console"]
        target = await console.say("a long one", thread="T1")
        await asyncio.wait_for(target.ended.wait(), 20)
    assert len(failed) == fails
    assert not [r for r in caplog.records if FENCED in r.getMessage()]
    assert target.visible()[-1].endswith("w39 ")
