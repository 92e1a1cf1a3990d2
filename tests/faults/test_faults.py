"""What users see, and what the store holds, when things go wrong."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sqlite3
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import PlatformError
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.fakes.chatapi import FakeChatAPI


def config_text(url: str, db: Path, extra: str = "") -> str:
    return f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs:
    kind: chatmount
    url: {url}
    api_key: ${{KEY}}
    retries: {{attempts: 3, backoff: 0.01, max_backoff: 0.02}}
    timeouts: {{idle: 0.5, first_byte: 2}}
console: {{}}
routes:
  - platform: console
    backend: docs
reply: {{edit_interval: 0.05}}
{extra}
"""


def bridge(fake: FakeChatAPI, db: Path, url: str | None = None, extra: str = "") -> Bridge:
    text = config_text(url or fake.endpoint("chatmount"), db, extra)
    return Bridge(
        parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY), TEST_REGISTRY
    )


def local(b: Bridge) -> LocalPlatform:
    return b.platforms["console"]  # type: ignore[return-value]


async def ask(b: Bridge, text: str, thread: str = "T1") -> RecordingTarget:
    target = await local(b).say(text, thread=thread)
    await asyncio.wait_for(target.ended.wait(), 15)
    return target


async def assert_consistent(b: Bridge) -> None:
    """Nothing is left marked in flight once every reply ended."""
    await wait_for(lambda: b.relay.live == 0)
    assert await b.store.inflight_orphans("nobody", float("inf")) == []


async def test_api_5xx_then_success(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    fake_chat_api.enqueue(status=502)
    fake_chat_api.enqueue(status=503)
    fake_chat_api.enqueue(tokens=["Recovered", " answer"])
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        target = await ask(b, "hello")
        await assert_consistent(b)
    assert target.visible() == ["Recovered answer"]
    assert len(fake_chat_api.requests) == 3


async def test_api_429_with_reset(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    fake_chat_api.enqueue(status=429, reset_in=30)
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        target = await ask(b, "hello")
        await assert_consistent(b)
    assert len(fake_chat_api.requests) == 1  # a 429 is not retried blindly
    # X-RateLimit-Reset is whole epoch seconds: 29 or 30 s from now.
    assert re.search(r"rate limited; please try again in (29|30|31) s", target.visible()[0])


async def test_connection_refused_then_circuit_opens(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    extra = "limits: {circuit: {failures: 2, cooldown: 60}}"
    async with bridge(
        fake_chat_api, tmp_path / "b.db", f"http://127.0.0.1:{port}/v1/chat", extra
    ) as b:
        first = await ask(b, "one", "T1")
        second = await ask(b, "two", "T2")
        third = await local(b).say("three", thread="T3")
        await asyncio.wait_for(third.ended.wait(), 5)
        await assert_consistent(b)
    assert "could not be reached" in first.visible()[0]
    assert "could not be reached" in second.visible()[0]
    # The circuit is open: the third asker is told at once, nothing is attempted.
    assert third.notices and third.notices[0].startswith("The assistant is unavailable right now")
    assert third.visible() == []


async def test_circuit_closes_after_a_successful_probe(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    extra = "limits: {circuit: {failures: 1, cooldown: 0.2}}"
    for _ in range(3):
        fake_chat_api.enqueue(status=500)
    fake_chat_api.enqueue(tokens=["back"])
    fake_chat_api.enqueue(tokens=["still", " back"])
    async with bridge(fake_chat_api, tmp_path / "b.db", extra=extra) as b:
        failed = await ask(b, "one", "T1")
        assert "unavailable" in failed.visible()[0]
        assert b.relay.circuits["docs"].state == "open"
        await wait_for(lambda: b.relay.circuits["docs"].state == "half-open")
        probe = await ask(b, "two", "T2")
        after = await ask(b, "three", "T3")
    assert probe.visible() == ["back"]
    assert after.visible() == ["still back"]
    # The admin sees it open and close (it was silent), and which answer failed.
    said = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "chat_bridge.circuit"
    ]
    assert said[0][0] == "WARNING" and said[0][1].startswith("backend docs failed 1 times")
    assert said[-1] == ("INFO", "backend docs answers again: calling it again")
    failed = [r for r in caplog.records if r.getMessage().startswith("backend docs failed:")]
    assert failed and all(getattr(r, "conversation", "").startswith("console:") for r in failed)


async def test_a_backend_that_stays_down_warns_once_not_at_every_probe(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Through a long outage each cooldown logged five WARNINGs: three attempts, the
    # probe's failure, and the circuit opened again.
    caplog.set_level(logging.INFO)
    extra = "limits: {circuit: {failures: 1, cooldown: 0.2}}"
    for _ in range(6):  # two questions' three attempts
        fake_chat_api.enqueue(status=503, body={"error": "upstream down"})
    fake_chat_api.enqueue(tokens=["back"])
    async with bridge(fake_chat_api, tmp_path / "b.db", extra=extra) as b:
        circuit = b.relay.circuits["docs"]
        first = await ask(b, "one", "T1")
        for thread in ("T2", "T3"):  # a probe that fails, then one answered
            await wait_for(lambda: circuit.state == "half-open")
            last = await ask(b, "again", thread)
    assert "unavailable" in first.visible()[0] and last.visible() == ["back"]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [said.split(":")[0] for said in warned] == [
        "backend docs failed 1 times in a row",
        "backend docs failed",
    ], warned
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    attempts = [said for said in info if said.startswith("attempt ")]
    assert len(attempts) == 6 and "upstream down" in attempts[0]  # what failed, at INFO
    assert sum(said.startswith("backend docs failed: ") for said in info) == 1  # the probe's
    assert "backend docs answers again: calling it again" in info


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_api_key_is_one_error_naming_the_setting(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # Each question logged two WARNINGs (the status, then the asker's notice), and no
    # line said which setting to mend.
    caplog.set_level(logging.INFO)
    for _ in range(3):
        fake_chat_api.enqueue(status=status, body={"error": "Invalid or missing API key"})
    fake_chat_api.enqueue(tokens=["mended"])
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        told = [await ask(b, "one", f"T{i}") for i in range(3)]
        assert b.relay.circuits["docs"].state == "closed"  # each question still tries
        mended = await ask(b, "again", "T9")
    assert all("misconfigured" in t.visible()[0] for t in told)
    assert mended.visible() == ["mended"] and len(fake_chat_api.requests) == 4
    warned = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1, warned
    [(level, error)] = warned
    assert level == "ERROR", warned
    assert error.startswith("backend docs: the chat API refused its API key")
    assert f"(HTTP {status} from the chat API: Invalid or missing API key)" in error
    assert "backends.docs.api_key" in error
    assert ("allowlist" in error) == (status == 403)
    assert fake_chat_api.api_key not in caplog.text
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "backend docs accepts its API key again, after 3 requests refused" in info


async def test_a_probe_whose_answer_has_begun_lets_the_next_questions_through(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # While the probe's answer streamed (the backend plainly back), every other asker
    # was told "unavailable right now" until its last word.
    extra = "limits: {circuit: {failures: 1, cooldown: 0.2}}"
    for _ in range(3):
        fake_chat_api.enqueue(status=500)
    fake_chat_api.enqueue(tokens=["back", *[" and more"] * 15], token_delay=0.3)
    fake_chat_api.enqueue(tokens=["meanwhile"])
    async with bridge(fake_chat_api, tmp_path / "b.db", extra=extra) as b:
        await ask(b, "one", "T1")
        await wait_for(lambda: b.relay.circuits["docs"].state == "half-open")
        probe = await local(b).say("two", thread="T2")
        await wait_for(lambda: probe.visible() != [])
        after = await ask(b, "three", "T3")
        assert not probe.ended.is_set()  # still streaming when the next was answered
        assert after.notices == [] and after.visible() == ["meanwhile"]
        await asyncio.wait_for(probe.ended.wait(), 15)


async def test_answers_that_stall_after_their_first_words_open_the_circuit(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A backend that sends its first words, then nothing: it was asked every question
    # (each paid for), each asker waiting `idle` for half an answer, however many
    # answers had stalled before.
    caplog.set_level(logging.INFO)
    extra = "limits: {circuit: {failures: 3, cooldown: 1}}"
    for i in range(4):
        fake_chat_api.enqueue(tokens=[f"Begun {i} ", "never", " ends"], hang_after=1)
    async with bridge(fake_chat_api, tmp_path / "b.db", extra=extra) as b:
        circuit = b.relay.circuits["docs"]
        for n in range(3):
            stalled = await ask(b, f"q{n}", f"T{n}")
            [text] = stalled.visible()  # its text so far, then why it ended
            assert text.startswith(f"Begun {n}") and "stopped answering within 0.5 s" in text
        assert circuit.state == "open"
        refused = await ask(b, "q3", "T3")
        assert len(fake_chat_api.requests) == 3  # not asked
        [told] = refused.notices
        # The backend took every question: too slow, not down.
        assert told.startswith("The assistant is too slow to answer right now; please try again")
        # A probe's first words let every question through; once it stalls too, the
        # circuit opens again at once, not after three more.
        await wait_for(lambda: circuit.state == "half-open")
        probe = await ask(b, "q4", "T4")
        assert probe.visible()[0].startswith("Begun 3")
        assert circuit.state == "open"
        assert len(fake_chat_api.requests) == 4
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    opened = [said for said in warned if "times in a row" in said]
    assert opened == [
        "backend docs stopped mid-answer (nothing more within its timeouts.idle) 3 times in "
        "a row: not called for 1 s (questions are told it is slow to answer)"
    ], warned
    # Each cut names the setting to raise.
    idle = [said for said in warned if "raise backends.docs.timeouts.idle (now 0.5)" in said]
    assert len(idle) == 4, warned


async def test_answers_cut_by_the_total_timeout_as_their_text_flows_do_not_open_the_circuit(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A long answer (a reasoning model's), its text still coming when `total` passed:
    # it opened the circuit, and the next asker was told the assistant was unavailable.
    extra = "limits: {circuit: {failures: 1, cooldown: 60}}"
    fake_chat_api.enqueue(tokens=["Long", *[" and longer"] * 30], token_delay=0.1)
    fake_chat_api.enqueue(tokens=["Short."])
    fake_chat_api.enqueue(tokens=["Never."], first_delay=5)  # `total` passes before it
    text = config_text(fake_chat_api.endpoint("chatmount"), tmp_path / "b.db", extra)
    text = text.replace("first_byte: 2}", "first_byte: 2, total: 0.8}")
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as b:
        long = await ask(b, "q1", "T1")
        [shown] = long.visible()
        assert shown.startswith("Long and longer") and "did not finish within 0.8 s" in shown
        assert b.relay.circuits["docs"].state == "closed"
        short = await ask(b, "q2", "T2")
        assert short.notices == [] and short.visible() == ["Short."]
        # An answer that had not begun when `total` passed still counts.
        await ask(b, "q3", "T3")
        assert b.relay.circuits["docs"].state == "open"
    assert len(fake_chat_api.requests) == 3


async def test_answers_cut_by_the_total_timeout_long_after_their_last_byte_open_the_circuit(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # First words, then nothing, until `total` cut the answer before `idle` could: it
    # was taken for a long answer still coming, so a backend that hung after its first
    # words was asked every question.
    extra = "limits: {circuit: {failures: 1, cooldown: 60}}"
    fake_chat_api.enqueue(tokens=["Begun ", "never"], hang_after=1)
    text = config_text(fake_chat_api.endpoint("chatmount"), tmp_path / "b.db", extra)
    text = text.replace("{idle: 0.5, first_byte: 2}", "{idle: 2, first_byte: 2, total: 1.5}")
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as b:
        hung = await ask(b, "q1", "T1")
        [shown] = hung.visible()
        assert shown.startswith("Begun") and "did not finish within 1.5 s" in shown
        assert b.relay.circuits["docs"].state == "open"
        refused = await ask(b, "q2", "T2")
    assert refused.notices[0].startswith("The assistant is too slow to answer right now")
    assert len(fake_chat_api.requests) == 1


async def test_a_probe_streaming_lets_questions_through_though_an_earlier_answer_stalls(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # An answer let through by one probe's first words stalled as the next probe was
    # under way: it was taken for that probe failing, so once the probe's answer began
    # every other asker was still told the assistant was too slow, for a cooldown.
    extra = "limits: {circuit: {failures: 1, cooldown: 1}}"
    late, held = asyncio.Event(), asyncio.Event()
    fake_chat_api.enqueue(tokens=["Begun ", "never"], hang_after=1)  # opens the circuit
    fake_chat_api.enqueue(tokens=["Probe ", "never"], hang_after=1)  # begins, then stalls
    fake_chat_api.enqueue(tokens=["Let ", "through"], hang_after=1, gate=late)
    fake_chat_api.enqueue(tokens=["Back", " again."], gate=held)  # the second probe
    fake_chat_api.enqueue(tokens=["Meanwhile."])
    text = config_text(fake_chat_api.endpoint("chatmount"), tmp_path / "b.db", extra)
    text = text.replace("first_byte: 2}", "first_byte: 10}")
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as b:
        circuit = b.relay.circuits["docs"]
        await ask(b, "q0", "T0")
        await wait_for(lambda: circuit.state == "half-open")
        first = await local(b).say("q1", thread="T1")
        await wait_for(lambda: first.visible() != [])  # the probe began: all let through
        let_through = await local(b).say("q2", thread="T2")
        await fake_chat_api.wait_requests(3)
        await asyncio.wait_for(first.ended.wait(), 15)  # the probe stalled
        assert circuit.state == "open"
        await wait_for(lambda: circuit.state == "half-open", timeout=5)
        second = await local(b).say("q3", thread="T3")
        await fake_chat_api.wait_requests(4)
        assert circuit.probing
        late.set()  # the answer let through begins, then stalls
        await asyncio.wait_for(let_through.ended.wait(), 15)
        assert "stopped answering within 0.5 s" in let_through.visible()[0]
        assert circuit.probing  # the probe is still the second question's
        held.set()
        await wait_for(lambda: second.visible() != [])
        assert circuit.state == "closed"
        meanwhile = await ask(b, "q4", "T4")
        await asyncio.wait_for(second.ended.wait(), 15)
    assert meanwhile.notices == [] and meanwhile.visible() == ["Meanwhile."]
    assert second.visible() == ["Back again."]
    assert len(fake_chat_api.requests) == 5


async def test_connection_dropped_mid_stream(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    fake_chat_api.enqueue(tokens=["Part ", "one ", "part ", "two"], drop_after=2)
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        target = await ask(b, "hello")
        await assert_consistent(b)
    [text] = target.visible()
    assert text.startswith("Part one")
    assert "⚠️" in text
    assert len(fake_chat_api.requests) == 1  # text was shown: no retry


async def test_malformed_line_is_skipped(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    fake_chat_api.enqueue(tokens=["All ", "of ", "it"], malformed_after=1)
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        target = await ask(b, "hello")
    assert target.visible() == ["All of it"]


async def test_stream_that_never_ends_hits_the_idle_timeout(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Waiting ", "forever"], hang_after=1)
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        target = await ask(b, "hello")
        await assert_consistent(b)
    [text] = target.visible()
    assert text.startswith("Waiting")
    assert "stopped answering" in text
    await fake_chat_api.wait_disconnects(1)


class StormTarget(RecordingTarget):
    """A platform answering 429 to every other edit (the adapter gave up retrying)."""

    async def edit(self, message_id: str, text: str) -> None:
        self.attempts = getattr(self, "attempts", 0) + 1
        if self.attempts % 2:
            raise PlatformError("rate limited by the platform")
        await super().edit(message_id, text)


async def test_platform_429_storm_on_edits_still_ends_with_the_full_answer(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.01)
    monkeypatch.setattr(
        LocalPlatform,
        "target",
        lambda self, address: self.targets.setdefault(address, StormTarget(placeholder=True)),
    )
    async with bridge(fake_chat_api, tmp_path / "b.db") as b:
        target = await ask(b, "hello")
        await assert_consistent(b)
    assert target.visible() == ["".join(f"w{i} " for i in range(40))]


async def test_store_file_locked_tells_the_user_and_recovers(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db) as b:
        b.store.busy_timeout = 0.2  # type: ignore[attr-defined]
        locker = sqlite3.connect(db, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            blocked = await local(b).say("while locked", thread="T1")
            await asyncio.wait_for(blocked.ended.wait(), 20)
        finally:
            locker.rollback()
            locker.close()
        answered = await ask(b, "after the lock", "T2")
        await assert_consistent(b)
    assert blocked.notices and "store" in blocked.notices[0]
    assert answered.visible() == ["Hello from the fake."]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["after the lock"]
