"""Discord places by id: a channel or thread looked up, read as a question's `Inbound`
names it (a thread's messages belong to its parent channel) with who sees it, and a
deleted message's place named so, for the core to find the question's turn."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeAlias

import discord

from adapters.platforms.discord.failures import FAILURES
from adapters.platforms.discord.readable import everyone_sees
from adapters.platforms.discord.targets import DM_WORKSPACE
from bridge.errors import for_log
from bridge.interfaces import Audience

log = logging.getLogger("chat_bridge.discord")

# Any channel discord.py can hand over or look up (guild, private, thread).
Channel: TypeAlias = "discord.abc.GuildChannel | discord.abc.PrivateChannel | discord.Thread"


async def find_place(client: discord.Client, channel_id: int, guild_id: int) -> Channel | None:
    """The channel or thread `channel_id` of server `guild_id`: discord.py's cache, else
    asked of Discord (a thread discord.py has not seen, or no longer keeps); None
    where neither knows it."""
    guild = client.get_guild(guild_id)
    found: Channel | None
    found = guild.get_channel_or_thread(channel_id) if guild is not None else None
    if found is None:
        try:
            found = await client.fetch_channel(channel_id)
        except (*FAILURES, discord.InvalidData) as exc:
            log.debug("could not look up channel %s: %s", channel_id, for_log(exc))
    return found


async def resolved(client: discord.Client | None, channel: Any, guild_id: int | None) -> Any:
    """`channel` itself where discord.py gave no more than its id (a thread it has not
    seen yet, or dropped when it was archived): asked of Discord; as given where it
    is not found (it is answered all the same)."""
    if (
        guild_id is not None
        and client is not None
        and not isinstance(channel, discord.abc.GuildChannel | discord.Thread)
    ):
        return await find_place(client, channel.id, guild_id) or channel
    return channel


def place_of(channel: Any, guild_id: int | None) -> tuple[str, str | None, Audience, str | None]:
    """`channel`'s (channel, thread) ids, who sees it, and the title of a forum (or
    media channel) post: a thread's messages belong to its parent channel, a private
    thread's to its members; a channel @everyone may not view (or one not found)
    is its members'. (`resolved` first: a thread discord.py does not keep.)"""
    audience: Audience = "channel"
    if guild_id is not None and not (
        isinstance(channel, discord.abc.GuildChannel | discord.Thread) and everyone_sees(channel)
    ):
        audience = "members"
    if isinstance(channel, discord.Thread):
        if channel.is_private():
            audience = "thread"
        # A post in a forum or media channel is a thread named by its title.
        title = channel.name if isinstance(channel.parent, discord.ForumChannel) else None
        return str(channel.parent_id), str(channel.id), audience, title
    return str(channel.id), None, audience, None


async def tell_deleted(
    client: discord.Client,
    deleted: Callable[[str, str, str], Awaitable[None]],
    message_ids: Collection[int],
    channel_id: int,
    guild_id: int | None,
) -> None:
    """Tell the core (`PlatformContext.deleted`) that the messages `message_ids` of
    `channel_id` were deleted, each named as a question's `Inbound` names it: the
    server's id (`@dm` in a DM), and in a thread (a forum post too) its parent channel,
    which the deletion event does not give."""
    workspace, channel = DM_WORKSPACE, str(channel_id)
    try:
        if guild_id is not None:
            workspace = str(guild_id)
            place = await find_place(client, channel_id, guild_id)
            if isinstance(place, discord.Thread):
                channel = str(place.parent_id)
            elif place is None:
                # Were it a thread, a question of it answered stays in its history.
                log.info(
                    "messages deleted in channel %s, which Discord did not find: a "
                    "question among them answered in a thread there stays in its "
                    "conversation's history",
                    channel_id,
                    extra={"platform": "discord", "channel": str(channel_id)},
                )
        for message_id in message_ids:
            await deleted(workspace, channel, str(message_id))
    except Exception:  # a task of its own: nobody else would hear of it
        log.exception(
            "could not take the deletion of messages in %s",
            channel_id,
            extra={"platform": "discord", "channel": str(channel_id)},
        )
