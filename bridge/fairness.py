"""Fair shares of the bridge: each user's messages within their rate limit, each
workspace's share of the places (streams and queue) while others ask too, and the
stream slots handed out between workspaces."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque

from bridge.budget import drop_older

# While another workspace (a Slack workspace, a Discord server; Discord's DMs count
# as one) has asked within SHARED_WINDOW seconds, no workspace may hold the last
# quarter of the bridge's places (streams and queue; one at least, of two or more):
# a flood in one leaves room for the others.
SHARED_WINDOW = 600.0


class UserRateLimiter:
    """At most N messages per counter per window (sliding).

    A counter is a user's messages under one limit (see `Intake._rate_key`); each
    counter is always checked with the same limit.
    """

    SWEEP_FROM = 10_000

    def __init__(self) -> None:
        # Per counter: its window, and its stamps (a list, not a deque: a few
        # stamps per user, and an empty deque takes 600 bytes).
        self._seen: dict[str, tuple[float, list[float]]] = {}
        self._sweep_at = self.SWEEP_FROM

    def check(self, key: str, messages: int, per: float, now: float) -> float | None:
        """None if allowed (and counted), else the seconds until it would be."""
        if len(self._seen) >= self._sweep_at:
            # Forget counters quiet for their own window; the next sweep waits until
            # the counters kept have doubled, so a sweep costs O(1) a message.
            self._seen = {
                k: (window, s)
                for k, (window, s) in self._seen.items()
                if s and now - s[-1] < window
            }
            self._sweep_at = max(self.SWEEP_FROM, 2 * len(self._seen))
        counter = self._seen.get(key)
        if counter is None:
            counter = self._seen[key] = (per, [])
        stamps = counter[1]
        drop_older(stamps, now, per)
        if len(stamps) >= messages:
            return stamps[0] + per - now
        stamps.append(now)
        return None


class Shares:
    """Which workspaces have asked lately, and so how many places one may hold."""

    def __init__(self, window: float = SHARED_WINDOW) -> None:
        self._window = window
        self._asked: dict[tuple[str, str], float] = {}  # by last time asked, oldest first

    def asked(self, space: tuple[str, str], now: float) -> None:
        self._asked.pop(space, None)
        self._asked[space] = now
        while (oldest := next(iter(self._asked.items())))[1] < now - self._window:
            del self._asked[oldest[0]]

    def room(self, space: tuple[str, str], places: int) -> int:
        """The places `space` may hold: all of them while no other workspace asked
        within the window, else all but the reserve."""
        if len(self._asked) > 1 or (self._asked and space not in self._asked):
            return places - max(1, places // 4) if places > 1 else places
        return places


class _Waiter:
    __slots__ = ("future", "seq", "space")

    def __init__(self, future: asyncio.Future[None], seq: int, space: tuple[str, str]) -> None:
        self.future = future
        self.seq = seq
        self.space = space


class FairSlots:
    """The stream slots, handed out fairly between workspaces.

    A slot given back goes to the question waiting whose workspace holds the fewest
    slots then; between workspaces holding as many, to the one waiting longest; in a
    workspace, first come first served. So a flood of questions in one workspace
    holds up another's next question until one slot frees, not behind its backlog.

    Like a semaphore, with the workspace named on `acquire` and `release`. A slot is
    handed straight to its waiter, never left free while one waits. O(log n) a call.
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._held: dict[tuple[str, str], int] = {}
        # Each workspace's waiters in order. Those cancelled are dropped as they come
        # first (one cancelled may stand first until its task sees it: `_forget`).
        self._waiting: dict[tuple[str, str], deque[_Waiter]] = {}
        self._live = 0  # waiters not cancelled
        # (slots held, first waiter's seq, workspace) of each workspace waiting; an
        # entry whose workspace has changed since is stale and skipped.
        self._heap: list[tuple[int, int, tuple[str, str]]] = []
        self._seq = itertools.count()

    def locked(self) -> bool:
        """Whether an `acquire` now would wait."""
        return self._free == 0 or self._live > 0

    @property
    def waiting(self) -> int:
        """Acquirers waiting for a slot."""
        return self._live

    def held(self, space: tuple[str, str]) -> int:
        """The slots `space` holds."""
        return self._held.get(space, 0)

    async def acquire(self, space: tuple[str, str]) -> None:
        """Take a slot for `space`, waiting for its turn if none is free."""
        if not self.locked():
            self._free -= 1
            self._held[space] = self._held.get(space, 0) + 1
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), next(self._seq), space)
        queue = self._waiting.get(space)
        if queue is None:
            queue = self._waiting[space] = deque()
        queue.append(waiter)
        self._live += 1
        if len(queue) == 1:
            self._push(space)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(space)  # granted as it was cancelled: given on
            else:
                self._forget(waiter)
            raise

    def release(self, space: tuple[str, str]) -> None:
        """Give back a slot `space` holds."""
        if (held := self._held[space] - 1) > 0:
            self._held[space] = held
        else:
            del self._held[space]
        self._free += 1
        if space in self._waiting:
            self._push(space)  # it holds one fewer
        self._grant()

    def _grant(self) -> None:
        while self._free and self._heap:
            held, seq, space = heapq.heappop(self._heap)
            queue = self._waiting.get(space)
            if queue is None or queue[0].seq != seq or self._held.get(space, 0) != held:
                continue  # stale
            waiter = queue.popleft()
            self._drop_cancelled(space, queue)
            # One cancelled whose task has yet to see it (`_forget`) is passed over.
            granted = not waiter.future.cancelled()
            if granted:
                self._live -= 1
                self._free -= 1
                self._held[space] = held + 1
            if space in self._waiting:
                self._push(space)  # a new first waiter
            if granted:
                waiter.future.set_result(None)

    def _forget(self, waiter: _Waiter) -> None:
        """A waiter cancelled before its turn came (it may be gone from its queue)."""
        self._live -= 1
        queue = self._waiting.get(waiter.space)
        if queue is not None and queue[0] is waiter:
            queue.popleft()
            self._drop_cancelled(waiter.space, queue)
            if waiter.space in self._waiting:
                self._push(waiter.space)  # a new first waiter
        # Counted waiting until now, it may have kept a slot free from a newcomer.
        self._grant()

    def _drop_cancelled(self, space: tuple[str, str], queue: deque[_Waiter]) -> None:
        while queue and queue[0].future.cancelled():
            queue.popleft()
        if not queue:
            del self._waiting[space]

    def _push(self, space: tuple[str, str]) -> None:
        if len(self._heap) > 2 * len(self._waiting) + 16:
            # Mostly stale: rebuilt from the workspaces waiting (O(1) a push, amortized).
            self._heap = [(self._held.get(s, 0), q[0].seq, s) for s, q in self._waiting.items()]
            heapq.heapify(self._heap)
            return
        heapq.heappush(self._heap, (self._held.get(space, 0), self._waiting[space][0].seq, space))
