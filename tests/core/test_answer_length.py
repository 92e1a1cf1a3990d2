"""Answers past `reply.max_answer_chars`: stopped there with a notice, and not kept as a turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.app import Bridge
from bridge.config import parse_config
from tests.core.fakeplatform import TEST_REGISTRY
from tests.core.relay_support import bridge_for, failed_answers, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_an_answer_past_its_length_limit_is_stopped_with_a_notice(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A model repeating itself: 200 tokens of 10 characters, with a limit of 500.
    fake_chat_api.enqueue(tokens=["Again and "] * 200, token_delay=0.005)
    fake_chat_api.enqueue(tokens=["Next."])
    async with bridge_for(
        fake_chat_api,
        tmp_path / "b.db",
        reply="max_answer_chars: 500",
    ) as bridge:
        target = await platform(bridge).say("Repeat?")
        await asyncio.wait_for(target.ended.wait(), 10)
        # The answer's stream is let go at once: it is no longer paid for.
        await fake_chat_api.wait_disconnects(1)
        assert failed_answers(bridge, "too_long") == 1
        assert failed_answers(bridge, "failed") == 0
        after = await platform(bridge).say("And now?")
        await asyncio.wait_for(after.ended.wait(), 10)
    text, notice = target.visible()[0].split("\n\n")
    assert text == ("Again and " * 50).rstrip()
    assert notice == (
        "_⚠️ The answer was stopped here: it grew longer than this bot shows (500 characters)._"
    )
    assert after.visible() == ["Next."]  # the conversation goes on


async def test_a_whole_answer_sent_at_the_end_past_the_length_limit_is_stopped(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The whole answer an API sends at its end (it wins over the tokens) is held to
    # the limit too: the text streamed within it stays, with the notice.
    fake_chat_api.enqueue(tokens=["Again and "], final="Again and " * 100)
    async with bridge_for(
        fake_chat_api,
        tmp_path / "b.db",
        reply="max_answer_chars: 500",
    ) as bridge:
        target = await platform(bridge).say("Repeat?")
        await asyncio.wait_for(target.ended.wait(), 10)
        assert failed_answers(bridge, "too_long") == 1
    assert target.visible() == [
        "Again and\n\n_⚠️ The answer was stopped here: it grew longer than this bot shows"
        " (500 characters)._"
    ]


async def test_a_whole_answer_past_the_length_limit_is_cut_at_it_and_not_kept(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    text = f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  local: {{kind: openai, url: {fake_chat_api.endpoint("openai")}, model: m,
           api_key: "${{KEY}}", stream: false}}
console: {{}}
routes: [{{platform: console, backend: local, session: user}}]
reply: {{edit_interval: 0.05, max_answer_chars: 600}}
"""
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    fake_chat_api.enqueue(tokens=["x" * 1000])
    fake_chat_api.enqueue(tokens=["Short."])
    async with Bridge(config, TEST_REGISTRY) as bridge:
        long = await platform(bridge).say("Long?", channel="C1")
        await asyncio.wait_for(long.ended.wait(), 10)
        short = await platform(bridge).say("Short?", channel="C1")
        await asyncio.wait_for(short.ended.wait(), 10)
    assert long.visible()[0].startswith("x" * 600 + "\n\n_⚠️ The answer was stopped here")
    assert short.visible() == ["Short."]
    # What was stopped is no turn of the conversation (as an answer cut off is not).
    sent = [m["content"] for m in fake_chat_api.requests[1].json["messages"]]
    assert sent == ["Short?"]
