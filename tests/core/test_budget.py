from __future__ import annotations

import asyncio
import gc

from bridge.budget import MAX_FLIGHT, SWEEP_FROM, Budget, Budgets
from bridge.interfaces import Rate
from tests.core.recording import max_in_window, use_slot


async def test_never_more_than_count_in_any_window() -> None:
    # Grant times are what matter: a loaded loop may resume a waiter late.
    stamps: list[float] = []
    budget = Budget(Rate(3, 0.2), margin=0.0, on_grant=stamps.append)

    async def worker() -> None:
        for _ in range(5):
            budget.restamp(await budget.acquire())  # a request made at once

    await asyncio.gather(*(worker() for _ in range(4)))
    assert len(stamps) == 20
    assert max_in_window(stamps, 0.2) <= 3
    assert budget.granted == 20


async def test_first_visible_content_is_served_first() -> None:
    budget = Budget(Rate(1, 0.1), margin=0.0)
    budget.restamp(await budget.acquire())  # the window is now full
    order: list[str] = []

    async def take(name: str, priority: tuple[int, float]) -> None:
        budget.restamp(await budget.acquire(priority))
        order.append(name)

    tasks = [
        asyncio.create_task(take("shown-old", (1, 1.0))),
        asyncio.create_task(take("shown-older", (1, 0.5))),
        asyncio.create_task(take("nothing-shown", (0, 2.0))),
    ]
    await asyncio.gather(*tasks)
    assert order == ["nothing-shown", "shown-older", "shown-old"]


async def test_cancelled_waiter_does_not_hold_a_slot() -> None:
    budget = Budget(Rate(1, 0.1), margin=0.0)
    budget.restamp(await budget.acquire())
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.wait_for(budget.acquire(), 1.0)
    assert budget.granted == 2


async def test_a_slot_used_later_counts_from_when_it_was_used() -> None:
    now = [100.0]
    budget = Budget(Rate(2, 1.0), margin=0.0, clock=lambda: now[0])
    first = await budget.acquire()
    budget.restamp(await budget.acquire())  # made at once, at 100.0
    now[0] = 100.8  # the first request was done only now
    budget.restamp(first)
    now[0] = 101.05  # one second after the second, not after the first was done
    assert budget.try_acquire() is not None
    assert budget.try_acquire() is None  # the first, done at 100.8, is still in the window


def test_a_slot_counts_while_its_request_is_on_its_way() -> None:
    now = [100.0]
    budget = Budget(Rate(1, 1.0), margin=0.0, clock=lambda: now[0])
    stamp = budget.try_acquire()
    assert stamp is not None
    now[0] = 105.0  # a busy process: the request is still on its way
    assert budget.try_acquire() is None  # it may reach the platform any moment
    budget.restamp(stamp)
    now[0] = 105.5
    assert budget.try_acquire() is None  # done at 105.0: it counts until 106.0
    now[0] = 106.0
    lost = budget.try_acquire()
    assert lost is not None
    now[0] = 106.0 + MAX_FLIGHT  # never given back: taken as lost, the slot is free
    assert budget.try_acquire() is not None


def test_a_window_is_a_little_longer_than_the_platforms() -> None:
    # Requests reach the platform a little after they are sent, and unevenly: one
    # sent just a window after the last may reach it less than a window after it.
    now = [100.0]
    budget = Budget(Rate(1, 1.0), clock=lambda: now[0])  # the default margin
    use_slot(budget)
    now[0] = 101.0
    assert budget.try_acquire() is None
    now[0] = 101.1
    assert budget.try_acquire() is not None


async def test_a_slot_given_back_is_granted_to_the_next_waiter() -> None:
    budget = Budget(Rate(1, 60.0), margin=0.0)
    stamp = await budget.acquire()
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.release(stamp)  # not used after all
    await asyncio.wait_for(waiter, 1.0)
    assert budget.granted == 1


async def test_a_slot_granted_to_a_waiter_cancelled_meanwhile_is_given_back() -> None:
    # Typing waits for a slot, and is cancelled when the first words come: a slot
    # granted to it in that same turn of the loop was held for MAX_FLIGHT.
    budget = Budget(Rate(1, 60.0), margin=0.0)
    stamp = await budget.acquire()
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    budget.release(stamp)  # the slot goes to the waiter...
    waiter.cancel()  # ...cancelled before it runs
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
    assert budget.in_flight == 0
    assert budget.try_acquire() is not None


async def test_slots_kept_back_fill_first_and_go_to_those_that_may_take_them() -> None:
    budget = Budget(Rate(3, 0.2), margin=0.0)
    for _ in range(3):
        use_slot(budget)  # live replies spent the budget
    budget.keep(2)  # a stop began: two of them may need their marks
    # As the window moves on, the slots free are kept back first: one is left to edit.
    budget.restamp(await asyncio.wait_for(budget.acquire(), 1.0))
    assert budget.try_acquire() is None
    edit = asyncio.create_task(budget.acquire((0, 0.0)))
    await asyncio.sleep(0)  # waiting, and first by its priority
    # The marks take the slots kept back, ahead of it.
    marks = [await asyncio.wait_for(budget.acquire((1, 0.0), kept=True), 0.1) for _ in range(2)]
    assert not edit.done()
    for stamp in marks:
        budget.restamp(stamp)
    budget.keep(-2)
    await asyncio.wait_for(edit, 1.0)  # a slot of the next window, as before the stop
    assert budget.granted == 7


async def test_slots_no_longer_kept_back_go_to_the_waiters_at_once() -> None:
    budget = Budget(Rate(1, 60.0), margin=0.0)
    budget.keep(1)  # nothing used: all the budget is kept back
    edit = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    assert not edit.done()
    budget.keep(-1)  # the reply it was kept for ended
    await asyncio.wait_for(edit, 0.1)


async def test_a_waiter_promoted_goes_first_and_may_take_the_slots_kept_back() -> None:
    budget = Budget(Rate(2, 60.0), margin=0.0)
    use_slot(budget)
    budget.keep(1)  # the one slot left is kept back
    older = asyncio.create_task(budget.acquire((2, 0.0), owner="older"))
    ending = asyncio.create_task(budget.acquire((2, 1.0), owner="ending"))
    await asyncio.sleep(0)
    assert not (older.done() or ending.done())
    budget.promote("ending")  # its reply ends: its end goes first, as a mark would
    await asyncio.wait_for(ending, 0.1)
    assert not older.done()
    older.cancel()
    await asyncio.gather(older, return_exceptions=True)


def test_quiet_budgets_are_forgotten_and_held_ones_found_again() -> None:
    now = [0.0]
    budgets = Budgets(margin=0.0, clock=lambda: now[0])
    rate = Rate(1, 1.0)
    held = budgets.get("held", rate)  # as a live reply holds its budgets
    use_slot(held)
    for i in range(SWEEP_FROM - 3):
        use_slot(budgets.get(f"quiet-{i}", rate))
    now[0] = 5.0  # every slot taken so far has left its window
    busy = budgets.get("busy", rate)
    use_slot(busy)
    fresh = budgets.get("fresh", rate)  # the SWEEP_FROM-th budget: quiet ones go
    gc.collect()

    assert len(budgets) == 3  # busy (a slot in its window), held and fresh (referenced)
    # A bucket never has two budgets at once: the held ones are found again...
    assert budgets.get("held", rate) is held
    assert budgets.get("fresh", rate) is fresh
    # ...and the busy one still counts its slot.
    assert budgets.get("busy", rate) is busy
    assert busy.try_acquire() is None
    # A forgotten bucket starts again with a full window.
    assert budgets.get("quiet-0", rate).try_acquire() is not None


async def test_a_waiter_sparing_the_promised_slots_takes_only_those_beyond() -> None:
    # A refusal posted in a channel leaves the slots promised to the answers taken there.
    budget = Budget(Rate(2, 60.0), margin=0.0)
    budget.promise(1)
    budget.restamp(await budget.acquire((3, 0.0), spares=True))  # one beyond the promise
    refusal = asyncio.create_task(budget.acquire((3, 1.0), spares=True))
    await asyncio.sleep(0)
    assert not refusal.done()
    answer = await asyncio.wait_for(budget.acquire((0, 2.0)), 10)  # the promised slot
    assert not refusal.done()
    budget.release(answer)  # never sent: the slot is free again, and still promised
    await asyncio.sleep(0)
    assert not refusal.done()
    budget.promise(-1)  # the answer ended without it
    await asyncio.wait_for(refusal, 10)
    assert not budget.idle()


async def test_an_answer_does_not_wait_for_the_timer_of_a_refusal_before_it() -> None:
    # The refusal waits for a slot beyond the promised one (its timer: a minute away);
    # the answer asking after it takes the promised slot at once.
    budget = Budget(Rate(2, 60.0), margin=0.0)
    budget.restamp(await budget.acquire())
    budget.promise(1)
    refusal = asyncio.create_task(budget.acquire((3, 0.0), spares=True))
    await asyncio.sleep(0)
    await asyncio.wait_for(budget.acquire((0, 1.0)), 10)
    budget.promise(-1)
    assert not refusal.done()
    refusal.cancel()
    await asyncio.gather(refusal, return_exceptions=True)
