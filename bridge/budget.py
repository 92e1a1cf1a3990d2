"""Rate budgets shared by every live reply in the same bucket.

A `Budget` allows at most `rate.count` operations in any window of
`rate.per` seconds (a sliding window, so it never trips a fixed-window or a
token-bucket limiter on the other side). Waiters are served by priority, not
arrival: replies that have shown nothing yet go first, then typing, then the
reply whose text has waited longest (the classes are in `bridge.reply_budget`,
which also caps typing at half of a bot-wide budget).

A budget also holds slots for the answers taken in its place that have yet to show
anything (`promise`): a refusal posted there (a waiter that `spares` them) takes only
the slots beyond, so an answer's first words never wait behind refusals told meanwhile.

During a stop a budget keeps slots back (`keep`), one for each live reply drawing
on it: the mark that says a reply was cut ("interrupted") must find one when the
grace ends, however busy the replies kept the budget until then.

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


def drop_older(stamps: list[float], now: float, span: float) -> None:
    """Drop the stamps (oldest first) that are `span` seconds or more before `now`."""
    gone = 0
    for stamp in stamps:
        if now - stamp < span:
            break
        gone += 1
    if gone:
        del stamps[:gone]


# A slot whose request has not been reported done counts this long at most: a
# request still on its way after this is taken as lost, so a slot nobody gives
# back cannot shrink a budget for good.
MAX_FLIGHT = 60.0


class Budget:
    """A sliding-window budget with prioritized waiters.

    Every slot granted (`try_acquire`, `acquire`) is given back with
    `restamp(stamp)` once its request is done, which counts it for a window
    from then, or with `release(stamp)` if it was never sent. Until then it
    counts however long it takes: a request held up in a busy process still
    reaches the other side, and must find its window there within the limit.
    """

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
        # Lists, not deques: each holds at most `rate.count` stamps, and an empty
        # deque alone takes 600 bytes (there is a budget per channel or workspace).
        self._stamps: list[float] = []  # when each done request was done, oldest first
        self._flying: list[float] = []  # when each slot still on its way was granted
        # (False for a waiter that may take the slots kept back: it goes first, then
        # by priority, then by arrival; the waiter's future; who waits, for `promote`;
        # whether it spares the slots promised, see `promise`).
        self._waiters: list[tuple[bool, Priority, int, asyncio.Future[float], object, bool]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0
        self._on_grant = on_grant
        # Slots kept back (see `keep`): only waiters that may take them get them.
        self.kept = 0
        # Slots promised (see `promise`): waiters that spare them do not get them.
        self.promised = 0

    def _expire(self, now: float) -> None:
        drop_older(self._stamps, now, self.window)
        drop_older(self._flying, now, MAX_FLIGHT)

    def _free(self, kept: int) -> bool:
        """Whether a slot is free beyond `kept` more."""
        return len(self._stamps) + len(self._flying) + kept < self.rate.count

    def _held(self, not_kept: bool, spares: bool) -> int:
        """The slots a waiter may not take: those kept back unless it may take them,
        and those promised if it spares them."""
        return (self.kept if not_kept else 0) + (self.promised if spares else 0)

    def keep(self, change: int) -> None:
        """Keep `change` more slots back (fewer, if negative) from the waiters that may
        not take them. Slots are kept back as they free: a spent budget fills its
        reserve first as its window moves on."""
        self.kept += change
        if change < 0:
            self._grant()

    def promise(self, change: int) -> None:
        """Promise `change` more slots (fewer, if negative) to answers yet to show
        anything here: the waiters that spare them (refusals) take only the slots
        beyond. An answer gives its promise back once its first request is granted, or
        it ends."""
        self.promised += change
        if change < 0:
            self._grant()

    def try_acquire(self, *, spares: bool = False) -> float | None:
        """Take a slot now if one is free beyond those kept back (and those promised,
        if it `spares` them) and nobody is waiting; its stamp, or None."""
        now = self._clock()
        self._expire(now)
        if not self._waiters and self._free(self._held(True, spares)):
            self._take(now)
            return now
        return None

    def restamp(self, stamp: float) -> None:
        """The request of the slot granted at `stamp` is done: it counts for a window from now."""
        now = self._clock()
        with contextlib.suppress(ValueError):
            self._flying.remove(stamp)  # gone if it was taken as lost
        self._stamps.append(now)
        if self._timer is not None:  # it may wait for a lost slot: this stamp frees sooner
            self._timer.cancel()
            self._timer = None
        self._schedule()

    def release(self, stamp: float) -> None:
        """Give back the slot granted at `stamp`: its request was never sent."""
        try:
            self._flying.remove(stamp)
        except ValueError:
            return
        self.granted -= 1
        self._grant()

    def _take(self, now: float) -> None:
        self._flying.append(now)
        self.granted += 1
        if self._on_grant is not None:
            self._on_grant(now)

    async def acquire(
        self,
        priority: Priority = (0, 0.0),
        *,
        kept: bool = False,
        owner: object = None,
        spares: bool = False,
    ) -> float:
        """Wait for a slot; lower `priority` tuples are served first. Returns its stamp.

        With `kept`, the slots kept back may be taken too, before any other waiter.
        `owner` names who waits, for `promote`. With `spares`, the slots promised
        (`promise`) are not taken: give such waiters the lowest priority, as a waiter
        first in line that may not take a free slot holds up those behind it.
        """
        stamp = self.try_acquire(spares=spares)
        if stamp is not None:
            return stamp
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        before = self._waiters[0] if self._waiters else None
        waiter = (not kept, priority, next(self._seq), future, owner, spares)
        heapq.heappush(self._waiters, waiter)
        if kept:  # ahead of the others, it may go now: no timer set for them holds it
            self._grant()
        else:
            if (
                before is not None
                and before[5]
                and self._waiters[0] is waiter
                and self._timer is not None
            ):
                # The timer is for a waiter sparing the promised slots: one free now
                # is not for it, but may be for this one.
                self._timer.cancel()
                self._timer = None
            self._schedule()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: give the slot back.
                self.release(future.result())
            raise

    def promote(self, owner: object) -> None:
        """The waiters of `owner` may take the slots kept back now, before any other."""
        found = False
        for i, (not_kept, priority, seq, future, who, spares) in enumerate(self._waiters):
            if who is owner and not_kept:
                self._waiters[i] = (False, priority, seq, future, who, spares)
                found = True
        if found:
            heapq.heapify(self._waiters)
            self._grant()

    def _schedule(self) -> None:
        if self._timer is not None or not self._waiters:
            return
        now = self._clock()
        self._expire(now)
        head = self._waiters[0]
        if self._free(self._held(head[0], head[5])):
            delay = 0.0
        else:
            # A slot frees when the oldest stamp leaves its window or the oldest slot
            # on its way is taken as lost (restamp and release wake waiters too).
            frees = [t + self.window for t in self._stamps[:1]]
            frees += [t + MAX_FLIGHT for t in self._flying[:1]]
            if not frees:  # only slots kept back or promised are free: see `keep`, `promise`
                return
            delay = max(0.0, min(frees) - now)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._grant()

    def _grant(self) -> None:
        now = self._clock()
        self._expire(now)
        while self._waiters:
            not_kept, _, _, future, _, spares = self._waiters[0]
            if future.done():  # cancelled: dropped, so it does not hold the timer
                heapq.heappop(self._waiters)
                continue
            if not self._free(self._held(not_kept, spares)):
                break
            heapq.heappop(self._waiters)
            self._take(now)
            future.set_result(now)
        self._schedule()

    @property
    def in_flight(self) -> int:
        """Slots granted whose request has not been reported done or given back."""
        return len(self._flying)

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, _, f, _, _ in self._waiters if not f.done())

    def idle(self) -> bool:
        """Nothing in the window and nobody waiting: a new budget would behave the same."""
        self._expire(self._clock())
        return (
            not (self._stamps or self._flying or self._waiters or self.kept or self.promised)
            and self._timer is None
        )


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
