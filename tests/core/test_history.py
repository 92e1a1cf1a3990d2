"""What a stateless API's conversation keeps of its history, and what is sent of it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.history import kept_from
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, RecordingTarget
from tests.fakes.chatapi import FakeChatAPI


def stateless_bridge(
    fake: FakeChatAPI, db: Path, options: str = "", *, kind: str = "openai",
    session: str = "channel",
) -> Bridge:
    """A bridge whose backend keeps no conversation (the bridge sends the history)."""
    if kind == "openai":
        extra = "model: m"
    else:
        extra = "bot_slug: b"
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  local: {{kind: {kind}, url: {fake.endpoint(kind)}, {extra}, api_key: "${{KEY}}"{options}}}
console: {{}}
routes: [{{platform: console, backend: local, session: {session}}}]
reply: {{edit_interval: 0.05}}
limits: {{rate_limit: {{messages: 1000}}}}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


async def ask(bridge: Bridge, text: str, **kw: str) -> RecordingTarget:
    console: LocalPlatform = bridge.platforms["console"]  # type: ignore[assignment]
    target = await console.say(text, **kw)
    await asyncio.wait_for(target.ended.wait(), 10)
    return target


def stored(db: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.execute("SELECT role, content FROM history ORDER BY seq"))


def test_the_rule_keeps_the_newest_whole_turns_within_both_limits() -> None:
    assert kept_from([1, 10, 1, 10, 1, 10], keep=4, max_chars=None) == 2
    assert kept_from([1, 10, 1, 10, 1, 10], keep=6, max_chars=22) == 2
    assert kept_from([1, 10, 1, 10, 1, 10], keep=6, max_chars=21) == 4
    assert kept_from([1, 30], keep=6, max_chars=21) == 2  # the newest alone is over
    assert kept_from([1, 10], keep=0, max_chars=None) == 2


async def test_the_store_keeps_no_more_than_is_sent(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # `history: 500` and long answers: every answer was kept (7.5 MB for 500 of
    # 15,000 characters) and read with every question, to send the last one or two.
    for i in range(6):
        fake_chat_api.enqueue(tokens=[f"A{i} " + "x" * 10_000])
    db = tmp_path / "b.db"
    async with stateless_bridge(fake_chat_api, db, ", history: 500") as bridge:
        for i in range(6):
            await ask(bridge, f"Q{i}")
    kept = stored(db)
    assert [content[:2] for _, content in kept] == ["Q4", "A4", "Q5", "A5"]
    assert sum(len(content) for _, content in kept) <= 24_000
    sent = fake_chat_api.requests[-1].json["messages"]
    assert [m["content"][:2] for m in sent] == ["Q3", "A3", "Q4", "A4", "Q5"]
