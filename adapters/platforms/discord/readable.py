"""A question's Discord markup in words, for the chat API.

Discord writes mentions, custom emoji and timestamps as markup holding ids
(`<@123…>`, `<#123…>`, `<@&123…>`, `<:name:123…>`, `<t:1700000000:R>`), which
its clients show as names. A chat API would read the ids, so the question is
sent as a person reads it: `@display name`, `#channel`, `@role`, `:emoji:`
and a UTC date-time. Code spans and blocks are left as written: Discord shows
markup there as it is typed.

Names come from what Discord sent with the message (its mentioned users, with
their server nicknames) and from discord.py's cache of the server. The text
is read by more than the asker: it names the thread the bot opens, stays in a
conversation everyone in the channel shares, and the answer may repeat it.
So a channel is named only if everyone who reads the answer may see it (to
the others Discord's own client shows "No Access"): the channel or thread it
was asked in, or its parent, or a channel @everyone may view; in an answer
for the asker alone (an ephemeral `/ask`), a channel the asker may see. A
private thread is named only where it was asked in. A role or a channel is
named only in its own server. What cannot be named is a word (`@user`,
`#channel`, `@role`), never an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import discord

from adapters.platforms.discord.format import CODE, strip_mentions

UNKNOWN_USER, UNKNOWN_CHANNEL, UNKNOWN_ROLE = "@user", "#channel", "@role"

_MARKUP = re.compile(
    r"<(?:"
    r"(?P<kind>@!?|@&|#)(?P<id>\d{1,20})"  # user, role, channel
    r"|a?:(?P<emoji>\w{1,32}):\d{1,20}"  # custom emoji, still or animated
    r"|t:(?P<time>-?\d{1,15})(?::[A-Za-z])?"  # timestamp, with or without a style
    r"|/(?P<command>[-\w]{1,32}(?: [-\w]{1,32}){0,2}):\d{1,20}"  # a slash command
    r")>"
)


def timestamp_text(seconds: int) -> str | None:
    """A Unix time as "2023-11-14 22:13 UTC" (every style alike: the chat API gets
    the moment, not how the asker's client would show it); None if out of range."""
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# A mention of a person or a bot (<@123…>, <@!123…>) or of a role (<@&123…>), first.
_FIRST_MENTION = re.compile(r"\s*<@([!&]?)(\d{1,20})>")


def addresses_other(text: str, bot_id: int, role_ids: Iterable[int] = ()) -> bool:
    """Whether a message's text begins by addressing someone other than the bot (its
    user `bot_id`, its role among `role_ids`): a mention of another person, bot or role."""
    first = _FIRST_MENTION.match(text)
    if first is None:
        return False
    kind, target = first.group(1), int(first.group(2))
    return target not in role_ids if kind == "&" else target != bot_id


@dataclass
class Names:
    """Who and what ids stand for, in a question asked in a channel (and a thread
    of it), answered there or to the asker alone."""

    guild: discord.Guild | None
    asker: discord.abc.User
    # The channel asked in and, in a thread, the thread: every reader sees them.
    here: frozenset[int]
    # The answer is the asker's alone (an ephemeral /ask): what they see may be named.
    private: bool = False
    # Users Discord sent with the question (members carry their nicknames).
    known: Mapping[int, discord.abc.User] = field(default_factory=dict)

    @classmethod
    def of_message(cls, message: discord.Message, here: Iterable[str | None]) -> Names:
        known = {user.id: user for user in message.mentions}
        return cls(message.guild, message.author, place_ids(here), known=known)

    @classmethod
    def of_interaction(
        cls, interaction: discord.Interaction, here: Iterable[str | None], *, private: bool
    ) -> Names:
        # An option typed as text carries no mentioned users: names come from the cache.
        return cls(interaction.guild, interaction.user, place_ids(here), private)

    def user(self, user_id: int) -> str:
        found: discord.abc.User | None = self.known.get(user_id)
        if found is None and self.asker.id == user_id:
            found = self.asker
        if found is None and self.guild is not None:
            found = self.guild.get_member(user_id)
        return f"@{found.display_name}" if found is not None else UNKNOWN_USER

    def role(self, role_id: int) -> str:
        # Named whoever reads it: every member's client gets the server's roles and
        # shows a role mention by its name, whatever the channels they may see.
        role = self.guild.get_role(role_id) if self.guild is not None else None
        if role is None:
            return UNKNOWN_ROLE
        return role.name if role.name.startswith("@") else f"@{role.name}"  # @everyone

    def channel(self, channel_id: int) -> str:
        if self.guild is None:
            return UNKNOWN_CHANNEL
        found = self.guild.get_channel_or_thread(channel_id)
        if found is None or not self._all_readers_see(found, self.guild):
            return UNKNOWN_CHANNEL
        return f"#{found.name}"

    def _all_readers_see(
        self, channel: discord.abc.GuildChannel | discord.Thread, guild: discord.Guild
    ) -> bool:
        if channel.id in self.here:
            return True
        if isinstance(channel, discord.Thread) and channel.is_private():
            return False  # its members are not known here
        # Whoever reads it is a member of the server: a channel open to @everyone is
        # no secret from them (even from one a role of theirs keeps out of it).
        reader: discord.Member | discord.Role = guild.default_role
        if self.private:
            if not isinstance(self.asker, discord.Member):
                return False
            reader = self.asker
        try:
            return channel.permissions_for(reader).view_channel
        except discord.ClientException:  # a thread whose parent is not cached
            return False


def everyone_sees(channel: discord.abc.GuildChannel | discord.Thread) -> bool:
    """Whether every member of the server may view `channel` (a thread: its parent);
    False where that cannot be told (a server or a thread's parent not cached yet)."""
    guild = channel.guild
    everyone = guild.default_role if guild is not None else None
    if everyone is None:
        return False
    try:
        return channel.permissions_for(everyone).view_channel
    except discord.ClientException:
        return False


def place_ids(here: Iterable[str | None]) -> frozenset[int]:
    """The ids of a (channel, thread) pair, as Discord's ints (a thread may be None)."""
    return frozenset(int(i) for i in here if i is not None)


def plain_text(text: str, names: Names) -> str:
    """`text` with Discord's markup in words, outside code."""
    if "<" not in text:
        return text

    def words(match: re.Match[str]) -> str:
        kind, emoji, time, command = match.group("kind", "emoji", "time", "command")
        if kind is not None:
            target = int(match.group("id"))
            if kind == "#":
                return names.channel(target)
            return names.role(target) if kind == "@&" else names.user(target)
        if emoji is not None:
            return f":{emoji}:"
        if time is not None:
            return timestamp_text(int(time)) or match.group(0)
        return f"/{command}"

    out: list[str] = []
    last = 0
    for code in CODE.finditer(text):
        out.append(_MARKUP.sub(words, text[last : code.start()]))
        out.append(code.group(0))
        last = code.end()
    out.append(_MARKUP.sub(words, text[last:]))
    return "".join(out)


def written(message: discord.Message) -> tuple[str, bool]:
    """A message's text as written, and whether files come with it. A forwarded
    message has no text of its own (a comment on it comes as a message of its own):
    its text and files are those of the messages it forwards, its snapshots."""
    text, attached = message.content, bool(message.attachments)
    if not text and message.message_snapshots:
        snapshots = message.message_snapshots
        text = "\n\n".join(s.content for s in snapshots if s.content)
        attached = attached or any(s.attachments for s in snapshots)
    return text, attached


def question_text(text: str, names: Names, me: discord.abc.User) -> str:
    """A question as the chat API gets it: without the bot's own mention (its user,
    its role in the server) where that only addresses the bot, its name within a
    sentence (its nickname in the server), in words."""
    guild = names.guild
    role = guild.self_role if guild is not None else None
    name = ((guild.me if guild is not None else None) or me).display_name
    roles = [role.id] if role is not None else []
    return plain_text(strip_mentions(text, me.id, roles, name), names)


def author_roles(author: discord.abc.User) -> tuple[str, ...]:
    """The ids of an asker's roles in the server (none in a DM)."""
    if not isinstance(author, discord.Member):
        return ()
    # The ids as Discord sent them: `roles` would look each up in the guild's
    # cache, which is empty for a guild listed at READY whose GUILD_CREATE has
    # not come yet.
    raw = getattr(author, "_roles", None)
    if raw is None:
        return tuple(str(r.id) for r in author.roles if not r.is_default())
    return tuple(str(r) for r in raw)


def replies_to_other(message: discord.Message, me: int) -> bool:
    """Whether `message` is a reply (Discord's Reply) to someone else's message: in a
    thread the bot follows, it is said to them, not to the bot."""
    reference = message.reference
    replied = reference.resolved if reference is not None else None
    return isinstance(replied, discord.Message) and replied.author.id != me
