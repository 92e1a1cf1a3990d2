"""A message posted (chat.postMessage) or a stream started (chat.startStream) whose answer
was lost: the connection dropped, or no answer came in time, after the request went out.
Slack may have taken it, and sent again it would show twice (an empty stream left
"being written" for good), so it is looked for among the bot's messages there first.

Only a message that is surely this one is taken: one taken wrongly (another replica's
answer in the same thread, or this process's own whose answer is still on its way)
would be overwritten by this answer. A posted message carries a nonce in its metadata
(`tag`) and is found by it. A stream takes no metadata: it is the bot's one untagged
message there that this process does not know (`Posted`), while no other post of this
process there is still on its way (which could be that message), or none is taken."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms.recent import Recent
from bridge.errors import PlatformUnreachable

log = logging.getLogger("chat_bridge.slack")

# The metadata event type of every message the bridge posts, its payload a nonce.
EVENT = "chat_bridge_reply"
# Messages remembered as posted by this process; a lost one is looked for only among
# those of the last seconds (`CLOCK_SKEW`), of which there are far fewer.
MAX_POSTED = 4096
# Seconds a Slack ts (Slack's clock) may be behind this host's clock: a lost message is
# looked for from this long before it was sent.
CLOCK_SKEW = 10.0
# Messages asked for at most: those of a few seconds in one thread or channel.
LOOKED_AT = 50
# Seconds waited before each further look for a message whose request timed out: a busy
# Slack may take it a moment after the client gave up waiting (a dropped connection's
# is there at once, or never).
LOOK_AGAIN = (1.0, 2.0, 3.0)

Place = tuple[str, str | None]  # channel, thread (None: the channel's top level)


def tag() -> tuple[str, dict[str, Any]]:
    """A new nonce, and the `metadata` of chat.postMessage that carries it."""
    nonce = uuid.uuid4().hex
    return nonce, {"event_type": EVENT, "event_payload": {"id": nonce}}


class Posted:
    """The messages, by (channel, ts), this process posted or started lately, and how
    many of its posts are on their way in each place: a message it does not know may be
    another's (a replica's, an earlier process's), a lost one, or one on its way."""

    def __init__(self, size: int = MAX_POSTED) -> None:
        self._seen: Recent[tuple[str, str], bool] = Recent(size)
        self._sending: Counter[Place] = Counter()

    def add(self, channel: str, ts: str) -> None:
        self._seen.put((channel, ts), True)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    @contextmanager
    def sending(self, place: Place) -> Iterator[None]:
        """A post on its way to `place`, until its message is known (`add`) or given up."""
        self._sending[place] += 1
        try:
            yield
        finally:
            self._sending[place] -= 1
            if not self._sending[place]:
                del self._sending[place]

    def others_sending(self, place: Place) -> bool:
        """Whether a post other than the caller's (itself `sending`) is on its way there."""
        return self._sending[place] > 1


def unanswered(exc: PlatformUnreachable) -> bool:
    """Whether the request went out and no answer came back, so Slack may have taken it
    (not a connection refused before sending, nor an answer, an error page's too)."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientError | TimeoutError) and not isinstance(
        cause, aiohttp.ClientConnectorError | aiohttp.ClientResponseError
    )


def timed_out(exc: PlatformUnreachable) -> bool:
    """Whether no answer came in time (the request may still be in Slack's hands)."""
    return isinstance(exc.__cause__, TimeoutError)


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
    place: Place,
    oldest: float,
    nonce: str | None,
) -> str | None:
    """The ts of the lost message in `place` posted after `oldest`: the bot's (`bot`: its
    user id and bot id) with `nonce` in its metadata, or (no nonce: a stream) the bot's
    only untagged one this process does not know, while no other post of this process
    there is on its way. None if there is none, or no such one for certain.
    `guard(method, call)` makes the call (conversations.replies or .history, which need
    the channel type's `:history` scope)."""
    channel, thread = place
    after = f"{oldest:.6f}"
    if thread is not None:
        method = "conversations.replies"
        call = client.conversations_replies(
            channel=channel, ts=thread, oldest=after, limit=LOOKED_AT, include_all_metadata=True
        )
    else:
        method = "conversations.history"
        call = client.conversations_history(
            channel=channel, oldest=after, limit=LOOKED_AT, include_all_metadata=True
        )
    resp = await guard(method, call)
    user, bot_id = bot
    bots = [
        m
        for m in resp.get("messages") or []
        if m.get("ts")
        and float(m["ts"]) > oldest
        and ((user and m.get("user") == user) or (bot_id and m.get("bot_id") == bot_id))
        and _in_place(m, thread)
    ]
    if nonce is not None:
        found = [str(m["ts"]) for m in bots if _nonce(m) == nonce]
        return min(found, key=float) if found else None
    # A message the bridge posted carries its nonce: it is no stream.
    unknown = [
        str(m["ts"]) for m in bots if _nonce(m) is None and (channel, str(m["ts"])) not in posted
    ]
    if len(unknown) == 1 and not posted.others_sending(place):
        return unknown[0]
    if unknown:
        log.info(
            "slack: a stream whose answer was lost may be any of %d of the bot's "
            "messages in %s (another's, or one on its way): none is taken",
            len(unknown),
            channel,
        )
    return None


def _nonce(message: dict[str, Any]) -> str | None:
    """The nonce the bridge tagged `message` with (`tag`), or None."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT:
        return None
    payload = metadata.get("event_payload")
    nonce = payload.get("id") if isinstance(payload, dict) else None
    return str(nonce) if nonce else None


def _in_place(message: dict[str, Any], thread: str | None) -> bool:
    """Whether `message` is a reply in `thread`, or (None) at the top of its channel."""
    if thread is not None:
        return message.get("thread_ts") == thread and message["ts"] != thread
    return message.get("thread_ts") in (None, message["ts"])
