"""Refusals: what an asker is told of a question that is not answered (busy, too long,
rate limited, …), in moderation. One posted in a channel shares the channel's post
budget with its answers: it is told in time or not at all, and a person sending
message after message is told only so often."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from bridge.errors import for_log
from bridge.fairness import UserRateLimiter
from bridge.interfaces import Inbound, ReplyTarget
from bridge.metrics import Refusal

if TYPE_CHECKING:
    from bridge.relay import Relay

log = logging.getLogger("chat_bridge.intake")

# Refusals told to one person at most (beyond, they go unsaid): a member sending
# message after message where refusals are posted in the channel would otherwise
# fill its post budget with them, and answers to everyone else would wait.
REFUSALS_TOLD = (3, 60.0)  # notices, per seconds

# A refusal posted in the channel is told within this many seconds of its message, or
# not at all: a burst's refusals would otherwise come as the channel's post budget
# allows (Discord's: five every five seconds), saying "busy" long after the answers.
REFUSAL_WITHIN = 5.0


class Refusals:
    """Tells a relay's askers their refusals."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._users = UserRateLimiter()  # refusals told to each person lately
        self._last: dict[tuple[str, str, str], asyncio.Task[None]] = {}  # by place
        # Refusals not told in time, by place: logged once its last refusal is done.
        self._untold: dict[tuple[str, str, str], int] = {}

    async def tell(
        self, msg: Inbound, target: ReplyTarget, text: str, reason: Refusal | None
    ) -> None:
        """Tell the asker why their message is not answered, unless the refusal is a
        message posted in a channel and they were told `REFUSALS_TOLD` times lately.
        It is counted under `reason` (None: counted by the caller).

        A command's refusal is always said (it answers the command, privately, and
        unanswered the platform shows it failed), and so is one in a DM.
        """
        public = target.limits.notices_post and not msg.is_dm and not msg.command
        times, per = REFUSALS_TOLD
        key = f"refused {msg.platform}:{msg.user}"
        if public and self._users.check(key, times, per, time.monotonic()) is not None:
            # The one trace of a question left unanswered and unsaid: where, who and
            # which message, for the admin asked why the bot said nothing.
            where = {
                "platform": msg.platform,
                "workspace": msg.workspace,
                "channel": msg.channel,
                "user": msg.user,
                "message_id": msg.message_id,
            }
            log.info(
                "refusal not told again to a %s user sending many: %s",
                msg.platform,
                text,
                extra=where,
            )
            if reason is not None:
                self.relay.metrics.refusal(msg.platform, reason, told=False)
            return
        if public:
            # Posted in the channel, within the post budget its answers share: not
            # waited for, or the place's next messages (others') would wait behind it.
            # A place's refusals are posted in the order of their messages, after the
            # answers' requests, and in time or not at all.
            place = (msg.platform, msg.workspace, msg.channel)
            after = self._last.get(place)
            by = time.monotonic() + REFUSAL_WITHIN
            task = self.relay.spawn(self._notice_apart(place, target, text, after, by, reason))
            self._last[place] = task
            return
        await self.relay.notice(target, text)
        # Only once told: a notice the platform failed is counted as the message's
        # failure, by whoever catches it.
        if reason is not None:
            self.relay.metrics.refusal(msg.platform, reason, told=True)

    async def _notice_apart(
        self,
        place: tuple[str, str, str],
        target: ReplyTarget,
        text: str,
        after: asyncio.Task[None] | None,
        by: float,
        reason: Refusal | None,
    ) -> None:
        told = False
        try:
            if after is not None:  # its outcome is its own
                await asyncio.wait([after], timeout=max(0.0, by - time.monotonic()))
            if (after is not None and not after.done()) or not await self.relay.notice(
                target, text, by=by
            ):
                self._untold[place] = self._untold.get(place, 0) + 1
                with contextlib.suppress(Exception):  # what the question shows goes, as
                    await target.end()  # it would with the notice
            else:
                told = True
        except Exception as exc:  # a platform library's own error too: it is only a refusal
            log.warning("could not tell a refusal: %s", for_log(exc))
        finally:
            if reason is not None:
                self.relay.metrics.refusal(place[0], reason, told)
            if self._last.get(place) is asyncio.current_task():
                del self._last[place]
                if untold := self._untold.pop(place, 0):
                    platform, workspace, channel = place
                    log.warning(
                        "%d refusal(s) in %s channel %s (workspace %s) not told: the "
                        "channel's posts had no room for them within %g s of their "
                        "messages (its answers go first)",
                        untold,
                        platform,
                        channel,
                        workspace,
                        REFUSAL_WITHIN,
                        extra={"platform": platform, "channel": channel},
                    )
