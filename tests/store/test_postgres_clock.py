"""Replicas whose clocks disagree share one PostgreSQL store.

Each store here has a clock of its own (`clock`, and the times it is given come
from it), as replicas on hosts whose clocks differ, or one whose clock was
stepped (a VM restored from a snapshot, an NTP step). Heartbeats, leases, event
ids and conversations' use go by the database's clock: a replica's own clock,
however wrong, neither keeps a dead replica's reply and lease alive nor makes a
live one's look dead, nor forgets an event or a conversation another replica
took or used.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest

from bridge.interfaces import Address
from bridge.store.base import Conversation, InFlight
from bridge.store.postgres import PostgresStore

from .conftest import pg_schema_url

pytestmark = pytest.mark.postgres

KEY = "slack:T1:C1:1|docs"
TTL = 30.0  # a lease's, and how long a heartbeat keeps a reply alive
SKEWS = [(0.0, -600.0), (600.0, 0.0), (600.0, -600.0), (-600.0, 600.0), (0.0, 600.0)]


def skewed(by: float) -> Callable[[], float]:
    return lambda: time.time() + by


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg_schema_url() as schema_url:
        yield schema_url


def reply(owner: str, beat: float) -> InFlight:
    return InFlight(
        id=f"{owner}-1",
        key=KEY,
        address=Address("slack", "T1", "C1", "1"),
        owner=owner,
        started_at=1.0,
        heartbeat_at=beat,
    )


@pytest.mark.parametrize(("dead_skew", "skew"), SKEWS)
async def test_a_dead_replicas_reply_and_lease_are_taken_over_whatever_the_clocks(
    url: str, dead_skew: float, skew: float
) -> None:
    # A replica's clock behind the dead one's (stepped back across the crash, or
    # behind another host's): the reply it left looked alive, unmarked, and its
    # conversation answered nothing, for as long as the clocks were apart.
    dead_clock, clock = skewed(dead_skew), skewed(skew)
    async with (
        PostgresStore(url, clock=dead_clock) as dead,
        PostgresStore(url, clock=clock) as survivor,
    ):
        # Its last heartbeat and lease renewal, a minute ago by its own clock.
        await dead.inflight_begin(reply("dead", dead_clock() - 60))
        assert await dead.acquire_lease(KEY, "dead", TTL, dead_clock() - 60)

        [orphan] = await survivor.inflight_orphans("survivor", clock() - TTL)
        assert orphan.owner == "dead"
        assert await survivor.inflight_claim(orphan.id, "survivor", orphan.heartbeat_at)
        assert await survivor.acquire_lease(KEY, "survivor", TTL, clock())


@pytest.mark.parametrize(("live_skew", "skew"), SKEWS)
async def test_a_live_replicas_reply_and_lease_are_not_taken_whatever_the_clocks(
    url: str, live_skew: float, skew: float
) -> None:
    # A replica's clock ahead of a live one's: its reply looked dead, was marked
    # interrupted while it went on, and its conversation was answered alongside.
    live_clock, clock = skewed(live_skew), skewed(skew)
    async with (
        PostgresStore(url, clock=live_clock) as live,
        PostgresStore(url, clock=clock) as other,
    ):
        await live.inflight_begin(reply("live", live_clock()))
        assert await live.acquire_lease(KEY, "live", TTL, live_clock())
        # Its heartbeat and renewal keep them, as the first writes did.
        beat = [("live-1", ["m1"], "Hel", live_clock())]
        assert await live.inflight_update_many(beat, "live") == {"live-1"}
        assert await live.renew_leases([KEY], "live", TTL, live_clock()) == {KEY}

        assert await other.inflight_orphans("other", clock() - TTL) == []
        await other.prune_leases(clock())
        assert not await other.acquire_lease(KEY, "other", TTL, clock())
        [rec] = await other.inflight_for_key(KEY)
        assert rec.heartbeat_at >= await other.now() - TTL  # fresh by the store's clock


@pytest.mark.parametrize(("seen_skew", "skew"), SKEWS)
async def test_an_event_another_replica_took_is_kept_whatever_the_clocks(
    url: str, seen_skew: float, skew: float
) -> None:
    # A replica's clock ahead of the one that took an event: its pruning forgot the
    # event early, and Slack's retry of it was answered a second time.
    seen_clock, clock = skewed(seen_skew), skewed(skew)
    async with (
        PostgresStore(url, clock=seen_clock) as seen,
        PostgresStore(url, clock=clock) as other,
    ):
        assert await seen.claim_event("Ev1", seen_clock())
        assert await other.prune_events(clock() - 60) == 0
        assert not await other.claim_event("Ev1", clock())
        # One older than the window by the store's clock goes.
        assert await seen.claim_event("Ev2", seen_clock() - 120)
        assert await other.prune_events(clock() - 60) == 1
        assert await other.event_claimed("Ev1")


@pytest.mark.parametrize(("used_skew", "skew"), SKEWS)
async def test_a_conversation_another_replica_used_is_kept_whatever_the_clocks(
    url: str, used_skew: float, skew: float
) -> None:
    # A replica whose clock is behind the others' dated the conversations it used
    # too old: their pruning (limits.conversation_ttl) forgot them early.
    used_clock, clock = skewed(used_skew), skewed(skew)
    async with (
        PostgresStore(url, clock=used_clock) as used,
        PostgresStore(url, clock=clock) as other,
    ):
        now = used_clock()
        await used.create_conversation(Conversation("recent", "docs", None, now, now))
        await used.save_conversation(Conversation("old", "docs", "s", now - 120, now - 120))
        # Read and saved again (an answer's session, kept as it comes): its times stay.
        for key in ("recent", "old"):
            conv = await used.get_conversation(key)
            assert conv is not None
            await used.save_conversation(conv)
        assert await other.prune_conversations(clock() - 60, 10) == 1
        assert await other.get_conversation("old") is None
        # Read back by each replica's own clock.
        for store, its_clock in ((used, used_clock), (other, clock)):
            conv = await store.get_conversation("recent")
            assert conv is not None and abs(conv.last_used - its_clock()) < 5


async def test_every_replica_reads_the_same_clock_from_the_store(url: str) -> None:
    async with (
        PostgresStore(url, clock=skewed(-600)) as behind,
        PostgresStore(url, clock=skewed(600)) as ahead,
    ):
        assert abs(await ahead.now() - await behind.now()) < 5


async def test_a_claim_is_a_compare_and_set_on_the_heartbeat_read(url: str) -> None:
    # The database dates the claim: it must still differ from the heartbeat read,
    # even where that heartbeat is ahead of the database's clock.
    async with PostgresStore(url) as store:
        await store.inflight_begin(reply("dead", time.time() - 60))
        [orphan] = await store.inflight_orphans("p1", time.time() - TTL)
        assert await store.inflight_claim(orphan.id, "p1", orphan.heartbeat_at)
        assert not await store.inflight_claim(orphan.id, "p2", orphan.heartbeat_at)
        [claimed] = await store.inflight_for_key(KEY)
        assert claimed.owner == "p1" and claimed.heartbeat_at > orphan.heartbeat_at
        # A heartbeat dated ahead of the database (as an old row may be): the claim
        # still moves it, so a second claim of the same view fails.
        far = claimed.heartbeat_at + 3600
        async with store._conn("test") as conn:
            await conn.execute("UPDATE inflight SET heartbeat_at = $1", far)
        assert await store.inflight_claim(orphan.id, "p3", far)
        assert not await store.inflight_claim(orphan.id, "p4", far)
        [again] = await store.inflight_for_key(KEY)
        assert again.owner == "p3" and again.heartbeat_at > far
