"""The Discord platform: discord.py's gateway client, translated to `Inbound` and targets.

Every message the bot can see is delivered, normalized (by `inbound`), and again a
recent one edited to mention the bot (with its own id as event id); the core routes it.
`Inbound.workspace` is the guild id, or "@dm" for direct messages; in a
thread, `channel` is the parent channel and `thread` the thread's id. A post
in a forum (or media) channel is such a thread: its first message's text is
the post's title, then the message.
Slash commands `/ask` and `/reset` arrive as `Inbound.command`.

Messages and commands that come while the start waits for every shard and server
are held, and delivered once it is done (`startup.Early`). Once a stop begins, a slash
command is told the bot is restarting, and messages are still delivered until the
platform closes: Discord never delivers one again, so the core tells a question among
them to ask again (`ReplyTarget.redelivered`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any

import discord
from discord import app_commands

from adapters.platforms import never_below_info
from adapters.platforms.discord.commands import (
    GIVE_UP_AFTER,
    UNANSWERED_AFTER,
    add_commands,
    close_unanswered,
    command_inbound,
    give_up,
    sync_commands,
)
from adapters.platforms.discord.failures import FAILURES, platform_error
from adapters.platforms.discord.inbound import EDIT_WINDOW, MessageEvents
from adapters.platforms.discord.indicator import Typist, renewals_per_second
from adapters.platforms.discord.options import DiscordOptions
from adapters.platforms.discord.permissions import Said
from adapters.platforms.discord.places import Channel, place_of, resolved
from adapters.platforms.discord.questions import Questions
from adapters.platforms.discord.ratelimits import COUNTED_LOGGERS, RateLimitLines
from adapters.platforms.discord.readable import place_ids
from adapters.platforms.discord.startup import (
    IDENTIFY_SPACING,
    RECONNECT_LINES,
    Early,
    Endpoints,
    ended,
    not_started,
    report_ready,
    start_error,
    wait_ready,
)
from adapters.platforms.discord.targets import DM_WORKSPACE, ChannelTarget, InteractionTarget
from bridge.errors import PlatformError
from bridge.interfaces import (
    STOPPING_TEXT,
    Address,
    Handler,
    Inbound,
    Platform,
    PlatformContext,
    ReplyTarget,
)
from bridge.proxies import env_proxy

log = logging.getLogger("chat_bridge.discord")


class DiscordPlatform(Platform):
    """Discord through discord.py: gateway events in, REST replies out."""

    name = "discord"
    Options = DiscordOptions
    redelivers_within = EDIT_WINDOW

    @property
    def reset_command(self) -> str:
        return "/reset"

    def __init__(self, ctx: PlatformContext) -> None:
        super().__init__(ctx)
        self.options: DiscordOptions = ctx.options
        never_below_info("discord.gateway", "discord.http")  # payloads, request bodies
        for name in ("discord.client", "discord.shard"):
            logging.getLogger(name).addFilter(RECONNECT_LINES)  # (once: filters are a set)
        self.client: discord.Client | None = None
        self._handler: Handler | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # Shards (0 for a client that is not sharded) whose gateway is down:
        # discord.py stays "ready" while it reconnects.
        self._down: set[int] = set()
        self._logged_in: set[int] = set()  # shards that have been up (READY)
        self._ended: str | None = None  # why the gateway was given up after start-up
        self._receiving = False  # questions taken (once started, until the stop begins)
        # While starting: what comes, held until the start is done (None otherwise).
        self._early: Early | None = None
        self._stopping = False  # a stop began: messages delivered still, to be told so
        self._endpoints_held = False
        # Questions being answered (or waiting): one deleted meanwhile, or whose
        # channel or thread is, stops its answer.
        self._questions = Questions()
        self.messages = MessageEvents(self)
        self._said = Said()  # what was logged of which places (once each)
        # Every place's typing renewals, within what the replies leave of Discord's limit.
        self._typist = Typist(renewals_per_second(self.options.global_rate.rate()))
        self._watchdogs: set[asyncio.Task[None]] = set()
        self._rate_limits: RateLimitLines | None = None
        self.unanswered_after = UNANSWERED_AFTER
        self.give_up_after = GIVE_UP_AFTER
        self.identify_spacing = IDENTIFY_SPACING  # tests shorten it
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def _build_client(self) -> discord.Client:
        opts = self.options
        # The bot never joins voice: discord.py's warnings at start-up that its
        # voice libraries are missing would only worry an admin reading the log.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = opts.message_content
        kwargs: dict[str, Any] = {
            "intents": intents,
            "allowed_mentions": discord.AllowedMentions.none(),
            "max_messages": None,
            "chunk_guilds_at_startup": False,
            "guild_ready_timeout": opts.guild_ready_timeout,
            # REST and the gateway, through the proxy the environment names, as the
            # chat APIs' requests go (discord.py itself reads no proxy variable).
            "proxy": env_proxy(opts.api_url),
        }
        count, ids = opts.shard_count, opts.shard_ids
        client: discord.Client
        if count == "auto":
            client = discord.AutoShardedClient(**kwargs)
        elif count is None:
            client = discord.Client(**kwargs)
        elif ids is not None and len(ids) == 1:
            client = discord.Client(shard_id=ids[0], shard_count=count, **kwargs)
        elif ids is None and count == 1:
            client = discord.Client(shard_id=0, shard_count=1, **kwargs)
        elif ids is None:
            client = discord.AutoShardedClient(shard_count=count, **kwargs)
        else:
            client = discord.AutoShardedClient(shard_ids=ids, shard_count=count, **kwargs)

        tree = app_commands.CommandTree(client)
        add_commands(tree, self._on_command)
        platform = self

        async def setup_hook() -> None:
            if opts.sync_commands:  # beside the start, which it would hold up
                platform._watch(sync_commands(tree))

        # discord.py's own wait between two IDENTIFYs, as long as the start allows for.
        async def before_identify_hook(shard_id: int | None, *, initial: bool = False) -> None:
            if not initial:
                await asyncio.sleep(platform.identify_spacing)

        async def on_ready() -> None:
            platform._ready.set()

        # Up at READY or RESUMED, down at a drop; per shard where sharded (discord.py
        # sends `ready` only when every shard is, not when one logs in again).
        async def on_shard_up(shard_id: int = 0) -> None:
            platform._down.discard(shard_id)
            platform._logged_in.add(shard_id)

        async def on_shard_down(shard_id: int = 0) -> None:
            platform._down.add(shard_id)

        async def on_message(message: discord.Message) -> None:
            await platform.messages.on_message(message)

        async def on_raw_message_edit(event: discord.RawMessageUpdateEvent) -> None:
            await platform.messages.on_edit(event)

        async def on_raw_message_delete(event: discord.RawMessageDeleteEvent) -> None:
            platform.messages.on_delete([event.message_id], event.channel_id, event.guild_id)

        async def on_raw_bulk_message_delete(event: discord.RawBulkMessageDeleteEvent) -> None:
            platform.messages.on_delete(event.message_ids, event.channel_id, event.guild_id)

        # Discord sends no MESSAGE_DELETE for the messages of a deleted thread or channel.
        async def on_raw_thread_delete(event: discord.RawThreadDeleteEvent) -> None:
            platform._questions.place_gone(event.thread_id)

        async def on_guild_channel_delete(channel: discord.abc.GuildChannel) -> None:
            platform._questions.place_gone(channel.id)

        # Kicked, or the server deleted (not an outage: discord.py says nothing then).
        async def on_guild_remove(guild: discord.Guild) -> None:
            places = {guild.id, *(c.id for c in guild.channels), *(t.id for t in guild.threads)}
            platform._questions.server_left(guild.id, places)

        client.setup_hook = setup_hook  # type: ignore[method-assign]
        client.before_identify_hook = before_identify_hook  # type: ignore[method-assign]
        client.on_ready = on_ready  # type: ignore[attr-defined]
        sharded = isinstance(client, discord.AutoShardedClient)
        prefix = "on_shard_" if sharded else "on_"
        setattr(client, f"{prefix}connect", on_shard_up)
        setattr(client, f"{prefix}resumed", on_shard_up)
        setattr(client, f"{prefix}disconnect", on_shard_down)
        client.on_message = on_message  # type: ignore[attr-defined]
        client.on_raw_message_edit = on_raw_message_edit  # type: ignore[attr-defined]
        client.on_guild_remove = on_guild_remove  # type: ignore[attr-defined]
        client.on_raw_message_delete = on_raw_message_delete  # type: ignore[attr-defined]
        client.on_raw_bulk_message_delete = on_raw_bulk_message_delete  # type: ignore[attr-defined]
        client.on_raw_thread_delete = on_raw_thread_delete  # type: ignore[attr-defined]
        client.on_guild_channel_delete = on_guild_channel_delete  # type: ignore[attr-defined]
        return client

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._rate_limits = RateLimitLines(self.ctx.on_rate_limited)
        for name in COUNTED_LOGGERS:
            counted = logging.getLogger(name)
            counted.addFilter(self._rate_limits)
            if self.ctx.on_rate_limited is not None and not counted.isEnabledFor(logging.WARNING):
                # Made whatever the log level: the console's handler still drops
                # what is below the configured level.
                counted.setLevel(logging.WARNING)
        Endpoints.acquire(self.options.api_url, self.options.gateway_url)
        self._endpoints_held = True
        self._early = early = Early()
        try:
            self.client = client = self._build_client()
            token = self.options.token.get_secret_value()
            self._runner = runner = asyncio.create_task(self._run(client, token), name="discord")
            failure, waited = await wait_ready(
                runner, self._ready, client, self.options.connect_timeout, self.identify_spacing
            )
            if self._ready.is_set() and self.client is not None:
                report_ready(self.client, self.options, self.ctx.route_channels)
                # In arrival order, and those coming meanwhile after them.
                await early.hand_on()
                self._early = None
                self._receiving = not (self._stopping or self._closing)
                return
        except BaseException:
            await self.aclose()
            raise
        error = not_started(
            client,
            self.options,
            failure,
            waited,
            up=len(self._logged_in),
            spacing=self.identify_spacing,
        )
        await self.aclose()
        raise error from failure

    async def _run(self, client: discord.Client, token: str) -> None:
        try:
            await client.start(token, reconnect=True)
        except Exception as exc:
            if self._ready.is_set():
                # Lost after start-up: the health check reports it; say why here.
                where = self.options.gateway_url or "Discord's gateway"
                error = start_error(exc, where, "discord.gateway_url")
                log.error("Discord connection ended: %s", error)
                self._ended = ended(exc)
            raise

    async def stop_receiving(self) -> None:
        """Stop taking new questions (replies in progress can still be sent): a command
        is told the bot is restarting; a message is delivered still, until the platform
        closes, for the core to tell a question among them so."""
        self._stopping = True
        self._receiving = False

    async def aclose(self) -> None:
        self._receiving = False
        self._closing = True  # no new watchdogs
        early, self._early = self._early, None
        if early is not None:  # closed while starting: nothing held is handed on
            await early.drop()
        rate_limits, self._rate_limits = self._rate_limits, None
        if rate_limits is not None:
            for name in COUNTED_LOGGERS:
                logging.getLogger(name).removeFilter(rate_limits)
            rate_limits.close()
        for task in list(self._watchdogs):
            task.cancel()
        if self._watchdogs:
            await asyncio.wait(self._watchdogs)
        client, self.client = self.client, None
        if client is not None:
            await client.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            if not runner.done():
                runner.cancel()
            await asyncio.wait([runner])
            if not runner.cancelled():
                runner.exception()  # retrieved, so asyncio does not log it again
        if self._endpoints_held:
            self._endpoints_held = False
            Endpoints.release()

    @property
    def connected(self) -> bool:
        client = self.client
        return (
            client is not None
            and client.is_ready()
            and not self._down
            and not client.is_closed()
            and self._runner is not None
            and not self._runner.done()
        )

    @property
    def problem(self) -> str | None:
        return self._ended or super().problem

    def target(self, address: Address) -> ReplyTarget:
        if self.client is None:
            raise PlatformError("The Discord platform is not started.")
        return ChannelTarget(self.client, self.options, address, typist=self._typist)

    # ------------------------------------------------------------------ messages

    async def _deliver(self, inbound: Inbound, target: ReplyTarget) -> None:
        if self._early is not None:  # still starting
            self._early.hold(partial(self._give, inbound, target))
        elif self._receiving or self._stopping:  # (else the start failed meanwhile)
            await self._give(inbound, target)

    async def _give(self, inbound: Inbound, target: ReplyTarget) -> None:
        assert self._handler is not None
        try:
            await self._handler(inbound, target)
        except Exception:
            log.exception(
                "the bridge failed to take a Discord message",
                extra={"platform": "discord", "channel": inbound.channel},
            )

    # ------------------------------------------------------------------ commands

    async def _on_command(self, interaction: discord.Interaction, command: str, text: str) -> None:
        early = self._early
        if not (self._receiving or (early is not None and not early.full)):
            try:
                await interaction.response.send_message(STOPPING_TEXT, ephemeral=True)
            except FAILURES as exc:  # as a command taken: a line, not discord.py's traceback
                log.warning(
                    "could not tell /%s that the bot is stopping: %s",
                    command,
                    platform_error("answer the command", exc),
                )
            return
        guild_id = interaction.guild_id
        workspace = str(guild_id) if guild_id is not None else DM_WORKSPACE
        ephemeral = command == "reset" or self.options.ask_ephemeral
        address = Address("discord", workspace, str(interaction.channel_id), None)
        # Discord's clock: the command's id says when it was run.
        give_up_at = interaction.created_at.timestamp() + self.give_up_after
        target = InteractionTarget(
            interaction,
            self.options,
            address,
            ephemeral=ephemeral,
            # A /reset is quick once its turn comes, and is not to be asked again.
            give_up_at=give_up_at if command == "ask" else None,
        )
        # First: Discord wants an answer within 3 s. Its request starts now, while the
        # place is read; the command is handed on once Discord took it (handed on
        # before, one whose acknowledgement failed or hung held a stream slot, was
        # asked of the chat API, or reset a conversation its asker saw fail).
        acknowledged = target.acknowledge_soon()
        channel: Channel | discord.Object | None = interaction.channel
        if channel is None:
            channel = discord.Object(interaction.channel_id or 0)
        channel = await resolved(self.client, channel, guild_id)
        channel_id, thread_id, audience, _ = place_of(channel, guild_id)
        if self.options.ask_ephemeral and command == "ask":
            # Answered to the asker only: their own conversation (/reset resets it too).
            audience = "asker"
        target.address = Address("discord", workspace, channel_id, thread_id)
        inbound = command_inbound(
            interaction, command, text, workspace, (channel_id, thread_id), audience
        )
        # Deleted with the channel or thread it was asked in, as a message is.
        target.question.places = place_ids((channel_id, thread_id))
        self._questions.add(interaction.id, target.question)
        try:
            await asyncio.shield(acknowledged)
        except PlatformError as exc:
            log.warning("could not take /%s: %s", command, exc)
            return
        if self._early is not None:  # still starting: handed on once started
            self._early.hold(partial(self._hand_on, inbound, target), command=target)
        elif self._receiving or self._stopping:  # (else the start failed meanwhile)
            await self._hand_on(inbound, target)

    async def _hand_on(self, inbound: Inbound, target: InteractionTarget) -> None:
        """Deliver an acknowledged command, and keep its "thinking…" from hanging."""
        await self._give(inbound, target)
        # From here on "thinking…" shows: whatever happens next, it must not hang.
        self._watch(close_unanswered(target, self.unanswered_after))
        if target.give_up_at is not None and not target.begun:
            # A timer, not a task: most answers begin long before it, and cancel it.
            target.timer = asyncio.get_running_loop().call_later(
                max(0.0, target.give_up_at - time.time()), self._too_late, target
            )

    def _watch(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task of the platform's, a command's watchdog or a deletion
        told to the core (cancelled when the platform closes)."""
        watchdog = asyncio.create_task(coro)
        self._watchdogs.add(watchdog)
        watchdog.add_done_callback(self._watchdogs.discard)

    def _too_late(self, target: InteractionTarget) -> None:
        if not self._closing:
            self._watch(give_up(target))
