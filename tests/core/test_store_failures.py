"""A store failing around a question: the asker told without its details, an answer shown whole."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge.errors import StoreError
from bridge.store import Conversation
from tests.core.relay_support import STORE_DOWN, bridge_for, failed_answers, platform, store_down
from tests.fakes.chatapi import FakeChatAPI


async def test_a_store_failing_before_the_answer_tells_the_asker_without_its_details(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store_down(bridge, "get_conversation")
        target = await platform(bridge).say("Anyone there?")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge) == 1
    assert target.notices == [StoreError.user_message]
    assert fake_chat_api.requests == []
    # The conversation is a field of its own (JSON logs filter on it).
    assert any(
        "could not answer" in r.getMessage()
        and STORE_DOWN in r.getMessage()
        and getattr(r, "conversation", "").startswith("console:")
        for r in caplog.records
    )


async def test_a_store_failing_as_a_message_arrives_tells_the_asker_without_its_details(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        store_down(bridge, "claim_event")
        target = await platform(bridge).say("Anyone there?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.notices == [StoreError.user_message]
    assert fake_chat_api.requests == []


async def test_a_store_failing_after_the_answer_still_shows_it_whole(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["All ", "of ", "it."], sources=[("https://a.example/1", "One")])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        save = bridge.store.save_conversation
        calls: list[Conversation] = []

        async def save_then_fail(conv: Conversation) -> None:
            calls.append(conv)
            if len(calls) > 1:  # the first makes the conversation; the next keeps the answer's
                raise StoreError(STORE_DOWN)
            await save(conv)

        bridge.store.save_conversation = save_then_fail  # type: ignore[method-assign]
        target = await platform(bridge).say("Everything, please")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge) == 0
    assert len(calls) == 2
    assert target.visible() == ["All of it.\n\nSources: [One](https://a.example/1)"]
    assert target.notices == []
    assert any("could not save the conversation" in r.getMessage() for r in caplog.records)


async def test_a_store_outage_is_told_to_askers_only_not_to_chatter_in_threads(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every message in a thread of a routed channel was an ERROR and a failed answer
    # while the store was down, chatter in threads the bot is not in included. One
    # ERROR (for a minute) says it: any of them may be a follow-up left unanswered.
    def lines(level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "chat_bridge.intake" and r.levelno == level
        ]

    fake_chat_api.enqueue(tokens=["Back."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        up = {m: getattr(bridge.store, m) for m in ("get_conversation", "inflight_begin")}
        for method in up:
            store_down(bridge, method)
        # Not addressed to the bot: routing asks the store whether it continues a thread.
        chatter = [
            await platform(bridge).say(f"lunch {i}?", thread="7.000", mentioned=False)
            for i in range(3)
        ]
        taken = platform(bridge).taken
        assert taken is not None
        await asyncio.wait_for(taken.wait(), 10)  # the last, and so all three (in order)
        assert failed_answers(bridge) == 0
        [error] = lines(logging.ERROR)
        assert error.startswith("could not tell whether message ") and STORE_DOWN in error
        assert "a follow-up goes unanswered" in error
        assert sum("continues a conversation" in said for said in lines(logging.DEBUG)) == 2
        asker = await platform(bridge).say("Are you there?")
        await asyncio.wait_for(asker.ended.wait(), 10)
        again = await platform(bridge).say("Hello?", thread="8.000")
        await asyncio.wait_for(again.ended.wait(), 10)
        # Both askers counted and told; the store's failure logged once (for a minute).
        assert failed_answers(bridge) == 2
        assert len(lines(logging.ERROR)) == 1
        for method, call in up.items():
            setattr(bridge.store, method, call)
        back = await platform(bridge).say("And now?", thread="9.000")
        await asyncio.wait_for(back.ended.wait(), 10)
        assert "the store takes questions again, after 5 it could not" in lines(logging.INFO)
    assert all(t.notices == [] for t in chatter)
    assert asker.notices == again.notices == [StoreError.user_message]
    assert back.visible() == ["Back."]
