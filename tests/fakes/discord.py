"""A fake Discord: REST API and gateway websocket, on a loopback port.

Speaks enough of Discord's wire format for the real discord.py client to log
in, identify, receive guilds, messages, forum posts, slash-command interactions
and the deletion of messages, threads and channels, and to post, edit, type,
open threads and answer interactions. It enforces what the real service
enforces and the bridge must respect:

- message content is at most 2,000 characters (400 with Discord's error JSON);
- per-channel budgets for posting and for editing messages (429 with
  `Retry-After`, `X-RateLimit-*`, a `Via` header and a JSON `retry_after`,
  which is what discord.py needs to wait and retry), counted in `rate_limited`;
- 50 requests a second for all of the bot's (a 429 with `global: true`),
  counted in `global_limited`;
- the privileged message-content intent (gateway close 4014 when it is asked
  for but not enabled, and blank message text without it);
- REST responses with `Content-Type: application/json` exactly.

Every REST request is recorded (`requests`) with its JSON body, and channel
messages are kept (`messages`, `edits`) for assertions. Tests wait for state
with `wait_until(predicate)`, never with sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio
from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
MESSAGE_CONTENT = 1 << 15
MAX_CONTENT = 2000
SUPPRESS_EMBEDS = 1 << 2  # no preview cards under the message
EPHEMERAL = 1 << 6
LOADING = 1 << 7
HAS_SNAPSHOT = 1 << 14  # a forwarded message's flag
FORWARD = 1  # a message_reference's type for a forward
# What a message snapshot (a forwarded message, in the forward) holds of the message.
_SNAPSHOT_FIELDS = (
    "type", "content", "embeds", "attachments", "timestamp", "edited_timestamp", "flags",
    "mentions", "mention_roles", "components",
)

_counter = itertools.count(1)


def snowflake() -> str:
    """A fresh, increasing Discord id."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_counter) & 0x3FFFFF))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def attachment(filename: str) -> dict[str, Any]:
    """A file as a message carries it (uploaded to Discord's CDN)."""
    url = f"https://cdn.discordapp.example/attachments/{snowflake()}/{filename}"
    return dict(id=snowflake(), filename=filename, size=1024, url=url, proxy_url=url)


@dataclass
class Recorded:
    """One REST request as the fake saw it."""

    method: str
    path: str
    body: Any
    query: dict[str, str]
    at: float


@dataclass
class RateRule:
    """At most `count` requests in any `per`-second window (minus `tolerance`)."""

    count: int = 5
    per: float = 5.0


@dataclass
class _Gateway:
    ws: web.WebSocketResponse
    seq: int = 0
    shard: tuple[int, int] = (0, 1)
    intents: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py only parses a body as JSON when the Content-Type is exactly this.
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return web.Response(body=json.dumps(data).encode(), status=status, headers=hdrs)


def _error(status: int, code: int, message: str, errors: Any = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return _json(body, status)


async def _body(request: web.Request) -> Any:
    # aiohttp keeps the body once read, so handlers may call this again.
    raw = await request.read() if request.body_exists else b""
    return json.loads(raw) if raw else None


_GUILD_DEFAULTS: dict[str, Any] = {
    **{k: [] for k in ("emojis", "stickers", "features", "voice_states", "presences",
                       "stage_instances", "guild_scheduled_events", "soundboard_sounds")},
    **{k: 0 for k in ("verification_level", "default_message_notifications", "mfa_level",
                      "explicit_content_filter", "nsfw_level", "premium_tier",
                      "system_channel_flags")},
    "icon": None, "large": False, "unavailable": False, "preferred_locale": "en-US",
}
# Permission bits (Discord's documented values).
VIEW_CHANNEL, SEND_MESSAGES, READ_MESSAGE_HISTORY = 1 << 10, 1 << 11, 1 << 16
EMBED_LINKS, ADD_REACTIONS = 1 << 14, 1 << 6
CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS = 1 << 35, 1 << 38
# What @everyone may do in a new server, as far as the bot is concerned.
EVERYONE_DEFAULT = (VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | EMBED_LINKS
                    | ADD_REACTIONS | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS)
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class FakeDiscord:
    """The fake service. Build guilds, channels and users, then drive events."""

    def __init__(self) -> None:
        self.token = "fake.discord-bot.token"
        self.app_id = snowflake()
        self.bot: dict[str, Any] = self._user_obj(self.app_id, "bridgebot", bot=True)
        self.message_content_enabled = True
        self.ratelimit_headers = True
        self.rates = {"post": RateRule(), "edit": RateRule()}
        # Discord's limit on every request of the bot: 50 a second (None: not enforced).
        self.global_rule: RateRule | None = RateRule(50, 1.0)
        self.global_limited = 0
        self.tolerance = 0.05  # network jitter the fake forgives at a window's edge
        self.users: dict[str, dict[str, Any]] = {self.app_id: self.bot}
        self.guilds: dict[str, dict[str, Any]] = {}
        self.left: set[str] = set()  # servers the bot was removed from
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.edits: dict[str, list[str]] = {}
        self.requests: list[Recorded] = []
        self.rate_limited = 0
        self.rejected: list[Recorded] = []
        # (method, path pattern): the next such request loses its connection, unanswered
        # (as a keep-alive connection the server closed does); one entry per drop.
        self.drop: list[tuple[str, str]] = []
        # (method, path pattern, seconds): the next such request is answered (or
        # dropped) that much later, as over a slow network; one entry per request.
        self.slow: list[tuple[str, str, float]] = []
        # (method, path pattern, status, code): every such request is refused so (a
        # DM's recipient who blocked the bot: 403 50007), until the entry is removed.
        self.refuse: list[tuple[str, str, int, int]] = []
        # Guilds listed at READY whose GUILD_CREATE is held back (a big bot's
        # guilds still streaming in): discord.py knows them only by id.
        self.late_guilds: set[str] = set()
        self.commands: list[dict[str, Any]] = []
        self.interactions: dict[str, dict[str, Any]] = {}
        self.identifies: list[dict[str, Any]] = []
        self.resumes = 0
        self.gateway_down = False  # True: gateway connections are refused (an outage)
        self._sessions: dict[str, tuple[tuple[int, int], int]] = {}
        self.errors: list[str] = []
        self.gateway_shards = 1
        # Shards whose IDENTIFY is left unanswered (no READY) until `answer_identify`:
        # a process's last shards let in late (discord.py waits for every shard).
        self.unanswered_shards: set[int] = set()
        self._unanswered: list[_Gateway] = []
        self.gateways: list[_Gateway] = []
        self._windows: dict[str, deque[float]] = {}
        self._tick = asyncio.Event()
        self._runner: web.AppRunner | None = None
        # The host its URLs name (it serves on 127.0.0.1): a `.test` one for a
        # Discord reached through `FakeProxy`, as the daemon goes direct to loopback.
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/gateway", self._gateway)
        base = "/api/v10"
        r.add_get(f"{base}/users/@me", self._me)
        r.add_get(f"{base}/oauth2/applications/@me", self._application)
        r.add_get(f"{base}/gateway", self._gateway_info)
        r.add_get(f"{base}/gateway/bot", self._gateway_info)
        r.add_put(f"{base}/applications/{{app}}/commands", self._put_commands)
        r.add_get(f"{base}/channels/{{cid}}", self._get_channel)
        r.add_post(f"{base}/channels/{{cid}}/messages", self._post_message)
        r.add_patch(f"{base}/channels/{{cid}}/messages/{{mid}}", self._edit_message)
        r.add_post(f"{base}/channels/{{cid}}/typing", self._typing)
        r.add_post(f"{base}/channels/{{cid}}/messages/{{mid}}/threads", self._open_thread)
        r.add_post(f"{base}/interactions/{{iid}}/{{token}}/callback", self._callback)
        r.add_post(f"{base}/webhooks/{{app}}/{{token}}", self._followup)
        r.add_patch(f"{base}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._webhook_edit)
        r.add_delete(f"{base}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._webhook_delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        for gw in list(self.gateways):
            await gw.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"{self.url.replace('http://', 'ws://')}/gateway"

    # ------------------------------------------------------------------ world building

    @staticmethod
    def _user_obj(
        uid: str, name: str, *, bot: bool = False, global_name: str | None = None
    ) -> dict[str, Any]:
        user: dict[str, Any] = dict(
            id=uid, username=name, discriminator="0", global_name=global_name, avatar=None,
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
        return dict(id=rid, name=name, color=0, hoist=False, position=0,
                    permissions=str(permissions), managed=managed, mentionable=False, flags=0)

    async def deny_bot(self, channel_id: str, permissions: int, *, quietly: bool = False) -> None:
        """A moderator denies the bot `permissions` in a channel (an overwrite for its
        member, CHANNEL_UPDATE; none sent `quietly`, as when the bot missed it in a
        reconnect); the REST API then enforces it."""
        ch = self.channels[channel_id]
        # One overwrite per member, as Discord keeps it (discord.py reads the first).
        others = [o for o in ch["permission_overwrites"] if o["id"] != self.app_id]
        allowed, denied = 0, permissions
        for o in ch["permission_overwrites"]:
            if o["id"] == self.app_id:
                allowed, denied = allowed | int(o["allow"]), denied | int(o["deny"])
        ch["permission_overwrites"] = [
            *others,
            {"id": self.app_id, "type": 1, "allow": str(allowed & ~denied), "deny": str(denied)},
        ]
        if not quietly:
            for gw in self._gateways_for(ch["guild_id"]):
                await self._send_dispatch(gw, "CHANNEL_UPDATE", ch)
        self._changed()

    def _denied(self, channel_id: str, permission: int) -> bool:
        """Whether an overwrite denies the bot `permission` in a channel (a thread's
        are its parent's)."""
        ch = self.channels[channel_id]
        if ch.get("parent_id") and ch["type"] == 11:
            ch = self.channels.get(ch["parent_id"], ch)
        return any(
            o["id"] == self.app_id and int(o["deny"]) & permission
            for o in ch.get("permission_overwrites", ())
        )

    def _may_not_send(self, channel_id: str) -> web.Response | None:
        ch = self.channels[channel_id]
        if ch.get("guild_id") in self.left:
            return _error(403, 50001, "Missing Access")
        needed = SEND_MESSAGES_IN_THREADS if ch["type"] == 11 else SEND_MESSAGES
        if ch.get("guild_id") and self._denied(channel_id, needed):
            return _error(403, 50013, "Missing Permissions")
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
            id=cid, type=0, guild_id=guild_id, name=name, position=len(self.channels),
            permission_overwrites=[], nsfw=False, parent_id=None, topic=None,
            last_message_id=None, rate_limit_per_user=0,
        )
        return cid

    def add_forum(self, guild_id: str, name: str = "questions", *, media: bool = False) -> str:
        """A forum channel (a media channel with `media`): nothing is posted in it but
        posts, each a thread whose name is its title."""
        cid = self.add_channel(guild_id, name)
        self.channels[cid].update(
            type=16 if media else 15, available_tags=[], default_forum_layout=0,
            default_reaction_emoji=None, default_sort_order=None, flags=0,
        )
        return cid

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

    async def add_thread(self, parent_id: str, name: str, *, private: bool = False) -> str:
        """A member opens a thread in a channel (a private one: type 12, its members
        only); the bot's gateway hears of it."""
        parent = self.channels[parent_id]
        tid = snowflake()
        meta = dict(archived=False, auto_archive_duration=1440, archive_timestamp=_now_iso(),
                    locked=False, invitable=False)
        thread = dict(
            id=tid, type=12 if private else 11, guild_id=parent["guild_id"],
            parent_id=parent_id, owner_id=snowflake(), name=name, last_message_id=None,
            message_count=0, member_count=2, rate_limit_per_user=0, flags=0,
            thread_metadata=meta,
        )
        self.channels[tid] = thread
        for gw in self._gateways_for(parent["guild_id"]):
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
            roles=joined["roles"], joined_at=_now_iso(), deaf=False, mute=False, flags=0,
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
            "channels": [c for c in chans if c["type"] != 11],
            "threads": [c for c in chans if c["type"] == 11],
        }

    # ------------------------------------------------------------------ driving events

    def _new_message(
        self, channel_id: str, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        ch = self.channels.get(channel_id, {})
        ids = dict.fromkeys(_USER_MENTION.findall(content))  # each user once, as Discord lists
        mentions = [self.users[u] for u in ids if u in self.users]
        msg: dict[str, Any] = dict(
            id=snowflake(), channel_id=channel_id, author=author, content=content,
            timestamp=_now_iso(), edited_timestamp=None, tts=False, mention_everyone=False,
            mentions=mentions, mention_roles=_ROLE_MENTION.findall(content), attachments=[],
            embeds=[], components=[], pinned=False, type=0, flags=0,
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
        self, channel_id: str, user_id: str, content: str, files: tuple[str, ...] = (),
        *, source: str | None = None,
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
            channel_id, self.users[user_id], "", flags=HAS_SNAPSHOT,
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
            channel_id, self.users[user_id], content, type=19,
            message_reference={"type": 0, "message_id": to, "channel_id": channel_id,
                               **({"guild_id": replied["guild_id"]} if "guild_id" in replied
                                  else {})},
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
            content=content, edited_timestamp=_now_iso(),
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
                if u["id"] in members else u
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
                            {"message": {**snap["message"], "content": "", "embeds": [],
                                         "attachments": [], "components": []}}
                            for snap in data["message_snapshots"]
                        ]
            await self._send_dispatch(gw, kind, data)

    async def invoke(
        self, channel_id: str, user_id: str, command: str, options: dict[str, str] | None = None
    ) -> str:
        """A user runs a slash command (INTERACTION_CREATE); returns the interaction id."""
        known = {c["name"]: c for c in self.commands}
        if command not in known:
            raise AssertionError(f"/{command} was never synced (have {sorted(known)})")
        ch = self.channels[channel_id]
        iid, token = snowflake(), f"itoken-{snowflake()}"
        args = [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()]
        data: dict[str, Any] = dict(
            id=iid, application_id=self.app_id, type=2, token=token, version=1,
            channel_id=channel_id, channel={k: v for k, v in ch.items() if k != "recipients"},
            data={"id": known[command]["id"], "name": command, "type": 1, "options": args},
            app_permissions="0", locale="en-US", entitlements=[],
            authorizing_integration_owners={"0": ch.get("guild_id") or user_id},
            attachment_size_limit=8388608,
        )
        gid = ch.get("guild_id")
        if gid:
            member = {**self._member_obj(gid, user_id, with_user=True), "permissions": "0"}
            data.update(guild_id=gid, guild_locale="en-US", context=0, member=member)
        else:
            data.update(user=self.users[user_id], context=1)
        self.interactions[iid] = dict(
            id=iid, token=token, channel_id=channel_id, callback=None, original=None,
            expired=False,  # True: its token's 15 minutes are over
        )
        for gw in self._gateways_for(gid):
            await self._send_dispatch(gw, "INTERACTION_CREATE", data)
        self._changed()
        return iid

    def _gateways_for(self, guild_id: str | None) -> list[_Gateway]:
        if not self.gateways:
            raise AssertionError("no gateway connection")
        if guild_id is None:
            return [gw for gw in self.gateways if gw.shard[0] == 0][:1]
        return [gw for gw in self.gateways if (int(guild_id) >> 22) % gw.shard[1] == gw.shard[0]]

    # ------------------------------------------------------------------ assertions

    def _changed(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every change); returns it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := predicate()):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError("the fake Discord never reached the expected state")
            try:
                await asyncio.wait_for(self._tick.wait(), remaining)
            except TimeoutError:
                continue
        return result

    def delete_channel(self, channel_id: str) -> None:
        """A moderator deletes a channel: every request about it is 404 Unknown Channel."""
        del self.channels[channel_id]
        for mid in [m for m, v in self.messages.items() if v["channel_id"] == channel_id]:
            del self.messages[mid]

    async def delete_place(self, channel_id: str) -> None:
        """A moderator deletes a thread (THREAD_DELETE) or a channel with its threads
        (CHANNEL_DELETE): Discord sends no MESSAGE_DELETE for their messages."""
        ch = self.channels[channel_id]
        threads = [c for c, v in self.channels.items()
                   if v["type"] in (11, 12) and v["parent_id"] == channel_id]
        for cid in [channel_id, *threads]:
            self.delete_channel(cid)
        if ch["type"] in (11, 12):  # the fields discord.py's parse_thread_delete reads
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
            if m["channel_id"] == channel_id
            and (not bot_only or m["author"]["id"] == self.app_id)
        ]
        return sorted(found, key=lambda m: int(m["id"]))

    def sent(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests whose path matches the regex `pattern`."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def message_writes(self) -> list[Recorded]:
        """Every request that created or changed message content."""
        def writes(r: Recorded) -> bool:
            if r.path.endswith("/callback"):
                return isinstance(r.body, dict) and r.body.get("type") == 4
            if r.method == "POST" and "/webhooks/" in r.path:
                return True
            content = re.search(r"/messages(/\d+|/@original)?$", r.path) is not None
            return r.method in ("POST", "PATCH") and content

        return [r for r in self.requests if writes(r)]

    # ------------------------------------------------------------------ REST

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        body = await _body(request)
        rec = Recorded(request.method, request.path, body, dict(request.query), time.monotonic())
        self.requests.append(rec)
        needs_auth = "/interactions/" not in request.path and "/webhooks/" not in request.path
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        for i, (method, pattern, seconds) in enumerate(self.slow):
            if request.method == method and re.search(pattern, request.path):
                del self.slow[i]
                await asyncio.sleep(seconds)
                break
        for i, (method, pattern) in enumerate(self.drop):
            if request.method == method and re.search(pattern, request.path):
                del self.drop[i]
                self._changed()  # a test may wait for the drop to happen
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=204)  # never reaches the client
        if needs_auth and self.global_rule is not None:
            refused = self._global_limit(self.global_rule)
            if refused is not None:
                return refused
        try:
            refusal = next(
                ((status, code) for method, pattern, status, code in self.refuse
                 if request.method == method and re.search(pattern, request.path)),
                None,
            )
            if refusal is not None:
                response = _error(*refusal, "Refused")
            else:
                response = await handler(request)
        except Exception as exc:  # a bug in the fake: fail the test, not only this request
            self.errors.append(f"{request.method} {request.path}: {exc!r}")
            raise
        if response.status >= 400 and response.status != 429:
            self.rejected.append(rec)
        self._changed()
        return response

    def _global_limit(self, rule: RateRule) -> web.Response | None:
        """Discord's per-bot limit on all requests: a 429 with `global: true`, or None."""
        now = time.monotonic()
        window = self._windows.setdefault("@global", deque())
        while window and window[0] <= now - rule.per + self.tolerance:
            window.popleft()
        if len(window) < rule.count:
            window.append(now)
            return None
        self.global_limited += 1
        wait = window[0] + rule.per - now
        headers = {"Via": "1.1 google", "Retry-After": str(max(1, round(wait))),
                   "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
        body = {"message": "You are being rate limited.", "retry_after": round(wait, 3),
                "global": True}
        return _json(body, 429, headers)

    def _limit(self, key: str, rule: RateRule) -> tuple[web.Response | None, dict[str, str]]:
        """Count one request against `key`'s window: (a 429 response, or None; headers)."""
        now = time.monotonic()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - rule.per + self.tolerance:
            window.popleft()
        over = len(window) >= rule.count
        if not over:
            window.append(now)
        reset_after = window[0] + rule.per - now
        headers = {
            "Via": "1.1 google",  # discord.py retries a 429 only when this is present
            "X-RateLimit-Bucket": f"fake-{key.split(':')[0]}",
            "X-RateLimit-Limit": str(rule.count),
            "X-RateLimit-Remaining": str(rule.count - len(window)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if over:
            self.rate_limited += 1
            headers["Retry-After"] = str(max(1, round(reset_after)))
            headers["X-RateLimit-Scope"] = "user"
            body = {"message": "You are being rate limited.", "retry_after": round(reset_after, 3),
                    "global": False}
            return _json(body, 429, headers), {}
        return None, (headers if self.ratelimit_headers else {})

    def _admit(
        self, body: Any, key: str, kind: str, *, require: bool
    ) -> tuple[web.Response | None, dict[str, str]]:
        """Content limits first, then the rate limit: (a refusal or None, headers)."""
        content = (body or {}).get("content")
        if content is not None and len(content) > MAX_CONTENT:
            problem = {"code": "BASE_TYPE_MAX_LENGTH",
                       "message": f"Must be {MAX_CONTENT} or fewer in length."}
            errors = {"content": {"_errors": [problem]}}
            return _error(400, 50035, "Invalid Form Body", errors), {}
        # Discord trims the content: whitespace alone is an empty message, refused on a
        # post (no content) and on an edit (content given) unless embeds show something.
        blank = not (content or "").strip()
        if blank and (require or content is not None) and not (body or {}).get("embeds"):
            return _error(400, 50006, "Cannot send an empty message"), {}
        return self._limit(key, self.rates[kind])

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot)

    async def _application(self, request: web.Request) -> web.Response:
        # flags: GATEWAY_MESSAGE_CONTENT_LIMITED (1 << 19) when the intent is enabled
        return _json(dict(
            id=self.app_id, name=self.bot["username"], icon=None, description="", rpc_origins=[],
            bot_public=True, bot_require_code_grant=False, verify_key="0" * 64,
            flags=(1 << 19) if self.message_content_enabled else 0, owner=self.bot, team=None,
            interactions_endpoint_url=None,
        ))

    async def _gateway_info(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json(
            {"url": self.gateway_url, "shards": self.gateway_shards, "session_start_limit": limit}
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        self.commands = [
            {**c, "id": snowflake(), "application_id": self.app_id, "version": snowflake()}
            for c in await _body(request)
        ]
        return _json(self.commands)

    async def _get_channel(self, request: web.Request) -> web.Response:
        ch = self.channels.get(request.match_info["cid"])
        if ch is None:
            return _error(404, 10003, "Unknown Channel")
        return _json(ch)

    async def _typing(self, request: web.Request) -> web.Response:
        if request.match_info["cid"] not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        return self._may_not_send(request.match_info["cid"]) or web.Response(status=204)

    async def _post_message(self, request: web.Request) -> web.Response:
        cid, body = request.match_info["cid"], await _body(request) or {}
        if cid not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        if (forbidden := self._may_not_send(cid)) is not None:
            return forbidden
        if self.channels[cid]["type"] in (15, 16):  # a forum takes posts, not messages
            return _error(400, 50008, "Cannot send messages in a non-text channel")
        if (
            body.get("message_reference") and self.channels[cid].get("guild_id")
            and self._denied(cid, READ_MESSAGE_HISTORY)
        ):  # a reply needs Read Message History
            return _error(403, 50013, "Missing Permissions")
        refused, headers = self._admit(body, f"post:{cid}", "post", require=True)
        if refused is not None:
            return refused
        extra: dict[str, Any] = {}
        if body.get("flags"):  # SUPPRESS_EMBEDS: no preview cards under it
            extra["flags"] = int(body["flags"])
        ref = body.get("message_reference")
        if ref:  # Discord answers with string ids
            extra["message_reference"] = {k: str(v) if k.endswith("_id") else v
                                          for k, v in ref.items()}
            extra["type"] = 19
        msg = self._new_message(cid, self.bot, body.get("content") or "", **extra)
        self.edits[msg["id"]] = []
        await self._dispatch_message(msg)
        return _json(msg, headers=headers)

    async def _edit_message(self, request: web.Request) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        if cid not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        msg = self.messages.get(mid)
        if msg is None or msg["channel_id"] != cid:
            return _error(404, 10008, "Unknown Message")
        if msg["author"]["id"] != self.app_id:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        body = await _body(request) or {}
        refused, headers = self._admit(body, f"edit:{cid}", "edit", require=False)
        if refused is not None:
            return refused
        self._apply_edit(msg, body)
        return _json(msg, headers=headers)

    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        if "content" in body:
            msg["content"] = body["content"] or ""
            msg["edited_timestamp"] = _now_iso()
            self.edits.setdefault(msg["id"], []).append(msg["content"])
        if "flags" in body and body["flags"] is not None:
            # An edit sets or clears SUPPRESS_EMBEDS only; the message's other flags stay.
            msg["flags"] = msg["flags"] & ~SUPPRESS_EMBEDS | int(body["flags"]) & SUPPRESS_EMBEDS
        msg["flags"] &= ~LOADING

    async def _open_thread(self, request: web.Request) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        parent, msg = self.channels.get(cid), self.messages.get(mid)
        if parent is None or msg is None or parent["type"] != 0:
            return _error(404, 10008, "Unknown Message")
        body = await _body(request) or {}
        name = body.get("name") or ""
        if not 1 <= len(name) <= 100:
            errors = {"name": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "bad"}]}}
            return _error(400, 50035, "Invalid Form Body", errors)
        if mid in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        meta = dict(archived=False, auto_archive_duration=body.get("auto_archive_duration", 1440),
                    archive_timestamp=_now_iso(), locked=False)
        thread = dict(
            id=mid,  # Discord: a thread opened on a message has the message's id
            type=11, guild_id=parent["guild_id"], parent_id=cid, owner_id=self.app_id, name=name,
            last_message_id=None, message_count=0, member_count=1, rate_limit_per_user=0,
            flags=0, thread_metadata=meta,
        )
        self.channels[mid] = thread
        msg["thread"] = thread
        for gw in self._gateways_for(parent["guild_id"]):
            await self._send_dispatch(gw, "THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, 201)

    # ------------------------------------------------------------------ interactions

    def _interaction(self, token: str) -> dict[str, Any] | None:
        return next((i for i in self.interactions.values() if i["token"] == token), None)

    def _webhook_message(self, it: dict[str, Any], content: str, flags: int) -> dict[str, Any]:
        msg = self._new_message(it["channel_id"], self.bot, content, flags=flags,
                                webhook_id=self.app_id, application_id=self.app_id, type=20)
        self.edits[msg["id"]] = []
        return msg

    async def _callback(self, request: web.Request) -> web.Response:
        it = self.interactions.get(request.match_info["iid"])
        if it is None or it["token"] != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        if it["callback"] is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = await _body(request) or {}
        data = body.get("data") or {}
        refused, _ = self._admit(data, f"callback:{it['id']}", "post", require=False)
        if refused is not None:
            return refused
        kind = body.get("type")
        flags = int(data.get("flags") or 0)
        if kind == 5:
            msg = self._webhook_message(it, "", flags | LOADING)
        elif kind == 4:
            msg = self._webhook_message(it, data.get("content") or "", flags)
        else:
            return _error(400, 50035, "Invalid Form Body")
        it["callback"], it["original"] = kind, msg["id"]
        reply = {
            "interaction": dict(
                id=it["id"], type=2, response_message_id=msg["id"],
                response_message_loading=kind == 5,
                response_message_ephemeral=bool(flags & EPHEMERAL),
            ),
            "resource": {"type": kind, "message": msg},
        }
        if request.query.get("with_response") in ("1", "true"):
            return _json(reply)
        return web.Response(status=204)

    def _webhook(self, request: web.Request) -> tuple[dict[str, Any], str] | web.Response:
        """The interaction a webhook request is for and the message it names (its
        original response for `@original`), or Discord's answer to an unknown one."""
        it = self._interaction(request.match_info["token"])
        if it is None or it["callback"] is None:
            return _error(404, 10015, "Unknown Webhook")
        if it["expired"]:
            return _error(401, 50027, "Invalid Webhook Token")
        mid = request.match_info.get("mid", "")
        return it, it["original"] if mid == "@original" else mid

    async def _followup(self, request: web.Request) -> web.Response:
        found = self._webhook(request)
        if isinstance(found, web.Response):
            return found
        it, _ = found
        body = await _body(request) or {}
        refused, headers = self._admit(body, f"post:{it['token']}", "post", require=True)
        if refused is not None:
            return refused
        msg = self._webhook_message(it, body.get("content") or "", int(body.get("flags") or 0))
        return _json(msg, headers=headers)

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        found = self._webhook(request)
        if isinstance(found, web.Response):
            return found
        it, mid = found
        msg = self.messages.get(mid)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        body = await _body(request) or {}
        refused, headers = self._admit(body, f"edit:{it['token']}", "edit", require=False)
        if refused is not None:
            return refused
        self._apply_edit(msg, body)
        return _json(msg, headers=headers)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        found = self._webhook(request)
        if isinstance(found, web.Response):
            return found
        _, mid = found
        if self.messages.pop(mid, None) is None:
            return _error(404, 10008, "Unknown Message")
        self._changed()
        return web.Response(status=204)

    # ------------------------------------------------------------------ gateway

    async def _send(self, gw: _Gateway, payload: dict[str, Any]) -> None:
        async with gw.lock:
            await gw.ws.send_str(json.dumps(payload))

    async def _send_dispatch(self, gw: _Gateway, event: str, data: Any) -> None:
        async with gw.lock:
            gw.seq += 1
            await gw.ws.send_str(json.dumps({"op": 0, "t": event, "s": gw.seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return web.Response(status=503, text="Discord is down")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        gw = _Gateway(ws)
        await self._send(gw, {"op": 10, "d": {"heartbeat_interval": 41250}})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                op = payload.get("op")
                if op == 1:
                    await self._send(gw, {"op": 11})
                elif op == 2:
                    await self._identify(gw, payload["d"])
                elif op == 6:
                    await self._resume(gw, payload["d"])
        except Exception as exc:  # a bug in the fake: fail the test
            self.errors.append(f"gateway: {exc!r}")
            raise
        finally:
            if gw in self.gateways:
                self.gateways.remove(gw)
            self._changed()
        return ws

    async def _identify(self, gw: _Gateway, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if data.get("token") != self.token:
            await gw.ws.close(code=4004, message=b"Authentication failed.")
            return
        gw.intents = int(data.get("intents") or 0)
        if gw.intents & MESSAGE_CONTENT and not self.message_content_enabled:
            await gw.ws.close(code=4014, message=b"Disallowed intent(s).")
            self._changed()
            return
        gw.shard = tuple(data.get("shard") or (0, 1))  # type: ignore[assignment]
        if gw.shard[0] in self.unanswered_shards:
            self._unanswered.append(gw)
            self._changed()
            return
        await self._ready(gw)

    async def answer_identify(self, shard: int) -> None:
        """Answer the IDENTIFY of `shard` left unanswered (`unanswered_shards`), and any later."""
        self.unanswered_shards.discard(shard)
        for gw in [g for g in self._unanswered if g.shard[0] == shard]:
            self._unanswered.remove(gw)
            if not gw.ws.closed:
                await self._ready(gw)

    async def _ready(self, gw: _Gateway) -> None:
        mine = [g for g in self.guilds if (int(g) >> 22) % gw.shard[1] == gw.shard[0]]
        session_id = snowflake()
        self._sessions[session_id] = (gw.shard, gw.intents)
        ready = dict(
            v=10, user=self.bot, guilds=[{"id": g, "unavailable": True} for g in mine],
            session_id=session_id, resume_gateway_url=self.gateway_url,
            application={"id": self.app_id, "flags": 0}, shard=list(gw.shard),
            private_channels=[], relationships=[],
        )
        await self._send_dispatch(gw, "READY", ready)
        for gid in mine:
            if gid not in self.late_guilds:
                await self._send_dispatch(gw, "GUILD_CREATE", self._guild_create(gid))
        self.gateways.append(gw)
        self._changed()


    async def _resume(self, gw: _Gateway, data: dict[str, Any]) -> None:
        known = self._sessions.get(data.get("session_id") or "")
        if known is None or data.get("token") != self.token:
            await self._send(gw, {"op": 9, "d": False})  # not resumable: identify again
            return
        gw.shard, gw.intents = known
        gw.seq = int(data.get("seq") or 0)
        await self._send_dispatch(gw, "RESUMED", {})
        self.resumes += 1
        self.gateways.append(gw)
        self._changed()

    async def drop_gateways(
        self, code: int = 1001, *, shard: int | None = None, forget: bool = False
    ) -> None:
        """Close every gateway connection (or `shard`'s) from the server side (Discord
        restarting); `forget`: their sessions cannot be resumed, they identify again."""
        for gw in [g for g in self.gateways if shard is None or g.shard[0] == shard]:
            if forget:
                self._sessions = {k: v for k, v in self._sessions.items() if v[0] != gw.shard}
            self.gateways.remove(gw)
            await gw.ws.close(code=code, message=b"going away")
        self._changed()


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A running fake Discord on a free loopback port."""
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.aclose()
    assert not fake.errors, f"the fake Discord failed: {fake.errors}"
