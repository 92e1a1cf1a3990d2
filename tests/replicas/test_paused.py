"""A replica whose host was paused (a laptop suspended, a VM paused, migrated or
snapshotted) past the takeover time, on a shared PostgreSQL store.

Its own monotonic clock does not count the pause (Linux's CLOCK_MONOTONIC stops
in a suspend, a paused VM's kvmclock too), so its fence never rises; the other
replica, reading the database's clock, took its answer over meanwhile, marked it
interrupted and answered the next question. At its first heartbeat after the
pause the replica stops that answer and marks it interrupted again (its own late
edits undid the other's mark).

Emulated in one process: while paused, the replica runs nothing of its own (its
heartbeat and its edits wait), and its fence sees no time pass (the time of its
last heartbeat is moved on by as much). Its boot and wall clocks do, as in a
suspend: resumed, it edits nothing before that heartbeat.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from contextlib import AsyncExitStack

import pytest

from bridge.app import Bridge
from bridge.interruptions import INTERRUPTED
from bridge.render import LiveReply
from bridge.reply_budget import Held, Op
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(40)]

PAUSED = "longer than the takeover time"

# Which replica runs the code at hand: the tasks of each inherit it.
WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="?")


@pytest.mark.parametrize("found_by", ["the database's clock", "the records taken over"])
async def test_a_replica_paused_past_the_takeover_stops_and_marks_its_answer_again(
    fake_chat_api: FakeChatAPI, caplog: pytest.LogCaptureFixture, found_by: str
) -> None:
    # It went on answering after the pause, beside the replica that took over (which
    # answered the next question at the same time), its edits undid the other's
    # "interrupted" mark, and nothing was logged.
    caplog.set_level(logging.INFO)
    async with pg_schema_url() as url, AsyncExitStack() as stack:
        a, b = await _two_replicas(stack, fake_chat_api, url)
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]

        paused = False
        resumed = asyncio.Event()
        ops: list[tuple[str, str, str]] = []  # (replica, message id or "beat", text)

        WHO.set("a")
        thread = await on_a.say("first", thread="T1", sent_at=1_700_000_000.1)
        edit, post = thread.edit, thread.post

        async def edit_as(message_id: str, text: str) -> None:
            if WHO.get() == "a" and paused:
                await resumed.wait()
            ops.append((WHO.get(), message_id, text))
            await edit(message_id, text)

        async def post_as(text: str) -> str:
            if WHO.get() == "a" and paused:
                await resumed.wait()
            message_id = await post(text)
            ops.append((WHO.get(), message_id, text))
            return message_id

        thread.edit, thread.post = edit_as, post_as  # type: ignore[method-assign]
        beat = a._beat_once

        beats: list[float] = []

        async def paused_beat() -> None:
            after = paused
            if paused:
                await resumed.wait()
                if found_by == "the records taken over":
                    a._beaten_in_store = None  # as if its last beat were unknown
            await beat()
            beats.append(time.monotonic())
            if after:
                ops.append(("a", "beat", ""))

        a._beat_once = paused_beat  # type: ignore[method-assign]

        await wait_for(lambda: beats and any("word1" in t for t in thread.visible()))
        # --- A is paused ---
        paused = True
        stopped_clock = asyncio.create_task(_clock_stopped(a, resumed))
        # B takes A's answer over, marks it, and answers the next question.
        await wait_for(lambda: any(INTERRUPTED in t for t in thread.visible()), timeout=10)
        WHO.set("b")
        await on_b.say("second", thread="T1", sent_at=1_700_000_000.2)
        await wait_for(lambda: len(thread.visible()) == 2 and "then1" in thread.visible()[1])
        # --- A resumes ---
        paused = False
        resumed.set()
        await stopped_clock
        WHO.set("a")
        await wait_for(lambda: a.relay.live == 0 and b.relay.live == 0, timeout=20)

        shown, answered = thread.visible()
        assert shown.endswith(INTERRUPTED), shown
        assert answered.endswith("then4 ")
        # After its first heartbeat once resumed, A only marked its answer again.
        after = ops[ops.index(("a", "beat", "")) + 1 :]
        assert all(INTERRUPTED in text for who, _, text in after if who == "a")
        warned = [r for r in caplog.records if PAUSED in r.getMessage()]
        assert [r.levelno for r in warned] == [logging.WARNING]
        assert "word59" not in shown


@pytest.mark.parametrize("found_by", ["the database's clock", "the records taken over"])
async def test_a_replica_resumed_from_a_suspend_edits_nothing_before_its_heartbeat(
    fake_chat_api: FakeChatAPI,
    monkeypatch: pytest.MonkeyPatch,
    found_by: str,
) -> None:
    # Resumed, its answer went on editing its reply (undoing the other replica's
    # "interrupted" mark) until its first heartbeat, up to an interval later. Its
    # monotonic clock stood still meanwhile, its boot and wall clocks did not: a
    # laptop suspended.
    async with pg_schema_url() as url, AsyncExitStack() as stack:
        a, b = await _two_replicas(stack, fake_chat_api, url)
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]

        paused = False
        resumed = asyncio.Event()
        ops: list[tuple[str, str, str]] = []  # (replica, message id or "resumed", text)

        WHO.set("a")
        thread = await on_a.say("first", thread="T1", sent_at=1_700_000_000.1)
        edit = thread.edit

        async def edit_as(message_id: str, text: str) -> None:
            ops.append((WHO.get(), message_id, text))
            await edit(message_id, text)

        thread.edit = edit_as  # type: ignore[method-assign]
        # While paused, A's updates wait before anything of theirs is done, and so
        # does its heartbeat.
        acquire = LiveReply._acquire

        async def paused_acquire(reply: LiveReply, op: Op) -> Held:
            if WHO.get() == "a" and paused:
                await resumed.wait()
            return await acquire(reply, op)

        monkeypatch.setattr(LiveReply, "_acquire", paused_acquire)
        beat = a._beat_once

        async def paused_beat() -> None:
            if paused:
                await resumed.wait()
                if found_by == "the records taken over":
                    a._beaten_in_store = None  # as if its last beat were unknown
            await beat()

        a._beat_once = paused_beat  # type: ignore[method-assign]

        await wait_for(lambda: any("word1" in t for t in thread.visible()))
        # --- A is suspended: its monotonic clock stops ---
        paused = True
        stopped_clock = asyncio.create_task(_clock_stopped(a, resumed))
        await wait_for(lambda: any(INTERRUPTED in t for t in thread.visible()), timeout=10)
        WHO.set("b")
        await on_b.say("second", thread="T1", sent_at=1_700_000_000.2)
        await wait_for(lambda: len(thread.visible()) == 2 and "then4" in thread.visible()[1])
        # --- A resumes ---
        WHO.set("a")
        ops.append(("a", "resumed", ""))
        paused = False
        resumed.set()
        await stopped_clock
        await wait_for(lambda: a.relay.live == 0 and b.relay.live == 0, timeout=20)

        shown, answered = thread.visible()
        assert shown.endswith(INTERRUPTED), shown
        assert answered.endswith("then4 ")
        after = ops[ops.index(("a", "resumed", "")) + 1 :]
        strays = [text for who, _, text in after if who == "a" and INTERRUPTED not in text]
        assert strays == []


async def _two_replicas(
    stack: AsyncExitStack, fake_chat_api: FakeChatAPI, url: str
) -> tuple[Bridge, Bridge]:
    """Replicas a and b on the store at `url`, seeing one thread (a's), and the chat
    API's two answers: a long one, then a short one."""
    fake_chat_api.enqueue(tokens=[f"word{i} " for i in range(60)], token_delay=0.1)
    fake_chat_api.enqueue(tokens=[f"then{i} " for i in range(5)], token_delay=0.1)
    WHO.set("a")
    a = await stack.enter_async_context(shared_bridge(fake_chat_api, url))
    WHO.set("b")
    b = await stack.enter_async_context(shared_bridge(fake_chat_api, url))
    b.platforms["console"].targets = a.platforms["console"].targets  # type: ignore[attr-defined]
    return a, b


async def _clock_stopped(a: Bridge, resumed: asyncio.Event) -> None:
    """Until `resumed`, a's fence sees no time pass, as its monotonic clock in a pause."""
    fence = a.relay.fence
    beaten, paused_at = fence.beaten_at, time.monotonic()
    while not resumed.is_set():
        fence._beaten_at = beaten + (time.monotonic() - paused_at)
        await asyncio.sleep(0.005)
