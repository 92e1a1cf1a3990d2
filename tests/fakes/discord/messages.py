"""The fake Discord's messages: what users post, edit and delete, and what is kept."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord.state import DiscordState
from tests.fakes.discord.wire import (
    _ROLE_MENTION,
    _SNAPSHOT_FIELDS,
    _USER_MENTION,
    FORWARD,
    HAS_SNAPSHOT,
    MESSAGE_CONTENT,
    _now_iso,
    attachment,
    snowflake,
)


class Messages(DiscordState):
    """Messages in channels: users' posts, edits and deletions, sent over the gateway."""

    async def add_post(
        self, forum_id: str, user_id: str, title: str, content: str = "", **extra: Any
    ) -> dict[str, Any]:
        """A member posts in a forum: the post's thread (THREAD_CREATE), then its first
        message, whose id is the thread's (MESSAGE_CREATE); returns that message."""
        tid = await self.add_thread(forum_id, title)
        msg = self._new_message(tid, self.users[user_id], content, id=tid, **extra)
        await self._dispatch_message(msg)
        self._changed()
        return msg

    def _new_message(
        self, channel_id: str, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        ch = self.channels.get(channel_id, {})
        ids = dict.fromkeys(_USER_MENTION.findall(content))  # each user once, as Discord lists
        mentions = [self.users[u] for u in ids if u in self.users]
        msg: dict[str, Any] = dict(
            id=snowflake(),
            channel_id=channel_id,
            author=author,
            content=content,
            timestamp=_now_iso(),
            edited_timestamp=None,
            tts=False,
            mention_everyone=False,
            mentions=mentions,
            mention_roles=_ROLE_MENTION.findall(content),
            attachments=[],
            embeds=[],
            components=[],
            pinned=False,
            type=0,
            flags=0,
        )
        if ch.get("guild_id"):
            msg["guild_id"] = ch["guild_id"]
        msg.update(extra)
        self.messages[msg["id"]] = msg
        return msg

    async def say(
        self, channel_id: str, user_id: str, content: str, files: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A user posts `content` in a channel, thread or DM channel (MESSAGE_CREATE),
        with the files named `files` attached."""
        msg = self._new_message(
            channel_id, self.users[user_id], content, attachments=[attachment(f) for f in files]
        )
        await self._dispatch_message(msg)
        self._changed()
        return msg

    async def forward(
        self,
        channel_id: str,
        user_id: str,
        content: str,
        files: tuple[str, ...] = (),
        *,
        source: str | None = None,
    ) -> dict[str, Any]:
        """A user forwards a message of theirs (`content`, with `files`) from `source`
        (another channel) to `channel_id`: the forward is a message of its own with no
        text, the forwarded one a snapshot in it."""
        source = source or channel_id
        original = self._new_message(
            source, self.users[user_id], content, attachments=[attachment(f) for f in files]
        )
        reference = {"type": FORWARD, "message_id": original["id"], "channel_id": source}
        if "guild_id" in original:
            reference["guild_id"] = original["guild_id"]
        msg = self._new_message(
            channel_id,
            self.users[user_id],
            "",
            flags=HAS_SNAPSHOT,
            message_reference=reference,
            message_snapshots=[{"message": {k: original[k] for k in _SNAPSHOT_FIELDS}}],
        )
        await self._dispatch_message(msg)
        self._changed()
        return msg

    async def redeliver(self, msg: dict[str, Any]) -> None:
        """Dispatch a message again, as a gateway replay after a resume does."""
        await self._dispatch_message(msg)
        self._changed()

    async def reply(
        self, channel_id: str, user_id: str, to: str, content: str, *, ping: bool = True
    ) -> dict[str, Any]:
        """A user replies to message `to`: its author is in `mentions` only with `ping`
        (the client's "@ON", its default), though the text does not mention them."""
        replied = self.messages[to]
        msg = self._new_message(
            channel_id,
            self.users[user_id],
            content,
            type=19,
            message_reference={
                "type": 0,
                "message_id": to,
                "channel_id": channel_id,
                **({"guild_id": replied["guild_id"]} if "guild_id" in replied else {}),
            },
            referenced_message=replied,
        )
        if ping and replied["author"] not in msg["mentions"]:
            msg["mentions"] = [*msg["mentions"], replied["author"]]
        await self._dispatch_message(msg)
        self._changed()
        return msg

    async def edit(self, message_id: str, content: str) -> dict[str, Any]:
        """Its author edits message `message_id` to say `content` (MESSAGE_UPDATE, a
        full message, as Discord sends for an edit)."""
        msg = self.messages[message_id]
        ids = dict.fromkeys(_USER_MENTION.findall(content))
        msg.update(
            content=content,
            edited_timestamp=_now_iso(),
            mentions=[self.users[u] for u in ids if u in self.users],
            mention_roles=_ROLE_MENTION.findall(content),
        )
        await self._dispatch_message(msg, "MESSAGE_UPDATE")
        self._changed()
        return msg

    async def unfurl(self, message_id: str) -> None:
        """Discord fills in the preview of a link in message `message_id`: a MESSAGE_UPDATE
        (of the whole message, as every one is) that is no edit: `edited_timestamp` as it was."""
        self.messages[message_id]["embeds"] = [{"type": "link", "url": "https://example.com/"}]
        await self._dispatch_message(self.messages[message_id], "MESSAGE_UPDATE")
        self._changed()

    async def mention(
        self, channel_id: str, user_id: str, text: str, files: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A user mentions the bot: `<@bot> text`."""
        return await self.say(channel_id, user_id, f"<@{self.app_id}> {text}", files)

    async def dm(self, user_id: str, content: str) -> dict[str, Any]:
        return await self.say(self.dm_channel(user_id), user_id, content)

    async def _dispatch_message(self, msg: dict[str, Any], kind: str = "MESSAGE_CREATE") -> None:
        event = dict(msg)
        gid = event.get("guild_id")
        if gid and not event["author"].get("bot"):
            event["member"] = self._member_obj(gid, event["author"]["id"], with_user=False)
        if gid:
            # In a guild, a mentioned member comes with their member data (nickname, roles).
            members = self.guilds[gid]["members"]
            event["mentions"] = [
                {**u, "member": self._member_obj(gid, u["id"], with_user=False)}
                if u["id"] in members
                else u
                for u in event["mentions"]
            ]
        for gw in self._gateways_for(gid):
            data = dict(event)
            if gid and not gw.intents & MESSAGE_CONTENT:
                mentioned = any(u["id"] == self.app_id for u in data["mentions"])
                if not mentioned and data["author"]["id"] != self.app_id:
                    data.update(content="", embeds=[], attachments=[], components=[])
                    if "message_snapshots" in data:  # a forward's: blank as well
                        data["message_snapshots"] = [
                            {
                                "message": {
                                    **snap["message"],
                                    "content": "",
                                    "embeds": [],
                                    "attachments": [],
                                    "components": [],
                                }
                            }
                            for snap in data["message_snapshots"]
                        ]
            await self._send_dispatch(gw, kind, data)

    async def delete_message(self, message_id: str) -> None:
        """A moderator deletes a message (MESSAGE_DELETE); a thread opened on it stays."""
        msg = self.messages.pop(message_id)
        gid = msg.get("guild_id")
        data = {"id": message_id, "channel_id": msg["channel_id"]}
        if gid:
            data["guild_id"] = gid
        for gw in self._gateways_for(gid):
            await self._send_dispatch(gw, "MESSAGE_DELETE", data)
        self._changed()

    async def delete_messages(self, message_ids: list[str]) -> None:
        """A moderator deletes several messages of one channel at once
        (MESSAGE_DELETE_BULK)."""
        msgs = [self.messages.pop(mid) for mid in message_ids]
        gid = msgs[0].get("guild_id")
        data = {"ids": message_ids, "channel_id": msgs[0]["channel_id"]}
        if gid:
            data["guild_id"] = gid
        for gw in self._gateways_for(gid):
            await self._send_dispatch(gw, "MESSAGE_DELETE_BULK", data)
        self._changed()

    def channel_messages(self, channel_id: str, *, bot_only: bool = True) -> list[dict[str, Any]]:
        found = [
            m
            for m in self.messages.values()
            if m["channel_id"] == channel_id and (not bot_only or m["author"]["id"] == self.app_id)
        ]
        return sorted(found, key=lambda m: int(m["id"]))
