"""The order of one conversation's messages on a shared (PostgreSQL) store, in one process.

Every replica orders a conversation's messages by when they were sent (then by
their record's id); a process's own queued messages follow that same order, so
two of them never wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.store import InFlight
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(30)]


def shared_bridge(
    fake: FakeChatAPI, store_url: str, limits: str = "heartbeat_interval: 0.5", route: str = ""
) -> Bridge:
    """A bridge on the shared store at `store_url`; `route` adds to its one route."""
    config = parse_config(
        f"""
store: "{store_url}"
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: {fake.endpoint("chatmount")}, api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs{route}}}]
reply: {{edit_interval: 0.05}}
limits: {{{limits}}}
""",
        env={"KEY": fake.api_key},
        registry=TEST_REGISTRY,
    )
    return Bridge(config, TEST_REGISTRY)


async def ask_two(fake: FakeChatAPI, first: tuple[str, float], then: tuple[str, float]) -> None:
    """Deliver two messages of one thread back to back; wait until both are answered."""
    for _ in range(2):
        fake.enqueue(tokens=["An ", "answer."], token_delay=0.05)
    async with pg_schema_url() as url, shared_bridge(fake, url) as bridge:
        await say_two(bridge, fake, first, then)


async def say_two(
    bridge: Bridge, fake: FakeChatAPI, first: tuple[str, float], then: tuple[str, float]
) -> None:
    """Deliver two messages of one thread to `bridge`; wait until both are answered."""
    console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
    for text, sent_at in (first, then):
        await console.say(text, thread="T1", sent_at=sent_at)
    await wait_for(lambda: len(fake.requests) == 2 and bridge.relay.live == 0)


async def test_a_message_that_arrives_after_a_later_one_is_answered_first(
    fake_chat_api: FakeChatAPI,
) -> None:
    # A redelivered message, or one from another place in the same conversation.
    await ask_two(fake_chat_api, ("second", 1_700_000_000.2), ("first", 1_700_000_000.1))
    assert [r.json["message"] for r in fake_chat_api.requests] == ["first", "second"]


async def test_an_earlier_message_recorded_slowly_is_still_answered_first(
    fake_chat_api: FakeChatAPI,
) -> None:
    # The later message's answer looked for messages ahead of it before the earlier
    # one (delivered right after it) was recorded, and went first.
    for _ in range(2):
        fake_chat_api.enqueue(tokens=["An ", "answer."], token_delay=0.05)
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as bridge:
        store = bridge.relay.store
        looked = asyncio.Event()
        begin, lookup = store.inflight_begin, store.inflight_for_key
        calls = 0

        async def slow_begin(record: InFlight) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:  # the earlier message's record: slow, as a busy store is
                with contextlib.suppress(TimeoutError):  # (not so slow it is stale)
                    await asyncio.wait_for(looked.wait(), 0.3)
            await begin(record)

        async def watched_lookup(key: str) -> list[InFlight]:
            found = await lookup(key)
            looked.set()
            return found

        store.inflight_begin = slow_begin  # type: ignore[method-assign]
        store.inflight_for_key = watched_lookup  # type: ignore[method-assign]
        await say_two(
            bridge, fake_chat_api, ("second", 1_700_000_000.2), ("first", 1_700_000_000.1)
        )
    assert [r.json["message"] for r in fake_chat_api.requests] == ["first", "second"]


async def test_messages_sent_in_the_same_millisecond_are_answered_as_they_came(
    fake_chat_api: FakeChatAPI,
) -> None:
    for _ in range(3):  # the tie was broken by a random id: it went wrong one time in two
        fake_chat_api.requests.clear()
        await ask_two(fake_chat_api, ("one", 1_700_000_000.123), ("two", 1_700_000_000.123))
        assert [r.json["message"] for r in fake_chat_api.requests] == ["one", "two"]
        await asyncio.sleep(0)


async def test_a_conversation_is_answered_by_one_replica_at_a_time(
    fake_chat_api: FakeChatAPI,
) -> None:
    # It lasts longer than a lease unrenewed (three heartbeats: 0.6 s).
    fake_chat_api.enqueue(
        tokens=["A ", "slow ", "answer ", "in ", "six ", "parts."], token_delay=0.3
    )
    fake_chat_api.enqueue(tokens=["Then ", "this."])
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url) as a,
        shared_bridge(fake_chat_api, url) as b,
    ):
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
        later = await on_b.say("second", thread="T1", sent_at=1_700_000_000.2)
        await wait_for(lambda: bool(later.visible()))
        # The earlier message reaches the other replica only now: too late to be
        # answered first, but it must not be answered alongside.
        earlier = await on_a.say("first", thread="T1", sent_at=1_700_000_000.1)
        await wait_for(lambda: bool(earlier.visible()) and a.relay.live == 0)
        assert later.visible() == ["A slow answer in six parts."]  # it had finished
    first_ask, second_ask = fake_chat_api.requests
    # One conversation, one session: the second answer went on from the first.
    assert first_ask.json["session_id"] == second_ask.json["session_id"]


async def test_a_follow_up_reaching_another_replica_while_its_question_waits_is_taken(
    fake_chat_api: FakeChatAPI,
) -> None:
    # The thread was known only to the replica that took its question (and only once
    # the answer began): the follow-up, on the other replica, was dropped unseen.
    fake_chat_api.enqueue(tokens=["slow "] * 20, token_delay=0.05)
    fake_chat_api.enqueue(tokens=["First."])
    fake_chat_api.enqueue(tokens=["Second."])
    busy = "heartbeat_interval: 0.5, max_concurrent_streams: 1"
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, busy) as a,
        shared_bridge(fake_chat_api, url, busy) as b,
    ):
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
        await on_a.say("a long question", thread="T1", sent_at=1_700_000_000.1)
        await wait_for(lambda: fake_chat_api.requests)  # A's only stream is taken
        await on_a.say("how do I deploy?", thread="T2", sent_at=1_700_000_000.2)
        await wait_for(lambda: len(a.relay._jobs) == 2)  # taken, waiting its turn
        # ...and its thread recorded for every replica (once taken, a moment after).
        async with asyncio.timeout(10):
            while await b.relay.store.get_conversation("console:W1:thread:C1:T2|docs") is None:
                await asyncio.sleep(0.01)
        await on_b.say("on Windows, please", thread="T2", mentioned=False, sent_at=1_700_000_000.3)
        await wait_for(lambda: len(fake_chat_api.requests) == 3, timeout=20)
    assert [r.json["message"] for r in fake_chat_api.requests] == [
        "a long question",
        "how do I deploy?",
        "on Windows, please",
    ]


async def test_a_backlog_behind_another_replicas_answer_leaves_the_free_streams_to_others(
    fake_chat_api: FakeChatAPI,
) -> None:
    # Questions of one conversation waiting (on the store) for its answer on another
    # replica counted against this one's queue: with its streams idle, someone
    # asking elsewhere was told the bot was busy.
    fake_chat_api.enqueue(tokens=["Slow ", "one."], hang_after=1)
    fake_chat_api.enqueue(tokens=["For you."])
    limits = "heartbeat_interval: 0.5, max_concurrent_streams: 2, queue_size: 0"
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, limits, route=", session: channel") as a,
        shared_bridge(fake_chat_api, url, limits, route=", session: channel") as b,
    ):
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
        first = await on_a.say("first", channel="C-NOISY", sent_at=1_700_000_000.0)
        await wait_for(lambda: any(t.startswith("Slow") for t in first.visible()))
        noisy = [
            await on_b.say(
                f"question {i}", channel="C-NOISY", user="U-NOISY", sent_at=1_700_000_001.0 + i
            )
            for i in range(8)
        ]
        await wait_for(lambda: b.relay.taken("console:W1:channel:C-NOISY|docs") == 8)
        other = await on_b.say("a different question", channel="C-QUIET", user="U-OTHER")
        await asyncio.wait_for(other.ended.wait(), 10)
        assert other.visible() == ["For you."]
        assert other.notices == []
        assert all(t.notices == [] for t in noisy)  # still waiting their turn, on B


async def test_a_job_waiting_behind_one_of_ours_that_is_closing_does_not_spin(
    fake_chat_api: FakeChatAPI,
) -> None:
    fake_chat_api.enqueue(tokens=["One."], token_delay=0.05)
    fake_chat_api.enqueue(tokens=["Two."])
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as bridge:
        store = bridge.store
        looks: list[bool] = []  # one per look at the conversation's records
        closing = asyncio.Event()
        look, end = store.inflight_for_key, store.inflight_end

        async def counted(key: str) -> list[InFlight]:
            looks.append(closing.is_set())
            return await look(key)

        async def slow_end(rec_id: str) -> None:
            closing.set()  # a busy pool: removing the first record takes a while
            try:
                await asyncio.sleep(0.5)
                await end(rec_id)
            finally:
                closing.clear()

        store.inflight_for_key = counted  # type: ignore[method-assign]
        store.inflight_end = slow_end  # type: ignore[method-assign]
        await say_two(
            bridge, fake_chat_api, ("first", 1_700_000_000.1), ("second", 1_700_000_000.2)
        )
    # The second waits with its back-off meanwhile, not in a loop of queries.
    assert looks.count(True) < 10


@pytest.mark.parametrize("shared", [True, False])
async def test_a_question_asked_after_a_waiting_reset_is_not_reset_by_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path, shared: bool
) -> None:
    # The reset waits behind a slow answer in the channel; the asker's private
    # question, asked after it, went first and was then reset by it.
    fake = fake_chat_api
    fake.enqueue(tokens=[f"w{n} " for n in range(15)], token_delay=0.05, session_id="PUBLIC")
    fake.enqueue(tokens=["Private."], session_id="ASKED-AFTER")
    fake.enqueue(tokens=["Again."], session_id="ASKED-AFTER")
    async with contextlib.AsyncExitStack() as stack:
        url = (
            await stack.enter_async_context(pg_schema_url())
            if shared
            else f"sqlite://{tmp_path / 'b.db'}"
        )
        bridge = await stack.enter_async_context(
            shared_bridge(fake, url, route=", session: channel")
        )
        console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        t0 = 1_700_000_000.0
        public = await console.say("public", sent_at=t0)
        await wait_for(lambda: len(fake.requests) == 1)
        reset = await console.say("", command="reset", sent_at=t0 + 1)
        await wait_for(lambda: any(job.reset for job in bridge.relay._jobs))
        private = await console.say("private", audience="asker", sent_at=t0 + 2)
        for target in (public, private):
            await asyncio.wait_for(target.ended.wait(), 10)
        assert reset.notices
        again = await console.say("again", audience="asker", sent_at=t0 + 3)
        await asyncio.wait_for(again.ended.wait(), 10)
    assert fake.requests[2].json.get("session_id") == "ASKED-AFTER"


async def test_a_stop_while_a_lease_is_taken_leaves_it_to_the_other_replicas(
    fake_chat_api: FakeChatAPI,
) -> None:
    # The stop cut the job as the store's answer was on its way, the lease taken: it
    # stayed this stopped process's until it expired (three heartbeats), and the other
    # replicas answered nothing in that conversation meanwhile.
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, limits="heartbeat_interval: 10") as bridge,
    ):
        store = bridge.store
        acquire = store.acquire_lease
        taken: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def slow_answer(key: str, owner: str, ttl: float, now: float) -> bool:
            assert await acquire(key, owner, ttl, now)  # taken, in the database
            taken.set_result(key)
            await asyncio.Event().wait()  # its answer slow to come back, until the stop
            return True

        store.acquire_lease = slow_answer  # type: ignore[method-assign]
        console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        await console.say("A question?", thread="T1")
        key = await asyncio.wait_for(taken, 10)
        await bridge.drain(grace=0)
        assert await acquire(key, "another-replica", bridge.relay.stale_after, time.time())
