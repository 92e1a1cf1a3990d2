"""The deadline of a graceful stop's last part, after the grace.

Then the stop writes what it knows to the store: the live replies' last progress,
the removal of finished replies' records, and the marks of the replies it cut. A
store that does not answer (a statement behind another session's lock, a database
that stopped answering mid-failover) must not hold the stop past what the
orchestrator waits for before it kills the process: every wait of that part ends
by one deadline, and a second stop signal brings it to about a second away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

log = logging.getLogger("chat_bridge.stop")

T = TypeVar("T")

# How long the store may take after a second stop signal: the admin asked to stop now.
HURRIED_SECONDS = 1.0


class Hurry(Protocol):
    """What tells of a second stop signal (the relay)."""

    @property
    def hurried(self) -> bool: ...

    async def hurry_within(self, seconds: float) -> bool: ...


class StopClock:
    """`seconds` from now, or about `HURRIED_SECONDS` from a second stop signal."""

    def __init__(self, hurry: Hurry, seconds: float) -> None:
        self._hurry = hurry
        self._end = time.monotonic() + seconds
        self._hurried_end: float | None = None

    def end_within(self, seconds: float) -> None:
        """Bring the deadline to `seconds` from now, if it is later."""
        self._end = min(self._end, time.monotonic() + seconds)

    def left(self, hurried: bool = True) -> float:
        """Seconds left; with `hurried`, as cut short by a second stop signal."""
        end = self._end
        if hurried and self._hurry.hurried:
            if self._hurried_end is None:
                self._hurried_end = time.monotonic() + HURRIED_SECONDS
            end = min(end, self._hurried_end)
        return end - time.monotonic()

    async def within(self, aw: Awaitable[T], *, hurried: bool = True) -> T:
        """The result of `aw`, or TimeoutError when the deadline comes first (with
        `hurried`, one cut short by a second stop signal, also while it waits).

        What is cut is cancelled and left to end on its own: a statement sent to a
        database that stopped answering may not end until its connection is closed.
        """
        task = asyncio.ensure_future(aw)
        try:
            while not task.done() and (left := self.left(hurried)) > 0:
                if hurried and not self._hurry.hurried:
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
        if not task.done():
            raise TimeoutError
        return task.result()


def _left_behind(task: asyncio.Future[Any]) -> None:
    """Its outcome is no longer awaited: taken here, not reported as never retrieved."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("a store call cut by the stop's deadline ended: %r", exc)
