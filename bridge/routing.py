"""Routes: which messages go to which backend, and the conversation key they belong to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bridge.config import RouteConfig
from bridge.interfaces import Inbound
from bridge.route_ids import DISCORD_DM_WORKSPACE


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
        parts = (
            ("asker", msg.channel, root, msg.user)
            if scope == "thread"
            else ("asker", place, msg.user)
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


def key_scopes(route: RouteConfig) -> set[str]:
    """The scopes of the keys `route` may make (`conversation_key`), counting any it
    might: a conversation of another scope is one no question under it continues.

    A key's scope, `platform:form`, is its platform and the word after its workspace,
    which says what the conversation is one per (`slack:T1:user+channel:D1:U1|docs` is
    `slack:user+channel`; neither a platform's name nor a workspace id holds a colon),
    as the store reads it (`bridge.store.migrations`); `*:form`: on any platform."""
    platform = "*" if route.platform == "any" else route.platform
    if route.session == "thread":
        # A DM outside any thread is one conversation (`dm`); a thread in it, a thread.
        forms = {"thread", "dm"} if _dms(route) is not False else {"thread"}
    else:
        forms = {route.session}
    # Answers only the asker sees (Discord's `ask_ephemeral`), under any session.
    forms.add("asker")
    return {f"{platform}:{form}" for form in forms}


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


# What `check` and `run` can tell of the routes without a message: a route that an
# earlier one leaves nothing to. Only certain cases count: no warning on a mere overlap.

_ID_KEYS = ("channels", "users", "workspace", "roles")


def _dms(route: RouteConfig) -> bool | None:
    """True: the route takes DMs only; False: never; None: both."""
    return True if route.dms_only else route.dm


def _within(earlier: Sequence[str] | None, later: Sequence[str] | None) -> bool:
    """Whether every value `later` allows, `earlier` allows (None: any)."""
    return earlier is None or (later is not None and set(later) <= set(earlier))


def _may_meet(one: RouteConfig, other: RouteConfig) -> bool:
    """Whether messages of one place (platform, workspace, channel; DM or not) may be
    taken by both routes, whoever writes them."""
    if "any" not in (one.platform, other.platform) and one.platform != other.platform:
        return False
    dms = (_dms(one), _dms(other))
    if None not in dms and dms[0] != dms[1]:
        return False
    if "slack" in (one.platform, other.platform):
        # A Slack DM is in a D… channel: one only in DMs meets one listing none.
        for dm_only, listing in ((one, other), (other, one)):
            channels = listing.channels
            if (
                _dms(dm_only)
                and channels is not None
                and not any(c.startswith("D") for c in channels)
            ):
                return False
    for key in ("workspace", "channels"):
        mine, theirs = getattr(one, key), getattr(other, key)
        if mine is not None and theirs is not None and not set(mine) & set(theirs):
            return False
    return True


def _may_hold(route: RouteConfig, workspace: str) -> bool:
    """Whether `workspace` may hold a message `route` takes (ids of the right platform;
    Discord's DMs alone are in `@dm`, and a Slack DM is in its team)."""
    if route.platform == "console":
        return True
    if workspace == DISCORD_DM_WORKSPACE:
        return route.platform != "slack" and _dms(route) is not False
    if workspace.isdigit():  # a Discord server
        return route.platform != "slack" and _dms(route) is not True
    return route.platform != "discord"  # a Slack team


def coverage(
    earlier: RouteConfig, later: RouteConfig, routes: Sequence[RouteConfig]
) -> list[str] | None:
    """Where `earlier`, tried first, takes every message `later` would take (see
    `match_route`): None for nowhere, [] for everywhere, else the workspaces (those
    `earlier` lists, where `later` lists none or more). It must allow every other id
    `later` allows, take DMs as `later` does, and have a trigger that counts as much.

    Under `trigger: mention` and `session: thread`, `later` would still take a
    follow-up in a thread of a conversation under its own key (backend and session)
    that `earlier` does not know: such a conversation of another of `routes` (`later`
    in it) in a place `later` also takes keeps `later` from counting as covered, unless
    that route comes first and follows its threads whoever writes. One kept from before
    the config changed is not counted.
    """
    if earlier.platform not in ("any", later.platform):
        return None
    dms = _dms(earlier)
    if dms is not None and dms != _dms(later):
        return None
    if not all(
        _within(getattr(earlier, key), getattr(later, key))
        for key in _ID_KEYS
        if key != "workspace"
    ):
        return None
    where: list[str] = []
    if earlier.workspace is not None:
        if later.workspace is None:
            where = [w for w in earlier.workspace if _may_hold(later, w)]
        else:
            where = [w for w in later.workspace if w in earlier.workspace]
        if not where:
            return None
        if later.workspace is not None and len(where) == len(later.workspace):
            where = []  # all of them
    if _dms(later) or earlier.trigger == "all":
        return where  # every DM counts under any trigger
    if later.trigger == "all":
        return None  # `earlier` takes mentions alone
    if later.session != "thread" or (
        earlier.session == "thread" and earlier.backend == later.backend
    ):
        return where  # `later` follows no thread `earlier` would not
    place = next(k for k, route in enumerate(routes) if route is later)
    for k, other in enumerate(routes):
        if other is later or other.session != "thread" or other.backend != later.backend:
            continue
        # Tried first and taking anyone's message there, it follows its threads itself.
        if k < place and other.users is None and other.roles is None:
            continue
        if _may_meet(other, later):
            return None
    return where


def shadowed(routes: Sequence[RouteConfig]) -> list[tuple[int, int, list[str]]]:
    """(later, earlier, workspaces): each route that can never answer, with the first
    earlier route that takes every message it would, everywhere ([]) or, failing
    one, in those workspaces."""
    found = []
    for j, later in enumerate(routes):
        first: tuple[int, int, list[str]] | None = None
        for i, earlier in enumerate(routes[:j]):
            where = coverage(earlier, later, routes)
            if where == []:
                first = (j, i, where)
                break
            if where and first is None:
                first = (j, i, where)
        if first:
            found.append(first)
    return found
