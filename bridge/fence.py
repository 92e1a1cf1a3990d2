"""A replica cut off from a shared store stops answering before others take over.

The other replicas take a replica's conversations over once its heartbeat is
three intervals old (its leases expire, its replies look orphaned). A replica
that lost only its own connection to the store does not stop meanwhile: it
would answer on, beside the replica that took its conversation over, and its
late edits would undo the "interrupted" mark the other one put on its reply.

So it fences itself: once its last heartbeat that succeeded is FENCE_AFTER
intervals old, its live answers stop, as at a stop, and it takes no
conversation's turn (a question taken meanwhile waits) until a heartbeat
succeeds again.

Its monotonic clock does not count a pause of its host (a suspend, a VM paused
or migrated): that the heartbeat catches, by the database's clock and by what
the store says the replica still holds (`Bridge._beat_once`). Until then its
answers, resumed with it, would edit their replies, undoing the mark of the
replica that took them over. So each edit first looks at its clocks (`checked`):
where one of them says the last good heartbeat is FENCE_AFTER intervals old
(the monotonic one after a SIGSTOP; the boot and wall clocks, which count a
suspend; a paused VM's clocks may count nothing, and only the heartbeat tells),
the edit waits for a heartbeat begun after it, which stops the answers taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bridge.flag import Flag

log = logging.getLogger("chat_bridge.app")

FENCE_AFTER = 2.5  # heartbeat intervals without one that succeeded; others take over at 3
# Counts a suspend of the host, where the monotonic clock does not (Linux).
_BOOT_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def _since_boot() -> float:
    return time.clock_gettime(_BOOT_CLOCK)


class Fence:
    """Whether this replica may answer, by how old its last good heartbeat is."""

    def __init__(self, interval: float, takeover_after: float) -> None:
        self.after = FENCE_AFTER * interval
        self.takeover_after = takeover_after  # (Relay.stale_after)
        self._beaten_at = time.monotonic()  # when the last heartbeat that succeeded began
        # The same by the boot and wall clocks, which count a pause of the host.
        self._beaten_boot, self._beaten_wall = _since_boot(), time.time()
        self._watched = False  # the heartbeat runs: `checked` looks at the clocks
        self._beat = Flag()  # set as a heartbeat succeeds (then replaced)
        self._wanted = Flag()  # an edit waits for a heartbeat (`checked`)
        self._open = Flag()
        self._open.set()
        self.held = 0  # questions waiting for the fence to go down

    @property
    def up(self) -> bool:
        """Fenced: no answer runs, no turn is taken."""
        return not self._open.is_set()

    @property
    def beaten_at(self) -> float:
        """When (monotonic) the last heartbeat that succeeded began."""
        return self._beaten_at

    @property
    def takeover_at(self) -> float:
        """When (monotonic) others may take this replica's conversations over."""
        return self._beaten_at + self.takeover_after

    def stamp(self) -> tuple[float, float, float]:
        """Now by the monotonic, boot and wall clocks: when a heartbeat begins."""
        return time.monotonic(), _since_boot(), time.time()

    def beaten(self, began: tuple[float, float, float]) -> None:
        """A heartbeat begun at `began` (`stamp`) succeeded."""
        if began[0] >= self._beaten_at:
            self._beaten_at, self._beaten_boot, self._beaten_wall = began
        beat, self._beat = self._beat, Flag()
        beat.set()
        if self.up:
            self._open.set()
            log.warning(
                "the store answers this replica's heartbeat again: it answers again "
                "(%d questions held meanwhile go on in their turn)",
                self.held,
            )

    async def checked(self) -> None:
        """Return at once unless a clock says the last good heartbeat is as old as the
        fence lets it be: this replica may have been paused (see the module's
        docstring). Then once a heartbeat begun after this call succeeded (it asks for
        one now): one that finds its answers taken over stops them, cancelling this."""
        if not self._watched:
            return
        asked = time.monotonic()
        age = max(
            asked - self._beaten_at,
            _since_boot() - self._beaten_boot,
            time.time() - self._beaten_wall,
        )
        if age < self.after:
            return
        self._wanted.set()
        while self._beaten_at < asked:
            await self._beat.wait()

    async def due(self, delay: float) -> None:
        """Wait `delay` seconds for the next heartbeat, or less where an edit asks for
        one (`checked`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wanted.wait()
        self._wanted.clear()

    async def passable(self) -> None:
        """Return once the fence is down (at once if it is)."""
        self.held += 1
        try:
            while not self._open.is_set():
                await self._open.wait()
        finally:
            self.held -= 1

    async def watch(self, cut: Callable[[], object]) -> None:
        """Raise the fence when due, then `cut` the live answers; run beside the
        heartbeat (a heartbeat may itself hang on a store that does not answer),
        from when the heartbeat starts (the platforms' start may have taken long)."""
        self.beaten(self.stamp())
        self._watched = True
        while True:
            left = self._beaten_at + self.after - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
                continue
            self._open.clear()
            log.error(
                "no heartbeat reached the store for %.0f s: this replica stops its live "
                "answers and answers nothing until the store answers again, before the "
                "other replicas take its conversations over",
                time.monotonic() - self._beaten_at,
            )
            cut()
            while not self._open.is_set():
                await self._open.wait()
