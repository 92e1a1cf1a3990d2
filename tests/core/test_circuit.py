from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge import circuit as circuit_module
from bridge.circuit import Circuit
from bridge.jobs import unavailable
from tests.core.fakeplatform import wait_for
from tests.core.test_relay import bridge_for, failed_answers, platform
from tests.fakes.chatapi import FakeChatAPI


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_429s_hold_lasts_until_the_time_it_named_and_only_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(circuit_module.time, "time", clock)
    monkeypatch.setattr("bridge.errors.time.time", clock)
    circuit = Circuit(name="docs", clock=clock)
    assert circuit.held_until() is None
    circuit.hold(clock.now + 90)
    circuit.hold(clock.now + 30)  # an earlier answer's shorter wait does not shorten it
    assert circuit.held_until() == clock.now + 90
    assert circuit.refusing and not circuit.allow()
    assert unavailable(circuit) == "The assistant is rate limited; please try again in 2 min."
    clock.now += 89
    assert unavailable(circuit) == "The assistant is rate limited; please try again in 1 s."
    clock.now += 1
    assert circuit.held_until() is None  # called again
    assert circuit.state == "closed" and circuit.allow()
    circuit.hold(clock.now - 5)  # a time already past holds nothing
    assert circuit.held_until() is None


def test_a_429s_hold_ends_when_the_api_said_though_the_clock_is_stepped_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall, monotonic = Clock(), Clock()
    monkeypatch.setattr(circuit_module.time, "time", wall)
    monkeypatch.setattr("bridge.errors.time.time", wall)
    circuit = Circuit(name="docs", clock=monotonic)
    circuit.hold(wall.now + 2)
    wall.now -= 3600  # NTP steps the host's clock back an hour during the hold
    monotonic.now += 1
    wall.now += 1
    assert unavailable(circuit) == "The assistant is rate limited; please try again in 1 s."
    assert circuit.held_until() == wall.now + 1
    monotonic.now += 1
    wall.now += 1
    assert circuit.held_until() is None and circuit.allow()


def test_a_circuit_opened_by_answers_that_did_not_begin_in_time_does_not_say_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The backend took every question and thought past `first_byte`: it opens (a
    # hung backend must), but askers and the log are not told it is down.
    now = [0.0]
    slow = Circuit(3, 30.0, lambda: now[0], name="docs")
    for _ in range(3):
        slow.failure(slow=True)
    assert slow.state == "open"
    assert unavailable(slow) == (
        "The assistant is too slow to answer right now; please try again in 30 s."
    )
    said = "backend docs sent no text within its timeouts.first_byte 3 times in a row"
    assert said in caplog.text
    # One failure of another kind in the run: it is unavailable, as before.
    mixed = Circuit(3, 30.0, lambda: now[0], name="api")
    for was_slow in (True, False, True):
        mixed.failure(slow=was_slow)
    assert unavailable(mixed) == "The assistant is unavailable right now; please try again in 30 s."
    assert "backend api failed 3 times in a row" in caplog.text


def test_a_long_outage_warns_as_the_circuit_opens_then_once_a_minute_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each failed probe said the circuit opened again, at WARNING: with steady traffic,
    # a line every cooldown for as long as the outage lasted.
    now = [0.0]
    circuit = Circuit(2, 10.0, lambda: now[0], name="docs")

    def said() -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in caplog.records
                if r.name == "chat_bridge.circuit" and r.levelno >= logging.INFO]

    circuit.failure()
    circuit.failure()
    assert said() == [("WARNING", "backend docs failed 2 times in a row: not called for "
                                  "10 s (questions are told it is unavailable)")]
    for _ in range(11):  # a probe every cooldown, all failing: 110 s
        now[0] += 10
        assert circuit.allow() and circuit.probing
        circuit.failure()
    assert [level for level, _ in said()] == ["WARNING", "WARNING"]
    assert said()[1][1] == (
        "backend docs still down: a probe failed, 8 failures in a row; not called for 10 s "
        "more (again: 6 tries failed since the last line)"
    )
    now[0] += 10
    assert circuit.allow()
    circuit.success()
    assert said()[-1] == ("INFO", "backend docs answers again: calling it again")
    # Down again later: its opening is told at once.
    circuit.failure()
    circuit.failure()
    assert said()[-1][0] == "WARNING" and said()[-1][1].startswith("backend docs failed 2 times")


def test_a_refused_key_is_an_error_once_a_minute_at_most_and_its_mending_an_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    circuit = Circuit(2, 10.0, lambda: now[0], name="docs")
    mend = "backend docs: the chat API refused its API key; set backends.docs.api_key"

    def said() -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in caplog.records
                if r.name == "chat_bridge.circuit"]

    for _ in range(7):  # a question every 10 s
        circuit.refused(mend)
        now[0] += 10
    assert said() == [
        ("ERROR", mend),
        ("ERROR", f"{mend} (again: 6 tries failed since the last line)"),
    ]
    assert circuit.state == "closed" and circuit.allow()  # every question still tries
    circuit.success()
    assert said()[-1] == ("INFO", "backend docs accepts its API key again, after 7 requests "
                                  "refused")
    circuit.success()
    assert len(said()) == 3  # said once


async def test_a_question_whose_turn_comes_while_a_429_holds_the_api_is_told_to_wait(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Waiting behind its conversation's answer as a question elsewhere is answered 429:
    # when its turn comes, the API is not asked, and its asker is told how long to wait.
    gate = asyncio.Event()
    fake_chat_api.enqueue(tokens=["First answer."], gate=gate)
    fake_chat_api.enqueue(status=429, retry_after=120)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        first = await platform(bridge).say("one", thread="A")
        await fake_chat_api.wait_requests(1)
        second = await platform(bridge).say("two", thread="A")  # waits its turn
        assert second is first  # one thread, one place
        other = await platform(bridge).say("three", thread="B")
        await asyncio.wait_for(other.ended.wait(), 10)
        assert "rate limited" in " ".join(other.visible() + other.notices)
        gate.set()
        await wait_for(lambda: any("rate limited" in n for n in second.notices))
        await wait_for(lambda: not bridge.relay._jobs)
        assert [n for n in second.notices if "rate limited" in n] == [
            "The assistant is rate limited; please try again in 2 min."
        ]
        assert first.visible()[0] == "First answer."
        assert len(fake_chat_api.requests) == 2  # the second question was not sent
        assert failed_answers(bridge, "unavailable") == 1
        assert await bridge.store.inflight_orphans("nobody", float("inf")) == []
