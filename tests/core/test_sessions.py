"""A conversation's session: kept across restarts and failed answers, apart per bot, reset anew."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.intake import THREAD_RESET
from tests.core.fakeplatform import TEST_REGISTRY, wait_for
from tests.core.relay_support import bridge_for, failed_answers, make_config, platform, store_down
from tests.fakes.chatapi import FakeChatAPI


async def test_session_survives_a_restart(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    db = tmp_path / "state" / "bridge.db"
    async with bridge_for(fake_chat_api, db) as bridge:
        target = await platform(bridge).say("first", thread="T1")
        await asyncio.wait_for(target.ended.wait(), 10)
    async with bridge_for(fake_chat_api, db) as bridge:
        target = await platform(bridge).say("again", thread="T1", mentioned=False)
        await asyncio.wait_for(target.ended.wait(), 10)
    first, second = fake_chat_api.requests
    assert first.json["session_id"].startswith("cb-")
    assert second.json["session_id"] == first.json["session_id"]


async def test_a_thread_the_api_opened_is_kept_when_its_first_answer_fails(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Chat Ur Data opens the thread with the question, before its run fails (or runs
    # out of time): the follow-up ("did you finish?") goes on in that thread.
    fake_chat_api.enqueue(run_status="failed", error="Vector store unavailable")
    fake_chat_api.enqueue(final="Done now.")
    text = (
        make_config(fake_chat_api, tmp_path / "b.db")
        .replace("kind: chatmount", "kind: chaturdata\n    poll_interval: 1")
        .replace(fake_chat_api.endpoint("chatmount"), fake_chat_api.endpoint("chaturdata"))
    )
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        first = await platform(bridge).say("first", thread="T1")
        await asyncio.wait_for(first.ended.wait(), 10)
        assert "Vector store unavailable" in first.visible()[-1]
        second = await platform(bridge).say("did you finish?", thread="T1")
        await asyncio.wait_for(second.ended.wait(), 10)
    [thread] = fake_chat_api.threads
    posts = [r.json for r in fake_chat_api.requests if r.method == "POST"]
    assert posts == [{"message": "first"}, {"message": "did you finish?", "thread_id": thread}]


@pytest.mark.parametrize("keyword", ["reset", "Reset"])  # as a phone writes it
async def test_reset_starts_a_new_session(
    fake_chat_api: FakeChatAPI, tmp_path: Path, keyword: str
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: user") as bridge:
        p = platform(bridge)
        notices = []
        for text in ("one", keyword, "two"):
            target = await p.say(text, is_dm=True, channel="D1")
            await asyncio.wait_for(target.ended.wait(), 10)
            notices += target.notices
    assert notices == ["Started a new conversation."]
    first, second = fake_chat_api.requests
    assert first.json["session_id"] != second.json["session_id"]


async def test_a_reset_is_counted_among_the_messages_answered_and_so_is_one_that_failed(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Each message received is in one counter: a dashboard's received − answered −
    # refused would otherwise grow with every reset.
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: user") as bridge:
        p = platform(bridge)
        done = await p.say("reset", is_dm=True, channel="D1")
        await asyncio.wait_for(done.ended.wait(), 10)
        assert failed_answers(bridge, "reset") == 1
        store_down(bridge, "reset_conversation")
        failing = await p.say("reset", is_dm=True, channel="D1")
        await asyncio.wait_for(failing.ended.wait(), 10)
        assert failed_answers(bridge, "reset") == 1
        assert failed_answers(bridge, "failed") == 1
    assert done.notices == ["Started a new conversation."]
    assert "store is not available" in failing.notices[0]
    assert fake_chat_api.requests == []


async def test_a_reset_during_an_answer_takes_effect_after_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["A ", "slow ", "answer."], token_delay=0.2)
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: user") as bridge:
        p = platform(bridge)
        first = await p.say("one", is_dm=True, channel="D1")
        await wait_for(lambda: bool(first.visible()))
        reset = await p.say("reset", is_dm=True, channel="D1")  # while "one" streams
        await wait_for(lambda: bool(reset.notices))
        assert first.visible() == ["A slow answer."]  # told once the answer was done
        second = await p.say("two", is_dm=True, channel="D1")
        await asyncio.wait_for(second.ended.wait(), 10)
    first_ask, second_ask = fake_chat_api.requests
    # Saving the answer to "one" did not bring the old session back.
    assert first_ask.json["session_id"] != second_ask.json["session_id"]


async def test_a_thread_reset_keeps_following_the_thread_with_a_new_session(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route="session: thread") as bridge:
        p = platform(bridge)
        first = await p.say("one", thread="T1")
        await asyncio.wait_for(first.ended.wait(), 10)
        reset = await p.say("", thread="T1", command="reset")
        await wait_for(lambda: bool(reset.notices))
        # No mention: the thread is still one the bridge answers.
        second = await p.say("two", thread="T1", mentioned=False)
        await asyncio.wait_for(second.ended.wait(), 10)
    assert reset.notices == ["Started a new conversation."]
    first_ask, second_ask = fake_chat_api.requests
    assert second_ask.json["message"] == "two"
    assert first_ask.json["session_id"] != second_ask.json["session_id"]


async def test_a_reset_command_in_a_channel_of_thread_conversations_says_how_to_start_over(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("", command="reset")
        await wait_for(lambda: bool(target.notices))
    assert target.notices == [THREAD_RESET]


async def test_two_bots_reached_by_one_person_keep_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    url = fake_chat_api.endpoint("chatmount")
    text = f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  hr: {{kind: chatmount, url: {url}, api_key: "${{KEY}}"}}
  docs: {{kind: chatmount, url: {url}, api_key: "${{KEY}}"}}
console: {{}}
routes:
  - {{platform: console, channels: [C1], backend: hr, session: user}}
  - {{platform: console, channels: [C2], backend: docs, session: user}}
reply: {{edit_interval: 0.05}}
"""
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    async with Bridge(config, TEST_REGISTRY) as bridge:
        for channel in ("C1", "C2", "C1"):  # the HR bot, the docs bot, the HR bot again
            target = await platform(bridge).say("A question", channel=channel)
            await asyncio.wait_for(target.ended.wait(), 10)
    hr, docs, hr_again = (r.json["session_id"] for r in fake_chat_api.requests)
    assert hr == hr_again != docs  # each bot's session is its own, and kept
