from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import socket
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import aiohappyeyeballs
import pytest

from bridge import app, render, resources, transport
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import (
    UNEXPECTED,
    PlaceGone,
    PlatformError,
    PlatformRefused,
    PlatformUnreachable,
    StoreError,
    told,
    wait_words,
)
from bridge.intake import (
    CONVERSATION_BUSY,
    HELP_TEXT,
    MENTION_HELP,
    THREAD_RESET,
    Shares,
    UserRateLimiter,
)
from bridge.interfaces import Address, ChatEvent, ChatRequest, Rate, ReplyTarget, Token
from bridge.interruptions import INTERRUPTED, interrupted_edit
from bridge.logs import AnswerFilter
from bridge.render import LiveReply
from bridge.store import Conversation
from bridge.transport import AiohttpTransport
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.core.recording import Op, RecordingTarget, max_in_window, use_slot
from tests.fakes.chatapi import RATE_LIMIT, FakeChatAPI, Script
from tests.fakes.proxy import FakeProxy

ROOT = Path(__file__).resolve().parents[2]


def make_config(
    fake: FakeChatAPI, db: Path, extra: str = "", route: str = "", console: str = "{}",
    reply: str = "",
) -> str:
    return f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs:
    kind: chatmount
    url: {fake.endpoint("chatmount")}
    api_key: ${{KEY}}
    retries: {{attempts: 2, backoff: 0.01}}
console: {console}
routes:
  - platform: console
    backend: docs
    {route}
reply: {{edit_interval: 0.05, {reply}}}
{extra}
"""


def bridge_for(fake: FakeChatAPI, db: Path, **kw: str) -> Bridge:
    config = parse_config(make_config(fake, db, **kw), env={"KEY": fake.api_key},
                          registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


def platform(bridge: Bridge) -> LocalPlatform:
    return bridge.platforms["console"]  # type: ignore[return-value]


async def test_answer_streams_with_sources(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    fake_chat_api.enqueue(
        tokens=["The ", "answer ", "is ", "42."],
        sources=[("https://a.example/1", "One"), ("https://a.example/1", "One"),
                 ("https://b.example/2", "Two")],
        token_delay=0.02,
    )
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("What is the answer?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == [
        "The answer is 42.\n\nSources: [One](https://a.example/1), [Two](https://b.example/2)"
    ]
    assert target.was_accepted  # the platform was told an answer is coming
    assert fake_chat_api.requests[0].json["message"] == "What is the answer?"


async def test_sources_show_false_shows_the_answer_without_its_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The answer."], sources=[("https://a.example/1", "One")])
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", reply="sources: {show: false}"
    ) as bridge:
        target = await platform(bridge).say("What is it?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["The answer."]


async def test_the_metrics_show_what_the_api_said_of_its_quota(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Fine."], usage={"credits_used": 1, "credits_remaining": 41})
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("How are you?")
        await asyncio.wait_for(target.ended.wait(), 10)
        lines = bridge.metrics.render().decode().splitlines()
    assert 'chat_bridge_backend_credits_remaining{backend="docs"} 41.0' in lines
    # X-RateLimit-Remaining after the one request.
    assert f'chat_bridge_backend_ratelimit_remaining{{backend="docs"}} {RATE_LIMIT - 1.0}' in lines


async def test_one_blank_line_stands_between_an_answer_and_its_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The answer.\n", "\n"], sources=[("https://a.example/1", "One")])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("What is it?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["The answer.\n\nSources: [One](https://a.example/1)"]


async def test_an_answered_message_writes_two_log_lines_and_a_refused_one_none(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["Fine."])
    caplog.set_level(logging.INFO)

    def relay_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name in ("chat_bridge.relay", "chat_bridge.intake")]

    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("How are you?")
        await asyncio.wait_for(target.ended.wait(), 10)
        await wait_for(lambda: len(relay_lines()) >= 2)
        # A refused message gets its notice and writes no line.
        refused = await platform(bridge).say("x" * 2001)
        await asyncio.wait_for(refused.ended.wait(), 10)
    assert refused.notices and len(fake_chat_api.requests) == 1
    answering, answered = relay_lines()
    assert answering.getMessage() == "answering"
    assert answered.getMessage() == "answered"
    key = answering.conversation  # type: ignore[attr-defined]
    assert key.startswith("console:") and answered.conversation == key  # type: ignore[attr-defined]
    assert answering.backend == answered.backend == "docs"  # type: ignore[attr-defined]
    assert answered.outcome == "answered"  # type: ignore[attr-defined]
    assert isinstance(answered.seconds, float)  # type: ignore[attr-defined]
    after = caplog.records[caplog.records.index(answered) + 1 :]
    assert [r.getMessage() for r in after if r.name.startswith("chat_bridge")] == []


# An admin's detail of a store failure: never shown in the chat.
STORE_DOWN = "PostgreSQL store db.internal:5432/chat: the connection failed while reading: reset"


def store_down(bridge: Bridge, method: str) -> None:
    """Make one of the store's methods fail as an unreachable store's do."""

    async def down(*args: object) -> NoReturn:
        raise StoreError(STORE_DOWN)

    setattr(bridge.store, method, down)


def failed_answers(bridge: Bridge, outcome: str = "failed") -> float:
    """chat_bridge_messages_answered_total of one outcome (its first series)."""
    for line in bridge.metrics.render().decode().splitlines():
        if line.startswith("chat_bridge_messages_answered_total{") and (
            f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_store_failing_before_the_answer_tells_the_asker_without_its_details(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store_down(bridge, "get_conversation")
        target = await platform(bridge).say("Anyone there?")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge) == 1
    assert target.notices == [StoreError.user_message]
    assert fake_chat_api.requests == []
    # The conversation is a field of its own (JSON logs filter on it).
    assert any("could not answer" in r.getMessage() and STORE_DOWN in r.getMessage()
               and getattr(r, "conversation", "").startswith("console:")
               for r in caplog.records)


async def test_a_store_failing_as_a_message_arrives_tells_the_asker_without_its_details(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store_down(bridge, "claim_event")
        target = await platform(bridge).say("Anyone there?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.notices == [StoreError.user_message]
    assert fake_chat_api.requests == []


async def test_a_store_failing_after_the_answer_still_shows_it_whole(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["All ", "of ", "it."], sources=[("https://a.example/1", "One")])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        save = bridge.store.save_conversation
        calls: list[Conversation] = []

        async def save_then_fail(conv: Conversation) -> None:
            calls.append(conv)
            if len(calls) > 1:  # the first makes the conversation; the next keeps the answer's
                raise StoreError(STORE_DOWN)
            await save(conv)

        bridge.store.save_conversation = save_then_fail  # type: ignore[method-assign]
        target = await platform(bridge).say("Everything, please")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge) == 0
    assert len(calls) == 2
    assert target.visible() == ["All of it.\n\nSources: [One](https://a.example/1)"]
    assert target.notices == []
    assert any("could not save the conversation" in r.getMessage() for r in caplog.records)


async def test_an_unexpected_failure_mid_answer_ends_the_reply_with_a_notice(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        async def breaks(req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
            yield Token("Half ")
            raise RuntimeError("a bug")

        bridge.relay.backends["docs"].stream = breaks  # type: ignore[method-assign]
        target = await platform(bridge).say("Go on")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge) == 1
    [text] = target.visible()
    assert text.startswith("Half") and UNEXPECTED in text
    assert any(r.exc_info and "could not answer" in r.getMessage() for r in caplog.records)


async def test_a_message_is_taken_once_its_event_is_claimed_and_its_record_written(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # What a platform that acknowledges deliveries (Slack) waits for: acknowledged
    # before, a question lost in a crash was neither answered nor marked interrupted.
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(20)], token_delay=0.05)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store, local = bridge.store, platform(bridge)
        claim, claiming, go_on = store.claim_event, asyncio.Event(), asyncio.Event()

        async def held(event_id: str, now: float) -> bool:
            claiming.set()
            await go_on.wait()  # a busy store
            return await claim(event_id, now)

        store.claim_event = held  # type: ignore[method-assign]
        target = await local.say("Kept?", event_id="ev-kept")
        taken = local.taken
        assert taken is not None
        await asyncio.wait_for(claiming.wait(), 5)
        assert not taken.is_set()
        go_on.set()
        await asyncio.wait_for(taken.wait(), 5)
        assert await store.event_claimed("ev-kept")
        [record] = await store.inflight_orphans(bridge.relay.owner, 0.0)
        assert record.address == target.address
        assert not target.ended.is_set()  # taken is not answered: the answer follows
        await asyncio.wait_for(target.ended.wait(), 10)


async def test_a_message_not_to_be_answered_is_taken_too(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Nothing waits for ever: a duplicate, chatter nobody asked the bot, a message a
    # store failure kept from being recorded (its asker told), one the stop cut.
    fake_chat_api.enqueue(tokens=["Once."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        local = platform(bridge)

        async def taken_at(text: str, **kw: Any) -> RecordingTarget:
            target = await local.say(text, **kw)
            assert local.taken is not None
            await asyncio.wait_for(local.taken.wait(), 5)
            return target

        first = await taken_at("Once?", event_id="ev-once")
        await asyncio.wait_for(first.ended.wait(), 10)
        await taken_at("Once?", event_id="ev-once")  # delivered again
        await taken_at("just chatting", mentioned=False)
        store_down(bridge, "inflight_begin")
        down = await taken_at("Anyone there?")
        await wait_for(lambda: down.notices == [StoreError.user_message])
        recording = asyncio.Event()

        async def never(*args: object) -> None:
            recording.set()
            await asyncio.Event().wait()  # a store that never answers

        bridge.store.inflight_begin = never  # type: ignore[method-assign]
        flags = []
        for text in ("cut?", "cut too?"):  # one place: the second waits behind the first
            await local.say(text, channel="C9", thread="T9")
            flags.append(local.taken)
        await asyncio.wait_for(recording.wait(), 5)
        assert not any(f is None or f.is_set() for f in flags)
        await bridge.relay.drain(0)
        assert all(f is not None and f.is_set() for f in flags)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["Once?"]


async def test_a_message_being_taken_as_the_drain_begins_is_answered_within_the_grace(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["All ", "done."], token_delay=0.05)
    db = tmp_path / "b.db"
    async with bridge_for(fake_chat_api, db, extra="limits: {shutdown_grace: 10}") as bridge:
        claim = bridge.store.claim_event
        taking, go_on = asyncio.Event(), asyncio.Event()

        async def held(event_id: str, now: float) -> bool:
            taking.set()
            await go_on.wait()  # a busy store: the message is still being taken
            return await claim(event_id, now)

        bridge.store.claim_event = held  # type: ignore[method-assign]
        target = await platform(bridge).say("Quick one?")
        await asyncio.wait_for(taking.wait(), 5)
        draining = asyncio.create_task(bridge.relay.drain(10))
        await wait_for(lambda: not bridge.relay.accepting)  # the drain has begun
        go_on.set()
        cancelled = await asyncio.wait_for(draining, 10)
    assert cancelled == 0
    assert target.visible() == ["All done."]


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
        fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 0.1}",
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


async def finished_with_its_record_stuck(
    bridge: Bridge, stuck: Callable[[str], bool], question: str = "Everything?",
    channel: str = "C1",
) -> RecordingTarget:
    """Ask and wait for the reply to finish while the store fails to remove the
    in-flight records `stuck` picks (the others are removed as usual)."""
    end = bridge.store.inflight_end

    async def blip(rec_id: str) -> None:
        if stuck(rec_id):
            raise StoreError(STORE_DOWN)
        await end(rec_id)

    bridge.store.inflight_end = blip  # type: ignore[method-assign]
    target = await platform(bridge).say(question, channel=channel)
    await asyncio.wait_for(target.ended.wait(), 10)
    await wait_for(lambda: bool(bridge.relay.unended))
    return target


async def test_a_second_daemon_on_the_sqlite_file_waits_for_the_first(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Started beside it (a deploy, a second `docker run`), it took the first one's
    # live replies for a dead process's and marked them interrupted.
    fake_chat_api.enqueue(tokens=["Still ", "being ", "answered."], token_delay=0.1)
    first = bridge_for(fake_chat_api, tmp_path / "b.db")
    second = bridge_for(fake_chat_api, tmp_path / "b.db")
    async with first:
        target = await platform(first).say("Long one?")
        await wait_for(lambda: target.visible() != [])
        starting = asyncio.create_task(second.__aenter__())
        try:
            await wait_for(lambda: "another chat-bridge (pid" in caplog.text)
            await asyncio.wait_for(target.ended.wait(), 10)
            assert not starting.done()
        except BaseException:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting  # started after all: closed, not left running
                await second.__aexit__(None, None, None)
            raise
    await asyncio.wait_for(starting, 10)  # the first stopped: the second starts
    await second.__aexit__(None, None, None)
    assert target.visible() == ["Still being answered."]


async def test_a_finished_reply_whose_record_the_store_failed_to_remove_is_never_marked(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        failures = iter([True])  # the first removal fails
        target = await finished_with_its_record_stuck(bridge, lambda _: next(failures, False))
        assert await bridge.recovery.recover() == 0  # as a restart or another replica would
        await bridge._beat_once()  # the heartbeat removes the record
        assert not bridge.relay.unended
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    assert target.visible() == ["The full answer."]


async def test_a_stop_retries_removing_the_records_of_finished_replies(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        down = [True]
        target = await finished_with_its_record_stuck(bridge, lambda _: down[0])
        # The store stays down past the retries: the stop says what that leaves behind.
        assert await bridge.close_records(0.1) is False
        assert "1 finished replies are still recorded as live" in caplog.text
        # The store comes back while a stop retries: the record goes.
        down[0] = False
        await bridge.drain()
        assert not bridge.relay.unended
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    assert target.visible() == ["The full answer."]


async def test_a_second_stop_signal_does_not_wait_on_a_failing_store(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await finished_with_its_record_stuck(bridge, lambda _: True)
        bridge.relay.hurry()  # "stopping at once"
        started = time.monotonic()
        await bridge.drain()
        assert time.monotonic() - started < 2.0  # not the 5 s of retries
    assert "1 finished replies are still recorded as live" in caplog.text


async def test_a_stop_that_cuts_a_reply_leaves_finished_ones_as_they_are(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    fake_chat_api.enqueue(tokens=["Half ", "and never more"], hang_after=1)
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 0.2}"
    ) as bridge:
        stuck: set[str] = set()

        def first_record(rec_id: str) -> bool:  # its removal keeps failing
            if not stuck:
                stuck.add(rec_id)
            return rec_id in stuck

        finished = await finished_with_its_record_stuck(bridge, first_record, "A?", "CA")
        cut = await platform(bridge).say("B?", channel="CB")
        await wait_for(lambda: any(t.startswith("Half") for t in cut.visible()))
        bridge.relay.hurry()
        await bridge.drain()
    assert finished.visible() == ["The full answer."]
    assert "interrupted" in cut.visible()[-1]


@pytest.mark.parametrize(
    ("script", "notice"),
    [
        # The API's reason, framed: the asker sees whose words they are.
        ({"status": 400, "body": {"error": "Message must be shorter"}},
         "The assistant could not take that question: Message must be shorter."),
        # A wrong URL is the admin's to mend, not the asker's.
        ({"status": 404, "body": {"error": "Not found"}},
         "The assistant is misconfigured (HTTP 404 from its URL). Tell an admin."),
        # An error event with no text of its own is still the API's error.
        ({"tokens": [], "error_after": 0, "error": ""}, "The assistant reported an error."),
    ],
)
async def test_what_the_asker_is_told_when_the_api_refuses_or_reports_an_error(
    fake_chat_api: FakeChatAPI, tmp_path: Path, script: dict[str, object], notice: str
) -> None:
    fake_chat_api.enqueue(**script)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A question?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible()[-1] == f"_⚠️ {notice}_"


async def test_a_stop_marks_cut_replies_within_the_platforms_limits_and_in_bounded_time(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "AFTER_GRACE_SECONDS", 0.3)
    fake_chat_api.enqueue(tokens=["Half ", "and never more"], hang_after=1)
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 0.1}",
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
        fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 2.5}",
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
        fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 3}",
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


async def test_a_store_outage_is_told_to_askers_only_not_to_chatter_in_threads(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every message in a thread of a routed channel was an ERROR and a failed answer
    # while the store was down, chatter in threads the bot is not in included. One
    # ERROR (for a minute) says it: any of them may be a follow-up left unanswered.
    def lines(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "chat_bridge.intake" and r.levelno == level]

    fake_chat_api.enqueue(tokens=["Back."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        up = {m: getattr(bridge.store, m) for m in ("get_conversation", "inflight_begin")}
        for method in up:
            store_down(bridge, method)
        # Not addressed to the bot: routing asks the store whether it continues a thread.
        chatter = [await platform(bridge).say(f"lunch {i}?", thread="7.000", mentioned=False)
                   for i in range(3)]
        taken = platform(bridge).taken
        assert taken is not None
        await asyncio.wait_for(taken.wait(), 10)  # the last, and so all three (in order)
        assert failed_answers(bridge) == 0
        [error] = lines(logging.ERROR)
        assert error.startswith("could not tell whether message ") and STORE_DOWN in error
        assert "a follow-up goes unanswered" in error
        assert sum("continues a conversation" in said for said in lines(logging.DEBUG)) == 2
        asker = await platform(bridge).say("Are you there?")
        await asyncio.wait_for(asker.ended.wait(), 10)
        again = await platform(bridge).say("Hello?", thread="8.000")
        await asyncio.wait_for(again.ended.wait(), 10)
        # Both askers counted and told; the store's failure logged once (for a minute).
        assert failed_answers(bridge) == 2
        assert len(lines(logging.ERROR)) == 1
        for method, call in up.items():
            setattr(bridge.store, method, call)
        back = await platform(bridge).say("And now?", thread="9.000")
        await asyncio.wait_for(back.ended.wait(), 10)
        assert "the store takes questions again, after 5 it could not" in lines(logging.INFO)
    assert all(t.notices == [] for t in chatter)
    assert asker.notices == again.notices == [StoreError.user_message]
    assert back.visible() == ["Back."]


async def test_cut_off_keeps_partial_text_and_says_so(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Half ", "an ", "answer ", "and"], cut_after=3)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Tell me everything")
        await asyncio.wait_for(target.ended.wait(), 10)
    [text] = target.visible()
    assert text.startswith("Half an answer")
    assert "cut off" in text


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


async def test_rate_limited_api_says_when_to_retry(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(status=429, reset_in=120)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Hello?")
        await asyncio.wait_for(target.ended.wait(), 10)
    [text] = target.visible()
    assert "rate limited" in text
    assert "try again in 2 min" in text


async def test_after_a_429_the_api_is_not_called_until_the_time_it_named(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Each question sent within the wait would be refused too, and counted
    # against the key by APIs that count refused calls.
    fake_chat_api.enqueue(status=429, reset_in=120)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        first = await platform(bridge).say("Hello?", user="U1", channel="C1")
        await asyncio.wait_for(first.ended.wait(), 10)
        later = [await platform(bridge).say(f"Question {n}?", user=f"U{n}", channel=f"C{n}")
                 for n in range(2, 5)]
        for target in later:
            await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge, "unavailable") == 3
    assert len(fake_chat_api.requests) == 1
    for target in later:
        [told] = [*target.visible(), *target.notices]
        assert "rate limited; please try again in 2 min" in told


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


async def test_session_survives_a_restart(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    db = tmp_path / "state" / "bridge.db"
    async with bridge_for(fake_chat_api, db) as bridge:
        target = await platform(bridge).say("first", thread="T1")
        await asyncio.wait_for(target.ended.wait(), 10)
    async with bridge_for(fake_chat_api, db) as bridge:
        target = await platform(bridge).say("again", thread="T1", mentioned=False)
        await asyncio.wait_for(target.ended.wait(), 10)
    first, second = fake_chat_api.requests
    assert first.json["session_id"].startswith("cb-")
    assert second.json["session_id"] == first.json["session_id"]


async def test_a_thread_the_api_opened_is_kept_when_its_first_answer_fails(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Chat Ur Data opens the thread with the question, before its run fails (or runs
    # out of time): the follow-up ("did you finish?") goes on in that thread.
    fake_chat_api.enqueue(run_status="failed", error="Vector store unavailable")
    fake_chat_api.enqueue(final="Done now.")
    text = make_config(fake_chat_api, tmp_path / "b.db").replace(
        "kind: chatmount", "kind: chaturdata\n    poll_interval: 1"
    ).replace(fake_chat_api.endpoint("chatmount"), fake_chat_api.endpoint("chaturdata"))
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        first = await platform(bridge).say("first", thread="T1")
        await asyncio.wait_for(first.ended.wait(), 10)
        assert "Vector store unavailable" in first.visible()[-1]
        second = await platform(bridge).say("did you finish?", thread="T1")
        await asyncio.wait_for(second.ended.wait(), 10)
    [thread] = fake_chat_api.threads
    posts = [r.json for r in fake_chat_api.requests if r.method == "POST"]
    assert posts == [{"message": "first"}, {"message": "did you finish?", "thread_id": thread}]


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
        "a long question", "how do I deploy?", "on Windows, please"
    ]


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


async def test_unmentioned_message_outside_a_known_thread_is_ignored(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        await p.say("just chatting", thread="T9", mentioned=False)
        target = await p.say("@bot a question", thread="T8")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["@bot a question"]


async def test_duplicate_event_is_answered_once(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        target = await p.say("hello", thread="T1", event_id="Ev1")
        await asyncio.wait_for(target.ended.wait(), 10)
        await p.say("hello", thread="T1", event_id="Ev1")
        second = await p.say("other", thread="T2", event_id="Ev2")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["hello", "other"]


@pytest.mark.parametrize("keyword", ["reset", "Reset"])  # as a phone writes it
async def test_reset_starts_a_new_session(
    fake_chat_api: FakeChatAPI, tmp_path: Path, keyword: str
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: user") as bridge:
        p = platform(bridge)
        notices = []
        for text in ("one", keyword, "two"):
            target = await p.say(text, is_dm=True, channel="D1")
            await asyncio.wait_for(target.ended.wait(), 10)
            notices += target.notices
    assert notices == ["Started a new conversation."]
    first, second = fake_chat_api.requests
    assert first.json["session_id"] != second.json["session_id"]


async def test_a_reset_during_an_answer_takes_effect_after_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["A ", "slow ", "answer."], token_delay=0.2)
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: user") as bridge:
        p = platform(bridge)
        first = await p.say("one", is_dm=True, channel="D1")
        await wait_for(lambda: bool(first.visible()))
        reset = await p.say("reset", is_dm=True, channel="D1")  # while "one" streams
        await wait_for(lambda: bool(reset.notices))
        assert first.visible() == ["A slow answer."]  # told once the answer was done
        second = await p.say("two", is_dm=True, channel="D1")
        await asyncio.wait_for(second.ended.wait(), 10)
    first_ask, second_ask = fake_chat_api.requests
    # Saving the answer to "one" did not bring the old session back.
    assert first_ask.json["session_id"] != second_ask.json["session_id"]


async def test_a_thread_reset_keeps_following_the_thread_with_a_new_session(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: thread") as bridge:
        p = platform(bridge)
        first = await p.say("one", thread="T1")
        await asyncio.wait_for(first.ended.wait(), 10)
        reset = await p.say("", thread="T1", command="reset")
        await wait_for(lambda: bool(reset.notices))
        # No mention: the thread is still one the bridge answers.
        second = await p.say("two", thread="T1", mentioned=False)
        await asyncio.wait_for(second.ended.wait(), 10)
    assert reset.notices == ["Started a new conversation."]
    first_ask, second_ask = fake_chat_api.requests
    assert second_ask.json["message"] == "two"
    assert first_ask.json["session_id"] != second_ask.json["session_id"]


async def test_a_reset_command_in_a_channel_of_thread_conversations_says_how_to_start_over(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("", command="reset")
        await wait_for(lambda: bool(target.notices))
    assert target.notices == [THREAD_RESET]


class RefusingEdits(RecordingTarget):
    """A place whose edits (those `refused` picks, by their text) fail with `error`;
    each is recorded, none shown."""

    def __init__(
        self, error: PlatformError, refused: Callable[[str], bool] = lambda text: True
    ) -> None:
        super().__init__()
        self.error, self.refused = error, refused

    async def edit(self, message_id: str, text: str) -> None:
        self.ops.append(Op("edit", message_id, text))
        if self.refused(text):
            raise self.error


def vanishing_place() -> RefusingEdits:
    """A channel deleted (or the bot removed) after the reply's first message."""
    return RefusingEdits(
        PlaceGone("Discord could not edit a message: the channel or message is gone.")
    )


async def test_a_reply_whose_place_is_gone_stops_the_answer(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: vanishing_place())
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A long one")
        await fake_chat_api.wait_disconnects(1)  # the API's stream is let go at once
        await wait_for(lambda: bridge.relay.live == 0)
    # One refused edit, nothing tried after it, and the indicators cleared once.
    assert [op.kind for op in target.ops] == ["begin", "post", "edit", "end"]


async def test_a_reply_gone_before_its_failure_is_shown_is_left_alone(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first message deleted, then the API failed: the failure's notice was
    # posted apart, into a place that had lost the reply.
    fake_chat_api.enqueue(tokens=["Partial ", "more ", "x"], error_after=2, error="boom",
                          token_delay=0.2)
    # Deleted just before its failure is shown.
    gone = PlaceGone("Slack refused chat.update: message_not_found")
    monkeypatch.setattr(LocalPlatform, "target",
                        lambda self, address: RefusingEdits(gone, lambda text: "⚠️" in text))
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A question")
        await wait_for(lambda: bridge.relay.live == 0 and any(
            "boom" in op.text for op in target.ops))
    assert target.ops[-1].kind == "end" and target.notices == []


async def test_a_message_slow_to_take_holds_up_no_answer_before_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The first question's answer waited for the second's intake; a stop meanwhile
    # left it never started and never ended.
    fake_chat_api.enqueue(tokens=["First ", "answer."])
    fake_chat_api.enqueue(tokens=["Second."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store = bridge.relay.store
        claim, calls, hold = store.claim_event, 0, asyncio.Event()

        async def slow_claim(event_id: str, at: float) -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                await hold.wait()
            return await claim(event_id, at)

        store.claim_event = slow_claim  # type: ignore[method-assign]
        first = await platform(bridge).say("one", thread="T1")
        second = await platform(bridge).say("two", thread="T1")
        await wait_for(lambda: first.visible() == ["First answer."])
        assert "Second." not in second.visible()  # answered while the second is still taken
        hold.set()
        await wait_for(lambda: second.visible()[-1:] == ["Second."] and bridge.relay.live == 0)
        assert first.visible() == ["First answer.", "Second."] and calls == 2


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


async def test_replies_waiting_to_show_their_end_count_against_the_queue(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their slots given back, replies waiting for a place's budget counted nowhere:
    # that place took, and paid for, every question asked.
    for _ in range(6):
        fake_chat_api.enqueue(tokens=["A ", "long ", "one ", "answer."], token_delay=0.1)
    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: RecordingTarget(
        edit_rate=Rate(1, 60.0), bucket="busy"))
    extra = "limits: {max_concurrent_streams: 1, queue_size: 1}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        targets = [await platform(bridge).say("q0", thread="T0", user="U0")]
        # Its answer read whole, its end waiting for the place's budget:
        await wait_for(lambda: any(
            job.reply is not None and job.reply.text == "A long one answer."
            for job in bridge.relay._jobs))
        for i in range(1, 6):
            targets.append(await platform(bridge).say(f"q{i}", thread=f"T{i}", user=f"U{i}"))
            await wait_for(lambda: len(fake_chat_api.requests) + sum(
                1 for t in targets if t.notices) == len(targets) or bridge.relay._queued > 0)
        await wait_for(lambda: len(fake_chat_api.requests) + sum(
            1 for t in targets if t.notices) == len(targets))
        assert len(fake_chat_api.requests) <= 2  # one streaming, one in the queue
        assert sum(1 for t in targets if t.notices) >= 4


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
    monkeypatch.setattr(LocalPlatform, "target",
                        lambda self, address: OrderedNotices(shown, second))
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await platform(bridge).say("x" * 5000)
        await platform(bridge).say("   ")
        await wait_for(lambda: len(shown) == 2)
    assert "long" in shown[0] and shown[1] == MENTION_HELP


async def test_a_reply_that_cannot_be_finished_is_said_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The final edit refused for good: the asker saw the first words and nothing
    # more, and was told nothing.
    fake_chat_api.enqueue(tokens=["Hello ", "world."], token_delay=0.1)
    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: RefusingEdits(
        PlatformRefused("Slack refused chat.update: cant_update_message")))
    monkeypatch.setattr(render, "FINAL_RETRIES", 0)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A question")
        await wait_for(lambda: bridge.relay.live == 0 and bool(target.notices))
    assert target.notices == [PlatformError.user_message]
    assert "cant_update_message" not in target.notices[0]


async def test_a_stop_cuts_short_a_reply_waiting_for_its_platform_and_marks_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of reach, the platform gets minutes to take the reply's end: a stop still
    # ends it within the grace, and marks it as any reply it cuts.
    fake_chat_api.enqueue(tokens=["Hello ", "world."], token_delay=0.1)
    unreachable = RefusingEdits(PlatformError("Could not reach the platform to edit a message."))

    def target(self: LocalPlatform, address: Address) -> RefusingEdits:
        unreachable.address = address  # where a stop's mark finds it
        return unreachable

    monkeypatch.setattr(LocalPlatform, "target", target)
    extra = "limits: {shutdown_grace: 0.2}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        await platform(bridge).say("A question")
        await wait_for(lambda: [op.text for op in unreachable.ops if op.kind == "edit"].count(
            "Hello world.") >= 2)  # the whole answer is here, and being tried again
        assert bridge.relay.live == 1
        started = time.monotonic()
        await bridge.drain()
        assert time.monotonic() - started < 3.0
        assert bridge.relay.live == 0
    # Marked as a stop marks what it cut (here refused too: the next start cannot
    # find it either, as before).
    assert any(INTERRUPTED in op.text for op in unreachable.ops if op.kind == "edit")


async def test_two_bots_reached_by_one_person_keep_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    url = fake_chat_api.endpoint("chatmount")
    text = f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  hr: {{kind: chatmount, url: {url}, api_key: "${{KEY}}"}}
  docs: {{kind: chatmount, url: {url}, api_key: "${{KEY}}"}}
console: {{}}
routes:
  - {{platform: console, channels: [C1], backend: hr, session: user}}
  - {{platform: console, channels: [C2], backend: docs, session: user}}
reply: {{edit_interval: 0.05}}
"""
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        for channel in ("C1", "C2", "C1"):  # the HR bot, the docs bot, the HR bot again
            target = await platform(bridge).say("A question", channel=channel)
            await asyncio.wait_for(target.ended.wait(), 10)
    hr, docs, hr_again = (r.json["session_id"] for r in fake_chat_api.requests)
    assert hr == hr_again != docs  # each bot's session is its own, and kept


def queue_depth(bridge: Bridge) -> float:
    [line] = [line for line in bridge.metrics.render().decode().splitlines()
              if line.startswith("chat_bridge_queue_depth ")]
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


def stateless_bridge(fake: FakeChatAPI, db: Path, options: str = "") -> Bridge:
    """A bridge whose backend keeps no conversation (openai: the bridge sends the
    history), one conversation per console user."""
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  local: {{kind: openai, url: {fake.endpoint("openai")}, model: m, api_key: "${{KEY}}"{options}}}
console: {{}}
routes: [{{platform: console, backend: local, session: user}}]
reply: {{edit_interval: 0.05}}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


async def test_the_history_kept_is_the_backends_last_turns(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for word in ("One", "Two", "Three"):
        fake_chat_api.enqueue(tokens=[f"{word}."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db", ", history: 1") as bridge:
        for question in ("one?", "two?", "three?"):
            target = await platform(bridge).say(question, channel="C1")
            await asyncio.wait_for(target.ended.wait(), 10)
    with contextlib.closing(sqlite3.connect(tmp_path / "b.db")) as db:
        kept = [content for (content,) in db.execute("SELECT content FROM history ORDER BY seq")]
    sent = [m["content"] for m in fake_chat_api.requests[2].json["messages"]]
    assert sent == ["two?", "Two.", "three?"]
    assert kept == ["three?", "Three."]


async def test_an_empty_answer_is_not_kept_in_the_history(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=[])  # "(no answer)"
    fake_chat_api.enqueue(tokens=["Second."])
    fake_chat_api.enqueue(tokens=["Third."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db") as bridge:
        for question in ("first?", "second?", "third?"):
            target = await platform(bridge).say(question, channel="C1")
            await asyncio.wait_for(target.ended.wait(), 10)
    sent = [m["content"] for m in fake_chat_api.requests[2].json["messages"]]
    assert sent == ["second?", "Second.", "third?"]


async def test_a_source_holding_half_an_emoji_is_shown_mended(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Sent as a JSON "\ud83d" escape by a server cutting UTF-16 pairs: encoding the
    # URL failed, and the finished answer ended "something went wrong".
    fake_chat_api.enqueue(tokens=["Bridges carry roads."],
                          sources=[("https://a.example/\ud83d", "Roads \ud83d")])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Bridges?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == [
        "Bridges carry roads.\n\nSources: [Roads \ufffd](https://a.example/\ufffd)"
    ]


async def test_a_whole_answer_holding_half_an_emoji_is_shown_mended(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The whole answer an API sends at its end wins over its tokens: mended as they are.
    fake_chat_api.enqueue(tokens=["Hi "], final="Hi \ud83d there")
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Hello?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["Hi \ufffd there"]


async def test_an_emoji_cut_in_halves_and_a_nul_are_kept_as_text(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A server cutting text by UTF-16 units sends an emoji's halves in two
    # tokens; no store keeps a half (or a NUL), and the turn was lost.
    fake_chat_api.enqueue(tokens=["Smile \ud83d", "\ude00 done", "\x00.", " \ud83d"],
                          token_delay=0.01)
    fake_chat_api.enqueue(tokens=["Again."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db") as bridge:
        first = await platform(bridge).say("Smile?", channel="C1")
        await asyncio.wait_for(first.ended.wait(), 10)
        second = await platform(bridge).say("And again?", channel="C1")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert first.visible() == ["Smile \U0001f600 done. \ufffd"]
    sent = [m["content"] for m in fake_chat_api.requests[1].json["messages"]]
    assert sent == ["Smile?", "Smile \U0001f600 done. \ufffd", "And again?"]


async def test_answers_cut_by_a_dropped_connection_do_not_open_the_circuit(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Half ", "an ", "answer"], drop_after=2)
    fake_chat_api.enqueue(tokens=["Whole."])
    extra = "limits: {circuit: {failures: 1, cooldown: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        cut = await platform(bridge).say("One?", thread="T1")
        await asyncio.wait_for(cut.ended.wait(), 10)
        whole = await platform(bridge).say("Two?", thread="T2")
        await asyncio.wait_for(whole.ended.wait(), 10)
    assert "cut off" in cut.visible()[0]
    assert whole.visible() == ["Whole."]  # the backend answers: it is not "unavailable"


async def test_a_bridge_out_of_open_files_does_not_blame_the_backend(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # EMFILE as the connection's socket is made: the API was never asked. It was
    # logged as a transport error, the asker told the assistant could not be
    # reached, and the healthy backend's circuit opened for everyone after.
    full = True
    start_connection = aiohappyeyeballs.start_connection

    async def out_of_files(*args: Any, **kwargs: Any) -> socket.socket:
        if full:
            raise OSError(errno.EMFILE, "Too many open files")
        return await start_connection(*args, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", out_of_files)
    fake_chat_api.enqueue(tokens=["Back."])
    extra = "limits: {circuit: {failures: 1, cooldown: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        told = []
        for n in range(2):
            target = await platform(bridge).say(f"q{n}?", thread=f"T{n}")
            await asyncio.wait_for(target.ended.wait(), 10)
            told.append(target.visible()[-1] if target.visible() else target.notices[-1])
        assert bridge.relay.circuits["docs"].state == "closed"
        full = False
        target = await platform(bridge).say("q2?", thread="T2")
        await asyncio.wait_for(target.ended.wait(), 10)
    overloaded = "The bridge is overloaded right now; please try again shortly."
    assert [overloaded in said for said in told] == [True, True], told
    assert target.visible() == ["Back."]
    said = [r.getMessage() for r in caplog.records if r.name == "adapters.apis"]
    assert len(said) == 4, said  # two tries each
    assert said[0].startswith("attempt 1 of 2: the bridge is out of open files (its limit")
    assert "`ulimit -n`" in said[0] and "limits.max_concurrent_streams" in said[0]


async def test_a_start_with_too_few_open_files_for_the_streams_warns(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources.resource, "getrlimit", lambda _: (256, 256))
    extra = "limits: {max_concurrent_streams: 400}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra):
        pass
    warned = [r for r in caplog.records if r.getMessage().startswith("open files:")]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert warned[0].getMessage() == (
        "open files: the limit is 256, and 400 answers streaming at once "
        "(limits.max_concurrent_streams) need about 900; raise it (`ulimit -n`, "
        "docker's --ulimit nofile=) or lower limits.max_concurrent_streams"
    )


async def test_a_start_with_enough_open_files_says_nothing_of_them(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources.resource, "getrlimit", lambda _: (900, 900))
    extra = "limits: {max_concurrent_streams: 400}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra):
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_listener_out_of_open_files_warns_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Loop:
        now = 0.0
        passed: list[dict[str, Any]] = []

        def time(self) -> float:
            return self.now

        def default_exception_handler(self, context: dict[str, Any]) -> None:
            self.passed.append(context)

    loop, handler = Loop(), resources.LoopExceptions()
    failed = {"message": resources.ACCEPT_OUT_OF_RESOURCE,
              "exception": OSError(errno.EMFILE, "Too many open files")}
    for at in (0.0, 1.0, 2.0, 59.0, 61.0):
        loop.now = at
        handler(loop, failed)  # type: ignore[arg-type]
    other = {"message": "Task exception was never retrieved"}
    handler(loop, other)  # type: ignore[arg-type]
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("listener:")]
    assert [w.split(" (")[0] for w in warned] == [
        "listener: accept() failed 1 time(s)", "listener: accept() failed 4 time(s)"
    ]
    assert "(EMFILE)" in warned[0] and "`ulimit -n`" in warned[0]
    assert loop.passed == [other]


async def test_a_circuit_opened_by_a_misconfigured_address_does_not_say_to_wait(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # https:// to a plain-HTTP port: the TLS handshake fails, and only an admin can
    # mend it. Once the circuit opened, askers were told to try again in 29 s.
    text = make_config(fake_chat_api, tmp_path / "b.db",
                       extra="limits: {circuit: {failures: 2, cooldown: 60}}")
    config = parse_config(text.replace("url: http://", "url: https://"),
                          env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        told = []
        for n in range(3):
            target = await platform(bridge).say(f"q{n}?", thread=f"T{n}")
            await asyncio.wait_for(target.ended.wait(), 10)
            told.append(target.visible()[-1] if target.visible() else target.notices[-1])
        assert bridge.relay.circuits["docs"].state == "open"
    misconfigured = "The assistant is misconfigured (its address could not be reached)."
    assert [misconfigured in said for said in told] == [True, True, True], told
    assert fake_chat_api.requests == []


def test_the_interrupted_mark_is_not_put_inside_a_code_block_left_open() -> None:
    target = RecordingTarget()  # formats as Discord does: a fence is left as it is
    edit = interrupted_edit(target, "Run this:\n```python\nimport os\n", ["m1"])
    assert edit == ("m1", f"Run this:\n```python\nimport os\n```\n\n{INTERRUPTED}")


async def test_the_rate_limit_counts_a_user_in_every_server_and_dm(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A Discord user is the same person in each server and in DMs: one allowance.
    extra = "limits: {rate_limit: {messages: 1, per: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        first = await platform(bridge).say("one", thread="T1", workspace="G1")
        await asyncio.wait_for(first.ended.wait(), 10)
        second = await platform(bridge).say("two", thread="T2", workspace="@dm")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert len(fake_chat_api.requests) == 1
    assert "faster than I can answer" in second.notices[0]


async def test_per_user_rate_limit_says_when(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    extra = "limits: {rate_limit: {messages: 1, per: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        first = await p.say("one", thread="T1")
        await asyncio.wait_for(first.ended.wait(), 10)
        second = await p.say("two", thread="T2")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert len(fake_chat_api.requests) == 1
    assert second.notices[0].startswith("You are sending messages faster than I can answer")


async def ask_and_wait(p: LocalPlatform, text: str, **kw: Any) -> RecordingTarget:
    target = await p.say(text, **kw)
    await asyncio.wait_for(target.ended.wait(), 10)
    return target


async def test_a_refusal_that_asks_the_backend_nothing_does_not_count_against_the_rate_limit(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(2):  # the first try, and its retry
        fake_chat_api.enqueue(status=503)
    extra = ("limits: {rate_limit: {messages: 2, per: 60}, "
             "circuit: {failures: 1, cooldown: 60}}")
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        await ask_and_wait(p, "one", thread="T1")  # fails: the circuit opens
        refused = await ask_and_wait(p, "two", thread="T2")
        assert refused.notices[0].startswith("The assistant is unavailable right now")
        bridge.relay.circuits["docs"].success()  # the backend is back
        third = await ask_and_wait(p, "three", thread="T3")
    assert third.notices == [] and third.visible() == ["Hello from the fake."]


async def test_an_answer_that_does_not_begin_in_time_is_not_told_to_try_again(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A reasoning model thinking past `first_byte`: its asker was told to try again
    # (cut, and paid, the same way again), and once the circuit opened, that the
    # backend was unavailable.
    fake_chat_api.enqueue(tokens=["Late."], first_delay=30)
    text = make_config(fake_chat_api, tmp_path / "b.db",
                       extra="limits: {circuit: {failures: 1, cooldown: 60}}")
    timeouts = "    timeouts: {connect: 0.5, first_byte: 0.5}\n"
    text = text.replace("    retries:", timeouts + "    retries:")
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        p = platform(bridge)
        cut = await ask_and_wait(p, "hard one", thread="T1")
        refused = await ask_and_wait(p, "another", thread="T2")
    told = cut.visible()[-1:] + cut.notices[-1:]
    assert len(told) == 1 and told[0].endswith(
        "The assistant took longer than 1 s to begin its answer; an admin can let it take "
        "longer._"
    )
    assert refused.notices[0].startswith("The assistant is too slow to answer right now; ")


async def test_the_wait_a_rate_limit_tells_is_rounded_up(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    extra = "limits: {rate_limit: {messages: 1, per: 2.9}}"  # the first answer's 0.9 s
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        await ask_and_wait(p, "one", thread="T1")
        second = await ask_and_wait(p, "two", thread="T2")
    # Trying again after 2 s would be refused again.
    assert second.notices == [
        "You are sending messages faster than I can answer; try again in 3 s."
    ]


@pytest.mark.parametrize(("wait", "told"), [
    (0.2, "1 s"), (89.0, "89 s"), (89.5, "2 min"), (3412.0, "57 min"), (5340.0, "89 min"),
    (5340.5, "2 h"), (1e12, "277778 h"),
])
def test_a_wait_is_told_in_the_words_every_notice_uses(wait: float, told: str) -> None:
    # A user's own limit said "try again in 3412 s" where a 429 said "57 min".
    assert wait_words(wait) == told


async def test_while_one_question_finds_out_if_the_backend_is_back_others_are_told_shortly(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(2):  # the first try, and its retry
        fake_chat_api.enqueue(status=503)
    # The probe: its answer takes a moment to begin.
    fake_chat_api.enqueue(tokens=["Back ", "again."], first_delay=0.5)
    extra = ("limits: {circuit: {failures: 1, cooldown: 0.05}, "
             "rate_limit: {messages: 1, per: 60}}")
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        await ask_and_wait(p, "one", thread="T1")
        circuit = bridge.relay.circuits["docs"]
        await wait_for(lambda: circuit.state == "half-open")
        probe = await p.say("probe", thread="T2", user="U3")
        await wait_for(lambda: circuit.probing)
        other = await ask_and_wait(p, "other", thread="T3", user="U2")
        await asyncio.wait_for(probe.ended.wait(), 10)  # the backend is back
        again = await ask_and_wait(p, "other again", thread="T4", user="U2")
    assert other.notices == ["The assistant is unavailable right now; please try again shortly."]
    # Told to try again shortly, and doing so, is not "too fast".
    assert again.notices == [] and again.visible() == ["Hello from the fake."]


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
        noisy = [await p.say(f"question {i}", channel="C-NOISY", user="U-NOISY")
                 for i in range(8)]
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
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", route="session: channel"
    ) as bridge:
        p = platform(bridge)
        busy = [await p.say(f"q{u}.{i}", channel="C-BUSY", user=f"U{u}")
                for u in range(32) for i in range(10)]
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


async def test_a_route_with_its_own_rate_limit_counts_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # HOURLY has its own limit; the other two routes share the global one.
    routes = """
  - {platform: console, channels: [HOURLY], backend: docs,
     rate_limit: {messages: 2, per: 3600}}
  - {platform: console, channels: [O1], backend: docs}
  - {platform: console, backend: docs}
"""
    text = make_config(fake_chat_api, tmp_path / "b.db",
                       extra="limits: {rate_limit: {messages: 2, per: 3.0}}")
    text = text.replace("  - platform: console\n    backend: docs\n", routes)
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    assert len(config.routes) == 3

    async with Bridge(config, TEST_REGISTRY) as bridge:
        p = platform(bridge)

        async def ask(text: str, channel: str) -> list[str]:
            target = await p.say(text, channel=channel, thread=text)
            await asyncio.wait_for(target.ended.wait(), 10)
            return target.notices

        assert await ask("o1", "O1") == []
        assert await ask("o2", "O2") == []
        counted = time.monotonic()
        assert await ask("o3", "O1")  # the global limit spans the routes without their own
        # Messages elsewhere do not count against HOURLY's limit...
        assert await ask("h1", "HOURLY") == []
        assert await ask("h2", "HOURLY") == []
        assert await ask("h3", "HOURLY")
        await asyncio.sleep(max(0.0, counted + 3.05 - time.monotonic()))
        # ...and answering elsewhere, once the global window has passed, does not
        # free HOURLY's hour.
        assert await ask("o4", "O1") == []
        assert await ask("h4", "HOURLY")
    asked = [r.json["message"] for r in fake_chat_api.requests]
    assert asked == ["o1", "o2", "h1", "h2", "o4"]


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


def test_a_rate_limiter_keeps_long_windows_when_it_forgets_quiet_users() -> None:
    limiter = UserRateLimiter()
    assert limiter.check("U1|hourly", 1, 3600.0, 0.0) is None
    for n in range(10_001):  # past 10,000 counters, quiet ones are forgotten
        assert limiter.check(f"U{n}", 5, 1.0, 10.0) is None
    assert limiter.check("U1|hourly", 1, 3600.0, 20.0) == 3580.0


def test_a_rate_limiter_forgets_each_counter_by_its_own_window() -> None:
    limiter = UserRateLimiter()
    assert limiter.check("U0|daily", 5, 86400.0, 0.0) is None
    for n in range(9_999):  # quiet after a second, their window
        assert limiter.check(f"U{n}", 5, 1.0, 0.0) is None
    assert limiter.check("U-new", 5, 1.0, 10.0) is None  # the sweep: a daily one is kept
    assert len(limiter._seen) == 2


def test_a_rate_limiter_with_many_askers_in_a_long_window_does_not_sweep_at_every_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = UserRateLimiter()
    sweeps = 0
    seen = limiter.check

    def counted(key: str, messages: int, per: float, now: float) -> float | None:
        nonlocal sweeps
        before = limiter._seen
        result = seen(key, messages, per, now)
        sweeps += limiter._seen is not before  # a sweep builds the table anew
        return result

    monkeypatch.setattr(limiter, "check", counted)
    for n in range(40_000):  # a community with a daily quota: nobody is quiet yet
        assert limiter.check(f"U{n}", 20, 86400.0, float(n)) is None
    assert sweeps <= 3  # at 10,000, 20,000 and 40,000 counters, not at every message


async def test_ask_prints_the_answer_and_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Open ", "9 to 5."], sources=[("https://x.example/h", "Hours")])
    config = tmp_path / "config.yaml"
    config.write_text(make_config(fake_chat_api, tmp_path / "b.db").replace("console: {}\n", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error", "-m", "adapters", "ask", "-c", str(config),
        "--backend", "docs", "When are you open?",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Warning" not in err.decode(), err.decode()
    assert out.decode() == "Open 9 to 5.\n\nSources:\n  1. Hours — https://x.example/h\n"
    assert fake_chat_api.api_key not in out.decode() + err.decode()


async def test_ask_prints_an_emoji_cut_in_halves_as_one(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A half of a UTF-16 pair cannot be written to a terminal: `ask` stopped with a
    # traceback, losing what it had shown.
    fake_chat_api.enqueue(tokens=["Smile \ud83d", "\ude00 ok", " \ud83d"], token_delay=0.01)
    config = tmp_path / "config.yaml"
    config.write_text(make_config(fake_chat_api, tmp_path / "b.db").replace("console: {}\n", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error", "-m", "adapters", "ask", "-c", str(config),
        "--backend", "docs", "Smile?",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Warning" not in err.decode(), err.decode()
    assert out.decode() == "Smile \U0001f600 ok \ufffd\n"


@pytest.mark.parametrize(
    ("case", "code", "verdict", "hint"),
    [
        ("ok", 0, "ok", None),
        # The admin is told which key to look at, not only what an asker would be.
        # With what the API said (no log line says it: the relay's names the setting).
        ("bad key", 1, "auth failed", "\n  check backends.docs.api_key\n"
         "  HTTP 401 from the chat API: Invalid or missing API key\n"),
        ("nobody listening", 1, "unreachable", "\n  check backends.docs.url (http://127.0.0.1:"),
        # Not "auth failed ... check backends.docs.api_key": the key never reached the API.
        ("proxy refused", 1, "proxy refused", "check the user:password in HTTP_PROXY"),
        # The proxy's deny page for a host not on its list: not the API refusing the key.
        ("proxy denies", 1, "proxy refused", "answered HTTP 403 Forbidden to the request for "
         "chat.example.invalid:80: check that the proxy allows that host"),
        # Not "check backends.docs.url": that is right, the proxy is down.
        ("proxy down", 1, "unreachable", "could not be reached (connection refused): check "
         "HTTP_PROXY, and that the proxy is running"),
    ],
)
async def test_check_probe_reports_each_backend(
    fake_chat_api: FakeChatAPI, tmp_path: Path, case: str, code: int, verdict: str,
    hint: str | None,
) -> None:
    text = make_config(fake_chat_api, tmp_path / "b.db").replace("console: {}\n", "")
    if case == "nobody listening":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        text = text.replace(fake_chat_api.url, f"http://127.0.0.1:{port}")
    through_proxy = case.startswith("proxy")
    if through_proxy:  # a host the proxy is asked for (loopback goes direct)
        text = text.replace(fake_chat_api.url, "http://chat.example.invalid")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    key = "wrong-key" if case == "bad key" else fake_chat_api.api_key
    env = {"KEY": key, "PATH": "/usr/bin:/bin"}
    refuses = 403 if case == "proxy denies" else None
    credentials = "corp:right-password" if case == "proxy refused" else None
    async with FakeProxy(credentials=credentials, refuses=refuses) as proxy:
        if through_proxy:
            where = proxy.url.removeprefix("http://")
            if case == "proxy down":
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    where = f"127.0.0.1:{sock.getsockname()[1]}"
            env["HTTP_PROXY"] = f"http://corp:expired-s3cret@{where}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-W", "error", "-m", "adapters", "check", "--probe", "-c", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == code
    assert "expired-s3cret" not in out.decode() + err.decode()
    assert "Warning" not in err.decode(), err.decode()
    if through_proxy:
        assert "api_key" not in out.decode() and "check backends" not in out.decode()
    if case in ("proxy refused", "proxy denies"):
        assert proxy.seen
    assert f"backend docs: {verdict}" in out.decode()
    assert (hint is None and "check backends" not in out.decode()) or (
        hint is not None and hint in out.decode()
    )


async def test_check_probe_gives_up_on_a_stuck_backend_and_probes_the_next(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A backend that sent keep-alives and never an answer held the probe for good:
    # no verdict, and the backends after it were never probed.
    fake_chat_api.enqueue(first_delay=3600, keepalive_every=0.1)
    fine = FakeChatAPI(api_key=fake_chat_api.api_key)
    await fine.start()
    try:
        block = (
            "  stuck:\n    kind: chatmount\n"
            f"    url: {fake_chat_api.endpoint('chatmount')}\n"
            "    api_key: ${KEY}\n"
            "    timeouts: {connect: 0.5, first_byte: 1, idle: 0.5}\n"
        )
        text = make_config(fine, tmp_path / "b.db").replace("console: {}\n", "")
        config = tmp_path / "config.yaml"
        config.write_text(text.replace("backends:\n", "backends:\n" + block))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-W", "error", "-m", "adapters", "check", "--probe", "-c", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
            env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert fine.requests  # probed too
    finally:
        await fine.close()
    assert proc.returncode == 1, err.decode()
    lines = out.decode().splitlines()
    verdicts = [line for line in lines if line.startswith("backend ")]
    assert verdicts == [  # in the config's order
        "backend stuck: unreachable (The assistant did not begin an answer within 2 s.)",
        "backend docs: ok",
    ]
    # It is running, and connected: the admin is told where to look all the same.
    hint = lines[lines.index(verdicts[0]) + 1]
    assert hint == (
        f"  check backends.stuck.url ({fake_chat_api.endpoint('chatmount')}) and that the "
        "server answers in time (backends.stuck.timeouts)"
    )
    await fake_chat_api.wait_disconnects(1)


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
        "hello", "q1", "q2", "q3", "and me?"
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
        "q1", "q2", "urgent", "q3", "q4", "q5", "q6"
    ]


async def test_attachment_only_message_gets_help(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("   ", thread="T1")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.notices == ["Ask me a question in words, and I will answer here."]
    assert fake_chat_api.requests == []


async def test_a_question_written_in_the_thread_of_an_empty_mention_is_answered(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # "@bot" alone, sent too early: the bot says it will answer there, and does.
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        empty = await p.say("   ", thread="T1")
        await wait_for(lambda: empty.notices)
        asked = await p.say("how do I deploy?", thread="T1", mentioned=False)
        await wait_for(lambda: asked.visible() == ["Answered."])
    assert empty.notices[0] == HELP_TEXT
    assert [r.json["message"] for r in fake_chat_api.requests] == ["how do I deploy?"]


@pytest.mark.parametrize(
    ("route", "thread", "follow_ups"),
    [("", None, True), ("session: user", "T1", True), ("", "T1", False)],
    ids=["outside-a-thread", "no-thread-sessions", "unmentioned-not-delivered"],
)
async def test_an_empty_mention_where_no_thread_is_followed_asks_for_a_mention(
    fake_chat_api: FakeChatAPI, tmp_path: Path, route: str, thread: str | None,
    follow_ups: bool,
) -> None:
    # A message there without a mention would not be answered: the bot says so.
    fake_chat_api.enqueue(tokens=["Sentinel."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route=route) as bridge:
        p = platform(bridge)
        empty = await p.say("   ", thread=thread, follow_ups=follow_ups)
        await wait_for(lambda: empty.notices)
        place = thread or "1.000"  # the empty mention's own thread, were one opened
        await p.say("how do I deploy?", thread=place, mentioned=False)
        sentinel = await p.say("sentinel", thread=place)  # taken after it
        await wait_for(lambda: sentinel.visible() == ["Sentinel."])
    assert empty.notices == [MENTION_HELP]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["sentinel"]


async def test_an_empty_mention_edited_to_hold_its_question_is_answered_once(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Slack delivers the edit with the message's own event id.
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        empty = await p.say("   ", thread="T1", event_id="Ev1")
        await wait_for(lambda: empty.notices)
        await p.say("   ", thread="T1", event_id="Ev1")  # delivered again: told once
        edited = await p.say("how do I deploy?", thread="T1", event_id="Ev1")
        await wait_for(lambda: edited.visible() == ["Answered."])
        await p.say("how do I deploy?", thread="T1", event_id="Ev1")  # and again
        fake_chat_api.enqueue(tokens=["Sentinel."])
        await p.say("sentinel", thread="T1")  # taken after it
        await wait_for(lambda: edited.visible() == ["Answered.", "Sentinel."])
    assert empty.notices == [HELP_TEXT]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["how do I deploy?", "sentinel"]


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


async def test_a_picture_nobody_addressed_to_the_bot_gets_no_help(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Answered."])
    route = "trigger: all"  # a channel the bot answers without being mentioned
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route=route) as bridge:
        picture = await platform(bridge).say("", mentioned=False)
        asked = await platform(bridge).say("A question?", mentioned=False)
        await asyncio.wait_for(asked.ended.wait(), 10)
    assert asked.visible() == ["Answered."]
    assert picture.ops == []  # the screenshot or sticker drew no reply


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


def test_user_rate_limit_window_slides() -> None:
    limiter = UserRateLimiter()
    assert limiter.check("U1", 2, 10.0, 0.0) is None
    assert limiter.check("U1", 2, 10.0, 4.0) is None
    assert limiter.check("U1", 2, 10.0, 6.0) == 4.0  # the first message leaves at 10
    assert limiter.check("U2", 2, 10.0, 6.0) is None  # each user has their own window
    assert limiter.check("U1", 2, 10.0, 10.0) is None  # it left: one more fits
    assert limiter.check("U1", 2, 10.0, 11.0) == 3.0  # 4.0 and 10.0 are in the window
    assert limiter.check("U1", 2, 10.0, 30.0) is None  # both left at once


async def test_the_chat_api_pool_has_a_connection_for_every_stream(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # With more streams than connections, answers past the pool's size waited for a
    # connection and failed to connect in time.
    extra = "limits: {max_concurrent_streams: 1500, queue_size: 10}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        transport = bridge.chat_http._transport  # the client's own transport
        assert isinstance(transport, AiohttpTransport)
        assert transport.max_connections >= 1500


async def test_a_finished_reply_is_freed_while_its_connection_stays_open(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The chat API's connection, kept open for the next request, keeps a copy of
    # the context it was last read in; that copy held the whole reply, its text
    # and its platform target, for as long as the connection lived. The
    # heartbeat, which beats here while the answer streams, held the last reply
    # it saw until it saw another.
    fake_chat_api.enqueue(tokens=["a ", "b ", "c"], token_delay=0.05)
    extra = "limits: {heartbeat_interval: 0.02}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        target = await platform(bridge).say("Hello?")
        await asyncio.wait_for(target.ended.wait(), 10)
        await wait_for(lambda: bridge.relay.live == 0)
        transport = bridge.chat_http._transport
        assert isinstance(transport, AiohttpTransport) and transport._session is not None
        assert transport._session.connector is not None
        pooled = sum(len(c) for c in transport._session.connector._conns.values())
        assert pooled == 1  # the connection waits in the pool
        gc.collect()
        assert [o for o in gc.get_objects() if isinstance(o, LiveReply)] == []


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
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="reply_in_thread: true",
                          extra=extra) as bridge:
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


async def test_a_person_sending_refused_messages_is_told_three_times_a_minute(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where refusals are posted in the channel, a flood of them would take the
    # channel's post budget from everyone else's answers.
    made = LocalPlatform.target

    def posting_notices(self: LocalPlatform, address: Address) -> RecordingTarget:
        target = made(self, address)
        target.limits = replace(target.limits, notices_post=True)
        return target

    monkeypatch.setattr(LocalPlatform, "target", posting_notices)
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        say = platform(bridge).say
        flood = [await say(text, user="U1", thread=f"T{i}")
                 for i, text in enumerate(["   ", "x" * 3000, "   ", "   ", "x" * 3000])]
        # Said all the same: a command's answer (private; unanswered, the platform
        # shows it failed) and a refusal in a DM.
        command = await say("x" * 3000, user="U1", thread="T5", command="ask")
        in_dm = await say("   ", user="U1", channel="D1", is_dm=True)
        other = await say("   ", user="U2", thread="T9")
        asked = await say("A question?", user="U3", thread="T10")
        await asyncio.wait_for(asked.ended.wait(), 10)
        await wait_for(lambda: caplog.text.count("refusal not told again") == 2
                       and sum(len(t.notices) for t in flood) == 3)
        await wait_for(lambda: [] not in (other.notices, command.notices, in_dm.notices))
    assert sorted(len(t.notices) for t in flood) == [0, 0, 1, 1, 1]
    assert other.notices == [HELP_TEXT]  # someone else is still told
    assert in_dm.notices == [HELP_TEXT]
    assert "3,000 characters long" in command.notices[0]
    assert asked.visible() == ["Answered."]


async def test_notices_draw_on_the_bot_wide_budget(
    fake_chat_api: FakeChatAPI, tmp_path: Path, bot_requests: list[float]
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        asked = [await platform(bridge).say("   ", channel=f"C{i}", user=f"U{i}")
                 for i in range(6)]
        await wait_for(lambda: all(t.notices for t in asked))
    times = [op.at for t in asked for op in t.ops if op.kind == "notice"]
    assert len(times) == 6  # each asker was told to ask in words...
    # ...within the bot's budget.
    assert max_in_window(times, _ThreadingTarget.BOT.per) <= _ThreadingTarget.BOT.count


def test_a_platforms_failure_is_told_without_its_method_or_code() -> None:
    # A notice of it (a refusal whose post failed) showed "Slack refused
    # chat.postEphemeral: internal_error" to the asker, on Discord in the channel.
    assert told(PlatformError("Slack refused chat.postEphemeral: internal_error")) == (
        PlatformError.user_message
    )
    assert told(PlaceGone("Slack refused chat.update: message_not_found")) == (
        PlaceGone.user_message
    )
    assert told(StoreError("database is locked")) == StoreError.user_message
    assert told(KeyError("x")) == UNEXPECTED


async def test_an_answer_past_its_length_limit_is_stopped_with_a_notice(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A model repeating itself: 200 tokens of 10 characters, with a limit of 500.
    fake_chat_api.enqueue(tokens=["Again and "] * 200, token_delay=0.005)
    fake_chat_api.enqueue(tokens=["Next."])
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db",
        reply="max_answer_chars: 500",
    ) as bridge:
        target = await platform(bridge).say("Repeat?")
        await asyncio.wait_for(target.ended.wait(), 10)
        # The answer's stream is let go at once: it is no longer paid for.
        await fake_chat_api.wait_disconnects(1)
        assert failed_answers(bridge, "too_long") == 1
        assert failed_answers(bridge, "failed") == 0
        after = await platform(bridge).say("And now?")
        await asyncio.wait_for(after.ended.wait(), 10)
    text, notice = target.visible()[0].split("\n\n")
    assert text == ("Again and " * 50).rstrip()
    assert notice == (
        "_⚠️ The answer was stopped here: it grew longer than this bot shows"
        " (500 characters)._"
    )
    assert after.visible() == ["Next."]  # the conversation goes on


async def test_a_whole_answer_sent_at_the_end_past_the_length_limit_is_stopped(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The whole answer an API sends at its end (it wins over the tokens) is held to
    # the limit too: the text streamed within it stays, with the notice.
    fake_chat_api.enqueue(tokens=["Again and "], final="Again and " * 100)
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", reply="max_answer_chars: 500",
    ) as bridge:
        target = await platform(bridge).say("Repeat?")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge, "too_long") == 1
    assert target.visible() == [
        "Again and\n\n_⚠️ The answer was stopped here: it grew longer than this bot shows"
        " (500 characters)._"
    ]


async def test_a_whole_answer_past_the_length_limit_is_cut_at_it_and_not_kept(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    text = f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  local: {{kind: openai, url: {fake_chat_api.endpoint("openai")}, model: m,
           api_key: "${{KEY}}", stream: false}}
console: {{}}
routes: [{{platform: console, backend: local, session: user}}]
reply: {{edit_interval: 0.05, max_answer_chars: 600}}
"""
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    fake_chat_api.enqueue(tokens=["x" * 1000])
    fake_chat_api.enqueue(tokens=["Short."])
    async with Bridge(config, TEST_REGISTRY) as bridge:
        long = await platform(bridge).say("Long?", channel="C1")
        await asyncio.wait_for(long.ended.wait(), 10)
        short = await platform(bridge).say("Short?", channel="C1")
        await asyncio.wait_for(short.ended.wait(), 10)
    assert long.visible()[0].startswith("x" * 600 + "\n\n_⚠️ The answer was stopped here")
    assert short.visible() == ["Short."]
    # What was stopped is no turn of the conversation (as an answer cut off is not).
    sent = [m["content"] for m in fake_chat_api.requests[1].json["messages"]]
    assert sent == ["Short?"]


async def test_the_chat_apis_tls_context_is_made_off_the_event_loop(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loading the CAs takes tens of milliseconds: on the loop, the first question
    # after a start would hold every other reply that long.
    made_in: list[threading.Thread] = []
    make = transport._tls_context

    def recording() -> ssl.SSLContext:
        made_in.append(threading.current_thread())
        return make()

    monkeypatch.setattr(transport, "_tls_context", recording)
    fake_chat_api.enqueue(tokens=["Fine."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("How are you?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["Fine."]
    assert made_in and threading.main_thread() not in made_in


def sample(bridge: Bridge, name: str, **labels: str) -> float | None:
    """The value of one series of the bridge's metrics (None where it is not exported)."""
    want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    series = f"{name}{{{want}}}" if labels else name
    for line in bridge.metrics.render().decode().splitlines():
        if line.rsplit(" ", 1)[0] == series:
            return float(line.rsplit(" ", 1)[1])
    return None


class HeldEnd(RecordingTarget):
    """A busy place: the reply's end (the message with its sources) waits for `go`."""

    def __init__(self, go: asyncio.Event) -> None:
        super().__init__()
        self.go = go

    async def post(self, text: str) -> str:
        if "Sources" in text:
            await self.go.wait()
        return await super().post(text)

    async def edit(self, message_id: str, text: str) -> None:
        if "Sources" in text:
            await self.go.wait()
        await super().edit(message_id, text)


async def test_the_stream_time_is_the_chat_apis_and_the_reply_time_the_whole_replys(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy platform's wait to show the end was counted as the chat API's stream
    # time: a busy Slack made the chat API look many times slower.
    fake_chat_api.enqueue(tokens=["The ", "answer."], sources=[("https://a.example/1", "One")])
    go = asyncio.Event()

    def target(self: LocalPlatform, address: Address) -> HeldEnd:
        held = HeldEnd(go)
        held.address = address
        return held

    monkeypatch.setattr(LocalPlatform, "target", target)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        reply = await platform(bridge).say("A question")
        # The stream is timed once read, while its end still waits for the platform.
        await wait_for(lambda: sample(
            bridge, "chat_bridge_stream_seconds_count", backend="docs") == 1.0)
        assert not reply.ended.is_set()
        assert not sample(bridge, "chat_bridge_reply_seconds_count", platform="console")
        go.set()
        await wait_for(lambda: sample(
            bridge, "chat_bridge_reply_seconds_count", platform="console") == 1.0)
        stream = sample(bridge, "chat_bridge_stream_seconds_sum", backend="docs")
        whole = sample(bridge, "chat_bridge_reply_seconds_sum", platform="console")
    assert reply.visible() == ["The answer.\n\nSources: [One](https://a.example/1)"]
    assert stream is not None and whole is not None and stream <= whole


class PlatformDown(RecordingTarget):
    """A platform whose every request fails with `error` (each one recorded)."""

    def __init__(self, error: PlatformError) -> None:
        super().__init__()
        self.error = error
        self.failed: list[str] = []

    def _fail(self, kind: str) -> NoReturn:
        self.failed.append(kind)
        raise self.error

    async def begin(self, text: str | None = None) -> str | None:
        self._fail("begin")

    async def post(self, text: str) -> str:
        self._fail("post")

    async def edit(self, message_id: str, text: str) -> None:
        self._fail("edit")

    async def notice(self, text: str) -> None:
        self._fail("notice")


async def test_a_platform_failing_every_request_shows_in_the_metrics(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slack's Web API down (every call 503, or out of reach) moved no metric while
    # no answer reached anyone.
    fake_chat_api.enqueue(tokens=["Hello ", "world."], token_delay=0.05)
    down = PlatformDown(PlatformUnreachable("Slack could not be reached for chat.update"))

    def target(self: LocalPlatform, address: Address) -> PlatformDown:
        down.address = address
        return down

    monkeypatch.setattr(LocalPlatform, "target", target)
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.0)  # the reply's end gives up at once
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        # Every kind is there from the start, at 0: an alert sees the first failure.
        for kind in ("refused", "gone", "unreachable", "failed"):
            assert sample(bridge, "chat_bridge_platform_errors_total",
                          platform="console", kind=kind) == 0.0
        await platform(bridge).say("A question")
        # Showing the reply failed, then telling the asker apart did too.
        await wait_for(lambda: bridge.relay.live == 0 and "notice" in down.failed)
        unreachable = sample(bridge, "chat_bridge_platform_errors_total",
                             platform="console", kind="unreachable")
        others = [sample(bridge, "chat_bridge_platform_errors_total", platform="console",
                         kind=kind) for kind in ("refused", "gone", "failed")]
    assert {"begin", "post", "notice"} <= set(down.failed)
    assert unreachable == len(down.failed)
    assert others == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (PlatformRefused("Slack refused chat.postEphemeral: msg_too_long"), "refused"),
        (PlaceGone("Slack refused chat.postEphemeral: channel_not_found"), "gone"),
        (PlatformError("Slack failed chat.postEphemeral: service_unavailable"), "failed"),
    ],
)
async def test_a_notice_the_platform_fails_is_counted_by_kind(
    error: PlatformError, kind: str, fake_chat_api: FakeChatAPI, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = PlatformDown(error)

    def target(self: LocalPlatform, address: Address) -> PlatformDown:
        down.address = address
        return down

    monkeypatch.setattr(LocalPlatform, "target", target)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await platform(bridge).say("x" * 5000)  # refused: too long, told in a notice
        await wait_for(lambda: "notice" in down.failed)
        await wait_for(lambda: sample(bridge, "chat_bridge_platform_errors_total",
                                      platform="console", kind=kind) == len(down.failed))
    assert not fake_chat_api.requests


async def test_every_line_logged_for_an_answer_names_its_conversation(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A platform's failed request and the chat API's retries carried no conversation:
    # with JSON logs they could not be tied to the question they held up.
    fake_chat_api.enqueue(status=503)
    fake_chat_api.enqueue(tokens=["Fine."])
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(AnswerFilter())  # as the daemon's own handler has it

    class NoActivity(RecordingTarget):
        # Showing that an answer is coming fails.
        async def begin(self, text: str | None = None) -> str | None:
            raise PlatformError("Slack failed reactions.add: service_unavailable")

    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: NoActivity())
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        reply = await platform(bridge).say("How are you?")
        await wait_for(lambda: reply.visible() == ["Fine."] and bridge.relay.live == 0)
    [answering] = [r for r in caplog.records if r.getMessage() == "answering"]
    key = answering.conversation  # type: ignore[attr-defined]
    retry = [r for r in caplog.records if r.getMessage().startswith("attempt 1 of 2: HTTP 503")]
    begin = [r for r in caplog.records
             if r.getMessage().startswith("could not show that an answer is coming")]
    assert retry and begin
    for record in [*retry, *begin, answering]:
        assert record.conversation == key  # type: ignore[attr-defined]
        assert record.platform == "console"  # type: ignore[attr-defined]
