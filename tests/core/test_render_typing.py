"""Typing shown while a reply waits for its words, and the bot's budget it leaves them."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bridge.budget import Budgets
from bridge.interfaces import Rate
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget, use_slot


async def test_typing_is_skipped_when_the_answer_comes_before_a_free_request() -> None:
    budgets = Budgets()
    target = RecordingTarget()
    target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(1, 0.3))
    use_slot(budgets.get("bot", Rate(1, 0.3)))  # the bot is busy
    reply = LiveReply(target, budgets, edit_interval=0.01)
    await reply.start()
    reply.feed("Here it is.")
    await reply.finish(None)
    assert [op.kind for op in target.ops] == ["post", "end"]  # no "begin": text came first
    assert target.visible() == ["Here it is."]


async def test_typing_is_shown_while_the_bot_has_requests_to_spare() -> None:
    target = RecordingTarget()
    target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(5, 1.0))
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await wait_for(lambda: bool(target.ops))
    reply.feed("Here it is.")
    await reply.finish(None)
    assert [op.kind for op in target.ops][:2] == ["begin", "post"]


async def test_first_words_go_before_typing_that_asked_earlier() -> None:
    budgets = Budgets()
    rate = Rate(1, 0.3)
    early, late = RecordingTarget(channel="C1"), RecordingTarget(channel="C2")
    for target in (early, late):
        target.limits = replace(target.limits, global_bucket="bot", global_rate=rate)
    use_slot(budgets.get("bot", rate))  # the bot is busy
    waiting = LiveReply(early, budgets, edit_interval=0.01)
    await waiting.start()  # its typing waits for the budget...
    await wait_for(lambda: budgets.get("bot", rate).waiting == 1)
    answering = LiveReply(late, budgets, edit_interval=0.01)
    await answering.start()
    answering.feed("Here it is.")  # ...and a later question's first words go first
    await wait_for(lambda: late.visible() == ["Here it is."])
    assert [op.kind for op in early.ops] == []
    await wait_for(lambda: [op.kind for op in early.ops] == ["begin"])
    await answering.finish(None)
    await waiting.aclose()


async def test_typing_leaves_half_of_the_bot_budget_to_firstshown_words() -> None:
    # The budgets' clock stands still: no slot frees during the test, so first words
    # shown were shown with a slot typing left them, not one that freed meanwhile.
    budgets = Budgets(clock=lambda: 100.0)
    rate = Rate(4, 5.0)
    targets = [RecordingTarget(channel=f"C{i}") for i in range(4)]
    for target in targets:
        target.limits = replace(target.limits, global_bucket="bot", global_rate=rate)
    replies = [LiveReply(target, budgets, edit_interval=0.01) for target in targets]
    for reply in replies:
        await reply.start()  # four questions at once, no words yet
    typing = budgets.get("bot:typing", Rate(2, 5.0))

    def typed() -> list[RecordingTarget]:
        return [t for t in targets if [op.kind for op in t.ops] == ["begin"]]

    # Settled: each reply shows typing, or waits for typing's share of the budget.
    # (Typing's waiters queue a few loop turns before the others' typing shows.)
    await wait_for(lambda: len(typed()) + typing.waiting == len(targets))
    assert len(typed()) == 2  # typing took half of the bot's requests, not all of them
    reply, target = next((r, t) for r, t in zip(replies, targets, strict=True) if not t.ops)
    reply.feed("Here it is.")  # so these first words are shown at once
    await wait_for(lambda: target.visible() == ["Here it is."])
    for reply in replies:
        await reply.aclose()


async def test_an_answer_that_arrives_whole_does_not_wait_for_typing() -> None:
    # The budgets' clock stands still: the typing slots taken never free, so an
    # answer that waited for one would never be posted.
    budgets = Budgets(margin=0.0, clock=lambda: 1000.0)
    typing = budgets.get("bot:typing", Rate(2, 1.0))
    use_slot(typing)
    use_slot(typing)  # other replies' typing took this second's share
    target = RecordingTarget(bucket="c1")
    target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(4, 1.0))
    reply = LiveReply(target, budgets, edit_interval=0.05)
    await reply.start()
    await wait_for(lambda: typing.waiting == 1)  # its typing waits for a slot
    async with asyncio.timeout(5):  # a deadline for a hang, not a speed target
        await reply.finish("The whole answer, from the API's last event.")
    assert [op.kind for op in target.ops] == ["post", "end"]  # posted; no typing after it
    assert typing.waiting == 0  # the typing gave up its wait
