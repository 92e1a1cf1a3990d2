"""The fake Slack's channel histories: messages, their pings, and views of them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack.state import SlackState

_PING = re.compile(
    r"<!(channel|here|everyone)(?:\|[^>]*)?>|<!subteam\^[^>]+>|<@([UW][A-Z0-9]+)(?:\|[^>]*)?>"
)


_PLAIN_PING = re.compile(r"(?<![\w@])@(channel|here|everyone)\b")


def pings_in(text: str, *, plain: bool = True) -> list[str]:
    """What a message would notify: `<!here>` markup, and plain @here where Slack links names."""
    found = [m.group(0) for m in _PING.finditer(text)]
    if plain:
        found += [m.group(0) for m in _PLAIN_PING.finditer(text)]
    return found


@dataclass
class FakeMessage:
    """A message in a channel's history."""

    channel: str
    ts: str
    text: str
    user: str
    bot_id: str | None = None
    thread_ts: str | None = None
    markdown: bool = False
    streaming: bool = False
    versions: list[str] = field(default_factory=list)
    recipient_user_id: str | None = None
    # chat.postMessage's `metadata` (event_type, event_payload), listed only when asked
    metadata: dict[str, Any] | None = None

    @property
    def edits(self) -> int:
        return len(self.versions) - 1


class History(SlackState):
    """Every channel's messages, as a person would finally see them."""

    def channel_type(self, channel: str) -> str:
        if channel in self.channels:
            return self.channels[channel]
        return {"D": "im", "G": "group"}.get(channel[:1], "channel")

    def find(self, channel: str, ts: str) -> FakeMessage | None:
        for message in self.messages.get(channel, []):
            if message.ts == ts:
                return message
        return None

    def thread(self, channel: str, root: str) -> list[FakeMessage]:
        """The root message and its replies, oldest first."""
        return [m for m in self.messages.get(channel, []) if m.ts == root or m.thread_ts == root]

    def bot_replies(self, channel: str, root: str | None = None) -> list[FakeMessage]:
        """Messages the bot posted (in one thread, or anywhere in the channel)."""
        return [
            m
            for m in self.messages.get(channel, [])
            if m.user == self.bot_user_id and (root is None or m.thread_ts == root)
        ]

    def all_bot_messages(self) -> list[FakeMessage]:
        return [m for msgs in self.messages.values() for m in msgs if m.user == self.bot_user_id]

    def _next_ts(self) -> str:
        # Slack's ts is the message's time: seconds, then a sequence within them.
        self._ts_seconds = max(self._ts_seconds, int(time.time()))
        return f"{self._ts_seconds}.{next(self._ts):06d}"

    def _record_pings(self, message: FakeMessage, args: dict[str, Any]) -> None:
        link_names = str(args.get("link_names", "")).lower() in ("1", "true")
        linked = link_names or args.get("parse") == "full"
        for ping in pings_in(message.text, plain=linked or message.markdown):
            self.pings.append((message.channel, message.ts, ping))

    def bot_message(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        streaming: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> FakeMessage:
        """The bot posts `text` (or starts a stream) not through the client under test:
        another replica's answer. It joins the history, and is returned."""
        message = FakeMessage(
            channel,
            self._next_ts(),
            text,
            self.bot_user_id,
            self.bot_id,
            thread_ts,
            streaming,
            streaming,
            metadata=metadata,
        )
        message.versions.append(text)
        self.messages[channel].append(message)
        self._touch()
        return message
