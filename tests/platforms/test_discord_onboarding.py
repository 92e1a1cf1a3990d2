"""What an admin setting the bot up reads in the log: why the bot does not answer
where a route takes messages (a permission missing), said once per place (the
real Bridge and discord.py client against the fakes)."""

from __future__ import annotations

import logging
import re

import pytest

from adapters.platforms.discord.permissions import Said
from bridge import intake
from bridge.app import Bridge
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import fake_chat_api  # noqa: F401
from tests.fakes.discord import (  # noqa: F401
    CREATE_PUBLIC_THREADS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    fake_discord,
)
from tests.platforms.test_discord_e2e import Setup, setup  # noqa: F401

CLOSED = SEND_MESSAGES | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS


def lines(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    """The bridge's lines at INFO and above holding every one of `words`."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.INFO and r.name.startswith("chat_bridge")
            and all(w in r.getMessage() for w in words)]


async def taken(bridge: Bridge, count: int) -> None:
    """Wait until the intake has taken (routed, and answered or dropped) `count` messages."""

    def received() -> int:
        found = re.search(r'messages_received_total\{platform="discord"\} (\d+)',
                          bridge.metrics.render().decode())
        return int(float(found.group(1))) if found else 0

    await wait_for(lambda: received() >= count and not bridge.relay.intake._places)


# ------------------------------------------------------------------ permissions


async def test_a_trigger_all_channel_closed_to_the_bot_is_said_once(
    setup: Setup, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    # Every question there was dropped with a DEBUG line only: no mention, no word.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    async with setup.bridge() as bridge:
        await fake.deny_bot(setup.ask, CLOSED)
        await fake.say(setup.ask, setup.bob, "how do I deploy?")
        await fake.say(setup.ask, setup.alice, "anyone? how do I deploy?")
        await fake.mention(setup.ask, setup.alice, "hello?")
        await taken(bridge, 3)
    assert lines(caplog, "not answering") == [
        f"not answering in discord channel {setup.ask} (workspace {setup.guild}): the bot "
        "lacks Send Messages there"
    ]
    assert setup.chat.requests == [] and fake.channel_messages(setup.ask) == []


async def test_a_closed_channel_no_route_takes_says_nothing_of_permissions(
    setup: Setup, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    # A channel the bot was kept out of on purpose, where nobody asks it anything.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    chatter = fake.add_channel(setup.guild, "off-topic")
    async with setup.bridge() as bridge:
        await fake.deny_bot(chatter, CLOSED)
        await fake.say(chatter, setup.bob, "lunch?")
        await taken(bridge, 1)
    assert lines(caplog, "not answering") == []
    assert lines(caplog, "no route serves") == []


async def test_a_channel_for_threads_only_names_reply_in_thread(
    setup: Setup, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.INFO)
    fake = setup.discord
    async with setup.bridge() as bridge:
        await fake.deny_bot(setup.ask, SEND_MESSAGES)
        await fake.say(setup.ask, setup.bob, "how do I deploy?")
        await fake.say(setup.ask, setup.bob, "anyone?")
        await taken(bridge, 2)
    assert lines(caplog, "not answering") == [
        f"not answering in discord channel {setup.ask} (workspace {setup.guild}): the bot "
        "lacks Send Messages there, and could answer only in a thread of its own (a route "
        "with reply_in_thread: true and session: thread)"
    ]


async def test_a_thread_closed_to_the_bot_is_named_with_the_permission_it_lacks(
    setup: Setup, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    # The line named the parent channel, where the bot may send messages.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    async with setup.bridge():
        await fake.deny_bot(setup.general, SEND_MESSAGES_IN_THREADS)
        thread = await fake.add_thread(setup.general, "a thread")
        await fake.mention(thread, setup.bob, "help?")
        await wait_for(lambda: lines(caplog, "not answering"))
    assert lines(caplog, "not answering") == [
        f"not answering in discord thread {thread} of channel {setup.general} (workspace "
        f"{setup.guild}): the bot lacks Send Messages in Threads there"
    ]
    assert setup.chat.requests == []


async def test_a_route_opening_threads_where_none_may_open_says_so(
    setup: Setup, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.INFO)
    fake = setup.discord
    async with setup.bridge():
        await fake.deny_bot(setup.help, CLOSED)
        await fake.mention(setup.help, setup.bob, "how do I deploy?")
        await wait_for(lambda: lines(caplog, "not answering"))
    assert lines(caplog, "not answering") == [
        f"not answering in discord channel {setup.help} (workspace {setup.guild}): the bot "
        "lacks Send Messages there, and no thread of its own can open there"
    ]
    assert not fake.sent("POST", r"/threads$") and setup.chat.requests == []


@pytest.mark.parametrize("denied, lacks", [
    (CREATE_PUBLIC_THREADS, "Create Public Threads"),
    (SEND_MESSAGES_IN_THREADS, "Send Messages in Threads"),
    (CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS,
     "Create Public Threads and Send Messages in Threads"),
], ids=["no-create", "no-send-in-threads", "neither"])
async def test_reply_in_thread_without_threads_answers_in_the_channel_and_says_why(
    setup: Setup, caplog: pytest.LogCaptureFixture, denied: int, lacks: str  # noqa: F811
) -> None:
    # `reply_in_thread: true` was ignored without a word.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    setup.chat.enqueue(tokens=["First."])
    setup.chat.enqueue(tokens=["Second."])
    async with setup.bridge():
        await fake.deny_bot(setup.help, denied)
        await fake.mention(setup.help, setup.bob, "how do I deploy?")
        await setup.final(setup.help, "First.")
        await fake.mention(setup.help, setup.alice, "and then?")
        await setup.final(setup.help, "Second.")
    assert lines(caplog, "not in a thread") == [
        f"answering in channel {setup.help} itself, not in a thread of its own "
        f"(reply_in_thread): the bot lacks {lacks} there"
    ]
    assert not fake.sent("POST", r"/threads$")


def test_places_said_are_bounded() -> None:
    said = Said(size=2)
    assert said.first("no thread", 1) and not said.first("no thread", 1)
    assert said.first("no thread", 2) and said.first("no thread", 3)
    assert said.first("no thread", 1)  # the oldest was forgotten: said again


async def test_closed_places_said_are_bounded(
    setup: Setup, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(intake, "CLOSED_PLACES", 1)
    fake = setup.discord
    async with setup.bridge() as bridge:
        await fake.deny_bot(setup.ask, CLOSED)
        await fake.deny_bot(setup.general, CLOSED)
        await fake.say(setup.ask, setup.bob, "one")
        await taken(bridge, 1)
        await fake.mention(setup.general, setup.bob, "two")
        await taken(bridge, 2)
        await fake.say(setup.ask, setup.bob, "three")  # #ask-ai was forgotten
        await taken(bridge, 3)
        assert len(bridge.relay.intake._closed_places) == 1
    assert [line.split(" (")[0] for line in lines(caplog, "not answering")] == [
        f"not answering in discord channel {c}" for c in (setup.ask, setup.general, setup.ask)
    ]
