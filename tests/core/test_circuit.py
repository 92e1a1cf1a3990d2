from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge import circuit as circuit_module
from bridge.app import Bridge
from bridge.circuit import Circuit
from bridge.config import parse_config
from bridge.jobs import unavailable
from tests.core.fakeplatform import TEST_REGISTRY, wait_for
from tests.core.relay_support import ask_and_wait, bridge_for, failed_answers, make_config, platform
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
        slow.failure(late="first_byte")
    assert slow.state == "open"
    assert unavailable(slow) == (
        "The assistant is too slow to answer right now; please try again in 30 s."
    )
    said = "backend docs sent no text within its timeouts.first_byte 3 times in a row"
    assert said in caplog.text
    # One failure of another kind in the run: it is unavailable, as before.
    mixed = Circuit(3, 30.0, lambda: now[0], name="api")
    for late in ("first_byte", None, "first_byte"):
        mixed.failure(late=late)
    assert unavailable(mixed) == "The assistant is unavailable right now; please try again in 30 s."
    assert "backend api failed 3 times in a row" in caplog.text


def test_a_circuit_opened_by_answers_that_stopped_mid_answer_says_too_slow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Answers that began, then sent nothing more within `idle`: the backend took the
    # questions, as with a slow start, and the log names the setting.
    now = [0.0]
    stalled = Circuit(2, 30.0, lambda: now[0], name="docs")
    for _ in range(2):
        stalled.failure(late="idle")
    assert unavailable(stalled) == (
        "The assistant is too slow to answer right now; please try again in 30 s."
    )
    assert (
        "backend docs stopped mid-answer (nothing more within its timeouts.idle) 2 times in a row"
        in caplog.text
    )
    both = Circuit(2, 30.0, lambda: now[0], name="kb")
    both.failure(late="first_byte")
    both.failure(late="idle")
    assert unavailable(both).startswith("The assistant is too slow to answer right now")
    assert (
        "backend kb sent no text within its timeouts.first_byte, or stopped past its "
        "timeouts.idle, 2 times in a row" in caplog.text
    )


def test_a_probe_that_begins_lets_questions_through_but_keeps_the_run_until_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its first words reset the run: a backend that hangs after its first words was
    # asked `failures` more questions after every probe before the circuit opened again.
    caplog.set_level(logging.INFO)
    now = [0.0]
    circuit = Circuit(3, 10.0, lambda: now[0], name="docs")
    for _ in range(3):
        circuit.failure(late="idle")
    now[0] += 10
    assert circuit.allow() and circuit.probing
    probe = circuit.probe
    circuit.began(probe=probe)
    assert circuit.state == "closed" and not circuit.refusing and circuit.allow()
    circuit.failure(late="idle", probe=probe)  # the probe stalls
    assert circuit.state == "open"
    assert unavailable(circuit).startswith("The assistant is too slow to answer right now")
    now[0] += 10
    assert circuit.allow()
    circuit.began(probe=circuit.probe)
    circuit.success()  # the probe's answer ends whole
    said = [r.getMessage() for r in caplog.records if r.name == "chat_bridge.circuit"]
    assert said[-1] == "backend docs answers again: calling it again"
    assert [m for m in said if "times in a row" in m] == [said[0]]  # opened once
    circuit.failure()  # one failure now starts a run of its own
    assert circuit.state == "closed"


def test_a_probe_keeps_its_slot_when_an_answer_let_through_before_it_stalls() -> None:
    # A probe's first words let answer A through; the probe then stalled, and after the
    # cooldown a second probe was taken. A stalling meanwhile was taken for that probe
    # failing: its slot was freed and the cooldown begun again, and once the second
    # probe's answer began, every other asker was still told the backend was too slow,
    # for a whole cooldown, as it streamed.
    now = [0.0]
    circuit = Circuit(3, 30.0, lambda: now[0], name="docs")
    for _ in range(3):
        circuit.failure(late="idle")
    now[0] += 30
    assert circuit.allow()
    first = circuit.probe
    circuit.began(probe=first)
    assert circuit.allow() and circuit.probe == 0  # A: not a probe
    circuit.began()  # A's answer begins too: nothing changes
    circuit.failure(late="idle", probe=first)  # the first probe stalls
    assert circuit.state == "open"
    now[0] += 30
    assert circuit.allow()
    second = circuit.probe
    assert second not in (0, first)
    now[0] += 1
    circuit.failure(late="idle")  # A stalls: it counts, but the probe is the second's
    assert circuit.probing and circuit.refusing and not circuit.allow()
    circuit.began(probe=second)
    assert circuit.state == "closed" and not circuit.refusing and circuit.allow()
    # An answer released (a bad question) or ending as another probe streams frees
    # only its own slot: one question at a time finds out whether the backend is back.
    circuit.failure(late="idle", probe=second)
    now[0] += 30
    assert circuit.allow()
    third = circuit.probe
    circuit.release(probe=first)  # the first probe's answer, long after
    circuit.release()
    assert circuit.probing and not circuit.allow()
    circuit.release(probe=third)
    assert circuit.allow() and circuit.probe not in (0, third)


def test_a_long_outage_warns_as_the_circuit_opens_then_once_a_minute_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each failed probe said the circuit opened again, at WARNING: with steady traffic,
    # a line every cooldown for as long as the outage lasted.
    now = [0.0]
    circuit = Circuit(2, 10.0, lambda: now[0], name="docs")

    def said() -> list[tuple[str, str]]:
        return [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name == "chat_bridge.circuit" and r.levelno >= logging.INFO
        ]

    circuit.failure()
    circuit.failure()
    assert said() == [
        (
            "WARNING",
            "backend docs failed 2 times in a row: not called for "
            "10 s (questions are told it is unavailable)",
        )
    ]
    for _ in range(11):  # a probe every cooldown, all failing: 110 s
        now[0] += 10
        assert circuit.allow() and circuit.probing
        circuit.failure(probe=circuit.probe)
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
        return [
            (r.levelname, r.getMessage()) for r in caplog.records if r.name == "chat_bridge.circuit"
        ]

    for _ in range(7):  # a question every 10 s
        circuit.refused(mend)
        now[0] += 10
    assert said() == [
        ("ERROR", mend),
        ("ERROR", f"{mend} (again: 6 tries failed since the last line)"),
    ]
    assert circuit.state == "closed" and circuit.allow()  # every question still tries
    circuit.success()
    assert said()[-1] == (
        "INFO",
        "backend docs accepts its API key again, after 7 requests refused",
    )
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
        later = [
            await platform(bridge).say(f"Question {n}?", user=f"U{n}", channel=f"C{n}")
            for n in range(2, 5)
        ]
        for target in later:
            await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge, "unavailable") == 3
        # Counted as answers' outcomes alone: not as refused questions too.
        assert "chat_bridge_messages_refused_total{" not in bridge.metrics.render().decode()
    assert len(fake_chat_api.requests) == 1
    for target in later:
        [told] = [*target.visible(), *target.notices]
        assert "rate limited; please try again in 2 min" in told


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


async def test_a_circuit_opened_by_a_misconfigured_address_does_not_say_to_wait(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # https:// to a plain-HTTP port: the TLS handshake fails, and only an admin can
    # mend it. Once the circuit opened, askers were told to try again in 29 s.
    text = make_config(
        fake_chat_api, tmp_path / "b.db", extra="limits: {circuit: {failures: 2, cooldown: 60}}"
    )
    config = parse_config(
        text.replace("url: http://", "url: https://"),
        env={"KEY": fake_chat_api.api_key},
        registry=TEST_REGISTRY,
    )
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


async def test_an_answer_that_does_not_begin_in_time_is_not_told_to_try_again(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A reasoning model thinking past `first_byte`: its asker was told to try again
    # (cut, and paid, the same way again), and once the circuit opened, that the
    # backend was unavailable.
    fake_chat_api.enqueue(tokens=["Late."], first_delay=30)
    text = make_config(
        fake_chat_api, tmp_path / "b.db", extra="limits: {circuit: {failures: 1, cooldown: 60}}"
    )
    timeouts = "    timeouts: {connect: 0.5, first_byte: 0.5}\n"
    text = text.replace("    retries:", timeouts + "    retries:")
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        p = platform(bridge)
        cut = await ask_and_wait(p, "hard one", thread="T1")
        refused = await ask_and_wait(p, "another", thread="T2")
    told = cut.visible()[-1:] + cut.notices[-1:]
    assert len(told) == 1 and told[0].endswith(
        "The assistant took longer than 1 s to begin its answer; an admin can let it take longer._"
    )
    assert refused.notices[0].startswith("The assistant is too slow to answer right now; ")


async def test_while_one_question_finds_out_if_the_backend_is_back_others_are_told_shortly(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(2):  # the first try, and its retry
        fake_chat_api.enqueue(status=503)
    # The probe: its answer takes a moment to begin.
    fake_chat_api.enqueue(tokens=["Back ", "again."], first_delay=0.5)
    extra = "limits: {circuit: {failures: 1, cooldown: 0.05}, rate_limit: {messages: 1, per: 60}}"
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
