"""The Discord adapter against the fake Discord: what it delivers, and what its targets send."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.platforms.discord import DiscordOptions, DiscordPlatform, ratelimits
from adapters.platforms.discord import platform as discord_platform
from adapters.platforms.discord.commands import TOO_LATE_TEXT
from adapters.platforms.discord.format import ZWSP
from adapters.platforms.discord.targets import NOT_ANSWERED_TEXT, InteractionTarget
from adapters.platforms.markup import SOURCE_TITLE_MAX, encoded_url
from bridge.errors import PlaceGone, PlatformError, PlatformRefused, PlatformUnreachable
from bridge.interfaces import (
    STOPPING_TEXT,
    Address,
    Inbound,
    PlatformContext,
    ReplyTarget,
    Source,
)
from tests.core.fakeplatform import wait_for
from tests.fakes.discord import (
    EPHEMERAL,
    LOADING,
    MESSAGE_CONTENT,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    FakeDiscord,
    RateRule,
)
from tests.fakes.proxy import FakeProxy

DISCORD_EPOCH_MS = 1420070400000  # snowflake ids count milliseconds from 2015


@dataclass
class World:
    """A guild with two channels, two members (one with a role), and a stranger."""

    fake: FakeDiscord
    guild: str
    general: str
    other: str
    alice: str
    bob: str
    role: str
    got: asyncio.Queue[tuple[Inbound, ReplyTarget]] = field(default_factory=asyncio.Queue)

    async def next(self) -> tuple[Inbound, ReplyTarget]:
        return await asyncio.wait_for(self.got.get(), 10)


def build_world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("Community")
    general, other = fake.add_channel(guild, "general"), fake.add_channel(guild, "ask-ai")
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    role = fake.add_role(guild, "helpers")
    fake.add_member(guild, alice, [role])
    fake.add_member(guild, bob)
    return World(fake, guild, general, other, alice, bob, role)


def options(fake: FakeDiscord, **extra: Any) -> DiscordOptions:
    return DiscordOptions(
        token=fake.token,
        api_url=fake.api_url,
        gateway_url=fake.gateway_url,
        guild_ready_timeout=0.05,
        **extra,
    )


@asynccontextmanager
async def running(
    world: World, on_rate_limited: Callable[[], None] | None = None, **extra: Any
) -> AsyncIterator[DiscordPlatform]:
    platform = DiscordPlatform(
        PlatformContext(options=options(world.fake, **extra), on_rate_limited=on_rate_limited)
    )

    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        await world.got.put((msg, target))

    await platform.start(handler)
    try:
        yield platform
    finally:
        await platform.aclose()


@pytest.fixture
def world(fake_discord: FakeDiscord) -> World:
    return build_world(fake_discord)


# ---------------------------------------------------------------------- start-up


async def test_start_identifies_with_intents_and_syncs_commands(world: World) -> None:
    async with running(world) as platform:
        assert platform.connected
        intents = world.fake.identifies[0]["intents"]
        # guilds, guild messages, direct messages, message content
        assert intents == (1 << 0) | (1 << 9) | (1 << 12) | MESSAGE_CONTENT
        await world.fake.wait_until(lambda: world.fake.commands)  # beside the start
        assert sorted(c["name"] for c in world.fake.commands) == ["ask", "reset"]
        ask = next(c for c in world.fake.commands if c["name"] == "ask")
        assert ask["options"][0]["name"] == "question" and ask["options"][0]["required"]
    assert not platform.connected


async def test_a_command_registration_discord_holds_up_does_not_hold_up_the_start(
    world: World,
) -> None:
    # discord.py waits out a 429 on the registration (an hour even) before it opens
    # the gateway: the start failed after connect_timeout, blaming the gateway.
    world.fake.slow = [("PUT", r"/commands$", 6.0)]
    async with running(world) as platform:
        assert platform.connected
        assert world.fake.commands == []  # started while the registration waits
        await world.fake.mention(world.general, world.alice, "Still there?")
        msg, _ = await world.next()
        assert msg.text == "Still there?"


async def test_a_command_registration_whose_connection_drops_is_told_as_such(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # Beside the start, aiohttp's own error went unseen but for asyncio's "Task
    # exception was never retrieved", with a traceback.
    world.fake.drop = [("PUT", r"/commands$")] * 2  # and aiohttp's one retry
    async with running(world) as platform:
        assert platform.connected
        await wait_for(lambda: any(
            "slash commands unavailable" in r.getMessage() for r in caplog.records
        ))
    assert world.fake.commands == []


async def test_rest_and_the_gateway_go_through_the_proxy_the_environment_names(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # discord.py reads no proxy variable itself: behind a proxy it could not start.
    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    world.fake.host = "discord.test"  # reached through the proxy (loopback would go direct)
    async with FakeProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with running(world) as platform:
            assert platform.connected
            await world.fake.mention(world.general, world.alice, "through the proxy?")
            msg, _ = await world.next()
            assert msg.text == "through the proxy?"
    assert proxy.saw(f"GET {world.fake.api_url}/users/@me ")
    assert proxy.saw(f"GET {world.fake.gateway_url}")


async def test_a_discord_on_loopback_is_reached_directly_whatever_the_proxy_variables_say(
    world: World, no_proxies: pytest.MonkeyPatch
) -> None:
    # As the chat APIs: a proxy elsewhere cannot reach this machine's loopback.
    async with FakeProxy() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            no_proxies.setenv(name, proxy.url)
        async with running(world) as platform:
            assert platform.connected
            await world.fake.mention(world.general, world.alice, "direct?")
            msg, _ = await world.next()
            assert msg.text == "direct?"
    assert proxy.seen == []


async def test_start_up_logs_no_warning_about_voice(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # discord.py warns once per process that its voice libraries are missing.
    voice = discord_platform.discord.VoiceClient  # discord.py, as the adapter imports it
    monkeypatch.setattr(voice, "warn_nacl", True)
    monkeypatch.setattr(voice, "warn_dave", True)
    with caplog.at_level(logging.WARNING):
        async with running(world) as platform:
            assert platform.connected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_missing_message_content_intent_is_a_clear_error(world: World) -> None:
    world.fake.message_content_enabled = False
    with pytest.raises(PlatformError) as caught:
        async with running(world):
            pass
    text = str(caught.value)
    assert "4014" in text and "Message Content Intent" in text and "Developer Portal" in text
    assert world.fake.token not in text


async def test_without_message_content_option_it_starts_and_answers_mentions_only(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.fake.message_content_enabled = False
    caplog.set_level(logging.DEBUG, logger="chat_bridge.discord")
    async with running(world, message_content=False):
        assert not world.fake.identifies[0]["intents"] & MESSAGE_CONTENT
        # Its text would arrive empty: it is not passed on (no "ask in words" notice).
        await world.fake.say(world.general, world.alice, "no mention here")
        await world.fake.mention(world.general, world.alice, "but this one")
        first, _ = await world.next()
        await wait_for(lambda: any("not read" in r.getMessage() for r in caplog.records))
    assert first.text == "but this one" and first.mentioned
    assert not first.follow_ups  # a message without a mention is never heard
    assert world.got.empty()


async def test_wrong_token_is_a_clear_error(world: World) -> None:
    platform = DiscordPlatform(
        PlatformContext(options=options(world.fake).model_copy(update={"token": SecretStr("nope")}))
    )

    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        raise AssertionError("nothing should arrive")

    with pytest.raises(PlatformError, match="refused the bot token"):
        await platform.start(handler)
    assert not platform.connected


async def test_unreachable_discord_is_a_clear_error(world: World) -> None:
    url = world.fake.api_url
    await world.fake.aclose()
    platform = DiscordPlatform(PlatformContext(options=options(world.fake)))

    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        raise AssertionError("nothing should arrive")

    with pytest.raises(PlatformError, match="Cannot reach Discord") as caught:
        await platform.start(handler)
    assert url in str(caught.value)


@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "https-tunnel"])
async def test_a_proxy_refusing_its_credentials_fails_start_naming_the_proxy(
    world: World, no_proxies: pytest.MonkeyPatch, tunnel: bool
) -> None:
    # A 407 was told as Discord refusing to log in (HTTP 407: ).
    # Over https (Discord's own), the proxy refuses the tunnel (CONNECT) before any TLS.
    api_url = f"{'https' if tunnel else 'http'}://discord.example.invalid/api/v10"
    variable = "HTTPS_PROXY" if tunnel else "HTTP_PROXY"
    opts = options(world.fake).model_copy(update={"api_url": api_url})
    platform = DiscordPlatform(PlatformContext(options=opts))

    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        raise AssertionError("nothing should arrive")

    async with FakeProxy(credentials="corp:right-password") as proxy:
        no_proxies.setenv(variable, proxy.url.replace("//", "//corp:expired-s3cret@"))
        with pytest.raises(PlatformError) as caught:
            await platform.start(handler)
    said = str(caught.value)
    assert proxy.seen  # it was the proxy that answered
    assert "proxy" in said and "407" in said and f"user:password in {variable}" in said
    assert "refused to log in" not in said and "token" not in said
    assert "expired-s3cret" not in said and "corp:" not in said
    assert not platform.connected


async def test_unreachable_gateway_is_a_clear_error(world: World) -> None:
    opts = options(world.fake).model_copy(
        update={"gateway_url": "ws://127.0.0.1:9/gateway", "connect_timeout": 0.5}
    )
    platform = DiscordPlatform(PlatformContext(options=opts))

    async def handler(msg: Inbound, target: ReplyTarget) -> None:
        raise AssertionError("nothing should arrive")

    with pytest.raises(PlatformError) as caught:
        await platform.start(handler)
    # Refused at once, or still retrying when connect_timeout ends: either way it says where.
    assert "ws://127.0.0.1:9/gateway" in str(caught.value)
    assert "check discord.gateway_url" in str(caught.value)
    assert not platform.connected


async def test_auto_sharding_asks_discord_and_runs_every_shard(world: World) -> None:
    world.fake.gateway_shards = 2
    async with running(world, shard_count="auto"):
        assert world.fake.sent("GET", r"/gateway/bot$")
        assert sorted(i["shard"][0] for i in world.fake.identifies) == [0, 1]
        await world.fake.mention(world.general, world.alice, "sharded hello")
        msg, _ = await world.next()
    assert msg.text == "sharded hello"


async def test_one_shard_of_several(world: World) -> None:
    async with running(world, shard_count=4, shard_ids=[2]):
        assert [i["shard"] for i in world.fake.identifies] == [[2, 4]]


# ---------------------------------------------------------------------- inbound


async def test_mention_in_channel_is_normalized(world: World) -> None:
    async with running(world):
        sent = await world.fake.mention(world.general, world.alice, "what is a bridge?")
        msg, target = await world.next()
    assert msg == Inbound(
        platform="discord",
        workspace=world.guild,
        channel=world.general,
        thread=None,
        user=world.alice,
        text="what is a bridge?",
        message_id=sent["id"],
        event_id=sent["id"],
        is_dm=False,
        mentioned=True,
        roles=(world.role,),
        received_at=msg.received_at,
        # Discord's own time of the message, from its snowflake id: the same on every replica.
        sent_at=((int(sent["id"]) >> 22) + DISCORD_EPOCH_MS) / 1000,
    )
    assert target.address == Address("discord", world.guild, world.general, None)
    assert target.limits.max_chars == 2000
    assert target.limits.edit_bucket == f"discord:edit:{world.general}"
    assert target.limits.post_bucket == f"discord:post:{world.general}"
    assert not target.limits.begin_posts


async def test_plain_message_is_delivered_unmentioned(world: World) -> None:
    async with running(world):
        await world.fake.say(world.other, world.bob, "anyone around?")
        msg, _ = await world.next()
    assert (msg.channel, msg.text, msg.mentioned, msg.roles) == (
        world.other, "anyone around?", False, ()
    )


async def test_mention_of_the_bots_role_counts(world: World) -> None:
    bot_role = next(r["id"] for r in world.fake.guilds[world.guild]["roles"] if r["managed"])
    async with running(world):
        await world.fake.say(world.general, world.bob, f"<@&{bot_role}> hi")
        msg, _ = await world.next()
    assert msg.mentioned and msg.text == "hi"


async def test_the_bots_mention_within_a_question_is_its_name(world: World) -> None:
    # Taken out, it would leave "what can do for me?"; at the start or the end it
    # only says who is asked. Its name is the one its readers see: in a server, its
    # nickname there.
    fake = world.fake
    fake.guilds[world.guild]["members"][fake.app_id]["nick"] = "Helper"
    bot_role = next(r["id"] for r in fake.guilds[world.guild]["roles"] if r["managed"])
    me = f"<@{fake.app_id}>"
    asked = [
        f"what can {me} do for me?",
        f"ask <@{world.alice}> and <@&{bot_role}> about it",
        f"<@!{fake.app_id}>, what is a bridge?",
        f"thanks {me}!",
    ]
    async with running(world):
        got = []
        for text in asked:
            await fake.say(world.general, world.bob, text)
            got.append((await world.next())[0].text)
        await fake.dm(world.bob, f"what can {me} do?")
        got.append((await world.next())[0].text)
    assert got == [
        "what can Helper do for me?",
        "ask @alice and Helper about it",
        "what is a bridge?",
        "thanks!",
        "what can bridgebot do?",  # no server: its own name
    ]


async def test_a_message_edited_to_mention_the_bot_is_delivered_again_as_itself(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone forgot the mention, and edits the message to add it: the same event id,
    # so the bridge answers it once, whichever of the two it saw first.
    fake = world.fake
    me = f"<@{fake.app_id}>"
    async with running(world):
        sent = await fake.say(world.general, world.alice, "what is a bridge?")
        first, _ = await world.next()
        await fake.edit(sent["id"], f"{me} what is a bridge?")
        edited, target = await world.next()
        # Not taken: an edit that does not mention the bot, a link's preview filled in,
        # the bot's own answer edited, and a message older than the window.
        await fake.edit(sent["id"], "what is a bridge, really?")
        await fake.unfurl(sent["id"])
        answer = await target.post("an answer")
        await fake.edit(answer, f"{me} an answer")
        window = discord_platform.EDIT_WINDOW
        monkeypatch.setattr(discord_platform, "EDIT_WINDOW", 0.0)
        await fake.edit(sent["id"], f"{me} what is a bridge, then?")
        await fake.say(world.general, world.bob, "the next message")
        after, _ = await world.next()
    assert (first.mentioned, first.event_id) == (False, sent["id"])
    assert (edited.mentioned, edited.text, edited.event_id, edited.message_id) == (
        True, "what is a bridge?", sent["id"], sent["id"]
    )
    assert edited.sent_at == first.sent_at  # when it was sent, not edited
    assert after.text == "the next message"
    # Its event record outlives the window, whatever `limits.event_ttl` says.
    assert DiscordPlatform.redelivers_within >= window > 0


async def test_a_message_beginning_with_someone_elses_mention_says_so(world: World) -> None:
    bot_role = next(r["id"] for r in world.fake.guilds[world.guild]["roles"] if r["managed"])
    me = f"<@{world.fake.app_id}>"
    texts = [
        f"<@{world.alice}> can you check?",  # a person, or another bot
        f" <@!{world.alice}> can you check?",
        f"<@&{world.role}> is this right?",  # a role
        f"<@{world.alice}> what do you think, {me}?",  # the bot too: its own
        f"<@&{bot_role}> and <@{world.alice}>, what is it?",
        f"thanks <@{world.alice}>, and a question",  # not addressed to them first
    ]
    seen = []
    async with running(world):
        for text in texts:
            await world.fake.say(world.other, world.bob, text)
            msg, _ = await world.next()
            seen.append((msg.addresses_other, msg.mentioned))
    assert seen == [
        (True, False), (True, False), (True, False), (True, True), (False, True), (False, False)
    ]


async def test_a_reply_to_the_bot_is_a_mention_only_when_its_text_says_so(
    world: World,
) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "q")
        _, target = await world.next()
        answer = await target.post("an answer")
        seen = []
        for ping in (True, False):  # whatever the replier's client does with the ping
            await world.fake.reply(world.general, world.alice, answer, "thanks!", ping=ping)
            msg, _ = await world.next()
            seen.append(msg.mentioned)
        await world.fake.reply(world.general, world.bob, answer, f"<@{world.fake.app_id}> more?")
        asked, _ = await world.next()
    assert seen == [False, False]
    assert (asked.mentioned, asked.text) == (True, "more?")


async def test_roles_are_known_before_the_guild_is(fake_discord: FakeDiscord) -> None:
    world = build_world(fake_discord)
    fake_discord.late_guilds.add(world.guild)  # listed at READY, GUILD_CREATE not yet come
    async with running(world):
        await world.fake.say(world.general, world.alice, "from a member with a role")
        plain, _ = await world.next()
        await world.fake.invoke(world.general, world.alice, "ask", {"question": "q"})
        command, _ = await world.next()
    assert plain.roles == command.roles == (world.role,)
    # Who may view the channel cannot be told yet: it counts as its members'.
    assert plain.audience == command.audience == "members"


async def test_dm_is_normalized(world: World) -> None:
    async with running(world):
        sent = await world.fake.dm(world.bob, "private question")
        msg, target = await world.next()
    assert (msg.workspace, msg.channel, msg.thread, msg.is_dm) == (
        "@dm", sent["channel_id"], None, True
    )
    assert msg.text == "private question"
    assert await target.open_thread("x") is None


EMOJI = "<:partyparrot:112233445566778899> <a:blobwave:998877665544332211>"
NOVEMBER = "2023-11-14 22:13 UTC"  # <t:1700000000>, whatever its style


async def test_a_questions_markup_reaches_the_core_in_words(world: World) -> None:
    fake = world.fake
    carol = fake.add_user("carol", global_name="Carol Chen")
    fake.add_member(world.guild, carol, nick="caz")  # her nickname in this server
    dave = fake.add_user("dave", global_name="Dave D.")  # not in this server
    secret = fake.add_channel(world.guild, "secret-plans")
    fake.channels[secret]["permission_overwrites"] = [  # hidden from @everyone
        {"id": world.guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}
    ]
    elsewhere = fake.add_channel(fake.add_guild("Other"), "elsewhere")
    nobody = "1574615727560720392"  # no such user
    async with running(world):
        await fake.mention(
            world.general, world.bob,
            f"did <@{carol}> and <@!{world.alice}> or <@{dave}>, <@{nobody}> see <#{world.other}>, "
            f"<#{secret}>, <#{elsewhere}> or <#{world.general}>? ask <@&{world.role}> "
            f"<@&{world.guild}> @here {EMOJI} <t:1700000000:R> <t:1700000000> </ask:{nobody}> "
            f"with `<@{carol}> <t:1>` and\n```\n<#{world.other}> <:x:1>\n```\n<@{carol}>",
        )
        msg, _ = await world.next()
    assert msg.text == (
        f"did @caz and @alice or @Dave D., @user see #ask-ai, #channel, #channel or #general? "
        f"ask @helpers @everyone @here :partyparrot: :blobwave: {NOVEMBER} {NOVEMBER} /ask "
        f"with `<@{carol}> <t:1>` and\n```\n<#{world.other}> <:x:1>\n```\n@caz"
    )


async def test_a_dms_markup_names_users_but_no_servers_channels_or_roles(world: World) -> None:
    async with running(world):
        await world.fake.dm(
            world.bob, f"<@{world.alice}> in <#{world.general}> with <@&{world.role}> {EMOJI}"
        )
        msg, _ = await world.next()
    assert msg.text == "@alice in #channel with @role :partyparrot: :blobwave:"


def helpers_only(world: World, name: str) -> str:
    """A channel @everyone may not view and the helpers (alice) and the bot may."""
    channel = world.fake.add_channel(world.guild, name)
    world.fake.channels[channel]["permission_overwrites"] = [
        {"id": world.guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
        {"id": world.role, "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},
        {"id": world.fake.app_id, "type": 1, "allow": str(VIEW_CHANNEL), "deny": "0"},
    ]
    return channel


async def test_a_channel_is_named_only_where_everyone_who_reads_the_answer_may_see_it(
    world: World,
) -> None:
    fake = world.fake
    mods = helpers_only(world, "layoffs-q3")
    named = f"<#{mods}>, <#{world.other}> or <#{world.general}>?"
    async with running(world):
        # alice may see it, but bob reads #general, and its thread, and its history.
        await fake.mention(world.general, world.alice, named)
        in_general, _ = await world.next()
        # Where it was asked, every reader sees it, and its thread's parent.
        await fake.mention(mods, world.alice, named)
        in_mods, _ = await world.next()
        thread = await fake.add_thread(mods, "plans")
        await fake.mention(thread, world.alice, f"<#{thread}> of <#{mods}>?")
        in_thread, _ = await world.next()
    assert in_general.text == "#channel, #ask-ai or #general?"
    assert in_mods.text == "#layoffs-q3, #ask-ai or #general?"
    assert in_thread.text == "#plans of #layoffs-q3?"


async def test_a_place_only_its_members_see_is_told_as_such(world: World) -> None:
    # A channel @everyone may not view, and a public thread in it, are its members':
    # under `session: user`, what is said there stays there.
    fake = world.fake
    mods = helpers_only(world, "layoffs-q3")
    async with running(world):
        thread = await fake.add_thread(mods, "plans")
        private = await fake.add_thread(mods, "just us", private=True)
        public_thread = await fake.add_thread(world.general, "chat")
        for place in (world.general, mods, thread, private, public_thread):
            await fake.mention(place, world.alice, "hi")
        await fake.invoke(mods, world.alice, "reset")
        await fake.dm(world.alice, "hi")
        got = [(await world.next())[0] for _ in range(7)]
    told = {(m.command, m.channel, m.thread): m.audience for m in got}
    assert told == {
        (None, world.general, None): "channel",
        (None, mods, None): "members",
        (None, mods, thread): "members",
        (None, mods, private): "thread",
        (None, world.general, public_thread): "channel",
        ("reset", mods, None): "members",  # /reset there: the same place
        (None, fake.dm_channel(world.alice), None): "channel",  # the asker's already
    }


@pytest.mark.parametrize("ephemeral", [True, False])
async def test_an_answer_for_the_asker_alone_names_what_the_asker_may_see(
    world: World, ephemeral: bool
) -> None:
    fake = world.fake
    mods = helpers_only(world, "layoffs-q3")
    seen: list[str] = []
    async with running(world, ask_ephemeral=ephemeral):
        for asker in (world.alice, world.bob):
            await fake.invoke(world.general, asker, "ask", {"question": f"<#{mods}>?"})
            msg, _ = await world.next()
            seen.append(msg.text)
    # Only alice's private answer names it: she may see it, bob may not.
    assert seen == (["#layoffs-q3?", "#channel?"] if ephemeral else ["#channel?", "#channel?"])


async def test_bots_own_messages_are_not_delivered(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "first")
        _, target = await world.next()
        await target.post("an answer")  # the gateway echoes it back to the bot
        await world.fake.say(world.general, world.alice, "second")
        msg, _ = await world.next()
    assert msg.text == "second"


async def test_thread_messages_name_parent_channel_and_thread(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "start a thread")
        question, target = await world.next()
        opened = await target.open_thread("start a thread")
        assert opened is not None
        thread_id, inner = opened
        assert thread_id == question.message_id  # Discord: same id as the message
        assert inner.address == Address("discord", world.guild, world.general, thread_id)
        assert inner.limits.edit_bucket == f"discord:edit:{thread_id}"
        await inner.post("in the thread")
        await world.fake.say(thread_id, world.alice, "a follow-up")
        follow, _ = await world.next()
    assert (follow.channel, follow.thread, follow.mentioned) == (world.general, thread_id, False)
    thread = world.fake.channels[thread_id]
    assert thread["name"] == "start a thread" and thread["parent_id"] == world.general
    assert [m["content"] for m in world.fake.channel_messages(thread_id)] == ["in the thread"]


async def unseen_thread(world: World) -> str:
    """A thread on a message in #general that discord.py never saw (no THREAD_CREATE
    reached it); its id."""
    await world.fake.say(world.general, world.alice, "root")
    root, _ = await world.next()
    thread = dict(world.fake.channels[world.general])
    thread.update(
        id=root.message_id, type=11, parent_id=world.general, owner_id=world.alice,
        name="t", message_count=0, member_count=1, flags=0,
        thread_metadata={"archived": False, "auto_archive_duration": 60,
                         "archive_timestamp": "2024-01-01T00:00:00+00:00", "locked": False},
    )
    world.fake.channels[root.message_id] = thread
    return root.message_id


async def test_uncached_thread_is_looked_up(world: World) -> None:
    async with running(world):
        thread_id = await unseen_thread(world)
        await world.fake.say(thread_id, world.bob, "inside")
        msg, _ = await world.next()
    assert (msg.channel, msg.thread) == (world.general, thread_id)
    assert world.fake.sent("GET", rf"/channels/{thread_id}$")


async def test_a_message_in_a_thread_that_cannot_be_looked_up_is_still_taken(
    world: World,
) -> None:
    async with running(world):
        thread_id = await unseen_thread(world)
        # The look-up's connection closes unanswered, and again when aiohttp retries it:
        # aiohttp's own error reaches the adapter, not discord.py's.
        world.fake.drop = [("GET", rf"/channels/{thread_id}$")] * 2
        await world.fake.say(thread_id, world.bob, "inside")
        msg, _ = await world.next()
    assert msg.text == "inside" and world.fake.drop == []


async def test_message_in_a_guild_not_yet_cached_is_not_a_dm(world: World) -> None:
    async with running(world):
        late = world.fake.add_guild("joined later")  # never sent to this connection
        channel = world.fake.add_channel(late, "lobby")
        role = world.fake.add_role(late, "regulars")
        world.fake.add_member(late, world.bob, [role])
        await world.fake.mention(channel, world.bob, "hello from a new guild")
        msg, target = await world.next()
    assert (msg.workspace, msg.channel, msg.thread, msg.is_dm) == (late, channel, None, False)
    assert msg.roles == (role,) and msg.mentioned
    assert target.address.workspace == late


async def test_gateway_drop_is_resumed_and_delivery_continues(world: World) -> None:
    async with running(world) as platform:
        await world.fake.drop_gateways()
        await world.fake.wait_until(lambda: world.fake.resumes == 1 and world.fake.gateways)
        await world.fake.mention(world.general, world.alice, "still there?")
        msg, _ = await world.next()
        assert platform.connected
    assert msg.text == "still there?"
    assert len(world.fake.identifies) == 1  # resumed, not a new session


async def test_a_gateway_outage_shows_as_disconnected_until_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # discord.py stays "ready" while it tries to reconnect: /healthz said ok throughout.
    # It logged each try at ERROR with a traceback, a screenful every few seconds.
    async with running(world) as platform:
        world.fake.gateway_down = True
        await world.fake.drop_gateways()
        await wait_for(lambda: not platform.connected, timeout=10)
        await wait_for(lambda: "HTTP 503" in caplog.text, timeout=10)
        tries = [r for r in caplog.records if r.getMessage().startswith("Attempting a reconnect")]
        assert tries and all(r.levelname == "WARNING" and not r.exc_info for r in tries)
        assert "Discord's gateway answered HTTP 503" in tries[-1].getMessage()
        world.fake.gateway_down = False
        await wait_for(lambda: platform.connected, timeout=30)
        await world.fake.mention(world.general, world.alice, "back?")
        msg, _ = await world.next()
    assert msg.text == "back?"


async def test_a_shard_that_logs_in_again_shows_as_connected_once_it_is_back(
    world: World,
) -> None:
    # discord.py says "ready" only when every shard is, not when one logs in again:
    # /healthz said disconnected for good, though the bot went on answering.
    world.fake.gateway_shards = 2
    async with running(world, shard_count="auto") as platform:
        await wait_for(lambda: platform.connected, timeout=10)
        await world.fake.drop_gateways(shard=1, forget=True)
        await wait_for(lambda: len(world.fake.identifies) == 3, timeout=20)
        await wait_for(lambda: platform.connected, timeout=20)
        await world.fake.mention(world.general, world.alice, "still answering?")
        msg, _ = await world.next()
    assert msg.text == "still answering?"
    assert [i["shard"] for i in world.fake.identifies] == [[0, 2], [1, 2], [1, 2]]


async def test_after_stop_receiving_commands_are_told_and_messages_still_delivered(
    world: World,
) -> None:
    # Discord never delivers a message again: the core tells a question among them to
    # ask again (it once heard nothing of them, and the question was lost unsaid).
    async with running(world) as platform:
        await platform.stop_receiving()
        await world.fake.mention(world.general, world.alice, "too late")
        await world.fake.invoke(world.general, world.alice, "reset")
        msg, target = await world.next()
        await world.fake.wait_until(lambda: world.fake.sent("POST", r"/callback$"))
        assert world.got.empty()  # the command is not handed on
        body = world.fake.sent("POST", r"/callback$")[0].body
    assert msg.text == "too late" and msg.mentioned
    assert not target.redelivered
    assert body["data"]["flags"] & 64 and body["data"]["content"] == STOPPING_TEXT


async def test_a_command_during_a_stop_whose_answer_fails_is_one_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # discord.py logged "Ignoring exception in command 'ask'" at ERROR, with a traceback.
    async with running(world) as platform:
        await platform.stop_receiving()
        world.fake.drop.append(("POST", r"/callback$"))  # the connection breaks
        await world.fake.invoke(world.general, world.alice, "ask", {"question": "now?"})
        await wait_for(lambda: "could not tell /ask" in caplog.text, timeout=10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [r for r in caplog.records if "could not tell /ask" in r.getMessage()]
    assert line.levelname == "WARNING" and not line.exc_info
    assert "Could not reach Discord to answer the command" in line.getMessage()


# ---------------------------------------------------------------------- replies


async def test_reply_types_then_posts_and_edits_without_pinging(world: World) -> None:
    async with running(world):
        sent = await world.fake.mention(world.general, world.alice, "ping test")
        _, target = await world.next()
        await target.begin()
        mid = await target.post("@everyone hi")
        await target.edit(mid, "@here <@&1> <@2> done")
        await target.end()
    fake = world.fake
    typing = fake.sent("POST", rf"/channels/{world.general}/typing$")
    post = fake.sent("POST", rf"/channels/{world.general}/messages$")
    assert typing and typing[0].at <= post[0].at
    assert post[0].body["message_reference"]["message_id"] == int(sent["id"])
    for write in fake.message_writes():
        assert write.body["allowed_mentions"]["parse"] == []
        assert not write.body["allowed_mentions"].get("replied_user")
    assert fake.messages[mid]["content"] == "@here <@&1> <@2> done"
    assert fake.edits[mid] == ["@here <@&1> <@2> done"]


async def test_typing_is_renewed_until_the_first_post(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.platforms.discord import indicator

    monkeypatch.setattr(indicator, "TYPING_RENEW", 0.05)
    async with running(world):
        await world.fake.mention(world.general, world.alice, "slow one")
        _, target = await world.next()
        await target.begin()
        path = rf"/channels/{world.general}/typing$"
        await world.fake.wait_until(lambda: len(world.fake.sent("POST", path)) >= 3)
        await target.post("text at last")
        count = len(world.fake.sent("POST", path))
        # Typing stops with the first post: more messages bring no more typing.
        await target.post("second message")
    assert len(world.fake.sent("POST", path)) == count


async def test_edit_errors_become_platform_errors(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        with pytest.raises(PlatformError, match="2000 or fewer"):
            await target.post("y" * 2001)
        with pytest.raises(PlatformError, match="gone"):
            await target.edit("12345", "nothing there")


def test_a_command_whose_15_minutes_are_over_ends_its_answer() -> None:
    import discord  # loaded by the adapter already, its import warnings silenced

    from adapters.platforms.discord.failures import platform_error

    class Refused:
        status, reason = 401, "Unauthorized"

    expired = discord.HTTPException(Refused(), {"code": 50027, "message": "Invalid Webhook Token"})
    assert isinstance(platform_error("edit the answer", expired), PlaceGone)  # not retried


def test_a_reset_bot_token_or_an_archived_thread_ends_the_answer() -> None:
    import discord

    from adapters.platforms.discord.failures import platform_error

    class Unauthorized:
        status, reason = 401, "Unauthorized"

    class Refused:
        status, reason = 400, "Bad Request"

    reset = discord.HTTPException(Unauthorized(), {"code": 0, "message": "401: Unauthorized"})
    error = platform_error("edit the answer", reset)
    assert isinstance(error, PlaceGone) and "token is no longer accepted" in str(error)
    archived = discord.HTTPException(Refused(), {"code": 50083, "message": "Thread is archived"})
    error = platform_error("edit the answer", archived)
    assert isinstance(error, PlaceGone) and "archived" in str(error)


def test_a_refusal_is_told_from_discord_failing_or_out_of_reach() -> None:
    # The bridge tries a reply's end again for minutes where Discord may take it
    # later, and gives up soon where Discord refused it.
    import discord

    from adapters.platforms.discord.failures import platform_error

    class Refused:
        status, reason = 400, "Bad Request"

    class Failing:
        status, reason = 503, "Service Unavailable"

    refused = discord.HTTPException(Refused(), {"code": 50035, "message": "Invalid Form Body"})
    assert isinstance(platform_error("edit the answer", refused), PlatformRefused)
    failing = discord.DiscordServerError(Failing(), "upstream connect error")
    error = platform_error("edit the answer", failing)
    assert not isinstance(error, PlatformRefused) and "HTTP 503" in str(error)
    class Busy:
        status, reason = 429, "Too Many Requests"

    # A 429 past discord.py's own waits (or Cloudflare's) is Discord busy, not a no.
    busy = discord.HTTPException(Busy(), "You are being rate limited.")
    assert not isinstance(platform_error("edit the answer", busy), PlatformRefused)
    # An error page (Cloudflare's, a proxy's) is told by its title, not a few KB of markup.
    page = discord.HTTPException(Busy(), "<!DOCTYPE html><html><head><title>Access denied | "
                                         "discord.com used Cloudflare</title><style>" + "x" * 3000)
    assert "(HTTP 429: a page: Access denied | discord.com used Cloudflare)" in str(
        platform_error("edit the answer", page)
    )
    class Blocked:
        status, reason = 403, "Forbidden"

    # A 403 page, not Discord's JSON: Cloudflare blocking the request, not a permission.
    page = "<!DOCTYPE html><title>Access denied</title>" + "x" * 3000
    blocked = discord.Forbidden(Blocked(), page)
    error = platform_error("edit the answer", blocked)
    assert not isinstance(error, PlaceGone) and "(HTTP 403: a page: Access denied)" in str(error)
    unreachable = platform_error("edit the answer", aiohttp.ClientConnectionError())
    assert isinstance(unreachable, PlatformUnreachable)  # for the metrics' kind
    assert not isinstance(error, PlatformUnreachable)  # answered, with a 503
    assert "Could not reach Discord" in str(unreachable)


async def test_a_thread_keeps_its_channels_archive_setting(world: World) -> None:
    world.fake.channels[world.general]["default_auto_archive_duration"] = 60  # an hour
    async with running(world):
        await world.fake.mention(world.general, world.alice, "open one")
        _, target = await world.next()
        assert await target.open_thread("open one") is not None
    [opened] = world.fake.sent("POST", r"/threads$")
    assert opened.body["auto_archive_duration"] == 60


async def test_target_for_an_address_edits_after_restart(world: World) -> None:
    async with running(world) as platform:
        await world.fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        mid = await target.post("partial answer")
    async with running(world) as platform:
        again = platform.target(Address("discord", world.guild, world.general, None))
        await again.edit(mid, "partial answer — interrupted")
    assert world.fake.messages[mid]["content"] == "partial answer — interrupted"


async def test_formatting() -> None:
    from adapters.platforms.discord import format as fmt

    text = fmt.format_markdown("hi @everyone and <@&5> `@here` <@!7> in <#9>\n```\n@here\n```")
    expected = f"hi @{ZWSP}everyone and <@&{ZWSP}5> `@here` <@!{ZWSP}7> in <#9>"
    assert text == expected + "\n```\n@here\n```"  # code is left exactly as it was
    assert fmt.format_markdown(text) == text
    # In italics too; an address is left whole.
    assert fmt.format_markdown("_@everyone_ __@here__ ops@here.example") == (
        f"_@{ZWSP}everyone_ __@{ZWSP}here__ ops@here.example"
    )
    block = fmt.format_sources([Source("https://a.example/x", "A [draft]"), Source("https://b")])
    assert block == "**Sources**\n- [A (draft)](<https://a.example/x>)\n- <https://b>"
    # A backslash-escaped backtick opens no code span: the mention inside is defused.
    assert fmt.format_markdown("\\`<@123>\\`") == f"\\`<@{ZWSP}123>\\`"
    # A URL cannot end its link or break its line.
    odd = fmt.format_sources([Source("https://x.y/<@&12>\n@everyone x", "T")])
    assert odd == "**Sources**\n- [T](<https://x.y/%3C@&12%3E%0A@everyone%20x>)"
    # Addresses that hold @here or @everyone are left whole: they mention nobody.
    for address in ("https://mastodon.social/@here/1", "[g](https://x.example/@everyone)",
                    "ops@here.example"):
        assert fmt.format_markdown(address) == address
    # A title that is a URL would show as raw Markdown in a masked link.
    titled = fmt.format_sources([Source("https://a.example/x", "https://a.example/x")])
    assert titled == "**Sources**\n- <https://a.example/x>"


def test_a_sources_title_with_brackets_shows_no_backslashes() -> None:
    # Discord shows a backslash in a link's text rather than read it as an escape:
    # people saw `\[Solved\]`.
    from adapters.platforms.discord import format as fmt

    block = fmt.format_sources([
        Source("https://docs.acme.dev/faq", "[Solved] Login loop on SSO"),
        Source("https://docs.acme.dev/rel", "Release notes [v2.1]"),
        Source("https://docs.acme.dev/win", "Paths like C:\\temp\\"),
        Source("https://docs.acme.dev/x", "a](https://evil.example) ["),
    ])
    assert "\\" not in block
    assert block.splitlines()[1:] == [
        "- [(Solved) Login loop on SSO](<https://docs.acme.dev/faq>)",
        "- [Release notes (v2.1)](<https://docs.acme.dev/rel>)",
        "- [Paths like C:\u29f5temp\u29f5](<https://docs.acme.dev/win>)",
        "- <https://docs.acme.dev/x>",  # a title naming another place: no masked link
    ]


def test_an_answers_link_whose_text_is_a_url_or_another_place_is_a_bare_link() -> None:
    # Discord shows a masked link whose text holds a URL as raw Markdown, and a text
    # naming another place than the link leads would pass for it.
    from adapters.platforms.discord import format as fmt

    api = "https://docs.acme.dev/api"
    assert fmt.format_markdown(f"Full reference: [{api}]({api}).") == f"Full reference: <{api}>."
    wiki = "https://en.wikipedia.org/wiki/Foo_(bar)"
    assert fmt.format_markdown(f"See [{wiki}]({wiki}), [{wiki}](<{wiki}>).") == (
        f"See <{wiki}>, <{wiki}>."
    )
    odd = "[bank.com](https://evil.example/login) and [](https://x.example)"
    assert fmt.format_markdown(odd) == "<https://evil.example/login> and <https://x.example>"
    # The label's brackets, code in it, and a link inside it are the label's.
    assert fmt.format_markdown(f"[see [1] `{api}`]({api}) [a [b]({api}) c]({api}#c)") == (
        f"<{api}> <{api}#c>"
    )
    kept = (
        f"[the API]({api}) [docs.acme.dev]({api}) [Foo]({wiki}) array[i](x)"
        f" `[{api}]({api})`\n```\n[{api}]({api})\n```"
    )
    assert fmt.format_markdown(kept) == kept
    # An unclosed bracket or parenthesis hides no link from it.
    assert fmt.format_markdown(f"[ ( [{api}]({api}) )") == f"[ ( <{api}> )"


def test_a_label_whose_marks_hide_another_place_is_a_bare_link() -> None:
    # Discord shows `[**paypal**.com](…)` as paypal.com in bold: the check read the
    # marks as written, and no domain in them.
    from adapters.platforms.discord import format as fmt

    evil = "https://evil.example/"
    for label in ("**paypal**.com", "pay`pal`.com", "_paypal_.com", "||paypal||.com"):
        assert fmt.format_markdown(f"Log in at [{label}]({evil}).") == f"Log in at <{evil}>."
        assert fmt.format_sources([Source(evil, label)]) == f"**Sources**\n- <{evil}>"
    kept = "[the **new** docs](https://docs.acme.dev/)"
    assert fmt.format_markdown(kept) == kept


def test_what_discord_reads_otherwise_is_made_discord_markdown() -> None:
    from adapters.platforms.discord import format as fmt

    answer = (
        "#### Options compared\n\n| Option | Default |\n|---|:---:|\n| `timeout` | 30 |\n\n"
        "Restart. `__init__` stays.\n"
        "```\n| a | b |\n|---|---|\n#### in code\n```\n###### "
    )
    assert fmt.format_markdown(answer) == (
        # No tables on Discord: the grid is kept readable as preformatted text.
        "**Options compared**\n\n```\n| Option  | Default |\n|---------|---------|\n"
        "| timeout |   30    |\n```\n\nRestart. `__init__` stays.\n"
        "```\n| a | b |\n|---|---|\n#### in code\n```\n###### "
    )


# ---------------------------------------------------------------------- slash commands


async def test_ask_command_is_deferred_then_answered_in_channel(world: World) -> None:
    async with running(world):
        iid = await world.fake.invoke(world.general, world.alice, "ask", {"question": "why?"})
        msg, target = await world.next()
        assert isinstance(target, InteractionTarget)
        # Interaction responses are outside the bot's global limit: never queued behind it.
        assert target.limits.global_bucket is None and target.limits.global_rate is None
        await target.begin()
        first = await target.post("because")
        second = await target.post("and more")
        await target.edit(first, "because, edited")
        await target.edit(second, "and more, edited")
        await target.end()
    assert (msg.command, msg.text, msg.mentioned, msg.event_id) == ("ask", "why?", True, iid)
    assert (msg.channel, msg.workspace, msg.roles) == (world.general, world.guild, (world.role,))
    fake = world.fake
    callback = fake.sent("POST", rf"/interactions/{iid}/.+/callback$")
    assert len(callback) == 1 and callback[0].body["type"] == 5
    assert not (callback[0].body.get("data") or {}).get("flags")
    original = fake.interactions[iid]["original"]
    assert first == original
    assert fake.messages[first]["content"] == "because, edited"
    assert fake.messages[second]["content"] == "and more, edited"
    assert not fake.messages[second]["flags"] & 64
    for write in fake.message_writes():
        assert write.body["allowed_mentions"]["parse"] == []


async def test_ask_commands_text_is_in_words_too(world: World) -> None:
    fake = world.fake
    question = (
        f"<@{fake.app_id}> what did <@{world.bob}> and <@{world.alice}> post in "
        f"<#{world.other}> for <@&{world.role}> {EMOJI} at <t:1700000000:t>? `<#{world.other}>`"
    )
    async with running(world):
        await fake.invoke(world.general, world.alice, "ask", {"question": question})
        msg, _ = await world.next()
    # A string option carries no mentioned users: bob, not known to the bot, is a word.
    assert msg.text == (
        f"what did @user and @alice post in #ask-ai for @helpers :partyparrot: :blobwave: "
        f"at {NOVEMBER}? `<#{world.other}>`"
    )


async def test_ask_can_be_ephemeral(world: World) -> None:
    async with running(world, ask_ephemeral=True):
        iid = await world.fake.invoke(world.general, world.alice, "ask", {"question": "q"})
        _, target = await world.next()
        await target.post("only for you")
        await target.post("still only for you")
    fake = world.fake
    assert fake.sent("POST", r"/callback$")[0].body["data"]["flags"] & 64
    assert all(m["flags"] & 64 for m in fake.channel_messages(world.general))
    assert fake.messages[fake.interactions[iid]["original"]]["content"] == "only for you"


async def test_reset_command_is_ephemeral_and_answered_by_notice(world: World) -> None:
    async with running(world):
        iid = await world.fake.invoke(world.general, world.bob, "reset")
        msg, target = await world.next()
        await target.notice("Started a new conversation.")
    assert (msg.command, msg.text) == ("reset", "")
    original = world.fake.messages[world.fake.interactions[iid]["original"]]
    assert original["content"] == "Started a new conversation."
    assert original["flags"] & 64


async def test_a_notice_for_a_public_ask_is_shown_to_the_asker_alone(world: World) -> None:
    async with running(world):
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "q"})
        _, target = await world.next()
        await target.notice("I am busy right now; please try again shortly.")
    fake = world.fake
    assert fake.interactions[iid]["original"] not in fake.messages  # the public thinking
    [notice] = fake.channel_messages(world.general)
    assert notice["content"] == "I am busy right now; please try again shortly."
    assert notice["flags"] & 64


async def test_command_in_a_dm(world: World) -> None:
    async with running(world):
        channel = world.fake.dm_channel(world.bob)
        await world.fake.invoke(channel, world.bob, "ask", {"question": "dm q"})
        msg, _ = await world.next()
    assert (msg.workspace, msg.channel, msg.is_dm, msg.text) == ("@dm", channel, True, "dm q")


async def test_command_in_a_thread_names_parent_and_thread(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "open one")
        _, target = await world.next()
        opened = await target.open_thread("open one")
        assert opened is not None
        await world.fake.invoke(opened[0], world.alice, "reset")
        msg, inner = await world.next()
        await inner.notice("done")
    assert (msg.channel, msg.thread, msg.command) == (world.general, opened[0], "reset")
    assert inner.address == Address("discord", world.guild, world.general, opened[0])


async def test_unanswered_command_is_closed(world: World) -> None:
    async with running(world) as platform:
        platform.unanswered_after = 0.1
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "hello?"})
        await world.next()  # the handler keeps it and never answers (no route)
        [closed] = await world.fake.wait_until(
            lambda: [m for m in world.fake.channel_messages(world.general)
                     if "not be set up" in m["content"]]
        )
    assert closed["flags"] & 64  # told to the asker; the public thinking is gone
    assert world.fake.interactions[iid]["original"] not in world.fake.messages


async def test_a_question_waiting_where_the_bot_lost_send_messages_is_withdrawn(
    world: World,
) -> None:
    # Asked, the chat API would answer where Discord refuses the bot's messages (403).
    fake = world.fake
    async with running(world):
        await fake.mention(world.general, world.alice, "in the channel")
        _, target = await world.next()
        tid = await fake.add_thread(world.general, "aside")
        await fake.mention(tid, world.bob, "in a thread")
        _, in_thread = await world.next()
        assert not target.withdrawn() and not in_thread.withdrawn()
        await fake.deny_bot(world.general, SEND_MESSAGES)
        await wait_for(target.withdrawn)
        assert not in_thread.withdrawn()  # Send Messages in Threads still allowed
        await fake.deny_bot(world.general, SEND_MESSAGES_IN_THREADS)
        await wait_for(in_thread.withdrawn)


async def test_an_ask_in_a_deleted_thread_is_withdrawn_and_posts_nothing(world: World) -> None:
    fake = world.fake
    async with running(world):
        tid = await fake.add_thread(world.general, "aside")
        iid = await fake.invoke(tid, world.bob, "ask", {"question": "here?"})
        _, target = await world.next()
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        assert not target.withdrawn()
        await fake.delete_place(tid)
        await wait_for(target.withdrawn)
        sent = len(fake.requests)
        with pytest.raises(PlaceGone):
            await target.post("the answer")
        assert isinstance(target, InteractionTarget)
        assert not await target.give_up(TOO_LATE_TEXT)  # nobody to tell
        await target.end()  # its "thinking…" went with the thread
    assert fake.requests[sent:] == []


async def test_an_ask_where_the_bot_lost_access_tells_its_asker_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # Withdrawn (Discord refused another reply there, Missing Access), its public
    # "thinking…" stayed until the token ran out, and the log said the channel was
    # deleted.
    fake = world.fake
    caplog.set_level(logging.INFO, logger="chat_bridge.discord")
    async with running(world):
        await fake.mention(world.general, world.alice, "in the channel")
        _, target = await world.next()
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "here?"})
        _, ask = await world.next()
        assert isinstance(ask, InteractionTarget)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        fake.left.add(world.guild)  # the bot was removed, unseen
        with pytest.raises(PlaceGone):
            await target.post("the answer")
        assert ask.withdrawn()
        await ask.end()
        sent = len(fake.requests)
        await ask.end()
        assert not await ask.give_up(TOO_LATE_TEXT)
        await ask.notice("interrupted")
        assert fake.requests[sent:] == []  # said once
    assert fake.interactions[iid]["original"] not in fake.messages  # the public "thinking…"
    [told] = [m for m in fake.channel_messages(world.general) if m["flags"] & EPHEMERAL]
    assert told["content"] == (
        "_This was not answered: the bot can no longer reach the channel or thread it was "
        "asked in._"
    )
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"the bot cannot reach channel or thread {world.general}" in m for m in logged)
    assert not any("was deleted" in m for m in logged)


async def test_an_ask_given_up_where_the_bot_was_removed_says_why(world: World) -> None:
    # Its turn not come by its time (the bot busy elsewhere), the give-up said nothing.
    fake = world.fake
    async with running(world, ask_ephemeral=True):
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "here?"})
        _, ask = await world.next()
        assert isinstance(ask, InteractionTarget)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        await fake.remove_bot(world.guild)
        await wait_for(ask.withdrawn)
        assert await ask.give_up(TOO_LATE_TEXT)
    original = fake.messages[fake.interactions[iid]["original"]]
    assert not original["flags"] & LOADING and original["flags"] & EPHEMERAL
    assert original["content"] == (
        "_This was not answered: the bot was removed from the server it was asked in._"
    )


async def test_an_ask_ended_unanswered_says_so_unless_a_stop_cut_it(world: World) -> None:
    # Its turn taken over elsewhere, say: "thinking…" must not stay. Cut by a stop,
    # it is the stop that says so.
    fake = world.fake
    async with running(world, ask_ephemeral=True):
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "one"})
        _, ask = await world.next()
        cut = await fake.invoke(world.general, world.bob, "ask", {"question": "two"})
        _, stopped = await world.next()
        await fake.wait_until(lambda: all(fake.interactions[i]["callback"] for i in (iid, cut)))
        started = asyncio.Event()

        async def answering() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await stopped.end()
                raise

        task = asyncio.create_task(answering())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not ask.withdrawn()
        await ask.end()
    original = fake.messages[fake.interactions[iid]["original"]]
    assert not original["flags"] & LOADING
    assert original["content"] == NOT_ANSWERED_TEXT
    assert fake.messages[fake.interactions[cut]["original"]]["flags"] & LOADING


async def test_an_ask_that_cannot_be_told_ends_all_the_same(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    async with running(world):
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "here?"})
        _, ask = await world.next()
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        fake.interactions[iid]["expired"] = True  # Discord refuses its webhook: 401
        await ask.end()  # raises nothing
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith("could not tell the asker of a command that it was not answered")


async def test_a_command_whose_answer_is_queued_is_not_called_unanswered(world: World) -> None:
    async with running(world) as platform:
        platform.unanswered_after = 0.1
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "later?"})
        _, target = await world.next()
        target.accepted()  # the relay queued its answer behind another one
        await wait_for(lambda: not platform._watchdogs)
    assert not world.fake.edits.get(world.fake.interactions[iid]["original"] or "")


async def test_an_ask_given_up_says_nothing_more_and_is_withdrawn(world: World) -> None:
    async with running(world) as platform:
        platform.give_up_after = 0.1
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "later?"})
        _, target = await world.next()
        assert isinstance(target, InteractionTarget)
        target.accepted()  # queued behind another answer, which outlasts it
        await world.fake.wait_until(
            lambda: [m for m in world.fake.channel_messages(world.general)
                     if m["content"] == TOO_LATE_TEXT]
        )
        sent = len(world.fake.requests)
        await target.notice("interrupted")  # a stop's mark, say: the asker knows already
        assert target.withdrawn()  # its turn comes: the chat API is not asked
        assert world.fake.requests[sent:] == []
    assert world.fake.interactions[iid]["original"] not in world.fake.messages


async def test_an_ask_past_its_time_is_withdrawn_even_before_its_asker_is_told(
    world: World,
) -> None:
    # The loop too busy for the timer, or the clock moved: its time says enough.
    async with running(world) as platform:
        platform.give_up_after = 0.1
        await world.fake.invoke(world.general, world.bob, "ask", {"question": "later?"})
        _, target = await world.next()
        assert isinstance(target, InteractionTarget)
        await wait_for(lambda: target.timer is not None)  # once Discord took the command
        assert target.timer is not None
        target.timer.cancel()
        assert target.give_up_at is not None
        await wait_for(lambda: time.time() >= target.give_up_at)
        assert target.withdrawn()


async def test_an_ask_whose_answer_began_is_never_given_up(world: World) -> None:
    async with running(world) as platform:
        platform.give_up_after = 0.1
        await world.fake.invoke(world.general, world.bob, "ask", {"question": "now?"})
        _, target = await world.next()
        assert isinstance(target, InteractionTarget)
        await wait_for(lambda: target.timer is not None)
        timer = target.timer
        assert not target.withdrawn()  # its turn came in time
        assert not target.withdrawn()  # asking again changes nothing: the timer still runs
        assert target.timer is timer
        await target.begin()  # the answer begins: no more giving up
        assert target.timer is None
        assert not await target.give_up(TOO_LATE_TEXT)
        await target.post("the answer")
        rid = await world.fake.invoke(world.general, world.bob, "reset")
        _, reset = await world.next()
        assert isinstance(reset, InteractionTarget)
        await reset.notice("done")
    assert reset.give_up_at is None  # a /reset is not to be asked again
    assert world.fake.messages[world.fake.interactions[rid]["original"]]["content"] == "done"


# ---------------------------------------------------------------------- the fake's limits


async def test_fake_rate_limit_is_honoured_by_discord_py(world: World) -> None:
    """Control for the zero-429 tests: overspending the budget does draw 429s."""
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["post"] = RateRule(2, 0.5)
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        ids = await asyncio.gather(*(target.post(f"burst {i}") for i in range(4)))
    assert fake.rate_limited >= 1  # discord.py saw the 429, waited and retried
    assert len(seen) == fake.rate_limited  # and each one was counted for /metrics
    assert len(set(ids)) == 4
    assert sorted(m["content"] for m in fake.channel_messages(world.general)) == [
        f"burst {i}" for i in range(4)
    ]
    limited = [r for r in fake.requests if r.method == "POST" and "/messages" in r.path]
    assert len(limited) == 4 + fake.rate_limited


async def test_429s_on_ask_answers_are_counted_too(world: World) -> None:
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["edit"] = RateRule(1, 1.0)  # the second edit of the answer draws a 429
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.invoke(world.general, world.alice, "ask", {"question": "q"})
        _, target = await world.next()
        answer = await target.post("a")  # an interaction's answer goes by its webhook
        await target.edit(answer, "ab")
        await target.edit(answer, "abc")
    assert fake.rate_limited >= 1 and len(seen) == fake.rate_limited


async def test_429s_are_counted_whatever_the_log_level(world: World) -> None:
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["edit"] = RateRule(1, 1.0)
    seen: list[int] = []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # `logging.level: ERROR`
    try:
        async with running(world, on_rate_limited=lambda: seen.append(1)):
            await fake.mention(world.general, world.alice, "q")
            _, target = await world.next()
            message = await target.post("a")
            await target.edit(message, "ab")
            await target.edit(message, "abc")
    finally:
        root.setLevel(level)
        for name in ("discord.http", "discord.webhook.async_"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert fake.rate_limited >= 1 and len(seen) == fake.rate_limited


def _429_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name in ("discord.http", "discord.webhook.async_") and r.levelno == level
    ]


def _summed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name == "chat_bridge.discord" and "Discord rate-limited" in r.getMessage()
    ]


async def test_a_run_of_429s_is_one_warning_line_and_every_one_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    fake.ratelimit_headers = False
    fake.rates["post"] = RateRule(1, 0.2)
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        await asyncio.gather(*(target.post(f"burst {i}") for i in range(4)))
        assert fake.rate_limited >= 2
        assert len(seen) == fake.rate_limited  # each one still counted for /metrics
        told = _429_lines(caplog, logging.WARNING)
        assert len(told) == 1 and "responded with 429" in told[0].getMessage()
        # The rest at DEBUG, summed up once the minute is over (or at close).
        assert len(_429_lines(caplog, logging.DEBUG)) == fake.rate_limited - 1
        assert _summed(caplog) == []
    [summary] = _summed(caplog)
    assert summary.levelno == logging.WARNING
    assert f"rate-limited {fake.rate_limited - 1} more request" in summary.getMessage()


async def test_429s_are_summed_up_once_a_minute_bot_wide_ones_told_apart(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimits, "QUIET_FOR", 0.3)
    fake = world.fake
    seen: list[int] = []
    async with running(world, on_rate_limited=lambda: seen.append(1)):
        await fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        fake.global_rule = RateRule(1, 0.2)
        await asyncio.gather(*(target.post(f"burst {i}") for i in range(4)))
        fake.global_rule = RateRule(50, 1.0)  # Discord's again
        assert fake.global_limited >= 2
        # Logged while still running: the minute (here 0.3 s) is over.
        await wait_for(lambda: _summed(caplog))
    assert len(seen) == fake.global_limited + fake.rate_limited
    told = _429_lines(caplog, logging.WARNING)
    said = [r.getMessage() for r in _summed(caplog)]
    assert all(r.levelno == logging.WARNING for r in _summed(caplog))
    # Every 429 told: logged whole, or in a sum.
    summed = sum(int(n) for m in said for n in re.findall(r"rate-limited (\d+) more", m))
    assert sum("responded with 429" in r.getMessage() for r in told) + summed == len(seen)
    bot_wide = sum(int(n) for m in said for n in re.findall(r"(\d+) bot-wide", m))
    assert sum("Global rate limit" in r.getMessage() for r in told) + bot_wide == (
        fake.global_limited
    )
    assert bot_wide >= 1


async def test_fake_rejects_overlong_content_with_discords_error(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        with pytest.raises(PlatformError, match="50035"):
            await target.post("z" * 2001)
        await target.post("z" * 2000)
    assert len(world.fake.rejected) == 1


# ---------------------------------------------------------------------- options


def _config(discord_block: str) -> str:
    return (
        "store: sqlite:///tmp/unused.db\n"
        "backends:\n  docs: {kind: chatmount, url: 'https://a.example/v1/chat', api_key: k}\n"
        + discord_block
    )


def test_documented_config_is_valid() -> None:
    import re
    from pathlib import Path

    from adapters.registry import REGISTRY
    from bridge.config import parse_config

    doc = (Path(__file__).parents[2] / "docs" / "discord.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert block is not None
    config = parse_config(_config(block.group(1)), env={"DISCORD_BOT_TOKEN": "t.0.k"},
                          registry=REGISTRY)
    opts = config.platforms["discord"]
    assert opts.token.get_secret_value() == "t.0.k"
    assert opts.api_url == "https://discord.com/api/v10" and opts.gateway_url is None
    assert (opts.edit_rate.rate().count, opts.edit_rate.rate().per) == (5, 5.0)
    assert (opts.post_rate.count, opts.post_rate.per, opts.ask_ephemeral) == (5, 5.0, False)
    assert [r.trigger for r in config.routes] == ["all", "mention", "mention"]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("discord: {token: ''}", "discord.token: is empty (is the environment variable"),
        # Half a rate took its other half from another rate's default.
        ("discord: {token: d.t.k, global_rate: {count: 20}}", "discord.global_rate.per"),
        ("discord: {token: d.t.k, shard_ids: [1]}", "shard_ids needs a numeric shard_count"),
        ("discord: {token: d.t.k, shard_count: 2, shard_ids: [2]}", "from 0 to 1"),
        ("discord: {token: d.t.k, shard_count: 0}", 'shard_count: must be a number of shards (1 '),
        # One line naming the key, not the branches of its type (`shard_count.int`).
        ("discord: {token: d.t.k, shard_count: Auto}",
         'discord.shard_count: must be a number of shards (1 or more) or "auto"'),
        ("discord: {token: d.t.k, edit_rate: {count: 0}}", "discord.edit_rate.count"),
        ("discord: {token: d.t.k, api_url: 'ftp://x'}", "discord.api_url: must start with https://"),
        ("discord: {token: d.t.k, gateway_url: 'http://x'}", "discord.gateway_url: must start"),
        ("discord: {token: d.t.k, colour: 1}", "discord.colour: unknown key"),
    ],
)
def test_bad_options_name_the_key(block: str, expected: str) -> None:
    from adapters.registry import REGISTRY
    from bridge.config import parse_config
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(_config(block + "\nroutes: []"), env={}, registry=REGISTRY)
    assert expected in str(caught.value)


def test_a_sources_title_naming_another_place_is_no_masked_link() -> None:
    # Only "://" was looked for: a title with no scheme, a zero-width space in it, or
    # nothing visible at all made a masked link to somewhere else.
    from adapters.platforms.discord import format as fmt

    block = fmt.format_sources([
        Source("https://evil.example/1", "bank.com/login"),
        Source("https://evil.example/2", "https:/\u200b/bank.example/login"),
        Source("https://evil.example/3", "\u200b"),
        Source("https://docs.example/4", "The docs"),
    ])
    assert block.splitlines()[1:] == [
        "- <https://evil.example/1>", "- <https://evil.example/2>",
        "- <https://evil.example/3>", "- [The docs](<https://docs.example/4>)",
    ]


def test_a_source_known_by_its_address_alone_reads_in_its_own_letters() -> None:
    # Discord shows a bare link percent-encoded: a page in Russian or Japanese with no
    # title, or its URL for one, read as runs of %XX.
    from adapters.platforms.discord import format as fmt

    moscow, tokyo = "https://ru.wikipedia.org/wiki/Москва", "https://ja.wikipedia.org/wiki/東京"
    block = fmt.format_sources([
        Source(moscow, ""), Source(tokyo, tokyo), Source("https://例え.jp/東京_[1]", " "),
    ])
    assert block.splitlines()[1:] == [
        "- [ru.wikipedia.org/wiki/Москва]"
        "(<https://ru.wikipedia.org/wiki/%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0>)",
        "- [ja.wikipedia.org/wiki/東京](<https://ja.wikipedia.org/wiki/%E6%9D%B1%E4%BA%AC>)",
        # An international host as DNS knows it (as everywhere), brackets as parentheses.
        "- [xn--r8jz45g.jp/東京_(1)](<https://xn--r8jz45g.jp/%E6%9D%B1%E4%BA%AC_[1]>)",
    ]
    # As chat APIs mostly give them, percent-encoded: the letters they encode; an
    # escape of ASCII, or of bytes that are not UTF-8, stays.
    encoded = "https://ru.wikipedia.org/wiki/%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0_%281%29%FF"
    assert fmt.format_sources([Source(encoded, "")]).splitlines()[1:] == [
        f"- [ru.wikipedia.org/wiki/Москва_%281%29%FF](<{encoded}>)",
    ]
    # Shown bare: an address Discord shows as it is, and one not safe to show as the
    # link's text (a right-to-left override, a user before the host, an unseen
    # character).
    for url in ("https://a.example/x", "https://例え.jp/", "https://a.example/%E2%80%AEx",
                "https://good.example\u202e@evil.com/Москва",
                "https://bank.example@evil.com/Москва", "https://a.example/\u200bМосква"):
        assert fmt.format_sources([Source(url, "")]) == f"**Sources**\n- <{encoded_url(url)}>"


@pytest.mark.parametrize("whole", [
    "\U0001F1EF\U0001F1F5",  # a flag: two regional indicators
    "\U0001F468\u200d\U0001F469\u200d\U0001F467",  # a family joined by ZWJ
    "\U0001F44D\U0001F3FD",  # a thumbs up with its skin tone
])
def test_a_long_title_or_thread_name_is_cut_between_graphemes(whole: str) -> None:
    # Cut at a code point, a flag lost its second half (another flag, or none) before
    # the "…", a family its last members, a thumbs up its skin tone.
    from adapters.platforms.discord import format as fmt

    title = "x" * (SOURCE_TITLE_MAX - 2) + whole + " guide"
    [_, line] = fmt.format_sources([Source("https://a.example/p", title)]).splitlines()
    assert line == f"- [{'x' * (SOURCE_TITLE_MAX - 2)}…](<https://a.example/p>)"
    name = fmt.thread_name("y" * (fmt.THREAD_NAME_MAX - 2) + whole + " plans?")
    assert name == "y" * (fmt.THREAD_NAME_MAX - 2) + "…"


def test_discords_payloads_and_request_bodies_are_never_logged() -> None:
    # At DEBUG discord.py's gateway logged every MESSAGE_CREATE, the question's text
    # with it, and its HTTP client the bodies of the answers.
    root = logging.getLogger()
    before = root.level
    loggers = [logging.getLogger(n) for n in ("discord.gateway", "discord.http")]
    was = [logger.level for logger in loggers]
    try:
        root.setLevel(logging.DEBUG)
        DiscordPlatform(PlatformContext(options=DiscordOptions(token="d.t.k")))
        assert [logger.level for logger in loggers] == [logging.INFO, logging.INFO]
    finally:
        root.setLevel(before)
        for logger, level in zip(loggers, was, strict=True):
            logger.setLevel(level)
