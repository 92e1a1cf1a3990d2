"""Numbered schema migrations shared by the SQLite and PostgreSQL stores.

Each migration has one version number and the SQL for each dialect. A store
records the versions it has applied in `schema_version` and, on open, applies
the missing ones in order, each in its own transaction. Never edit a released
migration: add a new one with the next number.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bridge.errors import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: `sqlite` and `postgres` are lists of statements."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


SCHEMA_VERSION_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at REAL NOT NULL)"
)

SCHEMA_VERSION_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)


# A key written before the backend was part of it ("slack:T1:user:U1"), taken to the
# one routing makes now ("slack:T1:user:U1|docs"), its history with it; not where a
# conversation under the new key was begun meanwhile (that one is kept). `tail(n)` is
# the dialect's last n characters of the key.
def _keys_with_backend(tail: str) -> tuple[str, ...]:
    renamed = (
        f" {tail.format(n='length(backend) + 1')} <> ('|' || backend)"
        " AND NOT EXISTS (SELECT 1 FROM conversations n"
        " WHERE n.key = (conversations.key || '|' || conversations.backend))"
    )
    return (
        "UPDATE history SET key = (key || '|' || (SELECT c.backend FROM conversations c"
        " WHERE c.key = history.key))"
        " WHERE key IN (SELECT key FROM conversations WHERE" + renamed + ")",
        "UPDATE conversations SET key = (key || '|' || backend) WHERE" + renamed,
    )


# A conversation key's scope, `platform:form`: its first part and its third, the word
# that says what the conversation is one per (`slack:T1:user:U1|docs` is `slack:user`;
# see `bridge.routing.key_scopes`). Indexed with the backend, each dialect's expression
# as it is written here: a query finds the index only by the same expression.
def _sqlite_scope() -> str:
    after_platform = "substr(key, instr(key, ':') + 1)"
    after_workspace = f"substr({after_platform}, instr({after_platform}, ':') + 1)"
    return (
        "(substr(key, 1, instr(key, ':') - 1) || ':' ||"
        f" substr({after_workspace}, 1, instr({after_workspace}, ':') - 1))"
    )


SQLITE_SCOPE = _sqlite_scope()
POSTGRES_SCOPE = "(split_part(key, ':', 1) || ':' || split_part(key, ':', 3))"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "conversations and their histories",
        sqlite=(
            "CREATE TABLE conversations ("
            " key TEXT PRIMARY KEY,"
            " backend TEXT NOT NULL,"
            " session TEXT,"
            " created_at REAL NOT NULL,"
            " last_used REAL NOT NULL,"
            " meta TEXT NOT NULL DEFAULT '{}')",
            # seq is global and only grows, so it orders a key's turns.
            "CREATE TABLE history ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " key TEXT NOT NULL,"
            " role TEXT NOT NULL,"
            " content TEXT NOT NULL)",
            "CREATE INDEX history_key_seq ON history (key, seq)",
        ),
        postgres=(
            "CREATE TABLE conversations ("
            " key TEXT PRIMARY KEY,"
            " backend TEXT NOT NULL,"
            " session TEXT,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " last_used DOUBLE PRECISION NOT NULL,"
            " meta JSONB NOT NULL DEFAULT '{}'::jsonb)",
            "CREATE TABLE history ("
            " seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " key TEXT NOT NULL,"
            " role TEXT NOT NULL,"
            " content TEXT NOT NULL)",
            "CREATE INDEX history_key_seq ON history (key, seq)",
        ),
    ),
    Migration(
        2,
        "seen event ids, for deduplication",
        sqlite=(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL)",
            "CREATE INDEX events_seen_at ON events (seen_at)",
        ),
        postgres=(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX events_seen_at ON events (seen_at)",
        ),
    ),
    Migration(
        3,
        "in-flight replies and conversation leases",
        sqlite=(
            "CREATE TABLE inflight ("
            " id TEXT PRIMARY KEY,"
            " key TEXT NOT NULL,"
            " address TEXT NOT NULL,"
            " owner TEXT NOT NULL,"
            " message_ids TEXT NOT NULL DEFAULT '[]',"
            " text TEXT NOT NULL DEFAULT '',"
            " started_at REAL NOT NULL,"
            " heartbeat_at REAL NOT NULL)",
            "CREATE INDEX inflight_owner ON inflight (owner)",
            "CREATE INDEX inflight_heartbeat ON inflight (heartbeat_at)",
            "CREATE TABLE leases ("
            " key TEXT PRIMARY KEY,"
            " owner TEXT NOT NULL,"
            " expires_at REAL NOT NULL)",
        ),
        postgres=(
            "CREATE TABLE inflight ("
            " id TEXT PRIMARY KEY,"
            " key TEXT NOT NULL,"
            " address JSONB NOT NULL,"
            " owner TEXT NOT NULL,"
            " message_ids JSONB NOT NULL DEFAULT '[]'::jsonb,"
            " text TEXT NOT NULL DEFAULT '',"
            " started_at DOUBLE PRECISION NOT NULL,"
            " heartbeat_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX inflight_owner ON inflight (owner)",
            "CREATE INDEX inflight_heartbeat ON inflight (heartbeat_at)",
            "CREATE TABLE leases ("
            " key TEXT PRIMARY KEY,"
            " owner TEXT NOT NULL,"
            " expires_at DOUBLE PRECISION NOT NULL)",
        ),
    ),
    Migration(
        4,
        "in-flight replies looked up by conversation",
        sqlite=("CREATE INDEX inflight_key ON inflight (key, started_at)",),
        postgres=("CREATE INDEX inflight_key ON inflight (key, started_at)",),
    ),
    Migration(
        5,
        "conversations found by when they were last used, to forget old ones",
        sqlite=("CREATE INDEX conversations_last_used ON conversations (last_used)",),
        postgres=("CREATE INDEX conversations_last_used ON conversations (last_used)",),
    ),
    Migration(
        6,
        "conversation keys end with their backend (`|name`), as routing makes them",
        sqlite=_keys_with_backend("substr(key, -({n}))"),
        postgres=_keys_with_backend("right(key, {n})"),
    ),
    Migration(
        7,
        "who asked each question of a history, to tell people apart in shared conversations",
        # Nullable, no default: a replica not yet upgraded still writes its turns (with
        # none), and the column costs no rewrite of the table.
        sqlite=("ALTER TABLE history ADD COLUMN asker TEXT",),
        postgres=("ALTER TABLE history ADD COLUMN asker TEXT",),
    ),
    Migration(
        8,
        "conversations found by their backend, to tell of those no route names any more",
        sqlite=("CREATE INDEX conversations_backend ON conversations (backend)",),
        postgres=("CREATE INDEX conversations_backend ON conversations (backend)",),
    ),
    Migration(
        9,
        "the question each turn of a history belongs to, to forget it once it is deleted",
        # Nullable, as `asker`: the turns kept before it, and those a replica not yet
        # upgraded writes, belong to no question a deletion can name.
        sqlite=(
            "ALTER TABLE history ADD COLUMN question TEXT",
            "CREATE INDEX history_question ON history (question)",
        ),
        postgres=(
            "ALTER TABLE history ADD COLUMN question TEXT",
            "CREATE INDEX history_question ON history (question)",
        ),
    ),
    Migration(
        10,
        "conversations found by their backend and key scope, to tell of those no route "
        "makes any more",
        # It serves whatever the index of migration 8 did (the backend comes first).
        sqlite=(
            f"CREATE INDEX conversations_scope ON conversations (backend, {SQLITE_SCOPE})",
            "DROP INDEX conversations_backend",
        ),
        postgres=(
            f"CREATE INDEX conversations_scope ON conversations (backend, {POSTGRES_SCOPE})",
            "DROP INDEX conversations_backend",
        ),
    ),
)


def check_migrations(migrations: tuple[Migration, ...] | list[Migration]) -> None:
    """Fail loudly if the list is not numbered 1, 2, 3, ... (a programming error)."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"schema migration {migration.version} is out of order; expected {expected}"
            )


check_migrations(MIGRATIONS)


def pending(
    migrations: tuple[Migration, ...] | list[Migration], applied: Collection[int], where: str
) -> list[Migration]:
    """The migrations a database still needs; refuses a database newer than this build."""
    newest = len(migrations)
    if applied and max(applied) > newest:
        raise StoreError(
            f"{where} has schema version {max(applied)}, newer than this chat-bridge "
            f"understands ({newest}); upgrade chat-bridge"
        )
    return [m for m in migrations if m.version not in applied]
