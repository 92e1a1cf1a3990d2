"""The OpenAI-compatible dialect against the fake server.

Shared streaming behaviour (timeouts, cut-off, retries, cancellation, 401/429/5xx,
malformed lines) is in test_streaming_common.py.
"""

from __future__ import annotations

import json

import pytest

from adapters.apis._wire import EventTooLarge
from adapters.apis.openai import OpenAICompatible
from bridge.config import SourcesConfig
from bridge.errors import APIReportedError, BadRequest, CutOff, ProtocolError
from bridge.interfaces import ChatRequest, Done, Source, Sources, Turn
from bridge.sources import dedupe_sources
from tests.apis.helpers import (
    ask,
    collect,
    collect_until_error,
    done_of,
    make,
    text_of,
)


async def test_request_shape_and_stream(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["Hi", " there"])
    api = make("openai", fake_chat_api, http, system_prompt="Be brief.", temperature=0.2)
    events = await collect(api, ask(api, "Hello?"))
    assert text_of(events) == "Hi there"
    assert done_of(events).text is None

    sent = fake_chat_api.requests[0]
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {fake_chat_api.api_key}"
    assert sent.json == {
        "model": "test-model",
        "stream": True,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello?"},
        ],
    }


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("reason", "says"),
    [
        ("length", "length limit"),
        ("content_filter", "content filter"),
        # vLLM's own: an aborted request, an engine error, a repetition detected.
        ("abort", "stopped it before its end"),
        ("error", "an error on the assistant's side"),
        ("repetition", "repeating itself"),
    ],
)
async def test_an_answer_stopped_short_is_cut_off(fake_chat_api, http, stream, reason, says):
    fake_chat_api.enqueue(tokens=["To deploy, ", "first run"], finish_reason=reason)
    api = make("openai", fake_chat_api, http, stream=stream)
    events, exc = await collect_until_error(api, ChatRequest(message="How?"))
    assert text_of(events) == "To deploy, first run"  # what came is still shown
    assert isinstance(exc, CutOff) and says in exc.user_message


async def test_multi_turn_sends_the_history(fake_chat_api, http):
    api = make("openai", fake_chat_api, http, user_id="hashed")
    history = (Turn("user", "Hello?"), Turn("assistant", "Hi there"))
    await collect(api, ChatRequest(message="And you?", history=history, user_id="slack:T1:U1"))
    body = fake_chat_api.requests[0].json
    assert [m["content"] for m in body["messages"]] == ["Hello?", "Hi there", "And you?"]
    assert body["user"].startswith("u-")


async def test_full_endpoint_url_is_used_as_is(fake_chat_api, http):
    url = fake_chat_api.url + "/openai/v1/chat/completions/"
    api = make("openai", fake_chat_api, http, url=url)
    await collect(api, ask(api))
    assert fake_chat_api.requests[0].path == "/openai/v1/chat/completions"


async def test_non_streaming_answer(fake_chat_api, http):
    fake_chat_api.enqueue(final="Whole answer.", usage={"prompt_tokens": 3, "completion_tokens": 2})
    api = make("openai", fake_chat_api, http, stream=False, max_tokens=50)
    events = await collect(api, ask(api))
    done = done_of(events)
    assert done.text == "Whole answer."
    assert done.usage == {"prompt_tokens": 3, "completion_tokens": 2}
    assert fake_chat_api.requests[0].json["max_tokens"] == 50


async def test_400_carries_the_api_message(fake_chat_api, http):
    api = make("openai", fake_chat_api, http)
    api.options = api.options.model_copy(update={"model": ""})  # the server requires one
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest)
    assert exc.message == "you must provide a model parameter"


async def test_error_chunk_mid_stream(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["half", " never"], error_after=1, error="overloaded")
    api = make("openai", fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "half"
    assert isinstance(exc, APIReportedError) and exc.message == "overloaded"


async def test_an_event_that_never_ends_is_refused_at_the_cap_text_kept(fake_chat_api, http):
    # Data lines with no blank line between them were held as one event without
    # bound: nothing more was shown, and memory grew until the server stopped.
    fake_chat_api.enqueue(tokens=["Shown ", "so far."], unended_after=2)
    api = make("openai", fake_chat_api, http)
    seen, exc = await collect_until_error(api, ask(api))
    assert text_of(seen) == "Shown so far."
    assert isinstance(exc, EventTooLarge)
    assert exc.user_message == (
        "The assistant's answer could not be read (an event of its stream is larger "
        "than 1048576 bytes)."
    )


def test_options():
    with pytest.raises(ValueError, match="model"):
        OpenAICompatible.Options.model_validate({"kind": "openai"})
    options = OpenAICompatible.Options.model_validate({"kind": "openai", "model": "llama3"})
    assert options.url == "https://api.openai.com/v1"
    assert options.api_key is None and options.user_id == "none" and options.history == 20


@pytest.mark.parametrize("form", ["data", "event", "field"])
async def test_an_error_sent_in_the_stream_is_reported_in_any_form(fake_chat_api, http, form):
    # `event: error` (a bare message object) and llama.cpp's `error:` line, followed
    # by `data: [DONE]`, were taken for a cut-off and a complete answer.
    fake_chat_api.enqueue(
        tokens=["Step 1: ", "open the"],
        error_after=1,
        error_form=form,
        error="the request exceeds the available context size",
    )
    api = make("openai", fake_chat_api, http)
    events, exc = await collect_until_error(api, ask(api))
    assert text_of(events) == "Step 1: "
    assert isinstance(exc, APIReportedError)
    assert exc.message == "the request exceeds the available context size"


async def test_a_whole_answer_to_a_stream_request_is_shown(fake_chat_api, http):
    # A server that ignores `stream: true` answers with the whole completion: it was
    # read as a stream of nothing, and said to be cut off, on every try.
    fake_chat_api.enqueue(tokens=["All ", "of it."], ignore_stream=True)
    api = make("openai", fake_chat_api, http)
    events = await collect(api, ask(api))
    assert text_of(events) == "All of it."
    assert done_of(events).usage == {"prompt_tokens": 5, "completion_tokens": 5}


async def test_a_json_error_body_with_status_200_is_reported(fake_chat_api, http):
    fake_chat_api.enqueue(body={"error": {"message": "model 'llama9' not found"}})
    api = make("openai", fake_chat_api, http)
    events, exc = await collect_until_error(api, ask(api))
    assert events == []
    assert isinstance(exc, APIReportedError) and exc.message == "model 'llama9' not found"


async def test_a_web_page_instead_of_a_stream_is_named(fake_chat_api, http):
    # A proxy's or a login page's HTML with status 200 was said to be a cut-off answer.
    fake_chat_api.enqueue(
        body="<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>",
        headers={"Content-Type": "text/html"},
    )
    api = make("openai", fake_chat_api, http)
    events, exc = await collect_until_error(api, ask(api))
    assert events == []
    assert isinstance(exc, ProtocolError) and not isinstance(exc, CutOff)
    assert "check the backend's url" in str(exc)  # for the admin, in the log
    assert exc.user_message.endswith("Tell an admin.")  # for the asker


async def test_a_query_in_the_url_is_kept(fake_chat_api, http):
    # Azure's `?api-version=`: the path was appended after the query.
    url = fake_chat_api.endpoint("openai") + "?api-version=2024-06-01"
    fake_chat_api.enqueue(tokens=["Hi"])
    api = make("openai", fake_chat_api, http, url=url)
    assert text_of(await collect(api, ask(api))) == "Hi"
    sent = fake_chat_api.requests[0]
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.query == {"api-version": "2024-06-01"}


async def test_keep_alive_comments_are_signs_of_life(fake_chat_api, http):
    # OpenRouter sends ": OPENROUTER PROCESSING" while a model queues or reasons:
    # the first-byte deadline ran out all the same, on a server alive and working.
    fake_chat_api.enqueue(tokens=["Thought ", "through."], first_delay=3.0, keepalive_every=0.3)
    api = make("openai", fake_chat_api, http, timeouts={"connect": 0.5, "first_byte": 1.0})
    assert text_of(await collect(api, ask(api))) == "Thought through."


async def test_an_early_keep_alive_does_not_shorten_the_first_byte_deadline(fake_chat_api, http):
    # A comment at once made the deadline `idle` from then, shorter than first_byte.
    fake_chat_api.enqueue(tokens=["Slow ", "start."], first_delay=1.5, keepalive_every=10.0)
    api = make(
        "openai", fake_chat_api, http, timeouts={"connect": 0.5, "first_byte": 3.0, "idle": 0.5}
    )
    assert text_of(await collect(api, ask(api))) == "Slow start."


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://h:8000/v1", "http://h:8000/v1/chat/completions"),
        ("http://h/v1/", "http://h/v1/chat/completions"),
        ("http://h/v1/chat/completions", "http://h/v1/chat/completions"),
        (
            "https://r.openai.azure.com/openai/deployments/a%2Fb?api-version=2024-06-01",
            "https://r.openai.azure.com/openai/deployments/a%2Fb/chat/completions"
            "?api-version=2024-06-01",
        ),
        ("http://[::1]:8080/a%3Fb/v1", "http://[::1]:8080/a%3Fb/v1/chat/completions"),
    ],
)
def test_the_endpoint_keeps_the_url_as_written(url, endpoint):
    api = OpenAICompatible(
        "bot",
        OpenAICompatible.Options.model_validate({"kind": "openai", "url": url, "model": "m"}),
        None,  # type: ignore[arg-type]
    )
    assert api.endpoint == endpoint


@pytest.mark.parametrize("stream", [True, False], ids=["json-for-a-stream", "stream-false"])
async def test_a_whole_answer_is_read_up_to_8_mib(fake_chat_api, http, stream):
    # A whole answer to a streaming request was refused past 1 MiB, where one to
    # `stream: false` is read up to 8 MiB.
    fake_chat_api.enqueue(final="x " * (1 << 20), ignore_stream=True)  # 2 MiB
    api = make("openai", fake_chat_api, http, stream=stream)
    assert text_of(await collect(api, ask(api))) == "x " * (1 << 20)


@pytest.mark.parametrize("stream", [True, False], ids=["json-for-a-stream", "stream-false"])
async def test_a_whole_answer_past_8_mib_is_too_large(fake_chat_api, http, stream):
    # It was said to be larger than 1 MiB, where one to `stream: false` was said to be
    # too large to read.
    fake_chat_api.enqueue(final="x " * (9 << 19), ignore_stream=True)  # 9 MiB
    api = make("openai", fake_chat_api, http, stream=stream)
    events, exc = await collect_until_error(api, ask(api))
    assert text_of(events) == ""
    assert isinstance(exc, ProtocolError)
    assert exc.user_message == "The assistant's answer was too large to read."
    assert len(fake_chat_api.requests) == 1  # not asked again


CITED = [("https://docs.example/install", "Install"), ("https://docs.example/upgrade", "Upgrade")]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("form", ["citations", "annotations"])
async def test_cited_sources_come_before_the_end(fake_chat_api, http, stream, form):
    # Perplexity's `citations` (which its [1], [2] number) and the url_citation
    # annotations of OpenAI's search models and OpenRouter were dropped: no sources.
    fake_chat_api.enqueue(
        tokens=["Run the installer[1], ", "then migrate[2]."], sources=CITED, cite_form=form
    )
    api = make("openai", fake_chat_api, http, stream=stream)
    events = await collect(api, ask(api))
    done_of(events)
    cited = [e for e in events if isinstance(e, Sources)]
    assert len(cited) == 1 and events[-2] is cited[0]  # once, whole, in the API's order
    assert cited[0].items == tuple(Source(url, title) for url, title in CITED)


async def test_sources_of_a_whole_answer_to_a_stream_request_are_read(fake_chat_api, http):
    fake_chat_api.enqueue(
        tokens=["See [1]."], sources=CITED[:1], cite_form="citations", ignore_stream=True
    )
    api = make("openai", fake_chat_api, http)
    events = await collect(api, ask(api))
    assert [e for e in events if isinstance(e, Sources)] == [Sources((Source(*CITED[0]),))]
    assert isinstance(events[-1], Done)


async def test_other_annotations_and_repeats_are_not_sources(fake_chat_api, http):
    note = {"type": "url_citation", "url_citation": {"url": CITED[0][0], "title": "Install"}}
    chunk = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "content": "Done.",
                    "annotations": [
                        note,
                        {"type": "file_citation", "file_citation": {"file_id": "f1"}},
                        "junk",
                        {"type": "url_citation", "url_citation": {"url": 7}},
                        note,
                    ],
                },
                "finish_reason": "stop",
            }
        ],
        "citations": ["https://docs.example/a", None],
    }
    fake_chat_api.enqueue(
        body=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n",
        headers={"Content-Type": "text/event-stream"},
    )
    api = make("openai", fake_chat_api, http)
    events = await collect(api, ask(api))
    assert [e for e in events if isinstance(e, Sources)] == [
        Sources((Source("https://docs.example/a"), Source(*CITED[0])))
    ]


async def test_perplexity_markers_number_the_sources_shown(fake_chat_api, http):
    # The list shown keeps the API's order, so [n] is its n-th source; past
    # reply.sources.max, a marker names no source shown (docs/chat-apis.md).
    cited = [(f"https://docs.example/{n}", f"Page {n}") for n in range(1, 8)]
    fake_chat_api.enqueue(tokens=["See [1] and [7]."], sources=cited, cite_form="citations")
    api = make("openai", fake_chat_api, http)
    (sources,) = [e for e in await collect(api, ask(api)) if isinstance(e, Sources)]
    shown = dedupe_sources(sources.items, SourcesConfig().max)
    assert shown == [Source(url, title) for url, title in cited[:5]]
