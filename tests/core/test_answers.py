"""An answer as its asker sees it: text and sources, and what is said where the API fails it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from bridge.errors import UNEXPECTED
from bridge.interfaces import ChatEvent, ChatRequest, Token
from tests.core.relay_support import bridge_for, failed_answers, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_answer_streams_with_sources(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    fake_chat_api.enqueue(
        tokens=["The ", "answer ", "is ", "42."],
        sources=[
            ("https://a.example/1", "One"),
            ("https://a.example/1", "One"),
            ("https://b.example/2", "Two"),
        ],
        token_delay=0.02,
    )
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("What is the answer?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == [
        "The answer is 42.\n\nSources: [One](https://a.example/1), [Two](https://b.example/2)"
    ]
    assert target.was_accepted  # the platform was told an answer is coming
    assert fake_chat_api.requests[0].json["message"] == "What is the answer?"


async def test_sources_show_false_shows_the_answer_without_its_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The answer."], sources=[("https://a.example/1", "One")])
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", reply="sources: {show: false}"
    ) as bridge:
        target = await platform(bridge).say("What is it?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["The answer."]


async def test_one_blank_line_stands_between_an_answer_and_its_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The answer.\n", "\n"], sources=[("https://a.example/1", "One")])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("What is it?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["The answer.\n\nSources: [One](https://a.example/1)"]


async def test_an_unexpected_failure_mid_answer_ends_the_reply_with_a_notice(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:

        async def breaks(req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
            yield Token("Half ")
            raise RuntimeError("a bug")

        bridge.relay.backends["docs"].stream = breaks  # type: ignore[method-assign]
        target = await platform(bridge).say("Go on")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge) == 1
    [text] = target.visible()
    assert text.startswith("Half") and UNEXPECTED in text
    assert any(r.exc_info and "could not answer" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("script", "notice"),
    [
        # The API's reason, framed: the asker sees whose words they are.
        (
            {"status": 400, "body": {"error": "Message must be shorter"}},
            "The assistant could not take that question: Message must be shorter.",
        ),
        # A wrong URL is the admin's to mend, not the asker's.
        (
            {"status": 404, "body": {"error": "Not found"}},
            "The assistant is misconfigured (HTTP 404 from its URL). Tell an admin.",
        ),
        # An error event with no text of its own is still the API's error.
        ({"tokens": [], "error_after": 0, "error": ""}, "The assistant reported an error."),
    ],
)
async def test_what_the_asker_is_told_when_the_api_refuses_or_reports_an_error(
    fake_chat_api: FakeChatAPI, tmp_path: Path, script: dict[str, object], notice: str
) -> None:
    fake_chat_api.enqueue(**script)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A question?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible()[-1] == f"_⚠️ {notice}_"


async def test_cut_off_keeps_partial_text_and_says_so(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Half ", "an ", "answer ", "and"], cut_after=3)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Tell me everything")
        await asyncio.wait_for(target.ended.wait(), 10)
    [text] = target.visible()
    assert text.startswith("Half an answer")
    assert "cut off" in text
