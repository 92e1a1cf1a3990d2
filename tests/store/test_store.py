"""One suite for every store: each test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.errors import StoreError
from bridge.interfaces import Address, Turn
from bridge.store.base import Conversation, InFlight, Store
from bridge.store.migrations import MIGRATIONS, Migration
from bridge.store.sqlite import SQLiteStore

from .conftest import StoreFactory

ADDR = Address(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")


def conv(key: str = "slack:T1:C1:1", session: str | None = "cb-abc", **kw: object) -> Conversation:
    fields: dict[str, object] = {
        "key": key,
        "backend": "docs",
        "session": session,
        "created_at": 1000.5,
        "last_used": 1001.25,
        "meta": {"conversation_id": "x-1", "usage": {"tokens": 12}},
    }
    fields.update(kw)
    return Conversation(**fields)  # type: ignore[arg-type]


def same(got: Conversation | None, want: Conversation) -> bool:
    """`got` is `want`, its times to within a second: a shared store keeps them as so
    long before its own clock's now, and gives them back by the caller's."""
    return (
        got is not None
        and abs(got.created_at - want.created_at) < 1
        and abs(got.last_used - want.last_used) < 1
        and replace(got, created_at=want.created_at, last_used=want.last_used) == want
    )


def flight(rec_id: str = "r1", owner: str = "proc-a", beat: float = 100.0) -> InFlight:
    return InFlight(
        id=rec_id,
        key="slack:T1:C1:1",
        address=ADDR,
        owner=owner,
        started_at=beat,
        message_ids=["m1"],
        text="Hel",
        heartbeat_at=beat,
    )


# ---------------------------------------------------------------------- lifecycle


async def test_ping_and_open_twice(store: Store) -> None:
    def connection() -> object:  # SQLite's connection, or PostgreSQL's pool
        found = getattr(store, "_db", None) or getattr(store, "_pool", None)
        assert found is not None
        return found

    await store.ping()
    before = connection()
    await store.open()  # already open: nothing happens
    assert connection() is before
    await store.ping()


async def test_context_manager_opens_and_closes(make_store: StoreFactory) -> None:
    async with make_store() as s:
        await s.ping()
        assert await s.claim_event("e", 1.0) is True
    with pytest.raises(StoreError, match="not open"):
        await s.ping()


async def test_closed_store_raises_store_error(make_store: StoreFactory) -> None:
    s = make_store()
    with pytest.raises(StoreError):
        await s.get_conversation("k")
    await s.open()
    await s.aclose()
    await s.aclose()  # closing twice is harmless
    with pytest.raises(StoreError):
        await s.claim_event("e", 1.0)


# ---------------------------------------------------------------------- conversations


async def test_conversation_round_trip_and_replace(store: Store) -> None:
    assert await store.get_conversation("slack:T1:C1:1") is None
    await store.save_conversation(conv())
    assert same(await store.get_conversation("slack:T1:C1:1"), conv())

    replaced = conv(session=None, backend="other", last_used=2000.0, meta={})
    await store.save_conversation(replaced)
    assert same(await store.get_conversation("slack:T1:C1:1"), replaced)
    assert await store.get_conversation("slack:T1:C1:2") is None


async def test_session_survives_reopen(make_store: StoreFactory) -> None:
    async with make_store() as first:
        await first.save_conversation(conv(session="cb-persisted"))
        await first.append_history("slack:T1:C1:1", [Turn("user", "hi")], keep=10)
    async with make_store() as second:
        got = await second.get_conversation("slack:T1:C1:1")
        assert got is not None and got.session == "cb-persisted"
        assert got.meta == {"conversation_id": "x-1", "usage": {"tokens": 12}}
        assert await second.history("slack:T1:C1:1") == [Turn("user", "hi")]


async def test_create_conversation_leaves_one_that_is_there(store: Store) -> None:
    await store.create_conversation(conv(session=None))
    got = await store.get_conversation("slack:T1:C1:1")
    assert got is not None and got.session is None
    await store.save_conversation(conv(session="cb-real"))
    await store.create_conversation(conv(session=None))  # a later question, taken
    got = await store.get_conversation("slack:T1:C1:1")
    assert got is not None and got.session == "cb-real"


async def test_reset_forgets_session_and_history_and_keeps_the_conversation(
    store: Store,
) -> None:
    await store.save_conversation(conv())
    await store.append_history("slack:T1:C1:1", [Turn("user", "q"), Turn("assistant", "a")], 10)
    await store.save_conversation(conv(key="other"))
    assert await store.reset_conversation("slack:T1:C1:1") is True
    # Still known (a thread the bridge answers stays followed), with nothing of the old one.
    assert same(await store.get_conversation("slack:T1:C1:1"), conv(session=None, meta={}))
    assert await store.history("slack:T1:C1:1") == []
    assert await store.reset_conversation("slack:T1:C1:1") is False  # nothing left to forget
    assert same(await store.get_conversation("other"), conv(key="other"))
    assert await store.reset_conversation("never-seen") is False
    assert await store.get_conversation("never-seen") is None


async def test_reset_of_a_conversation_without_a_session(store: Store) -> None:
    # A stateless API's conversation: its history is what is forgotten.
    await store.save_conversation(conv(session=None))
    await store.append_history("slack:T1:C1:1", [Turn("user", "q")], 10)
    assert await store.reset_conversation("slack:T1:C1:1") is True
    assert same(await store.get_conversation("slack:T1:C1:1"), conv(session=None, meta={}))
    assert await store.history("slack:T1:C1:1") == []


async def test_reset_of_history_only_key(store: Store) -> None:
    await store.append_history("h-only", [Turn("user", "q")], 10)
    assert await store.reset_conversation("h-only") is True
    assert await store.history("h-only") == []


# ---------------------------------------------------------------------- history


async def test_history_keeps_order_and_newest(store: Store) -> None:
    assert await store.history("k") == []
    await store.append_history("k", [Turn("user", "1"), Turn("assistant", "2")], keep=5)
    await store.append_history("other", [Turn("user", "x")], keep=5)
    await store.append_history("k", [Turn("user", "3"), Turn("assistant", "4")], keep=5)
    assert [t.content for t in await store.history("k")] == ["1", "2", "3", "4"]

    await store.append_history("k", [Turn("user", "5"), Turn("assistant", "6")], keep=3)
    got = await store.history("k")
    assert [t.content for t in got] == ["4", "5", "6"]
    assert [t.role for t in got] == ["assistant", "user", "assistant"]
    assert await store.history("other") == [Turn("user", "x")]


async def test_history_keep_smaller_than_batch_and_zero(store: Store) -> None:
    turns = [Turn("user" if i % 2 == 0 else "assistant", str(i)) for i in range(10)]
    await store.append_history("k", turns, keep=4)
    assert [t.content for t in await store.history("k")] == ["6", "7", "8", "9"]
    await store.append_history("k", [], keep=2)
    assert [t.content for t in await store.history("k")] == ["8", "9"]
    await store.append_history("k", [Turn("user", "new")], keep=0)
    assert await store.history("k") == []


async def test_history_keeps_only_the_newest_whole_turns_within_max_chars(store: Store) -> None:
    # Trimmed only by count, long answers were kept (and read with every question)
    # although the dialect never sent them: megabytes per conversation.
    pair = [Turn("user", "q"), Turn("assistant", "a" * 99)]  # 100 characters
    for _ in range(5):
        await store.append_history("k", pair, keep=100, max_chars=250)
    assert await store.history("k") == pair + pair
    await store.append_history(
        "k", [Turn("user", "q"), Turn("assistant", "b" * 300)], keep=100, max_chars=250
    )
    assert await store.history("k") == []  # the newest turn alone is over: none is sent
    await store.append_history("k", pair, keep=2, max_chars=None)
    assert await store.history("k") == pair


async def test_a_deleted_question_is_forgotten_with_its_answer(store: Store) -> None:
    # Deleted once answered (a password posted by mistake): it stayed, and a stateless
    # API was sent it again with every later question.
    pair = [Turn("user", "hunter2"), Turn("assistant", "a")]
    await store.append_history("k", [Turn("user", "old"), Turn("assistant", "A")], 10)
    await store.append_history("k", pair, 10, question="slack:T1:C1:2.0")
    await store.append_history(
        "k", [Turn("user", "q"), Turn("assistant", "b")], 10, question="slack:T1:C1:3.0"
    )
    assert await store.forget_question("slack:T1:C1:2.0") == 2
    assert [t.content for t in await store.history("k")] == ["old", "A", "q", "b"]
    assert await store.forget_question("slack:T1:C1:2.0") == 0


async def test_an_edited_question_is_kept_as_edited_in_every_conversation(store: Store) -> None:
    # Edited once answered (a password cut from it): it stayed as it was, and a
    # stateless API was sent the password again with every later question.
    for key in ("k", "k2"):  # one question kept by two conversations (two routes)
        await store.append_history(key, [Turn("user", "old"), Turn("assistant", "A")], 10)
        await store.append_history(
            key,
            [Turn("user", "hunter2", "slack:T1:U1"), Turn("assistant", "a")],
            10,
            question="slack:T1:C1:2.0",
        )
    assert await store.edit_question("slack:T1:C1:2.0", "my password") == 2
    for key in ("k", "k2"):
        assert await store.history(key) == [
            Turn("user", "old"),
            Turn("assistant", "A"),
            Turn("user", "my password", "slack:T1:U1"),
            Turn("assistant", "a"),
        ]
    assert await store.edit_question("slack:T1:C1:3.0", "x") == 0


async def test_history_keeps_unicode_and_long_text(store: Store) -> None:
    text = "Grüße — 你好 ```code```\n" * 2000
    await store.append_history("k", [Turn("assistant", text)], keep=2)
    assert await store.history("k") == [Turn("assistant", text)]


async def test_concurrent_appends_keep_bound(store: Store) -> None:
    await asyncio.gather(
        *(store.append_history("k", [Turn("user", f"{i}")], keep=6) for i in range(30))
    )
    assert len(await store.history("k")) == 6


# ---------------------------------------------------------------------- deduplication


async def test_claim_event_once(store: Store) -> None:
    assert await store.claim_event("Ev1", 10.0) is True
    assert await store.claim_event("Ev1", 11.0) is False
    assert await store.claim_event("Ev2", 11.0) is True


async def test_claim_event_fifty_concurrent(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_event("same", 5.0) for _ in range(50)))
    assert results.count(True) == 1


async def test_claim_event_concurrent_across_two_stores(make_store: StoreFactory) -> None:
    async with make_store() as a, make_store() as b:
        results = await asyncio.gather(
            *((a if i % 2 else b).claim_event(f"ev{i // 2}", 5.0) for i in range(50))
        )
    # 25 ids, each claimed twice (once per store): exactly one claim of each wins.
    assert results.count(True) == 25
    for n in range(25):
        assert results[2 * n] != results[2 * n + 1]


async def test_event_claimed_until_pruned(store: Store) -> None:
    assert await store.event_claimed("Ev1") is False
    await store.claim_event("Ev1", 10.0)
    assert await store.event_claimed("Ev1") is True
    assert await store.claim_event("Ev1", 11.0) is False  # a look claims nothing
    await store.prune_events(older_than=11.0)
    assert await store.event_claimed("Ev1") is False


async def test_prune_events(store: Store) -> None:
    # Seconds apart, so a shared store's own clock (PostgreSQL's) draws the same line.
    start = time.time() - 100
    for i in range(5):
        assert await store.claim_event(f"e{i}", start + 10 * i)
    assert await store.prune_events(older_than=start + 25) == 3
    assert await store.prune_events(older_than=start + 25) == 0
    assert await store.claim_event("e0", time.time()) is True  # forgotten, so new again
    assert await store.claim_event("e3", time.time()) is False  # kept


# ---------------------------------------------------------------------- in-flight replies


# A store dates heartbeats by its own clock (PostgreSQL: the database's, one for every
# replica), from the times given as seconds before the caller's now: how far apart
# two heartbeats are is kept, not the numbers given.


async def test_inflight_begin_update_end(store: Store) -> None:
    await store.inflight_begin(flight())
    [begun] = await store.inflight_orphans("proc-a", stale_before=0.0)
    assert await store.inflight_update_many(
        [("r1", ["m1", "m2"], "Hello, world", 150.0)], "proc-a"
    ) == {"r1"}
    [rec] = await store.inflight_orphans("proc-a", stale_before=0.0)
    assert rec.heartbeat_at - begun.heartbeat_at == pytest.approx(50.0, abs=1.0)
    assert rec == InFlight(
        id="r1",
        key="slack:T1:C1:1",
        address=ADDR,
        owner="proc-a",
        started_at=100.0,
        message_ids=["m1", "m2"],
        text="Hello, world",
        heartbeat_at=rec.heartbeat_at,
    )
    await store.inflight_end("r1")
    assert await store.inflight_orphans("proc-a", stale_before=1e12) == []


async def test_inflight_progress_of_several_replies_in_one_call(store: Store) -> None:
    await store.inflight_begin(flight("r1"))
    await store.inflight_begin(flight("r2"))
    recorded = await store.inflight_update_many(
        [
            ("r1", ["m1"], "Hello", 150.0),
            ("r2", ["m1", "m2"], "Hi there", 151.0),
            ("gone", ["m9"], "a reply that already ended", 152.0),
        ],
        "proc-a",
    )
    assert {"r1", "r2"} <= recorded
    assert await store.inflight_update_many([], "proc-a") == set()
    recs = {r.id: r for r in await store.inflight_orphans("proc-a", stale_before=0.0)}
    assert set(recs) == {"r1", "r2"}
    assert recs["r1"].text == "Hello"
    assert recs["r2"].heartbeat_at - recs["r1"].heartbeat_at == pytest.approx(1.0, abs=0.5)
    assert (recs["r2"].message_ids, recs["r2"].text) == (["m1", "m2"], "Hi there")
    await store.inflight_end("r1")  # ending twice is harmless


async def test_inflight_begin_without_heartbeat_uses_start(store: Store) -> None:
    rec = InFlight(id="r", key="k", address=Address("discord", "G", "C"), owner="o", started_at=7.0)
    await store.inflight_begin(rec)
    [got] = await store.inflight_orphans("o", 0.0)
    # Beaten at 7: stale as of 7.5, not as of 6.5.
    assert [r.id for r in await store.inflight_orphans("other", 7.5)] == ["r"]
    assert await store.inflight_orphans("other", 6.5) == []
    assert got.address.thread is None and got.message_ids == [] and got.text == ""


async def test_inflight_orphans(store: Store) -> None:
    await store.inflight_begin(flight("mine", owner="me", beat=500.0))
    await store.inflight_begin(flight("stale", owner="other", beat=100.0))
    await store.inflight_begin(flight("fresh", owner="other", beat=400.0))
    got = await store.inflight_orphans("me", stale_before=300.0)
    assert sorted(r.id for r in got) == ["mine", "stale"]
    # A heartbeat keeps a reply of another owner out of the orphans.
    await store.inflight_update_many([("stale", ["m1"], "more", 350.0)], "other")
    assert [r.id for r in await store.inflight_orphans("me", 300.0)] == ["mine"]


async def test_inflight_claim(store: Store) -> None:
    await store.inflight_begin(flight("r", owner="dead", beat=100.0))
    [orphan] = await store.inflight_orphans("p1", stale_before=200.0)
    seen = orphan.heartbeat_at  # as the store dated it
    assert await store.inflight_claim("r", "p1", expected_heartbeat=seen - 1) is False
    assert await store.inflight_claim("missing", "p1", expected_heartbeat=seen) is False
    assert await store.inflight_claim("r", "p1", expected_heartbeat=seen) is True
    # The same stale view cannot be used again, by anyone.
    assert await store.inflight_claim("r", "p2", expected_heartbeat=seen) is False
    assert await store.inflight_claim("r", "p1", expected_heartbeat=seen) is False
    [rec] = await store.inflight_orphans("p1", stale_before=0.0)
    assert rec.owner == "p1" and rec.heartbeat_at > seen
    # Claimed now: no longer stale.
    assert await store.inflight_orphans("p2", stale_before=200.0) == []


async def test_inflight_claim_concurrent_one_wins(make_store: StoreFactory) -> None:
    async with make_store() as a, make_store() as b:
        await a.inflight_begin(flight("r", owner="dead", beat=100.0))
        [orphan] = await b.inflight_orphans("p2", stale_before=200.0)
        results = await asyncio.gather(
            a.inflight_claim("r", "p1", orphan.heartbeat_at),
            b.inflight_claim("r", "p2", orphan.heartbeat_at),
            a.inflight_claim("r", "p3", orphan.heartbeat_at),
            b.inflight_claim("r", "p4", orphan.heartbeat_at),
        )
        assert results.count(True) == 1
        winner = ["p1", "p2", "p3", "p4"][results.index(True)]
        [rec] = await a.inflight_orphans(winner, stale_before=0.0)
        assert rec.owner == winner


# ---------------------------------------------------------------------- leases


async def test_lease_exclusive_renew_expire_release(store: Store) -> None:
    assert await store.acquire_lease("k", "a", ttl=30.0, now=100.0) is True
    assert await store.acquire_lease("k", "b", ttl=30.0, now=110.0) is False
    assert await store.acquire_lease("other", "b", ttl=30.0, now=110.0) is True
    # The owner renews; the renewal moves the expiry.
    assert await store.acquire_lease("k", "a", ttl=30.0, now=125.0) is True
    assert await store.acquire_lease("k", "b", ttl=30.0, now=140.0) is False
    # After expiry anyone takes it over, and the old owner has lost it.
    assert await store.acquire_lease("k", "b", ttl=30.0, now=156.0) is True
    assert await store.acquire_lease("k", "a", ttl=30.0, now=157.0) is False
    # Only the owner can release.
    await store.release_lease("k", "a")
    assert await store.acquire_lease("k", "c", ttl=30.0, now=158.0) is False
    await store.release_lease("k", "b")
    assert await store.acquire_lease("k", "c", ttl=30.0, now=158.0) is True
    await store.release_lease("never-held", "c")


async def test_leases_are_renewed_together_and_only_for_their_owner(store: Store) -> None:
    for key in ("k1", "k2"):
        assert await store.acquire_lease(key, "a", ttl=30.0, now=100.0)
    assert await store.acquire_lease("theirs", "b", ttl=30.0, now=100.0)
    assert await store.renew_leases(["k1", "k2", "theirs"], "a", ttl=30.0, now=125.0) == {
        "k1",
        "k2",
    }
    for key in ("k1", "k2"):  # still held at 140, past the first expiry
        assert not await store.acquire_lease(key, "b", ttl=30.0, now=140.0)
    assert await store.acquire_lease("theirs", "c", ttl=30.0, now=140.0)  # not a's to renew
    assert await store.renew_leases([], "a", ttl=30.0, now=141.0) == set()


async def test_lease_concurrent_one_wins(make_store: StoreFactory) -> None:
    async with make_store() as a, make_store() as b:
        results = await asyncio.gather(
            *((a if i % 2 else b).acquire_lease("k", f"o{i}", 30.0, 100.0) for i in range(20))
        )
    assert results.count(True) == 1


# ---------------------------------------------------------------------- migrations


async def written_before_askers(store: Store, key: str, turns: list[tuple[str, str]]) -> None:
    """History rows as a version before migration 7 writes them (no asker): a store
    not yet migrated, or a replica not yet upgraded on a migrated one."""
    for role, content in turns:
        if isinstance(store, SQLiteStore):
            async with store._write("test") as db:
                await db.execute(
                    "INSERT INTO history (key, role, content) VALUES (?, ?, ?)",
                    (key, role, content),
                )
        else:
            async with store._conn("test") as conn:  # type: ignore[attr-defined]
                await conn.execute(
                    "INSERT INTO history (key, role, content) VALUES ($1, $2, $3)",
                    key,
                    role,
                    content,
                )


async def test_history_keeps_who_asked_beside_an_older_replicas_turns(
    make_store: StoreFactory,
) -> None:
    # A thread several people share: each question's asker is kept, so the API can
    # be told whose question is whose.
    async with make_store(migrations=MIGRATIONS[:6]) as s:
        await written_before_askers(s, "k", [("user", "old"), ("assistant", "A0")])
    async with make_store() as s:
        await s.append_history(
            "k", [Turn("user", "mine", "slack:T1:U1"), Turn("assistant", "A1")], keep=10
        )
        # A replica not yet upgraded goes on writing (and reading) as it did.
        await written_before_askers(s, "k", [("user", "theirs"), ("assistant", "A2")])
        assert await s.history("k") == [
            Turn("user", "old"),
            Turn("assistant", "A0"),
            Turn("user", "mine", "slack:T1:U1"),
            Turn("assistant", "A1"),
            Turn("user", "theirs"),
            Turn("assistant", "A2"),
        ]


async def test_migrations_recorded_and_idempotent(make_store: StoreFactory) -> None:
    newest = [m.version for m in MIGRATIONS]
    async with make_store() as s:
        assert await s.schema_versions() == newest  # type: ignore[attr-defined]
        await s.claim_event("kept", 1.0)
    for _ in range(2):
        async with make_store() as s:
            assert await s.schema_versions() == newest  # type: ignore[attr-defined]
            assert await s.claim_event("kept", 2.0) is False


async def test_reopen_applies_only_missing_migrations(make_store: StoreFactory) -> None:
    async with make_store(migrations=MIGRATIONS[:1]) as s:
        assert await s.schema_versions() == [1]  # type: ignore[attr-defined]
        await s.save_conversation(conv("slack:T1:C1:1|docs"))
    extra = Migration(
        len(MIGRATIONS) + 1,
        "test: a table that counts how often this migration ran",
        sqlite=(
            "CREATE TABLE mig_probe (n INTEGER)",
            "INSERT INTO mig_probe VALUES (1)",
        ),
        postgres=(
            "CREATE TABLE mig_probe (n INTEGER)",
            "INSERT INTO mig_probe VALUES (1)",
        ),
    )
    with_extra = [*range(1, len(MIGRATIONS) + 2)]
    # Re-running migration 1 would fail ("table already exists"), so success
    # shows that only the missing ones ran.
    async with make_store(migrations=(*MIGRATIONS, extra)) as s:
        assert await s.schema_versions() == with_extra  # type: ignore[attr-defined]
        assert same(await s.get_conversation("slack:T1:C1:1|docs"), conv("slack:T1:C1:1|docs"))
        assert await s.claim_event("e", 1.0) is True
    async with make_store(migrations=(*MIGRATIONS, extra)) as s:
        assert await s.schema_versions() == with_extra  # type: ignore[attr-defined]


async def test_conversations_kept_before_keys_named_their_backend_are_found(
    make_store: StoreFactory,
) -> None:
    # Keys gained their backend ("|docs") without a migration: after an upgrade
    # every conversation started afresh, and followed threads were ignored.
    old_kept, old_new, new = "console:W1:user:U1", "console:W1:user:U2", "console:W1:user:U2|docs"
    piped = "console:local:user:ops|dev"  # a console user's name is free text
    async with make_store(migrations=MIGRATIONS[:5]) as s:
        await s.save_conversation(conv(piped, session="cb-piped"))
        await s.save_conversation(conv(old_kept, session="cb-old"))
        await written_before_askers(s, old_kept, [("user", "q"), ("assistant", "a")])
        await s.save_conversation(conv(old_new, session="cb-older"))
        await written_before_askers(s, old_new, [("user", "stale")])
        await s.save_conversation(conv(new, session="cb-begun-since"))  # run without it
    async with make_store() as s:
        kept = await s.get_conversation(f"{old_kept}|docs")
        assert kept is not None and kept.session == "cb-old"
        assert [t.content for t in await s.history(f"{old_kept}|docs")] == ["q", "a"]
        assert await s.get_conversation(old_kept) is None
        begun = await s.get_conversation(new)
        assert begun is not None and begun.session == "cb-begun-since"  # kept as it is
        assert await s.history(new) == []
        piped_now = await s.get_conversation(f"{piped}|docs")
        assert piped_now is not None and piped_now.session == "cb-piped"


async def test_newer_schema_is_refused(make_store: StoreFactory) -> None:
    async with make_store():
        pass
    with pytest.raises(StoreError, match="newer than this chat-bridge"):
        await make_store(migrations=MIGRATIONS[:1]).open()


async def test_two_stores_migrate_at_once(make_store: StoreFactory, store_kind: str) -> None:
    newest = [m.version for m in MIGRATIONS]
    # Correctness, not speed: on a loaded machine four openers may queue for the lock.
    kw = {"busy_timeout": 30.0} if store_kind == "sqlite" else {}
    stores = [make_store(**kw) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        assert await s.schema_versions() == newest  # type: ignore[attr-defined]
    results = await asyncio.gather(*(s.claim_event("one", 1.0) for s in stores))
    assert results.count(True) == 1


_OPEN_IN_A_PROCESS = """
import asyncio, sys
from bridge.store import open_store

async def main() -> None:
    async with open_store(sys.argv[1]) as store:
        print(await store.schema_versions(), await store.claim_event("proc", 1.0))

asyncio.run(main())
"""


def _url_of(store: Store) -> str:
    if isinstance(store, SQLiteStore):
        return f"sqlite://{Path(store.path).resolve()}"
    return store._url  # type: ignore[attr-defined,no-any-return]


async def test_processes_migrate_the_same_database_at_once(make_store: StoreFactory) -> None:
    url = _url_of(make_store())
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            "-c",
            _OPEN_IN_A_PROCESS,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), timeout=45) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert "Warning" not in err.decode(), err.decode()
    lines = sorted(out.decode().strip() for out, _ in outputs)
    newest = [m.version for m in MIGRATIONS]
    assert lines == [f"{newest} False", f"{newest} False", f"{newest} True"]


async def test_inflight_for_key_lists_a_conversations_replies_in_order(store: Store) -> None:
    for rec_id, key, started in (("b", "k1", 2.0), ("a", "k1", 1.0), ("c", "k2", 0.5)):
        await store.inflight_begin(
            InFlight(rec_id, key, Address("slack", "T1", "C1", "1.0"), "owner", started)
        )
    assert [r.id for r in await store.inflight_for_key("k1")] == ["a", "b"]
    assert [r.id for r in await store.inflight_for_key("k2")] == ["c"]
    await store.inflight_end("a")
    assert [r.id for r in await store.inflight_for_key("k1")] == ["b"]
    assert await store.inflight_for_key("nothing") == []


async def test_prune_conversations_forgets_the_oldest_with_their_history(store: Store) -> None:
    turns = [Turn("user", "q"), Turn("assistant", "a")]
    for i in range(5):
        await store.save_conversation(conv(f"k{i}", created_at=float(i), last_used=float(i)))
        await store.append_history(f"k{i}", turns, 20)
    # In batches, the oldest first. (Between the times given, not on one: a shared
    # store dates them by its own clock, to within the time a statement takes.)
    assert await store.prune_conversations(older_than=2.5, limit=2) == 2
    assert await store.get_conversation("k0") is None
    assert await store.get_conversation("k1") is None
    assert await store.get_conversation("k2") is not None
    assert await store.prune_conversations(older_than=2.5, limit=10) == 1
    assert await store.prune_conversations(older_than=2.5, limit=10) == 0
    for gone in ("k0", "k1", "k2"):
        assert await store.history(gone) == []
    for kept in ("k3", "k4"):
        assert await store.get_conversation(kept) is not None
        assert await store.history(kept) == turns


async def test_the_conversations_of_backends_not_configured_are_counted(store: Store) -> None:
    assert await store.other_backends(["docs"]) == {}
    for i, backend in enumerate(["docs", "old", "docs", "old", "gone", "old"]):
        await store.save_conversation(conv(f"k{i}|{backend}", backend=backend))
    assert await store.other_backends(["docs"]) == {"old": 3, "gone": 1}
    assert await store.other_backends(["docs", "old", "gone", "new"]) == {}
    assert await store.other_backends([]) == {"docs": 2, "old": 3, "gone": 1}


async def test_the_conversations_of_key_scopes_no_route_makes_are_counted(store: Store) -> None:
    assert await store.unmade_scopes({"docs": {"slack:user"}}) == {}
    keys = [
        "slack:T1:user:U1|docs",
        "slack:T1:user:U2|docs",
        "slack:T2:user:U1|docs",
        "slack:T1:user+channel:D1:U1|docs",
        "slack:T1:thread:C1:1.0|docs",
        "discord:42:user:5:channels|docs",
        "discord:@dm:dm:9|docs",
        "slack:T1:user:U1|help",
        "console:local:asker:a:b|gone",
    ]
    for key in keys:
        await store.save_conversation(conv(key, backend=key.rpartition("|")[2]))
    # A DM route's `session: user` made `user+channel`: its `user` keys are no route's.
    made = {
        "docs": {"slack:user+channel", "slack:thread", "discord:dm", "*:asker"},
        "help": {"*:user"},
    }
    assert await store.unmade_scopes(made) == {
        ("docs", "slack:user"): 3,
        ("docs", "discord:user"): 1,
    }
    assert await store.unmade_scopes({**made, "docs": {"*:user", *made["docs"]}}) == {}
    # Read as `bridge.routing.key_scopes` says a key's scope is.
    assert await store.unmade_scopes({"docs": set(), "gone": set()}) == {
        ("docs", "slack:user"): 3,
        ("docs", "slack:user+channel"): 1,
        ("docs", "slack:thread"): 1,
        ("docs", "discord:user"): 1,
        ("docs", "discord:dm"): 1,
        ("gone", "console:asker"): 1,
    }
    assert await store.unmade_scopes({}) == {}
    assert await store.unmade_scopes({"new": set()}) == {}


async def test_a_lease_nobody_let_go_is_forgotten_once_expired(store: Store) -> None:
    # A crashed replica's lease stayed for ever, naming its conversation.
    assert await store.acquire_lease("k", "gone", ttl=30.0, now=100.0)  # to 130
    assert await store.acquire_lease("live", "here", ttl=600.0, now=100.0)  # to 700
    await store.prune_leases(500.0)
    # Asked as of 110: a lease still in the store would be held until 130.
    assert await store.acquire_lease("k", "other", ttl=30.0, now=110.0)
    assert not await store.acquire_lease("live", "other", ttl=30.0, now=110.0)
