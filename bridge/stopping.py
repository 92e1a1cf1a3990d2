"""The deadline of a graceful stop's last part, after the grace.

Then the stop writes what it knows to the store: the live replies' last progress,
the removal of finished replies' records, and the marks of the replies it cut. A
store that does not answer (a statement behind another session's lock, a database
that stopped answering mid-failover) must not hold the stop past what the
orchestrator waits for before it kills the process: every wait of that part ends
by one deadline. A second stop signal shortens the waits on a store that does not
answer, not those on one that does: from it, each call to the store gets about a
second of its own from when it begins, and once one goes unanswered the stop waits
no more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

log = logging.getLogger("chat_bridge.stop")

T = TypeVar("T")

# How long a call to the store may take after a second stop signal (from when it
# begins, or from the signal if it came during the call): the admin asked to stop now.
HURRIED_SECONDS = 1.0


class Hurry(Protocol):
    """What tells of a second stop signal (the relay)."""

    @property
    def hurried(self) -> bool: ...

    async def hurry_within(self, seconds: float) -> bool: ...


class Unanswered(TimeoutError):
    """A call cut by the stop's deadline after it had its own time (`HURRIED_SECONDS`
    at least): what it waited on does not answer.

    A plain TimeoutError from `StopClock.within` is a call cut with less: the
    deadline was spent before it began, which tells nothing of the store.

    Control flow of the stop, never raised past it: every caller of `within` catches
    TimeoutError, this with it, and tells the two apart only to word its log. Hence
    a TimeoutError, caught with the deadline's other cuts, and not a BridgeError: no
    caller outside the stop ever sees it."""


class StopClock:
    """`seconds` from now; after a second stop signal, about `HURRIED_SECONDS` for
    each call, until one goes unanswered."""

    def __init__(self, hurry: Hurry, seconds: float) -> None:
        self._hurry = hurry
        self._end = time.monotonic() + seconds
        # Something waited on did not end in its own time: after a second signal, the
        # stop waits no more; a call cut since then is told as unanswered.
        self.stalled = False

    def end_within(self, seconds: float) -> None:
        """Bring the deadline to `seconds` from now, if it is later."""
        self._end = min(self._end, time.monotonic() + seconds)

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self._end - time.monotonic()

    async def within(self, aw: Awaitable[T], *, hurried: float | None = HURRIED_SECONDS) -> T:
        """The result of `aw` (a call to the store), or a TimeoutError when the
        deadline comes first: `Unanswered` when the call had its own time.

        `hurried`: how long the call gets after a second stop signal (from when it
        begins, or from the signal if that comes during it); None: all the deadline.
        What is cut is cancelled and left to end on its own: a statement sent to a
        database that stopped answering may not end until its connection is closed.
        """
        began = time.monotonic()
        own_end: float | None = None  # from the second signal on
        task = asyncio.ensure_future(aw)

        def end() -> float:
            nonlocal own_end
            if hurried is None or not self._hurry.hurried:
                return self._end
            if own_end is None:
                own_end = time.monotonic() + hurried
            return min(self._end, own_end)

        try:
            while not task.done() and (left := end() - time.monotonic()) > 0:
                if hurried is not None and not self._hurry.hurried:
                    watch = asyncio.ensure_future(self._hurry.hurry_within(left))
                    try:
                        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        watch.cancel()
                else:
                    await asyncio.wait((task,), timeout=left)
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_left_behind)
        if task.done():
            return task.result()
        # Its own time: its hurried part whole, or a second at least of the deadline.
        own = (own_end is not None and own_end <= self._end) or (
            self._end - began >= HURRIED_SECONDS
        )
        if own or self.stalled:
            self.stalled = True
            if self._hurry.hurried:  # the admin asked to stop now: waits no more
                self.end_within(0)
            raise Unanswered
        raise TimeoutError


def _left_behind(task: asyncio.Future[Any]) -> None:
    """Its outcome is no longer awaited: taken here, not reported as never retrieved."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("a store call cut by the stop's deadline ended: %r", exc)
