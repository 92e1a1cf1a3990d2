"""Fixtures that give each test a fresh, empty store of each kind.

SQLite: a file in the test's tmp_path. PostgreSQL: a uniquely named schema in
the server at CHAT_BRIDGE_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test),
selected with `?search_path=...` in the store URL and dropped afterwards. An
unreachable server fails the test; it is never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.store.base import Store
from bridge.store.sqlite import SQLiteStore

PG_URL = os.environ.get("CHAT_BRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

StoreFactory = Callable[..., Store]


async def _pg_admin() -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(PG_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is needed for the store tests but {PG_URL} is unreachable ({exc}); "
            "start the server or point CHAT_BRIDGE_TEST_PG at one",
            pytrace=False,
        )


@asynccontextmanager
async def pg_schema_url() -> AsyncIterator[str]:
    """A store URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}search_path={schema}"
    finally:
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(store_kind: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Build (not open) stores that all use the same fresh database; closes them after."""
    made: list[Store] = []

    async def close_all() -> None:
        for store in made:
            await store.aclose()

    if store_kind == "sqlite":
        path = tmp_path / "data" / "bridge.db"

        def factory(**kw: Any) -> Store:
            store = SQLiteStore(path, **kw)
            made.append(store)
            return store

        yield factory
        await close_all()
        return

    from bridge.store.postgres import PostgresStore

    async with pg_schema_url() as url:

        def pg_factory(**kw: Any) -> Store:
            store = PostgresStore(url, **kw)
            made.append(store)
            return store

        yield pg_factory
        await close_all()


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    """An open, empty store."""
    s = make_store()
    await s.open()
    yield s
    await s.aclose()
