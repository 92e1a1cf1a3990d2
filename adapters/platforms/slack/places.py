"""Who sees a Slack channel: the whole workspace, or only its members.

A message event says (`channel_type`); an `app_mention` event and a slash
command do not, and a private channel's id may start with C like a public
one's. A channel shared with another organisation (Slack Connect) is read by
people outside the workspace, public as it may be in it: it counts as private.
Its events' `channel_type` does not say so; their body does
(`is_ext_shared_channel`), as Slack's description of it does. The channels the
bot is in are listed once at start (`users.conversations`), what events say is
remembered, and a channel still unknown is looked up (`conversations.info`) in
the background, once its mention's message event (which Slack sends with its
`app_mention`, often just after it) has had `MESSAGE_GRACE` seconds to say it.
A question is never held for a lookup (questions of a place would overtake each
other, and one taken just before a stop would be lost): until its channel is
known, it counts as private. A conversation kept to one place leaks nothing;
one shared with public channels might.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms.recent import Recent
from bridge.errors import PlatformError
from bridge.interfaces import Audience

from .refusal import NO_SCOPE, SlackRefused, guard

log = logging.getLogger("chat_bridge.slack")

# A channel shared with another organisation, or being shared (an invitation not
# yet accepted), whatever its type in this workspace.
SHARED = "shared"
# The channel types seen only by a place's members.
PRIVATE_KINDS = frozenset({"group", "mpim", SHARED})
# Slack's channel types, as an event says them.
_KINDS = frozenset({"channel", "im", "group", "mpim"})
# Seconds a channel Slack would not describe counts as private before it is asked
# again (an app without the scopes would otherwise make a refused call a question).
UNTOLD_SECONDS = 600.0
# Seconds an app_mention's channel waits for its message event to say its type
# before Slack is asked (a burst of mentions in new channels spent conversations.info's
# budget, about 50 a minute, on what the message events said anyway).
MESSAGE_GRACE = 2.0
# Pages of 200 channels listed at start at most (within MAX_KINDS, with room to learn).
LIST_PAGE = 200
LIST_PAGES = 50
# Channels whose type is remembered at most (about 150 bytes each), and channels
# Slack would not describe.
MAX_KINDS = 20_000
MAX_UNTOLD = 10_000


class ChannelKinds:
    """Each channel's type, as the listing at start, events or Slack's answers told it."""

    def __init__(
        self,
        client: AsyncWebClient,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        *,
        enabled: bool = True,
    ) -> None:
        self._client = client
        self._spawn = spawn  # the platform's: its lookups end with its other work
        # Off where no route reads who sees a place (no `session: user`): nothing is
        # learnt, listed or asked, and every channel is said to be the workspace's.
        self.enabled = enabled
        # DMs are not kept: they need no lookup.
        self._kinds: Recent[str, str] = Recent(MAX_KINDS)
        # channel: until when it is not asked about (Slack would not say)
        self._untold: Recent[str, float] = Recent(MAX_UNTOLD)
        # channels being looked up: what ends their wait for an event, and the lookup
        self._asking: dict[str, tuple[asyncio.Event, object]] = {}
        self._warned = False

    def learn(self, channel: str, kind: object, *, shared: bool = False) -> None:
        """Remember what an event said (the newest wins: a channel made private);
        `shared`: its body said the channel is shared with another organisation."""
        if not self.enabled:
            return
        if shared and kind != "im":
            self._keep(channel, SHARED)
        elif isinstance(kind, str) and kind in _KINDS:
            self._keep(channel, kind)

    def known(self, channel: str) -> Audience | None:
        kind = self._kinds.touch(channel)
        return None if kind is None else _audience(kind)

    def audience(self, channel: str) -> Audience:
        """Who sees `channel`: "channel" (the workspace) or "members". Not known yet,
        it is "members", and Slack is asked in the background for the next question."""
        if not self.enabled:
            return "channel"
        found = self.known(channel)
        if found is not None:
            return found
        if channel not in self._asking and (self._untold.get(channel) or 0.0) <= time.monotonic():
            self._ask(channel, now=False)
        return "members"

    async def look_up_now(self, channel: str, within: float) -> None:
        """Ask Slack who sees `channel` now, if it is not known yet, waiting `within`
        seconds at most (the lookup goes on after): for a command, which keeps no order
        among questions and whose reset must find the conversation it is for."""
        if not self.enabled or self.known(channel) is not None:
            return
        if channel in self._asking:  # asked already, or to be once its grace is over
            hurry, lookup = self._asking[channel]
            hurry.set()
        elif (self._untold.get(channel) or 0.0) > time.monotonic():
            return
        else:
            lookup = self._ask(channel, now=True)
        if isinstance(lookup, asyncio.Future):
            # Not waited for past `within`, nor once cut (the platform closing); a
            # cancel of the waiter goes on up.
            await asyncio.wait([lookup], timeout=within)

    def list_at_start(self) -> None:
        """List the channels the bot is in, in the background."""
        if self.enabled:
            self._spawn(self._list())

    async def _list(self) -> None:
        cursor = ""
        for _ in range(LIST_PAGES):
            try:
                answer = await guard(
                    "users.conversations",
                    self._client.users_conversations(
                        types="public_channel,private_channel,mpim",
                        exclude_archived=True,
                        limit=LIST_PAGE,
                        cursor=cursor or None,
                    ),
                )
            except PlatformError as exc:
                self._cannot_tell("the channels it is in", exc)
                return
            for info in answer.get("channels") or ():
                if isinstance(info, dict) and info.get("id"):
                    kind = _kind(info)
                    if kind == SHARED or str(info["id"]) not in self._kinds:
                        self._keep(str(info["id"]), kind)
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return
        log.warning(
            "slack: the bot is in more than %d channels; only the first %d were listed at "
            "start. The others are learnt from their messages and invitations, or asked "
            "about (conversations.info) when a question comes; until then a question "
            "there counts as private (under session: user, a conversation of that "
            "channel alone)",
            LIST_PAGE * LIST_PAGES,
            LIST_PAGE * LIST_PAGES,
        )

    def _ask(self, channel: str, *, now: bool) -> object:
        """Look `channel` up in the background; unless `now`, once `MESSAGE_GRACE` is
        over and no event has said its type meanwhile. Returns the lookup."""
        hurry = asyncio.Event()
        if now:
            hurry.set()
        lookup = self._spawn(self._look_up(channel, hurry))
        self._asking[channel] = (hurry, lookup)
        return lookup

    async def _look_up(self, channel: str, hurry: asyncio.Event) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MESSAGE_GRACE):
                    await hurry.wait()
            if self.known(channel) is not None:
                return  # its message event said it
            answer = await guard(
                "conversations.info", self._client.conversations_info(channel=channel)
            )
        except PlatformError as exc:
            scopes = self._cannot_tell(f"channel {channel}", exc)
            self._untold.put(channel, time.monotonic() + (UNTOLD_SECONDS if scopes else 60.0))
            return
        finally:
            self._asking.pop(channel, None)
        self._keep(channel, _kind(answer.get("channel") or {}))

    def _keep(self, channel: str, kind: str) -> None:
        if kind == "im":
            return
        # A channel known to be shared stays so: a later event's type ("channel")
        # does not say it no longer is, nor does one of a share not yet accepted.
        if kind == SHARED or self._kinds.get(channel) != SHARED:
            # The longest quiet are forgotten (looked up again if asked in).
            self._kinds.put(channel, kind)
        if (asking := self._asking.get(channel)) is not None:
            asking[0].set()  # a lookup waiting for an event: told, it asks nothing

    def _cannot_tell(self, what: str, exc: Exception) -> bool:
        """Log why Slack did not say; whether it is for the app's missing scopes."""
        if not (isinstance(exc, SlackRefused) and exc.error in NO_SCOPE):
            # Slack failing for now, say: a channel is asked about again in a minute.
            log.info(
                "slack: could not tell whether %s is private for now (%s); a "
                "channel not known to be public keeps its conversation to itself",
                what,
                exc,
            )
            return False
        (log.debug if self._warned else log.warning)(
            "slack: could not tell whether %s is private (%s); a channel not known "
            "to be public keeps its conversation to itself. Add the scopes "
            "channels:read, groups:read and mpim:read to the app (see "
            "slack-app-manifest.yaml)",
            what,
            exc,
        )
        self._warned = True
        return True


def _kind(info: dict[str, Any]) -> str:
    if info.get("is_im"):
        return "im"
    if info.get("is_mpim"):
        return "mpim"
    if info.get("is_ext_shared") or info.get("is_pending_ext_shared"):
        return SHARED
    return "group" if info.get("is_private") else "channel"


def _audience(kind: str) -> Audience:
    return "members" if kind in PRIVATE_KINDS else "channel"
