"""Who sees a Slack channel: the whole workspace, or only its members.

A message event says (`channel_type`); an `app_mention` event and a slash
command do not, and a private channel's id may start with C like a public
one's. What events said is remembered, and a channel no event has told of yet
is looked up once (`conversations.info`). Where neither tells, the channel
counts as private: a conversation kept to one place leaks nothing, one shared
with public channels might.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slack_sdk.web.async_client import AsyncWebClient

from bridge.errors import PlatformError
from bridge.interfaces import Audience

from .target import guard

log = logging.getLogger("chat_bridge.slack")

# Slack's channel types seen only by a place's members.
PRIVATE_KINDS = frozenset({"group", "mpim"})
_KINDS = frozenset({"channel", "im", *PRIVATE_KINDS})
# Seconds a channel Slack would not describe counts as private before it is asked
# again (an app without the scopes would otherwise make a refused call a question).
UNTOLD_SECONDS = 600.0


class ChannelKinds:
    """Each channel's type, as events told it or Slack answered it."""

    def __init__(
        self, client: AsyncWebClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._clock = clock
        self._kinds: dict[str, str] = {}
        self._untold: dict[str, float] = {}  # channel: until when it is not asked about
        self._warned = False

    def learn(self, channel: str, kind: object) -> None:
        """Remember what an event said (the newest wins: a channel made private)."""
        if isinstance(kind, str) and kind in _KINDS:
            self._kinds[channel] = kind

    def known(self, channel: str) -> Audience | None:
        kind = self._kinds.get(channel)
        return None if kind is None else _audience(kind)

    async def audience(self, channel: str) -> Audience:
        """Who sees `channel`: "channel" (the workspace) or "members"."""
        found = self.known(channel)
        if found is not None:
            return found
        if self._untold.get(channel, 0.0) > self._clock():
            return "members"
        try:
            answer = await guard(
                "conversations.info", self._client.conversations_info(channel=channel)
            )
        except PlatformError as exc:
            (log.debug if self._warned else log.warning)(
                "slack: could not tell whether channel %s is private (%s); its "
                "conversation is kept to it. Add the scopes channels:read, "
                "groups:read and mpim:read to the app (see slack-app-manifest.yaml)",
                channel, exc,
            )
            self._warned = True
            if len(self._untold) >= 10_000:
                self._untold.clear()
            self._untold[channel] = self._clock() + UNTOLD_SECONDS
            return "members"
        info = answer.get("channel") or {}
        if info.get("is_im"):
            kind = "im"
        elif info.get("is_mpim"):
            kind = "mpim"
        else:
            kind = "group" if info.get("is_private") else "channel"
        self._kinds[channel] = kind
        return _audience(kind)


def _audience(kind: str) -> Audience:
    return "members" if kind in PRIVATE_KINDS else "channel"
