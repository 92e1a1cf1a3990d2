"""The bot-messages dialect against the fake server.

Shared streaming behaviour (timeouts, cut-off, retries, cancellation, 401/429/5xx,
malformed lines, lines with and without `data: `) is in test_streaming_common.py.
"""

from __future__ import annotations

import re

import pytest

from adapters.apis.bot_messages import BotMessages
from bridge.errors import BadRequest
from bridge.interfaces import ChatRequest, Turn
from tests.apis.helpers import (
    ask,
    collect,
    collect_until_error,
    done_of,
    make,
    text_of,
)

HISTORY = (
    Turn("user", "Explain how to pay taxes."),
    Turn("assistant", "Gather your documents first."),
    Turn("user", "Which documents?"),
    Turn("assistant", "W-2 and 1099 forms."),
)


async def test_request_shape_and_stream(fake_chat_api, http):
    fake_chat_api.enqueue(tokens=["To", " pay", " taxes"])
    api = make("bot-messages", fake_chat_api, http, system_prompt="User lives in Texas, US.")
    events = await collect(api, ask(api, "Explain how to pay taxes."))
    assert text_of(events) == "To pay taxes"
    assert done_of(events).text is None  # the tokens are the answer

    sent = fake_chat_api.requests[0]
    assert sent.path == "/bot-messages/v1/chat"
    assert sent.headers["authorization"] == f"Bearer {fake_chat_api.api_key}"
    body = sent.json
    assert body["bot_slug"] == "taxson" and "bot_uid" not in body
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "User lives in Texas, US."},
        {"role": "user", "content": "Explain how to pay taxes."},
    ]
    assert re.fullmatch(r"u-[0-9a-f]{32}", body["user_id"])
    assert "U1" not in body["user_id"]


async def test_multi_turn_sends_the_history(fake_chat_api, http):
    api = make("bot-messages", fake_chat_api, http, bot_slug=None, bot_uid="edf826b8-1b75")
    await collect(api, ChatRequest(message="Next?", history=HISTORY, user_id="slack:T1:U1"))
    body = fake_chat_api.requests[0].json
    assert body["bot_uid"] == "edf826b8-1b75" and "bot_slug" not in body
    assert body["messages"] == [{"role": t.role, "content": t.content} for t in HISTORY] + [
        {"role": "user", "content": "Next?"}
    ]


async def test_history_is_bounded_in_turns(fake_chat_api, http):
    api = make("bot-messages", fake_chat_api, http, history=1)
    await collect(api, ChatRequest(message="Next?", history=HISTORY))
    messages = fake_chat_api.requests[0].json["messages"]
    assert [m["content"] for m in messages] == ["Which documents?", "W-2 and 1099 forms.", "Next?"]

    api = make("bot-messages", fake_chat_api, http, history=0)
    await collect(api, ChatRequest(message="Alone", history=HISTORY))
    assert fake_chat_api.requests[1].json["messages"] == [{"role": "user", "content": "Alone"}]


async def test_history_is_bounded_in_characters_whole_turns_at_a_time(fake_chat_api, http):
    # A few long answers filled a small model's context: every later question of
    # the conversation was refused until someone thought of `reset`.
    long = [
        Turn("user", "q1"),
        Turn("assistant", "a" * 30_000),
        Turn("user", "q2"),
        Turn("assistant", "b" * 5_000),
    ]
    await collect(
        make("bot-messages", fake_chat_api, http), ChatRequest(message="q3", history=long)
    )
    sent = [m["content"] for m in fake_chat_api.requests[0].json["messages"]]
    assert sent == ["q2", "b" * 5_000, "q3"]  # within the default 24,000 characters

    uncapped = make("bot-messages", fake_chat_api, http, history_chars=None)
    await collect(uncapped, ChatRequest(message="q3", history=long))
    assert len(fake_chat_api.requests[1].json["messages"]) == 5


async def test_user_id_modes(fake_chat_api, http):
    hashed = make("bot-messages", fake_chat_api, http)
    for user in ("slack:T1:U1", "slack:T1:U1", "slack:T1:U2"):
        await collect(hashed, ChatRequest(message="hi", user_id=user))
    ids = [r.json["user_id"] for r in fake_chat_api.requests]
    assert ids[0] == ids[1] != ids[2]

    keyed = make("bot-messages", fake_chat_api, http, user_id_key="another-secret")
    await collect(keyed, ChatRequest(message="hi", user_id="slack:T1:U1"))
    assert fake_chat_api.requests[3].json["user_id"] != ids[0]

    raw = make("bot-messages", fake_chat_api, http, user_id="raw")
    await collect(raw, ChatRequest(message="hi", user_id="slack:T1:U1"))
    assert fake_chat_api.requests[4].json["user_id"] == "slack:T1:U1"

    none = make("bot-messages", fake_chat_api, http, user_id="none")
    await collect(none, ChatRequest(message="hi", user_id="slack:T1:U1"))
    assert "user_id" not in fake_chat_api.requests[5].json


async def test_without_an_api_key_no_authorization_is_sent(fake_chat_api, http):
    api = make("bot-messages", fake_chat_api, http, api_key=None)
    events = await collect(api, ask(api))
    assert text_of(events) == "Hello from the fake."
    assert "authorization" not in fake_chat_api.requests[0].headers


async def test_non_streaming_answer(fake_chat_api, http):
    fake_chat_api.enqueue(final="To pay taxes in Texas, gather your financial documents.")
    api = make("bot-messages", fake_chat_api, http, stream=False)
    events = await collect(api, ask(api))
    assert done_of(events).text == "To pay taxes in Texas, gather your financial documents."
    assert fake_chat_api.requests[0].json["stream"] is False


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (
            [{"loc": ["body", "stream"], "msg": "field required", "type": "value_error.missing"}],
            "stream: field required",
        ),
        (
            [
                {
                    "loc": ["body", "__root__"],
                    "msg": 'Either "prompt" or "messages" is required',
                    "type": "value_error",
                },
                {
                    "loc": ["body", "messages", 0, "role"],
                    "msg": "value is not a valid enumeration member",
                    "type": "type_error.enum",
                },
            ],
            'Either "prompt" or "messages" is required; '
            "messages.0.role: value is not a valid enumeration member",
        ),
    ],
)
async def test_422_detail_names_the_field(fake_chat_api, http, detail, expected):
    fake_chat_api.enqueue(status=422, body={"detail": detail})
    api = make("bot-messages", fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest)
    assert exc.status == 422
    assert exc.message == expected
    assert len(fake_chat_api.requests) == 1


async def test_400_is_a_bad_request(fake_chat_api, http):
    fake_chat_api.enqueue(status=400, body={"detail": "Bot not found"})
    api = make("bot-messages", fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest) and exc.message == "Bot not found"


@pytest.mark.parametrize(
    ("ids", "problem"),
    [({}, "neither is set"), ({"bot_uid": "u", "bot_slug": "s"}, "both are set")],
)
def test_exactly_one_bot_id_is_required(ids, problem):
    block = {"kind": "bot-messages", "url": "https://bots.example.com/v1/chat", **ids}
    with pytest.raises(ValueError, match=f"exactly one of bot_uid or bot_slug \\({problem}\\)"):
        BotMessages.Options.model_validate(block)


def test_option_defaults():
    options = BotMessages.Options.model_validate(
        {"kind": "bot-messages", "url": "https://bots.example.com/v1/chat", "bot_slug": "s"}
    )
    assert options.history == 20
    assert options.user_id == "hashed"
    assert options.stream is True
    assert options.system_prompt is None
    assert options.api_key is None


async def test_the_fakes_own_422_reads_well(fake_chat_api, http):
    response = await http.post(
        fake_chat_api.endpoint("bot-messages"),
        json={"bot_slug": "taxson", "messages": [{"role": "bot", "content": "x"}]},
    )
    assert response.status_code == 422
    api = make("bot-messages", fake_chat_api, http)
    assert api.error_text(response.json()) == (
        "stream: field required; messages.0.role: value is not a valid enumeration member"
    )
