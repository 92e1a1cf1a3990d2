"""ChatMount against the fake server, through a real httpx client."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any

import httpx
import pytest

from adapters.apis import _http
from adapters.apis._bodies import retry_at
from adapters.apis.chatmount import ChatMount
from bridge.errors import (
    APIReportedError,
    BadRequest,
    ChatAPIError,
    CutOff,
    Forbidden,
    Misaddressed,
    NotAStream,
    ProtocolError,
    RateLimited,
    TimedOut,
    Unauthorized,
    Unavailable,
)
from bridge.interfaces import READ_GATE, ChatRequest, Done, Source, Sources, Token
from tests.apis import helpers
from tests.apis.helpers import (
    ask,
    cancel_mid_stream,
    collect,
    collect_until_error,
    done_of,
    text_of,
)
from tests.fakes.chatapi import FakeChatAPI


def make(fake: FakeChatAPI, client: httpx.AsyncClient, **options: Any) -> ChatMount:
    api = helpers.make("chatmount", fake, client, **options)
    assert isinstance(api, ChatMount)
    return api


async def test_streams_tokens_sources_and_done(fake_chat_api, http):
    fake_chat_api.enqueue(
        tokens=["Our", " hours", " are", " 9-5."],
        sources=[("https://example.com/about", "About Us")],
        final="Our hours are 9 to 5.",
    )
    api = make(fake_chat_api, http)
    req = ask(api)
    events = await collect(api, req)

    # Tokens that arrive in one network read come as one Token.
    assert text_of(events) == "Our hours are 9-5."
    assert isinstance(events[0], Token)
    assert Sources((Source("https://example.com/about", "About Us"),)) in events
    done = done_of(events)
    assert done.text == "Our hours are 9 to 5."  # the done message wins
    assert done.session == req.session
    assert done.usage == {"credits_used": 1, "credits_remaining": 99}

    sent = fake_chat_api.requests[0]
    assert sent.path == "/v1/chat"
    assert sent.headers["authorization"] == f"Bearer {fake_chat_api.api_key}"
    assert sent.json == {
        "message": "What are your hours?",
        "stream": True,
        "include_sources": True,
        "session_id": req.session,
    }
    assert api.last_rate_limit["limit"] == 60
    assert api.last_rate_limit["remaining"] == 59
    assert api.last_rate_limit["reset"] > time.time()
    assert api.last_usage["credits_remaining"] == 99


async def test_events_one_line_each_without_blank_lines(fake_chat_api, http):
    # ChatMount's own clients read a `data:` line as one event; a server that
    # leaves out SSE's blank line between events is answered all the same.
    fake_chat_api.enqueue(
        tokens=["Our", " hours", " are", " 9-5."],
        sources=[("https://example.com/about", "About Us")],
        token_delay=0.01,
        one_newline=True,
    )
    api = make(fake_chat_api, http)
    events = await collect(api, ask(api))
    assert text_of(events) == "Our hours are 9-5."
    assert Sources((Source("https://example.com/about", "About Us"),)) in events
    assert isinstance(events[-1], Done)


async def test_done_without_message_leaves_text_to_tokens(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["a", "b"])
    api = make(fake_chat_api, http, include_sources=False)
    events = await collect(api, ask(api))
    assert text_of(events) == "ab"
    assert done_of(events).text is None
    assert fake_chat_api.requests[0].json["include_sources"] is False


async def test_session_is_reused_across_turns(fake_chat_api, http):
    api = make(fake_chat_api, http)
    session = api.new_session()
    assert re.fullmatch(r"cb-[0-9a-f]{32}", session)
    first = await collect(api, ChatRequest(message="What do you offer?", session=session))
    second = await collect(api, ChatRequest(message="Tell me more", session=done_of(first).session))
    assert done_of(second).session == session
    assert [r.json["session_id"] for r in fake_chat_api.requests] == [session, session]
    assert api.new_session() != session


async def test_session_id_from_done_wins(fake_chat_api, http):
    fake_chat_api.enqueue(session_id="server-chosen")
    api = make(fake_chat_api, http)
    events = await collect(api, ask(api))
    assert done_of(events).session == "server-chosen"


async def test_non_streaming_json_answer(fake_chat_api, http):
    fake_chat_api.enqueue(
        final="Monday to Friday.",
        sources=[("https://example.com/hours", "Hours")],
        usage={"credits_used": 1, "credits_remaining": 41},
    )
    api = make(fake_chat_api, http, stream=False)
    events = await collect(api, ask(api))
    assert text_of(events) == "Monday to Friday."
    assert Sources((Source("https://example.com/hours", "Hours"),)) in events
    done = done_of(events)
    assert done.text == "Monday to Friday."
    assert done.usage == {"credits_used": 1, "credits_remaining": 41}
    assert fake_chat_api.requests[0].json["stream"] is False


async def test_a_whole_answer_waits_no_longer_than_the_total_timeout(fake_chat_api, http):
    # With `stream: false` the answer is one response: `total` bounds it too.
    fake_chat_api.enqueue(first_delay=5)
    api = make(fake_chat_api, http, stream=False, timeouts={"total": 0.2})
    started = time.monotonic()
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, TimedOut)
    assert "did not finish within 0.2 s" in exc.user_message
    assert time.monotonic() - started < 4  # not connect + first_byte (125 s)


async def test_400_carries_the_api_message(fake_chat_api, http):
    fake_chat_api.enqueue(status=400, body={"error": "Bad JSON in request"})
    api = make(fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert seen == []
    assert isinstance(exc, BadRequest)
    assert exc.status == 400 and exc.backend == "bot"
    assert exc.message == "Bad JSON in request"
    assert len(fake_chat_api.requests) == 1  # not retried


@pytest.mark.parametrize("stream", [True, False])
async def test_an_error_body_past_the_cap_is_not_read_and_the_status_still_counts(
    fake_chat_api, http, monkeypatch, caplog, stream
):
    monkeypatch.setattr(_http, "ERROR_BODY_BYTES", 1024)
    fake_chat_api.enqueue(status=400, body={"error": "Bad JSON " + "x" * 5000})
    fake_chat_api.enqueue(status=400, body={"error": "Bad JSON in request"})  # under the cap
    api = make(fake_chat_api, http, stream=stream)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest) and exc.status == 400
    assert exc.message == "The assistant refused the question (HTTP 400)."
    assert "xxx" not in caplog.text
    assert "HTTP 400 from the chat API (its body is over 1024 bytes: not read)" in caplog.text
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest) and exc.message == "Bad JSON in request"

    fake_chat_api.enqueue(status=500, body="x" * 5000)
    fake_chat_api.enqueue(tokens=["Fine."])
    events = await collect(api, ask(api))  # a 5xx is retried, its body or not
    assert text_of(events) == "Fine."


async def test_a_whole_answer_past_the_cap_is_too_large(fake_chat_api, http, monkeypatch):
    monkeypatch.setattr(_http, "JSON_BODY_BYTES", 1024)
    fake_chat_api.enqueue(final="y" * 5000)
    fake_chat_api.enqueue(final="y" * 500)
    api = make(fake_chat_api, http, stream=False)
    seen, exc = await collect_until_error(api, ask(api))
    assert seen == []
    assert isinstance(exc, ProtocolError)
    assert exc.user_message == "The assistant's answer was too large to read."
    assert len(fake_chat_api.requests) == 1  # not retried
    done = done_of(await collect(api, ask(api)))  # one under the cap is read
    assert done.text == "y" * 500


@pytest.mark.parametrize("stream", [True, False])
async def test_a_redirect_says_the_url_is_wrong(fake_chat_api, http, stream):
    fake_chat_api.enqueue(status=308, body="", headers={"Location": "https://api.example/v1/chat"})
    api = make(fake_chat_api, http, stream=stream)
    seen, exc = await collect_until_error(api, ask(api))
    assert seen == []
    assert isinstance(exc, BadRequest) and exc.status == 308
    assert "misconfigured (HTTP 308" in exc.user_message


async def test_a_redirect_to_a_path_is_logged_as_the_url_it_makes(fake_chat_api, http, caplog):
    fake_chat_api.enqueue(status=308, body="", headers={"Location": "/v1/chat/?token=x"})
    api = make(fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest)
    assert f"redirects to {fake_chat_api.url}/v1/chat/;" in caplog.text


async def test_401_wrong_key_never_shows_the_key(fake_chat_api, http):
    api = make(fake_chat_api, http, api_key="cm_live_wrong_0123456789")
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unauthorized)
    assert exc.status == 401
    assert "cm_live_wrong" not in str(exc) and "cm_live_wrong" not in exc.user_message
    assert len(fake_chat_api.requests) == 1


async def test_403(fake_chat_api, http):
    fake_chat_api.enqueue(status=403)
    api = make(fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Forbidden)
    assert exc.status == 403
    assert "allowlist" in exc.user_message


async def test_429_gives_the_reset_time(fake_chat_api, http):
    fake_chat_api.enqueue(status=429, reset_in=120)
    api = make(fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, RateLimited)
    assert exc.retry_at is not None
    assert 100 < exc.retry_at - time.time() <= 121
    assert "try again in 2 min" in exc.user_message
    assert api.last_rate_limit["remaining"] == 0
    assert len(fake_chat_api.requests) == 1  # a 429 is not retried here


async def test_5xx_is_retried_then_succeeds(fake_chat_api, http):
    fake_chat_api.enqueue(status=503)
    fake_chat_api.enqueue(status=500)
    fake_chat_api.enqueue(tokens=["fine"])
    api = make(fake_chat_api, http)
    events = await collect(api, ask(api))
    assert text_of(events) == "fine"
    assert len(fake_chat_api.requests) == 3
    assert len({r.json["session_id"] for r in fake_chat_api.requests}) == 1


async def test_5xx_exhausted(fake_chat_api, http):
    for _ in range(3):
        fake_chat_api.enqueue(status=502)
    fake_chat_api.enqueue(tokens=["never"])
    api = make(fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unavailable) and not isinstance(exc, TimedOut)
    assert exc.status == 502
    assert len(fake_chat_api.requests) == 3


async def test_connection_dropped_before_any_token_is_retried(fake_chat_api, http):
    fake_chat_api.enqueue(drop_after=0)
    fake_chat_api.enqueue(tokens=["second", " try"])
    api = make(fake_chat_api, http)
    events = await collect(api, ask(api))
    assert text_of(events) == "second try"
    assert len(fake_chat_api.requests) == 2


async def test_no_retry_once_a_token_was_shown(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["one", " two", " three"], drop_after=2)
    fake_chat_api.enqueue(tokens=["must not be asked"])
    api = make(fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "one two"
    assert isinstance(exc, CutOff)
    assert len(fake_chat_api.requests) == 1


async def test_unreachable_server_is_unavailable(http):
    block = {
        "kind": "chatmount",
        "url": "http://127.0.0.1:9/v1/chat",
        "api_key": "k",
        "retries": {"attempts": 2, "backoff": 0.0},
    }
    api = ChatMount("docs", ChatMount.Options.model_validate(block), http)
    _, exc = await collect_until_error(api, ChatRequest(message="hi"))
    assert type(exc) is Unavailable
    assert "could not be reached" in exc.user_message


@pytest.mark.parametrize(
    ("case", "told", "logged"),
    [
        (
            "dns",
            "is misconfigured (its address could not be reached). Tell an admin.",
            "the host name chat.exmaple-typo.invalid does not resolve (check the backend's url)",
        ),
        (
            "tls",
            "is misconfigured (its address could not be reached). Tell an admin.",
            "the TLS handshake with {where} failed (check the url's scheme and port, "
            "or the certificate: ",
        ),
        (
            "refused",
            "could not be reached; please try again shortly.",
            "connection refused at {where}",
        ),
    ],
    ids=["dns", "tls", "refused"],
)
async def test_a_failure_to_connect_tells_the_admin_what_to_check(
    fake_chat_api, http, caplog, case, told, logged
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    where = {"dns": "", "tls": fake_chat_api.url.removeprefix("http://"), "refused": closed}[case]
    url = {
        "dns": "https://chat.exmaple-typo.invalid/v1/chat",
        "tls": fake_chat_api.endpoint("chatmount").replace("http://", "https://"),
        "refused": f"http://{closed}/v1/chat",
    }[case]
    api = make(fake_chat_api, http, url=url + "?token=query-secret")
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unavailable)  # tried again as any connection error is
    assert isinstance(exc, Misaddressed) == (case != "refused")  # only an admin mends it
    assert exc.user_message == f"The assistant {told}"
    said = [r.getMessage() for r in caplog.records if r.name == "adapters.apis"]
    assert len(said) == 3  # one a try
    assert said[0].startswith(f"attempt 1 of 3: {logged.format(where=where)}"), said[0]
    assert "query-secret" not in caplog.text and fake_chat_api.requests == []


async def test_unusable_url_and_text_are_translated(fake_chat_api, http):
    # The config refuses such a URL; one that gets past it is still a clear error.
    api = make(fake_chat_api, http)
    api.options = api.options.model_copy(update={"url": "http://[::1:bad/v1/chat"})
    _, exc = await collect_until_error(api, ask(api))
    assert type(exc) is ChatAPIError and "URL is not valid" in exc.user_message

    api = make(fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api, "lone \ud800 surrogate"))
    assert isinstance(exc, BadRequest)
    assert fake_chat_api.requests == []


@pytest.mark.parametrize("length", [0, 2001])
async def test_out_of_range_question_is_refused_without_a_request(fake_chat_api, http, length):
    api = make(fake_chat_api, http)
    with pytest.raises(BadRequest) as info:
        await collect(api, ask(api, "x" * length))
    assert info.value.message == "Message must be between 1 and 2000 characters"
    assert fake_chat_api.requests == []


async def test_2000_chars_is_accepted(fake_chat_api, http):
    api = make(fake_chat_api, http)
    events = await collect(api, ask(api, "x" * 2000))
    assert isinstance(events[-1], Done)


async def test_malformed_line_is_skipped(fake_chat_api, http, caplog):
    fake_chat_api.enqueue(tokens=["a", "b", "c"], malformed_after=1)
    api = make(fake_chat_api, http)
    events = await collect(api, ask(api))
    assert text_of(events) == "abc"
    assert isinstance(events[-1], Done)
    assert "malformed" in caplog.text
    assert fake_chat_api.api_key not in caplog.text


async def test_stream_without_done_is_cut_off(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["par", "tial", " never"], cut_after=2)
    api = make(fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "partial"
    assert not any(isinstance(e, Done) for e in seen)
    assert isinstance(exc, CutOff) and exc.backend == "bot"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"message": "Our hours are 9 to 5.", "usage": {"credits_used": 1}}, "application/json"),
        ("Hi there", "text/plain"),
    ],
    ids=["json", "text"],
)
async def test_a_200_answer_that_is_no_stream_says_the_url_is_wrong(
    fake_chat_api, http, body, content_type
):
    # ChatMount's own whole answer (as `stream: false` gets), to a stream request.
    headers = {} if isinstance(body, dict) else {"Content-Type": content_type}
    fake_chat_api.enqueue(body=body, headers=headers)
    api = make(fake_chat_api, http)
    events, exc = await collect_until_error(api, ask(api))
    assert events == [] and len(fake_chat_api.requests) == 1
    assert type(exc) is NotAStream and exc.user_message.endswith("Tell an admin.")
    assert f"did not answer with a stream (HTTP 200, Content-Type: {content_type}" in str(exc)


@pytest.mark.parametrize(
    "body", ["", 'data: {"type": "ping"}\n\n'], ids=["empty", "unknown-events-only"]
)
async def test_a_stream_without_an_answer_is_cut_off(fake_chat_api, http, body):
    # The stream asked for, ended before its text: asking again may help.
    fake_chat_api.enqueue(body=body, headers={"Content-Type": "text/event-stream"})
    api = make(fake_chat_api, http)
    events, exc = await collect_until_error(api, ask(api))
    assert events == [] and type(exc) is CutOff


async def test_error_event_keeps_partial_text(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["half", " way"], error_after=1, error="model overloaded")
    api = make(fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "half"
    assert isinstance(exc, APIReportedError)
    assert exc.message == "model overloaded"


async def test_idle_timeout_on_a_slow_stream(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["quick", " then", " slow"], token_delay=5.0)
    api = make(fake_chat_api, http, timeouts={"idle": 0.3})
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "quick"
    assert isinstance(exc, TimedOut)
    assert "stopped answering within 0.3 s" in exc.user_message
    assert len(fake_chat_api.requests) == 1
    await fake_chat_api.wait_disconnects(1)


async def test_pauses_the_reply_asks_for_are_not_idle_time(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["one", " two", " three", " four"], token_delay=0.05)
    api = make(fake_chat_api, http, timeouts={"idle": 0.3})
    pauses: list[float] = []

    async def gate() -> None:  # a reply holding its reader for longer than the idle timeout
        started = time.monotonic()
        await asyncio.sleep(0.5)
        pauses.append(time.monotonic() - started)

    token = READ_GATE.set(gate)
    try:
        events = await collect(api, ask(api))
    finally:
        READ_GATE.reset(token)
    assert text_of(events) == "one two three four"
    assert pauses and min(pauses) >= 0.5  # each pause outlasted the idle timeout


async def test_first_byte_timeout_is_not_retried(fake_chat_api, http):
    fake_chat_api.enqueue(first_delay=5.0)
    api = make(fake_chat_api, http, timeouts={"connect": 1, "first_byte": 0.3})
    seen, exc = await collect_until_error(api, ask(api))
    assert seen == []
    assert isinstance(exc, TimedOut)
    assert len(fake_chat_api.requests) == 1


async def test_cancellation_mid_stream_closes_the_connection(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["first", " second"], hang_after=1)
    api = make(fake_chat_api, http)
    seen = await cancel_mid_stream(api, ask(api))
    assert seen == [Token("first")]
    await fake_chat_api.wait_disconnects(1)
    assert fake_chat_api.disconnects == 1


async def test_closing_the_generator_early_closes_the_connection(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["first", " second"], hang_after=1)
    api = make(fake_chat_api, http)
    events = api.stream(ask(api))
    assert await anext(events) == Token("first")
    await events.aclose()
    await fake_chat_api.wait_disconnects(1)
    assert fake_chat_api.disconnects == 1


def test_options_need_an_api_key_and_an_http_url():
    with pytest.raises(ValueError, match="api_key"):
        ChatMount.Options.model_validate({"kind": "chatmount"})
    with pytest.raises(ValueError, match="http"):
        ChatMount.Options.model_validate({"kind": "chatmount", "api_key": "k", "url": "ftp://x"})
    with pytest.raises(ValueError, match="include_source"):
        ChatMount.Options.model_validate({"kind": "chatmount", "api_key": "k", "include_source": 1})
    options = ChatMount.Options.model_validate({"kind": "chatmount", "api_key": "k"})
    assert options.url == "https://services.chatmount.co/v1/chat"
    assert options.timeouts.connect == 5 and options.timeouts.idle == 30
    assert options.retries.attempts == 3
    assert "k" not in repr(options.api_key)


def test_retry_at_reads_reset_epoch_seconds_and_dates():
    now = 1_714_581_000.0
    assert retry_at({"x-ratelimit-reset": "1714581600"}, now) == 1714581600.0
    assert retry_at({"retry-after": "7"}, now) == now + 7
    assert retry_at({"retry-after": "Wed, 01 May 2024 16:40:00 GMT"}, now) == 1714581600.0
    assert retry_at({"x-ratelimit-reset": "30", "retry-after": "10"}, now) == now + 30
    assert retry_at({"retry-after": "soon"}, now) is None
    assert retry_at({}, now) is None
    # The other two HTTP-date forms (RFC 850, asctime), both GMT.
    assert retry_at({"retry-after": "Wednesday, 01-May-24 16:40:00 GMT"}, now) == 1714581600.0
    assert retry_at({"retry-after": "Wed May  1 16:40:00 2024"}, now) == 1714581600.0
    # No time at all, or absurdly far: not taken at its word.
    for absurd in ("inf", "Infinity", "1e400", "nan"):
        assert retry_at({"retry-after": absurd}, now) is None, absurd
        assert retry_at({"x-ratelimit-reset": absurd}, now) is None, absurd
    assert retry_at({"retry-after": "9999999999"}, now) == now + 86400


def test_a_reset_epoch_is_read_against_the_apis_own_date():
    # This host's clock is 10 minutes behind the API's: the wait is what the API
    # meant (30 s), not 30 s plus the lag.
    now = 1_714_581_000.0
    date = "Wed, 01 May 2024 16:40:00 GMT"  # 1714581600, the API's now
    assert retry_at({"x-ratelimit-reset": "1714581630", "date": date}, now) == now + 30
    assert retry_at({"retry-after": "Wed, 01 May 2024 16:40:30 GMT", "date": date}, now) == now + 30
    assert retry_at({"retry-after": "7", "date": date}, now) == now + 7
    assert retry_at({"x-ratelimit-reset": "1714581630", "date": "garbled"}, now) == 1714581630.0
    # A Date an hour off is more likely a proxy's wrong clock than the API's: not used
    # (read so, a 429 would be held for no time at all, or for an hour).
    proxys = "Wed, 01 May 2024 17:40:00 GMT"
    assert retry_at({"x-ratelimit-reset": "1714581630", "date": proxys}, now) == 1714581630.0


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("Message too long", "Message too long."),
        ("Message too long!", "Message too long!"),
        ("Which model?", "Which model?"),
        ("cut at the limit…", "cut at the limit…"),
        ("  padded.  ", "padded."),
    ],
)
def test_the_apis_reason_is_shown_as_its_own_sentence(said: str, shown: str) -> None:
    refused = BadRequest(api_said=said)
    assert refused.user_message == f"The assistant could not take that question: {shown}"
    assert BadRequest(api_said="   ").user_message == BadRequest.user_message


@pytest.mark.parametrize(
    "said",
    [
        "Traceback: KeyError at /srv/app.py line 3",
        "failed reading /var/lib/models/x",
        "connect ECONNREFUSED 10.20.0.7:6379",
        "upstream db.prod.internal:5432 refused the connection",
        "dial tcp [fd00:ec2::23]:6379: connect: connection refused",
        "dial tcp [::1]:5432: i/o timeout",
        "no route to fd00:ec2::23",
        "line one\nline two",
        "x" * 301,
    ],
)
def test_an_apis_reason_with_internals_in_it_is_kept_for_the_log(said: str) -> None:
    # An address, a path or a traceback is the backend's business, not the asker's.
    refused = BadRequest(api_said=said)
    assert refused.user_message == BadRequest.user_message and said.strip() in str(refused)
    reported = APIReportedError(said)
    assert reported.user_message == APIReportedError.user_message and said.strip() in str(reported)
    assert APIReportedError("model overloaded").user_message == (
        "The assistant reported an error: model overloaded."
    )


def test_an_apis_reason_keeps_its_sentence_without_its_links() -> None:
    # Many reasons end with a link to the API's docs: the sentence is what helps.
    said = (
        "The response was filtered due to the prompt triggering content management "
        "policy. Please modify your prompt and retry. To learn more: "
        "https://go.microsoft.com/fwlink/?linkid=2198766"
    )
    refused = BadRequest(api_said=said)
    assert refused.user_message.startswith(
        "The assistant could not take that question: The response was filtered"
    )
    assert "https://" not in refused.user_message and "linkid" in str(refused)
    reported = APIReportedError("upstream openai 500 (see https://status.example/x)")
    assert reported.user_message == "The assistant reported an error: upstream openai 500."
    assert "std::vector" in APIReportedError("std::vector overflow").user_message


def test_an_asctime_retry_after_is_gmt_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = 1_714_581_000.0
        assert retry_at({"retry-after": "Wed May  1 16:40:00 2024"}, now) == 1714581600.0
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_the_total_timeout_bounds_the_answer_not_each_attempt(
    fake_chat_api: FakeChatAPI, http: httpx.AsyncClient
) -> None:
    # Each drop before any text was retried with a fresh `total`: an answer with
    # `total: 1` took 3 s, and was asked for three times.
    for _ in range(2):
        fake_chat_api.enqueue(tokens=["never"], first_delay=0.8, drop_after=0)
    fake_chat_api.enqueue(tokens=["late ", "answer"], first_delay=0.8)
    api = make(fake_chat_api, http, timeouts={"total": 1.0})
    events, error = await collect_until_error(api, ask(api))
    assert isinstance(error, TimedOut) and "did not finish" in error.user_message
    # A fresh `total` for each attempt shows as the third request (each drop
    # comes 0.8 s in, inside its own attempt's second); no clock is read here.
    assert len(fake_chat_api.requests) <= 2
    assert not [e for e in events if isinstance(e, Token)]
