"""Fair shares of the bridge: each user's messages within their rate limit, and
each workspace's share of the places (streams and queue) while others ask too."""

from __future__ import annotations

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
                k: (window, s) for k, (window, s) in self._seen.items()
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
