"""Routes: which messages go to which backend, and the conversation key they belong to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bridge.config import RouteConfig
from bridge.interfaces import Inbound


def conversation_key(route: RouteConfig, msg: Inbound, thread: str | None = None) -> str:
    """The store key of the conversation `msg` belongs to under `route`.

    `thread` overrides the thread root (a thread the bridge just opened). The
    route's backend is part of it: two bots reached from the same place (a
    `user` session across channels routed to different backends) each keep a
    conversation of their own, and never see the other's history or session.

    No conversation spans places whose audiences differ, so an answer others
    see never draws on what was said in private: a private thread is a place
    of its own (not its channel), answers only the asker sees are their own
    conversation there, a `user` conversation in DMs is not the one in
    channels, and one in a place only its members see (a private channel, a
    group DM) is that place's alone.
    """
    root = thread or msg.thread or msg.message_id
    scope = route.session
    # The place: a private thread's members are not its channel's.
    place = msg.thread if msg.audience == "thread" and msg.thread else msg.channel
    parts: tuple[str, ...]
    if msg.audience == "asker" and not msg.is_dm:  # a DM's audience is the asker already
        # Their own conversation where they ask: per thread (a question outside any
        # thread starts one) where the route keeps one a thread, else in the place.
        parts = ("asker", msg.channel, root, msg.user) if scope == "thread" else (
            "asker", place, msg.user
        )
    elif scope == "thread":
        if msg.is_dm and not msg.thread:
            # A DM without threads is one conversation per user.
            parts = ("dm", msg.channel)
        else:
            parts = ("thread", msg.channel, root)
    elif scope == "channel":
        parts = ("channel", place)
    elif scope == "user":
        if msg.is_dm:
            parts = ("user", msg.user)
        elif place != msg.channel:
            parts = ("user", msg.user, "thread", place)
        elif msg.audience == "members":
            parts = ("user", msg.user, "place", place)
        else:
            parts = ("user", msg.user, "channels")
    else:
        parts = ("user+channel", place, msg.user)
    return ":".join((msg.platform, msg.workspace, *parts)) + f"|{route.backend}"


def _allowed(allow: Sequence[str] | None, *values: str | None) -> bool:
    return allow is None or any(v is not None and v in allow for v in values)


def _static_match(route: RouteConfig, msg: Inbound) -> bool:
    if not route.serves(msg.platform):
        return False
    if route.dm is not None and route.dm != msg.is_dm:
        return False
    if not _allowed(route.workspace, msg.workspace):
        return False
    # A DM is in its own channel: a route for named channels does not take it.
    if not _allowed(route.channels, msg.channel, msg.thread):
        return False
    if not _allowed(route.users, msg.user):
        return False
    if route.roles is not None and not set(route.roles) & set(msg.roles):
        return False
    return True


def follows(route: RouteConfig, msg: Inbound) -> bool:
    """Whether, under `route`, the messages of `msg`'s thread are taken without a
    mention once its conversation is known (a thread the bridge answers), where the
    platform delivers them."""
    return bool(msg.thread) and route.session == "thread" and msg.follow_ups


Exists = Callable[[str], Awaitable[bool]]


async def match_route(
    routes: Sequence[RouteConfig], msg: Inbound, conversation_exists: Exists
) -> RouteConfig | None:
    """The first route that takes `msg`, or None.

    A message without a mention still counts when it continues a thread the
    bridge is already answering (`conversation_exists` tells), unless it begins by
    addressing someone else: it is not a follow-up to the bot.
    """
    for route in routes:
        if not _static_match(route, msg):
            continue
        if route.trigger == "dm" and not msg.is_dm:
            # Not even a command run in a channel: a DM route may have a private
            # backend and the asker's DM session, and its answer would be public.
            continue
        if msg.is_dm or msg.command or route.trigger == "all":
            return route
        if msg.mentioned:
            return route
        if follows(route, msg) and not msg.addresses_other:
            if await conversation_exists(conversation_key(route, msg)):
                return route
    return None
