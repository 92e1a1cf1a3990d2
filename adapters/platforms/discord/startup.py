"""Discord at start-up: the endpoints discord.py talks to, what went wrong in words
an admin can act on, and, once connected, who the bot is and where it can answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.platforms import relevel
from adapters.platforms.discord.options import DiscordOptions
from adapters.platforms.discord.permissions import invite_url
from adapters.platforms.discord.targets import platform_error, proxy_said
from bridge.errors import PlatformError

log = logging.getLogger("chat_bridge.discord")

INTENT_HELP = (
    "Discord closed the gateway with 4014 (disallowed intent): the bot asks for the "
    "Message Content intent, which is not enabled for this application. Enable it in the "
    "Developer Portal (Applications > your app > Bot > Privileged Gateway Intents > "
    "Message Content Intent) and restart, or set discord.message_content: false to answer "
    "only mentions, DMs and slash commands."
)
TOKEN_HELP = (
    "Discord refused the bot token (401 Unauthorized). Check discord.token "
    "(Developer Portal > your app > Bot > Reset Token)."
)
SHARD_HELP = (
    "Discord refused the shard settings (gateway close {code}). Check discord.shard_count "
    'and discord.shard_ids, or set discord.shard_count: "auto".'
)


class ReconnectLines(logging.Filter):
    """discord.py logs each try to reach the gateway again at ERROR, with a traceback:
    a screenful every few seconds of an outage the bot rides out by itself. Each is
    one WARNING line here, with what failed (the kind only: a message may hold a URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Attempting a reconnect"):
            record.msg = f"{record.msg}: {_gateway_failure(record.exc_info[1])}"
            relevel(record, logging.WARNING)
        return True


def _gateway_failure(exc: BaseException | None) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"Discord's gateway answered HTTP {exc.status}"
    if isinstance(exc, discord.ConnectionClosed):
        return f"Discord closed the gateway with {exc.code}"
    return f"Discord's gateway could not be reached ({type(exc).__name__})"


RECONNECT_LINES = ReconnectLines()


class Endpoints:
    """Discord's REST base and gateway URL.

    discord.py keeps both as class attributes (`Route.BASE`,
    `DiscordWebSocket.DEFAULT_GATEWAY`) used by every request, interaction
    callbacks included, so they are set for the process while a platform
    runs. One process talks to one Discord endpoint.
    """

    defaults = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    holders = 0
    current: tuple[str, str | None] | None = None

    @classmethod
    def acquire(cls, api_url: str, gateway_url: str | None) -> None:
        wanted = (api_url, gateway_url)
        if cls.holders and cls.current != wanted:
            raise PlatformError(
                "Another Discord connection in this process uses a different "
                "discord.api_url or discord.gateway_url; run one per process."
            )
        cls.holders += 1
        cls.current = wanted
        Route.BASE = api_url
        DiscordWebSocket.DEFAULT_GATEWAY = (
            yarl.URL(gateway_url) if gateway_url else cls.defaults[1]
        )

    @classmethod
    def release(cls) -> None:
        cls.holders = max(0, cls.holders - 1)
        if cls.holders == 0:
            cls.current = None
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = cls.defaults


_KNOWN = (discord.DiscordException, OSError, aiohttp.ClientError, asyncio.TimeoutError)


def start_error(exc: BaseException, where: str, setting: str) -> PlatformError:
    """What went wrong at start-up, in words an admin can act on.

    `where` is the endpoint that was being reached and `setting` its config key.
    """
    # discord.py can fail while handling a failure (a first gateway connection
    # that never opened); the error that started it is the one to report.
    while not isinstance(exc, _KNOWN) and exc.__context__ is not None:
        exc = exc.__context__
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return PlatformError(INTENT_HELP)
    if isinstance(exc, discord.LoginFailure):
        return PlatformError(TOKEN_HELP)
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == 4004:
            return PlatformError(TOKEN_HELP)
        if exc.code in (4010, 4011):
            return PlatformError(SHARD_HELP.format(code=exc.code))
        return PlatformError(f"Discord closed the gateway with code {exc.code} at start-up.")
    if isinstance(exc, discord.GatewayNotFound):
        return PlatformError("Discord did not give a gateway address; try again shortly.")
    refused = proxy_said(exc)
    if refused is not None:  # not Discord refusing the token: it was never sent on
        return PlatformError(f"Cannot reach Discord at {where}: {refused}.")
    if isinstance(exc, discord.HTTPException):
        return platform_error("log in", exc)
    if isinstance(exc, OSError | aiohttp.ClientError | asyncio.TimeoutError):
        return PlatformError(
            f"Cannot reach Discord at {where} ({exc.__class__.__name__}); "
            f"check {setting} and the network."
        )
    return PlatformError(f"The Discord connection failed at start-up ({exc.__class__.__name__}).")


def report_ready(
    client: discord.Client, options: DiscordOptions, route_channels: Mapping[str, str]
) -> None:
    """Say who the bot is and in how many servers, once connected; warn where it can
    answer nowhere (no server) and of each channel id of the routes that matches no
    message (a category's, or one the bot cannot see): the bot is silent there, and
    would look as if it ignored people. Only discord.py's cache is read."""
    # A process running some of the shards sees only their servers.
    all_shards = options.shard_ids is None or len(options.shard_ids) == options.shard_count
    me, guilds = client.user, client.guilds
    application = client.application_id or (me.id if me is not None else 0)
    log.info("connected to Discord as %s (application %s), in %d server(s)",
             me, application, len(guilds), extra={"platform": "discord"})
    if not guilds:
        if all_shards:
            log.warning("the bot is in no Discord server, so nobody there can ask it "
                        "anything; invite it with %s", invite_url(application),
                        extra={"platform": "discord"})
        return
    # A server not loaded yet (one of many still streaming in) hides its channels.
    everything_seen = all_shards and not any(g.unavailable for g in guilds)
    for raw, where in route_channels.items():
        if not raw.isdigit():
            continue  # another platform's channel (an `any` route's)
        channel = client.get_channel(int(raw))
        if isinstance(channel, discord.CategoryChannel):
            log.warning("%s: %s is the category %r, whose id matches no message; list "
                        "the ids of its channels instead", where, raw, channel.name,
                        extra={"platform": "discord", "channel": raw})
        elif channel is None and everything_seen:
            log.warning("%s: %s is no channel or active thread the bot can see in its "
                        "%d server(s), and matches no message; check the id (Copy "
                        "Channel ID) and that the bot was invited to its server",
                        where, raw, len(guilds), extra={"platform": "discord", "channel": raw})
        elif isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            bot = channel.guild.me
            if bot is not None and not channel.permissions_for(bot).view_channel:
                log.warning("%s: the bot lacks View Channels in channel %s (#%s), and "
                            "reads nothing there", where, raw, channel.name,
                            extra={"platform": "discord", "channel": raw})
