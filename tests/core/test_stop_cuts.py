"""What a stop cuts: each reply and question ended and marked, within the platform's limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bridge import app
from bridge.app import Bridge
from bridge.errors import PlaceGone
from bridge.interfaces import Address, Rate
from bridge.interruptions import (
    GIVEN_UP,
    INTERRUPTED,
    SHOWN_LATE,
    SHOWN_LATE_RESTART,
    interrupted_edit,
    record_text,
)
from bridge.render import CUT_SHORT
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget, max_in_window, use_slot
from tests.core.relay_support import bridge_for, failed_answers, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_a_reply_cut_by_the_stop_ends_and_keeps_its_interrupted_mark(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
    extra = "limits: {shutdown_grace: 0.3}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        target = await platform(bridge).say("A long one, please")
        await wait_for(lambda: bool(target.visible()) and target.visible()[0].startswith("w0"))
        await bridge.drain()
        [marked] = target.visible()
        # The reply's own updates stopped with it: none lands after the mark.
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "live-reply"]
    assert "interrupted" in marked and target.visible() == [marked]
    assert [op.kind for op in target.ops].count("end") == 1  # its indicators were cleared


async def test_a_reply_cut_by_the_stop_with_no_room_left_for_the_mark_is_marked_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Under the reply's text, the mark would take its message past the platform's
    # limit (refused): it goes in a message of its own.
    fake_chat_api.enqueue(tokens=["x" * 95, "and never more"], hang_after=1)
    async with bridge_for(
        fake_chat_api,
        tmp_path / "b.db",
        extra="limits: {shutdown_grace: 0.1}",
        console="{max_chars: 100}",
    ) as bridge:
        target = await platform(bridge).say("A long one?")
        await wait_for(lambda: target.visible() == ["x" * 95])
        await bridge.drain()
    assert target.visible() == ["x" * 95, INTERRUPTED]


async def test_a_question_cut_by_the_stop_while_it_waited_is_counted_interrupted(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Marked interrupted to its asker, and logged by the app, but in no metric.
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
    extra = "limits: {shutdown_grace: 0.3, max_concurrent_streams: 1}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        first = await platform(bridge).say("A long one, please", thread="T1")
        await platform(bridge).say("And one more", thread="T2")  # waits for the slot
        await wait_for(lambda: bool(first.visible()))
        await bridge.drain()
        assert failed_answers(bridge, "interrupted") == 2.0


@pytest.mark.parametrize(
    ("thread", "extra"),
    [
        ("T1", "limits: {shutdown_grace: 3}"),  # behind the first, in its thread
        ("T2", "limits: {shutdown_grace: 3, max_concurrent_streams: 1}"),  # for the slot
    ],
)
async def test_a_question_whose_turn_comes_during_the_stop_is_not_sent_on(
    fake_chat_api: FakeChatAPI, tmp_path: Path, thread: str, extra: str
) -> None:
    # Asked during the grace, it was cut at its end: paid for, and asked again.
    fake_chat_api.enqueue(tokens=[f"a{i} " for i in range(10)], token_delay=0.05)
    fake_chat_api.enqueue(tokens=["Never ", "read"], hang_after=1)
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        first = await platform(bridge).say("First?", thread="T1")
        second = await platform(bridge).say("Second?", thread=thread)
        await wait_for(lambda: bool(first.visible()))
        started = time.monotonic()
        await bridge.drain()
        assert time.monotonic() - started < 2.5  # the first's end, not the grace
        assert failed_answers(bridge, "interrupted") == 1.0
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    assert [r.json["message"] for r in fake_chat_api.requests] == ["First?"]
    assert first.visible()[0] == "".join(f"a{i} " for i in range(10))  # finished
    assert second.visible()[-1] == INTERRUPTED  # told to ask again


async def test_a_reset_whose_turn_comes_during_the_stop_is_done(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # It asks no chat API anything: done and said, as before the stop.
    fake_chat_api.enqueue(tokens=[f"a{i} " for i in range(10)], token_delay=0.05)
    extra = "limits: {shutdown_grace: 3}"
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", route="session: user", extra=extra
    ) as bridge:
        p = platform(bridge)
        first = await p.say("one", is_dm=True, channel="D1")
        reset = await p.say("reset", is_dm=True, channel="D1")
        await wait_for(lambda: bool(first.visible()))
        await bridge.drain()
        assert failed_answers(bridge, "interrupted") == 0.0
    assert reset.notices == ["Started a new conversation."]
    assert INTERRUPTED not in reset.visible()
    assert len(fake_chat_api.requests) == 1


async def test_a_stop_marks_cut_replies_within_the_platforms_limits_and_in_bounded_time(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "AFTER_GRACE_SECONDS", 0.3)
    fake_chat_api.enqueue(tokens=["Half ", "and never more"], hang_after=1)
    async with bridge_for(
        fake_chat_api,
        tmp_path / "b.db",
        extra="limits: {shutdown_grace: 0.1}",
        console="{edit_count: 50, edit_per: 60}",
    ) as bridge:
        cut = await platform(bridge).say("A long one?")
        await wait_for(lambda: any(t.startswith("Half") for t in cut.visible()))
        # Live replies used the place's edit budget up: a mark would be refused (429).
        budget = bridge.budgets.get(cut.limits.edit_bucket, cut.limits.edit_rate)
        while budget.try_acquire() is not None:
            pass
        started = time.monotonic()
        await bridge.drain()
        assert time.monotonic() - started < 3.0  # not until the budget frees, a minute on
        # Not marked now: its record stays, for the next start to mark.
        [left] = await bridge.store.inflight_orphans("another process", time.time() + 1)
        assert left.text == "Half "
    assert not any("interrupted" in t for t in cut.visible())


async def test_a_stop_keeps_back_a_slot_of_a_spent_shared_budget_for_each_mark(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Live replies in one bucket (Slack: chat.update, per workspace) spend its budget
    # to the full: when the grace ends, each reply cut still finds a slot for its mark.
    monkeypatch.setattr(app, "AFTER_GRACE_SECONDS", 1.0)
    for _ in range(3):
        fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(200)], token_delay=0.05)
    rate = Rate(4, 2.0)  # a window shorter than the grace: it frees slots meanwhile
    async with bridge_for(
        fake_chat_api,
        tmp_path / "b.db",
        extra="limits: {shutdown_grace: 2.5}",
        console=f"{{edit_count: {rate.count}, edit_per: {rate.per}}}",
    ) as bridge:
        cut = [await platform(bridge).say("A long one?", channel=f"C{i}") for i in range(3)]

        def edits() -> list[float]:
            return [op.at for target in cut for op in target.ops if op.kind == "edit"]

        await wait_for(lambda: len(edits()) >= rate.count)  # the budget is spent
        await bridge.drain()
        assert await bridge.store.inflight_orphans("another process", time.time() + 1) == []
    for target in cut:
        [shown] = target.visible()
        assert shown.startswith("w0 ") and shown.endswith(INTERRUPTED)
    assert max_in_window(edits(), rate.per) <= rate.count


async def test_a_reply_ending_during_the_stop_shows_its_end_before_the_others_updates(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # As it ends, its edit waits for a slot behind the other reply's, which waited
    # longer: it goes first, taking the slot kept back for its mark (it needs none),
    # and the reply cut still finds one for its own.
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(20)], token_delay=0.8)
    fake_chat_api.enqueue(tokens=["Done ", "at ", "last."], token_delay=1.0)
    rate = Rate(3, 60.0)
    async with bridge_for(
        fake_chat_api,
        tmp_path / "b.db",
        extra="limits: {shutdown_grace: 3}",
        console=f"{{edit_count: {rate.count}, edit_per: {rate.per}}}",
    ) as bridge:
        cut = await platform(bridge).say("A long one?", channel="CA")
        await fake_chat_api.wait_requests(1)
        ends = await platform(bridge).say("A short one?", channel="CB")
        await wait_for(lambda: ends.visible() == ["Done "] and cut.visible() == ["w0 "])
        use_slot(bridge.budgets.get(cut.limits.edit_bucket, rate))  # another reply's edit
        await bridge.drain()
        assert await bridge.store.inflight_orphans("another process", time.time() + 1) == []
    assert ends.visible() == ["Done at last."]
    [marked] = cut.visible()
    assert marked.startswith("w0 ") and marked.endswith(INTERRUPTED)


def queue_depth(bridge: Bridge) -> float:
    [line] = [
        line
        for line in bridge.metrics.render().decode().splitlines()
        if line.startswith("chat_bridge_queue_depth ")
    ]
    return float(line.rsplit(" ", 1)[1])


async def test_questions_stopped_in_the_queue_leave_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
    extra = "limits: {max_concurrent_streams: 1}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        first = await platform(bridge).say("First", thread="T1")
        await platform(bridge).say("Second", thread="T2")  # waits for the one slot
        await platform(bridge).say("Third", thread="T3")
        await wait_for(lambda: bool(first.visible()) and queue_depth(bridge) == 2)
        assert await bridge.relay.drain(0) == 3  # a stop: all three cancelled
        assert bridge.relay._queued == 0 and queue_depth(bridge) == 0


async def test_a_question_taken_as_a_stop_begins_ends_as_one_cut_while_it_waited(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Cut before its task had run a line, it skipped all its ending: a slash command's
    # asker was never told, an indicator stayed on, and it kept its place in the queue.
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        relay, start = bridge.relay, bridge.relay.start
        stopping: list[asyncio.Future[int]] = []

        def stop_as_it_is_taken(job: Any, batch: Any) -> None:
            stopping.append(asyncio.ensure_future(relay.drain(0)))  # its first step is first
            start(job, batch)

        relay.start = stop_as_it_is_taken  # type: ignore[method-assign]
        target = await platform(bridge).say("Just in time?")
        await wait_for(lambda: bool(stopping))
        await asyncio.wait_for(stopping[0], 5)
        assert not relay._jobs and relay._queued == 0 and queue_depth(bridge) == 0
        assert failed_answers(bridge, "interrupted") == 1.0
        assert [op.kind for op in target.ops] == ["end"]  # its indicator cleared


def test_the_interrupted_mark_is_not_put_inside_a_code_block_left_open() -> None:
    target = RecordingTarget()  # formats as Discord does: a fence is left as it is
    edit = interrupted_edit(target, "Run this:\n```python\nimport os\n", ["m1"])
    assert edit == ("m1", f"Run this:\n```python\nimport os\n```\n\n{INTERRUPTED}")


def test_the_interrupted_mark_leaves_out_half_a_table_row() -> None:
    # The cut reply ended with half a row under its table, as raw Markdown.
    target = RecordingTarget()
    table = "| City | Pop |\n|---|---|\n| Rome | 2.8 |\n"
    edit = interrupted_edit(target, f"{table}| Paris | 2.", ["m1"])
    assert edit == ("m1", f"{table}\n{INTERRUPTED}")
    # A whole row is kept, its line break not there yet; so is prose begun with `|`.
    edit = interrupted_edit(target, f"{table}| Paris | 2.1 |", ["m1"])
    assert edit == ("m1", f"{table}| Paris | 2.1 |\n\n{INTERRUPTED}")
    edit = interrupted_edit(target, "Real numbers:\n|x| is never negative", ["m1"])
    assert edit == ("m1", f"Real numbers:\n|x| is never negative\n\n{INTERRUPTED}")
    # Whole, its answer complete, its last row ends it.
    text = record_text(f"{table}| Paris | 2.1 |", "")
    assert interrupted_edit(target, text, ["m1"]) == (
        "m1",
        f"{table}| Paris | 2.1 |\n\n{SHOWN_LATE_RESTART}",
    )


def test_a_complete_answer_whose_end_never_showed_is_marked_shown_late_never_to_ask_again() -> None:
    # It showed whole under "please ask again", its sources left out: a second paid
    # answer for one already whole.
    target = RecordingTarget()
    sources = "**Sources**\n- <https://docs.example/a>"
    text = record_text("The whole answer. ", sources)
    assert interrupted_edit(target, text, ["m1"], GIVEN_UP) == (
        "m1",
        f"The whole answer.\n\n{sources}\n\n{SHOWN_LATE}",
    )
    assert interrupted_edit(target, text, ["m1"]) == (
        "m1",
        f"The whole answer.\n\n{sources}\n\n{SHOWN_LATE_RESTART}",
    )
    # Its sources left out where they do not fit; where its text does not, it is marked
    # apart as one cut (`None`): its end never showed.
    room = target.limits.max_chars - len(f"\n\n{SHOWN_LATE}")
    fits = "a" * room
    assert interrupted_edit(target, record_text(fits, sources), ["m1"], GIVEN_UP) == (
        "m1",
        f"{fits}\n\n{SHOWN_LATE}",
    )
    assert interrupted_edit(target, record_text(fits + "a", sources), ["m1"], GIVEN_UP) is None
    # An answer cut mid-stream keeps its mark.
    assert interrupted_edit(target, record_text("Half an", None), ["m1"], GIVEN_UP) == (
        "m1",
        f"Half an\n\n{GIVEN_UP}",
    )


async def test_a_refusal_a_stop_cuts_is_not_marked_interrupted(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Told to the asker alone (too long, say), it must not become a public "please ask
    # again", counted as an answer interrupted.
    telling = asyncio.Event()
    made = LocalPlatform.target

    def slow_notices(self: LocalPlatform, address: Address) -> RecordingTarget:
        target = made(self, address)

        async def notice(text: str) -> None:
            telling.set()
            await asyncio.Event().wait()

        target.notice = notice  # type: ignore[method-assign]
        return target

    monkeypatch.setattr(LocalPlatform, "target", slow_notices)
    extra = "limits: {shutdown_grace: 0.1, max_question_chars: 20}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        asked = await platform(bridge).say("x" * 50)
        await asyncio.wait_for(telling.wait(), 5)
        await bridge.drain()
        assert failed_answers(bridge, "interrupted") == 0.0
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    assert asked.visible() == []


class _SecondGone(RecordingTarget):
    """Its second message deleted; the cut-short mark's edit never answered."""

    def __init__(self) -> None:
        super().__init__(max_chars=300)
        self.marking = asyncio.Event()

    async def edit(self, message_id: str, text: str) -> None:
        if message_id == "m2":
            raise PlaceGone("the message was deleted")
        if CUT_SHORT in text:
            self.marking.set()
            await asyncio.Event().wait()
        await super().edit(message_id, text)


async def test_a_stop_as_a_cut_answers_mark_waits_clears_its_indicators_and_says_so(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The stop cut the mark's wait: the platform's thinking indicator stayed, and the
    # answer's stop was never logged.
    fake_chat_api.enqueue(
        tokens=[f"Line {i:03d}: " + "x" * 39 + "\n" for i in range(40)], token_delay=0.05
    )
    made: list[_SecondGone] = []

    def target(self: LocalPlatform, address: Address) -> _SecondGone:
        made.append(_SecondGone())
        return made[-1]

    monkeypatch.setattr(LocalPlatform, "target", target)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await platform(bridge).say("A long one")
        await wait_for(lambda: bool(made) and made[0].marking.is_set())
    assert [op.kind for op in made[0].ops][-1] == "end"
    [line] = [r.getMessage() for r in caplog.records if "answer stopped" in r.getMessage()]
    assert "no mark could be put on what showed of it" in line
