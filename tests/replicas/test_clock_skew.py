"""A replica whose wall clock is far from the others' (a VM restored from a
snapshot, an NTP step, hosts that disagree) on a shared PostgreSQL store.

Heartbeats and leases go by the database's clock, so the replica neither waits
on a dead replica's reply for as long as its clock is behind, nor takes a live
one's over for as long as it is ahead; so do the place of a command that
carries no time of the platform's (a Slack slash command) among the questions,
and when a conversation was last used (for `limits.conversation_ttl`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bridge.intake import order_of
from bridge.interfaces import Address, Inbound
from bridge.interruptions import INTERRUPTED
from bridge.store import InFlight
from bridge.store.postgres import PostgresStore
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(30)]

KEY = "console:W1:thread:C1:T1|docs"
THREAD = Address("console", "W1", "C1", "T1")
STALE_AFTER = 1.5  # three heartbeats of shared_bridge's 0.5 s


def on_the_host(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], float]) -> None:
    """Set this host's wall clock: `time.time`, and the store's clock that reads it."""
    monkeypatch.setattr(time, "time", clock)
    monkeypatch.setattr("bridge.app.open_store", lambda url, **_: PostgresStore(url, clock=clock))


def reply_of(owner: str, beat: float) -> InFlight:
    return InFlight(
        id=f"{owner}-1", key=KEY, address=THREAD, owner=owner, started_at=1.0, heartbeat_at=beat
    )


async def test_a_replica_whose_clock_was_set_back_answers_a_dead_ones_conversation(
    fake_chat_api: FakeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's clock went 600 s back across the crash: the dead process's reply
    # and lease looked alive for 600 s, its reply stayed unmarked, and nothing in
    # its conversation was answered meanwhile.
    real = time.time
    async with pg_schema_url() as url:
        async with PostgresStore(url) as gone:  # the dead process's last heartbeat
            await gone.inflight_begin(reply_of("replica-gone", real() - 60))
            assert await gone.acquire_lease(KEY, "replica-gone", STALE_AFTER, real() - 60)

        def behind() -> float:
            return real() - 600

        on_the_host(monkeypatch, behind)
        fake_chat_api.enqueue(tokens=["An ", "answer."])
        bridge = shared_bridge(fake_chat_api, url)
        async with bridge:
            console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
            target = await console.say("Still there?", thread="T1")
            await wait_for(lambda: "An answer." in target.visible(), timeout=10)
            assert target.visible() == [INTERRUPTED, "An answer."]
            assert all(r.owner != "replica-gone" for r in await bridge.store.inflight_for_key(KEY))


async def test_a_replica_whose_clock_is_ahead_waits_for_a_live_ones_reply(
    fake_chat_api: FakeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 600 s ahead: the live replica's reply looked dead, was marked interrupted while
    # it went on, and the next question of its conversation was answered alongside.
    real = time.time

    def ahead() -> float:
        return real() + 600

    async with pg_schema_url() as url, PostgresStore(url) as live:
        await live.inflight_begin(reply_of("replica-live", real()))
        on_the_host(monkeypatch, ahead)
        fake_chat_api.enqueue(tokens=["Then ", "this."])
        bridge = shared_bridge(fake_chat_api, url)
        async with bridge:
            console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
            target = await console.say("And then?", thread="T1")
            # The live replica beats its reply, past the time it takes to look stale,
            # while the question waits behind it.
            for _ in range(int(2 * STALE_AFTER / 0.25)):
                await live.inflight_update_many(
                    [("replica-live-1", [], "Hel", real())], "replica-live"
                )
                await asyncio.sleep(0.25)
                assert fake_chat_api.requests == []
                [rec] = [r for r in await live.inflight_for_key(KEY) if r.id == "replica-live-1"]
                assert rec.owner == "replica-live"
            await live.inflight_end("replica-live-1")
            await wait_for(lambda: target.visible() == ["Then this."], timeout=10)


@pytest.mark.parametrize("skew", [120.0, -120.0])
async def test_a_reset_keeps_its_place_among_the_questions_whatever_the_replicas_clock(
    fake_chat_api: FakeChatAPI, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    # A Slack slash command has no time of Slack's: it was placed by the replica's own
    # clock among questions placed by Slack's. Ahead (Slack's HTTP mode takes 300 s),
    # a question asked after /reset was answered in the old session and the reset
    # came after it; behind, the reset went before a question asked earlier.
    real = time.time
    fake = fake_chat_api
    fake.enqueue(tokens=[f"w{n} " for n in range(20)], token_delay=0.1, session_id="OLD")
    fake.enqueue(tokens=["Before."], session_id="OLD")
    fake.enqueue(tokens=["After."], session_id="NEW")
    on_the_host(monkeypatch, lambda: real() + skew)
    async with pg_schema_url() as url, shared_bridge(fake, url, route=", session: channel") as b:
        console: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
        await console.say("first", sent_at=real())  # the platform's clock: Slack's ts
        await wait_for(lambda: len(fake.requests) == 1)
        await console.say("asked before the reset", sent_at=real())
        reset = await console.say("", command="reset")
        await wait_for(lambda: any(job.reset for job in b.relay._jobs))
        after = await console.say("asked after the reset", sent_at=real())
        await asyncio.wait_for(after.ended.wait(), 20)
        assert reset.notices
    asked = [(r.json["message"], r.json.get("session_id")) for r in fake.requests]
    assert asked[1] == ("asked before the reset", "OLD")
    assert asked[2][0] == "asked after the reset" and asked[2][1] != "OLD"


async def test_a_command_taken_late_keeps_the_time_it_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Placed by the store's clock as of when it came, not when its turn to be taken
    # came (a burst in its channel ahead of it): a question sent meanwhile stays after.
    real = time.time

    def ahead() -> float:
        return real() + 120

    on_the_host(monkeypatch, ahead)
    came = real() - 5  # by the database's clock (this host's, unskewed)
    command = Inbound(
        platform="slack",
        workspace="T1",
        channel="C1",
        user="U1",
        text="",
        message_id="trigger",
        event_id="command:trigger",
        command="reset",
        received_at=came + 120,
    )
    async with pg_schema_url() as url, PostgresStore(url, clock=ahead) as store:
        assert abs(await order_of(command, store) - came) < 1


async def test_a_conversation_a_replica_behind_answered_is_not_forgotten_early(
    fake_chat_api: FakeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its clock 600 s behind: it dated the conversation's use 600 s early, and the
    # other replicas' pruning (limits.conversation_ttl: 300 s) forgot it at once.
    real = time.time

    def behind() -> float:
        return real() - 600

    fake_chat_api.enqueue(tokens=["An ", "answer."], session_id="S1")
    async with pg_schema_url() as url:
        on_the_host(monkeypatch, behind)
        async with shared_bridge(fake_chat_api, url) as bridge:
            console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
            target = await console.say("Remember me?", thread="T1")
            await wait_for(lambda: target.visible() == ["An answer."], timeout=10)
            await wait_for(lambda: bridge.relay.live == 0, timeout=10)
        async with PostgresStore(url, clock=real) as other:
            assert await other.prune_conversations(real() - 300, 10) == 0
            conv = await other.get_conversation(KEY)
            assert conv is not None and conv.session == "S1"
