"""What the bot may do in a Discord channel, what it lacks there in the words of
Discord's permission settings, and the permissions its invite asks for."""

from __future__ import annotations

from typing import Any, NamedTuple

import discord

from adapters.platforms.recent import Recent

# What the invite asks for; README.md and docs/discord.md give the same sum.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    create_public_threads=True,
    send_messages_in_threads=True,
)
# Places (and things said of them) remembered as said already: bounded, whatever
# a bot meets over months.
SAID_PLACES = 1000


def invite_url(application_id: int) -> str:
    """The URL that adds the bot, with its slash commands, to a server."""
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope=bot+applications.commands&permissions={INVITE_PERMISSIONS.value}"
    )


class Allowed(NamedTuple):
    post: bool  # send messages in the channel (or thread) itself
    thread: bool  # open a thread there and answer in it
    reply: bool  # post as a reply to the question (Read Message History)
    # Where `post` is False: the permission the bot lacks, as Discord's settings name it.
    lacks: str = ""
    # Where no thread opens for a missing permission (not merely where none can
    # open, as in a thread or a voice channel's chat): the permissions it lacks.
    lacks_thread: str = ""


ANYTHING = Allowed(True, True, True)


def may_send(channel: Any, guild: discord.Guild | None) -> Allowed:
    """What the bot may do in `channel`, as far as discord.py's cache knows (what it
    does not know, it is let try: the reply's error says why)."""
    me = guild.me if guild is not None else None
    if me is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return ANYTHING
    try:
        allowed = channel.permissions_for(me)
    except discord.ClientException:  # a thread whose parent is not cached
        return ANYTHING
    reply = allowed.read_message_history
    if isinstance(channel, discord.Thread):
        post = allowed.send_messages_in_threads
        lacks = "" if post else "Send Messages in Threads"
        # In a locked thread only those who may manage threads post: Discord refuses
        # the others' posts (and typing) with 160005 "Thread is locked".
        if post and channel.locked and not allowed.manage_threads:
            post, lacks = False, "Manage Threads (the thread is locked)"
        return Allowed(post, False, reply, lacks)
    lacks = "" if allowed.send_messages else "Send Messages"
    # Threads open in text and announcement channels only (not a voice channel's chat).
    if not isinstance(channel, discord.TextChannel):
        return Allowed(allowed.send_messages, False, reply, lacks)
    missing = [
        name
        for name, has in (
            ("Create Public Threads", allowed.create_public_threads),
            ("Send Messages in Threads", allowed.send_messages_in_threads),
        )
        if not has
    ]
    return Allowed(allowed.send_messages, not missing, reply, lacks, " and ".join(missing))


class Said:
    """What was logged of which places, so that each is said once (of the most recent
    places only: a place forgotten may be said of again)."""

    def __init__(self, size: int = SAID_PLACES) -> None:
        self._said: Recent[tuple[str, int], bool] = Recent(size)

    def first(self, what: str, place: int) -> bool:
        """Whether `what` is yet to be said of `place` (it is then taken as said)."""
        if self._said.touch((what, place)):
            return False
        self._said.put((what, place), True)
        return True
