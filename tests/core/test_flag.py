"""Flag: an asyncio.Event whose every waiter wakes, already woken or not."""

from __future__ import annotations

import asyncio

from bridge.flag import Flag
from tests.core.render_support import _settle


async def test_flag_wakes_every_waiter_as_asyncio_event_does() -> None:
    flag = Flag()
    flag.set()
    await asyncio.wait_for(flag.wait(), 1.0)  # already set: returns at once
    flag.clear()
    assert not flag.is_set()

    first = asyncio.create_task(flag.wait())
    second = asyncio.create_task(flag.wait())
    gone = asyncio.create_task(flag.wait())
    await _settle()
    assert not (first.done() or second.done())
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    flag.set()
    flag.clear()  # as with asyncio.Event, a waiter already woken still returns
    await asyncio.wait_for(asyncio.gather(first, second), 1.0)
    assert gone.cancelled()

    late = asyncio.create_task(flag.wait())
    await _settle()
    assert not late.done()  # cleared: a new waiter waits again
    flag.set()
    await asyncio.wait_for(late, 1.0)
