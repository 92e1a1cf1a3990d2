"""The conversation a question continues: found or begun before it is asked, and
remembered once it is answered (its session, usage and, for a stateless API, the
turn)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from bridge.config import RouteConfig
from bridge.deletions import asked, taken_back
from bridge.edits import Edits
from bridge.errors import StoreError
from bridge.interfaces import ChatAPI, ChatRequest, Done, Inbound, ReplyTarget, Turn
from bridge.routing import key_scopes
from bridge.store import Conversation, Store

log = logging.getLogger("chat_bridge.conversations")

K = TypeVar("K", str, tuple[str, str])

# In a conversation's meta: the `kind` of API it is kept for. A backend's kind may
# change in the config under the same name; what was kept for the other kind is not
# the new one's to go on with (a session id means nothing to another API, and the
# history a stateless API was sent would be sent again after the person went on,
# and perhaps asked to forget it, with a stateful one).
KIND = "api_kind"
# The longest session id kept (ids seen are tens of characters): one past it, or one
# holding a character no store or API request carries as it is (NUL: PostgreSQL
# refuses the whole row), is not kept, and the conversation goes on with its own.
SESSION_MAX = 1024


async def open_conversation(
    store: Store, key: str, backend_name: str, backend: ChatAPI
) -> tuple[Conversation, tuple[Turn, ...]]:
    """The conversation `key` continues with `backend_name`, saved if it is new (or a
    reset started it afresh), and the history to send with it (a stateless API's).

    A conversation kept for another kind of API (the backend's `kind` changed in the
    config) starts afresh: no session, no history."""
    known = await store.get_conversation(key)
    if known is not None and known.backend == backend_name:
        conv = known
        kept_for = known.meta.get(KIND)
        if kept_for is not None and kept_for != backend.kind:
            log.info(
                "the conversation was kept for a %s API and its backend is now %s: "
                "starting it afresh",
                kept_for,
                backend.kind,
                extra={"conversation": key, "backend": backend_name},
            )
            await store.reset_conversation(key)
            conv = Conversation(key, backend_name, None, known.created_at, time.time())
    else:
        now = time.time()
        conv = Conversation(key, backend_name, None, now, now)
    # Saved with the conversation's next save (at the latest, its answer's).
    conv.meta[KIND] = backend.kind
    fresh = conv is not known
    if conv.session is None and backend.stateful and backend.client_sessions:
        conv.session = backend.new_session()
        fresh = True
    if fresh:
        await store.save_conversation(conv)
    history = () if backend.stateful else tuple(await store.history(key))
    return conv, history


async def remember(
    store: Store,
    conv: Conversation,
    backend: ChatAPI,
    req: ChatRequest,
    answer: str,
    done: Done | None,
    msg: Inbound,
    target: ReplyTarget,
    edits: Edits,
) -> None:
    """Keep what the answered question `msg` leaves: the session the API gave, its
    usage figures and, where the bridge keeps the history, the question and its answer,
    under the question's id (`bridge.deletions.asked`), for its deletion to find. Not
    that turn if the question was deleted while it was answered (a password posted by
    mistake: a stateless API would be sent it again with every later question), nor
    once deleted as it was kept. One edited while it was answered is kept as edited
    (`bridge.edits`)."""
    conv.last_used = time.time()
    if done is not None and done.session:
        take_session(conv, done.session, backend.name)
    if done is not None and done.usage:
        usage = {k: v for k, v in done.usage.items() if _plain(v) and k != KIND}
        conv.meta = {**conv.meta, **usage}
    await store.save_conversation(conv)
    # An empty answer ("(no answer)") is no turn: kept, it would be sent back with
    # every later question, and some APIs refuse an empty one.
    if backend.stateful or not answer.strip() or await taken_back(store, msg, target):
        return
    # Kept as its route sends it: where two routes share a conversation (`session:
    # user` across channels), the one that answered last trims it to its own `history`.
    await store.append_history(
        conv.key,
        [Turn("user", req.message, req.user_id), Turn("assistant", answer)],
        2 * req.turns(backend.history_turns),
        backend.history_chars,
        question=asked(msg),
    )
    if await taken_back(store, msg, target):
        # Its deletion came as the turn was kept; told too soon to find it.
        await store.forget_question(asked(msg))
    else:
        # Its edit, told before the turn was kept, found none to change.
        await edits.settle(asked(msg))


def take_session(conv: Conversation, session: str, backend: str) -> bool:
    """Give `conv` the session id its API (`backend`) gave, where one a store keeps
    (see SESSION_MAX); else it keeps the one it had, and a warning says so."""
    if len(session) <= SESSION_MAX and session.isprintable():
        conv.session = session
        return True
    log.warning(
        "backend %s gave a session id that cannot be kept (%d characters%s): the "
        "conversation goes on with the one it had",
        backend,
        len(session),
        "" if session.isprintable() else ", some of them control characters",
        extra={"conversation": conv.key},
    )
    return False


async def tell_of_other_backends(store: Store, routed: Collection[str], ttl: float | None) -> None:
    """At start: say in one warning how many conversations the store keeps for backends
    no route names (`routed`): they are not continued, and nobody in them is told."""
    try:
        others = await store.other_backends(routed)
    except StoreError as exc:
        log.warning("could not count the conversations of backends no route uses: %s", exc)
        return
    if not others:
        return
    listed = _largest(others, lambda name, count: f"{name}: {count:,}", ", ", " backends")
    total = sum(others.values())
    kept = _kept(ttl)
    log.warning(
        "the store keeps %s conversation%s of backends no route uses (%s), and no question "
        "continues them. A conversation's key names its backend, so renaming a backend or "
        "pointing a route at another one starts every conversation afresh, without a word "
        "to the people in them: a thread the bot answered is followed again only once it "
        "is mentioned, and DMs and `session: user` conversations get a new session, "
        "without their history. Give the backend its old name back (or the route its old "
        "backend) to go on with them; else %s",
        f"{total:,}",
        "" if total == 1 else "s",
        listed,
        kept,
    )


async def tell_of_unmade_scopes(
    store: Store, routes: Sequence[RouteConfig], ttl: float | None
) -> None:
    """At start: say in one warning how many conversations the store keeps, for
    backends routes use, under keys of a scope no route on that backend makes any more
    (a route's `session` changed: `user` keys, where it now makes `user+channel`
    ones). No question continues them, and nobody in them is told."""
    made: dict[str, set[str]] = {}
    for route in routes:
        made.setdefault(route.backend, set()).update(key_scopes(route))
    try:
        unmade = await store.unmade_scopes(made)
    except StoreError as exc:
        log.warning("could not count the conversations whose key scope no route makes: %s", exc)
        return
    if not unmade:
        return

    def said(where: tuple[str, str], count: int) -> str:
        backend, (platform, _, form) = where[0], where[1].partition(":")
        return (
            f"{backend}: {count:,} of `{form}` keys on {platform}, where its routes now "
            f"make {_scopes_in_words(made[backend])}"
        )

    listed = _largest(unmade, said, "; ", "")
    total = sum(unmade.values())
    kept = _kept(ttl, ": set it to have unused conversations forgotten")
    log.warning(
        "the store keeps %s conversation%s under keys of a scope no route of their backend "
        "makes any more (%s), and no question continues them. A conversation's key says "
        "what it is one per (its route's `session`: thread, channel, user, user+channel), "
        "so changing a route's `session` (or its platform) starts every one of its "
        "conversations afresh, "
        "without a word to the people in them: they get a new session, without their "
        "history. Give the route its old `session` back to go on with them; else %s",
        f"{total:,}",
        "" if total == 1 else "s",
        listed,
        kept,
    )


def _largest(counts: Mapping[K, int], said: Callable[[K, int], str], sep: str, more: str) -> str:
    """The ten largest of `counts` (the largest first), each as `said` words it, and
    how many more there are (`more` naming them)."""
    named = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    listed = sep.join(said(key, count) for key, count in named[:10])
    if len(named) > 10:
        listed += f"{sep}and {len(named) - 10} more{more}"
    return listed


def _kept(ttl: float | None, advice: str = "") -> str:
    """How long conversations no question continues are kept (`advice` on a null ttl)."""
    if ttl is not None:
        return f"they are forgotten once unused for limits.conversation_ttl ({ttl:g} s)"
    return f"they stay for ever (limits.conversation_ttl is null{advice})"


def _scopes_in_words(made: Collection[str]) -> str:
    """`made` (key scopes, see `bridge.routing.key_scopes`) as `thread`, `dm` on slack,
    leaving out the asker's own conversations, which every route makes."""
    on: dict[str, list[str]] = {}
    for scope in sorted(made):
        platform, _, form = scope.partition(":")
        if form != "asker":
            on.setdefault("any platform" if platform == "*" else platform, []).append(form)
    return "; ".join(
        ", ".join(f"`{form}`" for form in forms) + f" on {platform}"
        for platform, forms in on.items()
    )


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None
