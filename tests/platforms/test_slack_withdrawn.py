"""End to end: a Slack question deleted before its reply lands, or while it waits its
turn: its answer ended, or never asked; and a question waiting its turn at a stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Harness, config_text, open_harness


@pytest.mark.parametrize("native", [False, True])
async def test_a_question_deleted_before_its_reply_lands_ends_the_answer(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path, native: bool
) -> None:
    # The asker deletes the question while the reply's first message is on its way:
    # Slack then refuses every post into its thread with thread_not_found.
    h, bridge = await open_harness(
        fake_slack, fake_chat_api, tmp_path, "socket", "mode: native" if native else ""
    )
    try:
        first = "chat.startStream" if native else "chat.postMessage"
        fake_slack.slow[first] = [0.3]
        fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
        root = await h.ask(CHANNEL, "how do I deploy?")
        fake_slack.messages[CHANNEL] = [m for m in fake_slack.messages[CHANNEL] if m.ts != root]
        await fake_chat_api.wait_disconnects(1)  # the answer's stream is let go
        await wait_for(lambda: bridge.relay.live == 0)
    finally:
        await bridge.aclose()
    # One refused first message, and no other place or way tried after it.
    posts = [name for name, _ in fake_slack.calls if name.startswith("chat.")]
    assert posts == [first]
    refused = {k: n for k, n in fake_slack.rejected.items() if k.startswith("chat.")}
    assert refused == {f"{first}:thread_not_found": 1}


async def test_a_question_deleted_while_it_waits_its_turn_is_never_asked(
    harness: Harness,
) -> None:
    # Deleted (a password posted by mistake) while the answer before it streamed: it
    # was sent to the chat API all the same, and paid for.
    slack, chat = harness.slack, harness.chat
    root, (channel, ts) = await harness.follow_up_while_streaming(40)
    await harness.send(slack.user_delete(channel, ts))
    await harness.answer(CHANNEL, root, "w39 ")
    chat.enqueue(tokens=["After."])
    await harness.ask(CHANNEL, "and after?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "After.", n=2)
    assert [r.json["message"] for r in chat.requests] == ["first?", "and after?"]
    assert not slack.reactions[(channel, ts)]  # nothing shows it is still taken


async def test_a_question_edited_while_it_waits_is_still_withdrawn_by_its_deletion(
    harness: Harness,
) -> None:
    # The edit is the same question (answered once): it must not take the place of
    # the one waiting, or deleting the message afterwards would withdraw nothing.
    slack, chat = harness.slack, harness.chat
    root, (channel, ts) = await harness.follow_up_while_streaming(40)
    edit = f"<@{slack.bot_user_id}> my password is hunter2, oops"
    for body in slack.user_edit(channel, ts, edit):
        await harness.send(body)
    await harness.send(slack.user_delete(channel, ts))
    await harness.answer(CHANNEL, root, "w39 ")
    chat.enqueue(tokens=["After."])
    await harness.ask(CHANNEL, "and after?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "After.", n=2)
    assert [r.json["message"] for r in chat.requests] == ["first?", "and after?"]


async def test_a_question_waiting_its_turn_loses_its_reaction_at_a_stop(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    slack, chat = fake_slack, fake_chat_api
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "CHATMOUNT_API_KEY": chat.api_key,
    }
    text = config_text(slack, chat, tmp_path / "b.db", "socket") + "limits: {shutdown_grace: 0.3}\n"
    bridge = Bridge(parse_config(text, env=env, registry=REGISTRY), REGISTRY)
    await bridge.__aenter__()
    try:
        await slack.wait_socket()
        h = Harness(slack, chat, bridge, "socket")
        root, follow_up = await h.follow_up_while_streaming(200)
        await bridge.drain()  # a stop while the follow-up waits its turn
    finally:
        await bridge.aclose()
    assert not slack.reactions[(CHANNEL, root)]
    assert not slack.reactions[follow_up]
