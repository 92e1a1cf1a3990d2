"""What every streaming dialect must do, run against each one's fake endpoint.

ChatMount has the same cases in its own file; chaturdata polls instead of
streaming and has its own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bridge.errors import (
    BadRequest,
    CutOff,
    NotAStream,
    ProtocolError,
    ProxyRefused,
    ProxyUnreachable,
    RateLimited,
    SlowToBegin,
    Stalled,
    TimedOut,
    Unauthorized,
    Unavailable,
    Unfinished,
)
from bridge.interfaces import ChatAPI, Done, Token
from tests.apis.helpers import (
    ask,
    cancel_mid_stream,
    collect,
    collect_until_error,
    done_of,
    make,
    text_of,
)
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.proxy import FakeProxy


@dataclass
class Variant:
    kind: str
    fake: FakeChatAPI
    client: httpx.AsyncClient
    script: dict[str, Any]

    def api(self, **options: Any) -> ChatAPI:
        return make(self.kind, self.fake, self.client, **options)

    def enqueue(self, **script: Any) -> None:
        self.fake.enqueue(**{**self.script, **script})


VARIANTS = {
    "ndjson": ("ndjson", {}),
    "bot-messages": ("bot-messages", {}),
    "bot-messages-bare-lines": ("bot-messages", {"bare": True}),
    "openai": ("openai", {}),
}


@pytest.fixture(params=list(VARIANTS))
def dialect(request, fake_chat_api, http) -> Variant:
    kind, script = VARIANTS[request.param]
    return Variant(kind, fake_chat_api, http, script)


async def test_happy_path_streams_every_token(dialect):
    dialect.enqueue(tokens=["To", " pay", " taxes", ","], token_delay=0.01)
    api = dialect.api()
    events = await collect(api, ask(api))
    assert [e.text for e in events if isinstance(e, Token)] == ["To", " pay", " taxes", ","]
    done_of(events)


async def test_malformed_line_is_logged_and_skipped(dialect, caplog):
    dialect.enqueue(tokens=["a", "b", "c"], malformed_after=2)
    api = dialect.api()
    events = await collect(api, ask(api))
    assert text_of(events) == "abc"
    assert isinstance(events[-1], Done)
    assert "malformed stream line" in caplog.text
    assert dialect.fake.api_key not in caplog.text


async def test_stream_ending_without_terminal_event_is_cut_off(dialect):
    dialect.enqueue(tokens=["par", "tial", " lost"], cut_after=2)
    api = dialect.api()
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "partial"
    assert isinstance(exc, CutOff)
    assert exc.backend == "bot"


async def test_slow_stream_hits_the_idle_timeout(dialect, caplog):
    dialect.enqueue(tokens=["quick", " slow"], token_delay=5.0)
    api = dialect.api(timeouts={"idle": 0.3})
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "quick"
    # Its text had begun, then stopped: Stalled, which the circuit counts as it does
    # SlowToBegin (a backend that hangs after its first words).
    assert isinstance(exc, Stalled)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"backend {api.name} sent nothing more within 0.3 s: raise backends.{api.name}."
        "timeouts.idle (now 0.3)" in line
        for line in warned
    )
    assert len(dialect.fake.requests) == 1
    await dialect.fake.wait_disconnects(1)


async def test_the_total_timeout_as_text_flows_leaves_the_answer_unfinished(dialect, caplog):
    dialect.enqueue(tokens=["steady", *[" more"] * 40], token_delay=0.05)
    api = dialect.api(timeouts={"total": 0.5, "idle": 1.0})
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen).startswith("steady more")
    # Its text still flowed: an answer longer than `total`, not a backend failing (the
    # circuit does not count it), not one that stalled.
    assert isinstance(exc, Unfinished) and not isinstance(exc, Stalled)
    # Not "try again": the answer would be cut, and paid for, again.
    assert exc.user_message == (
        "The assistant did not finish within 0.5 s; an admin can let it take longer."
    )
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"raise backends.{api.name}.timeouts.total (now 0.5)" in line for line in warned)
    assert len(dialect.fake.requests) == 1


async def test_the_total_timeout_long_after_the_last_byte_is_a_stalled_answer(dialect, caplog):
    # Its first words, then nothing: `total` cut it before `idle` could. It was taken
    # for a long answer still coming (Unfinished), which the circuit does not count, so
    # a backend that hangs after its first words was asked every question.
    dialect.enqueue(tokens=["first", " words", " never"], hang_after=2)
    api = dialect.api(timeouts={"total": 1.0, "idle": 1.2})
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "first words"
    assert isinstance(exc, Stalled) and not isinstance(exc, Unfinished)
    assert exc.user_message == "The assistant did not finish within 1 s; please try again."
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    [said] = [line for line in warned if line.startswith(f"backend {api.name} ")]
    assert re.fullmatch(
        f"backend {api.name} stopped mid-answer: nothing more for [\\d.]+ s when its "
        r"timeouts.total \(now 1\) cut the answer \(timeouts.idle: 1.2\)",
        said,
    ), said
    assert len(dialect.fake.requests) == 1


async def test_slow_first_byte_times_out(dialect, caplog):
    # The stream opens with its event without text at once (ndjson's start,
    # bot-messages' empty content, openai's role chunk): a sign of life, which
    # may push the deadline to `idle` from then, so `idle` is short too.
    dialect.enqueue(first_delay=5.0)
    api = dialect.api(timeouts={"connect": 0.2, "first_byte": 0.4, "idle": 0.2})
    seen, exc = await collect_until_error(api, ask(api))
    assert not any(isinstance(e, Token) for e in seen)
    assert isinstance(exc, SlowToBegin)  # not Stalled: no text came
    # A model thinking this long would be cut (and paid) again: not "try again".
    assert exc.user_message == (
        "The assistant took longer than 0.6 s to begin its answer; an admin can let it take longer."
    )
    # The admin is told which setting cut it.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"backend {api.name} sent no text within 0.6 s: raise backends.{api.name}.timeouts."
        "first_byte (now 0.4)" in line
        for line in warned
    )
    assert len(dialect.fake.requests) == 1
    await dialect.fake.wait_disconnects(1)


async def test_an_opening_event_without_text_keeps_the_first_byte_deadline(dialect):
    # The opening event made the deadline `idle` from then: a model given
    # `first_byte` to start was told it "stopped answering" before it began.
    dialect.enqueue(tokens=["Slow ", "start."], first_delay=1.0)
    api = dialect.api(timeouts={"connect": 0.5, "first_byte": 2.0, "idle": 0.3})
    events = await collect(api, ask(api))
    assert text_of(events) == "Slow start."
    done_of(events)
    assert len(dialect.fake.requests) == 1


async def test_cancellation_mid_stream_closes_the_connection(dialect):
    dialect.enqueue(tokens=["first", " second"], hang_after=1)
    api = dialect.api()
    seen = await cancel_mid_stream(api, ask(api))
    assert text_of(seen) == "first"
    await dialect.fake.wait_disconnects(1)
    assert dialect.fake.disconnects == 1


async def test_5xx_is_retried_before_any_text(dialect):
    dialect.enqueue(status=500)
    dialect.enqueue(status=503)
    dialect.enqueue(tokens=["ok"])
    api = dialect.api()
    events = await collect(api, ask(api))
    assert text_of(events) == "ok"
    assert len(dialect.fake.requests) == 3
    assert dialect.fake.requests[0].json == dialect.fake.requests[2].json


async def test_5xx_exhausted_is_unavailable(dialect):
    for _ in range(3):
        dialect.enqueue(status=502)
    api = dialect.api()
    _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is Unavailable
    assert exc.status == 502
    assert len(dialect.fake.requests) == 3


def api_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The attempts' lines: at INFO (whoever gets the error says what came of them)."""
    assert not [
        r for r in caplog.records if r.name == "adapters.apis" and r.levelno >= logging.WARNING
    ]
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "adapters.apis" and r.levelno == logging.INFO
    ]


async def test_each_failed_attempt_is_one_line_saying_what_failed(dialect, caplog):
    # Each was two: what failed where it was read, then "attempt 1 failed
    # (Unavailable, status None); retrying in 0.47 s". Each was a WARNING: three a
    # question, all through a long outage.
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    api = dialect.api(url=f"http://{closed}/v1/chat")
    _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is Unavailable
    refused = f"connection refused at {closed}"
    warned = api_warnings(caplog)
    assert len(warned) == 3, warned  # the last attempt's: the relay says what came of it
    assert [re.sub(r"in [\d.]+ s$", "in … s", said) for said in warned] == [
        f"attempt 1 of 3: {refused}; retrying in … s",
        f"attempt 2 of 3: {refused}; retrying in … s",
        f"attempt 3 of 3: {refused}",
    ]


async def test_a_5xx_attempt_is_one_line_with_the_apis_message(dialect, caplog):
    key = dialect.fake.api_key
    for _ in range(2):
        dialect.enqueue(status=502, body={"error": f"upstream down (key {key})"})
    dialect.enqueue(status=500, body="")
    api = dialect.api()
    _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is Unavailable and exc.status == 500
    warned = api_warnings(caplog)
    assert len(warned) == 3, warned
    assert warned[0].startswith(
        "attempt 1 of 3: HTTP 502 from the chat API: upstream down (key ***); retrying in "
    )
    assert warned[1].startswith("attempt 2 of 3: HTTP 502 from the chat API: upstream down")
    assert warned[2] == "attempt 3 of 3: HTTP 500 from the chat API"
    assert key not in caplog.text


async def test_dropped_connection_after_text_is_not_retried(dialect, caplog):
    dialect.enqueue(tokens=["one", " two", " three"], drop_after=2)
    dialect.enqueue(tokens=["must not be asked"])
    api = dialect.api()
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "one two"
    assert isinstance(exc, CutOff)
    assert len(dialect.fake.requests) == 1
    [warned] = api_warnings(caplog)
    assert re.fullmatch(
        r"attempt 1 of 3: the connection dropped mid-stream \(\w+\); not retried: text was shown",
        warned,
    ), warned


async def test_dropped_connection_before_any_text_is_retried(dialect, caplog):
    # The stream's opening event (ndjson's start, bot-messages' empty first chunk,
    # openai's role chunk) came, then the connection dropped: nothing was shown.
    dialect.enqueue(drop_after=0)
    dialect.enqueue(tokens=["second", " try"])
    api = dialect.api()
    events = await collect(api, ask(api))
    assert text_of(events) == "second try"
    assert len(dialect.fake.requests) == 2
    # It was "attempt 1 failed (Dropped, status 200)".
    [warned] = api_warnings(caplog)
    assert re.fullmatch(
        r"attempt 1 of 3: the connection dropped mid-stream \(\w+\); retrying in [\d.]+ s", warned
    ), warned


async def test_429_honours_retry_after(dialect):
    dialect.enqueue(status=429, retry_after=42)
    api = dialect.api()
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, RateLimited)
    assert exc.status == 429
    assert exc.retry_at is not None and 40 <= exc.retry_at - time.time() <= 43
    assert len(dialect.fake.requests) == 1


async def test_401_is_unauthorized_and_hides_the_key(dialect):
    api = dialect.api(api_key="wrong-key-0123456789")
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unauthorized)
    assert exc.status == 401 and exc.backend == "bot"
    assert "wrong-key" not in str(exc)


@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "https-tunnel"])
async def test_a_proxy_refusing_its_credentials_is_told_as_the_proxy_not_the_key(
    dialect, monkeypatch, caplog, tunnel
):
    # A forwarded 407 was "the assistant refused the question (HTTP 407)"; a tunnel's
    # (an https URL) was "unavailable", asked again and again.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    variable = "HTTPS_PROXY" if tunnel else "HTTP_PROXY"
    url = {"url": f"{'https' if tunnel else 'http'}://chat.example.invalid/v1/chat"}
    async with FakeProxy(credentials="corp:right-password") as proxy:
        monkeypatch.setenv(variable, proxy.url.replace("//", "//corp:expired-s3cret@"))
        api = dialect.api(**url)
        _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is ProxyRefused and exc.status == 407 and exc.backend == "bot"
    assert len(proxy.seen) == 1  # not asked again
    assert dialect.fake.requests == []
    said = str(exc)
    assert "proxy" in said and "407" in said and f"user:password in {variable}" in said
    assert "api_key" not in said and "expired-s3cret" not in said + caplog.text
    assert exc.user_message == (
        "The assistant is misconfigured (a proxy refused the bridge's credentials). Tell an admin."
    )


@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "https-tunnel"])
async def test_a_proxy_refusing_the_host_is_told_as_the_proxy_not_the_key(
    dialect, no_proxies, caplog, tunnel
):
    # The proxy's 403 to a host not on its list: forwarded, it was the API refusing the
    # key (check backends.x.api_key); to a tunnel, "unavailable", asked again and again.
    variable = "HTTPS_PROXY" if tunnel else "HTTP_PROXY"
    url = f"{'https' if tunnel else 'http'}://chat.example.invalid/v1/chat"
    async with FakeProxy(refuses=403) as proxy:
        no_proxies.setenv(variable, proxy.url.replace("//", "//corp:s3cret@"))
        api = dialect.api(url=url)
        _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is ProxyRefused and exc.status == 403 and exc.backend == "bot"
    assert len(proxy.seen) == 1  # not asked again
    said = str(exc)
    where = proxy.url.removeprefix("http://")
    assert said.startswith(f"the proxy at {where} ({variable}) answered HTTP 403 Forbidden")
    assert "NO_PROXY" in said and "chat.example.invalid" in said
    assert "api_key" not in said and "s3cret" not in said + caplog.text
    assert said in caplog.text
    assert exc.user_message == (
        "The assistant is misconfigured (a proxy refused to reach it). Tell an admin."
    )


async def test_a_proxy_that_cannot_be_reached_is_named_not_the_api(dialect, no_proxies, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{probe.getsockname()[1]}"
    no_proxies.setenv("HTTPS_PROXY", f"http://corp:s3cret@{where}")
    api = dialect.api(url="https://chat.example.invalid/v1/chat", retries={"attempts": 1})
    _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is ProxyUnreachable and exc.status is None
    assert str(exc) == (
        f"the proxy at {where} could not be reached (connection refused): check "
        "HTTPS_PROXY, and that the proxy is running"
    )
    assert exc.user_message == "The assistant could not be reached; please try again shortly."
    assert "s3cret" not in caplog.text


async def test_a_redirect_says_the_url_is_wrong(dialect, caplog):
    # Redirects are not followed: the asker is told to tell an admin, and the
    # log says where the url leads, without its query (a key may be in it).
    dialect.enqueue(
        status=301,
        body="<html>Moved</html>",
        headers={"Location": "https://api.example/v2/chat?key=s3cret"},
    )
    api = dialect.api()
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest) and exc.status == 301
    assert "misconfigured" in exc.user_message
    assert "redirects to https://api.example/v2/chat;" in caplog.text
    assert "s3cret" not in caplog.text
    assert len(dialect.fake.requests) == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [('{"answer": "Hi"}', "application/json"), ("Hi there", "text/plain"), ("", "text/plain")],
    ids=["json", "text", "empty"],
)
async def test_a_200_answer_that_is_no_stream_says_the_url_is_wrong(dialect, body, content_type):
    # It was "cut off; please ask again": asking again cannot help, and costs a credit.
    dialect.enqueue(body=body, headers={"Content-Type": content_type})
    api = dialect.api()
    events, exc = await collect_until_error(api, ask(api))
    assert events == []
    assert len(dialect.fake.requests) == 1  # not tried again
    if dialect.kind == "openai" and body.startswith("{"):
        # A server that ignores `stream: true` sends the whole answer as JSON: read as such.
        assert type(exc) is ProtocolError and "no choices" in str(exc)
        return
    assert type(exc) is NotAStream
    assert exc.user_message == (
        "The assistant is misconfigured (its address did not answer with a stream). Tell an admin."
    )
    assert f"did not answer with a stream (HTTP 200, Content-Type: {content_type}" in str(exc)
    assert ("an empty body" in str(exc)) == (not body)


async def test_a_stream_that_ends_after_its_opening_event_is_cut_off(dialect):
    # The opening event (NDJSON's start, bot-messages' empty content, OpenAI's role
    # chunk) shows no text, but it is the stream asked for: not a wrong URL.
    dialect.enqueue(tokens=["never sent"], cut_after=0)
    api = dialect.api()
    events, exc = await collect_until_error(api, ask(api))
    assert events == []
    assert type(exc) is CutOff


@pytest.mark.parametrize("body", ["", ": keep-alive\n\n: keep-alive\n\n"], ids=["empty", "pings"])
@pytest.mark.parametrize("content_type", ["text/event-stream", "application/x-ndjson"])
async def test_an_empty_stream_is_cut_off(dialect, content_type, body):
    # Said to be a stream, it ended before its first event (a server that gave up on
    # a queued model after keep-alives): asking again may help.
    dialect.enqueue(body=body, headers={"Content-Type": f"{content_type}; charset=utf-8"})
    api = dialect.api()
    events, exc = await collect_until_error(api, ask(api))
    assert events == []
    assert type(exc) is CutOff


async def test_a_probe_stops_reading_at_the_first_text(dialect):
    # `check --probe` read the whole answer: a runaway one for good, paid for by the token.
    dialect.enqueue(tokens=[f"word{n} " for n in range(100_000)], token_delay=0.001)
    api = dialect.api()
    async with asyncio.timeout(10):
        await api.probe()
    await dialect.fake.wait_disconnects(1)  # the stream was closed, not left open
    assert len(dialect.fake.requests) == 1


async def test_a_probe_of_a_backend_that_only_keeps_alive_times_out(dialect):
    # Keep-alives push the stream's own deadlines back while they come: the probe
    # waited for an answer that never began.
    dialect.enqueue(first_delay=3600, keepalive_every=0.1)
    api = dialect.api(timeouts={"connect": 0.2, "first_byte": 0.4, "idle": 0.2})
    assert api.probe_timeout == pytest.approx(0.8)
    async with asyncio.timeout(10):
        with pytest.raises(TimedOut) as err:
            await api.probe()
    assert err.value.backend == "bot"
    assert err.value.user_message == "The assistant did not begin an answer within 0.8 s."
    await dialect.fake.wait_disconnects(1)
