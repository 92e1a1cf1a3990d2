"""A job: a message the intake took, as the relay answers it in its turn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.circuit import Circuit
from bridge.config import RouteConfig
from bridge.errors import RateLimited, wait_words
from bridge.flag import Flag
from bridge.interfaces import Inbound, ReplyTarget
from bridge.render import LiveReply
from bridge.reply_budget import Promise
from bridge.store import InFlight

if TYPE_CHECKING:
    from bridge.relay import Relay


@dataclass(eq=False)
class Job:
    """A message taken to be answered (or a reset to be done), in its conversation's turn."""

    msg: Inbound
    target: ReplyTarget
    route: RouteConfig
    key: str
    record: InFlight
    # The jobs of its conversations taken before it, that it waits for.
    previous: tuple[asyncio.Future[None], ...] = ()
    mine: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    reply: LiveReply | None = None
    interrupted: bool = False
    # Its reply's end showed nothing (the platform kept failing): its record stays, to
    # be marked interrupted once the platform is back (`Relay.given_up`).
    unmarked: bool = False
    reset: bool = False  # a reset, in its turn: after the answers asked before it
    also: str | None = None  # a reset's second conversation (the asker's own there)
    aside: InFlight | None = None  # its record there, for that conversation's order
    leased: list[str] = field(default_factory=list)  # the leases it holds (shared store)
    queued: bool = True  # counted in the queue until it takes a slot
    # Set once the messages that were waiting with it in its place are recorded too.
    recorded: Flag = field(default_factory=Flag)
    task: asyncio.Task[None] | None = None  # answering it
    fenced: bool = False  # cut by the fence (bridge/fence.py), to be marked interrupted now
    # Cut as another replica took it over, or may have (`Relay.lost`): its mark shows
    # whenever it can, after the other's.
    taken_over: bool = False
    # Its place's post slot, held for its first words from when it is taken (see Promise).
    promise: Promise | None = None

    @property
    def space(self) -> tuple[str, str]:
        """The workspace it is asked in, (platform, workspace): places and stream slots
        are shared out by it (bridge/fairness.py)."""
        return self.msg.platform, self.msg.workspace

    @property
    def keys(self) -> tuple[str, ...]:
        """The conversations it answers in or resets, each in its turn there."""
        return (self.key,) if self.also is None else (self.key, self.also)

    @property
    def records(self) -> tuple[InFlight, ...]:
        """Its records: one in each of its conversations."""
        return (self.record,) if self.aside is None else (self.record, self.aside)


def unavailable(circuit: Circuit) -> str:
    """Why a backend is not being called now, as the asker is told."""
    if (held := circuit.held_until()) is not None:
        return RateLimited(retry_at=held).describe()
    if circuit.told is not None:  # waiting will not help: the asker is not told to wait
        return circuit.told
    wait = circuit.retry_in()
    # Every failure a slow start: the backend took the questions, it is not said down.
    state = "too slow to answer" if circuit.slow else "unavailable"
    if wait <= 0:  # a question is finding out whether the backend is back
        return f"The assistant is {state} right now; please try again shortly."
    return f"The assistant is {state} right now; please try again in {wait_words(wait)}."


def question_limit(relay: Relay, route: RouteConfig) -> int:
    """The longest question `route`'s backend is asked (and the bridge allows)."""
    most = relay.config.limits.max_question_chars
    return min(most, relay.backends[route.backend].max_message_chars or most)


def too_long(length: int, limit: int) -> str:
    """A question `length` characters long, past `limit`, as its asker is told."""
    return (
        f"That question is {length:,} characters long; the limit is {limit:,}. "
        "Please shorten it and ask again."
    )
