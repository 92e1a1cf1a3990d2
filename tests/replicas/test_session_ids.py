"""A session id a chat API gives that no store keeps as it is (a NUL in it): the
conversation goes on with the one it had."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.core.fakeplatform import LocalPlatform
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(30)]


@pytest.mark.parametrize("given", ["cb-abc\x00def", "x" * 5000])
async def test_a_session_id_no_store_keeps_leaves_the_conversation_its_own(
    fake_chat_api: FakeChatAPI, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    # PostgreSQL refused the whole row for the NUL: the conversation was never saved,
    # each question began a new one (the context lost), and an ERROR said so each time.
    fake_chat_api.enqueue(tokens=["Fine."], session_id=given)
    fake_chat_api.enqueue(tokens=["Still with you."])
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url) as bridge:
        console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
        for question in ("How are you?", "And then?"):
            target = await console.say(question, thread="T1")
            await asyncio.wait_for(target.ended.wait(), 10)
    first, second = (r.json["session_id"] for r in fake_chat_api.requests)
    assert first.startswith("cb-") and second == first
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [warned] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "gave a session id that cannot be kept" in warned
