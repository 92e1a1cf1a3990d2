"""Messages with no question in words (or no mention): help said once, what follows answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.intake import HELP_TEXT, MENTION_HELP
from tests.core.fakeplatform import wait_for
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_unmentioned_message_outside_a_known_thread_is_ignored(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        await p.say("just chatting", thread="T9", mentioned=False)
        target = await p.say("@bot a question", thread="T8")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert [r.json["message"] for r in fake_chat_api.requests] == ["@bot a question"]


async def test_attachment_only_message_gets_help(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("   ", thread="T1")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.notices == ["Ask me a question in words, and I will answer here."]
    assert fake_chat_api.requests == []


async def test_a_question_written_in_the_thread_of_an_empty_mention_is_answered(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # "@bot" alone, sent too early: the bot says it will answer there, and does.
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        empty = await p.say("   ", thread="T1")
        await wait_for(lambda: empty.notices)
        asked = await p.say("how do I deploy?", thread="T1", mentioned=False)
        await wait_for(lambda: asked.visible() == ["Answered."])
    assert empty.notices[0] == HELP_TEXT
    assert [r.json["message"] for r in fake_chat_api.requests] == ["how do I deploy?"]


@pytest.mark.parametrize(
    ("route", "thread", "follow_ups"),
    [("", None, True), ("session: user", "T1", True), ("", "T1", False)],
    ids=["outside-a-thread", "no-thread-sessions", "unmentioned-not-delivered"],
)
async def test_an_empty_mention_where_no_thread_is_followed_asks_for_a_mention(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    route: str,
    thread: str | None,
    follow_ups: bool,
) -> None:
    # A message there without a mention would not be answered: the bot says so.
    fake_chat_api.enqueue(tokens=["Sentinel."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route=route) as bridge:
        p = platform(bridge)
        empty = await p.say("   ", thread=thread, follow_ups=follow_ups)
        await wait_for(lambda: empty.notices)
        place = thread or "1.000"  # the empty mention's own thread, were one opened
        await p.say("how do I deploy?", thread=place, mentioned=False)
        sentinel = await p.say("sentinel", thread=place)  # taken after it
        await wait_for(lambda: sentinel.visible() == ["Sentinel."])
    assert empty.notices == [MENTION_HELP]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["sentinel"]


async def test_an_empty_mention_edited_to_hold_its_question_is_answered_once(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Slack delivers the edit with the message's own event id.
    fake_chat_api.enqueue(tokens=["Answered."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        p = platform(bridge)
        empty = await p.say("   ", thread="T1", event_id="Ev1")
        await wait_for(lambda: empty.notices)
        await p.say("   ", thread="T1", event_id="Ev1")  # delivered again: told once
        edited = await p.say("how do I deploy?", thread="T1", event_id="Ev1")
        await wait_for(lambda: edited.visible() == ["Answered."])
        await p.say("how do I deploy?", thread="T1", event_id="Ev1")  # and again
        fake_chat_api.enqueue(tokens=["Sentinel."])
        await p.say("sentinel", thread="T1")  # taken after it
        await wait_for(lambda: edited.visible() == ["Answered.", "Sentinel."])
    assert empty.notices == [HELP_TEXT]
    assert [r.json["message"] for r in fake_chat_api.requests] == ["how do I deploy?", "sentinel"]


async def test_a_picture_nobody_addressed_to_the_bot_gets_no_help(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Answered."])
    route = "trigger: all"  # a channel the bot answers without being mentioned
    async with bridge_for(fake_chat_api, tmp_path / "b.db", route=route) as bridge:
        picture = await platform(bridge).say("", mentioned=False)
        asked = await platform(bridge).say("A question?", mentioned=False)
        await asyncio.wait_for(asked.ended.wait(), 10)
    assert asked.visible() == ["Answered."]
    assert picture.ops == []  # the screenshot or sticker drew no reply
