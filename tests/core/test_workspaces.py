"""Workspaces sharing the bridge: one flooding it leaves queue places and free streams to others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.intake import Shares
from tests.core.fakeplatform import wait_for
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI, Script


def test_a_workspace_alone_in_asking_may_hold_every_place() -> None:
    shares = Shares(window=600.0)
    shares.asked(("slack", "T1"), 0.0)
    assert shares.room(("slack", "T1"), 320) == 320
    assert shares.room(("discord", "G1"), 320) == 240  # one that has not asked: T1 did
    shares.asked(("discord", "G1"), 100.0)
    assert shares.room(("slack", "T1"), 320) == 240
    shares.asked(("discord", "G1"), 700.0)  # T1 last asked over 600 s before
    assert shares.room(("discord", "G1"), 320) == 320
    assert shares._asked == {("discord", "G1"): 700.0}


async def test_a_busy_workspace_leaves_room_for_the_others(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # 4 places (1 stream, 3 queued). W2 asked lately, so W1 may hold 3 of them:
    # its fourth question is refused, and W2's next one still finds a place.
    fake_chat_api.enqueue(tokens=["quick"])
    for _ in range(4):
        fake_chat_api.enqueue(tokens=["slow ", "answer"], token_delay=0.3)
    extra = "limits: {max_concurrent_streams: 1, queue_size: 3}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        earlier = await p.say("hello", thread="T0", workspace="W2")
        await asyncio.wait_for(earlier.ended.wait(), 10)
        flood = [await p.say(f"q{n}", thread=f"T{n}", workspace="W1") for n in range(1, 5)]
        await fake_chat_api.wait_requests(2)
        await asyncio.wait_for(flood[3].ended.wait(), 10)
        assert flood[3].notices == ["I am busy right now; please try again shortly."]
        other = await p.say("and me?", thread="T9", workspace="W2")
        for target in [*flood[:3], other]:
            await asyncio.wait_for(target.ended.wait(), 10)
        assert other.visible() == ["slow answer"]
        assert other.notices == []
    assert [r.json["message"] for r in fake_chat_api.requests] == [
        "hello",
        "q1",
        "q2",
        "q3",
        "and me?",
    ]


async def test_a_workspaces_question_takes_the_next_free_stream_ahead_of_anothers_flood(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Stream slots went first come, first served: W2's question, admitted in the
    # places W1 may not hold, still waited for every W1 question queued before it.
    gates = {f"q{n}": asyncio.Event() for n in range(1, 7)}

    def answer_for(question: str) -> Script:
        return Script(tokens=[f"answer to {question}"], gate=gates.get(question))

    fake_chat_api.answer_for = answer_for
    extra = "limits: {max_concurrent_streams: 2, queue_size: 6}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        flood = [await p.say(f"q{n}", thread=f"T{n}", workspace="W1") for n in range(1, 7)]
        await fake_chat_api.wait_requests(2)
        await wait_for(lambda: bridge.relay._queued == 4)
        other = await p.say("urgent", thread="T9", workspace="W2")
        await wait_for(lambda: bridge.relay._queued == 5)
        gates["q1"].set()  # one stream frees: W2 holds none, W1 the other
        asked = await fake_chat_api.wait_requests(3)
        assert asked.json["message"] == "urgent"
        await asyncio.wait_for(other.ended.wait(), 10)
        assert other.visible() == ["answer to urgent"]
        for gate in gates.values():
            gate.set()
        for target in flood:
            await asyncio.wait_for(target.ended.wait(), 10)
        assert all(target.notices == [] for target in [*flood, other])
    assert [r.json["message"] for r in fake_chat_api.requests] == [
        "q1",
        "q2",
        "urgent",
        "q3",
        "q4",
        "q5",
        "q6",
    ]
