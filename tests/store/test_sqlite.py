"""What only the SQLite store does: files, directories, locks, `:memory:`, URLs, damage."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import ConfigError, StoreCorrupt, StoreError, StoreReplaced, told
from bridge.interfaces import Address, Turn
from bridge.store import sqlite as sqlite_store
from bridge.store import sqlite_file
from bridge.store.base import BACKEND_NAMES, Conversation, InFlight, open_store
from bridge.store.migrations import MIGRATIONS
from bridge.store.sqlite import SQLiteStore
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.fakes.chatapi import FakeChatAPI


async def test_memory_database(tmp_path: Path) -> None:
    async with SQLiteStore(":memory:") as s:
        assert await s.claim_event("e", 1.0) is True
        assert await s.claim_event("e", 1.0) is False
        assert await s.schema_versions() == [m.version for m in MIGRATIONS]


async def test_text_that_is_not_unicode_is_said_so(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "b.db") as s:
        with pytest.raises(StoreError, match="given text that is not Unicode"):
            await s.append_history("k", [Turn("user", "half \ud83d")], keep=5)
        await s.append_history("k", [Turn("user", "whole")], keep=5)  # still open
        assert [t.content for t in await s.history("k")] == ["whole"]


async def test_creates_parent_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bridge.db"
    async with SQLiteStore(path) as s:
        await s.ping()
    assert path.is_file()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


async def test_a_file_where_the_directory_should_be_is_named_as_such(tmp_path: Path) -> None:
    # It was said to be a matter of permissions, which it is not.
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for path in (blocker / "sub" / "bridge.db", blocker / "bridge.db"):
        store = SQLiteStore(path)
        for step in (store.hold, store.open):
            with pytest.raises(StoreError, match="is a file, not a directory") as info:
                await step()
            assert "permissions" not in str(info.value)


def read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open databases as SQLite opens a file it may not write (its mode, a read-only
    mount), as root cannot be shown with file modes."""
    connect = aiosqlite.connect

    def connect_read_only(path: str, **kw: Any) -> aiosqlite.Connection:
        return connect(f"file:{path}?mode=ro", uri=True, **kw)

    monkeypatch.setattr(aiosqlite, "connect", connect_read_only)


async def test_a_database_that_cannot_be_written_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path):
        pass  # made, migrated
    read_only(monkeypatch)
    store = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match="is not writable"):
            await store.open()
    finally:
        await store.aclose()


async def test_a_database_that_can_no_longer_be_written_fails_the_ping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path) as store:
        await store.ping()
        read_only(monkeypatch)
        writable, store._db = store._db, await aiosqlite.connect(str(path))  # remounted
        try:
            with pytest.raises(StoreError, match="is not writable"):
                await store.ping()
        finally:
            assert store._db is not None
            await store._db.close()
            store._db = writable


@pytest.mark.parametrize("how", ["replaced", "removed"])
async def test_a_file_replaced_or_removed_under_the_store_fails_the_ping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    # A backup put back without a stop: every statement went on into the file the
    # store had opened, lost at the next start, while /healthz said ok.
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path) as store:
        await store.ping()
        if how == "replaced":
            backup = tmp_path / "backup.db"
            backup.write_bytes(path.read_bytes())
            os.replace(backup, path)
        else:
            path.unlink()
        for _ in range(2):
            with pytest.raises(StoreReplaced, match="removed or replaced while the bridge"):
                await store.ping()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "stop the bridge and start it again" in error


async def test_another_process_reading_holds_up_no_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A read left open elsewhere (a backup tool, a sqlite3 shell in a transaction):
    # each minute's checkpoint waited the busy timeout for it, and every statement
    # of the store with it.
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path, busy_timeout=30.0) as store:
        await store.save_conversation(Conversation("k", "docs", "s", 1.0, 1.0))
        reader = sqlite3.connect(path)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM conversations").fetchone()
            await store.save_conversation(Conversation("k2", "docs", "s", 1.0, 1.0))
            for _ in range(sqlite_file.CHECKPOINT_BUSY_WARNED):
                # A hang deadline, not a speed check: held off, it took the busy timeout.
                await asyncio.wait_for(store.compact(), 10)
            [warned] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert "another process keeps a read open on the file" in warned
        finally:
            reader.close()
        await asyncio.wait_for(store.compact(), 10)
        assert any("is emptied again" in r.getMessage() for r in caplog.records)


async def test_a_daemon_waits_while_another_holds_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bridge.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    await first.hold()
    await first.open()
    waiting = asyncio.create_task(second.hold())
    try:
        await wait_for(lambda: "another chat-bridge (pid" in caplog.text, timeout=5)
        assert f"(pid {os.getpid()})" in caplog.text
        assert "postgresql://" in caplog.text
        assert not waiting.done()
        await first.aclose()  # the first stops: the second goes on
        await asyncio.wait_for(waiting, 5)
        await second.open()
        await second.ping()
    finally:
        waiting.cancel()
        await first.aclose()
        await second.aclose()


async def test_a_file_system_without_locks_is_said_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    async with SQLiteStore(tmp_path / "bridge.db") as store:
        await asyncio.wait_for(store.hold(), 5)
        await store.ping()
    assert "make sure only one chat-bridge uses the SQLite database" in caplog.text


async def test_waiting_for_the_file_ends_with_a_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path) as first:
        await first.hold()
        descriptors = len(os.listdir("/proc/self/fd"))
        waiting = asyncio.create_task(SQLiteStore(path).hold())
        await wait_for(lambda: "another chat-bridge (pid" in caplog.text, timeout=5)
        waiting.cancel()  # a stop while it waits
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert len(os.listdir("/proc/self/fd")) == descriptors  # the lock file is closed


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    path.write_bytes(b"this is certainly not sqlite " * 100)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        await SQLiteStore(path).open()


def _hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


async def test_locked_file_gives_store_error_after_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path, busy_timeout=0.3) as s:
        assert await s.claim_event("before", 1.0) is True
        holder = _hold_exclusive_lock(path)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                await s.claim_event("during", 2.0)
            waited = time.monotonic() - started
            with pytest.raises(StoreError, match="locked"):
                await s.append_history("k", [], keep=1)
            with pytest.raises(StoreError, match="locked"):  # so /healthz says so
                await s.ping()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        message = str(info.value)
        assert "locked" in message and str(path) in message and "0.3 s" in message
        assert 0.2 <= waited < 5.0
        # Once the other connection lets go, the store works again.
        assert await s.claim_event("during", 3.0) is True
        assert await s.history("k") == []


async def test_locked_file_at_open_gives_store_error(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    # A rollback-journal database with an exclusive lock blocks even readers.
    sqlite3.connect(path).close()
    holder = _hold_exclusive_lock(path)
    holder.execute("CREATE TABLE squatter (x)")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked by another process"):
            await SQLiteStore(path, busy_timeout=0.2).open()
        assert time.monotonic() - started < 5.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with SQLiteStore(path) as s:
        await s.ping()


def test_store_urls(tmp_path: Path) -> None:
    absolute = open_store("sqlite:///data/x.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == "/data/x.db"
    relative = open_store("sqlite://x.db")
    assert isinstance(relative, SQLiteStore) and relative.path == "x.db"
    memory = open_store("sqlite://")
    assert isinstance(memory, SQLiteStore) and memory.path == ":memory:"
    with pytest.raises(ConfigError, match="store"):
        open_store("mysql://nope")


async def test_cancelled_write_leaves_the_connection_usable(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    async with SQLiteStore(path, busy_timeout=2.0) as s:
        holder = _hold_exclusive_lock(path)
        try:
            task = asyncio.create_task(s.append_history("k", [Turn("user", "lost")], keep=5))
            deadline = time.monotonic() + 5
            while not s._lock.locked():  # the write is now waiting for the file lock
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await s.append_history("k", [Turn("user", "kept")], keep=5)
        assert await s.history("k") == [Turn("user", "kept")]
        assert await s.claim_event("after", 1.0) is True


async def test_a_write_never_lands_in_another_tasks_rolled_back_transaction(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "bridge.db") as s:
        unbindable = Turn("user", object())  # type: ignore[arg-type]  # fails inside BEGIN…COMMIT
        failing = asyncio.create_task(s.append_history("k", [unbindable], keep=5))
        await asyncio.sleep(0)  # its BEGIN is queued: the transaction is open
        assert s._lock.locked()
        claimed, saved = await asyncio.gather(
            s.claim_event("e", 1.0),
            s.save_conversation(Conversation("c", "b", "s1", 1.0, 1.0)),
        )
        with pytest.raises(StoreError, match="appending to a history"):
            await failing
        assert claimed is True
        assert await s.claim_event("e", 1.0) is False  # kept, not rolled back with it
        conv = await s.get_conversation("c")
        assert conv is not None and conv.session == "s1"
        assert await s.history("k") == []


async def test_one_statement_writes_do_not_take_turns(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "bridge.db") as s:
        writes = [asyncio.ensure_future(s.claim_event(f"e{i}", 1.0)) for i in range(50)]
        await asyncio.sleep(0)
        # All fifty are queued for the database thread at once, none waits for a lock.
        assert not s._lock.locked()
        assert await asyncio.gather(*writes) == [True] * 50


@pytest.mark.parametrize("update_from", [True, False], ids=["one-statement", "transaction"])
async def test_progress_of_many_replies_lands_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_from: bool
) -> None:
    # More rows than one statement takes; older SQLite builds use a transaction instead.
    monkeypatch.setattr("bridge.store.sqlite._UPDATE_FROM", update_from)
    where = Address("slack", "T1", "C1")
    async with SQLiteStore(tmp_path / "bridge.db") as s:
        for i in range(1200):
            await s.inflight_begin(InFlight(f"r{i}", f"k{i}", where, "me", started_at=1.0))
        await s.inflight_update_many(
            [(f"r{i}", [f"m{i}", "m"], f"text {i}", 2.0 + i) for i in range(1200)]
            + [("gone", ["x"], "a reply that already ended", 9.0)],
            "me",
        )
        recs = {r.id: r for r in await s.inflight_orphans("me", stale_before=0.0)}
    assert len(recs) == 1200
    assert all(
        (r.message_ids, r.text, r.heartbeat_at) == ([f"m{i}", "m"], f"text {i}", 2.0 + i)
        for i, r in ((int(k[1:]), r) for k, r in recs.items())
    )


async def test_statements_from_many_tasks_at_once_all_run(tmp_path: Path) -> None:
    # aiosqlite lets a statement's cursor go in the event loop's thread, and
    # sqlite3's statement cache may already have lent that statement to the
    # database thread again: under load some writes failed with "bad parameter
    # or other API misuse" (CPython gh-118172). The store keeps no such cache.
    where = Address("slack", "T1", "C1")
    errors: list[StoreError] = []
    async with SQLiteStore(tmp_path / "bridge.db") as s:
        for i in range(1000):
            await s.inflight_begin(InFlight(f"r{i}", f"k{i}", where, "me", started_at=1.0))
        until = time.monotonic() + 3.0

        async def keep(write: Callable[[], Awaitable[object]], pause: float) -> None:
            while time.monotonic() < until:
                try:
                    await write()
                except StoreError as exc:
                    errors.append(exc)
                await asyncio.sleep(pause)

        def one(i: int) -> Callable[[], Awaitable[set[str]]]:
            return lambda: s.inflight_update_many([(f"r{i}", ["m1", "m2"], "a b " * 50, 2.0)], "me")

        def every() -> Awaitable[set[str]]:
            return s.inflight_update_many(
                [(f"r{i}", ["m1"], "a" * 2000, 3.0) for i in range(1000)], "me"
            )

        def lookups() -> Awaitable[object]:
            return asyncio.gather(s.get_conversation("k1"), s.inflight_for_key("k2"))

        await asyncio.gather(
            *(keep(one(i), 0.0) for i in range(200)),
            keep(every, 0.05),
            *(keep(lookups, 0.0) for _ in range(20)),
        )
    assert errors == []


async def test_what_a_reset_forgets_leaves_the_files_at_the_next_heartbeat(
    tmp_path: Path,
) -> None:
    # The write-ahead log kept a reset conversation's words for as long as the
    # daemon ran (and the file's free pages, where SQLite is built so).
    path = tmp_path / "b.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.save_conversation(Conversation("k", "docs", "s1", 1.0, 1.0))
        await store.append_history("k", [Turn("user", "my password is PW-hunter2")], 10)
        await store.reset_conversation("k")
        await store.compact()  # what a heartbeat does a minute apart
        for name in (path, Path(f"{path}-wal")):
            if name.exists():
                assert b"PW-hunter2" not in name.read_bytes(), name
    finally:
        await store.aclose()


async def test_emptying_the_log_beside_a_reset_fails_neither(tmp_path: Path) -> None:
    # It ran outside the lock after other statements: a reset's transaction opened
    # between them, and the log's emptying ran inside it ("database is locked").
    store = SQLiteStore(tmp_path / "b.db")
    await store.open()
    try:
        await store.save_conversation(Conversation("k", "docs", "s1", 1.0, 1.0))
        await store.append_history("k", [Turn("user", "a question")], 10)
        results = await asyncio.gather(
            store.compact(),
            store.reset_conversation("k"),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert await store.history("k") == []
    finally:
        await store.aclose()


async def test_counting_other_backends_reads_no_conversation_it_does_not_count(
    tmp_path: Path,
) -> None:
    # Run at every start: on a store of millions of conversations, a scan of them all.
    async with SQLiteStore(tmp_path / "b.db") as s:
        await s.save_conversation(Conversation("k|docs", "docs", None, 1.0, 1.0))
    with contextlib.closing(sqlite3.connect(tmp_path / "b.db")) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {BACKEND_NAMES}")] + [
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM conversations WHERE backend = ?", ("x",)
            )
        ]
    steps = [step for step in plan if "conversations" in step]
    assert steps, plan
    assert all("USING COVERING INDEX conversations_scope" in step for step in steps), plan


async def test_counting_unmade_key_scopes_reads_no_conversation_it_does_not_count(
    tmp_path: Path,
) -> None:
    # Run at every start, as the count of other backends: no scan of every conversation.
    async with SQLiteStore(tmp_path / "b.db") as s:
        await s.save_conversation(Conversation("slack:T1:user:U1|docs", "docs", None, 1.0, 1.0))
    with contextlib.closing(sqlite3.connect(tmp_path / "b.db")) as conn:
        plan = [
            row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sqlite_store._SCOPES}", ("docs",))
        ] + [
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN {sqlite_store._SCOPE_COUNT}", ("docs", "slack:user")
            )
        ]
    steps = [step for step in plan if "conversations" in step]
    assert steps, plan
    # Searched in the index, never scanned. (SQLite before 3.41 also reads the row of each
    # conversation it finds so: it does not take an index of an expression to cover it.)
    assert all(
        "USING" in step and "INDEX conversations_scope (backend=?" in step for step in steps
    ), plan


# What only a history's pages hold: the text of its turns.
WORDS = "q" * 400


async def keep_histories(store: SQLiteStore, count: int = 20) -> None:
    for i in range(count):
        await store.save_conversation(Conversation(f"k{i}|docs", "docs", None, 1.0, 1.0))
        await store.append_history(
            f"k{i}|docs", [Turn("user", WORDS + "?"), Turn("assistant", WORDS + ".")], 20
        )


def damage_pages_holding(path: Path, words: bytes) -> int:
    """Overwrite the cell pointers of every page of the file that holds `words`, as a
    failing disk or a copy gone wrong may: the other pages stay sound."""
    data = path.read_bytes()
    size = int.from_bytes(data[16:18], "big")  # the header's page size (1: 64 KiB)
    size = 65536 if size == 1 else size
    damaged = 0
    with path.open("r+b") as file:
        for start in range(0, len(data), size):
            if words in data[start : start + size]:
                file.seek(start + 8)
                file.write(b"\xff" * 200)
                damaged += 1
    assert damaged, "no page holds the words"
    return damaged


async def test_a_file_with_damaged_pages_is_said_corrupt_once_they_are_met(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every question of those conversations failed with "try again shortly", for ever,
    # and the ping, which writes a sound page, said the store was fine.
    path = tmp_path / "b.db"
    async with SQLiteStore(path) as store:
        await keep_histories(store)
    damage_pages_holding(path, WORDS.encode())
    async with SQLiteStore(path) as store:  # it starts: the sound pages still answer
        assert await store.get_conversation("k3|docs") is not None
        await store.ping()  # nothing met yet (the start reads no page it need not)
        with pytest.raises(
            StoreCorrupt, match=r"is corrupt \(reading a history\); restore it from a backup"
        ) as info:
            await store.history("k3|docs")
        assert told(info.value) == StoreCorrupt.user_message
        assert "Tell an admin" in told(info.value) and "try again" not in told(info.value)
        with pytest.raises(StoreCorrupt, match=r"is corrupt \(reading a history\)"):
            await store.ping()  # said from then on


async def test_damage_found_while_running_is_said_until_the_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with SQLiteStore(path) as store:
        await keep_histories(store)
        await store.compact()  # the histories are in the file itself, not in its log
        damage_pages_holding(path, WORDS.encode())
        with contextlib.closing(sqlite3.connect(path)) as other:
            # Another writer: the store reads the file again, not the pages it kept.
            other.execute("PRAGMA user_version = 0")
        await store.ping()  # the page it writes is sound: nothing is known yet
        for _ in range(2):
            with pytest.raises(StoreCorrupt, match=r"corrupt \(reading a history\)"):
                await store.history("k3|docs")
        for _ in range(2):  # from now on
            with pytest.raises(StoreCorrupt, match=r"corrupt \(reading a history\)"):
                await store.ping()


async def test_health_and_asker_say_a_damaged_store_is_corrupt(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The asker was told to try again shortly, and /healthz said 200 "ok", for ever.
    path = tmp_path / "b.db"
    fake_chat_api.enqueue(tokens=["Kept."])
    async with stateless_bridge(fake_chat_api, path) as bridge:
        first = await console(bridge).say(WORDS + "?", channel="C1")
        await asyncio.wait_for(first.ended.wait(), 10)
    assert first.visible() == ["Kept."]
    damage_pages_holding(path, WORDS.encode())  # the history's page
    async with stateless_bridge(fake_chat_api, path) as bridge:
        again = await console(bridge).say("and then?", channel="C1")
        await asyncio.wait_for(again.ended.wait(), 10)
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{bridge.http_port}/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "unhealthy", "down": {"store": "corrupt"}}
    assert again.notices == [StoreCorrupt.user_message]
    assert len(fake_chat_api.requests) == 1  # the API was not asked without the history


def stateless_bridge(fake: FakeChatAPI, db: Path) -> Bridge:
    """A bridge whose backend is sent the history (one conversation per console user)."""
    text = f"""
store: sqlite://{db}
http: {{listen: "127.0.0.1:0"}}
backends:
  docs: {{kind: openai, url: {fake.endpoint("openai")}, model: m, api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs, session: user}}]
reply: {{edit_interval: 0.05}}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


def console(bridge: Bridge) -> LocalPlatform:
    return bridge.platforms["console"]  # type: ignore[return-value]
