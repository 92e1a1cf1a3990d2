"""The NDJSON widget stream dialect against the fake server.

Shared streaming behaviour (timeouts, cut-off, retries, cancellation, 401/429/5xx,
malformed lines) is in test_streaming_common.py.
"""

from __future__ import annotations

import re

import pytest

from adapters.apis.ndjson import NDJSONStream
from bridge.errors import APIReportedError, BadRequest, Unauthorized
from bridge.interfaces import ChatRequest
from tests.apis.helpers import (
    ask,
    collect,
    collect_until_error,
    done_of,
    make,
    text_of,
)


async def test_streams_and_done_message_wins(fake_chat_api, http):
    fake_chat_api.enqueue(
        tokens=["We", " are", " a"],
        final="We are a customer support platform.",
        conversation_id="j97ch2kj8xm6rpct8te5w9b1fh6pc7k8",
    )
    api = make("ndjson", fake_chat_api, http)
    req = ask(api, "Explain what your company does")
    events = await collect(api, req)

    assert text_of(events) == "We are a"
    done = done_of(events)
    assert done.text == "We are a customer support platform."
    assert done.session == req.session
    assert done.usage == {"conversation_id": "j97ch2kj8xm6rpct8te5w9b1fh6pc7k8"}

    sent = fake_chat_api.requests[0]
    assert sent.path == "/ndjson/v1/chat/stream"
    assert sent.headers["x-api-key"] == fake_chat_api.api_key
    assert "authorization" not in sent.headers
    assert sent.json == {"sessionId": req.session, "message": "Explain what your company does"}


async def test_multi_turn_reuses_the_session_id(fake_chat_api, http):
    api = make("ndjson", fake_chat_api, http)
    first = await collect(api, ask(api, "Tell me about your services"))
    session = done_of(first).session
    assert session is not None and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", session)
    second = await collect(api, ChatRequest(message="And pricing?", session=session))
    assert done_of(second).session == session
    assert [r.json["sessionId"] for r in fake_chat_api.requests] == [session, session]


async def test_alias_path_and_widget_key_header(fake_chat_api, http):
    api = make(
        "ndjson",
        fake_chat_api,
        http,
        url=fake_chat_api.url + "/ndjson/chat",
        auth_header="x-widget-api-key",
    )
    events = await collect(api, ask(api))
    assert text_of(events) == "Hello from the fake."
    sent = fake_chat_api.requests[0]
    assert sent.path == "/ndjson/chat"
    assert sent.headers["x-widget-api-key"] == fake_chat_api.api_key
    assert "x-api-key" not in sent.headers


async def test_error_event_keeps_the_partial_text(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["We", " are", " never"], error_after=2)
    api = make("ndjson", fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "We are"
    assert isinstance(exc, APIReportedError)
    assert exc.message == "Internal server error"
    assert "Internal server error" in exc.user_message
    assert len(fake_chat_api.requests) == 1


async def test_400_invalid_payload(fake_chat_api, http):
    api = make("ndjson", fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api, ""))
    assert isinstance(exc, BadRequest)
    assert exc.status == 400
    assert exc.message == "Invalid request payload"


async def test_401_body(fake_chat_api, http):
    api = make("ndjson", fake_chat_api, http, api_key="nope-nope")
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unauthorized)


@pytest.mark.parametrize("session", ["has space", "x" * 129, "ümlaut", ""])
async def test_unusable_session_id_is_refused_without_a_request(fake_chat_api, http, session):
    api = make("ndjson", fake_chat_api, http)
    with pytest.raises(BadRequest, match="session id"):
        await collect(api, ChatRequest(message="hi", session=session))
    assert fake_chat_api.requests == []


async def test_without_a_session_one_is_made_and_returned(fake_chat_api, http):
    api = make("ndjson", fake_chat_api, http)
    events = await collect(api, ChatRequest(message="hi"))
    session = done_of(events).session
    assert session is not None and session.startswith("cb-")
    assert fake_chat_api.requests[0].json["sessionId"] == session


def test_options():
    options = NDJSONStream.Options.model_validate(
        {"kind": "ndjson", "url": "https://api.example.com/v1/chat/stream", "api_key": "k"}
    )
    assert options.auth_header == "x-api-key"
    with pytest.raises(ValueError, match="auth_header"):
        NDJSONStream.Options.model_validate(
            {"kind": "ndjson", "url": "https://x/chat", "api_key": "k", "auth_header": "bearer"}
        )
    with pytest.raises(ValueError, match="url"):
        NDJSONStream.Options.model_validate({"kind": "ndjson", "api_key": "k"})
