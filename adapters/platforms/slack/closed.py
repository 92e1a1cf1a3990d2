"""Channels the bot may not post in (not invited, archived, posting restricted): their
questions are not sent to the chat API, whose answer nobody would see, for a while."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from adapters.platforms.recent import Recent

log = logging.getLogger("chat_bridge.slack")

# Seconds a channel's questions go unanswered after Slack refused the bot a post
# there; the next question after them tries again.
CLOSED_SECONDS = 600.0
# Channels remembered at most (the oldest are forgotten first).
MAX_CLOSED = 1000

_REMEDY = {
    "not_in_channel": "invite the bot to it (/invite @{bot})",
    "channel_not_found": "if it is a private channel, invite the bot to it (/invite @{bot})",
    "is_archived": "the channel is archived: unarchive it",
    "restricted_action": "check who may post in it (its posting permissions)",
    "restricted_action_read_only_channel": "it is read-only: check who may post in it",
    "restricted_action_non_threadable_channel": "it takes no threads: answer elsewhere",
    "restricted_action_thread_only_channel": "it takes posts in threads only",
    "no_permission": "invite the bot to it (/invite @{bot})",
    "ekm_access_denied": "an admin suspended posting there (Enterprise Key Management)",
    "team_access_not_granted": "grant the app access to this workspace (org-wide install)",
}


class ClosedChannels:
    """Channels, by (workspace, channel), where Slack refused the bot a post."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.bot_name = "chat-bridge"  # the bot's name, as /invite takes it
        # until when each is closed; one past it stays until the bot posts there,
        # so a channel closed again is not warned about again
        self._until: Recent[tuple[str, str], float] = Recent(MAX_CLOSED)

    def close(self, workspace: str, channel: str, error: str) -> None:
        """Slack refused a post in `channel` with `error`, one of `refusal.CLOSING`."""
        key = (workspace, channel)
        known = key in self._until
        self._until.put(key, self.clock() + CLOSED_SECONDS)
        remedy = _REMEDY.get(error, "").format(bot=self.bot_name)
        (log.info if known else log.warning)(
            "slack: the bot cannot post in channel %s of workspace %s (%s): its questions "
            "are not answered, nor sent to the chat API, for the next %d minutes; %s",
            channel,
            workspace,
            error,
            CLOSED_SECONDS // 60,
            remedy,
        )

    def closed(self, workspace: str, channel: str) -> bool:
        """Whether questions in `channel` go unanswered for now."""
        until = self._until.get((workspace, channel))
        return until is not None and self.clock() < until

    def opened(self, workspace: str, channel: str, *, joined: bool = False) -> None:
        """The bot posted in `channel`, or (`joined`) Slack says it joined it."""
        if self._until.pop((workspace, channel)) is not None:
            log.info(
                "slack: the bot %s channel %s of workspace %s: answering there again",
                "joined" if joined else "may post in",
                channel,
                workspace,
            )
