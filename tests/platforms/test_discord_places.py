"""Discord places end to end: forum posts, and threads and channels deleted (or the bot
muted in them) under waiting questions (the real Bridge and discord.py client against
the fakes)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.answering import FILES_NOT_READ
from bridge.app import Bridge
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import fake_chat_api  # noqa: F401
from tests.fakes.discord import (  # noqa: F401
    EPHEMERAL,
    LOADING,
    SEND_MESSAGES,
    FakeDiscord,
    fake_discord,
)
from tests.platforms.discord_support import Setup, setup  # noqa: F401

PICTURE = [
    {
        "id": "1",
        "filename": "screenshot.png",
        "size": 10,
        "url": "https://x/a.png",
        "proxy_url": "https://x/a.png",
    }
]


def withdrawn(bridge: Bridge) -> int:
    """How many Discord questions the bridge took and never asked the chat API."""
    text = bridge.metrics.render().decode()
    found = re.search(r'outcome="withdrawn",platform="discord"\} (\d+)', text)
    return int(found.group(1)) if found else 0


def asked(setup: Setup) -> list[str]:
    return [r.json["message"] for r in setup.chat.requests]


def slow_answers(setup: Setup, count: int) -> None:
    """Answers that take their time: later questions wait their turn behind them."""
    for _ in range(count):
        setup.chat.enqueue(tokens=["word "] * 100, first_delay=1.0, token_delay=0.05)


# ------------------------------------------------------------------ forum posts


async def test_a_forum_posts_title_is_its_questions_first_line(setup: Setup) -> None:
    # A post's title is most often the question itself; the text under it, the details.
    fake = setup.discord
    setup.ask = fake.add_forum(setup.guild, "questions")  # the route for every message
    setup.chat.enqueue(tokens=["Use ", "the ", "chart."])
    setup.chat.enqueue(tokens=["Still the chart."])
    title = "How do I deploy chat-bridge to Kubernetes?"
    async with setup.bridge():
        post = await fake.add_post(setup.ask, setup.bob, title, "I tried helm and it failed.")
        tid = post["id"]
        await setup.final(tid, "Use the chart.")
        await fake.say(tid, setup.bob, "anyone else?")  # a later message: no title
        await setup.final(tid, "Still the chart.")
    assert asked(setup) == [f"{title}\nI tried helm and it failed.", "anyone else?"]
    assert len(set(setup.sessions())) == 1  # the post is one conversation
    # Answered in the post, as a reply to its first message: a forum takes no messages.
    first = fake.sent("POST", rf"/channels/{tid}/messages$")[0]
    assert first.body["message_reference"]["message_id"] == int(tid)
    assert not fake.sent("POST", rf"/channels/{setup.ask}/") and not fake.rejected


async def test_a_media_channel_post_of_a_title_and_a_picture_is_asked_its_title(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.ask = fake.add_forum(setup.guild, "screenshots", media=True)
    setup.chat.enqueue(tokens=["Check the token."])
    title = "Why does the health check say slack: bot token refused?"
    async with setup.bridge():
        post = await fake.add_post(setup.ask, setup.bob, title, "", attachments=PICTURE)
        [answer] = await setup.final(post["id"], FILES_NOT_READ)
    assert asked(setup) == [title]
    assert answer["content"] == f"Check the token.\n\n{FILES_NOT_READ}"


async def test_a_forum_post_that_mentions_the_bot_is_answered_in_it(setup: Setup) -> None:
    # The route's trigger holds for posts too: a title cannot mention anyone, so the
    # mention is in the post's text; the answer stays in the post.
    fake = setup.discord
    setup.help = fake.add_forum(setup.guild, "help")  # mention, reply_in_thread
    setup.chat.enqueue(tokens=["Yes."])
    async with setup.bridge():
        await fake.add_post(setup.help, setup.alice, "Not for the bot", "we'll sort it out")
        post = await fake.add_post(
            setup.help, setup.bob, "Can the bot read PDFs?", f"<@{fake.app_id}>"
        )
        await setup.final(post["id"], "Yes.")
    assert asked(setup) == ["Can the bot read PDFs?"]
    assert not fake.sent("POST", r"/threads$")  # the post is the thread


# ------------------------------------------------------------------ deleted places


@pytest.mark.parametrize("event", [True, False], ids=["thread-delete", "unseen"])
async def test_the_questions_waiting_in_a_deleted_thread_are_never_asked(
    setup: Setup, event: bool
) -> None:
    # A moderator deletes a thread while its first answer is coming and more questions
    # wait their turn: Discord sends THREAD_DELETE, no MESSAGE_DELETE for its messages.
    # Unseen (a gateway reconnect), the first request Discord answers "Unknown
    # Channel" ends them all the same.
    fake = setup.discord
    slow_answers(setup, 4)
    async with setup.bridge() as bridge:
        tid = await fake.add_thread(setup.ask, "a thread")
        await fake.say(tid, setup.bob, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{tid}/typing$"))
        for question in ("second", "third", "fourth"):
            await fake.say(tid, setup.bob, question)
        await wait_for(lambda: len(bridge.relay.records()) == 4)  # taken, waiting
        sent = len(fake.requests)
        if event:
            await fake.delete_place(tid)
        else:
            fake.delete_channel(tid)
        await setup.chat.wait_disconnects(1)  # the first answer's stream is let go
        await wait_for(lambda: withdrawn(bridge) == 3)
    assert asked(setup) == ["first question"]
    after = [
        (r.method, r.path)
        for r in fake.requests[sent:]
        if tid in r.path
        # Unseen, a typing renewal that came due (8 s on, on a loaded machine) may
        # cross the post Discord refuses: nothing more follows either.
        and (event or not r.path.endswith("/typing"))
    ]
    # Told, the bot sends nothing more there; else only the first answer's post.
    assert after == ([] if event else [("POST", f"/api/v10/channels/{tid}/messages")])


async def test_the_questions_waiting_in_a_deleted_channel_and_its_threads_are_never_asked(
    setup: Setup,
) -> None:
    # #general is one conversation, its threads' messages included: deleting the
    # channel (CHANNEL_DELETE; its threads go with it, unannounced) ends them all.
    fake = setup.discord
    slow_answers(setup, 3)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{setup.general}/typing$"))
        tid = await fake.add_thread(setup.general, "aside")
        await fake.mention(tid, setup.bob, "one from a thread")
        await fake.mention(setup.general, setup.bob, "one from the channel")
        await wait_for(lambda: len(bridge.relay.records()) == 3)
        sent = len(fake.requests)
        await fake.delete_place(setup.general)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: withdrawn(bridge) == 2)
    assert asked(setup) == ["first question"]
    assert [r.path for r in fake.requests[sent:] if "/channels/" in r.path] == []


@pytest.mark.parametrize("quietly", [False, True], ids=["channel-update", "unseen"])
async def test_the_questions_waiting_where_the_bot_was_muted_are_never_asked(
    setup: Setup, quietly: bool
) -> None:
    # A moderator takes the bot's Send Messages away in #general while its first answer
    # is coming and more questions wait their turn: each was asked of the chat API for
    # an answer Discord refused (403). Unseen (a reconnect), the first refusal there
    # ends them all the same.
    fake = setup.discord
    slow_answers(setup, 3)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{setup.general}/typing$"))
        await fake.mention(setup.general, setup.bob, "second")
        await fake.mention(setup.general, setup.alice, "third")
        await wait_for(lambda: len(bridge.relay.records()) == 3)
        sent = len(fake.requests)
        await fake.deny_bot(setup.general, SEND_MESSAGES, quietly=quietly)
        await setup.chat.wait_disconnects(1)  # the first answer's, refused, is let go
        await wait_for(lambda: withdrawn(bridge) == 2)
    assert asked(setup) == ["first question"]
    posts = [
        r
        for r in fake.requests[sent:]
        if r.method == "POST" and r.path.endswith(f"/channels/{setup.general}/messages")
    ]
    assert len(posts) == 1  # the first answer's: nothing for the others


@pytest.mark.parametrize("quietly", [False, True], ids=["thread-update", "unseen"])
async def test_the_questions_waiting_in_a_thread_locked_meanwhile_are_never_asked(
    setup: Setup, quietly: bool
) -> None:
    # A moderator locks the thread while the bot's answer is coming and more questions
    # wait their turn: only members with Manage Threads post there then, and each was
    # asked of the chat API for an answer Discord refused (160005 "Thread is locked").
    # Unseen (a reconnect), the first refusal there ends them all the same.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Opened."])
    slow_answers(setup, 3)
    async with setup.bridge() as bridge:
        thread = (await fake.mention(setup.help, setup.bob, "How long is the bridge?"))["id"]
        await setup.final(thread, "Opened.")
        typed = len(fake.sent("POST", rf"/channels/{thread}/typing$"))
        await fake.say(thread, setup.alice, "first question")
        await fake.wait_until(
            lambda: len(fake.sent("POST", rf"/channels/{thread}/typing$")) > typed
        )
        await fake.say(thread, setup.bob, "second")
        await fake.say(thread, setup.alice, "third")
        await wait_for(lambda: len(bridge.relay.records()) == 3)
        sent = len(fake.requests)
        await fake.lock_thread(thread, quietly=quietly)
        await setup.chat.wait_disconnects(1)  # the first answer's, refused, is let go
        await wait_for(lambda: withdrawn(bridge) == 2)
    assert asked(setup) == ["How long is the bridge?", "first question"]
    posts = [
        r
        for r in fake.requests[sent:]
        if r.method == "POST" and r.path.endswith(f"/channels/{thread}/messages")
    ]
    assert len(posts) == 1  # the first answer's: nothing for the others


async def test_the_questions_waiting_where_typing_is_refused_are_never_asked(
    setup: Setup,
) -> None:
    # Muted unseen (a reconnect) once the first answer shows (Discord lets the bot edit
    # its own message): the questions waiting there show typing, which Discord refuses
    # for the same Send Messages a post needs. That refusal ended nothing: each was
    # asked of the chat API for an answer Discord refused, and its typing re-sent a few
    # times a second meanwhile.
    fake = setup.discord
    slow_answers(setup, 3)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.channel_messages(setup.general))
        sent = len(fake.requests)
        await fake.deny_bot(setup.general, SEND_MESSAGES, quietly=True)
        await fake.mention(setup.general, setup.bob, "second")
        await fake.mention(setup.general, setup.alice, "third")
        await wait_for(lambda: len(bridge.relay.records()) == 3)
        # The first answer goes on to its end (Discord lets the bot edit its message).
        await wait_for(lambda: not bridge.relay.records(), timeout=30)
        assert withdrawn(bridge) == 2
    assert asked(setup) == ["first question"]
    after = [r for r in fake.requests[sent:] if f"/channels/{setup.general}/" in r.path]
    assert not [r for r in after if r.method == "POST" and r.path.endswith("/messages")]
    typing = [r for r in after if r.path.endswith("/typing")]
    assert 1 <= len(typing) <= 2  # at most one for each waiting question


@pytest.mark.parametrize("quietly", [False, True], ids=["guild-delete", "unseen"])
async def test_the_questions_waiting_in_a_server_that_removed_the_bot_are_never_asked(
    setup: Setup, quietly: bool
) -> None:
    # The server's admins kick the bot while its first answer is coming and more
    # questions wait their turn: each was asked of the chat API, and its answer refused
    # (403 Missing Access). Unseen (a reconnect), the first refusal ends them all.
    fake = setup.discord
    slow_answers(setup, 3)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{setup.general}/typing$"))
        await fake.mention(setup.general, setup.bob, "second")
        await fake.mention(setup.general, setup.alice, "third")
        await wait_for(lambda: len(bridge.relay.records()) == 3)
        if quietly:
            fake.left.add(setup.guild)
        else:
            await fake.remove_bot(setup.guild)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: withdrawn(bridge) == 2)
    assert asked(setup) == ["first question"]


async def test_an_answer_showing_where_the_bot_was_muted_goes_on(
    setup: Setup,
) -> None:
    # Two answers in #ask-ai (each message a conversation of its own). Muted quietly
    # while the first shows, the second's first post is refused: that ended the
    # first too, cut off unmarked, though Discord still lets the bot edit its own.
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"w{i} " for i in range(20)] + ["A-done."], token_delay=0.1)
    setup.chat.enqueue(tokens=["B-first ", "B-done."], first_delay=1.0)
    async with setup.bridge() as bridge:
        await fake.say(setup.ask, setup.alice, "question A")
        await setup.chat.wait_requests(1)
        await fake.say(setup.ask, setup.bob, "question B")
        await setup.chat.wait_requests(2)
        await fake.wait_until(lambda: bot_texts(fake, setup.ask) or None)
        await fake.deny_bot(setup.ask, SEND_MESSAGES, quietly=True)
        await fake.wait_until(
            lambda: any(t.endswith("A-done.") for t in bot_texts(fake, setup.ask)) or None
        )
        await wait_for(lambda: bridge.relay.live == 0)
    assert not any("B-" in t for t in bot_texts(fake, setup.ask))


def bot_texts(fake: FakeDiscord, channel: int) -> list[str]:
    return [
        m["content"] for m in fake.channel_messages(channel) if m["author"]["id"] == fake.app_id
    ]


async def test_an_ask_waiting_in_a_deleted_thread_is_never_asked(setup: Setup) -> None:
    # #general is one conversation, its threads' questions included: an /ask in a
    # thread deleted while it waits behind another question is withdrawn with it.
    fake = setup.discord
    slow_answers(setup, 2)
    async with setup.bridge() as bridge:
        tid = await fake.add_thread(setup.general, "aside")
        await fake.mention(tid, setup.bob, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{tid}/typing$"))
        iid = await fake.invoke(tid, setup.alice, "ask", {"question": "a slash one"})
        await wait_for(lambda: len(bridge.relay.records()) == 2)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        sent = len(fake.requests)
        await fake.delete_place(tid)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: withdrawn(bridge) == 1)
    assert asked(setup) == ["first question"]
    assert [r.path for r in fake.requests[sent:] if "/webhooks/" in r.path] == []


def told_privately(fake: FakeDiscord, channel: str) -> list[dict[str, Any]]:
    """The bot's messages in `channel` only their reader sees."""
    return [m for m in fake.channel_messages(channel) if m["flags"] & EPHEMERAL]


@pytest.mark.parametrize("quietly", [False, True], ids=["guild-delete", "unseen"])
async def test_an_ask_waiting_in_a_server_that_removed_the_bot_tells_its_asker(
    setup: Setup, quietly: bool
) -> None:
    # Withdrawn, its public "thinking…" stayed until Discord's 15 minutes were over,
    # and its asker was never told: the command's own webhook, which needs no access
    # to the channel, still reaches them. (Unseen: the first post is refused, Missing
    # Access, which says the bot cannot reach the channel, not that it was deleted.)
    fake = setup.discord
    slow_answers(setup, 2)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{setup.general}/typing$"))
        iid = await fake.invoke(setup.general, setup.bob, "ask", {"question": "a slash one"})
        await wait_for(lambda: len(bridge.relay.records()) == 2)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        if quietly:
            fake.left.add(setup.guild)
        else:
            await fake.remove_bot(setup.guild)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: withdrawn(bridge) == 1)
        [told] = await fake.wait_until(lambda: told_privately(fake, setup.general))
    assert asked(setup) == ["first question"]
    assert fake.interactions[iid]["original"] not in fake.messages  # the public "thinking…"
    why = (
        "can no longer reach the channel or thread it was asked in"
        if quietly
        else "was removed from the server it was asked in"
    )
    assert told["content"] == f"_This was not answered: the bot {why}._"


async def test_a_private_ask_waiting_in_a_server_that_removed_the_bot_tells_its_asker(
    setup: Setup,
) -> None:
    # With ask_ephemeral, its "thinking…" (the asker's alone) stayed; it says why
    # instead. The /ask being answered as the bot was removed is not told so.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    slow_answers(setup, 2)
    async with setup.bridge() as bridge:
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "first"})
        await setup.chat.wait_requests(1)
        iid = await fake.invoke(setup.general, setup.bob, "ask", {"question": "second"})
        await wait_for(lambda: len(bridge.relay.records()) == 2)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        await fake.remove_bot(setup.guild)
        await setup.chat.wait_disconnects(1)
        await wait_for(lambda: withdrawn(bridge) == 1)
        original = await fake.wait_until(
            lambda: (m := fake.messages[fake.interactions[iid]["original"]])["content"] and m
        )
    assert asked(setup) == ["first"]
    assert not original["flags"] & LOADING and original["flags"] & EPHEMERAL
    assert original["content"] == (
        "_This was not answered: the bot was removed from the server it was asked in._"
    )
    assert "not answered" not in fake.messages[fake.interactions[first]["original"]]["content"]
    assert [m["id"] for m in fake.channel_messages(setup.general)] == [
        fake.interactions[first]["original"],
        original["id"],
    ]
