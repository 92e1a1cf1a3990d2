"""The stop's clock: a second signal shortens the waits on what does not answer,
not the time of what does."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.stopping import HURRIED_SECONDS, StopClock, Unanswered

EARLY = 0.01  # how early the event loop may wake for a timer
# A stop deadline no test waits out, so a call that ends was ended by the second
# signal; and a deadline for a test that would hang on it (HANG < LONG).
LONG = 3600.0
HANG = 20.0


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
    clock = StopClock(signals, LONG)  # only the second signal can end the call
    signals.hurry()
    started = time.monotonic()
    async with asyncio.timeout(HANG):  # a deadline for a hang, not a speed target
        with pytest.raises(Unanswered):
            await clock.within(never())
    assert time.monotonic() - started >= HURRIED_SECONDS - EARLY  # it had its own second
    assert clock.stalled and clock.left() <= 0  # the stop waits no more
    began = asyncio.Event()

    async def store_call() -> None:
        began.set()
        await never()

    with pytest.raises(Unanswered):  # the store does not answer: not waited on again
        await clock.within(store_call())
    assert not began.is_set()  # cut before it began


async def test_a_deadline_spent_before_a_call_does_not_blame_what_it_waits_on() -> None:
    clock = StopClock(Signals(), 0.2)
    with pytest.raises(TimeoutError) as cut:
        await clock.within(never())
    assert not isinstance(cut.value, Unanswered)
    assert not clock.stalled


async def test_a_second_signal_during_a_call_gives_it_a_second_from_the_signal() -> None:
    signals = Signals()
    clock = StopClock(signals, LONG)  # only the second signal can end the call
    waiting = asyncio.Event()

    async def unanswered() -> None:
        waiting.set()
        await never()

    call = asyncio.ensure_future(clock.within(unanswered()))
    await waiting.wait()
    signals.hurry()
    hurried = time.monotonic()
    async with asyncio.timeout(HANG):  # a deadline for a hang, not a speed target
        with pytest.raises(Unanswered):
            await call
    assert time.monotonic() - hurried >= HURRIED_SECONDS - EARLY  # a second from the signal
