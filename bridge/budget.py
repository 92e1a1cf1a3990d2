"""Rate budgets shared by every live reply in the same bucket.

A `Budget` allows at most `rate.count` operations in any window of
`rate.per` seconds (a sliding window, so it never trips a fixed-window or a
token-bucket limiter on the other side). Waiters are served by priority, not
arrival: replies that have shown nothing yet go first, then typing, then the
reply whose text has waited longest (the classes are in `bridge.render`,
which also caps typing at half of a bot-wide budget).

`Budgets` keeps one budget per bucket (a Slack workspace, a Discord channel)
and forgets the ones that have gone quiet, so a daemon that has replied in
many channels over months does not keep a budget for each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
import weakref
from collections.abc import Callable, Iterator

from bridge.interfaces import Rate

Priority = tuple[int, float]


class Budget:
    """A sliding-window budget with prioritized waiters."""

    def __init__(
        self,
        rate: Rate,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        on_grant: Callable[[float], None] | None = None,
    ) -> None:
        self.rate = rate
        # Requests reach the other side a little after we send them, unevenly;
        # a small margin on the window keeps their view of it within the limit.
        self.window = rate.per + margin
        self._clock = clock
        # A list, not a deque: it holds at most `rate.count` stamps, and an empty
        # deque alone takes 600 bytes (there is a budget per channel or workspace).
        self._stamps: list[float] = []
        self._waiters: list[tuple[Priority, int, asyncio.Future[float]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0
        self._on_grant = on_grant

    def _expire(self, now: float) -> None:
        stamps = self._stamps
        gone = 0
        for stamp in stamps:
            if now - stamp < self.window:
                break
            gone += 1
        if gone:
            del stamps[:gone]

    def try_acquire(self) -> float | None:
        """Take a slot now if one is free and nobody is waiting; its stamp, or None."""
        now = self._clock()
        self._expire(now)
        if not self._waiters and len(self._stamps) < self.rate.count:
            self._take(now)
            return now
        return None

    def restamp(self, stamp: float) -> None:
        """Count a slot granted at `stamp` as used now (the request went out later)."""
        now = self._clock()
        with contextlib.suppress(ValueError):
            self._stamps.remove(stamp)  # gone if it already left the window
        self._stamps.append(now)

    def release(self, stamp: float) -> None:
        """Give back a slot granted at `stamp` that was not used."""
        try:
            self._stamps.remove(stamp)
        except ValueError:
            return
        self.granted -= 1
        self._grant()

    def _take(self, now: float) -> None:
        self._stamps.append(now)
        self.granted += 1
        if self._on_grant is not None:
            self._on_grant(now)

    async def acquire(self, priority: Priority = (0, 0.0)) -> float:
        """Wait for a slot; lower `priority` tuples are served first. Returns its stamp."""
        stamp = self.try_acquire()
        if stamp is not None:
            return stamp
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        self._schedule()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: give the slot back.
                self._stamps.pop() if self._stamps else None
                self.granted -= 1
                self._grant()
            raise

    def _schedule(self) -> None:
        if self._timer is not None or not self._waiters:
            return
        now = self._clock()
        self._expire(now)
        if len(self._stamps) < self.rate.count:
            delay = 0.0
        else:
            delay = max(0.0, self._stamps[0] + self.window - now)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._grant()

    def _grant(self) -> None:
        now = self._clock()
        self._expire(now)
        while self._waiters and len(self._stamps) < self.rate.count:
            _, _, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            self._take(now)
            future.set_result(now)
        # Drop cancelled waiters at the head so they do not hold the timer.
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        self._schedule()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    def idle(self) -> bool:
        """Nothing in the window and nobody waiting: a new budget would behave the same."""
        self._expire(self._clock())
        return not self._stamps and not self._waiters and self._timer is None


# Budgets are looked over for quiet ones when their number reaches this, and
# then again when it has doubled since the last look (so the cost stays O(1)
# per new budget).
SWEEP_FROM = 1024


class Budgets:
    """Budgets by bucket key, created on first use and forgotten once idle."""

    def __init__(
        self, *, margin: float = 0.05, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._margin = margin
        self._clock = clock
        self._budgets: dict[str, Budget] = {}
        # Idle budgets a live reply may still hold: found again while it does, so a
        # bucket never has two budgets at once.
        self._resting: weakref.WeakValueDictionary[str, Budget] = weakref.WeakValueDictionary()
        self._sweep_at = SWEEP_FROM

    def get(self, key: str, rate: Rate) -> Budget:
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._resting.pop(key, None)
            if budget is None:
                budget = Budget(rate, margin=self._margin, clock=self._clock)
            self._budgets[key] = budget
            if len(self._budgets) >= self._sweep_at:
                self._sweep()
        return budget

    def _sweep(self) -> None:
        for key, budget in list(self._budgets.items()):
            if budget.idle():
                del self._budgets[key]
                self._resting[key] = budget
        self._sweep_at = max(SWEEP_FROM, 2 * len(self._budgets))

    def __len__(self) -> int:
        return len(self._budgets) + len(self._resting)

    def __iter__(self) -> Iterator[tuple[str, Budget]]:
        return iter(list(self._budgets.items()) + list(self._resting.items()))
