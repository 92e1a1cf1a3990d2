"""The budget native streams' stops draw on: chat.stopStream is limited per workspace as
chat.startStream is (Tier 2), and apart from it. Stops of streams started in different
minutes may come together (long and short answers ending at once): within the starts'
budget alone, they drew 429s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from bridge.budget import Budgets
from bridge.interfaces import Rate

T = TypeVar("T")


class StreamStops:
    """A budget of `rate` (`stream_rate`) per workspace for chat.stopStream."""

    def __init__(self, rate: Rate) -> None:
        self._rate = rate
        self._budgets = Budgets()

    async def within(self, workspace: str, stop: Callable[[], Awaitable[T]]) -> T:
        """Make `stop()` (a chat.stopStream) once `workspace`'s budget has room for it."""
        budget = self._budgets.get(f"slack:stop:{workspace}", self._rate)
        stamp = await budget.acquire()
        try:
            return await stop()
        finally:
            budget.restamp(stamp)
