"""What the stateless dialects (`openai`, `bot-messages`) share: a question refused
as too large is asked once more with half its history."""

from __future__ import annotations

import pytest

from bridge.errors import BadRequest, RateLimited, Unauthorized
from bridge.interfaces import Turn
from tests.apis.helpers import ask, collect, collect_until_error, make, text_of

STATELESS = ["openai", "bot-messages"]
# Three turns of 2 + 4,000 characters: 12,006 in all, within the default history_chars.
HISTORY = tuple(
    turn for i in range(3) for turn in (Turn("user", f"q{i}"), Turn("assistant", f"{i}" * 4000))
)
TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, your "
        "messages resulted in 5000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    }
}


def history_sent(request) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["content"][:2] for m in request.json["messages"][:-1]]


@pytest.mark.parametrize("kind", STATELESS)
@pytest.mark.parametrize("status", [400, 413, 422])
async def test_refused_as_too_large_it_is_asked_again_with_half_the_history(
    fake_chat_api, http, kind, status
):
    # A small model's context took less than `history_chars`: every later question
    # of the conversation was refused, for good (failed turns are not kept).
    fake_chat_api.enqueue(status=status, body=TOO_LONG)
    fake_chat_api.enqueue(tokens=["Answered."])
    api = make(kind, fake_chat_api, http)
    events = await collect(api, ask(api, "Next?", history=HISTORY))
    assert text_of(events) == "Answered."
    first, second = fake_chat_api.requests
    assert history_sent(first) == ["q0", "00", "q1", "11", "q2", "22"]
    assert history_sent(second) == ["q2", "22"]  # the newer half, in whole turns
    assert second.json["messages"][-1]["content"] == "Next?"


@pytest.mark.parametrize("kind", STATELESS)
async def test_refused_again_it_says_the_history_was_sent(fake_chat_api, http, kind):
    for _ in range(3):
        fake_chat_api.enqueue(status=400, body=TOO_LONG)
    api = make(kind, fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api, history=HISTORY))
    assert isinstance(exc, BadRequest) and exc.history_sent
    assert len(fake_chat_api.requests) == 2  # one more try, no more


@pytest.mark.parametrize("kind", STATELESS)
async def test_without_history_a_refusal_is_not_asked_again(fake_chat_api, http, kind):
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    api = make(kind, fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, BadRequest) and not exc.history_sent
    assert len(fake_chat_api.requests) == 1

    # One turn longer than half of what is sent: asked again without it. Refused
    # so, the question itself is what the API refuses, not the conversation.
    one = (Turn("user", "q"), Turn("assistant", "a" * 4000))
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    _, exc = await collect_until_error(api, ask(api, history=one))
    assert isinstance(exc, BadRequest) and not exc.history_sent
    assert [history_sent(r) for r in fake_chat_api.requests[1:]] == [["q", "aa"], []]


@pytest.mark.parametrize("kind", STATELESS)
@pytest.mark.parametrize(
    ("script", "error"),
    [
        ({"status": 401}, Unauthorized),
        ({"status": 404, "body": TOO_LONG}, BadRequest),
        ({"status": 429, "retry_after": 9}, RateLimited),
    ],
)
async def test_other_refusals_are_not_asked_again(fake_chat_api, http, kind, script, error):
    fake_chat_api.enqueue(**script)
    fake_chat_api.enqueue(tokens=["Not asked for."])
    api = make(kind, fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api, history=HISTORY))
    assert isinstance(exc, error)
    assert len(fake_chat_api.requests) == 1
