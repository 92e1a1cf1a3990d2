"""The Discord adapter's replies: typing, then posted and edited without pinging anyone, after a
restart too, and what Discord's refusals and failures are told as."""

from __future__ import annotations

import aiohttp
import pytest

from bridge.errors import PlaceGone, PlatformError, PlatformRefused, PlatformUnreachable
from bridge.interfaces import Address
from tests.platforms.discord_support import World, running


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


async def test_target_for_an_address_edits_after_restart(world: World) -> None:
    async with running(world) as platform:
        await world.fake.mention(world.general, world.alice, "x")
        _, target = await world.next()
        mid = await target.post("partial answer")
    async with running(world) as platform:
        again = platform.target(Address("discord", world.guild, world.general, None))
        await again.edit(mid, "partial answer — interrupted")
    assert world.fake.messages[mid]["content"] == "partial answer — interrupted"


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
    page = discord.HTTPException(
        Busy(),
        "<!DOCTYPE html><html><head><title>Access denied | "
        "discord.com used Cloudflare</title><style>" + "x" * 3000,
    )
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
