"""What the stateless dialects (`openai`, `bot-messages`) share: a question refused
as too large is asked once more with half its history, and the backend sends no more
than that from then on."""

from __future__ import annotations

import json
import logging
import re

import pytest

from bridge.errors import BadRequest, RateLimited, Unauthorized
from bridge.interfaces import ChatRequest, Turn
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


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("openai", 400),
        ("openai", 413),
        ("openai", 422),
        ("bot-messages", 400),
        ("bot-messages", 413),
    ],
)
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
async def test_a_routes_history_is_sent_in_place_of_the_backends(fake_chat_api, http, kind):
    for _ in range(3):
        fake_chat_api.enqueue(tokens=["Answered."])
    api = make(kind, fake_chat_api, http, history=1)
    await collect(api, ask(api, "Next?", history=HISTORY))
    await collect(api, ask(api, "Next?", history=HISTORY, history_turns=3))
    await collect(api, ask(api, "Next?", history=HISTORY, history_turns=0))
    backends, more, none = (history_sent(r) for r in fake_chat_api.requests)
    assert backends == ["q2", "22"]
    assert more == ["q0", "00", "q1", "11", "q2", "22"]
    assert none == []


async def test_a_bot_messages_validation_error_is_not_taken_for_too_much_history(
    fake_chat_api, http
):
    # Its API's 422 is FastAPI's validation error: the question was asked again with
    # half the history, and the asker told the conversation may be too long for it.
    detail = [
        {
            "loc": ["body", "stream"],
            "msg": "none is not an allowed value",
            "type": "type_error.none.not_allowed",
        }
    ]
    fake_chat_api.enqueue(status=422, body={"detail": detail})
    api = make("bot-messages", fake_chat_api, http)
    _, exc = await collect_until_error(api, ask(api, "Next?", history=HISTORY))
    assert isinstance(exc, BadRequest) and exc.status == 422
    assert not exc.history_sent
    assert len(fake_chat_api.requests) == 1


def history_chars_sent(request) -> int:  # type: ignore[no-untyped-def]
    return sum(len(m["content"]) for m in request.json["messages"][:-1])


def learned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "characters in all" in r.message]


@pytest.mark.parametrize("kind", STATELESS)
async def test_once_answered_with_less_history_every_question_is_sent_that_much(
    fake_chat_api, http, kind, caplog
):
    # Every later question of the conversation (and of any other on the backend) was
    # sent with the whole history again: one refused request first, every time.
    caplog.set_level(logging.WARNING, logger="adapters.apis")
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    for _ in range(3):
        fake_chat_api.enqueue(tokens=["Answered."])
    api = make(kind, fake_chat_api, http)
    await collect(api, ask(api, "Next?", history=HISTORY))
    assert history_sent(fake_chat_api.requests[1]) == ["q2", "22"]  # within 6,003 characters

    # The same conversation's next question: one request, the newest within 6,003.
    longer = (*HISTORY, Turn("user", "Next?"), Turn("assistant", "Answered."))
    events = await collect(api, ask(api, "And then?", history=longer))
    assert text_of(events) == "Answered."
    assert len(fake_chat_api.requests) == 3
    assert history_sent(fake_chat_api.requests[2]) == ["q2", "22", "Ne", "An"]

    # Another conversation on the backend: one request too.
    other = tuple(
        turn for i in range(3) for turn in (Turn("user", f"r{i}"), Turn("assistant", "x" * 2900))
    )
    events = await collect(api, ask(api, "Other?", history=other))
    assert text_of(events) == "Answered."
    assert len(fake_chat_api.requests) == 4
    assert history_sent(fake_chat_api.requests[3]) == ["r1", "xx", "r2", "xx"]

    # Said once, with the size taken: half the history and the question.
    (said,) = learned(caplog)
    assert "6008 characters in all" in said
    assert api.history_chars == 24000  # the store keeps what the config says


@pytest.mark.parametrize("kind", STATELESS)
async def test_refused_with_the_learned_history_it_halves_again(fake_chat_api, http, kind, caplog):
    caplog.set_level(logging.WARNING, logger="adapters.apis")
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(tokens=["Answered."])
    api = make(kind, fake_chat_api, http)
    await collect(api, ask(api, history=HISTORY))  # learns 6,003 + 20 (the question)

    # Sent with the learned 6,003 at most (two turns of 2,002), refused even so:
    # half of that (2,002) is what is sent and, answered, learned.
    other = tuple(
        turn for i in range(3) for turn in (Turn("user", f"r{i}"), Turn("assistant", "x" * 2000))
    )
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(tokens=["Answered."])
    fake_chat_api.enqueue(tokens=["Answered."])
    events = await collect(api, ask(api, history=other))
    assert text_of(events) == "Answered."
    refused, answered = fake_chat_api.requests[2:4]
    assert history_sent(refused) == ["r1", "xx", "r2", "xx"]
    assert history_sent(answered) == ["r2", "xx"]
    # From then on, at most 2,002 characters: here the newest turn alone.
    shorter = (*HISTORY[:-2], Turn("user", "q"), Turn("assistant", "y" * 1000))
    await collect(api, ask(api, history=shorter))
    assert len(fake_chat_api.requests) == 5
    assert history_chars_sent(fake_chat_api.requests[4]) == 1001
    assert ["6023 characters" in m for m in learned(caplog)] == [True, False]
    assert "2022 characters in all" in learned(caplog)[1]


@pytest.mark.parametrize("kind", STATELESS)
async def test_a_long_question_refused_leaves_a_short_one_its_whole_history(
    fake_chat_api, http, kind
):
    # What is learned is the size of the whole request taken: one long question
    # refused with its history cut the history of every conversation that followed.
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(tokens=["Answered."])
    fake_chat_api.enqueue(tokens=["Answered."])
    api = make(kind, fake_chat_api, http)
    await collect(api, ask(api, "x" * 9000, history=HISTORY))  # 6,003 + 9,000 taken
    events = await collect(api, ask(api, "Short?", history=HISTORY))
    assert text_of(events) == "Answered."
    assert len(fake_chat_api.requests) == 3
    assert history_sent(fake_chat_api.requests[2]) == ["q0", "00", "q1", "11", "q2", "22"]


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


ALICE, BOB = "slack:T1:UALICE", "slack:T1:UBOB"
SHARED = (Turn("user", "My account is 4711.", ALICE), Turn("assistant", "Noted."))
NAME = re.compile(r"^person-[0-9]+$")  # within OpenAI's ^[a-zA-Z0-9_-]{1,64}$


async def test_in_a_shared_conversation_openai_is_told_who_asked_what(fake_chat_api, http):
    # "What is my account number?" from Bob was answered with Alice's: nothing
    # said the two questions came from different people.
    fake_chat_api.enqueue(tokens=["I don't know yours."])
    api = make("openai", fake_chat_api, http)
    await collect(api, ChatRequest("What is my account number?", history=SHARED, user_id=BOB))
    alice, answer, bob = fake_chat_api.requests[0].json["messages"]
    assert NAME.match(alice["name"]) and NAME.match(bob["name"])
    assert alice["name"] != bob["name"]
    assert alice["content"] == "My account is 4711." and "name" not in answer
    assert ALICE.split(":")[-1] not in json.dumps(fake_chat_api.requests[0].json)

    # The same person is the same name throughout a request, named in the order
    # they first asked in it: nothing that says who they are elsewhere.
    fake_chat_api.enqueue(tokens=["Yes."])
    again = (*SHARED, Turn("user", "Mine?", BOB), Turn("assistant", "No idea."))
    await collect(api, ChatRequest("Is that so?", history=again, user_id=ALICE))
    names = [m.get("name") for m in fake_chat_api.requests[1].json["messages"]]
    assert names == [alice["name"], None, bob["name"], None, alice["name"]]


async def test_in_a_shared_conversation_bot_messages_names_the_asker_in_the_text(
    fake_chat_api, http
):
    fake_chat_api.enqueue(tokens=["I don't know yours."])
    api = make("bot-messages", fake_chat_api, http)
    await collect(api, ChatRequest("What is my account number?", history=SHARED, user_id=BOB))
    alice, answer, bob = fake_chat_api.requests[0].json["messages"]
    assert set(alice) == set(bob) == {"role", "content"}  # a ChatMessage's fields
    alice_name = re.match(r"^\[(person-[0-9]+)\] My account is 4711\.$", alice["content"])
    bob_name = re.match(r"^\[(person-[0-9]+)\] What is my account number\?$", bob["content"])
    assert alice_name and bob_name and alice_name[1] != bob_name[1]
    assert answer == {"role": "assistant", "content": "Noted."}


@pytest.mark.parametrize("kind", STATELESS)
async def test_one_askers_conversation_is_sent_as_it_was(fake_chat_api, http, kind):
    history = (SHARED[0], SHARED[1], Turn("user", "And before?"), Turn("assistant", "None."))
    fake_chat_api.enqueue(tokens=["4711."])
    api = make(kind, fake_chat_api, http)
    await collect(api, ChatRequest("My account?", history=history, user_id=ALICE))
    assert fake_chat_api.requests[0].json["messages"] == [
        {"role": "user", "content": "My account is 4711."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And before?"},  # kept before askers were
        {"role": "assistant", "content": "None."},
        {"role": "user", "content": "My account?"},
    ]
