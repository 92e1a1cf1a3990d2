"""Discord at start-up: the endpoints discord.py talks to, what went wrong in words
an admin can act on, what comes while it connects, and, once connected, who the bot
is and where it can answer."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.platforms.discord.failures import platform_error, proxy_said
from adapters.platforms.discord.options import DiscordOptions
from adapters.platforms.discord.permissions import invite_url
from adapters.platforms.discord.targets import InteractionTarget
from bridge.errors import PlatformError, StartRefused
from bridge.interfaces import STOPPING_TEXT
from bridge.logs import relevel

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

# discord.py identifies a process's shards one after another, this far apart (Discord
# takes one IDENTIFY per 5 s): the start waits that long for each beyond the first.
IDENTIFY_SPACING = 5.0
# What may come in while the start waits for every shard and server (questions held,
# see `Early`); one past it is not answered (a command is told so).
EARLY_MAX = 1000
# How long a failed start spends telling the commands it held that they go unanswered.
EARLY_TELL_SECONDS = 2.0


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
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url) if gateway_url else cls.defaults[1]

    @classmethod
    def release(cls) -> None:
        cls.holders = max(0, cls.holders - 1)
        if cls.holders == 0:
            cls.current = None
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = cls.defaults


_KNOWN = (discord.DiscordException, OSError, aiohttp.ClientError, asyncio.TimeoutError)


def start_error(exc: BaseException, where: str, setting: str) -> PlatformError:
    """What went wrong at start-up, in words an admin can act on: a StartRefused
    where Discord refused the token or the settings (trying again cannot help).

    `where` is the endpoint that was being reached and `setting` its config key.
    """
    # discord.py can fail while handling a failure (a first gateway connection
    # that never opened); the error that started it is the one to report.
    while not isinstance(exc, _KNOWN) and exc.__context__ is not None:
        exc = exc.__context__
    if (closed := _refused(exc)) is not None:
        return StartRefused(closed[1], closed[0])
    if isinstance(exc, discord.LoginFailure):
        return StartRefused(TOKEN_HELP, "bot token refused")
    if isinstance(exc, discord.ConnectionClosed):
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


def _refused(exc: BaseException) -> tuple[str, str] | None:
    """What Discord refused, where it closed the gateway for it (never to be tried
    again): in a word or two (for /healthz), and in words an admin can act on."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return "intent not enabled", INTENT_HELP
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == 4004:
            return "bot token refused", TOKEN_HELP
        if exc.code in (4010, 4011):
            return "shard settings refused", SHARD_HELP.format(code=exc.code)
    return None


def ended(exc: BaseException) -> str:
    """Why discord.py gave the gateway up after start-up, in a word or two for /healthz."""
    if (refused := _refused(exc)) is not None:
        return refused[0]
    if isinstance(exc, discord.ConnectionClosed):
        return f"gateway closed ({exc.code})"
    return "connection ended"


async def wait_ready(
    runner: asyncio.Task[None],
    ready: asyncio.Event,
    client: discord.Client,
    connect_timeout: float,
    spacing: float,
) -> tuple[BaseException | None, float]:
    """Wait for discord.py's `ready` (every shard and server in), or `runner`'s end;
    returns why the client stopped, if it did, and how long was waited at most:
    `connect_timeout`, and `spacing` for each shard beyond the first, as discord.py
    identifies them one after another (with "auto", known once Discord said how many)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    allowed = connect_timeout
    waiting = asyncio.create_task(ready.wait())
    try:
        while not (runner.done() or waiting.done()):
            allowed = connect_timeout + spacing * (shards_here(client) - 1)
            remaining = began + allowed - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(
                {runner, waiting}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
    finally:
        waiting.cancel()
    if runner.done() and not runner.cancelled():
        return runner.exception(), allowed
    return None, allowed


def not_started(
    client: discord.Client,
    options: DiscordOptions,
    failure: BaseException | None,
    waited: float,
    *,
    up: int,
    spacing: float,
) -> PlatformError:
    """Why the start failed: `failure`, the client's end, or else a time out after
    `waited` seconds: with shards still to log in (`up` of them did, `spacing` apart),
    too short a wait; else a gateway not reached."""
    logged_in = client.user is not None
    where, setting = options.api_url, "discord.api_url"
    if logged_in:
        where, setting = options.gateway_url or "Discord's gateway", "discord.gateway_url"
    if failure is not None:
        return start_error(failure, where, setting)
    shards = shards_here(client)
    if logged_in and 1 < shards and up < shards:
        return PlatformError(
            f"Discord did not finish connecting within {waited:g} s: {shards - up} of the "
            f"{shards} shards this process runs had not logged in yet (they log in "
            f"{spacing:g} s apart); raise discord.connect_timeout (now "
            f"{options.connect_timeout:g} s)."
        )
    return PlatformError(
        f"Discord did not finish connecting within {waited:g} s ({where}); check "
        f"{setting} and the network."
    )


def shards_here(client: discord.Client) -> int:
    """How many shards this process runs (as far as known: "auto" says once Discord has
    told discord.py how many)."""
    if not isinstance(client, discord.AutoShardedClient):
        return 1
    if client.shard_ids is not None:
        return len(client.shard_ids)
    return client.shard_count or 1


HandOn = Callable[[], Awaitable[None]]


class Early:
    """What comes in between a shard's READY and discord.py's `ready` (which waits for
    every shard's servers: `guild_ready_timeout`, and 5 s for each further shard), held
    in arrival order and handed on once the start is done. A start that fails hands
    nothing on: it would reach a core that is not running. Commands held were
    acknowledged ("thinking…"); they are told then to ask again."""

    def __init__(self, limit: int = EARLY_MAX) -> None:
        self._held: deque[tuple[HandOn, InteractionTarget | None]] = deque()
        self._limit = limit
        self._lost = 0

    def __len__(self) -> int:
        return len(self._held)

    @property
    def full(self) -> bool:
        return len(self._held) >= self._limit

    def hold(self, hand_on: HandOn, command: InteractionTarget | None = None) -> None:
        """Keep `hand_on` for later (a `command`'s past the limit too: it was
        acknowledged); a message past the limit is dropped, and said so once."""
        if command is None and self.full:
            self._lost += 1
            if self._lost == 1:
                log.warning(
                    "more than %d messages came while Discord was still "
                    "connecting: the later ones go unanswered",
                    self._limit,
                    extra={"platform": "discord"},
                )
            return
        self._held.append((hand_on, command))

    async def hand_on(self) -> None:
        """Hand on what is held, in order, until nothing is (more may come meanwhile)."""
        while self._held:
            hand_on, _ = self._held.popleft()
            await hand_on()

    async def drop(self) -> None:
        """The start failed (or was cut short): nothing is handed on; the commands held
        are told the bot is restarting, within a moment."""
        commands = [command for _, command in self._held if command is not None]
        self._held.clear()
        if not commands:
            return
        tasks = [asyncio.create_task(_tell_restarting(c)) for c in commands]
        _, late = await asyncio.wait(tasks, timeout=EARLY_TELL_SECONDS)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


async def _tell_restarting(target: InteractionTarget) -> None:
    try:
        await target.notice(STOPPING_TEXT)
    except PlatformError as exc:
        log.warning(
            "could not tell a command taken during a failed start that it is not answered: %s",
            exc,
            extra={"platform": "discord"},
        )


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
    log.info(
        "connected to Discord as %s (application %s), in %d server(s)",
        me,
        application,
        len(guilds),
        extra={"platform": "discord"},
    )
    if not guilds:
        if all_shards:
            log.warning(
                "the bot is in no Discord server, so nobody there can ask it "
                "anything; invite it with %s",
                invite_url(application),
                extra={"platform": "discord"},
            )
        return
    # A server not loaded yet (one of many still streaming in) hides its channels.
    everything_seen = all_shards and not any(g.unavailable for g in guilds)
    for raw, where in route_channels.items():
        if not raw.isdigit():
            continue  # another platform's channel (an `any` route's)
        channel = client.get_channel(int(raw))
        if isinstance(channel, discord.CategoryChannel):
            log.warning(
                "%s: %s is the category %r, whose id matches no message; list "
                "the ids of its channels instead",
                where,
                raw,
                channel.name,
                extra={"platform": "discord", "channel": raw},
            )
        elif channel is None and everything_seen:
            log.warning(
                "%s: %s is no channel or active thread the bot can see in its "
                "%d server(s), and matches no message; check the id (Copy "
                "Channel ID) and that the bot was invited to its server",
                where,
                raw,
                len(guilds),
                extra={"platform": "discord", "channel": raw},
            )
        elif isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            bot = channel.guild.me
            if bot is not None and not channel.permissions_for(bot).view_channel:
                log.warning(
                    "%s: the bot lacks View Channels in channel %s (#%s), and reads nothing there",
                    where,
                    raw,
                    channel.name,
                    extra={"platform": "discord", "channel": raw},
                )
