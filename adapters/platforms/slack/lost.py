"""A message posted (chat.postMessage) or a stream started (chat.startStream) whose answer
was lost: the connection dropped, or no answer came in time, after the request went out.
Slack may have taken it, and sent again it would show twice (an empty stream left
"being written" for good): it is looked for among the bot's messages just posted there,
which this process did not know of (`Posted`), before it is sent again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms.recent import Recent
from bridge.errors import PlatformUnreachable

# Messages remembered as posted by this process; a lost one is looked for only among
# those of the last seconds (`CLOCK_SKEW`), of which there are far fewer.
MAX_POSTED = 4096
# Seconds a Slack ts (Slack's clock) may be behind this host's clock: a lost message is
# looked for from this long before it was sent.
CLOCK_SKEW = 10.0
# Messages asked for at most: those of a few seconds in one thread or channel.
LOOKED_AT = 50


class Posted:
    """The messages, by (channel, ts), this process posted or started lately: any other
    of the bot's is another's (a replica's, an earlier process's) or a lost one."""

    def __init__(self, size: int = MAX_POSTED) -> None:
        self._seen: Recent[tuple[str, str], bool] = Recent(size)

    def add(self, channel: str, ts: str) -> None:
        self._seen.put((channel, ts), True)

    def __contains__(self, key: object) -> bool:
        return key in self._seen


def unanswered(exc: PlatformUnreachable) -> bool:
    """Whether the request went out and no answer came back, so Slack may have taken it
    (not a connection refused before sending, nor an answer, an error page's too)."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientError | TimeoutError) and not isinstance(
        cause, aiohttp.ClientConnectorError | aiohttp.ClientResponseError
    )


def since(sent_at: float, question_ts: str | None) -> float:
    """From when a message sent at `sent_at` (this host's time) is looked for: never
    before the question it answers."""
    floor = sent_at - CLOCK_SKEW
    return max(floor, float(question_ts)) if question_ts else floor


async def find_lost(
    client: AsyncWebClient,
    guard: Callable[[str, Awaitable[Any]], Awaitable[Any]],
    posted: Posted,
    bot: tuple[str | None, str | None],
    channel: str,
    thread: str | None,
    oldest: float,
) -> str | None:
    """The ts of the bot's (`bot`: its user id and bot id) oldest message after `oldest`
    in `thread` (or at the top of `channel`) that this process did not post, or None.
    `guard(method, call)` makes the call (conversations.replies or .history, which need
    the channel type's `:history` scope)."""
    after = f"{oldest:.6f}"
    if thread is not None:
        method = "conversations.replies"
        call = client.conversations_replies(channel=channel, ts=thread, oldest=after,
                                            limit=LOOKED_AT)
    else:
        method = "conversations.history"
        call = client.conversations_history(channel=channel, oldest=after, limit=LOOKED_AT)
    resp = await guard(method, call)
    user, bot_id = bot
    found = [
        str(m["ts"])
        for m in resp.get("messages") or []
        if m.get("ts") and float(m["ts"]) > oldest
        and ((user and m.get("user") == user) or (bot_id and m.get("bot_id") == bot_id))
        and _in_place(m, thread)
        and (channel, str(m["ts"])) not in posted
    ]
    return min(found, key=float) if found else None


def _in_place(message: dict[str, Any], thread: str | None) -> bool:
    """Whether `message` is a reply in `thread`, or (None) at the top of its channel."""
    if thread is not None:
        return message.get("thread_ts") == thread and message["ts"] != thread
    return message.get("thread_ts") in (None, message["ts"])
