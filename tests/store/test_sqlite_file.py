"""The SQLite file's free pages: given back to the disk, or said how to at start."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import StoreError
from bridge.interfaces import Turn
from bridge.store import sqlite_file
from bridge.store.sqlite import SQLiteStore

INCREMENTAL = 2  # PRAGMA auto_vacuum's number for it
LONG = "w" * 6000  # a long turn, past what one page holds


def pragmas(path: Path, *names: str) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        return [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in names]


def wal_size(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


def keep_conversations(path: Path, count: int) -> None:
    """`count` conversations, each with a history of two long turns, the oldest first
    (written as a year of use left them, in one go: it is quick)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("BEGIN")
        for i in range(count):
            raw.execute(
                "INSERT INTO conversations (key, backend, session, created_at, last_used, meta)"
                " VALUES (?, 'docs', NULL, ?, ?, '{}')",
                (f"k{i}|docs", float(i), float(i)),
            )
            raw.executemany(
                "INSERT INTO history (key, role, content) VALUES (?, ?, ?)",
                [
                    (f"k{i}|docs", "user", f"{i}? {LONG}"),
                    (f"k{i}|docs", "assistant", f"{i}. {LONG}"),
                ],
            )
        raw.execute("COMMIT")


async def test_a_new_file_gives_back_its_free_pages_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with SQLiteStore(path):
        pass
    assert pragmas(path, "auto_vacuum") == [INCREMENTAL]


async def test_a_full_disk_still_has_the_write_ahead_log_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Giving pages back writes: on a full disk it fails, and it came first, so the
    # checkpoint that gave the log's space back to the disk was never reached again.
    path = tmp_path / "b.db"
    async with SQLiteStore(path) as store:
        keep_conversations(path, 40)
        await store.prune_conversations(older_than=30.0, limit=100)
        assert wal_size(path) > 0

        async def disk_full(db: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr("bridge.store.sqlite.give_space_back", disk_full)
        with pytest.raises(StoreError, match="the disk is full"):
            await store.compact()
        assert wal_size(path) == 0


async def test_forgotten_conversations_give_their_space_back_to_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The file stayed as large as it ever was: pruned, its pages were only free
    # for what came next (a year's conversations pruned to a quarter left 1.8 GB,
    # of which 1.4 GB free).
    monkeypatch.setattr(sqlite_file, "SPACE_BACK_PAGES", 1000)
    path = tmp_path / "b.db"
    async with SQLiteStore(path):
        pass
    keep_conversations(path, 3000)
    async with SQLiteStore(path) as store:
        while await store.prune_conversations(2000.0, 1000):  # as the heartbeats do
            pass
        await store.compact()  # a minute's: the log emptied into the file
        [size, free, pages] = pragmas(path, "page_size", "freelist_count", "page_count")
        assert free > 3 * 1000
        assert path.stat().st_size == pages * size
        await store.compact()  # the next minute's: a bounded part given back
        assert pragmas(path, "freelist_count") == [free - 1000]
        # (and the pages that mapped those, in a file that gives pages back)
        assert path.stat().st_size <= (pages - 1000) * size
        for _ in range(free // 1000):
            await store.compact()
        assert pragmas(path, "freelist_count") == [0]
        assert path.stat().st_size <= (pages - free) * size
        # What was kept is whole, moved from the end of the file to the front.
        assert await store.history("k2999|docs") == [
            Turn("user", f"2999? {LONG}"),
            Turn("assistant", f"2999. {LONG}"),
        ]
        assert await store.get_conversation("k1999|docs") is None
    assert pragmas(path, "quick_check") == ["ok"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_file_that_keeps_many_free_pages_is_said_so_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Made by an earlier version, a file keeps its free pages (auto_vacuum NONE), and
    # only a VACUUM with the bridge stopped switches it: nothing told an admin.
    monkeypatch.setattr(sqlite_file, "FREE_TOLD_BYTES", 2**20)
    path = tmp_path / "old chat-bridge.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("CREATE TABLE filler (x)")
    async with SQLiteStore(path):
        pass
    keep_conversations(path, 600)
    async with SQLiteStore(path) as store:
        while await store.prune_conversations(400.0, 1000):
            pass
        await store.compact()
    [size, free, pages] = pragmas(path, "page_size", "freelist_count", "page_count")
    assert pragmas(path, "auto_vacuum") == [0] and free > pages // 2  # still there
    caplog.clear()

    async with SQLiteStore(path):
        pass
    [said] = [r for r in caplog.records if "free pages" in r.getMessage()]
    assert said.levelno == logging.WARNING
    assert f"holds {free * size // 10**6:,} MB of free pages" in said.getMessage()
    command = "'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'"
    assert f"sqlite3 '{path}' {command}" in said.getMessage()
    assert "bridge stopped" in said.getMessage()

    # What it says to do, done: the file is smaller, gives its space back from then
    # on, and nothing is said any more.
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.executescript("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
    assert pragmas(path, "auto_vacuum", "freelist_count") == [INCREMENTAL, 0]
    assert path.stat().st_size < (pages - free // 2) * size
    caplog.clear()
    async with SQLiteStore(path) as store:
        assert await store.get_conversation("k599|docs") is not None
    assert not [r for r in caplog.records if "free pages" in r.getMessage()]
