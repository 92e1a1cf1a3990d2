"""Answers in threads of their own: opened, as notices are told, within the bot-wide budget."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.interfaces import Address, Rate, ReplyTarget
from bridge.interruptions import INTERRUPTED
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget, max_in_window
from tests.core.relay_support import bridge_for, failed_answers, platform
from tests.fakes.chatapi import FakeChatAPI


class _ThreadingTarget(RecordingTarget):
    """A channel where each answer opens a thread; every request counts bot-wide."""

    BOT = Rate(3, 0.3)

    def __init__(self, address: Address, requests: list[float]) -> None:
        super().__init__(channel=address.channel)
        self.address = address
        self.limits = replace(self.limits, global_bucket="bot", global_rate=self.BOT)
        self._requests = requests

    async def open_thread(self, name: str) -> tuple[str, ReplyTarget] | None:
        self._requests.append(time.monotonic())
        thread = f"th-{self.address.channel}"
        return thread, _ThreadingTarget(replace(self.address, thread=thread), self._requests)

    async def post(self, text: str) -> str:
        self._requests.append(time.monotonic())
        return await super().post(text)

    async def edit(self, message_id: str, text: str) -> None:
        self._requests.append(time.monotonic())
        await super().edit(message_id, text)


@pytest.fixture
def bot_requests(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every console target is a _ThreadingTarget; when each bot-wide request was made."""
    requests: list[float] = []
    monkeypatch.setattr(
        LocalPlatform, "target", lambda self, address: _ThreadingTarget(address, requests)
    )
    return requests


async def test_opening_threads_draws_on_the_bot_wide_budget(
    fake_chat_api: FakeChatAPI, tmp_path: Path, bot_requests: list[float]
) -> None:
    for _ in range(6):
        fake_chat_api.enqueue(tokens=["An ", "answer."])
    route = "reply_in_thread: true"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route=route) as bridge:
        asked = [await platform(bridge).say("What?", channel=f"C{i}") for i in range(6)]
        await wait_for(lambda: len(fake_chat_api.requests) == 6)
        await wait_for(lambda: bridge.relay.live == 0)
    assert len(bot_requests) >= 12  # six threads, and each answer posted in its thread
    assert max_in_window(bot_requests, _ThreadingTarget.BOT.per) <= _ThreadingTarget.BOT.count
    assert all(t.ops == [] for t in asked)  # the answers went to the threads


async def test_a_reply_moved_into_its_new_thread_keeps_its_in_flight_record(
    fake_chat_api: FakeChatAPI, tmp_path: Path, bot_requests: list[float]
) -> None:
    fake_chat_api.enqueue(tokens=["An ", "answer."], token_delay=0.2)
    route = "reply_in_thread: true"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route=route) as bridge:
        await platform(bridge).say("What?", channel="C7")
        await wait_for(lambda: bridge.relay.live == 1)
        [(record, _)] = bridge.relay.records()
        # Stored under the thread, so a crash now is marked and later replies wait for it.
        [stored] = await bridge.store.inflight_orphans("anyone", time.time() + 1)
        assert (stored.id, stored.address.thread) == (record.id, "th-C7")
        await wait_for(lambda: bridge.relay.live == 0)


@pytest.mark.parametrize("own", [False, True])
async def test_a_question_a_stop_cuts_while_its_thread_opens_is_marked_interrupted(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: bool
) -> None:
    # Its event was claimed (a redelivery is dropped), and its record ended with the
    # cut: never answered, never told, in no count.
    opening = asyncio.Event()
    made = LocalPlatform.target

    def slow_threads(self: LocalPlatform, address: Address) -> RecordingTarget:
        target = made(self, address)

        async def open_thread(name: str) -> tuple[str, ReplyTarget] | None:
            opening.set()
            await asyncio.Event().wait()  # the channel's post budget spent, say
            return None

        target.open_thread = open_thread  # type: ignore[method-assign]
        target.marks_own_interruption = own  # type: ignore[misc] (a slash command's)
        return target

    monkeypatch.setattr(LocalPlatform, "target", slow_threads)
    extra = "limits: {shutdown_grace: 0.1}"
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", route="reply_in_thread: true", extra=extra
    ) as bridge:
        asked = await platform(bridge).say("What?", channel="C7")
        await asyncio.wait_for(opening.wait(), 5)
        await bridge.drain()
        assert failed_answers(bridge, "interrupted") == 1.0
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    # Marked by the stop through its address; a slash command's asker told through the
    # command itself, the one way to reach it.
    assert (asked.notices if own else asked.visible()) == [INTERRUPTED]
    assert [op.kind for op in asked.ops].count("end") == (0 if own else 1)
    assert fake_chat_api.requests == []


async def test_notices_draw_on_the_bot_wide_budget(
    fake_chat_api: FakeChatAPI, tmp_path: Path, bot_requests: list[float]
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        asked = [await platform(bridge).say("   ", channel=f"C{i}", user=f"U{i}") for i in range(6)]
        await wait_for(lambda: all(t.notices for t in asked))
    times = [op.at for t in asked for op in t.ops if op.kind == "notice"]
    assert len(times) == 6  # each asker was told to ask in words...
    # ...within the bot's budget.
    assert max_in_window(times, _ThreadingTarget.BOT.per) <= _ThreadingTarget.BOT.count
