"""The Discord adapter's start against the fake Discord: its intents, shards and slash commands,
the proxy it goes through, and a start that fails saying why."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from adapters.platforms.discord import DiscordPlatform
from adapters.platforms.discord import platform as discord_platform
from bridge.errors import PlatformError
from bridge.interfaces import Inbound, PlatformContext, ReplyTarget
from tests.core.fakeplatform import wait_for
from tests.fakes.discord import MESSAGE_CONTENT
from tests.fakes.proxy import FakeProxy
from tests.platforms.discord_support import Setup, World, options, running


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
        await wait_for(
            lambda: any("slash commands unavailable" in r.getMessage() for r in caplog.records)
        )
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


async def test_missing_message_content_intent_fails_start_clearly(setup: Setup) -> None:
    setup.discord.message_content_enabled = False
    with pytest.raises(PlatformError) as caught:
        async with setup.bridge():
            pass
    assert "Message Content Intent" in str(caught.value)
    assert setup.discord.token not in str(caught.value)


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
