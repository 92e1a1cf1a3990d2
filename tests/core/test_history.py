"""What a stateless API's conversation keeps of its history, and what is sent of it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.history import kept_from
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, RecordingTarget
from tests.fakes.chatapi import FakeChatAPI


def stateless_bridge(
    fake: FakeChatAPI,
    db: Path,
    options: str = "",
    *,
    kind: str = "openai",
    session: str = "channel",
    routes: str = "",
) -> Bridge:
    """A bridge whose backend keeps no conversation (the bridge sends the history);
    `routes`: the routes' list, else one console route to it."""
    routes = routes or f"[{{platform: console, backend: local, session: {session}}}]"
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
routes: {routes}
reply: {{edit_interval: 0.05}}
limits: {{rate_limit: {{messages: 1000}}}}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


async def ask(bridge: Bridge, text: str, **kw: Any) -> RecordingTarget:
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


async def test_a_routes_history_wins_over_its_backends_for_its_conversations(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A public channel sent one turn of history, DMs to the same backend its 20.
    routes = """
  - {platform: console, channels: [C1], backend: local, session: channel, history: 1}
  - {platform: console, dm: true, backend: local, session: user}
"""
    for i in range(6):
        fake_chat_api.enqueue(tokens=[f"A{i}"])
    db = tmp_path / "b.db"
    async with stateless_bridge(fake_chat_api, db, routes=routes) as bridge:
        for i in range(3):
            await ask(bridge, f"C{i}", channel="C1")
            await ask(bridge, f"D{i}", channel="D1", is_dm=True)
    sent = [[m["content"] for m in r.json["messages"]] for r in fake_chat_api.requests]
    assert sent[4] == ["C1", "A2", "C2"]  # the channel's last turn alone
    assert sent[5] == ["D0", "A1", "D1", "A3", "D2"]  # all the DM's, within 20
    with contextlib.closing(sqlite3.connect(db)) as conn:
        kept = list(conn.execute("SELECT key, content FROM history ORDER BY seq"))
    # The store keeps what each route sends.
    assert [content for key, content in kept if ":channel:" in key] == ["C2", "A4"]
    assert [content for key, content in kept if ":user:" in key] == [
        "D0",
        "A1",
        "D1",
        "A3",
        "D2",
        "A5",
    ]


TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens.",
        "code": "context_length_exceeded",
    }
}


async def test_a_conversation_too_long_for_the_model_goes_on_with_half_its_history(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for word in ("One", "Two"):
        fake_chat_api.enqueue(tokens=[f"{word} " + "z" * 7000])
    fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(tokens=["Three."])
    fake_chat_api.enqueue(tokens=["Four."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db") as bridge:
        for question in ("one?", "two?"):
            await ask(bridge, question)
        target = await ask(bridge, "three?")
        assert target.visible() == ["Three."]
        sent = [m["content"][:4] for m in fake_chat_api.requests[-1].json["messages"]]
        assert sent == ["two?", "Two ", "thre"]
        # The next question is sent within what was taken (7,008 characters), not
        # refused first: one request.
        assert (await ask(bridge, "four?")).visible() == ["Four."]
    assert len(fake_chat_api.requests) == 5
    sent = [m["content"][:4] for m in fake_chat_api.requests[-1].json["messages"]]
    assert sent == ["thre", "Thre", "four"]


@pytest.mark.parametrize(
    ("session", "where", "told"),
    [
        ("user", {"is_dm": True}, "send `reset` to start over."),
        ("thread", {"thread": "T1"}, "start a new thread to start over."),
        ("channel", {}, "use `/chat-reset` to start over."),
    ],
)
async def test_refused_even_so_the_asker_is_told_how_to_start_over(
    fake_chat_api: FakeChatAPI, tmp_path: Path, session: str, where: dict[str, Any], told: str
) -> None:
    for word in ("One", "Two"):
        fake_chat_api.enqueue(tokens=[f"{word} " + "z" * 7000])
    for _ in range(2):
        fake_chat_api.enqueue(status=400, body=TOO_LONG)
    fake_chat_api.enqueue(tokens=["Afresh."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db", session=session) as bridge:
        bridge.relay.reset_commands["console"] = "/chat-reset"  # as Slack's is
        for question in ("one?", "two?"):
            await ask(bridge, question, **where)
        target = await ask(bridge, "three?", **where)
        notice = target.visible()[-1]  # (a thread's target shows all its replies)
        assert "maximum context length is 4096 tokens" in notice
        assert notice.endswith(f"This conversation may be longer than it takes: {told}_")
        assert len(fake_chat_api.requests) == 4  # asked once more, no more
        if session == "user":
            await ask(bridge, "reset", **where)
            assert (await ask(bridge, "four?", **where)).visible() == ["Afresh."]
            assert len(fake_chat_api.requests[-1].json["messages"]) == 1


@pytest.mark.parametrize("kind", ["openai", "bot-messages"])
async def test_a_thread_several_people_share_tells_the_api_who_asked_what(
    fake_chat_api: FakeChatAPI, tmp_path: Path, kind: str
) -> None:
    for answer in ("Noted.", "Still 4711.", "I don't know yours."):
        fake_chat_api.enqueue(tokens=[answer])
    db = tmp_path / "b.db"
    async with stateless_bridge(fake_chat_api, db, kind=kind, session="thread") as bridge:
        await ask(bridge, "My account number is 4711.", user="UALICE", thread="T1")
        await ask(bridge, "What was it again?", user="UALICE", thread="T1")
        await ask(bridge, "What is my account number?", user="UBOB", thread="T1")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        askers = [a for (a,) in conn.execute("SELECT asker FROM history ORDER BY seq")]
    assert askers == ["console:W1:UALICE", None, "console:W1:UALICE", None, "console:W1:UBOB", None]
    alone, shared = (r.json["messages"] for r in fake_chat_api.requests[1:])
    # Alice alone: sent as it always was.
    assert alone == [
        {"role": "user", "content": "My account number is 4711."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What was it again?"},
    ]
    if kind == "openai":
        names = [m.get("name") for m in shared]
        assert names[0] == names[2] != names[4] and names[1] is names[3] is None
        assert names == ["person-1", None, "person-1", None, "person-2"]
    else:
        labels = [m["content"].split(" ")[0] for m in shared if m["role"] == "user"]
        assert labels == ["[person-1]", "[person-1]", "[person-2]"]
    assert "UALICE" not in str(shared) and "UBOB" not in str(shared)
