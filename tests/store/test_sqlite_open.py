"""Opening the SQLite file: no database thread or connection is left behind when
the opening fails or a stop cancels it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import StoreError
from bridge.store.sqlite import SQLiteStore


def workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def test_a_file_that_cannot_be_opened_leaves_no_database_thread(tmp_path: Path) -> None:
    before = workers()
    # Its last callback would find the event loop of a failed start closed.
    with pytest.raises(StoreError, match="cannot open the SQLite database"):
        await SQLiteStore(tmp_path).open()  # a directory
    assert workers() <= before


def test_a_stop_while_the_file_opens_closes_it_and_leaves_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stop while the file opened (a slow disk) ended the start at once, the event
    # loop closed, and the database thread, done opening, called back into it:
    # "Exception in thread … Event loop is closed" after "stopped while starting". The
    # connection it opened was never closed.
    raised: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    begun, go_on = threading.Event(), threading.Event()
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def slow_connect(*args: Any, **kw: Any) -> sqlite3.Connection:
        begun.set()
        go_on.wait(30)
        # Any thread may then ask it whether it is closed.
        opened.append(connect(*args, **{**kw, "check_same_thread": False}))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", slow_connect)

    async def stopped_while_opening() -> None:
        opening = asyncio.create_task(SQLiteStore(tmp_path / "bridge.db").open())
        await asyncio.to_thread(begun.wait, 30)
        opening.cancel()
        # Once the cancel has reached open() (the callback next in turn), the file opens
        # if open() waits for it; else only after the loop is closed, as a slow disk's
        # does after a start that gave up on it.
        asyncio.get_running_loop().call_soon(lambda: opening.done() or go_on.set())
        with pytest.raises(asyncio.CancelledError):
            await opening

    before = workers()
    asyncio.run(stopped_while_opening())  # which closes its loop, as the daemon's does
    go_on.set()
    for thread in workers() - before:
        thread.join(30)
    assert raised == []
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        opened[0].execute("SELECT 1")
