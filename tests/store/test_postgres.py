"""What only the PostgreSQL store does: connection errors, URLs, schemas, its pool."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bridge.errors import StoreError
from bridge.interfaces import Address
from bridge.store import InFlight
from bridge.store import postgres as pg_store
from bridge.store.base import open_store
from bridge.store.migrations import MIGRATIONS, Migration
from bridge.store.postgres import PostgresStore
from bridge.store.postgres_server import POOL_MAX, POOL_MIN, describe_url, pool_size
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge

from .conftest import PG_URL, pg_schema_url

pytestmark = pytest.mark.postgres


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    port = _closed_port()
    store = PostgresStore(f"postgresql://bridge:s3cr3t-pw@127.0.0.1:{port}/chat", connect_timeout=5)
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert "cannot reach PostgreSQL at postgresql://bridge@127.0.0.1:" in message
    assert "running" in message
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in repr(store)
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


async def test_a_port_out_of_range_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The config rejects such a port in the URL; PGPORT reaches the driver unchecked,
    # and `run` died on the socket's OverflowError with a traceback.
    monkeypatch.setenv("PGPORT", "99999")
    store = PostgresStore("postgresql://bridge:s3cr3t-pw@127.0.0.1/chat", connect_timeout=5)
    with pytest.raises(StoreError, match="outside 1-65535.*PGPORT") as info:
        await store.open()
    assert "s3cr3t-pw" not in str(info.value)


async def test_tls_the_server_does_not_offer_is_said_so() -> None:
    # The test server speaks no TLS: `sslmode=require` was "cannot reach ... check
    # that the server is running", though it is.
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}sslmode=require"
    with pytest.raises(StoreError) as info:
        await PostgresStore(url).open()
    message = str(info.value)
    assert message.startswith("TLS with PostgreSQL at ")
    assert "rejected SSL upgrade" in message and "sslmode" in message


async def test_a_migration_may_take_longer_than_a_command() -> None:
    # Renaming the keys of a big store took more than the 30 s command timeout:
    # the start failed, and every restart did the same work and failed again.
    # (The other statements of a start keep the command timeout: 5 s leaves them room
    # on a loaded host; at 0.5 s, and at 2 s with two test runs beside, one of them
    # failed there.)
    slow = Migration(
        len(MIGRATIONS) + 1, "test: a slow step", sqlite=(), postgres=("SELECT pg_sleep(6)",)
    )
    async with pg_schema_url() as url:
        store = PostgresStore(url, command_timeout=5.0, migrations=(*MIGRATIONS, slow))
        try:
            await store.open()
            assert await store.schema_versions() == [m.version for m in (*MIGRATIONS, slow)]
        finally:
            await store.aclose()


async def test_missing_database_is_a_clear_error() -> None:
    url = PG_URL.rsplit("/", 1)[0] + "/no_such_db_for_chat_bridge"
    with pytest.raises(StoreError, match="database does not exist"):
        await PostgresStore(url).open()


async def test_a_missing_schema_is_a_clear_error() -> None:
    # PostgreSQL's own words ("no schema has been selected to create in") named no schema.
    url = PG_URL + ("&" if "?" in PG_URL else "?") + "search_path=no_such_schema_for_bridge"
    with pytest.raises(StoreError, match="the schema 'no_such_schema_for_bridge'.*CREATE SCHEMA"):
        await PostgresStore(url).open()


def test_describe_url_drops_password_and_query() -> None:
    assert describe_url("postgresql://u:pw@db.example:5433/chat?search_path=x") == (
        "postgresql://u@db.example:5433/chat"
    )
    assert describe_url("postgres://db/chat") == "postgres://db/chat"


async def test_open_store_url_and_search_path_schema() -> None:
    async with pg_schema_url() as url:
        store = open_store(url)
        assert isinstance(store, PostgresStore) and store.shared is True
        async with store:
            assert await store.claim_event("e", 1.0) is True
            async with store._conn("test") as conn:
                schema = await conn.fetchval("SELECT current_schema()")
                tables = await conn.fetchval(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
                    schema,
                )
        assert schema == url.rsplit("search_path=", 1)[1]
        # schema_version, conversations, history, events, inflight, leases
        assert tables == 6


async def test_counting_unmade_key_scopes_finds_the_index_of_scopes() -> None:
    # Run at every start: the scopes come one step down the index each, and only the
    # conversations of those counted are read. (A scan is cheaper on a small table:
    # the planner is kept from one to see that the index serves both statements.)
    async with pg_schema_url() as url, PostgresStore(url) as store:
        async with store._conn("test") as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plans = [
                "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {query}", *args))
                for query, args in (
                    (pg_store._SCOPES, ("docs",)),
                    (pg_store._SCOPE_COUNT, ("docs", "slack:user")),
                )
            ]
    for plan in plans:
        assert "conversations_scope" in plan and "Seq Scan" not in plan, plan


async def test_a_busy_pool_is_told_as_such_not_as_the_server() -> None:
    # A burst that kept every connection of the pool busy had the next statement's
    # wait time out as "PostgreSQL ... did not answer in time; check the server and
    # the network", though the server answered every statement it was sent.
    async with pg_schema_url() as url:
        store = PostgresStore(url, max_size=2, connect_timeout=0.5)
        async with store:
            held, release = asyncio.Event(), asyncio.Event()
            holding = 0

            async def hold() -> None:
                nonlocal holding
                async with store._conn("holding a connection"):
                    holding += 1
                    if holding == 2:
                        held.set()
                    await release.wait()

            holders = [asyncio.create_task(hold()) for _ in range(2)]
            await held.wait()
            with pytest.raises(StoreError) as info:
                await store.claim_event("e", 1.0)
            message = str(info.value)
            assert message.startswith(
                "no free store connection in this process within 0.5 s (recording an event "
                "id): the store's pool (size 2) is busy"
            ), message
            assert "did not answer" not in message and "network" not in message
            release.set()
            await asyncio.gather(*holders)
            # The permits are all back: the pool serves as before.
            assert await store.claim_event("e", 1.0) is True
            assert await asyncio.gather(*(store.claim_event(f"e{i}", 1.0) for i in range(5)))


async def test_a_cancelled_wait_for_a_connection_gives_back_no_permit() -> None:
    async with pg_schema_url() as url:
        store = PostgresStore(url, max_size=1, connect_timeout=5)
        async with store:
            release = asyncio.Event()
            entered = asyncio.Event()

            async def hold() -> None:
                async with store._conn("holding a connection"):
                    entered.set()
                    await release.wait()

            holder = asyncio.create_task(hold())
            await entered.wait()
            waiting = asyncio.create_task(store.claim_event("e", 1.0))
            await wait_for(lambda: store._free._waiters)  # type: ignore[attr-defined]
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            release.set()
            await holder
            assert store._free._value == 1  # type: ignore[attr-defined]
            assert await store.claim_event("e", 1.0) is True


def test_the_pool_grows_with_the_streams_within_bounds() -> None:
    # The pool was 10 connections whatever limits.max_concurrent_streams said.
    assert pool_size(1) == pool_size(64) == POOL_MIN == 10
    assert pool_size(160) == 20
    assert pool_size(240) == pool_size(100_000) == POOL_MAX == 30
    url = "postgresql://bridge@db/chat"
    store = open_store(url, streams=1000)
    assert isinstance(store, PostgresStore) and store.max_size == 30
    default = open_store(url)
    assert isinstance(default, PostgresStore) and default.max_size == 10


async def test_a_bridge_sizes_its_store_pool_from_its_streams(fake_chat_api: FakeChatAPI) -> None:
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, "max_concurrent_streams: 200") as bridge,
    ):
        assert isinstance(bridge.store, PostgresStore) and bridge.store.max_size == 25


async def test_a_heartbeat_writes_only_what_its_replica_still_holds() -> None:
    # Another replica took a reply and a lease over (this one was paused past the
    # takeover time): the heartbeat neither overwrites them nor says they were kept.
    where = Address("console", "W1", "C1", "T1")
    async with pg_schema_url() as url, PostgresStore(url) as store:
        for rec_id in ("mine", "taken"):
            await store.inflight_begin(InFlight(rec_id, "k", where, "a", started_at=1.0))
        [taken] = [r for r in await store.inflight_for_key("k") if r.id == "taken"]
        assert await store.inflight_claim("taken", "b", taken.heartbeat_at)
        assert await store.acquire_lease("k1", "a", 30.0, 100.0)
        assert await store.acquire_lease("k2", "b", 30.0, 100.0)
        rows = [(rec_id, ["m1"], f"{rec_id} later", 100.0) for rec_id in ("mine", "taken", "gone")]
        assert await store.inflight_update_many(rows, "a") == {"mine"}
        assert {r.id: r.text for r in await store.inflight_for_key("k")} == {
            "mine": "mine later",
            "taken": "",
        }
        assert await store.renew_leases(["k1", "k2"], "a", 30.0, 100.0) == {"k1"}
