"""What only the PostgreSQL store does: connection errors, URLs, schemas."""

from __future__ import annotations

import socket

import pytest

from bridge.errors import StoreError
from bridge.store.base import open_store
from bridge.store.migrations import MIGRATIONS, Migration
from bridge.store.postgres import PostgresStore, describe_url

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
    # (The other statements of a start keep the command timeout: 2 s leaves them room
    # on a loaded host; at 0.5 s one of them failed once there.)
    slow = Migration(len(MIGRATIONS) + 1, "test: a slow step", sqlite=(),
                     postgres=("SELECT pg_sleep(3)",))
    async with pg_schema_url() as url:
        store = PostgresStore(url, command_timeout=2.0, migrations=(*MIGRATIONS, slow))
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
