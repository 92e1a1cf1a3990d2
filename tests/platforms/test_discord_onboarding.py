"""What an admin setting the bot up reads in the log: who the bot is and where, and
why it does not answer where a route takes messages (a permission missing, a
category's id), said once per place (the real Bridge and discord.py client
against the fakes)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from adapters.platforms.discord.permissions import INVITE_PERMISSIONS, Said, invite_url
from bridge import intake
from bridge.app import Bridge
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import (  # noqa: F401
    CREATE_PUBLIC_THREADS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    FakeDiscord,
    fake_discord,
)
from tests.platforms.discord_support import Setup, setup  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CLOSED = SEND_MESSAGES | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS


def lines(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    """The bridge's lines at INFO and above holding every one of `words`."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO
        and r.name.startswith("chat_bridge")
        and all(w in r.getMessage() for w in words)
    ]


async def taken(bridge: Bridge, count: int) -> None:
    """Wait until the intake has taken (routed, and answered or dropped) `count` messages."""

    def received() -> int:
        found = re.search(
            r'messages_received_total\{platform="discord"\} (\d+)', bridge.metrics.render().decode()
        )
        return int(float(found.group(1))) if found else 0

    await wait_for(lambda: received() >= count and not bridge.relay.intake._places)


# ------------------------------------------------------------------ connecting


async def test_the_log_names_the_bot_and_its_servers(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = setup.discord
    async with setup.bridge():
        pass
    assert lines(caplog, "connected to Discord") == [
        f"connected to Discord as bridgebot (application {fake.app_id}), in 1 server(s)"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_bot_in_no_server_is_told_how_to_invite_it(
    fake_discord: FakeDiscord,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It said "connected" alone: an invite made with another application's id, or
    # never completed, looked like a bot ignoring everyone.
    caplog.set_level(logging.INFO)
    fake = fake_discord
    nowhere = Setup(fake, fake_chat_api, tmp_path / "b.db", *"1234567")
    async with nowhere.bridge():
        pass
    assert lines(caplog, "connected to Discord")[0].endswith("in 0 server(s)")
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "the bot is in no Discord server, so nobody there can ask it anything; invite it "
        f"with {invite_url(int(fake.app_id))}"
    )
    assert f"client_id={fake.app_id}&" in warning.getMessage()


def test_the_invite_asks_for_the_permissions_the_docs_list() -> None:
    # One sum: the URL the log gives and the one README and docs/discord.md give.
    value = str(INVITE_PERMISSIONS.value)
    assert invite_url(1).endswith(f"&permissions={value}")
    for doc in ("README.md", "docs/discord.md"):
        text = (ROOT / doc).read_text()
        assert re.findall(r"permissions=(\d+)", text) == [value]
        assert f"**{value}**" in text


async def test_a_route_naming_a_category_or_an_unknown_id_is_warned_of(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # A category's id (Copy Category ID) matched no message: questions in its channels
    # were dropped with nothing above DEBUG.
    caplog.set_level(logging.INFO)
    fake = setup.discord
    category = fake.add_channel(setup.guild, "Support")
    fake.channels[category]["type"] = 4
    fake.channels[setup.ask]["parent_id"] = category
    setup.ask = category  # routes[0] (trigger: all) lists the category
    setup.help = "123456789012345678"  # routes[1]: no channel the bot can see
    await fake.deny_bot(setup.general, VIEW_CHANNEL, quietly=True)  # routes[2]: unread
    async with setup.bridge():
        pass
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"routes[0].channels: {category} is the category 'Support', whose id matches no "
        "message; list the ids of its channels instead",
        "routes[1].channels: 123456789012345678 is no channel or active thread the bot can "
        "see in its 1 server(s), and matches no message; check the id (Copy Channel ID) and "
        "that the bot was invited to its server",
        f"routes[2].channels: the bot lacks View Channels in channel {setup.general} "
        "(#general), and reads nothing there",
    ]


# ------------------------------------------------------------------ permissions


async def test_a_trigger_all_channel_closed_to_the_bot_is_said_once(
    setup: Setup, caplog: pytest.LogCaptureFixture
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
    setup: Setup, caplog: pytest.LogCaptureFixture
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
    setup: Setup, caplog: pytest.LogCaptureFixture
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
    setup: Setup, caplog: pytest.LogCaptureFixture
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
    setup: Setup, caplog: pytest.LogCaptureFixture
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


@pytest.mark.parametrize(
    "denied, lacks",
    [
        (CREATE_PUBLIC_THREADS, "Create Public Threads"),
        (SEND_MESSAGES_IN_THREADS, "Send Messages in Threads"),
        (
            CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS,
            "Create Public Threads and Send Messages in Threads",
        ),
    ],
    ids=["no-create", "no-send-in-threads", "neither"],
)
async def test_reply_in_thread_without_threads_answers_in_the_channel_and_says_why(
    setup: Setup, caplog: pytest.LogCaptureFixture, denied: int, lacks: str
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
    setup: Setup,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
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
