"""The store interface: what the bridge remembers between messages and restarts."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bridge.errors import ConfigError
from bridge.interfaces import Address, Turn


@dataclass(slots=True)
class Conversation:
    """A platform conversation mapped to a backend session."""

    key: str
    backend: str
    session: str | None
    created_at: float
    last_used: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InFlight:
    """A reply being streamed, recorded so a later process can mark it interrupted."""

    id: str
    key: str
    address: Address
    owner: str
    started_at: float
    message_ids: list[str] = field(default_factory=list)
    text: str = ""
    heartbeat_at: float = 0.0


# What `save_conversation` does where the row exists, the same SQL in both stores:
# the row saved replaces it whole (EXCLUDED is the row offered).
CONVERSATION_REPLACED = (
    "DO UPDATE SET backend = EXCLUDED.backend, session = EXCLUDED.session,"
    " created_at = EXCLUDED.created_at, last_used = EXCLUDED.last_used, meta = EXCLUDED.meta"
)


# The backends conversations are kept for, each name once, for both stores: one step
# down the index on `backend` a name, not a read of every conversation. (Counting in
# the same statement would count the configured backends' too, or make PostgreSQL's
# planner guess a cost that has it compile the query: a tenth of a second, at every
# start, for a millisecond's work.)
BACKEND_NAMES = (
    "WITH RECURSIVE names (name) AS ("
    " SELECT min(backend) FROM conversations"
    " UNION ALL SELECT (SELECT min(backend) FROM conversations WHERE backend > names.name)"
    " FROM names WHERE names.name IS NOT NULL)"
    " SELECT name FROM names WHERE name IS NOT NULL"
)


def scope_names(scope: str, backend: str) -> str:
    """The key scopes one backend's conversations have (`scope`: the dialect's
    expression, indexed with the backend; `backend`: its parameter), each once: one
    step down that index a scope, as `BACKEND_NAMES`."""
    return (
        "WITH RECURSIVE scopes (scope) AS ("
        f" SELECT min({scope}) FROM conversations WHERE backend = {backend}"
        f" UNION ALL SELECT (SELECT min({scope}) FROM conversations"
        f" WHERE backend = {backend} AND {scope} > scopes.scope)"
        " FROM scopes WHERE scopes.scope IS NOT NULL)"
        " SELECT scope FROM scopes WHERE scope IS NOT NULL"
    )


def unmade(scope: str, made: Collection[str]) -> bool:
    """Whether no scope of `made` (`platform:form`, `*:form` for any platform) is
    the key scope `scope`."""
    form = scope.partition(":")[2]
    return scope not in made and f"*:{form}" not in made


def address_to_json(address: Address) -> str:
    return json.dumps(
        {
            "platform": address.platform,
            "workspace": address.workspace,
            "channel": address.channel,
            "thread": address.thread,
        }
    )


def address_from_json(raw: str) -> Address:
    data = json.loads(raw)
    return Address(
        platform=data["platform"],
        workspace=data["workspace"],
        channel=data["channel"],
        thread=data.get("thread"),
    )


#: One reply's progress: (record id, its message ids, the text shown, when).
InFlightProgress = tuple[str, Sequence[str], str, float]


class Store(ABC):
    """Async store of conversations, histories, event ids, in-flight replies and leases.

    Every method is safe to call concurrently. Times are epoch seconds.
    `shared` is True where several processes may use the same store at once.
    """

    shared: ClassVar[bool] = False

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def hold(self) -> None:  # noqa: B027 - most stores need nothing here
        """Before `open()`, in a daemon: wait while another process holds a store made
        for one process (SQLite's file). Let go by `aclose()`. Shared stores: nothing."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the connections (a PostgreSQL pool given half a second at most, then cut) and
        let go what `hold()` held. Safe to call twice, or on a store never opened."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    async def now(self) -> float:
        """The store's time, epoch seconds: the clock its heartbeats and lease expiries
        are written in and judged by. A store of one process reads this process's
        clock; a shared store reads one clock for every replica (PostgreSQL's), so
        the `heartbeat_at` of its records is compared with this, never with the
        process's own clock, which may be behind or ahead of the others'."""
        return time.time()

    # conversations
    @abstractmethod
    async def get_conversation(self, key: str) -> Conversation | None:
        """The conversation stored for `key`, its times on the caller's clock; None
        where there is none (never begun, or forgotten by `prune_conversations`; a
        reset one is still there, without its session)."""

    @abstractmethod
    async def save_conversation(self, conv: Conversation) -> None:
        """Insert or replace the conversation row for `conv.key`."""

    @abstractmethod
    async def create_conversation(self, conv: Conversation) -> None:
        """Insert the conversation row for `conv.key`, unless there is one already."""

    @abstractmethod
    async def reset_conversation(self, key: str) -> bool:
        """Start the conversation afresh: forget its session, meta and history.

        Its row stays, with no session: the conversation is still known (a
        thread the bridge answers is still followed without a mention), and its
        next message starts a new session. True if there was a session or
        history to forget.
        """

    @abstractmethod
    async def other_backends(self, configured: Collection[str]) -> dict[str, int]:
        """The backends not in `configured` that conversations are kept for, and how
        many each: conversations no route reaches any more (their keys name the
        backend), such as a renamed backend's. Cheap on a big store: it reads the
        index of backends, and counts only the conversations of those named."""

    @abstractmethod
    async def unmade_scopes(
        self, made: Mapping[str, Collection[str]]
    ) -> dict[tuple[str, str], int]:
        """For each backend of `made`, the scopes of its conversations' keys
        (`platform:form`, see `bridge.routing.key_scopes`) that none of the scopes its
        routes make (`made[backend]`; `*:form`: on any platform) is, and how many
        conversations have each: conversations no route reaches any more, such as
        those of a route whose `session` changed. Cheap on a big store: the scopes come
        one index step each, and only the conversations of those unmade are counted."""

    # history (stateless APIs)
    @abstractmethod
    async def history(self, key: str) -> list[Turn]:
        """The stored turns, oldest first."""

    @abstractmethod
    async def append_history(
        self,
        key: str,
        turns: Sequence[Turn],
        keep: int,
        max_chars: int | None = None,
        *,
        question: str | None = None,
    ) -> None:
        """Append turns, then keep only what `bridge.history.kept_from` keeps: of the
        newest `keep` messages, the newest whole pairs within `max_chars` characters.
        `question`: the id of the question the turns are (`bridge.deletions.question_id`),
        for `forget_question`."""

    @abstractmethod
    async def forget_question(self, question: str) -> int:
        """Forget the turns appended with `question` (a question and its answer), in
        whichever conversation: the question was deleted. Returns how many."""

    @abstractmethod
    async def edit_question(self, question: str, text: str) -> int:
        """Give the question turn appended with `question` the text `text`, in
        whichever conversation (its answer stays): the question was edited. Returns
        how many turns took it."""

    # deduplication
    @abstractmethod
    async def claim_event(self, event_id: str, now: float) -> bool:
        """Atomically record an event id; True if this call was the first."""

    @abstractmethod
    async def event_claimed(self, event_id: str) -> bool:
        """Whether an event id is recorded (claimed, and not pruned yet)."""

    @abstractmethod
    async def prune_events(self, older_than: float) -> int:
        """Forget event ids recorded before `older_than`; returns how many."""

    @abstractmethod
    async def prune_leases(self, now: float) -> None:
        """Forget the conversation leases expired by `now` (a stopped replica's: nobody
        holds them, and each names a conversation)."""

    async def compact(self) -> None:  # noqa: B027 - nothing to do for most stores
        """Let go of what deleted rows leave behind in the store's files (a heartbeat
        calls it now and then)."""

    @abstractmethod
    async def prune_conversations(self, older_than: float, limit: int) -> int:
        """Forget at most `limit` conversations last used before `older_than`, the
        oldest first, with their history; returns how many. A shared store judges
        by the time it wrote them in (see `now`): `older_than` counts only as so long
        before the caller's now, and a conversation's times are given and read back
        by the caller's clock."""

    # in-flight replies
    @abstractmethod
    async def inflight_begin(self, rec: InFlight) -> None:
        """Record a reply being answered (its heartbeat `started_at` where it has none);
        a record of the same id is replaced whole, whoever owned it."""

    @abstractmethod
    async def inflight_update_many(self, rows: Sequence[InFlightProgress], owner: str) -> set[str]:
        """Record several replies' progress at once: (id, message ids, text, now) each,
        of those `owner` still holds (on a shared store, another replica may have taken
        one over, or ended it). Returns the ids of those it recorded."""

    @abstractmethod
    async def inflight_end(self, rec_id: str) -> None:
        """Delete the record of a reply done with, whoever owns it now; nothing where
        there is none. A record left is marked interrupted by the next recovery."""

    @abstractmethod
    async def inflight_orphans(self, owner: str, stale_before: float) -> list[InFlight]:
        """Replies left by other owners whose heartbeat is older than `stale_before`,
        plus every reply of `owner` itself (a previous run with the same owner id)."""

    @abstractmethod
    async def inflight_for_key(self, key: str) -> list[InFlight]:
        """Every reply recorded for a conversation, oldest `started_at` first."""

    @abstractmethod
    async def inflight_claim(self, rec_id: str, owner: str, expected_heartbeat: float) -> bool:
        """Take over an orphan (so only one process fixes it up); True if taken."""

    # conversation leases (answer a conversation's messages in order across processes)
    @abstractmethod
    async def acquire_lease(self, key: str, owner: str, ttl: float, now: float) -> bool:
        """Take or renew the lease on `key` if free, expired or already ours."""

    @abstractmethod
    async def release_lease(self, key: str, owner: str) -> None:
        """Let go of `owner`'s lease on `key`; nothing where another owner holds it
        (it took over an expired one) or none is held."""

    async def renew_leases(
        self, keys: Sequence[str], owner: str, ttl: float, now: float
    ) -> set[str]:
        """Extend the leases `owner` holds on `keys` (the heartbeat's renewal); returns
        the keys renewed (on a shared store, another replica may have taken one over)."""
        return {key for key in keys if await self.acquire_lease(key, owner, ttl, now)}


def open_store(url: str, *, streams: int | None = None) -> Store:
    """Build (not open) the store for a `store:` URL, for a process answering up to
    `streams` questions at once (limits.max_concurrent_streams): a PostgreSQL
    store's pool of connections grows with it."""
    if url.startswith("sqlite://"):
        from bridge.store.sqlite import SQLiteStore

        # sqlite:///data/x.db is the absolute path /data/x.db; sqlite://x.db is relative.
        path = url[len("sqlite://") :]
        return SQLiteStore(path or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from bridge.store.postgres import PostgresStore
        from bridge.store.postgres_server import POOL_MIN, pool_size

        return PostgresStore(url, max_size=POOL_MIN if streams is None else pool_size(streams))
    raise ConfigError("store", "must start with sqlite:/// or postgresql://")
