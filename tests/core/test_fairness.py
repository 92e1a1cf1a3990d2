"""The stream slots handed out between workspaces (bridge/fairness.py FairSlots)."""

from __future__ import annotations

import asyncio
import random

import pytest

from bridge.fairness import FairSlots
from tests.core.fakeplatform import wait_for

A = ("slack", "TA")
B = ("slack", "TB")
C = ("discord", "GC")


class Askers:
    """Tasks each waiting for a slot, in the order they asked; `got` the order granted."""

    def __init__(self, slots: FairSlots) -> None:
        self.slots = slots
        self.got: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def ask(self, name: str, space: tuple[str, str]) -> asyncio.Task[None]:
        async def take() -> None:
            await self.slots.acquire(space)
            self.got.append(name)

        waiting = self.slots.waiting
        task = self.tasks[name] = asyncio.create_task(take())
        await wait_for(lambda: self.slots.waiting == waiting + 1)
        return task

    async def granted(self, n: int) -> list[str]:
        await wait_for(lambda: len(self.got) == n)
        return self.got


async def test_a_freed_slot_goes_to_the_workspace_holding_fewest_then_the_longest_waiting() -> None:
    slots = FairSlots(2)
    await slots.acquire(A)
    await slots.acquire(A)
    askers = Askers(slots)
    for name, space in [("a1", A), ("a2", A), ("b1", B), ("a3", A), ("c1", C), ("b2", B)]:
        await askers.ask(name, space)
    slots.release(A)  # A holds 1, B and C none: B's first asked before C's
    assert await askers.granted(1) == ["b1"]
    slots.release(A)  # A, B 1 and C none: A's first has waited longest, C's next
    assert await askers.granted(2) == ["b1", "a1"]
    slots.release(B)  # A 1, B and C none: C's asked before B's second
    assert await askers.granted(3) == ["b1", "a1", "c1"]
    slots.release(C)  # A 1, B and C none: only B waits of those
    assert await askers.granted(4) == ["b1", "a1", "c1", "b2"]
    slots.release(B)
    slots.release(A)
    assert await askers.granted(6) == ["b1", "a1", "c1", "b2", "a2", "a3"]  # in order
    assert slots.locked() and slots.waiting == 0
    slots.release(A)
    slots.release(A)
    assert not slots.locked() and slots._held == {}


async def test_a_workspaces_flood_waits_behind_anothers_single_question() -> None:
    slots = FairSlots(3)
    for _ in range(3):
        await slots.acquire(A)
    askers = Askers(slots)
    for n in range(50):
        await askers.ask(f"a{n}", A)
    await askers.ask("b", B)
    slots.release(A)
    assert await askers.granted(1) == ["b"]


async def test_a_question_cancelled_while_waiting_leaves_its_place_to_the_next() -> None:
    slots = FairSlots(1)
    await slots.acquire(A)
    askers = Askers(slots)
    await askers.ask("b1", B)
    await askers.ask("b2", B)
    await askers.ask("b3", B)
    for name in ("b1", "b2"):
        askers.tasks[name].cancel()
        with pytest.raises(asyncio.CancelledError):
            await askers.tasks[name]
    assert slots.waiting == 1
    slots.release(A)
    assert await askers.granted(1) == ["b3"]
    slots.release(B)
    assert not slots.locked()
    assert slots._held == {} and slots._waiting == {}


async def test_a_question_cancelled_before_its_task_saw_it_is_passed_over() -> None:
    slots = FairSlots(1)
    await slots.acquire(A)
    askers = Askers(slots)
    first = await askers.ask("b1", B)
    await askers.ask("b2", B)
    first.cancel()  # its wait is cancelled; its task has yet to run
    slots.release(A)
    assert await askers.granted(1) == ["b2"]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert slots.waiting == 0 and slots._held == {B: 1}


async def test_a_newcomer_while_a_cancelled_one_is_yet_to_leave_gets_the_free_slot() -> None:
    slots = FairSlots(1)
    await slots.acquire(A)
    askers = Askers(slots)
    first = await askers.ask("b1", B)
    first.cancel()
    slots.release(A)  # passed over: the slot is free, b1 still counted waiting
    later = asyncio.create_task(slots.acquire(C))
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(later, 5)
    assert slots._held == {C: 1} and slots.waiting == 0


async def test_a_question_cancelled_as_it_was_granted_gives_its_slot_on() -> None:
    slots = FairSlots(1)
    await slots.acquire(A)
    askers = Askers(slots)
    first = await askers.ask("b1", B)
    await askers.ask("c1", C)
    slots.release(A)  # granted to b1, whose task has yet to run...
    first.cancel()  # ...and is cut before it does
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await askers.granted(1) == ["c1"]
    assert slots._held == {C: 1}
    slots.release(C)
    assert not slots.locked() and slots._held == {}


async def test_no_slot_is_lost_or_made_whatever_is_cancelled_when() -> None:
    rng = random.Random(7)
    slots = FairSlots(4)
    spaces = [("slack", f"T{n}") for n in range(5)]
    holding = 0
    most = 0

    async def ask(space: tuple[str, str]) -> None:
        nonlocal holding, most
        await slots.acquire(space)
        holding += 1
        most = max(most, holding)
        try:
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
        finally:
            holding -= 1
            slots.release(space)

    tasks: list[asyncio.Task[None]] = []
    for _ in range(2_000):
        tasks.append(asyncio.create_task(ask(rng.choice(spaces))))
        if rng.random() < 0.4:
            rng.choice(tasks).cancel()
        if rng.random() < 0.5:
            await asyncio.sleep(0)
        assert len(slots._heap) <= 2 * len(slots._waiting) + 17
    await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 4
    assert not slots.locked() and slots._free == 4
    assert slots._held == {} and slots._waiting == {} and slots.waiting == 0
