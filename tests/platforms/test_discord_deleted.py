"""Discord end to end: a question deleted after (or while) it is answered is not kept
in its conversation's history, which a stateless chat API is sent with every later
question (the real Bridge and discord.py client against the fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.platforms.discord import DiscordPlatform
from bridge.app import Bridge
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import fake_discord  # noqa: F401
from tests.platforms.discord_support import Setup, setup  # noqa: F401

SECRET = "it says my password hunter2 is wrong"


@dataclass
class Place:
    """Where alice asks: `say` posts a question there, answered in `shown_in`; the
    conversation is kept under `key`."""

    say: Callable[[str], Awaitable[dict[str, Any]]]
    shown_in: str
    key: str


async def place(setup: Setup, where: str) -> Place:
    """A place of `where`'s kind, each answered without a mention but in #general."""
    fake, alice, guild = setup.discord, setup.alice, setup.guild
    if where == "thread":  # a thread a member opened in a channel answering everything
        tid = await fake.add_thread(setup.ask, "logins")
        return Place(
            lambda text: fake.say(tid, alice, text),
            tid,
            f"discord:{guild}:thread:{setup.ask}:{tid}|docs",
        )
    if where == "post":  # a forum post, a thread of the forum
        post = await fake.add_post(setup.ask, alice, "logins", "hello")
        tid = post["id"]
        return Place(
            lambda text: fake.say(tid, alice, text),
            tid,
            f"discord:{guild}:thread:{setup.ask}:{tid}|docs",
        )
    if where == "channel":
        return Place(
            lambda text: fake.mention(setup.general, alice, text),
            setup.general,
            f"discord:{guild}:channel:{setup.general}|docs",
        )
    return Place(
        lambda text: fake.dm(alice, text), fake.dm_channel(alice), f"discord:@dm:user:{alice}|docs"
    )


def sent(chat: FakeChatAPI) -> list[str]:
    """What the chat API was sent with its latest question: history and question."""
    return [m["content"] for m in chat.requests[-1].json["messages"]]


async def secret_kept(bridge: Bridge, key: str, kept: bool = True) -> list[str]:
    """Wait until the conversation `key` holds a turn of the secret (or, not `kept`,
    none: its deletion is taken after the event); what it holds then."""
    async with asyncio.timeout(10):
        while True:
            turns = [turn.content for turn in await bridge.store.history(key)]
            if any("hunter2" in content for content in turns) == kept:
                return turns
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("bulk", [False, True], ids=["deleted", "purged"])
@pytest.mark.parametrize("where", ["thread", "post", "channel", "dm"])
async def test_a_question_deleted_once_answered_is_not_sent_again(
    setup: Setup, where: str, bulk: bool
) -> None:
    # Deleted once its answer was shown (a password posted by mistake): it stayed in
    # the history, and was sent to the chat API again with every later question.
    fake, chat = setup.discord, setup.chat
    setup.stateless = True
    if where == "post":
        setup.ask = fake.add_forum(setup.guild, "questions")
        chat.enqueue(tokens=["Hello."])
    for text in ("First.", "Second.", "Third."):
        chat.enqueue(tokens=[text])
    async with setup.bridge() as bridge:
        here = await place(setup, where)
        if where == "post":
            await setup.final(here.shown_in, "Hello.")
        await here.say("how do I log in?")
        await setup.final(here.shown_in, "First.")
        secret = await here.say(SECRET)
        [answer] = [
            m for m in await setup.final(here.shown_in, "Second.") if m["content"] == "Second."
        ]
        await secret_kept(bridge, here.key)  # its answer shown, its turn kept
        if bulk:  # a moderator purges the question and its answer
            await fake.delete_messages([secret["id"], answer["id"]])
        else:
            await fake.delete_message(secret["id"])
        kept = await secret_kept(bridge, here.key, kept=False)
        # Its answer, whole, stays: only one deleted while it streamed goes with it.
        assert bulk or answer["id"] in fake.messages
        await here.say("where are the docs?")
        await setup.final(here.shown_in, "Third.")
    assert "how do I log in?" in kept and "First." in kept and "Second." not in kept
    assert sent(chat)[-1] == "where are the docs?"
    assert not any("hunter2" in content for content in sent(chat))
    assert any("how do I log in?" in content for content in sent(chat))  # the rest is kept


async def test_a_question_deleted_while_it_is_answered_is_not_sent_again(
    setup: Setup,
) -> None:
    # Deleted as its answer streamed: the answer stops, and nothing of it is kept.
    fake, chat = setup.discord, setup.chat
    setup.stateless = True
    chat.enqueue(tokens=["First."])
    chat.enqueue(tokens=["word "] * 100, token_delay=0.05)
    chat.enqueue(tokens=["Third."])
    async with setup.bridge() as bridge:
        here = await place(setup, "thread")
        await here.say("how do I log in?")
        await setup.final(here.shown_in, "First.")
        secret = await here.say(SECRET)
        await fake.wait_until(lambda: len(fake.channel_messages(here.shown_in)) == 2)
        await fake.delete_message(secret["id"])
        await chat.wait_disconnects(1)  # the answer's stream is let go
        await here.say("where are the docs?")
        await setup.final(here.shown_in, "Third.")
        async with asyncio.timeout(10):  # its answer shows before its turn is kept
            while len(kept := await bridge.store.history(here.key)) < 4:
                await asyncio.sleep(0.01)
    assert "word " * 100 not in fake.channel_messages(here.shown_in)[1]["content"]
    assert [turn.content for turn in kept] == [
        "how do I log in?",
        "First.",
        "where are the docs?",
        "Third.",
    ]
    assert sent(chat)[-1] == "where are the docs?"
    assert not any("hunter2" in content for content in sent(chat))


async def test_a_question_deleted_in_a_thread_discord_py_does_not_keep_is_forgotten(
    setup: Setup,
) -> None:
    # discord.py keeps no thread it has not seen (or one archived): its channel is
    # asked of Discord, else the deletion would not find the question's turn.
    fake, chat = setup.discord, setup.chat
    setup.stateless = True
    chat.enqueue(tokens=["First."])
    async with setup.bridge() as bridge:
        here = await place(setup, "thread")
        secret = await here.say(SECRET)
        await setup.final(here.shown_in, "First.")
        await secret_kept(bridge, here.key)
        platform = bridge.platforms["discord"]
        assert isinstance(platform, DiscordPlatform) and platform.client is not None
        guild = platform.client.get_guild(int(setup.guild))
        thread = guild.get_thread(int(here.shown_in)) if guild is not None else None
        assert guild is not None and thread is not None
        guild._remove_thread(thread)
        await fake.delete_message(secret["id"])
        kept = await secret_kept(bridge, here.key, kept=False)
    assert kept == []
    assert fake.sent("GET", rf"/channels/{here.shown_in}$")  # asked where it was
