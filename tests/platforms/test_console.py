"""The terminal platform (what `chat-bridge demo` uses), through the real bridge."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import Config, parse_config
from tests.fakes.chatapi import FakeChatAPI


def console_config(fake: FakeChatAPI, tmp_path: Path, console: str = "{}") -> Config:
    return parse_config(
        f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "{fake.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {console}
routes: [{{platform: console, backend: docs, session: user}}]
reply: {{edit_interval: 0.05}}
""",
        env={"KEY": fake.api_key},
        registry=REGISTRY,
    )


async def test_questions_and_answers_in_order_with_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["One ", "answer."], sources=[("https://a.example/", "A")])
    fake_chat_api.enqueue(tokens=["Another."])
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    out = io.StringIO()
    extra = {"console": {"stdin": io.StringIO("second?\n\nreset\n"), "stdout": out}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert out.getvalue().splitlines() == [
        "ana › first?",
        "bot › One answer.",
        "",
        "Sources:",
        "  1. A — https://a.example/",
        "ana › second?",
        "bot › Another.",
        "ana › reset",
        "bot › Started a new conversation.",
    ]
    first, second = fake_chat_api.requests
    assert first.json["session_id"] == second.json["session_id"]


async def test_a_line_that_is_not_utf8_loses_no_question(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(3):
        fake_chat_api.enqueue(tokens=["Yes."])
    config = console_config(fake_chat_api, tmp_path)
    # A UTF-8 terminal's stdin, strict as most locales make it, given a Latin-1 byte.
    stdin = io.TextIOWrapper(io.BytesIO(b"first?\n\xff bad?\nthird?\n"), encoding="utf-8")
    extra = {"console": {"stdin": stdin, "stdout": io.StringIO()}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    asked = [r.json["message"] for r in fake_chat_api.requests]
    assert asked == ["first?", "\ufffd bad?", "third?"]


class _ReaderGone(io.StringIO):
    """Output whose reader went away after its first line (`chat-bridge demo | head -1`)."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


async def test_when_nobody_reads_the_output_any_more_the_conversation_ends(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The reply's end could not be written: the platform never learnt the question was
    # answered, and `demo | head -1` hung for ever.
    fake_chat_api.enqueue(tokens=["One ", "answer."])
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    out = _ReaderGone()
    extra = {"console": {"stdin": io.StringIO("second?\n"), "stdout": out}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert out.getvalue() == "ana › first?\n"
