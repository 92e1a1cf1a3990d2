"""Messages refused (too long, too many, unrouted): told in order, holding up no other question."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.intake import HELP_TEXT, MENTION_HELP
from bridge.interfaces import Address
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for, failed_answers, platform, refused
from tests.fakes.chatapi import FakeChatAPI


async def test_too_long_question_is_refused_without_calling_the_api(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("x" * 2001)
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.notices == [
        "That question is 2,001 characters long; the limit is 2,000. "
        "Please shorten it and ask again."
    ]
    assert fake_chat_api.requests == []
    assert not target.was_accepted  # a platform may tell the asker nothing is coming


async def test_chatter_in_the_thread_of_a_refused_question_is_not_answered(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the refusal was being told (Slack's round trip, a busy budget), the
    # question's record made its thread look taken: chatter there went to the API.
    release = asyncio.Event()
    notice = RecordingTarget.notice

    async def held(self: RecordingTarget, text: str) -> None:
        await release.wait()
        await notice(self, text)

    monkeypatch.setattr(RecordingTarget, "notice", held)
    fake_chat_api.enqueue(tokens=["Sentinel."])
    extra = "limits: {max_question_chars: 20}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        question = await p.say("a question far too long for the limit")
        root = question.address.thread
        await p.say("lol same", thread=root, user="U2", mentioned=False)
        place = ("console", "W1", "C1", root)
        await wait_for(lambda: place not in bridge.relay.intake._places)  # the chatter was routed
        release.set()
        await wait_for(lambda: question.notices)
        sentinel = await p.say("sentinel", thread="T9")
        await wait_for(lambda: "Sentinel." in sentinel.visible(), timeout=20)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["sentinel"]


class SlowNotices(RecordingTarget):
    """A channel where a notice is a message, posted only when `go` is set."""

    def __init__(self, go: asyncio.Event) -> None:
        super().__init__(notices_post=True)
        self.go = go

    async def notice(self, text: str) -> None:
        await self.go.wait()
        await super().notice(text)


async def test_a_refusal_waiting_to_be_posted_holds_up_no_one_elses_question(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flooder's refusals waited for the channel's post budget inside the intake:
    # the next person's question reached the chat API only once they were out.
    fake_chat_api.enqueue(tokens=["For A."])
    fake_chat_api.enqueue(tokens=["For B."])
    go = asyncio.Event()
    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: SlowNotices(go))
    extra = "limits: {rate_limit: {messages: 1, per: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        await platform(bridge).say("one", user="A")
        refused = await platform(bridge).say("two", user="A")  # over A's limit
        await platform(bridge).say("three", user="B")
        await fake_chat_api.wait_requests(2)
        assert [r.json["message"] for r in fake_chat_api.requests] == ["one", "three"]
        go.set()
        await wait_for(lambda: bool(refused.notices) and bridge.relay.live == 0)


class OrderedNotices(RecordingTarget):
    """Notices as a channel shows them; the first one's request is slow."""

    def __init__(self, shown: list[str], second: asyncio.Event) -> None:
        super().__init__(notices_post=True)
        self.shown, self.second = shown, second

    async def notice(self, text: str) -> None:
        if not self.shown and "long" in text:
            with contextlib.suppress(TimeoutError):  # until the next one is asked for
                await asyncio.wait_for(self.second.wait(), 0.5)
        else:
            self.second.set()
        self.shown.append(text)


async def test_a_places_refusals_are_posted_in_the_order_of_their_messages(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []
    second = asyncio.Event()
    monkeypatch.setattr(
        LocalPlatform, "target", lambda self, address: OrderedNotices(shown, second)
    )
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await platform(bridge).say("x" * 5000)
        await platform(bridge).say("   ")
        await wait_for(lambda: len(shown) == 2)
    assert "long" in shown[0] and shown[1] == MENTION_HELP


async def test_a_question_refused_as_too_long_and_shortened_by_an_edit_is_answered(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Asked to shorten it, the asker edits the message: the edit comes with the
    # message's event id, which the refusal had taken, and went unanswered.
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        long = await p.say("x" * 2001, thread="T1", event_id="Ev1")
        await wait_for(lambda: long.notices)
        await p.say("x" * 2001, thread="T1", event_id="Ev1")  # delivered again: told once
        await p.say("y" * 2002, thread="T1", event_id="Ev1")  # edited, still too long
        await wait_for(lambda: len(long.notices) == 2)
        edited = await p.say("how do I deploy?", thread="T1", event_id="Ev1")
        await wait_for(lambda: edited.visible() == ["Answered."])
        await p.say("how do I deploy?", thread="T1", event_id="Ev1")  # and again
        fake_chat_api.enqueue(tokens=["Sentinel."])
        await p.say("sentinel", thread="T1")  # taken after it
        await wait_for(lambda: edited.visible() == ["Answered.", "Sentinel."])
    assert long.notices == [  # the thread's notices: the redelivery told nothing
        "That question is 2,001 characters long; the limit is 2,000. "
        "Please shorten it and ask again.",
        "That question is 2,002 characters long; the limit is 2,000. "
        "Please shorten it and ask again.",
    ]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["how do I deploy?", "sentinel"]


async def test_command_where_no_route_answers_gets_a_refusal(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="channels: [C9]") as bridge:
        target = await platform(bridge).say("hello", channel="C1", command="ask")
        await asyncio.wait_for(target.ended.wait(), 10)
        ignored = await platform(bridge).say("hello", channel="C1")
    assert target.notices == ["I am not set up to answer here."]
    assert ignored.notices == [] and ignored.ops == []
    assert fake_chat_api.requests == []


def posting_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the console's notices messages posted in the place (as Discord's are)."""
    made = LocalPlatform.target

    def posting(self: LocalPlatform, address: Address) -> RecordingTarget:
        target = made(self, address)
        target.limits = replace(target.limits, notices_post=True)
        return target

    monkeypatch.setattr(LocalPlatform, "target", posting)


async def test_a_person_sending_refused_messages_is_told_three_times_a_minute(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where refusals are posted in the channel, a flood of them would take the
    # channel's post budget from everyone else's answers.
    posting_notices(monkeypatch)
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        say = platform(bridge).say
        flood = [
            await say(text, user="U1", thread=f"T{i}")
            for i, text in enumerate(["   ", "x" * 3000, "   ", "   ", "x" * 3000])
        ]
        # Said all the same: a command's answer (private; unanswered, the platform
        # shows it failed) and a refusal in a DM.
        command = await say("x" * 3000, user="U1", thread="T5", command="ask")
        in_dm = await say("   ", user="U1", channel="D1", is_dm=True)
        other = await say("   ", user="U2", thread="T9")
        asked = await say("A question?", user="U3", thread="T10")
        await asyncio.wait_for(asked.ended.wait(), 10)
        await wait_for(
            lambda: (
                caplog.text.count("refusal not told again") == 2
                and sum(len(t.notices) for t in flood) == 3
            )
        )
        await wait_for(lambda: [] not in (other.notices, command.notices, in_dm.notices))
    assert sorted(len(t.notices) for t in flood) == [0, 0, 1, 1, 1]
    assert other.notices == [HELP_TEXT]  # someone else is still told
    assert in_dm.notices == [HELP_TEXT]
    assert "3,000 characters long" in command.notices[0]
    assert asked.visible() == ["Answered."]


async def flood_of_refusals(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> list[RecordingTarget]:
    """Five refused messages of one person in one place (empty and too long, in turns),
    the last two past the refusals told to one person: their targets, once the three
    told are posted."""
    say = platform(bridge).say
    flood = [
        await say(text, channel="C3", user="U7")
        for text in ["   ", "x" * 3000, "   ", "   ", "x" * 3000]
    ]
    await wait_for(
        lambda: (
            caplog.text.count("refusal not told again") == 2
            and sum(len(t.notices) for t in flood) == 3
        )
    )
    return flood


async def test_a_refusal_left_unsaid_is_logged_with_its_place_person_and_message(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its line said only the refusal's words: asked why the bot said nothing to
    # someone, the admin could not find which channel, person or message it was.
    posting_notices(monkeypatch)
    caplog.set_level(logging.INFO, logger="chat_bridge")
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        flood = await flood_of_refusals(bridge, caplog)
    lines = [r for r in caplog.records if r.getMessage().startswith("refusal not told again")]
    unsaid = [t.address.thread for t in flood if not t.notices]  # (in a channel: the message's id)
    fields = ("platform", "workspace", "channel", "user", "message_id")
    assert [{k: vars(r).get(k) for k in fields} for r in lines] == [
        {"platform": "console", "workspace": "W1", "channel": "C3", "user": "U7", "message_id": m}
        for m in unsaid
    ]
    assert len(unsaid) == 2
    assert all("x" * 3000 not in r.getMessage() for r in lines)


async def test_refusals_are_counted_by_reason_told_or_not(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Refused questions were counted nowhere: received rose, answered did not, and
    # nothing said why.
    posting_notices(monkeypatch)
    caplog.set_level(logging.INFO, logger="chat_bridge")
    fake_chat_api.enqueue(tokens=["Answered."])
    extra = "limits: {rate_limit: {messages: 1, per: 600}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        await flood_of_refusals(bridge, caplog)
        say = platform(bridge).say
        command = await say("x" * 3000, channel="C3", user="U7", command="ask")  # always told
        asked = await say("A question?", channel="D1", user="U8", is_dm=True)
        await wait_for(lambda: asked.visible() == ["Answered."])
        again = await say("Another?", channel="D1", user="U8", is_dm=True)
        await wait_for(lambda: bool(command.notices and again.notices))
        counted = {
            (reason, told): refused(bridge, reason, told)
            for reason in ("empty", "too_long", "rate_limited")
            for told in ("yes", "no")
        }
    assert "faster than I can answer" in again.notices[0]
    assert counted == {
        ("empty", "yes"): 2,
        ("empty", "no"): 1,
        ("too_long", "yes"): 2,
        ("too_long", "no"): 1,
        ("rate_limited", "yes"): 1,
        ("rate_limited", "no"): 0,
    }
    assert failed_answers(bridge, "answered") == 1
