"""A reply's edits within its budgets: coalesced, shared fairly, paced with its reader."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from bridge.budget import Budgets
from bridge.errors import PlatformError
from bridge.interfaces import Rate
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget, max_in_window
from tests.core.render_support import _read_like_the_relay, _settle, _stream


async def test_tokens_are_coalesced_into_few_edits_within_budget() -> None:
    budgets = Budgets()
    target = RecordingTarget(edit_rate=Rate(4, 0.5))
    reply = LiveReply(target, budgets, edit_interval=0.05)
    await reply.start()
    tokens = [f"w{i} " for i in range(200)]
    await _stream(reply, tokens, 0.005)
    await reply.finish(None)
    assert target.visible() == ["".join(tokens)]
    edits = target.times(("edit",))
    assert 1 <= len(edits) < 60  # 200 tokens, far fewer edits
    assert max_in_window(edits, 0.5) <= 4


async def test_replies_sharing_a_bucket_share_its_budget() -> None:
    budgets = Budgets()
    targets = [RecordingTarget(edit_rate=Rate(5, 0.5), bucket="chan") for _ in range(6)]
    replies = [LiveReply(t, budgets, edit_interval=0.02) for t in targets]
    for reply in replies:
        await reply.start()
    tokens = [f"t{i} " for i in range(60)]
    await asyncio.gather(*(_stream(r, tokens, 0.005) for r in replies))
    await asyncio.gather(*(r.finish(None) for r in replies))
    stamps = [t for target in targets for t in target.times(("edit",))]
    assert max_in_window(stamps, 0.5) <= 5
    assert all(target.visible() == ["".join(tokens)] for target in targets)


async def test_reader_is_held_until_the_next_edit_and_that_edit_takes_its_catch_up() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.3)
    await reply.start()
    reply.feed("first")
    await wait_for(lambda: target.visible() == ["first"])
    shown_at = target.ops[-1].at
    reply.feed(" second")
    await _settle()
    await reply.pace()  # the read after " second" waits for the next edit
    assert time.monotonic() >= shown_at + 0.3
    reply.feed(" third")  # what that read brought: everything that arrived meanwhile
    await reply.pace()
    await wait_for(lambda: len(target.times(("edit", "post"))) == 2)
    assert target.visible() == ["first second third"]  # one edit showed both
    await reply.finish(None)
    assert target.visible() == ["first second third"]


async def test_an_edit_that_waited_for_its_budget_shows_what_arrived_meanwhile() -> None:
    target = RecordingTarget(edit_rate=Rate(1, 0.4), placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await wait_for(lambda: target.visible() == ["…"])
    reply.feed("one")
    await wait_for(lambda: target.visible() == ["one"])  # an edit of the placeholder
    reply.feed(" two")  # its edit waits for the budget (one edit per 0.4 s)...
    await wait_for(lambda: reply._budget.edit.waiting == 1)
    reply.feed(" three")  # ...while more text arrives
    await wait_for(lambda: len(target.times(("edit",))) == 2)
    assert target.visible() == ["one two three"]
    await reply.finish(None)


async def test_every_slot_is_given_back_whatever_the_requests_do() -> None:
    class Failing(RecordingTarget):
        """Refuses its first edit, and waits on its second until the reply is stopped."""

        edits = 0

        async def edit(self, message_id: str, text: str) -> None:
            self.edits += 1
            if self.edits == 1:
                raise PlatformError("refused")
            if self.edits == 2:
                await asyncio.Event().wait()
            await super().edit(message_id, text)

    budgets = Budgets()
    failing = Failing(channel="C2")
    targets = [RecordingTarget(channel="C1"), failing]
    for target in targets:  # typing, then posts and edits, all on a bot-wide budget too
        target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(50, 1.0))
    done, stopped = (LiveReply(t, budgets, edit_interval=0.01) for t in targets)
    for reply in (done, stopped):
        await reply.start()
        reply.feed("one")
    await wait_for(lambda: all(t.visible() == ["one"] for t in targets))
    for reply in (done, stopped):
        reply.feed(" two")
    await wait_for(lambda: failing.edits == 1)  # refused
    stopped.feed(" three")
    await wait_for(lambda: failing.edits == 2)  # on its way...
    await done.finish(None)
    await stopped.aclose()  # ...when the process stops
    assert [budget.in_flight for _, budget in budgets] == [0] * len(budgets)


async def test_a_slot_granted_as_the_reply_stops_is_given_back() -> None:
    budgets = Budgets()
    rate = Rate(1, 60.0)
    target = RecordingTarget()
    target.limits = replace(target.limits, global_bucket="bot", global_rate=rate)
    bot = budgets.get("bot", rate)
    held = bot.try_acquire()  # another request of the bot, on its way
    assert held is not None
    reply = LiveReply(target, budgets, edit_interval=0.01)
    await reply.start()
    await wait_for(lambda: bot.waiting == 1)  # its typing waits for the bot's budget
    bot.release(held)  # the slot goes to the typing...
    await asyncio.sleep(0)  # ...whose wait takes it
    await reply.aclose()  # ...just as the process stops
    assert [budget.in_flight for _, budget in budgets] == [0] * len(budgets)
    assert target.ops == []


class _SlowEditTarget(RecordingTarget):
    """Its first edit stays on its way until the test lets it land."""

    def __init__(self) -> None:
        super().__init__()
        self.editing = asyncio.Event()
        self.land = asyncio.Event()

    async def edit(self, message_id: str, text: str) -> None:
        self.editing.set()
        await self.land.wait()
        await super().edit(message_id, text)


async def test_the_edit_interval_runs_from_when_the_last_edit_was_sent() -> None:
    target = _SlowEditTarget()
    reply = LiveReply(target, Budgets(), edit_interval=1.0)
    await reply.start()
    reply.feed("one")
    await wait_for(lambda: target.visible() == ["one"])  # first words: posted at once
    reply.feed(" two")
    await asyncio.wait_for(target.editing.wait(), 5.0)  # an interval later, an edit goes
    reply.feed(" three")  # ...and more text comes while it is on its way
    await asyncio.sleep(1.0)  # a slow platform: the edit takes a whole interval to land
    landed = time.monotonic()
    target.land.set()
    await wait_for(lambda: target.visible() == ["one two three"])
    # The next edit was due an interval after the last one was sent, so it goes at
    # once; it does not wait another whole interval after the last one landed. That
    # wait would show here as at least edit_interval, whatever the machine's load;
    # the edit sent at once has all of it as room.
    assert time.monotonic() - landed < reply.edit_interval
    await reply.finish(None)


class SlowTarget(RecordingTarget):
    """Each request takes a network round trip; `posting` is set as a post starts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posting = asyncio.Event()

    async def post(self, text: str) -> str:
        self.posting.set()
        await asyncio.sleep(0.02)
        return await super().post(text)

    async def edit(self, message_id: str, text: str) -> None:
        await asyncio.sleep(0.02)
        await super().edit(message_id, text)


async def test_a_reply_that_keeps_streaming_does_not_starve_a_later_one() -> None:
    budgets = Budgets(margin=0.0)
    shared = Rate(1, 0.25)  # one edit a quarter second for the whole channel
    a_target = SlowTarget(edit_rate=shared, bucket="chan")
    b_target = SlowTarget(edit_rate=shared, bucket="chan")
    a = LiveReply(a_target, budgets, edit_interval=0.05)
    b = LiveReply(b_target, budgets, edit_interval=0.05)
    await a.start()
    a_reads = asyncio.create_task(_read_like_the_relay(a, [f"a{i} " for i in range(300)], 0.01))
    await asyncio.sleep(0.3)
    await b.start()
    await _read_like_the_relay(b, [f"b{i} " for i in range(200)], 0.01)  # inside A's stream
    b_edits = len(b_target.times(("edit",)))
    await a_reads
    await asyncio.gather(a.finish(None), b.finish(None))
    # Text that waits is ranked from when it came, not from A's first token: B,
    # streaming the whole time, has its share of the ~8 edits the budget allowed.
    assert b_edits >= 2


async def test_a_status_on_screen_leaves_the_first_words_their_priority() -> None:
    budgets = Budgets(margin=0.0)
    target = SlowTarget(edit_rate=Rate(5, 1.0))
    reply = LiveReply(target, budgets, edit_interval=0.05)
    await reply.start()
    reply.set_status("Searching the docs")
    await asyncio.wait_for(target.posting.wait(), 5.0)
    reply.feed("Hello")  # the first words arrive while the status is being posted
    assert target.visible() == []  # (the status not yet landed)
    await wait_for(lambda: target.visible() == ["_Searching the docs_"])
    assert reply.stats.first_visible_at is None  # a status is not the answer's first words
    await wait_for(lambda: target.visible() == ["Hello"])
    assert reply.stats.first_visible_at is not None
    await reply.finish(None)


async def test_a_final_text_that_comes_while_an_update_waits_is_not_shown_half() -> None:
    target = RecordingTarget(max_chars=60, edit_rate=Rate(1, 0.3))
    reply = LiveReply(target, Budgets(margin=0.0), edit_interval=0.01)
    await reply.start()
    for k in range(30):
        reply.feed(f"word{k} ")
        await asyncio.sleep(0.01)
    await wait_for(lambda: "word29" in target.visible()[-1])
    reply.feed("more ")
    await asyncio.sleep(0.02)
    reply.feed("more ")  # this update now waits for the edit budget
    await asyncio.sleep(0.02)
    await reply.finish("Short.")
    # Nothing of the final text went to a message as a progress update first.
    assert all(op.text.strip() for op in target.ops if op.kind in ("edit", "post"))
    assert target.visible()[0] == "Short."
