"""End to end: a bot token Slack refuses (revoked, the app uninstalled or without
chat:write): the answer ended, told in the log and /healthz, no question paid for,
and all clear once Slack takes it again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from adapters.platforms.slack import lockout as slack_lockout
from tests.core.fakeplatform import wait_for
from tests.platforms.slack_support import CHANNEL, DM, Harness


async def test_a_revoked_bot_token_ends_the_answer(harness: Harness) -> None:
    # The app is uninstalled, or its token revoked, while an answer streams.
    slack = harness.slack
    harness.chat.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
    root = await harness.ask(CHANNEL, "a long one?")
    await slack.wait_for(lambda: any("w2" in m.text for m in slack.bot_replies(CHANNEL, root)))
    slack.bot_token = "xoxb-another-token"  # every call with the old one: invalid_auth
    await harness.chat.wait_disconnects(1)  # the answer's stream is let go
    await wait_for(lambda: harness.bridge.relay.live == 0)
    # An edit in flight, and the one refused: no retries.
    assert slack.rejected["chat.update:invalid_auth"] <= 2


async def test_a_refused_bot_token_is_reported_and_its_questions_are_not_paid_for(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The app uninstalled or its token revoked: /healthz said "ok", and every question
    # was sent to the chat API (and paid for) for an answer nobody could see.
    slack, chat = harness.slack, harness.chat
    health = f"http://127.0.0.1:{harness.bridge.http_port}/healthz"

    async def healthz() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(health) as resp:
            return resp.status, await resp.json()

    good, slack.bot_token = slack.bot_token, "xoxb-another-token"
    chat.enqueue(tokens=["Never shown."])
    await harness.ask(DM, "anyone there?")  # how the bridge learns it
    await wait_for(lambda: harness.bridge.relay.live == 0 and len(chat.requests) == 1)
    assert await healthz() == (503, {"status": "unhealthy", "down": {"slack": "bot token refused"}})
    for text in ("still there?", "hello?"):  # the first has the token checked again
        await harness.ask(DM, text)
    await wait_for(
        lambda: sum("a question is not answered" in r.getMessage() for r in caplog.records) == 2
    )
    assert slack.rejected["auth.test:invalid_auth"] == 1
    slack.bot_token = good
    monkeypatch.setattr(slack_lockout, "RECHECK_SECONDS", 0.0)
    chat.enqueue(tokens=["Back."])
    await harness.ask(DM, "back?")
    await harness.answer(DM, None, "Back.")
    assert [r.json["message"] for r in chat.requests] == ["anyone there?", "back?"]
    assert (await healthz())[0] == 200


async def test_an_app_without_chat_write_stays_locked_out_until_it_has_it_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # auth.test takes a token that may not post: each recheck let the next question
    # through, to the chat API (paid), to fail to post again.
    slack, chat = harness.slack, harness.chat
    slack.scopes.discard("chat:write")  # the app reinstalled without it
    chat.enqueue(tokens=["Never shown."])
    await harness.ask(DM, "one?")
    await wait_for(lambda: harness.bridge.relay.live == 0 and len(chat.requests) == 1)
    monkeypatch.setattr(slack_lockout, "RECHECK_SECONDS", 0.0)  # a minute later
    await harness.ask(DM, "two?")
    await wait_for(
        lambda: any("a question is not answered" in r.getMessage() for r in caplog.records)
    )
    slack.scopes.add("chat:write")
    chat.enqueue(tokens=["Back."])
    await harness.ask(DM, "three?")
    await harness.answer(DM, None, "Back.")
    assert [r.json["message"] for r in chat.requests] == ["one?", "three?"]


@pytest.mark.parametrize("refusal", ["token", "scope"])
async def test_health_clears_once_slack_takes_the_bot_token_again_with_no_question(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    # Checked again only when a question came: in a quiet workspace, or on a replica
    # /healthz kept out of a load balancer's rotation (so asked nothing), /healthz
    # and the metric said the token was refused for ever after it was fixed.
    slack, chat = harness.slack, harness.chat
    port = harness.bridge.http_port
    monkeypatch.setattr(slack_lockout, "RECHECK_SECONDS", 0.05)

    async def get(path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as resp,
        ):
            return resp.status, await resp.text()

    good = slack.bot_token
    if refusal == "token":
        slack.bot_token = "xoxb-another-token"
    else:
        slack.scopes.discard("chat:write")  # the app reinstalled without it
    chat.enqueue(tokens=["Never shown."])
    await harness.ask(DM, "anyone there?")
    await wait_for(lambda: harness.bridge.relay.live == 0 and len(chat.requests) == 1)
    checks = slack.count("auth.test")
    await slack.wait_for(lambda: slack.count("auth.test") >= checks + 2)  # nobody asks
    # A check that Slack answers is not enough while the token may not post.
    assert (await get("/healthz"))[0] == 503
    slack.bot_token = good
    slack.scopes.add("chat:write")  # the app fixed and reinstalled
    async with asyncio.timeout(10):
        while (await get("/healthz"))[0] != 200:
            await asyncio.sleep(0.02)
    _, metrics = await get("/metrics")
    assert 'chat_bridge_component_up{component="slack"} 1.0' in metrics
    assert len(chat.requests) == 1
    # The checks stop once Slack takes the token.
    gate = harness.bridge.platforms["slack"].gate  # type: ignore[attr-defined]
    await wait_for(lambda: gate._watch is not None and gate._watch.done())


async def test_questions_asked_while_the_token_is_checked_again_wait_for_the_check(
    harness: Harness,
) -> None:
    # The second question, seeing a check under way, was dropped: the token was good.
    slack, chat = harness.slack, harness.chat
    good, slack.bot_token = slack.bot_token, "xoxb-another-token"
    chat.enqueue(tokens=["Never shown."])
    await harness.ask(DM, "anyone there?")
    await wait_for(lambda: harness.bridge.relay.live == 0 and len(chat.requests) == 1)
    slack.bot_token = good
    slack.slow["auth.test"] = [0.5]
    chat.enqueue(tokens=["A."])
    chat.enqueue(tokens=["B."])
    await harness.ask(DM, "A?")
    await harness.ask(DM, "B?")
    await harness.answer(DM, None, "B.", n=2)
    assert [r.json["message"] for r in chat.requests] == ["anyone there?", "A?", "B?"]


async def test_the_first_question_after_a_start_needs_no_further_sign_in(
    harness: Harness,
) -> None:
    # Who the bot is was learnt at the start. Asked again at the first event, a
    # failing auth.test acked that event with an apology and dropped the question.
    harness.slack.fail["auth.test"] = ["internal_error"]
    harness.chat.enqueue(tokens=["First answer."])
    await harness.ask(DM, "first question after a start")
    await harness.answer(DM, None, "First answer.")
    assert [m for m, _ in harness.slack.calls if m == "auth.test"] == ["auth.test"]


@pytest.mark.parametrize("how", ["missing_scope", "token_revoked"])
async def test_the_questions_waiting_when_slack_refuses_the_bot_token_are_never_asked(
    harness: Harness, how: str
) -> None:
    # The app reinstalled without chat:write, or its token revoked, while an answer
    # streams: the questions waiting behind it were each asked of the chat API (paid
    # for), though the log said they would not be.
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=[f"w{i} " for i in range(40)], token_delay=0.05)
    root = await harness.ask(CHANNEL, "first?")
    await slack.wait_for(lambda: any("w1" in m.text for m in slack.bot_replies(CHANNEL, root)))
    for text in ("second?", "third?"):
        chat.enqueue(tokens=[f"answer to {text}"])
        [body] = slack.user_message(CHANNEL, text, thread_ts=root)
        await harness.send(body)
        taken = (CHANNEL, body["event"]["ts"])
        await slack.wait_for(lambda taken=taken: bool(slack.reactions[taken]))
    if how == "missing_scope":
        slack.scopes.discard("chat:write")
    else:
        slack.bot_token = "xoxb-revoked"  # every call now invalid_auth
    relay = harness.bridge.relay
    await wait_for(lambda: relay.ahead == 0 and relay.live == 0, timeout=30)
    assert [r.json["message"] for r in chat.requests] == ["first?"]
    assert relay.metrics.answered.labels("slack", "docs", "withdrawn")._value.get() == 2


async def test_a_bot_token_without_chat_write_is_told_with_the_scope_slack_names(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # The app reinstalled without chat:write: the log said the token was no longer
    # accepted and to check that the app was installed, though it was, and never named
    # the scope Slack said was needed.
    caplog.set_level(logging.INFO)
    harness.slack.scopes.discard("chat:write")
    await harness.ask(CHANNEL, "anyone?")
    await wait_for(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "the app lacks the chat:write scope" in said
    assert "reinstall" in said and "still installed" not in said
