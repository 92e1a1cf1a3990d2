"""Discord's messages read for the core: a question (an `Inbound`, and the
`ChannelTarget` to answer it on) delivered, and a message's edit or deletion told.

The gateway's message events come here from the platform's client; which of them
asks the bot something, and what, is this module's to say.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

import discord

from adapters.platforms.discord.permissions import may_send
from adapters.platforms.discord.places import place_of, resolved, tell_deleted
from adapters.platforms.discord.questions import Question
from adapters.platforms.discord.readable import (
    Names,
    addresses_other,
    author_roles,
    place_ids,
    question_text,
    replies_to_other,
    written,
)
from adapters.platforms.discord.targets import DM_WORKSPACE, ChannelTarget
from bridge.interfaces import Address, Inbound

if TYPE_CHECKING:
    from adapters.platforms.discord.platform import DiscordPlatform

log = logging.getLogger("chat_bridge.discord")

MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
# A message edited to mention the bot is taken as a question only this soon after it
# was sent (someone forgot the mention), as on Slack. Event records are kept at least
# this long (`DiscordPlatform.redelivers_within`), so one answered already is known.
EDIT_WINDOW = 600.0


class MessageEvents:
    """The message events of one `DiscordPlatform`: messages sent, edited and deleted."""

    def __init__(self, platform: DiscordPlatform) -> None:
        self.platform = platform

    async def on_edit(self, event: discord.RawMessageUpdateEvent) -> None:
        """A message edited: the core is told its text now (a question of it answered is
        kept so in its conversation's history); and one edited to mention the bot, if
        recent, is a question with the message's own id as its event id, so one
        answered already is not answered again."""
        # Discord sends the whole message (an update without its content, as it once
        # sent for a link's preview, would be nothing to read); not every update is an
        # edit of its text: a link's preview filled in is none.
        if "content" not in event.data or not event.data.get("edited_timestamp"):
            return
        recent = time.time() - event.message.created_at.timestamp() <= EDIT_WINDOW
        if recent or self.platform.ctx.edited is not None:
            await self.on_message(event.message, edited=True, asks=recent)

    async def on_message(
        self, message: discord.Message, *, edited: bool = False, asks: bool = True
    ) -> None:
        """A message sent, or `edited` (then a question only where it `asks`, and
        mentions the bot)."""
        platform = self.platform
        client = platform.client
        # During a stop too (Discord never delivers a message again): the core tells a
        # question that it is not answered now. An edit is told then as well: one of
        # the answers ending may be its question.
        # While starting, from READY on: held until the start is done
        # (`DiscordPlatform._deliver`).
        delivering = (
            platform._receiving
            or platform._early is not None
            or (platform._stopping and not platform._closing)
        )
        if not (delivering or edited) or client is None or client.user is None:
            return
        asks = asks and delivering
        if message.author.bot or message.webhook_id is not None:
            return  # never answer bots, webhooks, or ourselves
        if message.type not in MESSAGE_TYPES:
            return
        guild = message.guild
        # A guild discord.py has not cached yet still has an id: never mistake it for a DM.
        guild_id = guild.id if guild is not None else getattr(message.channel, "guild_id", None)
        # A thread discord.py does not keep is asked of Discord: what the bot may do
        # there is read from it.
        channel = await resolved(client, message.channel, guild_id)
        channel_id, thread_id, audience, title = place_of(channel, guild_id)
        me = client.user.id
        self_role = guild.self_role if guild is not None else None
        role_ids = [self_role.id] if self_role is not None else []
        # Mentioned in the text: a reply to the bot's message lists the bot in
        # `mentions` too, but only while the replier's client leaves its ping on.
        mentioned = me in message.raw_mentions or any(
            r in message.raw_role_mentions for r in role_ids
        )
        workspace = str(guild_id) if guild_id is not None else DM_WORKSPACE
        if edited:
            # Without the Message Content intent, an edit that does not mention the bot
            # comes without its text: nothing of the question is left to keep.
            text = ""
            if mentioned or guild_id is None or platform.options.message_content:
                text = self._asked(message, client.user, channel_id, thread_id, title)[0]
            self._tell_edited(workspace, channel_id, message.id, text)
            if not (mentioned and asks):
                return  # an edit is a question only where it mentions the bot
        if not mentioned and guild_id is not None and not platform.options.message_content:
            # Without the Message Content intent its text arrives empty: nothing to answer.
            log.debug("message %s not read: it does not mention the bot", message.id)
            return
        # Where a moderator took the bot's Send Messages away, the bridge answers
        # nothing (and says so once, if a route takes the message).
        allowed = may_send(channel, guild)
        text, attached = self._asked(message, client.user, channel_id, thread_id, title)
        inbound = Inbound(
            platform="discord",
            workspace=workspace,
            channel=channel_id,
            thread=thread_id,
            user=str(message.author.id),
            text=text,
            message_id=str(message.id),
            event_id=str(message.id),
            is_dm=guild_id is None,
            mentioned=mentioned,
            addresses_other=(
                addresses_other(message.content, me, role_ids) or replies_to_other(message, me)
            ),
            # Without the Message Content intent, only mentions are read in a server.
            follow_ups=guild_id is None or platform.options.message_content,
            roles=author_roles(message.author),
            has_attachments=attached,
            received_at=time.time(),
            sent_at=message.created_at.timestamp(),
            may_post=allowed.post,
            may_thread=allowed.thread,
            lacks=allowed.lacks,
            audience=audience,
        )
        address = Address("discord", workspace, channel_id, thread_id)
        # An edit while the message is answered (or waits) shares its question: a
        # deletion stops that answer still.
        question = platform._questions.held(message.id) or Question(
            place_ids((channel_id, thread_id)), replies_in=int(thread_id or channel_id)
        )
        target = ChannelTarget(
            client,
            platform.options,
            address,
            question_id=message.id,
            allowed=allowed,
            question=question,
            questions=platform._questions,
            said=platform._said,
            typist=platform._typist,
        )
        platform._questions.add(message.id, target.question)
        await platform._deliver(inbound, target)

    @staticmethod
    def _asked(
        message: discord.Message,
        me: discord.ClientUser,
        channel_id: str,
        thread_id: str | None,
        title: str | None,
    ) -> tuple[str, bool]:
        """What `message` asks, as the chat API is asked it (the bot's mention gone,
        names in words), and whether it comes with files."""
        content, attached = written(message)
        text = question_text(content, Names.of_message(message, (channel_id, thread_id)), me)
        if title is not None and thread_id == str(message.id):
            # A forum post's first message: its title is most often the question itself
            # (plain text, which Discord shows as typed), and may be all there is to it.
            text = f"{title}\n{text}" if text.strip() else title
        return text, attached

    def _tell_edited(self, workspace: str, channel: str, message_id: int, text: str) -> None:
        """Tell the core (`PlatformContext.edited`) that a message now reads `text`."""
        platform = self.platform
        edited = platform.ctx.edited
        if edited is None or platform._closing:
            return

        async def tell() -> None:
            try:
                # Whether the edit added the bot's mention (and so is asked as it reads)
                # is not known: no message is cached. Told as not asked: on a shared
                # store, a turn edited while answered goes (bridge/edits.py).
                await edited(workspace, channel, str(message_id), text, False)
            except Exception:  # a task of its own: nobody else would hear of it
                log.exception(
                    "could not take the edit of message %s",
                    message_id,
                    extra={"platform": "discord", "channel": channel},
                )

        platform._watch(tell())

    def on_delete(
        self, message_ids: Collection[int], channel_id: int, guild_id: int | None
    ) -> None:
        """Messages deleted: a question among them being answered (or waiting its turn)
        here stops; and the core is told of each (`PlatformContext.deleted`), even of
        one held here (a shared store's other replicas may hold it too), so that one
        answered already is forgotten from its conversation's history."""
        platform = self.platform
        platform._questions.deleted(message_ids)
        client, deleted = platform.client, platform.ctx.deleted
        if client is None or deleted is None or platform._closing:
            return
        platform._watch(tell_deleted(client, deleted, message_ids, channel_id, guild_id))
