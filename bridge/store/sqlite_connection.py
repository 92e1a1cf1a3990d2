"""The SQLite store's connection: one aiosqlite connection per process.

All statements go through one aiosqlite connection, guarded by an asyncio lock
so a multi-statement transaction of one task never interleaves with another
task's statements. Write transactions start with BEGIN IMMEDIATE, so two
processes sharing the file serialise on SQLite's write lock and wait up to the
busy timeout for each other. A daemon holds `<file>.lock` first (`hold()`), so a
second daemon waits for the first to stop; the write lock is left to the other
users of the file (tests, tools) and to file systems without locks.

The queries that go through it are `bridge.store.sqlite`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import aiosqlite

from bridge.errors import StoreCorrupt, StoreError
from bridge.store.base import Store
from bridge.store.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION_SQLITE,
    Migration,
    check_migrations,
    pending,
)
from bridge.store.sqlite_file import (
    MEMORY,
    PROBE,
    Checkpoints,
    FileWatch,
    SQLiteErrors,
    close_quietly,
    connected,
    enter_wal,
    hold_lock_file,
    make_parent,
    make_space_returning,
    probe,
    rollback_quietly,
    tell_of_free_space,
)

log = logging.getLogger("chat_bridge.store")


class SQLiteConnection(Store):
    """What `SQLiteStore` stands on: its file opened (its schema migrated), held
    against a second daemon and closed, and the statements of its queries run in
    turns, in transactions, their errors said in words an admin can act on."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._migrations = tuple(migrations)
        check_migrations(self._migrations)
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._held: int | None = None  # the lock file's descriptor, while held
        self._errors = SQLiteErrors(self.path)  # and the first damage found in the file
        self._file = FileWatch(self.path)  # whether the file opened is still the path's
        self._checkpoints = Checkpoints(self.path)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the file (creating it and its directory) and apply pending migrations."""
        if self._db is not None:
            return
        memory = self.path in MEMORY
        if not memory:
            make_parent(self.path)
        connecting = aiosqlite.connect(
            ":memory:" if memory else self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            # No statement cache: aiosqlite drops a statement's cursor in the event
            # loop's thread, whose cleanup can reset a cached statement that the
            # database thread is running again meanwhile ("bad parameter or other
            # API misuse" under load; CPython gh-118172). Preparing is cheap here.
            cached_statements=0,
        )
        try:
            db = await connected(connecting)
        except sqlite3.Error as exc:
            raise self._error(exc, "opening the database") from exc
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await make_space_returning(db)  # before WAL mode writes its first page
            if not memory:
                await enter_wal(db, self.busy_timeout)
                await db.execute("PRAGMA synchronous = NORMAL")
                # What is deleted (a reset's history, a finished reply's text) is
                # overwritten in the file, not left in its free pages.
                await db.execute("PRAGMA secure_delete = ON")
            await self._migrate(db)
            await probe(db)
            if not memory:
                self._file.opened()
                await tell_of_free_space(db, self.path)
        except BaseException as exc:
            await close_quietly(db)
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "preparing the database") from exc
            raise
        self._db = db

    async def hold(self) -> None:
        """Wait until no other process holds the file (see `Store.hold`).

        Two daemons on one file would each take the other's live replies for a dead
        process's and mark them interrupted, and answer one conversation at once.
        The second waits, so it takes over when the first stops.
        """
        if self.path in MEMORY or self._held is not None:
            return
        self._held = await hold_lock_file(self.path)

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await close_quietly(db)
        held, self._held = self._held, None
        if held is not None:
            os.close(held)

    async def ping(self) -> None:
        if self._errors.corrupt is not None:
            # Once found, said until the restart: the page a ping touches may be sound,
            # while every question of a conversation in a damaged one fails.
            raise StoreCorrupt(self._errors.corrupt)
        self._file.check()
        # A write: a file another process holds locked, or one that became read-only,
        # is not healthy, though it still reads.
        async with self._write("answering a ping") as db:
            await db.execute(PROBE)

    # ------------------------------------------------------------------ migrations

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute(SCHEMA_VERSION_SQLITE)
        applied = await _versions(db)
        for migration in pending(self._migrations, applied, f"the SQLite database {self.path}"):
            try:
                await db.execute("BEGIN IMMEDIATE")
                # Another process may have applied it while we waited for the lock.
                if migration.version not in await _versions(db):
                    log.info(
                        "applying schema migration %d to the SQLite database %s: %s",
                        migration.version,
                        self.path,
                        migration.description,
                    )
                    for statement in migration.sqlite:
                        await db.execute(statement)
                    await db.execute(
                        "INSERT INTO schema_version (version, description, applied_at)"
                        " VALUES (?, ?, ?)",
                        (migration.version, migration.description, time.time()),
                    )
                await db.execute("COMMIT")
            except BaseException:
                await rollback_quietly(db)
                raise

    async def schema_versions(self) -> list[int]:
        """The migration versions applied to this database, ascending."""
        async with self._read("reading the schema version") as db:
            return sorted(await _versions(db))

    # ------------------------------------------------------------------ plumbing

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"the SQLite store {self.path} is not open; open() it first")
        return self._db

    @asynccontextmanager
    async def _turn(self, one_trip: bool) -> AsyncIterator[None]:
        """Wait for the connection where that is needed.

        An operation that is one statement in one trip to aiosqlite's thread
        goes straight to its queue unless a transaction is open: the queue is
        first in, first out, so it runs before any BEGIN queued after it and
        cannot land inside someone else's transaction. Under load this keeps
        many questions' lookups in the queue at once, where taking turns would
        cost each of them a full round trip through the busy event loop.
        Everything else (transactions, reads that fetch in a second trip)
        holds the lock.
        """
        if one_trip and not self._lock.locked():
            yield
            return
        async with self._lock:
            yield

    @asynccontextmanager
    async def _read(
        self, what: str, *, one_trip: bool = False
    ) -> AsyncIterator[aiosqlite.Connection]:
        async with self._turn(one_trip):
            db = self._conn()
            try:
                yield db
            except sqlite3.Error as exc:
                raise self._error(exc, what) from exc
            except UnicodeError as exc:
                raise self._errors.not_text(what) from exc
            except ValueError as exc:  # aiosqlite: the connection was closed under us
                raise StoreError(f"the SQLite store {self.path} was closed") from exc

    @asynccontextmanager
    async def _write(
        self, what: str, *, transaction: bool = True, one_trip: bool = True
    ) -> AsyncIterator[aiosqlite.Connection]:
        """Run the body in one IMMEDIATE transaction under the lock, or as a single
        atomic statement in one trip (`transaction=False`, autocommit; see `_turn`), or
        as statements in autocommit under the lock (and `one_trip=False`)."""
        async with self._turn(not transaction and one_trip):
            db = self._conn()
            try:
                if not transaction:
                    yield db
                    return
                # A cancelled BEGIN may still run in aiosqlite's thread; the
                # ROLLBACK queued behind it keeps the connection usable.
                try:
                    await db.execute("BEGIN IMMEDIATE")
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    await rollback_quietly(db)
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, what) from exc
            except UnicodeError as exc:
                raise self._errors.not_text(what) from exc
            except ValueError as exc:
                raise StoreError(f"the SQLite store {self.path} was closed") from exc

    def _error(self, exc: sqlite3.Error, what: str) -> StoreError:
        """A StoreError that says what went wrong and what to do about it."""
        return self._errors.error(exc, what, self.busy_timeout)


async def _versions(db: aiosqlite.Connection) -> set[int]:
    cursor = await db.execute("SELECT version FROM schema_version")
    return {row[0] for row in await cursor.fetchall()}
