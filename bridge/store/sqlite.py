"""The SQLite store: one file (or `:memory:`), WAL mode, one connection per process.

Its queries are here, one method of `Store` each, as `bridge.store.postgres` has
them. The connection they go through (one per process, taken in turns, write
transactions that start with BEGIN IMMEDIATE, the lock file a daemon holds) is
`bridge.store.sqlite_connection`'s. The file itself (its directory, its lock file,
its journal mode, its free pages, what SQLite's errors on it mean, whether it was
replaced under the bridge) is `bridge.store.sqlite_file`'s.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import aiosqlite

from bridge.history import kept_from
from bridge.interfaces import Turn
from bridge.store.base import (
    BACKEND_NAMES,
    CONVERSATION_REPLACED,
    Conversation,
    InFlight,
    InFlightProgress,
    address_from_json,
    address_to_json,
    scope_names,
    unmade,
)
from bridge.store.migrations import SQLITE_SCOPE
from bridge.store.sqlite_connection import SQLiteConnection
from bridge.store.sqlite_file import empty_log, give_space_back

# Many rows in one UPDATE needs UPDATE … FROM (SQLite 3.33, 2020); older builds
# update them in one transaction instead.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
_ROWS_PER_UPDATE = 500  # four parameters a row, far below SQLite's limit


class SQLiteStore(SQLiteConnection):
    """Conversation store in a SQLite file.

    `path` is a file path (its parent directory is created if missing) or
    `:memory:`. `busy_timeout` is how long, in seconds, a statement waits for
    another process's lock before failing with StoreError.
    """

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # ------------------------------------------------------------------ conversations

    async def get_conversation(self, key: str) -> Conversation | None:
        async with self._read("reading a conversation", one_trip=True) as db:
            row = await _one(
                db,
                "SELECT key, backend, session, created_at, last_used, meta"
                " FROM conversations WHERE key = ?",
                (key,),
            )
        if row is None:
            return None
        return Conversation(
            key=row[0],
            backend=row[1],
            session=row[2],
            created_at=row[3],
            last_used=row[4],
            meta=json.loads(row[5]) if row[5] else {},
        )

    async def save_conversation(self, conv: Conversation) -> None:
        await self._insert_conversation(conv, CONVERSATION_REPLACED)

    async def create_conversation(self, conv: Conversation) -> None:
        await self._insert_conversation(conv, "DO NOTHING")

    async def _insert_conversation(self, conv: Conversation, on_conflict: str) -> None:
        async with self._write("saving a conversation", transaction=False) as db:
            await db.execute(
                "INSERT INTO conversations (key, backend, session, created_at, last_used, meta)"
                f" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) {on_conflict}",
                (
                    conv.key,
                    conv.backend,
                    conv.session,
                    conv.created_at,
                    conv.last_used,
                    json.dumps(conv.meta),
                ),
            )

    async def reset_conversation(self, key: str) -> bool:
        async with self._write("resetting a conversation") as db:
            row = await _one(db, "SELECT session FROM conversations WHERE key = ?", (key,))
            await db.execute(
                "UPDATE conversations SET session = NULL, meta = '{}' WHERE key = ?", (key,)
            )
            hist = await db.execute("DELETE FROM history WHERE key = ?", (key,))
            return (row is not None and row[0] is not None) or hist.rowcount > 0

    async def other_backends(self, configured: Collection[str]) -> dict[str, int]:
        async with self._read("counting conversations by backend") as db:
            names = [row[0] for row in await db.execute_fetchall(BACKEND_NAMES)]
            counts = {}
            for name in sorted(set(names) - set(configured)):
                [(count,)] = await db.execute_fetchall(
                    "SELECT count(*) FROM conversations WHERE backend = ?", (name,)
                )
                counts[name] = int(count)
        return counts

    async def unmade_scopes(
        self, made: Mapping[str, Collection[str]]
    ) -> dict[tuple[str, str], int]:
        counts = {}
        async with self._read("counting conversations by key scope") as db:
            for backend in sorted(made):
                scopes = await db.execute_fetchall(_SCOPES, (backend,))
                for (scope,) in scopes:
                    if unmade(scope, made[backend]):
                        [(count,)] = await db.execute_fetchall(_SCOPE_COUNT, (backend, scope))
                        counts[backend, scope] = int(count)
        return counts

    # ------------------------------------------------------------------ history

    async def history(self, key: str) -> list[Turn]:
        async with self._read("reading a history") as db:
            cursor = await db.execute(
                "SELECT role, content, asker FROM history WHERE key = ? ORDER BY seq", (key,)
            )
            rows = await cursor.fetchall()
        return [Turn(role=role, content=content, asker=asker) for role, content, asker in rows]

    async def append_history(
        self,
        key: str,
        turns: Sequence[Turn],
        keep: int,
        max_chars: int | None = None,
        *,
        question: str | None = None,
    ) -> None:
        async with self._write("appending to a history") as db:
            if turns:
                await db.executemany(
                    "INSERT INTO history (key, role, content, asker, question)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(key, turn.role, turn.content, turn.asker, question) for turn in turns],
                )
            cursor = await db.execute(
                "SELECT seq, length(content) FROM history WHERE key = ? ORDER BY seq", (key,)
            )
            rows = list(await cursor.fetchall())
            start = kept_from([size for _, size in rows], keep, max_chars)
            if start == len(rows):
                await db.execute("DELETE FROM history WHERE key = ?", (key,))
            elif start:
                await db.execute(
                    "DELETE FROM history WHERE key = ? AND seq < ?", (key, rows[start][0])
                )

    async def forget_question(self, question: str) -> int:
        async with self._write("forgetting a deleted question", transaction=False) as db:
            cursor = await db.execute("DELETE FROM history WHERE question = ?", (question,))
            return cursor.rowcount

    async def edit_question(self, question: str, text: str) -> int:
        async with self._write("keeping an edited question", transaction=False) as db:
            cursor = await db.execute(
                "UPDATE history SET content = ? WHERE question = ? AND role = 'user'",
                (text, question),
            )
            return cursor.rowcount

    # ------------------------------------------------------------------ deduplication

    async def claim_event(self, event_id: str, now: float) -> bool:
        async with self._write("recording an event id", transaction=False) as db:
            cursor = await db.execute(
                "INSERT INTO events (event_id, seen_at) VALUES (?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, now),
            )
            return cursor.rowcount == 1

    async def event_claimed(self, event_id: str) -> bool:
        async with self._read("looking up an event id", one_trip=True) as db:
            row = await _one(db, "SELECT 1 FROM events WHERE event_id = ?", (event_id,))
        return row is not None

    async def prune_events(self, older_than: float) -> int:
        async with self._write("pruning event ids", transaction=False) as db:
            cursor = await db.execute("DELETE FROM events WHERE seen_at < ?", (older_than,))
            return cursor.rowcount

    async def prune_leases(self, now: float) -> None:
        async with self._write("forgetting expired leases", transaction=False) as db:
            await db.execute("DELETE FROM leases WHERE expires_at < ?", (now,))

    async def compact(self) -> None:
        # The write-ahead log keeps what was deleted since its last checkpoint until
        # it is written over: emptied now and then, it keeps it for minutes, not for
        # as long as the daemon runs. The file gives back a bounded part of its free
        # pages first, for the checkpoint to shrink it at once; where it cannot (a full
        # disk: it writes), the log is emptied all the same, and gives its space back.
        unvacuumed: sqlite3.Error | None = None
        async with self._write(
            "emptying the write-ahead log", transaction=False, one_trip=False
        ) as db:
            try:
                await give_space_back(db)
            except sqlite3.Error as exc:
                unvacuumed = exc
            emptied = await empty_log(db, self.busy_timeout)
        self._checkpoints.done(busy=not emptied)
        if unvacuumed is not None:
            raise self._error(unvacuumed, "giving free pages back")

    async def prune_conversations(self, older_than: float, limit: int) -> int:
        oldest = "SELECT key FROM conversations WHERE last_used < ? ORDER BY last_used LIMIT ?"
        async with self._write("forgetting old conversations") as db:
            await db.execute(f"DELETE FROM history WHERE key IN ({oldest})", (older_than, limit))
            cursor = await db.execute(
                f"DELETE FROM conversations WHERE key IN ({oldest})", (older_than, limit)
            )
            return cursor.rowcount

    # ------------------------------------------------------------------ in-flight replies

    async def inflight_begin(self, rec: InFlight) -> None:
        async with self._write("recording an in-flight reply", transaction=False) as db:
            await db.execute(
                "INSERT INTO inflight"
                " (id, key, address, owner, message_ids, text, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET key = excluded.key,"
                " address = excluded.address, owner = excluded.owner,"
                " message_ids = excluded.message_ids, text = excluded.text,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                (
                    rec.id,
                    rec.key,
                    address_to_json(rec.address),
                    rec.owner,
                    json.dumps(list(rec.message_ids)),
                    rec.text,
                    rec.started_at,
                    rec.heartbeat_at or rec.started_at,
                ),
            )

    async def inflight_update_many(self, rows: Sequence[InFlightProgress], owner: str) -> set[str]:
        # One process holds the file (`hold`): nobody else takes its replies over.
        if not rows:
            return set()
        if len(rows) > 1 and _UPDATE_FROM:
            # A statement per few hundred rows, each atomic by itself and one trip:
            # other calls need not wait for a transaction to finish.
            for start in range(0, len(rows), _ROWS_PER_UPDATE):
                chunk = rows[start : start + _ROWS_PER_UPDATE]
                values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                params = [
                    value
                    for rec_id, ids, text, now in chunk
                    for value in (rec_id, json.dumps(list(ids)), text, now)
                ]
                async with self._write("updating in-flight replies", transaction=False) as db:
                    await db.execute(
                        f"WITH v (id, message_ids, text, heartbeat_at) AS (VALUES {values})"
                        " UPDATE inflight SET message_ids = v.message_ids, text = v.text,"
                        " heartbeat_at = v.heartbeat_at FROM v WHERE inflight.id = v.id",
                        params,
                    )
            return {rec_id for rec_id, _, _, _ in rows}
        # One statement commits by itself; several share one transaction.
        async with self._write("updating in-flight replies", transaction=len(rows) > 1) as db:
            await db.executemany(
                "UPDATE inflight SET message_ids = ?, text = ?, heartbeat_at = ? WHERE id = ?",
                [(json.dumps(list(ids)), text, now, rec_id) for rec_id, ids, text, now in rows],
            )
        return {rec_id for rec_id, _, _, _ in rows}

    async def inflight_end(self, rec_id: str) -> None:
        async with self._write("ending an in-flight reply", transaction=False) as db:
            await db.execute("DELETE FROM inflight WHERE id = ?", (rec_id,))

    async def inflight_orphans(self, owner: str, stale_before: float) -> list[InFlight]:
        async with self._read("looking for interrupted replies") as db:
            cursor = await db.execute(
                "SELECT id, key, address, owner, message_ids, text, started_at, heartbeat_at"
                " FROM inflight WHERE owner = ? OR heartbeat_at < ?"
                " ORDER BY started_at, id",
                (owner, stale_before),
            )
            rows = await cursor.fetchall()
        return [_inflight(row) for row in rows]

    async def inflight_for_key(self, key: str) -> list[InFlight]:
        async with self._read("looking up a conversation's replies") as db:
            cursor = await db.execute(
                "SELECT id, key, address, owner, message_ids, text, started_at, heartbeat_at"
                " FROM inflight WHERE key = ? ORDER BY started_at, id",
                (key,),
            )
            rows = await cursor.fetchall()
        return [_inflight(row) for row in rows]

    async def inflight_claim(self, rec_id: str, owner: str, expected_heartbeat: float) -> bool:
        # The new heartbeat must differ from the expected one, so a second claim
        # that read the same orphan fails its compare-and-set.
        beat = max(self._clock(), math.nextafter(expected_heartbeat, math.inf))
        async with self._write("claiming an interrupted reply", transaction=False) as db:
            cursor = await db.execute(
                "UPDATE inflight SET owner = ?, heartbeat_at = ? WHERE id = ? AND heartbeat_at = ?",
                (owner, beat, rec_id, expected_heartbeat),
            )
            return cursor.rowcount == 1

    # ------------------------------------------------------------------ leases

    async def acquire_lease(self, key: str, owner: str, ttl: float, now: float) -> bool:
        async with self._write("taking a conversation lease", transaction=False) as db:
            # One trip: the statement runs to its end in the database thread.
            rows = await db.execute_fetchall(
                "INSERT INTO leases (key, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at"
                " WHERE leases.expires_at <= ? OR leases.owner = excluded.owner"
                " RETURNING owner",
                (key, owner, now + ttl, now),
            )
            return len(list(rows)) == 1

    async def release_lease(self, key: str, owner: str) -> None:
        async with self._write("releasing a conversation lease", transaction=False) as db:
            await db.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner))

    async def now(self) -> float:
        return self._clock()


# ---------------------------------------------------------------------- helpers


async def _one(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
) -> sqlite3.Row | tuple[Any, ...] | None:
    rows = await db.execute_fetchall(sql, tuple(params))  # one trip to the database thread
    return next(iter(rows), None)


def _inflight(row: Sequence[Any]) -> InFlight:
    return InFlight(
        id=row[0],
        key=row[1],
        address=address_from_json(row[2]),
        owner=row[3],
        message_ids=list(json.loads(row[4])) if row[4] else [],
        text=row[5],
        started_at=row[6],
        heartbeat_at=row[7],
    )


_SCOPES = scope_names(SQLITE_SCOPE, "?1")
_SCOPE_COUNT = f"SELECT count(*) FROM conversations WHERE backend = ?1 AND {SQLITE_SCOPE} = ?2"
