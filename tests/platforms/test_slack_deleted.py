"""End to end: a Slack question deleted by its asker once its answer has begun (a
password posted by mistake) is answered, and then not kept in the conversation's
history, which a stateless chat API is sent with every later question."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Harness, config_text

SECRET = "it says my password hunter2 is wrong"


@pytest.fixture
async def harness(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The bridge with a stateless (OpenAI) backend, whose history the bridge keeps."""
    slack, chat = fake_slack, fake_chat_api
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "CHATMOUNT_API_KEY": chat.api_key,
    }
    text = (
        config_text(slack, chat, tmp_path / "bridge.db", "socket")
        .replace("kind: chatmount", "kind: openai\n    model: m")
        .replace(chat.endpoint("chatmount"), chat.endpoint("openai"))
    )
    bridge = Bridge(parse_config(text, env=env, registry=REGISTRY), REGISTRY)
    await bridge.__aenter__()
    try:
        await slack.wait_socket()
        yield Harness(slack, chat, bridge, "socket")
    finally:
        await bridge.aclose()


def sent(chat: FakeChatAPI) -> list[str]:
    """What the chat API was sent with its latest question: history and question."""
    return [m["content"] for m in chat.requests[-1].json["messages"]]


async def test_a_question_deleted_while_it_is_answered_is_not_sent_again(
    harness: Harness,
) -> None:
    # Deleted as its answer streamed: it was answered (as documented), then kept in
    # the history and sent to the chat API again with every later question.
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["First."])
    root = await harness.ask(CHANNEL, "how do I log in?")
    await harness.answer(CHANNEL, root, "First.")
    chat.enqueue(tokens=[f"w{i} " for i in range(30)], token_delay=0.05)
    [body] = slack.user_message(CHANNEL, SECRET, thread_ts=root)
    await harness.send(body)
    await slack.wait_for(lambda: any("w1" in m.text for m in slack.bot_replies(CHANNEL, root)))
    await harness.send(slack.user_delete(CHANNEL, body["event"]["ts"]))
    await harness.answer(CHANNEL, root, "w29 ", n=2)  # answered all the same
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert sent(chat)[-1] == "where are the docs?"
    assert not any("hunter2" in content for content in sent(chat))
    assert any("how do I log in?" in content for content in sent(chat))  # the rest is kept


async def test_a_question_deleted_once_answered_is_forgotten(harness: Harness) -> None:
    # Deleted once its answer was shown: it stayed in the history, and was sent to the
    # chat API again with every later question.
    slack, chat = harness.slack, harness.chat
    chat.enqueue(tokens=["First."])
    root = await harness.ask(CHANNEL, "how do I log in?")
    await harness.answer(CHANNEL, root, "First.")
    chat.enqueue(tokens=["Second."])
    [body] = slack.user_message(CHANNEL, SECRET, thread_ts=root)
    await harness.send(body)
    await harness.answer(CHANNEL, root, "Second.", n=2)
    store, key = harness.bridge.store, f"slack:{slack.team_id}:thread:{CHANNEL}:{root}|docs"
    assert any("hunter2" in turn.content for turn in await store.history(key))
    await harness.send(slack.user_delete(CHANNEL, body["event"]["ts"]))
    async with asyncio.timeout(10):  # the deletion is taken after its ack
        while any("hunter2" in turn.content for turn in await store.history(key)):
            await asyncio.sleep(0.01)
    assert [turn.content for turn in await store.history(key)] == ["how do I log in?", "First."]
    chat.enqueue(tokens=["Third."])
    await harness.ask(CHANNEL, "where are the docs?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Third.", n=3)
    assert not any("hunter2" in content for content in sent(chat))
    assert any("how do I log in?" in content for content in sent(chat))
