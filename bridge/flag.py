"""`Flag`: asyncio.Event's set/clear/wait, slotted, for objects that live by the thousand."""

from __future__ import annotations

import asyncio


class Flag:
    """asyncio.Event's set/clear/wait, in a fraction of its memory.

    An asyncio.Event keeps a deque for its waiters (over 600 bytes, even
    empty); a live reply has five flags, each with one waiter at a time, and
    a thousand replies may be live at once. Waiters woken by `set` return
    even if the flag is cleared before they run, as with asyncio.Event.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)
