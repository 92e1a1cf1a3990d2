"""End to end, one person in many places: what is said in a private channel, a
group DM or a channel shared with another organisation stays there, and a shared
channel's conversation is the install's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.interfaces import Inbound
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack

PUBLIC = "C0GENERAL1"
PUBLIC_2 = "C0SUPPORT1"
PRIVATE = "C0PRIVATE1"  # a private channel, its id like a public one's
GROUP_DM = "G0GROUPDM1"
SHARED = "C0ACMEPRTN"  # public in this workspace, shared with another organisation


class Place:
    """The daemon with one `session: user` route for all of Slack, and how to ask it."""

    def __init__(self, slack: FakeSlack, chat: FakeChatAPI, bridge: Bridge) -> None:
        self.slack, self.chat, self.bridge = slack, chat, bridge

    async def ask(
        self, channel: str, question: str, *, user: str = "U0USER001", team: str | None = None
    ) -> str:
        """Ask with a mention; returns the session the chat API was asked in."""
        n = len(self.chat.requests) + 1
        self.chat.enqueue(tokens=[f"Answer {n}."])
        for body in self.slack.user_message(
            channel, f"<@{self.slack.bot_user_id}> {question}", user=user
        ):
            if team is not None:  # Slack Connect: the body names the other organisation
                body["team_id"] = body["context_team_id"] = team
            await self.slack.wait_ack(await self.slack.send_envelope("events_api", body))
        await self.chat.wait_requests(n, timeout=10)
        await self.slack.wait_for(
            lambda: any(m.text == f"Answer {n}." for m in self.slack.bot_replies(channel)),
            timeout=10,
        )
        return str(self.chat.requests[n - 1].json["session_id"])

    async def reset(
        self, channel: str, *, user: str = "U0USER001", team: str | None = None
    ) -> None:
        fields = self.slack.slash_command("/chat-reset", channel, user=user)
        if team is not None:
            fields["team_id"] = team  # a slash command carries the asker's organisation
        n = len(self.slack.responses) + 1
        await self.slack.wait_ack(await self.slack.send_envelope("slash_commands", fields))
        await self.slack.wait_for(lambda: len(self.slack.responses) >= n, timeout=10)
        assert self.slack.responses[-1]["text"] == "Started a new conversation."


@pytest.fixture
async def place(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> AsyncIterator[Place]:
    slack, chat = fake_slack, fake_chat_api
    slack.channels.update({PRIVATE: "group", GROUP_DM: "mpim"})
    slack.shared.add(SHARED)
    text = f"""
store: sqlite://{tmp_path / "bridge.db"}
http: {{listen: null}}
backends:
  docs:
    kind: chatmount
    url: {chat.endpoint("chatmount")}
    api_key: ${{K}}
slack:
  bot_token: ${{BT}}
  app_token: ${{AT}}
  api_url: {slack.url}
routes:
  - platform: slack
    workspace: [{slack.team_id}]
    backend: docs
    session: user
reply: {{edit_interval: 0.05}}
"""
    env = {"K": chat.api_key, "BT": slack.bot_token, "AT": slack.app_token}
    bridge = Bridge(parse_config(text, env=env, registry=REGISTRY), REGISTRY)
    await bridge.__aenter__()
    try:
        await slack.wait_socket()
        yield Place(slack, chat, bridge)
    finally:
        await bridge.aclose()


@pytest.mark.parametrize("private", [PRIVATE, GROUP_DM, SHARED])
async def test_what_is_said_in_a_private_place_stays_there(place: Place, private: str) -> None:
    secret = await place.ask(private, "remember: Bob is being let go on Friday")
    public = await place.ask(PUBLIC, "what did I tell you?")
    assert public != secret
    # Public channels are still one conversation, and the private place its own.
    assert await place.ask(PUBLIC_2, "and here?") == public
    assert await place.ask(private, "and there?") == secret
    # A reset in the private place resets its conversation, and only that one.
    await place.reset(private)
    fresh = await place.ask(private, "anew")
    assert fresh not in (secret, public)
    assert await place.ask(PUBLIC, "still there?") == public


async def test_a_member_of_the_other_organisation_resets_the_shared_channels_conversation(
    place: Place,
) -> None:
    # Slack Connect: the channel's conversation is the install's, and so is the
    # reset of a member of the other organisation, which the route's workspace takes.
    external = {"user": "U0EXTERNAL", "team": "T0OTHERORG"}
    before = await place.ask(SHARED, "first question", **external)
    assert await place.ask(SHARED, "second question", **external) == before
    await place.reset(SHARED, **external)
    assert await place.ask(SHARED, "after the reset", **external) != before


async def test_a_reset_in_a_public_channel_not_seen_yet_resets_the_public_conversation(
    place: Place,
) -> None:
    # A channel the bot is not in (Slack delivers commands there all the same), not
    # seen since the start: the reset was told "Started a new conversation." and reset
    # that channel's alone, the person's public conversation going on as before.
    elsewhere = "C0RANDOM01"
    place.slack.outside.add(elsewhere)
    before = await place.ask(PUBLIC, "remember: my name is Ann")
    await place.reset(elsewhere)
    assert await place.ask(PUBLIC, "what is my name?") != before


async def test_a_reset_waiting_for_slack_as_the_platform_closes_goes_no_further(
    place: Place,
) -> None:
    # The platform's close cut the wait, and the reset was handed on all the same,
    # after the close.
    elsewhere = "C0RANDOM01"
    place.slack.outside.add(elsewhere)
    place.slack.slow["conversations.info"] = [3.0]
    platform = place.bridge.platforms["slack"]
    handed: list[Inbound] = []
    hand_over = platform._hand_over  # type: ignore[attr-defined]

    async def spy(inbound: Inbound, target: Any, handler: Any) -> Any:
        handed.append(inbound)
        return await hand_over(inbound, target, handler)

    platform._hand_over = spy  # type: ignore[attr-defined]
    fields = place.slack.slash_command("/chat-reset", elsewhere, user="U0USER001")
    await place.slack.wait_ack(await place.slack.send_envelope("slash_commands", fields))
    await platform.aclose()
    assert handed == []
