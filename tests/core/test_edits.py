"""Questions edited once asked: asked, and their kept turn read, as the edit does,
wherever the edit was told and whenever (as the question waits its turn, once the turn
is kept, or while it is answered)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge.answering import EDITED_ELSEWHERE
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.deletions import question_id
from bridge.edits import EDITS_KEPT, Edits, Latest
from bridge.errors import StoreError
from bridge.interfaces import Turn
from bridge.store import Store
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SQLiteStore
from tests.core.fakeplatform import TEST_REGISTRY, wait_for
from tests.core.relay_support import make_config, platform
from tests.core.test_deletions import SharedStore
from tests.fakes.chatapi import FakeChatAPI
from tests.store.conftest import pg_schema_url

QUESTION = question_id("slack", "T1", "C1", "2.0")


async def keep(store: SQLiteStore, key: str = "k") -> None:
    """A conversation `key` keeping an earlier turn, then the question 2.0 answered."""
    await store.append_history(key, [Turn("user", "old"), Turn("assistant", "A")], 10)
    await store.append_history(
        key,
        [Turn("user", "my password hunter2 fails", "slack:T1:U1"), Turn("assistant", "a")],
        10,
        question=QUESTION,
    )


async def contents(store: SQLiteStore, key: str = "k") -> list[str]:
    return [turn.content for turn in await store.history(key)]


async def test_an_answered_question_edited_is_kept_as_it_reads_now(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "b.db") as store:
        for key in ("k", "k2"):  # kept by two conversations (two routes, two backends)
            await keep(store, key)
        await Edits(store, 100).edited("slack", "T1", "C1", "2.0", "  my password fails\x00 ")
        for key in ("k", "k2"):
            assert await store.history(key) == [
                Turn("user", "old"),
                Turn("assistant", "A"),
                Turn("user", "my password fails", "slack:T1:U1"),
                Turn("assistant", "a"),
            ]


@pytest.mark.parametrize("text", ["", "  \n", "x" * 101], ids=["empty", "blank", "too long"])
async def test_an_edit_that_leaves_no_question_forgets_the_turn(tmp_path: Path, text: str) -> None:
    # Edited down to the bot's mention (read as nothing), or past the longest question
    # a stateless API is asked (it would have been refused; cut, it says what nobody
    # wrote): the turn goes, as a deleted question's.
    async with SQLiteStore(tmp_path / "b.db") as store:
        await keep(store)
        await Edits(store, 100).edited("slack", "T1", "C1", "2.0", text)
        assert await contents(store) == ["old", "A"]


async def test_an_edit_told_while_the_question_is_answered_is_taken_once_it_is_kept(
    tmp_path: Path,
) -> None:
    # Told before the turn was kept, the edit found none to change: the turn was kept
    # as asked, the password in it.
    async with SQLiteStore(tmp_path / "b.db") as store:
        edits = Edits(store, 100)
        await edits.edited("slack", "T1", "C1", "2.0", "my password fails")
        await edits.edited("slack", "T1", "C1", "3.0", "another message")
        await keep(store)
        await edits.settle(QUESTION)
        assert await contents(store) == ["old", "A", "my password fails", "a"]
        await edits.settle(question_id("slack", "T1", "C1", "4.0"))  # never edited
        assert await contents(store) == ["old", "A", "my password fails", "a"]


async def test_only_the_last_edits_are_kept_for_turns_to_come(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "b.db") as store:
        edits = Edits(store, 100)
        await edits.edited("slack", "T1", "C1", "2.0", "my password fails")
        for n in range(EDITS_KEPT):
            await edits.edited("slack", "T1", "C1", f"9.{n}", "chatter")
        await keep(store)
        await edits.settle(QUESTION)
        assert "my password fails" not in await contents(store)


async def test_an_edit_told_to_another_replica_while_answered_forgets_the_turn(
    tmp_path: Path,
) -> None:
    # On a shared store, the replica answering has not the edit's text: the turn, as
    # asked, is not kept.
    async with SharedStore(tmp_path / "b.db") as store:
        await Edits(store, 100).edited("slack", "T1", "C1", "2.0", "my password fails")
        answering = Edits(store, 100)
        await keep(store)
        await answering.settle(QUESTION)
        assert await contents(store) == ["old", "A"]


async def test_on_a_shared_store_a_replicas_own_edit_may_not_be_the_last(
    tmp_path: Path,
) -> None:
    # Its first edit told here, its last (the password cut) to another replica: the
    # turn took this one's, the password in it.
    async with SharedStore(tmp_path / "b.db") as store:
        answering, other = Edits(store, 100), Edits(store, 100)
        await answering.edited("slack", "T1", "C1", "2.0", "my password hunter2 still fails")
        await other.edited("slack", "T1", "C1", "2.0", "my password fails")
        await keep(store)
        await answering.settle(QUESTION)
        assert await contents(store) == ["old", "A"]


async def test_an_edit_that_is_itself_asked_keeps_its_turn_on_a_shared_store(
    tmp_path: Path,
) -> None:
    # The mention forgotten, then added by an edit (told to another replica): that edit
    # was asked, and its turn went for an edit made "while it was answered".
    async with SharedStore(tmp_path / "b.db") as store:
        await Edits(store, 100).edited(
            "slack", "T1", "C1", "2.0", "my password hunter2 fails", True
        )
        answering = Edits(store, 100)
        await keep(store)
        await answering.settle(QUESTION)
        assert await contents(store) == ["old", "A", "my password hunter2 fails", "a"]


async def test_edits_told_at_once_keep_the_last(tmp_path: Path) -> None:
    # On PostgreSQL two writes raced, and the older could land last (1 in 5).
    async with pg_schema_url() as url:
        store = PostgresStore(url)
        await store.open()
        try:
            await keep(store)  # type: ignore[arg-type]
            edits = Edits(store, 100)
            for n in range(100):
                await asyncio.gather(
                    edits.edited("slack", "T1", "C1", "2.0", f"first {n}"),
                    edits.edited("slack", "T1", "C1", "2.0", f"last {n}"),
                )
                assert (await contents(store))[2] == f"last {n}"  # type: ignore[arg-type]
        finally:
            await store.aclose()


async def test_a_store_that_fails_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with SQLiteStore(tmp_path / "b.db") as store:

        async def fails(question: str, text: str) -> int:
            raise StoreError("the store is unreachable")

        store.edit_question = fails  # type: ignore[method-assign]
        edits = Edits(store, 100)
        await edits.edited("slack", "T1", "C1", "2.0", "my password fails")
        await edits.settle(QUESTION)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not keep the edit of message 2.0" in m for m in warned)
    assert any("could not keep the edit of the question" in m for m in warned)


async def test_a_question_about_to_be_asked_reads_as_its_last_edit(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "b.db") as store:
        edits = Edits(store, 100, history=False)
        assert await edits.latest(QUESTION) == Latest(None, False)  # never edited
        await edits.edited("slack", "T1", "C1", "2.0", "  my password fails\x00 ")
        assert await edits.latest(QUESTION) == Latest("my password fails", False)
        await edits.edited("slack", "T1", "C1", "2.0", " ")  # the mention alone
        assert await edits.latest(QUESTION) == Latest("", False)
        assert await edits.latest(question_id("slack", "T1", "C1", "3.0")) == Latest(None, False)


async def test_on_a_shared_store_an_edit_told_elsewhere_after_is_found(tmp_path: Path) -> None:
    # The replica holding the question knows an edit; a later one (the password cut)
    # reached another replica: what it asks now is not known here.
    async with SharedStore(tmp_path / "b.db") as store:
        holding, other = Edits(store, 100), Edits(store, 100)
        assert await holding.latest(QUESTION) == Latest(None, False)
        await other.edited("slack", "T1", "C1", "2.0", "my password hunter2 fails")
        assert await holding.latest(QUESTION) == Latest(None, True)
        await holding.edited("slack", "T1", "C1", "2.0", "my password hunter2 still fails")
        assert await holding.latest(QUESTION) == Latest("my password hunter2 still fails", False)
        await other.edited("slack", "T1", "C1", "2.0", "my password fails")
        assert await holding.latest(QUESTION) == Latest("my password hunter2 still fails", True)
        # An edit that is itself the question asked is no edit of it.
        await other.edited("slack", "T1", "C1", "9.0", "and now?", True)
        assert await holding.latest(question_id("slack", "T1", "C1", "9.0")) == Latest(None, False)


async def unrecorded(
    store: Store,
    edits: Edits,
    text: str,
    where: tuple[str, str, str, str] = ("slack", "T1", "C1", "2.0"),
) -> None:
    """Tell `edits` an edit (of the question 2.0) whose record the store fails to take."""
    real = store.claim_event

    async def down(event_id: str, now: float) -> bool:
        raise StoreError("the store is unreachable")

    store.claim_event = down  # type: ignore[method-assign]
    try:
        await edits.edited(*where, text)
    finally:
        store.claim_event = real  # type: ignore[method-assign]


async def test_an_edit_whose_record_failed_is_still_known_here(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Edited twice here, the second edit's record failing: the replica looked for an
    # edit after none and found its own first, and refused the question as edited on
    # another replica, though it knew how it read.
    async with SharedStore(tmp_path / "b.db") as store:
        holding, other = Edits(store, 100), Edits(store, 100)
        await holding.edited("slack", "T1", "C1", "2.0", "my password hunter2 fails")  # #1
        await unrecorded(store, holding, "my password fails")
        assert any(
            "could not record the edit of message 2.0" in r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING
        )
        assert await holding.latest(QUESTION) == Latest("my password fails", False)
        # An edit told to another replica after it is still found.
        await other.edited("slack", "T1", "C1", "2.0", "my password still fails")  # #2
        assert await holding.latest(QUESTION) == Latest("my password fails", True)


async def test_a_first_edit_whose_record_failed_finds_another_replicas(tmp_path: Path) -> None:
    async with SharedStore(tmp_path / "b.db") as store:
        holding, other = Edits(store, 100), Edits(store, 100)
        await unrecorded(store, holding, "my password fails")
        assert await holding.latest(QUESTION) == Latest("my password fails", False)
        await other.edited("slack", "T1", "C1", "2.0", "my password still fails")  # #1
        assert await holding.latest(QUESTION) == Latest("my password fails", True)


@pytest.mark.postgres
async def test_a_waiting_question_edited_here_twice_is_asked_as_it_reads(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # On a shared store, the second edit's record failing: the question was refused
    # ("edited while it waited"), and "edited on another replica" logged.
    gate = asyncio.Event()
    fake_chat_api.enqueue(tokens=["First answer."], gate=gate)
    fake_chat_api.enqueue(tokens=["Second answer."])
    async with pg_schema_url() as url:
        db = tmp_path / "unused.db"
        text = make_config(fake_chat_api, db).replace(f"store: sqlite://{db}", f"store: {url}")
        config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
        async with Bridge(config, TEST_REGISTRY) as bridge:
            assert bridge.store.shared
            target = await platform(bridge).say("one", thread="A")
            await fake_chat_api.wait_requests(1)
            await platform(bridge).say("two: my password is hunter2", thread="A")  # 2.000
            edits, where = bridge.relay.edits, ("console", "W1", "C1", "2.000")
            await edits.edited(*where, "two: my password is wrong")
            await unrecorded(bridge.store, edits, "two: why is it wrong?", where)
            gate.set()
            await wait_for(
                lambda: len(fake_chat_api.requests) >= 2 or EDITED_ELSEWHERE in target.notices
            )
            assert EDITED_ELSEWHERE not in target.notices
            assert fake_chat_api.requests[1].json["message"] == "two: why is it wrong?"
