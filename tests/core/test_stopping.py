"""The stop's clock: a second signal shortens the waits on what does not answer,
not the time of what does."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.stopping import HURRIED_SECONDS, StopClock, Unanswered

EARLY = 0.01  # how early the event loop may wake for a timer


class Signals:
    """The relay's side of a second stop signal."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def hurry(self) -> None:
        self.event.set()

    @property
    def hurried(self) -> bool:
        return self.event.is_set()

    async def hurry_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.event.wait()
        except TimeoutError:
            return False
        return True


async def answer_after(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answered"


async def never() -> None:
    await asyncio.Event().wait()


async def test_after_a_second_signal_each_call_has_its_own_second() -> None:
    signals = Signals()
    clock = StopClock(signals, 30)
    signals.hurry()
    # Two calls that take most of a second each: together past one, both answered.
    assert await clock.within(answer_after(0.6 * HURRIED_SECONDS)) == "answered"
    assert await clock.within(answer_after(0.6 * HURRIED_SECONDS)) == "answered"
    assert not clock.stalled


async def test_after_a_second_signal_one_unanswered_call_ends_the_waits() -> None:
    signals = Signals()
    clock = StopClock(signals, 30)
    signals.hurry()
    started = time.monotonic()
    with pytest.raises(Unanswered):
        await clock.within(never())
    assert HURRIED_SECONDS - EARLY <= time.monotonic() - started < HURRIED_SECONDS + 1.0
    assert clock.stalled
    started = time.monotonic()
    with pytest.raises(Unanswered):  # the store does not answer: not waited on again
        await clock.within(never())
    assert time.monotonic() - started < 0.5


async def test_a_deadline_spent_before_a_call_does_not_blame_what_it_waits_on() -> None:
    clock = StopClock(Signals(), 0.2)
    with pytest.raises(TimeoutError) as cut:
        await clock.within(never())
    assert not isinstance(cut.value, Unanswered)
    assert not clock.stalled


async def test_a_second_signal_during_a_call_gives_it_a_second_from_the_signal() -> None:
    signals = Signals()
    clock = StopClock(signals, 30)
    waiting = asyncio.Event()

    async def unanswered() -> None:
        waiting.set()
        await never()

    call = asyncio.ensure_future(clock.within(unanswered()))
    await waiting.wait()
    signals.hurry()
    hurried = time.monotonic()
    with pytest.raises(Unanswered):
        await call
    assert HURRIED_SECONDS - EARLY <= time.monotonic() - hurried < HURRIED_SECONDS + 1.0
