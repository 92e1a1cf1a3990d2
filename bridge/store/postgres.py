"""The PostgreSQL store: for several bridge processes sharing one state.

A connection pool on asyncpg. Everything that must be atomic across processes
is one statement (claim_event, acquire_lease, inflight_claim) or one
transaction under an advisory lock (migrations, history appends).
Heartbeats, lease expiries, the times event ids were seen and conversations
used, and the checks of them all, are written and made in the database's clock
(`_NOW`), in the statement itself: every replica reads the same clock, so one
whose own clock is behind or ahead (a VM restored from a snapshot, an NTP step,
hosts that disagree) neither keeps a dead replica's replies and leases alive nor
takes a live one's, nor forgets the events the others saw early, nor the
conversations they used (`limits.conversation_ttl`). A time passed in by the
caller counts only as a duration from its own clock (see `_since`); a
conversation's times are read back so too, by the caller's clock, so one read
and saved again keeps them.
Query parameters in the URL other than the connection's own (host, port,
dbname, user, sslmode...) are server settings, so
`postgresql://bridge@db/chat?search_path=bridge` keeps the tables in the
schema `bridge`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bridge.errors import StoreError
from bridge.history import kept_from
from bridge.interfaces import Turn
from bridge.store.base import (
    BACKEND_NAMES,
    CONVERSATION_REPLACED,
    Conversation,
    InFlight,
    InFlightProgress,
    Store,
    address_from_json,
    address_to_json,
    scope_names,
    unmade,
)
from bridge.store.migrations import (
    MIGRATIONS,
    POSTGRES_SCOPE,
    SCHEMA_VERSION_POSTGRES,
    Migration,
    check_migrations,
    pending,
)
from bridge.store.postgres_server import (
    DRIVER_ERRORS,
    POOL_MIN,
    describe_url,
    server_error,
)

log = logging.getLogger("chat_bridge.store")

# Any fixed number will do; every chat-bridge process takes the same lock
# around migrations, so two processes starting at once migrate one after the other.
_MIGRATION_LOCK = 0x63686272_64676531  # "chbrdge1"
MIGRATION_TIMEOUT = 3600.0  # seconds a migration's statement (or the wait for another's) may take
# Seconds a closing pool waits for the statements still running (left by a stop's
# deadline, perhaps on a database that stopped answering) before it drops them.
CLOSE_TIMEOUT = 0.5

# The database's clock as epoch seconds, as the statement began (not its transaction,
# as now() would be): once per statement, so the comparisons with it can use an index.
_NOW = "extract(epoch from statement_timestamp())::float8"


class PostgresStore(Store):
    """Conversation store in PostgreSQL, safe to share between processes.

    `url` is a libpq-style URL (`postgresql://user[:password]@host:5432/db`).
    `min_size`/`max_size` bound the pool (see `postgres_server.pool_size`);
    `connect_timeout` and `command_timeout` (seconds) bound how long a connection
    attempt or a statement may take before StoreError. A wait for a free connection of the
    pool is bounded by `connect_timeout` too, and told apart: the pool is busy,
    not the server.
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = POOL_MIN,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self.where = describe_url(url)
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._migrations = tuple(migrations)
        check_migrations(self._migrations)
        self._clock = clock
        self._pool: asyncpg.Pool | None = None
        # A permit per connection of the pool: a wait for one is a busy pool in this
        # process, told apart from a server slow to accept a new connection (asyncpg's
        # acquire times out alike for both).
        self._free = asyncio.Semaphore(max_size)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"  # never the password

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create the pool and apply pending migrations."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings={"application_name": "chat-bridge"},
            )
        except DRIVER_ERRORS as exc:
            raise self._error(exc, "connecting") from exc
        except ValueError as exc:  # a malformed URL
            raise StoreError(f"store: the PostgreSQL URL {self.where} is invalid") from exc
        except OverflowError as exc:  # the socket's: a port past 65535, here from PGPORT
            raise StoreError(
                f"store: the port of PostgreSQL at {self.where} is outside 1-65535; check "
                "the port in the store URL and the PGPORT variable"
            ) from exc
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, DRIVER_ERRORS):
                raise self._error(exc, "applying schema migrations") from exc
            raise
        self._pool = pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=min(self.command_timeout, CLOSE_TIMEOUT))
        except DRIVER_ERRORS:  # TimeoutError is one of them
            pool.terminate()

    async def ping(self) -> None:
        async with self._conn("answering a ping") as conn:
            await conn.fetchval("SELECT 1")

    # ------------------------------------------------------------------ migrations

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(SCHEMA_VERSION_POSTGRES)
            applied = await _versions(conn)
        where = f"the PostgreSQL database {self.where}"
        for migration in pending(self._migrations, applied, where):
            async with conn.transaction():
                # A migration rewriting a big table outlasts command_timeout, and so
                # does another process's wait for it: neither is the network's fault.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK, timeout=MIGRATION_TIMEOUT
                )
                # Another process may have applied it while we waited for the lock.
                if migration.version in await _versions(conn):
                    continue
                log.info(
                    "applying schema migration %d to %s: %s",
                    migration.version,
                    where,
                    migration.description,
                )
                for statement in migration.postgres:
                    await conn.execute(statement, timeout=MIGRATION_TIMEOUT)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at)"
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    time.time(),
                )

    async def schema_versions(self) -> list[int]:
        """The migration versions applied to this database, ascending."""
        async with self._conn("reading the schema version") as conn:
            return sorted(await _versions(conn))

    # ------------------------------------------------------------------ conversations

    async def get_conversation(self, key: str) -> Conversation | None:
        async with self._conn("reading a conversation") as conn:
            row = await conn.fetchrow(
                f"SELECT key, backend, session, created_at - {_NOW} AS created_ago,"
                f" last_used - {_NOW} AS used_ago, meta FROM conversations WHERE key = $1",
                key,
            )
        if row is None:
            return None
        now = self._clock()
        return Conversation(
            key=row["key"],
            backend=row["backend"],
            session=row["session"],
            created_at=now + row["created_ago"],
            last_used=now + row["used_ago"],
            meta=json.loads(row["meta"]) if row["meta"] else {},
        )

    async def save_conversation(self, conv: Conversation) -> None:
        await self._insert_conversation(conv, CONVERSATION_REPLACED)

    async def create_conversation(self, conv: Conversation) -> None:
        await self._insert_conversation(conv, "DO NOTHING")

    async def _insert_conversation(self, conv: Conversation, on_conflict: str) -> None:
        async with self._conn("saving a conversation") as conn:
            await conn.execute(
                "INSERT INTO conversations (key, backend, session, created_at, last_used, meta)"
                f" VALUES ($1, $2, $3, {_NOW} + least($4::float8, 0),"
                f" {_NOW} + least($5::float8, 0), $6::jsonb) ON CONFLICT (key) {on_conflict}",
                conv.key,
                conv.backend,
                conv.session,
                self._since(conv.created_at),
                self._since(conv.last_used),
                json.dumps(conv.meta),
            )

    async def reset_conversation(self, key: str) -> bool:
        async with self._conn("resetting a conversation") as conn, conn.transaction():
            session = await conn.fetchval(
                "SELECT session FROM conversations WHERE key = $1 FOR UPDATE", key
            )
            await conn.execute(
                "UPDATE conversations SET session = NULL, meta = '{}'::jsonb WHERE key = $1", key
            )
            hist = await conn.execute("DELETE FROM history WHERE key = $1", key)
        return session is not None or _count(hist) > 0

    async def other_backends(self, configured: Collection[str]) -> dict[str, int]:
        async with self._conn("counting conversations by backend") as conn:
            names = [row[0] for row in await conn.fetch(BACKEND_NAMES)]
            return {
                name: int(
                    await conn.fetchval(
                        "SELECT count(*) FROM conversations WHERE backend = $1", name
                    )
                )
                for name in sorted(set(names) - set(configured))
            }

    async def unmade_scopes(
        self, made: Mapping[str, Collection[str]]
    ) -> dict[tuple[str, str], int]:
        counts = {}
        async with self._conn("counting conversations by key scope") as conn:
            for backend in sorted(made):
                for row in await conn.fetch(_SCOPES, backend):
                    if unmade(scope := row[0], made[backend]):
                        counts[backend, scope] = int(
                            await conn.fetchval(_SCOPE_COUNT, backend, scope)
                        )
        return counts

    # ------------------------------------------------------------------ history

    async def history(self, key: str) -> list[Turn]:
        async with self._conn("reading a history") as conn:
            rows = await conn.fetch(
                "SELECT role, content, asker FROM history WHERE key = $1 ORDER BY seq", key
            )
        return [Turn(role=row["role"], content=row["content"], asker=row["asker"]) for row in rows]

    async def append_history(
        self,
        key: str,
        turns: Sequence[Turn],
        keep: int,
        max_chars: int | None = None,
        *,
        question: str | None = None,
    ) -> None:
        async with self._conn("appending to a history") as conn, conn.transaction():
            # Serialise appends to one key, so concurrent trims cannot leave
            # more behind than the rule keeps.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            if turns:
                await conn.executemany(
                    "INSERT INTO history (key, role, content, asker, question)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    [(key, turn.role, turn.content, turn.asker, question) for turn in turns],
                )
            rows = await conn.fetch(
                "SELECT seq, length(content) AS size FROM history WHERE key = $1 ORDER BY seq",
                key,
            )
            start = kept_from([row["size"] for row in rows], keep, max_chars)
            if start == len(rows):
                await conn.execute("DELETE FROM history WHERE key = $1", key)
            elif start:
                await conn.execute(
                    "DELETE FROM history WHERE key = $1 AND seq < $2", key, rows[start]["seq"]
                )

    async def forget_question(self, question: str) -> int:
        async with self._conn("forgetting a deleted question") as conn:
            status = await conn.execute("DELETE FROM history WHERE question = $1", question)
        return _count(status)

    async def edit_question(self, question: str, text: str) -> int:
        async with self._conn("keeping an edited question") as conn:
            status = await conn.execute(
                "UPDATE history SET content = $1 WHERE question = $2 AND role = 'user'",
                text,
                question,
            )
        return _count(status)

    # ------------------------------------------------------------------ deduplication

    async def claim_event(self, event_id: str, now: float) -> bool:
        async with self._conn("recording an event id") as conn:
            inserted = await conn.fetchval(
                f"INSERT INTO events (event_id, seen_at) VALUES ($1, {_NOW} + least($2::float8, 0))"
                " ON CONFLICT (event_id) DO NOTHING RETURNING 1",
                event_id,
                self._since(now),
            )
        return inserted is not None

    async def event_claimed(self, event_id: str) -> bool:
        async with self._conn("looking up an event id") as conn:
            found = await conn.fetchval("SELECT 1 FROM events WHERE event_id = $1", event_id)
        return found is not None

    async def prune_events(self, older_than: float) -> int:
        async with self._conn("pruning event ids") as conn:
            status = await conn.execute(
                f"DELETE FROM events WHERE seen_at < {_NOW} + $1", self._since(older_than)
            )
        return _count(status)

    async def prune_leases(self, now: float) -> None:
        async with self._conn("forgetting expired leases") as conn:
            await conn.execute(
                f"DELETE FROM leases WHERE expires_at < {_NOW} + $1", self._since(now)
            )

    async def prune_conversations(self, older_than: float, limit: int) -> int:
        async with self._conn("forgetting old conversations") as conn:
            gone = await conn.fetchval(
                "WITH gone AS (DELETE FROM conversations WHERE key IN ("
                f" SELECT key FROM conversations WHERE last_used < {_NOW} + $1"
                " ORDER BY last_used LIMIT $2)"
                # Checked again: a conversation used meanwhile stays.
                f" AND last_used < {_NOW} + $1 RETURNING key),"
                " history_gone AS (DELETE FROM history WHERE key IN (SELECT key FROM gone))"
                " SELECT count(*) FROM gone",
                self._since(older_than),
                limit,
            )
        return int(gone or 0)

    # ------------------------------------------------------------------ in-flight replies

    async def inflight_begin(self, rec: InFlight) -> None:
        async with self._conn("recording an in-flight reply") as conn:
            await conn.execute(
                "INSERT INTO inflight"
                " (id, key, address, owner, message_ids, text, started_at, heartbeat_at)"
                f" VALUES ($1, $2, $3::jsonb, $4, $5::jsonb, $6, $7, {_NOW} + least($8::float8, 0))"
                " ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key,"
                " address = EXCLUDED.address, owner = EXCLUDED.owner,"
                " message_ids = EXCLUDED.message_ids, text = EXCLUDED.text,"
                " started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at",
                rec.id,
                rec.key,
                address_to_json(rec.address),
                rec.owner,
                json.dumps(list(rec.message_ids)),
                rec.text,
                float(rec.started_at),
                self._since(rec.heartbeat_at or rec.started_at),
            )

    async def inflight_update_many(self, rows: Sequence[InFlightProgress], owner: str) -> set[str]:
        if not rows:
            return set()
        latest = {rec_id: (ids, text, now) for rec_id, ids, text, now in rows}
        async with self._conn("updating in-flight replies") as conn:
            kept = await conn.fetch(
                "UPDATE inflight SET message_ids = v.message_ids::jsonb, text = v.text,"
                f" heartbeat_at = {_NOW} + least(v.since, 0)"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])"
                " AS v (id, message_ids, text, since)"
                " WHERE inflight.id = v.id AND inflight.owner = $5 RETURNING inflight.id",
                list(latest),
                [json.dumps(list(ids)) for ids, _, _ in latest.values()],
                [text for _, text, _ in latest.values()],
                [self._since(now) for _, _, now in latest.values()],
                owner,
            )
        return {row["id"] for row in kept}

    async def inflight_end(self, rec_id: str) -> None:
        async with self._conn("ending an in-flight reply") as conn:
            await conn.execute("DELETE FROM inflight WHERE id = $1", rec_id)

    async def inflight_orphans(self, owner: str, stale_before: float) -> list[InFlight]:
        async with self._conn("looking for interrupted replies") as conn:
            rows = await conn.fetch(
                "SELECT id, key, address, owner, message_ids, text, started_at, heartbeat_at"
                f" FROM inflight WHERE owner = $1 OR heartbeat_at < {_NOW} + $2"
                " ORDER BY started_at, id",
                owner,
                self._since(stale_before),
            )
        return [_inflight(row) for row in rows]

    async def inflight_for_key(self, key: str) -> list[InFlight]:
        async with self._conn("looking up a conversation's replies") as conn:
            rows = await conn.fetch(
                "SELECT id, key, address, owner, message_ids, text, started_at, heartbeat_at"
                " FROM inflight WHERE key = $1 ORDER BY started_at, id",
                key,
            )
        return [_inflight(row) for row in rows]

    async def inflight_claim(self, rec_id: str, owner: str, expected_heartbeat: float) -> bool:
        # The new heartbeat must differ from the expected one, so a second claim
        # that read the same orphan fails its compare-and-set. (Both are float8: the
        # value read back is the value stored, to the bit.)
        after = math.nextafter(float(expected_heartbeat), math.inf)
        async with self._conn("claiming an interrupted reply") as conn:
            taken = await conn.fetchval(
                f"UPDATE inflight SET owner = $1, heartbeat_at = greatest({_NOW}, $2)"
                " WHERE id = $3 AND heartbeat_at = $4 RETURNING 1",
                owner,
                after,
                rec_id,
                float(expected_heartbeat),
            )
        return taken is not None

    # ------------------------------------------------------------------ leases

    async def acquire_lease(self, key: str, owner: str, ttl: float, now: float) -> bool:
        async with self._conn("taking a conversation lease") as conn:
            taken = await conn.fetchval(
                "INSERT INTO leases (key, owner, expires_at)"
                f" VALUES ($1, $2, {_NOW} + least($4::float8, 0) + $3)"
                " ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner,"
                " expires_at = EXCLUDED.expires_at"
                f" WHERE leases.expires_at <= {_NOW} + $4 OR leases.owner = EXCLUDED.owner"
                " RETURNING 1",
                key,
                owner,
                float(ttl),
                self._since(now),
            )
        return taken is not None

    async def release_lease(self, key: str, owner: str) -> None:
        async with self._conn("releasing a conversation lease") as conn:
            await conn.execute("DELETE FROM leases WHERE key = $1 AND owner = $2", key, owner)

    async def renew_leases(
        self, keys: Sequence[str], owner: str, ttl: float, now: float
    ) -> set[str]:
        if not keys:
            return set()
        async with self._conn("renewing conversation leases") as conn:
            renewed = await conn.fetch(
                f"UPDATE leases SET expires_at = {_NOW} + least($4::float8, 0) + $3"
                " WHERE owner = $2 AND key = ANY($1::text[]) RETURNING key",
                list(keys),
                owner,
                float(ttl),
                self._since(now),
            )
        return {row["key"] for row in renewed}

    # ------------------------------------------------------------------ clock

    async def now(self) -> float:
        async with self._conn("reading the database's clock") as conn:
            return float(await conn.fetchval(f"SELECT {_NOW}"))

    def _since(self, at: float) -> float:
        """`at`, a time by the caller's clock, as seconds from the caller's now (negative
        for the past): added to the database's clock in the statement. Only the
        duration counts, so a caller's clock set wrong moves nothing. Where it is
        written down (a heartbeat, an expiry, a conversation's use) the statement
        takes no more than the database's now: a clock stepped between the caller's
        reading and this one cannot date a heartbeat ahead."""
        return float(at) - self._clock()

    # ------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"the PostgreSQL store {self.where} is not open; open() it first")
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._free.acquire()
        except TimeoutError:
            raise StoreError(
                f"no free store connection in this process within {self.connect_timeout:g} s "
                f"({what}): the store's pool (size {self.max_size}) is busy, all its "
                "connections running other statements. This process asks more of the store "
                "at once than it can (lower limits.max_concurrent_streams, or share the load "
                "with another replica; docs/store.md says how the pool is sized), or "
                f"PostgreSQL at {self.where} is slow (long statements show in "
                "pg_stat_activity)"
            ) from None
        try:
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise self._error(exc, what) from exc
        finally:
            self._free.release()

    def _error(self, exc: BaseException, what: str) -> StoreError:
        return server_error(exc, what, self.where, self._url, self.max_size)


def _count(status: str) -> int:
    """The row count of a command status such as `DELETE 3`."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


async def _versions(conn: asyncpg.Connection) -> set[int]:
    rows: list[Any] = await conn.fetch("SELECT version FROM schema_version")
    return {row["version"] for row in rows}


def _inflight(row: Any) -> InFlight:
    return InFlight(
        id=row["id"],
        key=row["key"],
        address=address_from_json(row["address"]),
        owner=row["owner"],
        message_ids=list(json.loads(row["message_ids"])),
        text=row["text"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
    )


_SCOPES = scope_names(POSTGRES_SCOPE, "$1")
_SCOPE_COUNT = f"SELECT count(*) FROM conversations WHERE backend = $1 AND {POSTGRES_SCOPE} = $2"
