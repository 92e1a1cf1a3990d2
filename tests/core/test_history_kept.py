"""What is kept of a stateless backend's conversation: its last turns, no empty answer."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from tests.core.relay_support import platform, stateless_bridge
from tests.fakes.chatapi import FakeChatAPI


async def test_the_history_kept_is_the_backends_last_turns(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for word in ("One", "Two", "Three"):
        fake_chat_api.enqueue(tokens=[f"{word}."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db", ", history: 1") as bridge:
        for question in ("one?", "two?", "three?"):
            target = await platform(bridge).say(question, channel="C1")
            await asyncio.wait_for(target.ended.wait(), 10)
    with contextlib.closing(sqlite3.connect(tmp_path / "b.db")) as db:
        kept = [content for (content,) in db.execute("SELECT content FROM history ORDER BY seq")]
    sent = [m["content"] for m in fake_chat_api.requests[2].json["messages"]]
    assert sent == ["two?", "Two.", "three?"]
    assert kept == ["three?", "Three."]


async def test_an_empty_answer_is_not_kept_in_the_history(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=[])  # "(no answer)"
    fake_chat_api.enqueue(tokens=["Second."])
    fake_chat_api.enqueue(tokens=["Third."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db") as bridge:
        for question in ("first?", "second?", "third?"):
            target = await platform(bridge).say(question, channel="C1")
            await asyncio.wait_for(target.ended.wait(), 10)
    sent = [m["content"] for m in fake_chat_api.requests[2].json["messages"]]
    assert sent == ["second?", "Second.", "third?"]
