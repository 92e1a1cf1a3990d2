"""Live replies' progress: new messages written at once, text in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from bridge.errors import StoreError
from bridge.progress import ProgressLog
from bridge.store import InFlightProgress
from tests.core.fakeplatform import wait_for


class Store:
    """Records each batch written; can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[InFlightProgress]] = []
        self.failing = False

    async def inflight_update_many(self, rows: Sequence[InFlightProgress], owner: str) -> set[str]:
        if self.failing:
            raise StoreError("the store is down")
        self.batches.append(list(rows))
        return {row[0] for row in rows}


def make() -> tuple[Store, ProgressLog]:
    store = Store()
    return store, ProgressLog(store, "me", every=0.05)  # type: ignore[arg-type]


def texts(batch: list[InFlightProgress]) -> list[tuple[str, list[str], str]]:
    return [(rec_id, list(ids), text) for rec_id, ids, text, _ in batch]


async def test_a_new_message_is_written_at_once() -> None:
    store, progress = make()
    await progress.note("r1", ["m1"], "Hello")
    assert [texts(b) for b in store.batches] == [[("r1", ["m1"], "Hello")]]
    await progress.note("r1", ["m1", "m2"], "Hello ... continued")
    assert texts(store.batches[-1]) == [("r1", ["m1", "m2"], "Hello ... continued")]


async def test_text_of_the_same_messages_is_written_in_one_batch_with_the_newest() -> None:
    store, progress = make()
    await progress.note("r1", ["m1"], "a")
    await progress.note("r2", ["m9"], "x")
    for text in ("a b", "a b c", "a b c d"):
        await progress.note("r1", ["m1"], text)
    await progress.note("r2", ["m9"], "x y")
    assert len(store.batches) == 2  # only the two first messages so far
    await progress.flush()
    assert sorted(texts(store.batches[-1])) == [
        ("r1", ["m1"], "a b c d"),
        ("r2", ["m9"], "x y"),
    ]


async def test_the_writer_task_writes_pending_text_by_itself() -> None:
    store, progress = make()
    await progress.note("r1", ["m1"], "a")
    writer = asyncio.create_task(progress.run())
    try:
        await progress.note("r1", ["m1"], "a b")
        await wait_for(lambda: len(store.batches) >= 2, timeout=5)
        assert texts(store.batches[-1]) == [("r1", ["m1"], "a b")]
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_finished_reply_is_not_written_again() -> None:
    store, progress = make()
    await progress.note("r1", ["m1"], "a")
    await progress.note("r1", ["m1"], "a b")
    progress.forget("r1")
    await progress.flush()
    assert len(store.batches) == 1


async def test_a_failed_batch_is_kept_for_the_next_one(caplog: pytest.LogCaptureFixture) -> None:
    store, progress = make()
    await progress.note("r1", ["m1"], "a")
    await progress.note("r1", ["m1"], "a b")
    store.failing = True
    with caplog.at_level(logging.WARNING, logger="chat_bridge.progress"):
        await progress.flush()
    assert "could not record the progress of 1 replies" in caplog.text
    store.failing = False
    await progress.flush()
    assert texts(store.batches[-1]) == [("r1", ["m1"], "a b")]


async def test_a_new_message_the_store_refused_is_written_with_the_next_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, progress = make()
    store.failing = True
    with caplog.at_level(logging.WARNING, logger="chat_bridge.progress"):
        await progress.note("r1", ["m1"], "a")
    assert "could not record the messages of a reply" in caplog.text
    store.failing = False
    await progress.flush()
    assert texts(store.batches[-1]) == [("r1", ["m1"], "a")]


async def test_a_new_message_whose_write_a_stop_cuts_is_written_by_the_stops_flush() -> None:
    # Its row left the pending ones as the write began: a stop cancelling the reply
    # then (the store busy with another statement) lost its ids, and the stop's mark
    # was posted under a message it left unmarked.
    store, progress = make()
    busy = asyncio.Event()
    write = store.inflight_update_many

    async def slow(rows: Sequence[InFlightProgress], owner: str) -> set[str]:
        busy.set()
        await asyncio.Event().wait()  # waits its turn until the stop cuts it
        return await write(rows, owner)

    store.inflight_update_many = slow  # type: ignore[method-assign]
    noting = asyncio.create_task(progress.note("r1", ["m1"], "a"))
    await asyncio.wait_for(busy.wait(), 5)
    noting.cancel()
    await asyncio.gather(noting, return_exceptions=True)
    store.inflight_update_many = write  # type: ignore[method-assign]
    await progress.flush()
    assert [texts(b) for b in store.batches] == [[("r1", ["m1"], "a")]]


async def test_a_store_that_keeps_failing_is_told_once_and_tried_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Twice a second, each failure a WARNING of its own, for as long as the store was
    # down (a PostgreSQL outage): the lines that mattered were buried.
    store, progress = make()
    await progress.note("r1", ["m1"], "a")
    store.failing = True
    waits = []
    with caplog.at_level(logging.INFO, logger="chat_bridge.progress"):
        for text in ("a b", "a b c", "a b c d"):
            await progress.note("r1", ["m1"], text)
            await progress.flush()
            waits.append(progress._wait())
        store.failing = False
        await progress.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "could not record the progress of 1 replies: the store is down",
        "recorded the progress of live replies again, after 3 failed tries",
    ]
    assert waits == sorted(waits) and waits[0] > progress.every
    assert progress._wait() == progress.every
    assert texts(store.batches[-1]) == [("r1", ["m1"], "a b c d")]


async def test_writes_come_in_time_again_once_the_replies_that_failed_have_ended() -> None:
    # Every reply ended during the outage: nothing was left to write, so the backoff
    # stayed, and the next reply's text was held back up to 8 s for hours.
    store, progress = make()
    await progress.note("r1", ["m1"], "a")
    store.failing = True
    for text in ("a b", "a b c"):
        await progress.note("r1", ["m1"], text)
        await progress.flush()
    assert progress._wait() > progress.every
    progress.forget("r1")
    store.failing = False
    await progress.flush()
    assert progress._wait() == progress.every
