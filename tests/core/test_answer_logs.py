"""The log lines of an answer: two for each, none for a refusal, each naming its conversation."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge.errors import PlatformError
from bridge.logs import AnswerFilter
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_an_answered_message_writes_two_log_lines_and_a_refused_one_none(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["Fine."])
    caplog.set_level(logging.INFO)

    def relay_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name in ("chat_bridge.relay", "chat_bridge.intake")]

    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("How are you?")
        await asyncio.wait_for(target.ended.wait(), 10)
        await wait_for(lambda: len(relay_lines()) >= 2)
        # A refused message gets its notice and writes no line.
        refused = await platform(bridge).say("x" * 2001)
        await asyncio.wait_for(refused.ended.wait(), 10)
    assert refused.notices and len(fake_chat_api.requests) == 1
    answering, answered = relay_lines()
    assert answering.getMessage() == "answering"
    assert answered.getMessage() == "answered"
    key = answering.conversation  # type: ignore[attr-defined]
    assert key.startswith("console:") and answered.conversation == key  # type: ignore[attr-defined]
    assert answering.backend == answered.backend == "docs"  # type: ignore[attr-defined]
    assert answered.outcome == "answered"  # type: ignore[attr-defined]
    assert isinstance(answered.seconds, float)  # type: ignore[attr-defined]
    after = caplog.records[caplog.records.index(answered) + 1 :]
    assert [r.getMessage() for r in after if r.name.startswith("chat_bridge")] == []


async def test_every_line_logged_for_an_answer_names_its_conversation(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A platform's failed request and the chat API's retries carried no conversation:
    # with JSON logs they could not be tied to the question they held up.
    fake_chat_api.enqueue(status=503)
    fake_chat_api.enqueue(tokens=["Fine."])
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(AnswerFilter())  # as the daemon's own handler has it

    class NoActivity(RecordingTarget):
        # Showing that an answer is coming fails.
        async def begin(self, text: str | None = None) -> str | None:
            raise PlatformError("Slack failed reactions.add: service_unavailable")

    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: NoActivity())
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        reply = await platform(bridge).say("How are you?")
        await wait_for(lambda: reply.visible() == ["Fine."] and bridge.relay.live == 0)
    [answering] = [r for r in caplog.records if r.getMessage() == "answering"]
    key = answering.conversation  # type: ignore[attr-defined]
    retry = [r for r in caplog.records if r.getMessage().startswith("attempt 1 of 2: HTTP 503")]
    begin = [
        r
        for r in caplog.records
        if r.getMessage().startswith("could not show that an answer is coming")
    ]
    assert retry and begin
    for record in [*retry, *begin, answering]:
        assert record.conversation == key  # type: ignore[attr-defined]
        assert record.platform == "console"  # type: ignore[attr-defined]
