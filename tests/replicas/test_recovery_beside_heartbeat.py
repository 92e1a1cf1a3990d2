"""Marking a dead replica's replies, which may wait long on a platform's budget,
holds up neither this replica's heartbeat nor its claim on what it marks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from bridge.interfaces import Address, ReplyTarget
from bridge.interruptions import Marked
from bridge.recovery import Recovery
from bridge.store import InFlight, open_store
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.test_background_tasks import count_rounds
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(30)]

LIVE = "console:W1:thread:C1:T1|docs"


async def beaten_after(
    since: float, rows: Callable[[], Awaitable[list[InFlight]]], what: str
) -> None:
    """Poll (5 s at most) until there are records and each was beaten for after `since`."""
    deadline = time.monotonic() + 5
    while True:
        found = await rows()
        if found and all(r.heartbeat_at > since + 0.5 for r in found):
            return
        assert time.monotonic() < deadline, f"no heartbeat for {what}: {found}"
        await asyncio.sleep(0.1)


DEAD = "console:W1:thread:C9:T9|docs"


async def test_a_slow_mark_holds_up_neither_the_heartbeat_nor_its_claim(
    fake_chat_api: FakeChatAPI,
) -> None:
    # The heartbeat awaited the marking: this replica's own live replies went stale,
    # and the other replica marked one of them interrupted and answered its
    # conversation's next message alongside.
    fake_chat_api.enqueue(tokens=["A ", "slow ", "answer."], token_delay=2.0)
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as bridge:
        store = bridge.store
        await store.inflight_begin(
            InFlight(
                id="dead-1",
                key=DEAD,
                address=Address("console", "W1", "C9", "T9"),
                owner="replica-gone",
                started_at=1.0,
                heartbeat_at=time.time() - 60,
            )
        )
        marking, release = asyncio.Event(), asyncio.Event()
        mark = bridge.recovery.mark_interrupted

        async def slow_mark(rec: InFlight) -> Marked | None:  # waiting, as for a platform's budget
            marking.set()
            await release.wait()
            return await mark(rec)

        bridge.recovery.mark_interrupted = slow_mark  # type: ignore[method-assign]
        console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        await console.say("A long question", thread="T1")
        await wait_for(lambda: marking.is_set(), timeout=10)
        since = time.time()

        for key in (LIVE, DEAD):
            await beaten_after(since, lambda k=key: store.inflight_for_key(k), key)
        release.set()
        await wait_for(lambda: bridge.relay.live == 0, timeout=10)


async def test_the_start_ups_marking_is_beaten_for_while_it_waits(
    fake_chat_api: FakeChatAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Start-up recovery ran before the heartbeat started: a reply it claimed and
    # waited to mark went stale meanwhile, for another replica to claim and mark again.
    async with pg_schema_url() as url:
        first = shared_bridge(fake_chat_api, url)
        async with first:  # makes the schema
            pass
        store = open_store(first.config.store)
        await store.open()
        try:
            await store.inflight_begin(
                InFlight(
                    id="dead-1",
                    key=DEAD,
                    address=Address("console", "W1", "C9", "T9"),
                    owner="replica-gone",
                    started_at=1.0,
                    heartbeat_at=time.time() - 60,
                )
            )
            bridge = shared_bridge(fake_chat_api, url)
            marking, release = asyncio.Event(), asyncio.Event()
            mark = Recovery.mark_interrupted

            async def slow_mark(
                self: Recovery, rec: InFlight, *, kept: bool = False
            ) -> Marked | None:
                marking.set()
                await release.wait()
                return await mark(self, rec, kept=kept)

            monkeypatch.setattr(Recovery, "mark_interrupted", slow_mark)
            starting = asyncio.create_task(bridge.__aenter__())
            try:
                await wait_for(lambda: marking.is_set(), timeout=10)
                since = time.time()
                await beaten_after(since, lambda: store.inflight_for_key(DEAD), "it")
                release.set()
                await starting
                assert await store.inflight_for_key(DEAD) == []
            finally:
                release.set()
                await asyncio.gather(starting, return_exceptions=True)
                await bridge.aclose()
        finally:
            await store.aclose()


class SlowThreadTarget(RecordingTarget):
    """Opens a thread only once `opened` is set (as waiting on Discord's budget)."""

    platform: LocalPlatform
    opened: asyncio.Event
    opening: asyncio.Event

    async def open_thread(self, name: str) -> tuple[str, ReplyTarget]:
        self.opening.set()
        await self.opened.wait()
        return "T7", self.platform.target(Address("console", "W1", self.address.channel, "T7"))


async def test_a_record_is_beaten_for_while_its_thread_opens(fake_chat_api: FakeChatAPI) -> None:
    # The record was written before its job was counted: while the thread waited to
    # open, no heartbeat renewed it, and another replica marked the live reply
    # interrupted (in the channel, and again in the thread once the record moved).
    fake_chat_api.enqueue(tokens=["The ", "answer."])
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, route=", reply_in_thread: true") as bridge,
    ):
        console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        question = Address("console", "W1", "C1", "1.000")
        slow = SlowThreadTarget(channel="C1")
        slow.address, slow.platform = question, console
        slow.opening, slow.opened = asyncio.Event(), asyncio.Event()
        console.targets[question] = slow
        await console.say("What is it?", channel="C1")
        await wait_for(lambda: slow.opening.is_set(), timeout=10)
        since = time.time()
        await beaten_after(
            since,
            lambda: bridge.store.inflight_orphans("nobody", time.time() + 1),
            "the record while its thread opens",
        )
        slow.opened.set()
        in_thread = Address("console", "W1", "C1", "T7")
        await wait_for(lambda: in_thread in console.targets, timeout=10)
        await console.targets[in_thread].ended.wait()
        assert console.targets[in_thread].visible() == ["The answer."]
        assert slow.visible() == []  # nothing marked interrupted where it was asked


async def test_a_stop_ends_the_marking_of_other_replicas_replies_and_begins_none(
    fake_chat_api: FakeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The heartbeat began a marking of its own while the stop closed the platforms'
    # inbound side (a socket slow to close): it took the budgets the stop's marks need.
    recoveries: list[asyncio.Task[object] | None] = []
    closing = asyncio.Event()

    async def marking(self: Recovery) -> int:
        recoveries.append(asyncio.current_task())
        await asyncio.Event().wait()  # many replies, on the platforms' budgets
        return 0

    async def slow_to_close(self: LocalPlatform) -> None:
        closing.set()
        before = len(rounds)
        await wait_for(lambda: len(rounds) >= before + 3, timeout=10)  # beats meanwhile

    monkeypatch.setattr(Recovery, "recover", marking)
    monkeypatch.setattr(LocalPlatform, "stop_receiving", slow_to_close)
    async with pg_schema_url() as url:
        bridge = shared_bridge(fake_chat_api, url, limits="heartbeat_interval: 0.2")
        await bridge.open()
        try:
            rounds = count_rounds(bridge)
            await wait_for(lambda: len(recoveries) == 1)  # the start's
            await bridge.drain()
            assert closing.is_set()
            [start] = recoveries
            assert start is not None and start.cancelled()
        finally:
            await bridge.aclose()
