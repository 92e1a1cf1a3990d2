"""Discord's wire: ids, flags, permission bits and the JSON of its REST answers."""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

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
    "type",
    "content",
    "embeds",
    "attachments",
    "timestamp",
    "edited_timestamp",
    "flags",
    "mentions",
    "mention_roles",
    "components",
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
    **{
        k: []
        for k in (
            "emojis",
            "stickers",
            "features",
            "voice_states",
            "presences",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
        )
    },
    **{
        k: 0
        for k in (
            "verification_level",
            "default_message_notifications",
            "mfa_level",
            "explicit_content_filter",
            "nsfw_level",
            "premium_tier",
            "system_channel_flags",
        )
    },
    "icon": None,
    "large": False,
    "unavailable": False,
    "preferred_locale": "en-US",
}


# Permission bits (Discord's documented values).
VIEW_CHANNEL, SEND_MESSAGES, READ_MESSAGE_HISTORY = 1 << 10, 1 << 11, 1 << 16


EMBED_LINKS, ADD_REACTIONS = 1 << 14, 1 << 6


CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS = 1 << 35, 1 << 38


MANAGE_THREADS = 1 << 34  # also: post in a locked thread


# Channel types that are threads: an announcement channel's, a public and a private one.
THREAD_TYPES = (10, 11, 12)


# What @everyone may do in a new server, as far as the bot is concerned.
EVERYONE_DEFAULT = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | READ_MESSAGE_HISTORY
    | EMBED_LINKS
    | ADD_REACTIONS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)


_USER_MENTION = re.compile(r"<@!?(\d+)>")


_ROLE_MENTION = re.compile(r"<@&(\d+)>")
