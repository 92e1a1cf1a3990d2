"""Discord at start-up: the endpoints discord.py talks to, and what went wrong in words
an admin can act on."""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.platforms.discord.targets import platform_error
from bridge.errors import PlatformError

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
    if isinstance(exc, discord.HTTPException):
        return platform_error("log in", exc)
    if isinstance(exc, OSError | aiohttp.ClientError | asyncio.TimeoutError):
        return PlatformError(
            f"Cannot reach Discord at {where} ({exc.__class__.__name__}); "
            f"check {setting} and the network."
        )
    return PlatformError(f"The Discord connection failed at start-up ({exc.__class__.__name__}).")
