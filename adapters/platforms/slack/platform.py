"""The Slack platform: slack-bolt's AsyncApp over Socket Mode or the daemon's HTTP listener.

Every message the app sees is normalized into an `Inbound` (`inbound` reads
message events, `commands` slash commands) and handed to the core, which decides
whether to answer. This module starts and stops the app and routes Slack's events
to what reads them: Slack events and slash commands in, a `SlackTarget` to answer
on out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult

from bridge.budget import Budgets
from bridge.errors import PlatformError, StartRefused
from bridge.flag import Flag
from bridge.interfaces import (
    STOPPING_TEXT,
    THINKING_TEXT,
    Address,
    Handler,
    Inbound,
    Platform,
    PlatformContext,
)
from bridge.proxies import env_proxy

from .app_token import SocketURLs, refused_text, said_by_slack
from .clients import BOLT_LOG, web_clients
from .closed import ClosedChannels
from .commands import read_command
from .events import ext_shared, workspace_of
from .http_mode import EventsEndpoint
from .inbound import EDIT_WINDOW, MessageEvents, Stopping
from .late import LateEdits
from .lockout import TokenGate
from .lost import Posted
from .options import SlackOptions
from .places import ChannelKinds
from .reactions import ThinkingReactions
from .refusal import SlackRefused, guard
from .stops import StreamStops
from .target import SlackTarget

log = logging.getLogger("chat_bridge.slack")

# Seconds an event's acknowledgement waits at most for the bridge to take its message
# (claim it and record it): acknowledged before, it would be lost in a crash (Slack
# does not deliver it again); Slack wants the acknowledgement within 3 s.
TAKEN_WITHIN = 2.0

# Seconds a command waits at most for Slack to say who sees its channel (acknowledged
# already: Slack's 3 s do not run).
COMMAND_LOOKUP = 2.0

T = TypeVar("T")


class SlackPlatform(Platform):
    """Slack through slack-bolt: Socket Mode (app token) or HTTP events (signing secret)."""

    name: ClassVar[str] = "slack"
    Options: ClassVar[type[SlackOptions]] = SlackOptions
    redelivers_within: ClassVar[float] = EDIT_WINDOW

    @property
    def reset_command(self) -> str:
        return self.options.reset_command

    def __init__(self, ctx: PlatformContext) -> None:
        super().__init__(ctx)
        self.options: SlackOptions = ctx.options
        opts = self.options
        # The proxy the environment names, read as the chat APIs' is (slack-sdk's
        # own reading passes NO_PROXY by and takes `host:port` for a URL).
        self.proxy = env_proxy(opts.api_url)
        self.client, self.once, self.decor, self._bolt_client = web_clients(
            opts, self.proxy, ctx.on_rate_limited
        )
        self.reactions = ThinkingReactions(self.decor, opts.reaction_rate.rate())
        # Who sees a channel matters only to a route of `session: user`: without one,
        # Slack is not asked (nor are its scopes needed).
        self.kinds = ChannelKinds(self.client, self._spawn, enabled=ctx.per_user)
        self.native_ok = True
        # An empty one is Discord's to show nothing with: Slack posts no empty message.
        self.placeholder = opts.placeholder or ctx.thinking_text or THINKING_TEXT
        self.bot_user_id: str | None = None
        self.bot_name: str | None = None  # its user name: a mention within a question
        self.bot_id: str | None = None
        self.team_id: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handler: Handler | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._urls: SocketURLs | None = None  # Socket Mode's URLs, while it runs
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.gate = TokenGate(lambda: guard("auth.test", self.client.auth_test()))
        self.closed = ClosedChannels()
        self.posted = Posted()  # to tell a message whose answer was lost from the others
        self.stops = StreamStops(opts.stream_rate.rate(), self.client)
        # Replies' texts shown again over an edit Slack may make late.
        self.late = LateEdits(self.client, ctx.budgets or Budgets(), self.gate.lock_out)
        self.messages = MessageEvents(self)

        secret = opts.signing_secret.get_secret_value() if opts.signing_secret else ""
        self.app = AsyncApp(
            name="chat-bridge",
            client=self._bolt_client,
            # Who the bot is comes from start()'s auth.test. Left to itself, bolt asks
            # auth.test again at the first event, and a failure of that call acked the
            # event with an apology and dropped it (Slack does not redeliver it).
            authorize=self._authorizer(),
            signing_secret=secret,
            logger=BOLT_LOG,
            # Listeners only hand the work off, so they finish before the ack.
            process_before_response=True,
            # HTTP mode: `EventsEndpoint` checks the signature and its age before bolt
            # sees the request; Socket Mode needs none.
            request_verification_enabled=False,
        )
        self.app.event("app_mention")(self._on_app_mention)
        self.app.event("message")(self._on_message)
        # Where the app subscribes to it (with channels:read and groups:read), it says
        # at once that the bot was invited to a channel it could not post in. (bolt
        # drops the bot's own channel_join message.)
        self.app.event("member_joined_channel")(self._on_member_joined)
        self.app.command(opts.reset_command)(self._on_command)
        # Acknowledge any other event the app is subscribed to, rather than 404.
        self.app.event(re.compile(".*"))(self._on_other)
        self.app.error(self._on_listener_error)

        if not opts.socket_mode:
            if ctx.http is None:
                raise PlatformError(
                    "Slack HTTP mode (slack.signing_secret) needs the HTTP listener; "
                    "set http.listen, or use Socket Mode with slack.app_token"
                )
            endpoint = EventsEndpoint(secret, self.app, lambda: self._handler is not None)
            self._http_events = endpoint.handle
            ctx.http.add_route("POST", opts.events_path, self._http_events)

    # ------------------------------------------------------------------ lifecycle

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cap on connections: aiohttp's default (100) would queue every live
            # reply's edits behind each other, first ones included.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                connector=aiohttp.TCPConnector(limit=0),
            )
            self.client.session = self._session
            self.once.session = self._session
            self.decor.session = self._session
            self._bolt_client.session = self._session
        return self._session

    async def start(self, handler: Handler) -> None:
        try:
            await self._start(handler)
        except BaseException:
            # The daemon closes only what started; leave nothing open behind.
            await self.aclose()
            raise

    async def _start(self, handler: Handler) -> None:
        _ = self.session
        try:
            auth = await guard("auth.test", self.client.auth_test())
        except SlackRefused as exc:
            text = (
                f"Slack refused the bot token ({exc.error}); check slack.bot_token "
                "(the Bot User OAuth Token, xoxb-…) and that the app is installed"
            )
            if said_by_slack(exc):
                raise StartRefused(text, "bot token refused") from exc
            raise PlatformError(text) from exc  # a page in its place (a proxy's 408): a try
        self.bot_user_id = auth.get("user_id")
        self.bot_id = auth.get("bot_id")
        self.team_id = auth.get("team_id")
        self.bot_name = str(auth.get("user") or "") or None
        self.closed.bot_name = self.bot_name or self.closed.bot_name
        log.info("slack: signed in to team %s as %s", self.team_id, self.bot_user_id)
        self._handler = handler
        self.kinds.list_at_start()
        if self.options.socket_mode:
            await self._connect_socket()

    async def _connect_socket(self) -> None:
        assert self.options.app_token is not None
        app_token = self.options.app_token.get_secret_value()
        socket = AsyncSocketModeHandler(
            self.app,
            app_token=app_token,
            web_client=self.client,
            proxy=self.proxy,
            ping_interval=self.options.ping_interval,
        )
        socket.client.proxy = self.proxy  # None too: slack-sdk would read the environment
        self._socket = socket
        self._urls = urls = SocketURLs(self.client, app_token)
        # slack-sdk's own asking retried a refused token at every ping, forever, with
        # two raw ERROR lines a try; and turned an outage's page into an AttributeError,
        # out of the bridge's reach as a failure of Slack's.
        socket.client.issue_new_wss_url = urls.reopen  # type: ignore[method-assign]
        try:
            # Asked here, so a bad app token fails start() instead of being retried.
            socket.client.wss_uri = await urls.open()
        except SlackRefused as exc:
            await socket.close_async()
            text = refused_text(exc.error)
            if said_by_slack(exc):
                raise StartRefused(text, "app token refused") from exc
            raise PlatformError(text) from exc
        await socket.connect_async()

    async def stop_receiving(self) -> None:
        """Take no more events (the daemon is draining); Slack sends them elsewhere or retries."""
        self._handler = None
        if self._urls is not None:
            self._urls.close()
            self._urls = None
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None

    @property
    def connected(self) -> bool:
        if self._handler is None or self._closed:
            return False
        if self._socket is None:
            return True
        session = self._socket.client.current_session
        return session is not None and not session.closed

    @property
    def problem(self) -> str | None:
        if self._urls is not None and self._urls.refused is not None:
            return "app token refused"
        if self.gate.refused is not None and self.connected:
            return "bot token refused"
        return super().problem

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop_receiving()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.late.aclose()
        await self.stops.aclose()
        await self.reactions.aclose()  # the replies have ended: their reactions go
        await self.gate.aclose()
        if self._session is not None:
            await self._session.close()

    def target(self, address: Address) -> SlackTarget:
        if self._closed:  # (a start that failed, tried again with a platform made anew)
            raise PlatformError("The Slack platform is not started.")
        return SlackTarget(self, address)

    # ------------------------------------------------------------------ inbound

    def _authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        # A plain function: bolt passes it the arguments its signature names.
        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return AuthorizeResult(
                enterprise_id=enterprise_id,
                team_id=team_id or self.team_id,
                bot_user_id=self.bot_user_id,
                bot_id=self.bot_id,
                bot_token=self.options.bot_token.get_secret_value(),
            )

        return authorize

    async def _on_app_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        await self._taken(self.messages.deliver(body, event, mention=True))

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        await self._taken(self.messages.deliver(body, event, mention=False))

    async def _on_member_joined(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("user") == self.bot_user_id:
            channel = str(event.get("channel", ""))
            self.closed.opened(workspace_of(body, event, self.team_id), channel, joined=True)
            # Its channel_type is C for a public channel, G for a private one.
            self.kinds.learn(
                channel,
                {"C": "channel", "G": "group"}.get(str(event.get("channel_type", ""))),
                shared=ext_shared(body),
            )

    async def _on_other(self, body: dict[str, Any]) -> None:
        log.debug("slack: ignoring %s event", body.get("event", {}).get("type"))

    async def _on_listener_error(self, error: Exception) -> None:
        if isinstance(error, Stopping):
            log.debug("slack: stopping; an event is left for Slack to deliver again")
            return
        BOLT_LOG.error("slack: listener failed", exc_info=error)

    async def _taken(self, handing: asyncio.Task[Flag | None] | None) -> None:
        """Wait, for `TAKEN_WITHIN` at most, until the bridge has taken the message being
        handed over: bolt acknowledges the event once the listener returns. Not its
        answer: only its record."""
        if handing is None:
            return
        try:
            async with asyncio.timeout(TAKEN_WITHIN):
                # Shielded: the hand-over is not undone if the wait ends first.
                taken = await asyncio.shield(handing)
                if taken is not None:
                    await taken.wait()
        except TimeoutError:
            log.warning(
                "slack: an event is acknowledged before its message is recorded (not within "
                "%g s: a slow store, or many messages ahead of it in its place); a crash "
                "before it is would lose it",
                TAKEN_WITHIN,
            )

    async def _hand_over(self, inbound: Inbound, target: SlackTarget, handler: Handler) -> Flag:
        """Hand `inbound` over, saying who sees its channel: a private channel's or a
        group DM's conversation is kept to it (see `places`; nothing is awaited first,
        so questions are handed over in the order they came). Returns the handler's
        flag: set once the bridge has taken it."""
        if not inbound.is_dm and self.kinds.enabled:
            inbound = replace(inbound, audience=self.kinds.audience(inbound.channel))
        return await handler(inbound, target)

    async def _on_command(
        self, ack: Any, command: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        handler = self._handler
        if handler is None:
            raise Stopping  # not acked: Slack tells the user it failed, not silence
        await ack()  # acked, it is answered: the relay takes messages until its drain
        inbound, target = read_command(self, command, context.team_id)
        self._spawn(self._hand_over_command(inbound, target, handler))

    async def _hand_over_command(
        self, inbound: Inbound, target: SlackTarget, handler: Handler
    ) -> None:
        """Hand a command over once Slack has said who sees its channel (COMMAND_LOOKUP
        seconds at most): under `session: user`, a reset in a public channel not seen
        yet was told "Started a new conversation." and reset that channel's alone."""
        if not inbound.is_dm:
            await self.kinds.look_up_now(inbound.channel, COMMAND_LOOKUP)
            if self._handler is None:  # a stop began meanwhile: the asker is told so
                with contextlib.suppress(PlatformError):
                    await target.notice(STOPPING_TEXT)
                return
        await self._hand_over(inbound, target, handler)

    # ------------------------------------------------------------------ helpers

    def _spawn(self, work: Awaitable[T]) -> asyncio.Task[T | None]:
        task = asyncio.create_task(self._run(work), name="slack-inbound")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, work: Awaitable[T]) -> T | None:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("slack: handler failed")
            return None
