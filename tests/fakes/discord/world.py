"""The fake Discord's world: users, guilds, roles, channels, threads and permissions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState
from tests.fakes.discord.wire import (
    _GUILD_DEFAULTS,
    EVERYONE_DEFAULT,
    MANAGE_THREADS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    THREAD_TYPES,
    _error,
    _now_iso,
    snowflake,
)


class World(DiscordState):
    """Building the guilds the bot is in, and their moderators' changes to them."""

    @staticmethod
    def _user_obj(
        uid: str, name: str, *, bot: bool = False, global_name: str | None = None
    ) -> dict[str, Any]:
        user: dict[str, Any] = dict(
            id=uid,
            username=name,
            discriminator="0",
            global_name=global_name,
            avatar=None,
            public_flags=0,
        )
        if bot:
            user["bot"] = True
        return user

    def add_user(self, name: str = "asker", global_name: str | None = None) -> str:
        """A user; `global_name` is their display name (`name` is the username)."""
        uid = snowflake()
        self.users[uid] = self._user_obj(uid, name, global_name=global_name)
        return uid

    def add_guild(self, name: str = "guild") -> str:
        gid = snowflake()
        everyone = self._role(gid, "@everyone", permissions=EVERYONE_DEFAULT)
        bot_role = self._role(snowflake(), self.bot["username"], managed=True)
        bot_role["tags"] = {"bot_id": self.app_id}
        owner = self.add_user(f"{name} owner")  # a person: the owner may do anything
        self.guilds[gid] = {
            "id": gid,
            "name": name,
            "owner_id": owner,
            "roles": [everyone, bot_role],
            "members": {self.app_id: {"roles": [bot_role["id"]]}, owner: {"roles": []}},
        }
        return gid

    @staticmethod
    def _role(
        rid: str, name: str, *, managed: bool = False, permissions: int = 0
    ) -> dict[str, Any]:
        return dict(
            id=rid,
            name=name,
            color=0,
            hoist=False,
            position=0,
            permissions=str(permissions),
            managed=managed,
            mentionable=False,
            flags=0,
        )

    async def deny_bot(self, channel_id: str, permissions: int, *, quietly: bool = False) -> None:
        """A moderator denies the bot `permissions` in a channel (an overwrite for its
        member, CHANNEL_UPDATE; none sent `quietly`, as when the bot missed it in a
        reconnect); the REST API then enforces it."""
        await self._overwrite_bot(channel_id, 0, permissions, quietly)

    async def allow_bot(self, channel_id: str, permissions: int, *, quietly: bool = False) -> None:
        """A moderator allows the bot `permissions` in a channel (as `deny_bot`)."""
        await self._overwrite_bot(channel_id, permissions, 0, quietly)

    async def _overwrite_bot(self, channel_id: str, allow: int, deny: int, quietly: bool) -> None:
        ch = self.channels[channel_id]
        # One overwrite per member, as Discord keeps it (discord.py reads the first).
        others = [o for o in ch["permission_overwrites"] if o["id"] != self.app_id]
        allowed, denied = allow, deny
        for o in ch["permission_overwrites"]:
            if o["id"] == self.app_id:
                allowed |= int(o["allow"]) & ~deny
                denied |= int(o["deny"]) & ~allow
        ch["permission_overwrites"] = [
            *others,
            {"id": self.app_id, "type": 1, "allow": str(allowed), "deny": str(denied)},
        ]
        if not quietly:
            for gw in self._gateways_for(ch["guild_id"]):
                await self._send_dispatch(gw, "CHANNEL_UPDATE", ch)
        self._changed()

    async def lock_thread(
        self, thread_id: str, locked: bool = True, *, quietly: bool = False
    ) -> None:
        """A moderator locks a thread (unlocks it: `locked` False), THREAD_UPDATE (none sent
        `quietly`); then only members with Manage Threads may post in it."""
        thread = self.channels[thread_id]
        thread["thread_metadata"]["locked"] = locked
        if not quietly:
            for gw in self._gateways_for(thread["guild_id"]):
                await self._send_dispatch(gw, "THREAD_UPDATE", thread)
        self._changed()

    def _overwritten(self, channel_id: str) -> dict[str, Any]:
        """The channel whose overwrites count in `channel_id` (a thread's parent)."""
        ch = self.channels[channel_id]
        if ch.get("parent_id") and ch["type"] in THREAD_TYPES:
            ch = self.channels.get(ch["parent_id"], ch)
        return ch

    def _denied(self, channel_id: str, permission: int) -> bool:
        """Whether an overwrite denies the bot `permission` in a channel (a thread's
        are its parent's)."""
        return any(
            o["id"] == self.app_id and int(o["deny"]) & permission
            for o in self._overwritten(channel_id).get("permission_overwrites", ())
        )

    def _bot_may(self, channel_id: str, permission: int) -> bool:
        """Whether the bot has `permission` in a guild's channel: its roles' (@everyone's
        among them), as its own overwrite there changes them."""
        ch = self._overwritten(channel_id)
        guild = self.guilds[ch["guild_id"]]
        mine = {guild["id"], *guild["members"][self.app_id]["roles"]}
        granted = 0
        for role in guild["roles"]:
            if role["id"] in mine:
                granted |= int(role["permissions"])
        for o in ch.get("permission_overwrites", ()):
            if o["id"] == self.app_id:
                granted = (granted & ~int(o["deny"])) | int(o["allow"])
        return bool(granted & permission)

    def _may_not_send(self, channel_id: str) -> web.Response | None:
        ch = self.channels[channel_id]
        if ch.get("guild_id") in self.left:
            return _error(403, 50001, "Missing Access")
        thread = ch["type"] in THREAD_TYPES
        needed = SEND_MESSAGES_IN_THREADS if thread else SEND_MESSAGES
        if ch.get("guild_id") and self._denied(channel_id, needed):
            return _error(403, 50013, "Missing Permissions")
        if (
            thread
            and ch.get("thread_metadata", {}).get("locked")
            and not self._bot_may(channel_id, MANAGE_THREADS)
        ):  # only those who may manage threads post in a locked one
            return _error(403, 160005, "Thread is locked")
        return None

    def add_role(self, guild_id: str, name: str) -> str:
        rid = snowflake()
        self.guilds[guild_id]["roles"].append(self._role(rid, name))
        return rid

    def add_member(
        self, guild_id: str, user_id: str, roles: list[str] | None = None, nick: str | None = None
    ) -> None:
        """`user_id` joins the guild, with `roles` and a server nickname `nick`."""
        self.guilds[guild_id]["members"][user_id] = {"roles": list(roles or []), "nick": nick}

    def add_channel(self, guild_id: str, name: str = "general") -> str:
        cid = snowflake()
        self.channels[cid] = dict(
            id=cid,
            type=0,
            guild_id=guild_id,
            name=name,
            position=len(self.channels),
            permission_overwrites=[],
            nsfw=False,
            parent_id=None,
            topic=None,
            last_message_id=None,
            rate_limit_per_user=0,
        )
        return cid

    def add_forum(self, guild_id: str, name: str = "questions", *, media: bool = False) -> str:
        """A forum channel (a media channel with `media`): nothing is posted in it but
        posts, each a thread whose name is its title."""
        cid = self.add_channel(guild_id, name)
        self.channels[cid].update(
            type=16 if media else 15,
            available_tags=[],
            default_forum_layout=0,
            default_reaction_emoji=None,
            default_sort_order=None,
            flags=0,
        )
        return cid

    async def add_thread(
        self, parent_id: str, name: str, *, private: bool = False, quietly: bool = False
    ) -> str:
        """A member opens a thread in a channel (a private one: type 12, its members
        only); the bot's gateway hears of it (THREAD_CREATE, or GUILD_CREATE later;
        nothing `quietly`, as of a private thread the bot is not yet a member of)."""
        parent = self.channels[parent_id]
        tid = snowflake()
        meta = dict(
            archived=False,
            auto_archive_duration=1440,
            archive_timestamp=_now_iso(),
            locked=False,
            invitable=False,
        )
        thread = dict(
            id=tid,
            type=12 if private else 11,
            guild_id=parent["guild_id"],
            parent_id=parent_id,
            owner_id=snowflake(),
            name=name,
            last_message_id=None,
            message_count=0,
            member_count=2,
            rate_limit_per_user=0,
            flags=0,
            thread_metadata=meta,
        )
        self.channels[tid] = thread
        # Opened before the bot connects, it is among GUILD_CREATE's threads instead.
        for gw in self._gateways_for(parent["guild_id"]) if self.gateways and not quietly else ():
            await self._send_dispatch(gw, "THREAD_CREATE", {**thread, "newly_created": True})
        return tid

    def dm_channel(self, user_id: str) -> str:
        for cid, ch in self.channels.items():
            if ch["type"] == 1 and ch["recipients"][0]["id"] == user_id:
                return cid
        cid = snowflake()
        self.channels[cid] = dict(
            id=cid, type=1, recipients=[self.users[user_id]], last_message_id=None
        )
        return cid

    def _member_obj(self, guild_id: str, user_id: str, *, with_user: bool) -> dict[str, Any]:
        joined = self.guilds[guild_id]["members"].get(user_id, {"roles": []})
        member: dict[str, Any] = dict(
            roles=joined["roles"],
            joined_at=_now_iso(),
            deaf=False,
            mute=False,
            flags=0,
            nick=joined.get("nick"),
        )
        if with_user:
            member["user"] = self.users[user_id]
        return member

    def _guild_create(self, gid: str) -> dict[str, Any]:
        guild = self.guilds[gid]
        chans = [c for c in self.channels.values() if c.get("guild_id") == gid]
        return {
            **_GUILD_DEFAULTS,
            "id": gid,
            "name": guild["name"],
            "owner_id": guild["owner_id"],
            "roles": guild["roles"],
            "member_count": len(guild["members"]),
            "members": [self._member_obj(gid, u, with_user=True) for u in guild["members"]],
            "channels": [c for c in chans if c["type"] not in THREAD_TYPES],
            "threads": [c for c in chans if c["type"] in THREAD_TYPES],
        }

    def delete_channel(self, channel_id: str) -> None:
        """A moderator deletes a channel: every request about it is 404 Unknown Channel."""
        del self.channels[channel_id]
        for mid in [m for m, v in self.messages.items() if v["channel_id"] == channel_id]:
            del self.messages[mid]

    async def delete_place(self, channel_id: str) -> None:
        """A moderator deletes a thread (THREAD_DELETE) or a channel with its threads
        (CHANNEL_DELETE): Discord sends no MESSAGE_DELETE for their messages."""
        ch = self.channels[channel_id]
        threads = [
            c
            for c, v in self.channels.items()
            if v["type"] in THREAD_TYPES and v["parent_id"] == channel_id
        ]
        for cid in [channel_id, *threads]:
            self.delete_channel(cid)
        if ch["type"] in THREAD_TYPES:  # the fields discord.py's parse_thread_delete reads
            event = "THREAD_DELETE"
            data = {k: ch[k] for k in ("id", "type", "guild_id", "parent_id")}
        else:  # the channel object, as parse_channel_delete reads it
            event, data = "CHANNEL_DELETE", ch
        for gw in self._gateways_for(ch["guild_id"]):
            await self._send_dispatch(gw, event, data)
        self._changed()

    async def remove_bot(self, guild_id: str) -> None:
        """The server's admins kick the bot: GUILD_DELETE without `unavailable`, and
        every post in its channels is 403 Missing Access."""
        self.left.add(guild_id)
        for gw in self._gateways_for(guild_id):
            await self._send_dispatch(gw, "GUILD_DELETE", {"id": guild_id})
        self._changed()
