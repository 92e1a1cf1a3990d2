"""Questions deleted once their answer began: found wherever the deletion was told."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.deletions import record_deletion, taken_back
from bridge.errors import StoreError
from bridge.interfaces import Inbound, Turn
from bridge.store.sqlite import SQLiteStore
from tests.core.recording import RecordingTarget


class SharedStore(SQLiteStore):
    """A store as several replicas share it (PostgreSQL's), in a file."""

    shared = True


def question(ts: str) -> Inbound:
    return Inbound(
        platform="slack",
        workspace="T1",
        channel="C1",
        user="U1",
        text="hunter2",
        message_id=ts,
        event_id=f"C1:{ts}",
    )


async def test_a_deletion_told_to_another_replica_is_found_once_the_answer_is_read(
    tmp_path: Path,
) -> None:
    # Its answer was read, the question's deletion known only to the store: the turn
    # was kept, and sent again with every later question.
    async with SharedStore(tmp_path / "b.db") as store:
        await record_deletion(store, "slack", "T1", "C1", "1.0")
        assert await taken_back(store, question("1.0"), RecordingTarget())
        assert not await taken_back(store, question("2.0"), RecordingTarget())


async def test_a_store_that_cannot_say_keeps_the_turn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with SharedStore(tmp_path / "b.db") as store:

        async def fails(event_id: str) -> bool:
            raise StoreError("the store is unreachable")

        store.event_claimed = fails  # type: ignore[method-assign]
        assert not await taken_back(store, question("1.0"), RecordingTarget())
    assert any(
        "could not look for a deletion" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


async def test_a_deletion_the_store_cannot_take_is_logged_and_its_turn_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with SharedStore(tmp_path / "b.db") as store:
        await store.append_history(
            "k",
            [Turn("user", "my password is hunter2", "slack:T1:U1"), Turn("assistant", "a")],
            10,
            question="slack:T1:C1:1.0",
        )

        async def unclaimed(event_id: str, now: float) -> bool:
            raise StoreError("the store is unreachable")

        async def unforgotten(question: str) -> int:
            raise StoreError("the store is unreachable")

        store.claim_event = unclaimed  # type: ignore[method-assign]
        store.forget_question = unforgotten  # type: ignore[method-assign]
        await record_deletion(store, "slack", "T1", "C1", "1.0")  # raises nothing
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert said == [
            "could not record the deletion of message 1.0: the store is unreachable; if "
            "another replica holds it as a question waiting its turn, it is answered",
            "could not forget deleted message 1.0: the store is unreachable; if it was a "
            "question answered, its conversation's history keeps it until a reset",
        ]
        # Kept, as the warning says.
        assert [t.content for t in await store.history("k")] == ["my password is hunter2", "a"]
