from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.logs import (
    AnswerFilter,
    JsonFormatter,
    PlainFormatter,
    Repeats,
    SecretFilter,
    log_answer,
    proxy_secrets,
    setup_logging,
    write_apart,
)
from bridge.proxies import env_proxy
from tests.core.fakeplatform import wait_for

SECRET = "xoxb-very-secret-token"


@contextmanager
def _captured(
    name: str, formatter: logging.Formatter, secrets: list[str]
) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through `formatter` and a SecretFilter to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(SecretFilter(secrets))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def _log(formatter: logging.Formatter) -> str:
    # "abc" is too short to scrub safely: ignored.
    with _captured("test.scrub", formatter, [SECRET, "abc"]) as (logger, stream):
        logger.warning("token %s refused", SECRET, extra={"conversation": f"k-{SECRET}"})
        try:
            raise RuntimeError(f"bad header Bearer {SECRET}")
        except RuntimeError:
            logger.exception("request failed")
    return stream.getvalue()


def test_secrets_are_scrubbed_from_messages_fields_and_tracebacks() -> None:
    out = _log(PlainFormatter("%(levelname)s %(message)s"))
    assert SECRET not in out
    assert "token *** refused conversation=k-***" in out
    assert "Bearer ***" in out


def test_json_lines_carry_fields_and_no_secret() -> None:
    lines = _log(JsonFormatter()).strip().splitlines()
    first = json.loads(lines[0])
    assert first["message"] == "token *** refused"
    assert first["conversation"] == "k-***"
    assert first["level"] == "WARNING"
    assert SECRET not in "".join(lines)
    # To the millisecond, with its offset: lines a shipper re-sorts keep their order.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", first["time"])


def test_tokens_in_urls_and_structured_fields_are_scrubbed() -> None:
    with _captured("test.scrub.urls", JsonFormatter(), [SECRET]) as (logger, stream):
        # As discord.py logs its webhook requests at DEBUG: the interaction's token.
        logger.warning(
            "Webhook ID 111 with PATCH https://discord.com/api/v10/webhooks/111/"
            "aW50ZXJhY3Rpb246SECRET/messages/@original has returned 200"
        )
        logger.warning("POST https://discord.com/api/v10/interactions/222/TOKEN-2/callback")
        logger.warning("posting to https://hooks.slack.com/commands/T1/2/RESPONSE-SECRET")
        logger.warning("req", extra={"request": {"Authorization": f"Bearer {SECRET}"}, "n": 3})
        # As slack-sdk logs a Socket Mode connection Slack refused (aiohttp's error).
        try:
            raise ValueError(
                "403, message='Invalid response status', url='wss://wss-primary"
                ".slack.com/link/?ticket=TICKET-SECRET&app_id=A1'"
            )
        except ValueError as exc:
            logger.exception(f"Failed to connect (error: {exc}); Retrying...")
    out = stream.getvalue()
    for leaked in ("aW50ZXJhY3Rpb246SECRET", "TOKEN-2", "RESPONSE-SECRET", SECRET, "TICKET-SECRET"):
        assert leaked not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["message"].startswith(
        "Webhook ID 111 with PATCH https://discord.com/api/v10/webhooks/111/***/messages/@original"
    )
    assert lines[1]["message"].endswith("/interactions/222/***/callback")
    assert lines[2]["message"] == "posting to https://hooks.slack.com/***"
    assert "Bearer ***" in lines[3]["request"] and lines[3]["n"] == 3
    assert "/link/?ticket=***&app_id=A1" in lines[4]["message"]
    assert "/link/?ticket=***&app_id=A1" in lines[4]["exception"]


def test_token_fields_of_payloads_logged_whole_are_scrubbed() -> None:
    event = {
        "op": 0,
        "t": "INTERACTION_CREATE",
        "d": {"id": "9", "token": "itoken-1574360334485946380", "data": {"name": "ask"}},
    }
    plain = PlainFormatter("%(message)s")
    with _captured("test.scrub.payloads", plain, []) as (logger, stream):
        # As discord.py logs every gateway event at DEBUG: the dict itself.
        logger.warning("For Shard ID %s: WebSocket Event: %s", None, event)
        logger.warning("envelope %s", json.dumps({"token": "verif-TOKEN-9", "text": "a token"}))
    out = stream.getvalue()
    assert "itoken-1574360334485946380" not in out and "verif-TOKEN-9" not in out
    assert "'token': '***', 'data': {'name': 'ask'}" in out
    assert '"token": "***", "text": "a token"' in out


def test_a_slack_response_url_with_escaped_slashes_is_scrubbed() -> None:
    # Slack's JSON writes "https:\/\/hooks.slack.com\/commands\/...", and slack-sdk
    # logs a Socket Mode frame through repr() at DEBUG: "\\/".
    frame = json.dumps({"response_url": "https://hooks.slack.com/commands/T1/2/RESP-SECRET"})
    frame = frame.replace("/", "\\/")
    scrub = SecretFilter([]).scrub
    for text in (frame, repr(frame), "https%3A%2F%2Fhooks.slack.com%2Fcommands%2FRESP-SECRET"):
        assert "RESP-SECRET" not in scrub(text), text


def test_plain_lines_cannot_be_forged_by_the_text_they_carry() -> None:
    # An API's error text (or an asker's, echoed in it) with a line break and
    # terminal escapes: in plain format it began a line of its own.
    forged = "bad question\n2099-01-01 ERROR chat_bridge.app: FORGED\x1b[31m"
    plain = PlainFormatter("%(levelname)s %(name)s: %(message)s")
    with _captured("test.forged", plain, []) as (logger, stream):
        logger.warning("HTTP 400 from the chat API: %s", forged, extra={"backend": "a\rb"})
        try:
            raise RuntimeError("kept as it is")
        except RuntimeError:
            logger.exception("failed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "WARNING test.forged: HTTP 400 from the chat API: bad question\\n2099-01-01 ERROR "
        "chat_bridge.app: FORGED\\x1b[31m backend=a\\rb"
    )
    assert lines[1] == "ERROR test.forged: failed"
    assert lines[2] == "Traceback (most recent call last):"  # a traceback keeps its lines
    assert not any(line.startswith("2099") for line in lines)


def test_the_proxy_variables_passwords_are_secrets() -> None:
    # Libraries log a proxy's URL whole (aiohttp's errors in discord.py's reconnect
    # tracebacks, slack-sdk at DEBUG): its password is scrubbed like any secret.
    environ = {
        "HTTPS_PROXY": "http://me:Top%40Secret9@proxy.corp:3128",
        "http_proxy": "ops:An0ther-pw@proxy.corp:3128",  # without a scheme
        "ALL_PROXY": "http://[not a url",
        "NO_PROXY": "x:y@z",  # not a proxy
    }
    assert set(proxy_secrets(environ)) == {"An0ther-pw", "Top%40Secret9", "Top@Secret9"}
    scrub = SecretFilter(proxy_secrets(environ))
    assert scrub.scrub("url='http://me:Top%40Secret9@proxy.corp:3128'") == (
        "url='http://me:***@proxy.corp:3128'"
    )


@contextlib.contextmanager
def logging_set_up(
    level: str, secrets: list[str], json_format: bool = False
) -> Iterator[SecretFilter]:
    """`setup_logging` as the daemon calls it; the test's own logging put back after."""
    root = logging.getLogger()
    handlers, was = list(root.handlers), root.level
    libraries = [logging.getLogger(n) for n in ("aiosqlite", "httpx", "asyncpg.pool")]
    levels = [logger.level for logger in libraries]
    try:
        yield setup_logging(level, json_format, secrets)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(was)
        for logger, level_was in zip(libraries, levels, strict=True):
            logger.setLevel(level_was)


def test_logging_set_up_scrubs_the_proxy_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me:Pr0xyPass@proxy.corp:3128")
    with logging_set_up("INFO", ["configured-secret"]) as scrub:
        pass
    assert scrub.scrub("http://me:Pr0xyPass@proxy.corp:3128 configured-secret") == (
        "http://me:***@proxy.corp:3128 ***"
    )


@pytest.mark.parametrize("password", ["Secr3t:Word", "Grüezi2024", "Str0ng pass@2024"])
def test_a_proxy_password_is_scrubbed_as_the_clients_encode_it(
    password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written raw in the variable, it reaches aiohttp's errors percent-encoded.
    environ = {"HTTPS_PROXY": f"http://bob:{password}@proxy.corp:3128"}
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", environ["HTTPS_PROXY"])
    used = env_proxy("https://discord.com/api/v10")
    assert used is not None
    assert SecretFilter(proxy_secrets(environ)).scrub(f"url='{used}'") == (
        "url='http://bob:***@proxy.corp:3128'"
    )


async def test_what_people_write_is_not_logged_even_at_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # At DEBUG (the docs' advice for routing questions) the store's statements logged
    # every question and answer (the platforms' payloads: tests/platforms).
    from bridge.interfaces import Turn
    from bridge.store.sqlite import SQLiteStore

    with logging_set_up("DEBUG", []):
        store = SQLiteStore(tmp_path / "b.db")
        await store.open()
        try:
            await store.append_history("k", [Turn("user", "my password is PW-hunter2")], 10)
        finally:
            await store.aclose()
        logging.getLogger("chat_bridge.relay").debug("the bridge's own debug line")
    written = capsys.readouterr().err
    assert "the bridge's own debug line" in written  # DEBUG is on
    assert "PW-hunter2" not in written


@pytest.mark.parametrize("apart", [False, True], ids=["", "written-apart"])
@pytest.mark.parametrize("json_format", [False, True])
async def test_lines_logged_while_an_answer_is_made_name_its_conversation(
    json_format: bool, apart: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # A platform's failed request and a chat API's retry, logged by modules that know
    # nothing of the question, could not be tied to it.
    render, api = logging.getLogger("chat_bridge.render"), logging.getLogger("adapters.apis")

    async def flusher() -> None:  # a task the answer starts
        render.warning("reply update failed: Slack could not be reached for chat.update")

    async def answer() -> None:
        log_answer(conversation="slack:T1:thread:C1:1.000|docs", platform="slack")
        api.warning(
            "attempt 1 of 3: HTTP 503 from the chat API; retrying in 0.47 s",
            extra={"backend": "docs"},
        )
        await asyncio.create_task(flusher())
        # A line's own fields are its own.
        render.warning("moved", extra={"conversation": "slack:T1:thread:C1:2.000|docs"})

    with logging_set_up("INFO", ["secret-token"], json_format=json_format):
        # As the daemon writes them: the fields are the logging task's, not the writer's.
        writer = write_apart() if apart else None
        await asyncio.create_task(answer())
        render.warning("outside any answer")
        assert writer is None or writer.stop()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    if json_format:
        fields = [json.loads(line) for line in lines]
    else:
        fields = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in lines]
    key = "slack:T1:thread:C1:1.000|docs"
    assert [f.get("conversation") for f in fields] == [
        key,
        key,
        "slack:T1:thread:C1:2.000|docs",
        None,
    ]
    assert [f.get("platform") for f in fields] == ["slack", "slack", "slack", None]
    assert fields[0]["backend"] == "docs"


class _Stalled(io.StringIO):
    """A stream whose reader stalled: a write waits until `resumed` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.resumed = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        self.resumed.wait()
        return super().write(text)


@contextmanager
def _stalled_logger(size: int) -> Iterator[tuple[logging.Logger, _Stalled]]:
    """A logger whose lines a writer of `size` lines writes to a stalled stream, as
    `setup_logging` and `write_apart` set the daemon's up."""
    stream = _Stalled()
    output = logging.StreamHandler(stream)
    output.setFormatter(PlainFormatter("%(levelname)s %(name)s: %(message)s"))
    output.addFilter(AnswerFilter())
    output.addFilter(SecretFilter([SECRET]))
    logger = logging.getLogger("test.apart")
    logger.addHandler(output)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        stream.resumed.set()  # the writer's thread ends
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


async def test_lines_wait_for_a_stalled_reader_in_a_queue_not_in_the_logging_call() -> None:
    # Written where they were logged (on the event loop), lines stopped the daemon
    # whole while the reader of its standard error stalled: no question was answered,
    # /healthz timed out, a SIGTERM went unheard.
    with _stalled_logger(size=3) as (logger, stream):
        writer = write_apart(logger, size=3)
        logger.warning("taken by the writer")
        await asyncio.to_thread(stream.writing.wait)  # which the stream holds

        def answering() -> None:
            log_answer(conversation="console:local:user:you|docs", platform="console")
            logger.warning("token %s refused", SECRET, extra={"backend": f"k-{SECRET}"})

        contextvars.copy_context().run(answering)
        items = ["first"]
        logger.warning("items %s", items)
        items.append("changed after")  # what was logged is written
        try:
            raise RuntimeError(f"bad header Bearer {SECRET}")
        except RuntimeError:
            logger.exception("request failed")  # the third the writer holds
        logger.warning("dropped")
        logger.warning("dropped too")
        assert writer.dropped == 2

        stream.resumed.set()
        await wait_for(lambda: writer.written == 4, timeout=10)
        logger.warning("after")  # the count of lines dropped comes first
        assert writer.stop()
        logger.warning("logged after the stop")  # written at once
        out = stream.getvalue()
    assert SECRET not in out
    assert "test.apart: dropped" not in out
    lines = out.splitlines()
    assert lines[:4] == [
        "WARNING test.apart: taken by the writer",
        "WARNING test.apart: token *** refused backend=k-*** "
        "conversation=console:local:user:you|docs platform=console",
        "WARNING test.apart: items ['first']",
        "ERROR test.apart: request failed",
    ]
    assert lines[4] == "Traceback (most recent call last):"  # on lines of its own
    assert lines[-4:] == [
        "RuntimeError: bad header Bearer ***",
        "WARNING chat_bridge.logs: 2 log lines were dropped: the log's reader did not keep up",
        "WARNING test.apart: after",
        "WARNING test.apart: logged after the stop",
    ]


async def test_the_stop_gives_up_on_a_reader_that_takes_nothing() -> None:
    with _stalled_logger(size=3) as (logger, stream):
        writer = write_apart(logger, size=3)
        logger.warning("taken by the writer")
        logger.warning("queued")
        await asyncio.to_thread(stream.writing.wait)
        # The daemon exits without those lines rather than wait for them forever.
        assert not writer.stop(patience=0.05)
        assert writer.written == 0


def test_a_failure_that_repeats_is_told_once_a_minute_with_the_tries_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr("bridge.logs.time.monotonic", lambda: now[0])
    repeats = Repeats(every=60.0)
    told = []
    for _ in range(5):  # one every 20 s: the first, then the one a minute on
        told.append(repeats.failed())
        now[0] += 20.0
    assert told == ["", None, None, " (again: 3 tries failed since the last line)", None]
    assert repeats.ended() == 5
    assert repeats.ended() == 0  # nothing failed since
    assert repeats.failed() == ""  # a new outage is told at once
