"""Questions waiting their turn: in order per conversation, in bounded queues, told when busy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.intake import CONVERSATION_BUSY
from bridge.interfaces import Address, Rate
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI, Script


async def test_one_conversation_in_order_while_another_streams(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    scripts = {
        "one": Script(tokens=["first ", "answer"], token_delay=0.15),
        "three": Script(tokens=["other ", "conversation"], token_delay=0.05),
        "two": Script(tokens=["second ", "answer"]),
    }
    fake_chat_api.answer_for = lambda question: scripts[question]
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        a1 = await p.say("one", thread="T-A", mentioned=True)
        a2 = await p.say("two", thread="T-A", mentioned=True)
        b = await p.say("three", thread="T-B", mentioned=True)
        await wait_for(lambda: len(fake_chat_api.requests) >= 2)
        # B started while A's first answer was still streaming, and before A's second.
        assert {r.json["message"] for r in fake_chat_api.requests[:2]} == {"one", "three"}
        await wait_for(lambda: b.ended.is_set())
        await wait_for(lambda: sum(op.kind == "end" for op in a2.ops) == 2)
    assert fake_chat_api.requests[2].json["message"] == "two"  # after A's first answer
    assert a1 is a2  # same thread, same place
    assert a1.visible() == ["first answer", "second answer"]
    asked = [r for r in fake_chat_api.requests if r.json["message"] != "three"]
    sessions = {r.json["session_id"] for r in asked}
    assert len(sessions) == 1


async def test_a_follow_up_to_a_question_still_waiting_its_turn_is_taken(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The question shows it was taken (Slack's hourglass, Discord's new thread); the
    # asker adds a detail in its thread, without a mention. It was dropped unseen.
    fake_chat_api.enqueue(tokens=["slow "] * 20, token_delay=0.05)
    fake_chat_api.enqueue(tokens=["First."])
    fake_chat_api.enqueue(tokens=["Second."])
    extra = "limits: {max_concurrent_streams: 1}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        await p.say("a long question", thread="T1")  # holds the only stream
        await wait_for(lambda: fake_chat_api.requests)
        await p.say("how do I deploy?", thread="T2")
        thread = await p.say("on Windows, please", thread="T2", mentioned=False)
        await wait_for(lambda: "Second." in thread.visible(), timeout=20)
    assert [r.json["message"] for r in fake_chat_api.requests] == [
        "a long question",
        "how do I deploy?",
        "on Windows, please",
    ]


async def test_a_reply_waiting_for_its_platforms_budget_holds_no_stream_slot(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reply kept its slot until its final edit, however long its own (busy) place's
    # budget made that wait: questions elsewhere, with budget to spare, waited too.
    fake_chat_api.enqueue(tokens=["Slow ", "to ", "show."], token_delay=0.05)
    fake_chat_api.enqueue(tokens=["Quick."])

    def target(self: LocalPlatform, address: Address) -> RecordingTarget:
        if address.channel == "BUSY":  # one edit a minute: the final one waits
            return RecordingTarget(edit_rate=Rate(1, 60.0), bucket="busy", channel="BUSY")
        return RecordingTarget(bucket="quiet", channel=address.channel)

    monkeypatch.setattr(LocalPlatform, "target", target)
    extra = "limits: {max_concurrent_streams: 1, queue_size: 5}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        busy = await platform(bridge).say("one", channel="BUSY")
        await fake_chat_api.wait_requests(1)
        await wait_for(lambda: len(busy.ops) >= 2)  # its first words are out
        quiet = await platform(bridge).say("two", channel="QUIET")
        await wait_for(lambda: quiet.visible() == ["Quick."])
        assert busy.visible() != ["Slow to show."]  # still waiting for its budget


async def test_replies_waiting_to_show_their_end_count_against_the_queue(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their slots given back, replies waiting for a place's budget counted nowhere:
    # that place took, and paid for, every question asked.
    for _ in range(6):
        fake_chat_api.enqueue(tokens=["A ", "long ", "one ", "answer."], token_delay=0.1)
    monkeypatch.setattr(
        LocalPlatform,
        "target",
        lambda self, address: RecordingTarget(edit_rate=Rate(1, 60.0), bucket="busy"),
    )
    extra = "limits: {max_concurrent_streams: 1, queue_size: 1}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        targets = [await platform(bridge).say("q0", thread="T0", user="U0")]
        # Its answer read whole, its end waiting for the place's budget:
        await wait_for(
            lambda: any(
                job.reply is not None and job.reply.text == "A long one answer."
                for job in bridge.relay._jobs
            )
        )
        for i in range(1, 6):
            targets.append(await platform(bridge).say(f"q{i}", thread=f"T{i}", user=f"U{i}"))
            await wait_for(
                lambda: (
                    len(fake_chat_api.requests) + sum(1 for t in targets if t.notices)
                    == len(targets)
                    or bridge.relay._queued > 0
                )
            )
        await wait_for(
            lambda: (
                len(fake_chat_api.requests) + sum(1 for t in targets if t.notices) == len(targets)
            )
        )
        assert len(fake_chat_api.requests) <= 2  # one streaming, one in the queue
        assert sum(1 for t in targets if t.notices) >= 4


async def test_questions_waiting_behind_their_conversation_have_a_queue_of_their_own(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Slow ", "one."], hang_after=1)
    extra = "limits: {max_concurrent_streams: 2, queue_size: 1, conversation_queue_size: 2}"
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", extra=extra, route="session: channel"
    ) as bridge:
        p = platform(bridge)
        first = await p.say("first", user="U0")
        await wait_for(lambda: any(t.startswith("Slow") for t in first.visible()))
        # One channel, one conversation: the others wait behind the first answer.
        later = [await p.say(f"q{u}", user=f"U{u}") for u in range(1, 6)]
        await wait_for(lambda: sum(bool(t.notices) for t in later) == 3)
        # Two wait behind the one answering, within conversation_queue_size: no more.
        assert bridge.relay._queued == 2
        assert [t.notices for t in later[:2]] == [[], []]
    assert all(n == [CONVERSATION_BUSY] for n in (t.notices for t in later[2:]))


async def test_one_conversations_backlog_leaves_the_free_streams_to_others(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Its backlog counted against the bridge-wide queue: with three of four streams
    # idle, someone asking elsewhere was told the bot was busy.
    fake_chat_api.enqueue(tokens=["Slow ", "one."], hang_after=1)
    fake_chat_api.enqueue(tokens=["For you."])
    extra = "limits: {max_concurrent_streams: 4, queue_size: 4}"
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", extra=extra, route="session: channel"
    ) as bridge:
        p = platform(bridge)
        # One person, one conversation answered one at a time, within their rate limit.
        noisy = [await p.say(f"question {i}", channel="C-NOISY", user="U-NOISY") for i in range(8)]
        await wait_for(lambda: bridge.relay.taken("console:W1:channel:C-NOISY|docs") == 8)
        other = await p.say("a different question", channel="C-QUIET", user="U-OTHER")
        await asyncio.wait_for(other.ended.wait(), 10)
        assert other.visible() == ["For you."]
        assert other.notices == []
        assert all(t.notices == [] for t in noisy)  # all eight wait their turn


async def test_a_busy_shared_channel_leaves_the_free_streams_to_others_by_default(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # 32 members of one `session: channel` channel asking 10 each, within their rate
    # limit, filled the default queue while 63 of 64 streams stood idle.
    fake_chat_api.enqueue(tokens=["Slow ", "one."], hang_after=1)
    fake_chat_api.enqueue(tokens=["For you."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: channel") as bridge:
        p = platform(bridge)
        busy = [
            await p.say(f"q{u}.{i}", channel="C-BUSY", user=f"U{u}")
            for u in range(32)
            for i in range(10)
        ]
        taken = bridge.relay.taken
        key = "console:W1:channel:C-BUSY|docs"
        await wait_for(lambda: taken(key) + sum(bool(t.notices) for t in busy) == 320)
        # The one answering and the default 10 behind it; the rest are told why.
        assert taken(key) == 11
        assert {tuple(t.notices) for t in busy[11:]} == {(CONVERSATION_BUSY,)}
        other = await p.say("a different question", channel="C-QUIET", user="U-OTHER")
        await asyncio.wait_for(other.ended.wait(), 10)
        assert other.visible() == ["For you."]
        assert other.notices == []


async def test_full_queue_answers_busy_never_silence(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(2):
        fake_chat_api.enqueue(tokens=["slow ", "answer"], token_delay=0.3)
    extra = "limits: {max_concurrent_streams: 1, queue_size: 1}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        streaming = await p.say("one", thread="T1")
        await fake_chat_api.wait_requests(1)
        queued = await p.say("two", thread="T2")
        refused = await p.say("three", thread="T3")
        await asyncio.wait_for(refused.ended.wait(), 10)
        assert refused.notices == ["I am busy right now; please try again shortly."]
        await asyncio.wait_for(queued.ended.wait(), 10)
        assert streaming.visible() == ["slow answer"]
        assert queued.visible() == ["slow answer"]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["one", "two"]
