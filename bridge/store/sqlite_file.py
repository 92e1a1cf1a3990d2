"""The SQLite file itself, apart from what the store keeps in it.

Making its directory (`make_parent`); holding its lock file, so one daemon uses
it at a time (`hold_lock_file`); putting it in WAL mode (`enter_wal`) and seeing
that it can be written (`probe`); giving back to the disk what deleted rows leave
free in it (`give_space_back`, made so when it is new by `make_space_returning`,
and `tell_of_free_space` at start where it cannot) and emptying its write-ahead
log (`empty_log`); opening it with nothing left behind when that fails or is
cancelled (`connected`), and closing it quietly when something already failed
(`close_quietly`, `rollback_quietly`); what SQLite's errors
mean, in words an admin can act on (`SQLiteErrors`); and what an admin must
hear of the file under a running bridge: replaced (`FileWatch`), or its
write-ahead log held up (`Checkpoints`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import shlex
import sqlite3
import threading
import time
from pathlib import Path

import aiosqlite

from bridge.errors import StoreCorrupt, StoreError, StoreReplaced

log = logging.getLogger("chat_bridge.store")

MEMORY = ("", ":memory:")  # the paths of an in-memory database
HOLD_POLL = 0.5  # seconds between tries at a file another process holds
HOLD_TELL_EVERY = 60.0  # seconds between the log lines saying so
PROBE = "PRAGMA user_version = 0"  # a write of nothing the bridge reads
# Checkpoints in a row another process's reads held off, past which a warning says so
# (one a minute: `bridge.app.COMPACT_EVERY`).
CHECKPOINT_BUSY_WARNED = 5
OPEN_WAIT = 5.0  # seconds given an opening that failed or was cancelled to end
# Free pages one compaction (one a minute) gives back at most, the store's other
# statements waiting meanwhile: each moves a page in use at the end of the file into a
# free one and rewrites what points at it. 1,024 pages (4 MB at 4 KiB a page) took
# 0.13 s where every page moved was in use (0.3 s for 2,048): far short of the 2 s a
# Slack event's acknowledgement waits for the store, on a disk ten times slower too.
# 240 MB an hour gives back a gigabyte pruned at once within hours.
SPACE_BACK_PAGES = 1024
# Free pages at start, in a file that cannot give them back by itself, past which a
# line says how to: both a share of the file and a size (a small file's few
# megabytes are not worth a stop).
FREE_TOLD_SHARE = 0.25
FREE_TOLD_BYTES = 64 * 2**20


def make_parent(path: str) -> None:
    """Create the directory `path` goes in, or say why it cannot be."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # A part of the path is a file: permissions are not the problem.
        raise StoreError(
            f"cannot use {str(parent)!r} as the SQLite database's directory: a part of it "
            "is a file, not a directory; check the store path"
        ) from None
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory {str(parent)!r} for the SQLite database "
            f"({exc.strerror}); create it or fix its permissions"
        ) from exc


async def hold_lock_file(path: str) -> int:
    """Wait until no other process holds `<path>.lock`, take it, and return its
    descriptor: the lock goes when the descriptor is closed.

    Where the file system has no locks, this is said in the log and the file
    is used all the same.
    """
    where = f"{path}.lock"
    make_parent(where)
    try:
        held = os.open(where, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot create {where}, the lock file of the SQLite database "
            f"({exc.strerror}); check the permissions of its directory"
        ) from exc
    told_at = -math.inf
    try:
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            except OSError as exc:  # a file system without locks (some network ones)
                log.warning(
                    "cannot lock %s (%s): make sure only one chat-bridge uses "
                    "the SQLite database %s",
                    where,
                    exc.strerror,
                    path,
                )
                break
            if time.monotonic() - told_at >= HOLD_TELL_EVERY:
                told_at = time.monotonic()
                other = os.pread(held, 32, 0).decode("ascii", "replace").strip()
                log.warning(
                    "waiting: another chat-bridge (pid %s) uses the SQLite database "
                    "%s; a SQLite store is for one process (stop the other, or use "
                    "a postgresql:// store for several replicas)",
                    other or "?",
                    path,
                )
            await asyncio.sleep(HOLD_POLL)
        os.ftruncate(held, 0)
        os.pwrite(held, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(held)  # a lock taken goes with its descriptor
        raise
    return held


async def enter_wal(db: aiosqlite.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL mode; waits out other openers doing the same.

    The switch needs the file to itself, and SQLite may report it busy at
    once instead of waiting for the busy timeout, so wait here.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.05)


async def make_space_returning(db: aiosqlite.Connection) -> None:
    """Have a file that has no page yet give back, in `give_space_back`, the space
    deleted rows leave free in it.

    Once it has a page, switching takes a VACUUM, which rewrites the whole file
    (see `tell_of_free_space`): this must come before anything writes to it.
    """
    [(pages,)] = await db.execute_fetchall("PRAGMA page_count")
    if pages == 0:
        await db.execute("PRAGMA auto_vacuum = INCREMENTAL")


async def give_space_back(db: aiosqlite.Connection) -> None:
    """Give back to the disk up to `SPACE_BACK_PAGES` of the file's free pages, if it
    was made to (`make_space_returning`): the file shrinks at the next checkpoint.

    Else free pages stay in the file, for what is written next to reuse.
    """
    # It frees a page a step, and `execute` would take the first step alone.
    await db.executescript(f"PRAGMA incremental_vacuum({SPACE_BACK_PAGES})")


async def empty_log(db: aiosqlite.Connection, busy_timeout: float) -> bool:
    """Checkpoint the write-ahead log and empty it; False where another process's
    read held that off.

    Not waiting for that read (a backup tool, a sqlite3 shell left in a
    transaction): every statement of the store would queue behind it for the
    busy timeout, each minute.
    """
    await db.execute("PRAGMA busy_timeout = 0")
    try:
        rows = await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return not next(iter(rows), (0,))[0]


async def tell_of_free_space(db: aiosqlite.Connection, path: str) -> None:
    """At start: where a file that does not give its free pages back by itself (one
    made by an earlier version) holds many, say in one line how much a VACUUM would
    give back, and how to run it."""
    [(mode,)] = await db.execute_fetchall("PRAGMA auto_vacuum")
    [(pages,)] = await db.execute_fetchall("PRAGMA page_count")
    [(free,)] = await db.execute_fetchall("PRAGMA freelist_count")
    [(size,)] = await db.execute_fetchall("PRAGMA page_size")
    if mode != 0 or free * size <= FREE_TOLD_BYTES or free <= pages * FREE_TOLD_SHARE:
        return
    log.warning(
        "the SQLite database %s holds %s MB of free pages (%d%% of the file) that it does "
        "not give back to the disk by itself (a file made by an earlier version): with the "
        "bridge stopped, `sqlite3 %s 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'` gives "
        "them back and has the file give back what is deleted from then on (it rewrites "
        "the file, in seconds a gigabyte, and needs free disk about twice the %s MB kept)",
        path,
        f"{free * size // 10**6:,}",
        100 * free // pages,
        shlex.quote(path),
        f"{(pages - free) * size // 10**6:,}",
    )


async def probe(db: aiosqlite.Connection) -> None:
    """Write, and take it back: raises if the database cannot be written.

    A file SQLite opens read-only (its mode, a read-only mount) still gives the
    write lock (BEGIN IMMEDIATE); only a write tells.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(PROBE)
    finally:
        await rollback_quietly(db)


async def connected(connecting: aiosqlite.Connection) -> aiosqlite.Connection:
    """Open a connection, leaving no database thread behind if it fails or is
    cancelled (a stop while the file opens).

    aiosqlite stops the thread without waiting; a start that ends on it closes
    the event loop at once, and the thread's last callback then finds the loop
    closed and prints a traceback after the daemon's own words. Cancelled, the
    opening is let finish (for up to OPEN_WAIT seconds), and what it opened is
    closed, not left to the collector.
    """
    opening = asyncio.ensure_future(connecting)
    try:
        return await asyncio.shield(opening)
    except sqlite3.Error:
        await thread_ended(connecting)
        raise
    except asyncio.CancelledError:
        await asyncio.wait((opening,), timeout=OPEN_WAIT)
        if not opening.done():  # a file system that does not answer: left as it is
            opening.cancel()
        elif opening.exception() is None:
            await close_quietly(opening.result())
        else:
            await thread_ended(connecting)
        raise


async def thread_ended(connecting: aiosqlite.Connection) -> None:
    """Wait for the database thread of a connection that failed to open."""
    # aiosqlite 0.22 keeps its thread in `_thread`; before, the connection was the thread.
    thread = getattr(connecting, "_thread", connecting)
    if isinstance(thread, threading.Thread) and thread.is_alive():
        await asyncio.to_thread(thread.join, OPEN_WAIT)


async def close_quietly(db: aiosqlite.Connection) -> None:
    try:
        await db.close()
    except (sqlite3.Error, ValueError):
        pass


async def rollback_quietly(db: aiosqlite.Connection) -> None:
    try:
        await db.execute("ROLLBACK")
    except (sqlite3.Error, ValueError):
        pass  # no transaction open (BEGIN failed) or the connection is gone


class SQLiteErrors:
    """What SQLite's errors on the file at `path` mean, as StoreErrors that say
    what to do; and the first damage found in it (`corrupt`), kept until the
    restart."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.corrupt: str | None = None  # how the file was first found damaged, if it was

    def error(self, exc: sqlite3.Error, what: str, busy_timeout: float) -> StoreError:
        """A StoreError that says what went wrong and what to do about it."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc).lower()
        where = self.where
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            return StoreError(
                f"{where} is locked by another process or connection (gave up after "
                f"{busy_timeout:g} s while {what}); make sure only one chat-bridge uses "
                "this file, or use a postgresql:// store for several replicas"
            )
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return StoreError(
                f"{where} is not writable ({what}); check the permissions of the file, "
                "its -wal and -shm files and its directory"
            )
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return StoreError(
                f"cannot open {where}; check that the path is a file in a writable directory"
            )
        if name.startswith("SQLITE_NOTADB") or "not a database" in text:
            return StoreError(f"{where} is not a SQLite database; point `store:` at another file")
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            return StoreError(f"{where} cannot grow: the disk is full ({what})")
        if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
            return self.found_corrupt(what)
        return StoreError(f"{where} failed while {what}: {exc}")

    @property
    def where(self) -> str:
        if self.path in MEMORY:
            return "the in-memory SQLite database"
        return f"the SQLite database {self.path}"

    def found_corrupt(self, what: str) -> StoreCorrupt:
        """The file is damaged: say so, and remember it for `ping` until the restart
        (asking again cannot help, a restore from a backup does)."""
        message = f"{self.where} is corrupt ({what}); restore it from a backup"
        if self.corrupt is None:
            self.corrupt = message
        return StoreCorrupt(message)

    def not_text(self, what: str) -> StoreError:
        # A string SQLite cannot take (half of a UTF-16 pair): not the store's fault.
        return StoreError(
            f"the SQLite store {self.path} was given text that is not Unicode ({what})"
        )


class FileWatch:
    """Whether `path` still names the file the store opened.

    Put back under a running bridge (a backup restored without a stop), what is
    written goes to the file opened, which a restart no longer finds; nothing
    else tells (every statement succeeds).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened: tuple[int, int] | None = None  # (device, inode), once opened
        self._told = False

    def opened(self) -> None:
        self._opened = _identity(self.path)

    def check(self) -> None:
        """Raise StoreReplaced, said once in the log, if the path names another file."""
        if self._opened is None or _identity(self.path) == self._opened:
            return
        message = (
            f"the SQLite database {self.path} was removed or replaced while the "
            "bridge ran (a backup put back without a stop?): what it writes since "
            "goes to the file it opened, and is lost at the next start; stop the "
            "bridge and start it again"
        )
        if not self._told:
            self._told = True
            log.error("%s", message)
        raise StoreReplaced(message)


class Checkpoints:
    """Checkpoints of the write-ahead log that another process's reads held off, in
    a row: warned of at `CHECKPOINT_BUSY_WARNED`, and told when one passes again."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.busy = 0

    def done(self, *, busy: bool) -> None:
        if not busy:
            if self.busy >= CHECKPOINT_BUSY_WARNED:
                log.info("the write-ahead log of %s is emptied again", self.path)
            self.busy = 0
            return
        self.busy += 1
        if self.busy == CHECKPOINT_BUSY_WARNED:
            log.warning(
                "the write-ahead log of %s could not be emptied %d times in a row: another "
                "process keeps a read open on the file (a backup tool, a sqlite3 shell in "
                "a transaction?); it grows, and what was deleted stays in it, until then",
                self.path,
                CHECKPOINT_BUSY_WARNED,
            )


def _identity(path: str) -> tuple[int, int] | None:
    """Which file `path` names now (device, inode); None where there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino
