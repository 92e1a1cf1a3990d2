"""A conversation against what changes around it: its backend renamed in the config,
its backend's kind changed under the same name, its thread lost by the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.conversations import tell_of_other_backends, tell_of_unmade_scopes
from bridge.errors import StoreError
from bridge.store.sqlite import SQLiteStore
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, RecordingTarget
from tests.fakes.chatapi import FakeChatAPI

DM = {"is_dm": True, "channel": "D1"}
OPTIONS = {"openai": "model: m", "bot-messages": "bot_slug: b", "chaturdata": "poll_interval: 1"}


def bridge(
    fake: FakeChatAPI,
    db: Path,
    kind: str,
    *,
    name: str = "bot",
    session: str = "user",
    limits: str = "{}",
) -> Bridge:
    """One backend, `name`, of `kind`, routed from the console."""
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  {name}:
    kind: {kind}
    url: {fake.endpoint(kind)}
    api_key: ${{KEY}}
    {OPTIONS.get(kind, "")}
console: {{}}
routes: [{{platform: console, backend: {name}, session: {session}}}]
reply: {{edit_interval: 0.05}}
limits: {limits}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


async def ask(b: Bridge, text: str, **kw: Any) -> RecordingTarget:
    console: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
    target = await console.say(text, **kw)
    await asyncio.wait_for(target.ended.wait(), 10)
    return target


# ---------------------------------------------------------------------- a backend renamed


def told_of_others(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "no route uses" in r.getMessage()
    ]


async def test_a_start_says_how_many_conversations_a_renamed_backend_left(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "chatmount", name="docs", session="thread") as b:
        for thread in ("T1", "T2"):
            await ask(b, "question", thread=thread)
    assert told_of_others(caplog) == []
    caplog.clear()
    # Renamed in the config, the same API: its threads are no longer followed, and
    # nobody in them is told; the admin is, once, at start.
    async with bridge(
        fake_chat_api,
        db,
        "chatmount",
        name="helpdesk",
        session="thread",
        limits="{conversation_ttl: 86400}",
    ):
        pass
    [warning] = told_of_others(caplog)
    assert "2 conversations of backends no route uses (docs: 2)" in warning
    assert "followed again only once it is mentioned" in warning
    assert "limits.conversation_ttl (86400 s)" in warning


async def test_no_warning_when_every_conversation_has_its_backend(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "chatmount") as b:
        await ask(b, "question", **DM)
    async with bridge(fake_chat_api, db, "chatmount"):
        pass
    assert told_of_others(caplog) == []


# ---------------------------------------------------------------------- a session changed


def told_of_scopes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "no route of their backend" in r.getMessage()
    ]


async def test_a_start_says_how_many_conversations_a_changed_session_left(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "my account is 42", **DM)
        await ask(b, "a question in a channel")
    # `user` made `user+channel`: the DM's conversation starts afresh, its history (a
    # private one) left in the store for good; the admin is told, once, at start.
    async with bridge(fake_chat_api, db, "openai", session="user+channel") as b:
        await ask(b, "what was it?", **DM)
    assert fake_chat_api.requests[-1].json["messages"] == [
        {"role": "user", "content": "what was it?"}
    ]
    [warning] = told_of_scopes(caplog)
    assert (
        "2 conversations under keys of a scope no route of their backend makes any more "
        "(bot: 2 of `user` keys on console, where its routes now make `user+channel` on "
        "console)"
    ) in warning
    assert "changing a route's `session` (or its platform) starts every one" in warning
    assert "they stay for ever (limits.conversation_ttl is null" in warning
    assert told_of_others(caplog) == []


async def test_thread_made_channel_leaves_its_threads_and_dms(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "chatmount", session="thread") as b:
        await ask(b, "question", thread="T1")
        await ask(b, "question", **DM)
    async with bridge(
        fake_chat_api, db, "chatmount", session="channel", limits="{conversation_ttl: 86400}"
    ):
        pass
    [warning] = told_of_scopes(caplog)
    assert (
        "(bot: 1 of `dm` keys on console, where its routes now make `channel` on console; "
        "bot: 1 of `thread` keys on console, where its routes now make `channel` on console)"
        in warning
    )
    assert "limits.conversation_ttl (86400 s)" in warning


async def test_no_warning_when_every_conversation_has_its_session(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for session in ("thread", "channel", "user", "user+channel"):
        db = tmp_path / f"{session}.db"
        for _ in range(2):
            async with bridge(fake_chat_api, db, "chatmount", session=session) as b:
                await ask(b, "question", thread="T1")
                await ask(b, "question", **DM)
    assert told_of_scopes(caplog) == []


async def test_counts_the_store_cannot_make_at_start_are_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def others(configured: Collection[str]) -> dict[str, int]:
        raise StoreError("the store is unreachable")

    async def unmade(made: Mapping[str, Collection[str]]) -> dict[tuple[str, str], int]:
        raise StoreError("the store is unreachable")

    async with SQLiteStore(tmp_path / "b.db") as store:
        store.other_backends = others  # type: ignore[method-assign]
        store.unmade_scopes = unmade  # type: ignore[method-assign]
        await tell_of_other_backends(store, {"bot"}, None)  # raises nothing
        await tell_of_unmade_scopes(store, [], None)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "could not count the conversations of backends no route uses: the store is unreachable",
        "could not count the conversations whose key scope no route makes: the store is "
        "unreachable",
    ]


# ---------------------------------------------------------------------- a kind changed


async def test_a_backend_made_stateful_and_back_does_not_send_its_old_history_again(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Weeks with a stateless API, then a stateful one ("forget that"), then the
    # stateless one again under the same name: the history kept for the first was
    # sent again, as if nothing had been said since.
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "my secret project is BLUEBIRD", **DM)
    async with bridge(fake_chat_api, db, "chatmount") as b:
        await ask(b, "forget that, new topic: pricing", **DM)
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "hello again", **DM)
    stateless_1, stateful, stateless_2 = fake_chat_api.requests
    assert stateful.json["session_id"].startswith("cb-")
    assert stateless_2.json["messages"] == [{"role": "user", "content": "hello again"}]


async def test_a_backend_made_stateless_and_back_starts_a_new_session(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "chatmount") as b:
        await ask(b, "my order is #123", **DM)
    async with bridge(fake_chat_api, db, "bot-messages") as b:
        await ask(b, "something else", **DM)
    async with bridge(fake_chat_api, db, "chatmount") as b:
        await ask(b, "and now?", **DM)
    first, _, last = fake_chat_api.requests
    assert last.json["session_id"].startswith("cb-")
    assert last.json["session_id"] != first.json["session_id"]


async def test_the_same_kind_goes_on_with_its_history(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "one", **DM)
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "two", **DM)
    sent = fake_chat_api.requests[-1].json["messages"]
    assert [m["content"] for m in sent] == ["one", "Hello from the fake.", "two"]


async def test_a_conversation_kept_before_its_kind_was_recorded_goes_on(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    db = tmp_path / "b.db"
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "one", **DM)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE conversations SET meta = '{}'")  # as versions before left it
    async with bridge(fake_chat_api, db, "openai") as b:
        await ask(b, "two", **DM)
    sent = fake_chat_api.requests[-1].json["messages"]
    assert [m["content"] for m in sent] == ["one", "Hello from the fake.", "two"]


# ---------------------------------------------------------------------- a thread lost


async def test_a_thread_the_api_lost_is_told_with_the_failure_of_the_question_after(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge(fake_chat_api, tmp_path / "b.db", "chaturdata", session="thread") as b:
        await ask(b, "first", thread="T1")
        fake_chat_api.threads.clear()  # deleted in the vendor's dashboard, or expired
        fake_chat_api.enqueue(run_status="failed", error="Vector store unavailable")
        thread = await ask(b, "second", thread="T1", mentioned=False)
        assert thread.visible()[-1] == (
            "_⚠️ The assistant no longer had our earlier conversation, so this question "
            "began a new one. The assistant reported an error: Vector store unavailable._"
        )
        await ask(b, "third", thread="T1", mentioned=False)
    assert thread.visible()[-1] == "Hello from the fake."  # in the new thread, as told
    [new] = fake_chat_api.threads
    posts = [r.json for r in fake_chat_api.requests if r.method == "POST"]
    assert posts[-1] == {"message": "third", "thread_id": new}
