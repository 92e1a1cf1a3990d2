"""Which route takes a message (first match wins), and the conversation it belongs to."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bridge.config import RouteConfig
from bridge.interfaces import Inbound
from bridge.routing import conversation_key, key_scopes, match_route


def route(**kw: Any) -> RouteConfig:
    return RouteConfig(**{"backend": "docs", **kw})


def msg(**kw: Any) -> Inbound:
    fields: dict[str, Any] = {
        "platform": "slack",
        "workspace": "T1",
        "channel": "C1",
        "user": "U1",
        "text": "hello",
        "message_id": "100.1",
        "event_id": "Ev1",
    }
    return Inbound(**{**fields, **kw})


async def no_conversations(key: str) -> bool:
    return False


async def pick(routes: list[RouteConfig], m: Inbound, known: set[str] = frozenset()) -> int | None:  # type: ignore[assignment]
    async def exists(key: str) -> bool:
        return key in known

    found = await match_route(routes, m, exists)
    return None if found is None else routes.index(found)


# The example of the design: mentions in one channel, per thread; DMs per person.
EXAMPLE = [
    route(platform="slack", channels=["C0123ABCD"], trigger="mention", session="thread"),
    route(platform="any", dm=True, session="user"),
]


async def test_a_dm_goes_to_the_dm_route_not_to_a_route_for_named_channels() -> None:
    dm = msg(channel="D999", is_dm=True)
    assert await pick(EXAMPLE, dm) == 1
    assert conversation_key(EXAMPLE[1], dm) == "slack:T1:user:U1|docs"


async def test_a_dm_in_a_thread_also_goes_to_the_dm_route() -> None:
    assert await pick(EXAMPLE, msg(channel="D999", is_dm=True, thread="99.1")) == 1


async def test_a_mention_in_a_named_channel_goes_to_its_route() -> None:
    m = msg(channel="C0123ABCD", mentioned=True)
    assert await pick(EXAMPLE, m) == 0
    assert conversation_key(EXAMPLE[0], m) == "slack:T1:thread:C0123ABCD:100.1|docs"


async def test_a_mention_in_another_channel_is_taken_by_no_route() -> None:
    assert await pick(EXAMPLE, msg(channel="C777", mentioned=True)) is None


async def test_a_route_for_any_channel_takes_dms_unless_it_says_dm_false() -> None:
    dm = msg(channel="D999", is_dm=True)
    assert await pick([route()], dm) == 0
    assert await pick([route(dm=False)], dm) is None
    assert await pick([route(dm=True)], msg(mentioned=True)) is None


async def test_a_dm_channel_can_be_named_like_any_other() -> None:
    assert await pick([route(channels=["D999"])], msg(channel="D999", is_dm=True)) == 0


async def test_a_channel_list_matches_a_thread_by_its_channel_or_its_root() -> None:
    # Discord threads are channels of their own: the parent may be listed as the root.
    assert await pick([route(channels=["C1"])], msg(channel="C1", mentioned=True)) == 0
    thread = msg(platform="discord", channel="9", thread="1", mentioned=True)
    assert await pick([route(channels=["1"])], thread) == 0


async def test_first_match_wins() -> None:
    routes = [route(platform="discord"), route(backend="first"), route(backend="second")]
    assert await pick(routes, msg(mentioned=True)) == 1


async def test_triggers() -> None:
    plain = msg()
    assert await pick([route(trigger="mention")], plain) is None
    assert await pick([route(trigger="mention")], msg(mentioned=True)) == 0
    assert await pick([route(trigger="all")], plain) == 0
    assert await pick([route(trigger="dm")], msg(mentioned=True)) is None
    assert await pick([route(trigger="dm")], msg(channel="D1", is_dm=True)) == 0


async def test_a_command_always_counts() -> None:
    assert await pick([route(trigger="mention")], msg(command="reset")) == 0


async def test_a_dm_route_takes_no_command_run_in_a_channel() -> None:
    dm_only = route(trigger="dm", session="user", backend="private")
    channel = route(channels=["C2"], trigger="all", backend="public")
    assert await pick([dm_only, channel], msg(command="ask")) is None
    assert await pick([dm_only, channel], msg(command="reset", mentioned=True)) is None
    assert await pick([dm_only], msg(channel="D1", is_dm=True, command="reset")) == 0


async def test_a_thread_the_bridge_answers_continues_without_a_mention() -> None:
    r = route(session="thread")
    follow_up = msg(thread="50.1", message_id="51.1")
    assert await pick([r], follow_up) is None
    assert await pick([r], follow_up, known={"slack:T1:thread:C1:50.1|docs"}) == 0
    # Only per-thread sessions continue a thread this way.
    per_user = route(session="user")
    assert await pick([per_user], follow_up, known={"slack:T1:user:U1|docs"}) is None


async def test_a_message_addressing_someone_else_in_a_followed_thread_is_no_follow_up() -> None:
    r = route(session="thread")
    known = {"slack:T1:thread:C1:50.1|docs"}
    to_other = msg(thread="50.1", message_id="51.1", addresses_other=True)
    assert await pick([r], to_other, known=known) is None
    # Mentioning the bot too, it is the bot's; and a route answering every message
    # answers it.
    assert await pick([r], replace(to_other, mentioned=True), known=known) == 0
    assert await pick([route(trigger="all")], to_other) == 0


async def test_workspace_user_and_role_allowlists() -> None:
    m = msg(mentioned=True, roles=("111",))
    assert await pick([route(workspace=["T2"])], m) is None
    assert await pick([route(workspace=["T1"])], m) == 0
    assert await pick([route(users=["U2"])], m) is None
    assert await pick([route(users=["U1"])], m) == 0
    assert await pick([route(roles=["222"])], m) is None
    assert await pick([route(roles=["111", "222"])], m) == 0


def test_each_backend_reached_from_one_place_has_a_conversation_of_its_own() -> None:
    hr, docs = route(backend="hr", session="user"), route(backend="docs", session="user")
    asked = msg(channel="C2")
    assert conversation_key(hr, asked) != conversation_key(docs, asked)


def test_no_conversation_spans_places_whose_audiences_differ() -> None:
    # What is said in private never reaches an answer others see.
    dm = msg(channel="D1", is_dm=True)
    public = msg(channel="C1")
    private_thread = msg(platform="discord", channel="C1", thread="T9", audience="thread")
    thread_in_public = msg(platform="discord", channel="C1", thread="T8")
    only_asker = msg(channel="C1", audience="asker", command="ask")
    private_channel = msg(channel="G1", audience="members")
    group_dm = msg(channel="G2", audience="members")
    for session in ("channel", "user", "user+channel", "thread"):
        r = route(session=session)
        keys = {
            "dm": conversation_key(r, dm),
            "public": conversation_key(r, public),
            "private thread": conversation_key(r, private_thread),
            "asker": conversation_key(r, only_asker),
            "private channel": conversation_key(r, private_channel),
            "group dm": conversation_key(r, group_dm),
        }
        assert len(set(keys.values())) == 6, (session, keys)
    # A thread everyone in the channel sees is still the channel's, where the route
    # says so; and a user's DMs stay one conversation.
    channel = route(session="channel")
    assert conversation_key(channel, thread_in_public) == conversation_key(
        channel, msg(platform="discord", channel="C1")
    )
    user = route(session="user")
    assert conversation_key(user, dm) == conversation_key(user, msg(channel="D2", is_dm=True))
    assert conversation_key(user, dm) == "slack:T1:user:U1|docs"  # kept as it was
    # Public channels stay one conversation, kept as it was; a private place's
    # threads are that place's.
    assert (
        conversation_key(user, public)
        == conversation_key(user, msg(channel="C2"))
        == ("slack:T1:user:U1:channels|docs")
    )
    assert (
        conversation_key(user, replace(private_channel, thread="5.1"))
        == (conversation_key(user, private_channel))
        == "slack:T1:user:U1:place:G1|docs"
    )


def test_a_private_ask_in_a_dm_is_the_dms_conversation_and_in_threads_the_threads() -> None:
    # In a DM the asker is the whole audience: /reset there resets the DM's
    # conversation. Where each thread is a conversation, a private /ask outside any
    # thread is a question of its own, and in a thread the asker's own there.
    user = route(session="user")
    dm = msg(channel="D1", is_dm=True)
    assert conversation_key(user, replace(dm, audience="asker", command="reset")) == (
        conversation_key(user, dm)
    )
    thread = route(session="thread")
    one = msg(channel="C1", message_id="I1", audience="asker", command="ask")
    two = msg(channel="C1", message_id="I2", audience="asker", command="ask")
    assert conversation_key(thread, one) != conversation_key(thread, two)
    in_thread = msg(channel="C1", thread="T1", message_id="I3", audience="asker")
    again = replace(in_thread, message_id="I4")
    assert conversation_key(thread, in_thread) == conversation_key(thread, again)
    assert conversation_key(thread, in_thread) != conversation_key(
        thread, msg(channel="C1", thread="T1")
    )


# ---------------------------------------------------------------------- key scopes

# Every kind of message a route may take: in a channel, a thread of it, a private
# channel, a private thread, a DM and a thread in it, and answers only the asker sees.
PLACES = [
    msg(),
    msg(thread="99.1"),
    msg(audience="members"),
    msg(platform="discord", workspace="42", channel="7", thread="8", audience="thread"),
    msg(channel="D1", is_dm=True),
    msg(channel="D1", is_dm=True, thread="99.1"),
    msg(platform="discord", workspace="@dm", channel="9", is_dm=True),
    msg(platform="discord", workspace="42", channel="7", audience="asker"),
    msg(platform="discord", workspace="42", channel="7", thread="8", audience="asker"),
    msg(platform="console", workspace="local", channel="console", user="alice"),
]


def key_scope(key: str) -> str:
    """A key's scope as `key_scopes` tells it, `platform:form`, and as the store reads it."""
    parts = key.split(":", 3)
    return f"{parts[0]}:{parts[2] if len(parts) > 3 else ''}"


def test_every_key_a_route_makes_has_a_scope_its_scopes_name() -> None:
    # A key of a scope the start counts as no route's is a conversation it warns of:
    # one a route still continues must never be.
    for session in ("thread", "channel", "user", "user+channel"):
        for dm in (None, True, False):
            r = route(session=session, dm=dm)
            for m in PLACES:
                if r.dm is not None and r.dm != m.is_dm:
                    continue
                scope = key_scope(conversation_key(r, m))
                made = key_scopes(r)
                assert scope in made or f"*:{scope.partition(':')[2]}" in made, (r, m)


def test_a_key_scope_is_its_platform_and_what_it_is_one_per() -> None:
    assert key_scope("slack:T1:user:U1|docs") == "slack:user"
    assert key_scope("slack:T1:user+channel:D1:U1|docs") == "slack:user+channel"
    assert key_scope("discord:@dm:dm:9|docs") == "discord:dm"
    assert key_scope("console:local:user:a:b|docs") == "console:user"


def test_the_scopes_a_route_makes_follow_its_session_and_dms() -> None:
    assert key_scopes(route(platform="slack", session="user")) == {"slack:user", "slack:asker"}
    assert key_scopes(route(session="thread")) == {"*:thread", "*:dm", "*:asker"}
    # No DM reaches a route that keeps them out: no DM's conversation is its.
    assert key_scopes(route(session="thread", dm=False)) == {"*:thread", "*:asker"}
    assert key_scopes(route(platform="discord", session="user+channel", dm=True)) == {
        "discord:user+channel",
        "discord:asker",
    }
