"""A graceful stop while the store does not answer ends in bounded time.

A statement behind another session's lock, or a database that stopped answering
(a failover, a partition): the stop still ends within the grace and
`AFTER_GRACE_SECONDS`, saying what it left for the next start, before an
orchestrator's kill (30 s in Kubernetes by default). A second signal cuts the waits
on a store that does not answer short, not the time of one that does. A stop that
cuts a store call on its way leaves nothing behind that looks cut by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bridge import app
from bridge.app import Bridge
from bridge.interruptions import END_ON_STOP, Marked
from bridge.stopping import HURRIED_SECONDS
from bridge.store import InFlight
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import PG_URL, pg_schema_url

AFTER_GRACE = 1.5  # instead of 5 s, to keep the tests short
GRACE = 0.5
MARGIN = 2.0  # closing the pool and the background tasks, and a loaded machine
UNAVAILABLE = "the store is unavailable: 1 replies cut by the stop are not marked interrupted"


@pytest.fixture(autouse=True)
def short_after_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "AFTER_GRACE_SECONDS", AFTER_GRACE)


class Freezer:
    """A TCP relay to the PostgreSQL server that can stop forwarding: the database
    stops answering, its connections stay open."""

    def __init__(self) -> None:
        self.frozen = False
        self.thawed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        try:
            yield int(server.sockets[0].getsockname()[1])
        finally:
            self.thaw()
            server.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def thaw(self) -> None:
        self.frozen = False
        self.thawed.set()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        host, port = PG_URL.split("@", 1)[1].split("/", 1)[0].split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.frozen:
                        await self.thawed.wait()
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def live_reply(fake: FakeChatAPI, bridge: Bridge) -> None:
    """Start a reply that outlasts the grace; return once it shows its first words."""
    on: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
    first = await on.say("A long one?", thread="T1")
    await wait_for(lambda: any("w1" in text for text in first.visible()))


async def stop(bridge: Bridge) -> tuple[float, bool]:
    """Stop as `chat-bridge run` does; how long it took and whether it was clean."""
    started = time.monotonic()
    try:
        clean = await bridge.drain()
    finally:
        await bridge.aclose()
    return time.monotonic() - started, clean


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("hurried", [False, True])
async def test_a_stop_while_a_lock_holds_the_bridges_table(
    fake_chat_api: FakeChatAPI, caplog: pytest.LogCaptureFixture, hurried: bool
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(300)], token_delay=0.1)
    async with pg_schema_url() as url:
        schema = url.rsplit("=", 1)[1]
        bridge = shared_bridge(fake_chat_api, url, limits=f"shutdown_grace: {GRACE}")
        await bridge.__aenter__()
        locker = await asyncpg.connect(PG_URL)
        try:
            await live_reply(fake_chat_api, bridge)
            async with locker.transaction():
                await locker.execute(f'LOCK TABLE "{schema}".inflight IN ACCESS EXCLUSIVE MODE')
                if hurried:
                    bridge.relay.hurry()  # a second stop signal, before the grace ends
                took, clean = await stop(bridge)
        finally:
            await locker.close()
    assert not clean  # `chat-bridge run` exits 1
    assert UNAVAILABLE in caplog.text
    if hurried:
        assert took < 1.0 + MARGIN  # not the grace, nor the time after it
    else:
        assert took < GRACE + AFTER_GRACE + MARGIN


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("hurried", [False, True])
async def test_a_stop_while_the_database_stops_answering(
    fake_chat_api: FakeChatAPI, caplog: pytest.LogCaptureFixture, hurried: bool
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(300)], token_delay=0.1)
    freezer = Freezer()
    async with freezer.serving() as port, pg_schema_url() as url:
        where = PG_URL.split("@", 1)[1].split("/", 1)[0]
        bridge = shared_bridge(
            fake_chat_api,
            url.replace(where, f"127.0.0.1:{port}"),
            limits=f"shutdown_grace: {GRACE}",
        )
        await bridge.__aenter__()
        await live_reply(fake_chat_api, bridge)
        freezer.frozen = True
        if hurried:
            bridge.relay.hurry()
        took, clean = await stop(bridge)
    assert not clean
    assert UNAVAILABLE in caplog.text
    if hurried:  # the cut reply's end waits on the store too (its lease let go)
        assert took < END_ON_STOP + HURRIED_SECONDS + MARGIN
    else:
        assert took < GRACE + AFTER_GRACE + MARGIN


@pytest.mark.timeout(60)
async def test_a_stop_while_another_process_holds_the_sqlite_file(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(300)], token_delay=0.1)
    db = tmp_path / "b.db"
    bridge = bridge_for(fake_chat_api, db, extra=f"limits: {{shutdown_grace: {GRACE}}}")
    await bridge.__aenter__()
    other = sqlite3.connect(db, isolation_level=None)
    try:
        await live_reply(fake_chat_api, bridge)
        other.execute("BEGIN EXCLUSIVE")  # a tool's write, holding the file
        took, clean = await stop(bridge)
    finally:
        other.close()
    assert not clean
    assert UNAVAILABLE in caplog.text
    # A SQLite statement waits out its busy timeout (5 s) for the lock, whatever the
    # deadline, and the file is closed after those in aiosqlite's queue: the one
    # running as the stop began and the stop's own last write.
    assert took < GRACE + AFTER_GRACE + 2 * 5.0 + MARGIN


@pytest.mark.timeout(60)
async def test_a_second_signal_leaves_a_healthy_store_its_time(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cut reply's platform takes a while to clear its indicators (up to
    END_ON_STOP): the store, which answers, still gets its time after a second
    signal; the reply is marked and the stop is clean."""
    clearing = 1.5  # a Slack workspace slow to take a reaction off
    original_end = RecordingTarget.end

    async def slow_end(self: RecordingTarget) -> None:
        await asyncio.sleep(clearing)
        await original_end(self)

    monkeypatch.setattr(RecordingTarget, "end", slow_end)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(300)], token_delay=0.1)
    bridge = bridge_for(fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 10}")
    await bridge.__aenter__()
    on: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
    first = await on.say("A long one?", thread="T1")
    await wait_for(lambda: any("w1" in text for text in first.visible()))
    bridge.relay.hurry()  # a second stop signal
    took, clean = await stop(bridge)
    assert clean  # `chat-bridge run` exits 0
    assert "the store" not in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("interrupted" in text.lower() for text in first.visible())
    assert took < clearing + 1.0 + MARGIN


@pytest.mark.postgres
@pytest.mark.timeout(60)
async def test_a_second_signal_while_the_store_hangs_and_the_platform_is_slow(
    fake_chat_api: FakeChatAPI,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """About a second for the store after what the cut replies take to end."""
    clearing = 1.5
    original_end = RecordingTarget.end

    async def slow_end(self: RecordingTarget) -> None:
        await asyncio.sleep(clearing)
        await original_end(self)

    monkeypatch.setattr(RecordingTarget, "end", slow_end)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(300)], token_delay=0.1)
    async with pg_schema_url() as url:
        schema = url.rsplit("=", 1)[1]
        bridge = shared_bridge(fake_chat_api, url, limits="shutdown_grace: 10")
        await bridge.__aenter__()
        locker = await asyncpg.connect(PG_URL)
        try:
            await live_reply(fake_chat_api, bridge)
            async with locker.transaction():
                await locker.execute(f'LOCK TABLE "{schema}".inflight IN ACCESS EXCLUSIVE MODE')
                bridge.relay.hurry()
                took, clean = await stop(bridge)
        finally:
            await locker.close()
    assert not clean
    assert UNAVAILABLE in caplog.text
    assert took < clearing + 1.0 + MARGIN


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("reset", [False, True])
async def test_a_stop_while_a_finished_replys_record_is_removed_marks_nothing(
    fake_chat_api: FakeChatAPI, reset: bool
) -> None:
    # The stop cut the removal, which went on, on a connection of its own: the stop's
    # look for the replies it cut, on another, still found the record, and marked the
    # finished reply interrupted, its text cut back to the progress last recorded. A
    # reset's second record (in the asker's own conversation) was not removed at all.
    fake_chat_api.enqueue(tokens=["The ", "whole ", "answer."], token_delay=0.02)
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, route=", session: channel") as bridge,
    ):
        store = bridge.store
        end, mark = store.inflight_end, bridge.recovery.mark_interrupted
        removing, go_on, removed = asyncio.Event(), asyncio.Event(), asyncio.Event()
        marked: list[str] = []

        async def slow_end(rec_id: str) -> None:
            if removing.is_set():
                await end(rec_id)
                return
            removing.set()  # the first removal, the finished reply's: a busy database
            await go_on.wait()
            await end(rec_id)
            removed.set()

        async def marking(rec: InFlight, *, kept: bool = False) -> Marked | None:
            marked.append(rec.id)
            return await mark(rec, kept=kept)

        store.inflight_end = slow_end  # type: ignore[method-assign]
        bridge.recovery.mark_interrupted = marking  # type: ignore[method-assign]
        on: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        target = await (on.say("", command="reset") if reset else on.say("A question?"))
        await asyncio.wait_for(removing.wait(), 10)
        shown = (target.visible(), list(target.notices))
        assert await bridge.drain(grace=0)  # the grace ends as the record is removed
        go_on.set()
        await asyncio.wait_for(removed.wait(), 10)
        assert marked == []
        assert await store.inflight_orphans("anyone", time.time() + 1) == []
        assert (target.visible(), target.notices) == shown
