"""Slack's message events read for the core: a question (an `Inbound`, and the
`SlackTarget` to answer it on) handed over, or a message's deletion or edit told.

The platform's listeners pass each `message` and `app_mention` event here; which
of them a person asked the bot is this module's to say.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from typing import TYPE_CHECKING, Any

from adapters.platforms.mentions import without_mention
from bridge.flag import Flag
from bridge.interfaces import Address, Inbound

from .events import (
    USER_SUBTYPES,
    addresses_other,
    ext_shared,
    forwarded,
    from_bot,
    plain_text,
    team_of_asker,
    ts_seconds,
    workspace_of,
)
from .loops import BotTurns
from .target import SlackTarget

if TYPE_CHECKING:
    from .platform import SlackPlatform

log = logging.getLogger("chat_bridge.slack")

# A message edited to mention the bot is taken as a question only this soon after it
# was sent (someone forgot the mention). Event records are kept at least this long
# (`SlackPlatform.redelivers_within`), so one answered when it was sent is known.
EDIT_WINDOW = 600.0


class Stopping(Exception):  # noqa: N818 - not an error: the answer bolt gives Slack
    """Raised by a listener the stop overtook: bolt then answers 500, not the ack,
    and Slack delivers the event again (to another replica, or after the restart)."""


class MessageEvents:
    """The message events of one `SlackPlatform`, read as questions, deletions and edits."""

    def __init__(self, platform: SlackPlatform) -> None:
        self.platform = platform
        # Questions delivered, by (channel, ts), while their replies live: a deletion
        # withdraws one not yet answered.
        self._questions: weakref.WeakValueDictionary[tuple[str, str], SlackTarget] = (
            weakref.WeakValueDictionary()
        )
        self.bot_turns = BotTurns()

    def deliver(
        self, body: dict[str, Any], event: dict[str, Any], *, mention: bool
    ) -> asyncio.Task[Flag | None] | None:
        """Hand a message event over; the hand-over, to wait for, or None."""
        platform = self.platform
        if self._deleted(body, event):
            return None
        self._edited(body, event)
        # Told even by an event not answered (a mention's message, its app_mention
        # answered): its app_mention does not say who sees the channel, but for one
        # shared with another organisation, its body does.
        platform.kinds.learn(
            str(event.get("channel", "")), event.get("channel_type"), shared=ext_shared(body)
        )
        made = self.inbound(body, event, via_mention=mention)
        if made is None:
            return None
        if platform._handler is None:
            # The stop began while bolt dispatched it: acked, it would be lost.
            raise Stopping
        inbound, target = made
        if self._loops(inbound, event):
            return None
        if platform.closed.closed(inbound.workspace, inbound.channel):
            # Slack refused the bot a post there: asking the chat API would cost a
            # request, send the text out, and show nothing.
            (log.info if inbound.mentioned else log.debug)(
                "slack: not answering in channel %s: the bot cannot post there",
                inbound.channel,
            )
            return None
        if target.question_ts:
            # An edit of a question still waiting or answered is that question (taken
            # once): the one held stays, for a deletion to withdraw it.
            self._questions.setdefault((inbound.channel, target.question_ts), target)
        if platform.gate.refused is not None:
            # Not waited for: it waits for Slack to take the token again.
            platform._spawn(self._deliver_if_accepted(inbound, target))
            return None
        return platform._spawn(platform._hand_over(inbound, target, platform._handler))

    def _loops(self, inbound: Inbound, event: dict[str, Any]) -> bool:
        """Whether `inbound` is another bot's message past `BotTurns.limit` in a row
        where it was written (a thread, or a channel's top level): not answered, lest
        two bots answer each other for ever. Messages at a channel's top level count
        together, though each opens a thread of its own for its answer: a bot that
        answers each of the bridge's replies with a post of its own is one loop."""
        written_in = event.get("thread_ts")
        place = (inbound.workspace, inbound.channel, str(written_in) if written_in else None)
        if not from_bot(event):
            self.bot_turns.person(place)
            if place[2] is not None:  # people talking in a bot post's thread: not a loop
                self.bot_turns.answered((*place[:2], None), place[2])
            return False
        turns = self.bot_turns.bot(place, inbound.message_id)
        if turns == self.bot_turns.limit + 1:
            log.warning(
                "slack: not answering bot %s in channel %s (%s): %d bot messages in a row "
                "there, none from a person, as when two bots answer each other; bots are "
                "answered there again once a person writes in it",
                inbound.user,
                inbound.channel,
                f"thread {place[2]}" if place[2] else "its top level",
                turns,
            )
        return turns > self.bot_turns.limit

    def _deleted(self, body: dict[str, Any], event: dict[str, Any]) -> bool:
        """Whether `event` says a message was deleted; a question of it still waiting
        for its answer is then not answered (a password posted by mistake), here or on
        another replica sharing the store, and one answered is not kept in its
        conversation's history."""
        platform = self.platform
        subtype = event.get("subtype")
        if subtype == "message_deleted":
            ts = event.get("deleted_ts")
        elif (
            subtype == "message_changed"
            and (event.get("message") or {}).get("subtype") == "tombstone"
        ):  # a thread's first message, deleted: its replies stay
            ts = event["message"].get("ts")
        else:
            return False
        channel = str(event.get("channel"))
        target = self._questions.pop((channel, str(ts)), None)
        if target is not None:
            log.info("slack: question %s was deleted", ts)
            target.deleted = True
        if platform.ctx.deleted is not None:
            # Told even for a question held here: this replica may hold only a second
            # delivery of it, dropped as a duplicate, while another answers it; and an
            # answered question's turn is forgotten.
            platform._spawn(
                platform.ctx.deleted(workspace_of(body, event, platform.team_id), channel, str(ts))
            )
        return True

    def _edited(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """Where `event` says a person edited a message (`message_changed`), tell the
        core its text now, read as a question's: a question of it answered (or being
        answered) is kept so in its conversation's history. (An edit that mentions the
        bot comes as an app_mention too, a question only if none was taken of it.)"""
        platform = self.platform
        message = event.get("message")
        if event.get("subtype") != "message_changed" or not isinstance(message, dict):
            return
        if platform.ctx.edited is None or not message.get("edited"):
            return  # a link's preview, a thread's reply count: its text is as it was
        if not self._may_ask(message) or message.get("user") == platform.bot_user_id:
            return  # the bot's own replies edited as they stream, above all
        channel, ts = str(event.get("channel") or ""), str(message.get("ts") or "")
        if channel and ts:
            # One that adds the bot's mention is asked as it reads (its app_mention);
            # one that kept it is not asked again.
            before = event.get("previous_message")
            said = str(before.get("text") or "") if isinstance(before, dict) else ""
            asks = self._mentions_me(str(message.get("text") or "")) and not self._mentions_me(said)
            platform._spawn(
                platform.ctx.edited(
                    workspace_of(body, event, platform.team_id),
                    channel,
                    ts,
                    self._question(message),
                    asks,
                )
            )

    async def _deliver_if_accepted(self, inbound: Inbound, target: SlackTarget) -> None:
        """A question while the bot token is refused: handed over only if Slack
        takes the token again."""
        platform = self.platform
        handler = platform._handler
        if not await platform.gate.accepted() or handler is None:
            log.info("slack: a question is not answered: Slack refuses the bot token")
            return
        await platform._hand_over(inbound, target, handler)

    def inbound(
        self, body: dict[str, Any], event: dict[str, Any], *, via_mention: bool
    ) -> tuple[Inbound, SlackTarget] | None:
        """Normalize one message event; None when it is not someone asking something."""
        platform = self.platform
        subtype = event.get("subtype")
        bot_id = event.get("bot_id")
        if not self._may_ask(event) or event.get("hidden"):
            return None
        if event.get("edited") and (
            not via_mention or time.time() - ts_seconds(str(event.get("ts") or "")) > EDIT_WINDOW
        ):
            # An edit that mentions the bot comes as app_mention, with the message's
            # own ts: its event id is the message's, so a question answered when it
            # was sent is not answered again, and one that forgot the mention is.
            return None
        user = event.get("user") or bot_id
        if not user or user == platform.bot_user_id:
            return None
        channel = str(event.get("channel", ""))
        if not channel:
            return None
        ts = str(event.get("ts") or event.get("event_ts") or "")
        is_dm = event.get("channel_type") == "im" or (
            "channel_type" not in event and channel.startswith("D")
        )
        text = str(event.get("text") or "")
        mentioned = via_mention or self._mentions_me(text)
        if (
            not via_mention
            and mentioned
            and not is_dm
            and event.get("channel_type") != "mpim"
            and subtype != "file_share"
        ):
            # The same message also arrives as app_mention: answer that one only. In a
            # group DM, whether Slack sends that app_mention is not settled, and with a
            # file Slack sends none (slackapi/bolt-python#925): both are taken, and a
            # second is dropped as a duplicate (one event id per message).
            return None
        thread_ts = event.get("thread_ts")
        thread = str(thread_ts) if thread_ts else (None if is_dm else ts)
        workspace = workspace_of(body, event, platform.team_id)
        # A forward's text is the comment written with it (often none): the messages
        # it forwards follow it, read as a message is, as a Discord forward's are.
        # Whether it mentions the bot or someone else is the comment's to say.
        shares = forwarded(event)
        question = self._question(event)
        inbound = Inbound(
            platform=platform.name,
            workspace=workspace,
            channel=channel,
            user=str(user),
            text=question,
            message_id=ts,
            # The message's own id, not the event's: its message and app_mention
            # events, and Slack's retries of either, are one question.
            event_id=f"{channel}:{ts}",
            thread=thread,
            is_dm=is_dm,
            mentioned=mentioned,
            addresses_other=addresses_other(text, platform.bot_user_id),
            has_attachments=bool(event.get("files")) or any(s.get("files") for s in shares),
            received_at=time.time(),
            sent_at=ts_seconds(ts),
        )
        address = Address(platform.name, workspace, channel, thread)
        target = SlackTarget(
            platform,
            address,
            question_ts=ts,
            user=str(user),
            is_dm=is_dm,
            team=team_of_asker(event, workspace),
        )
        return inbound, target

    def _may_ask(self, message: dict[str, Any]) -> bool:
        """Whether `message` is of a kind the bot answers: a person's, or another bot's
        where `ignore_bots` is off; never the bot's own."""
        subtype = message.get("subtype")
        if from_bot(message):
            if message.get("bot_id") == self.platform.bot_id or self.platform.options.ignore_bots:
                return False
            if subtype == "bot_message":
                subtype = None  # another bot, let in by `ignore_bots: false`
        return subtype in USER_SUBTYPES

    def _my_mention(self) -> re.Pattern[str] | None:
        bot_user_id = self.platform.bot_user_id
        if not bot_user_id:
            return None
        return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>")  # (see events._LINK)

    def _mentions_me(self, text: str) -> bool:
        pattern = self._my_mention()
        return pattern is not None and pattern.search(text) is not None

    def _question(self, event: dict[str, Any]) -> str:
        """A message's text as the chat API is asked it: its own, then the text of each
        message it forwards, each without the bot's mention (`_strip_mention`)."""
        shares = forwarded(event)
        return "\n\n".join(
            filter(
                None,
                (
                    self._strip_mention(part)
                    for part in (
                        str(event.get("text") or ""),
                        *(str(s.get("text") or "") for s in shares),
                    )
                ),
            )
        )

    def _strip_mention(self, text: str) -> str:
        """The question's text for the chat API: the bot's mention goes where it only
        addresses the bot, and is the bot's name within a sentence (see `mentions`)."""
        platform = self.platform
        pattern = self._my_mention()
        if pattern is not None and platform.bot_user_id:
            text = without_mention(
                text, pattern.pattern, platform.bot_name or f"@{platform.bot_user_id}"
            )
        # The gaps around a removed mention are `without_mention`'s to close; any
        # other run of spaces is the asker's (a code block's indentation).
        return plain_text(text).strip()
