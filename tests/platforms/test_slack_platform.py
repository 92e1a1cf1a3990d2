"""The Slack adapter against the fake Slack: what it delivers, and how its targets answer."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms.slack import SlackOptions, SlackPlatform, SlackTarget, places
from adapters.platforms.slack import late as slack_late
from adapters.platforms.slack import target as slack_target
from adapters.platforms.slack.refusal import SlackRefused
from adapters.registry import REGISTRY
from bridge.budget import Budgets
from bridge.config import parse_config
from bridge.errors import (
    ConfigError,
    PlaceGone,
    PlatformError,
    PlatformRefused,
    PlatformUnreachable,
)
from bridge.flag import Flag
from bridge.http import HttpServer
from bridge.interfaces import Address, Inbound, PlatformContext, ReplyTarget, Source
from bridge.render import LiveReply
from bridge.split import close_fences
from tests.core.fakeplatform import wait_for
from tests.core.recording import escape_heavy_code, shown_words
from tests.fakes.proxy import FakeProxy
from tests.fakes.slack import FakeMessage, FakeSlack

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0GENERAL1"
DM = "D0DIRECT01"


class Inbox:
    """A platform handler that records what it is given."""

    def __init__(self) -> None:
        self.items: list[tuple[Inbound, SlackTarget]] = []
        self._changed = asyncio.Event()

    async def __call__(self, inbound: Inbound, target: ReplyTarget) -> Flag:
        assert isinstance(target, SlackTarget)
        self.items.append((inbound, target))
        self._changed.set()
        taken = Flag()
        taken.set()
        return taken

    @property
    def inbound(self) -> list[Inbound]:
        return [i for i, _ in self.items]

    async def wait(self, n: int, timeout: float = 5.0) -> list[Inbound]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.items) < n:
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"expected {n} deliveries, got {len(self.items)}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.inbound


def options(fake: FakeSlack, http: bool = False, **kw: Any) -> SlackOptions:
    mode = {"signing_secret": fake.signing_secret} if http else {"app_token": fake.app_token}
    return SlackOptions(bot_token=fake.bot_token, api_url=fake.url, **mode, **kw)


async def started(
    fake: FakeSlack, inbox: Inbox, on_rate_limited: Callable[[], None] | None = None, **kw: Any
) -> SlackPlatform:
    context = PlatformContext(options=options(fake, **kw), on_rate_limited=on_rate_limited)
    platform = SlackPlatform(context)
    await platform.start(inbox)
    await fake.wait_socket()
    return platform


@asynccontextmanager
async def running(
    fake: FakeSlack, inbox: Inbox, on_rate_limited: Callable[[], None] | None = None, **kw: Any
) -> AsyncIterator[SlackPlatform]:
    """A started platform (Socket Mode), closed at the end."""
    platform = await started(fake, inbox, on_rate_limited, **kw)
    try:
        yield platform
    finally:
        await platform.aclose()


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def socket_platform(fake_slack: FakeSlack, inbox: Inbox) -> AsyncIterator[SlackPlatform]:
    async with running(fake_slack, inbox) as platform:
        yield platform


async def deliver(fake: FakeSlack, bodies: list[dict[str, Any]]) -> None:
    """Send event bodies over Socket Mode and wait until each is acknowledged."""
    for body in bodies:
        await fake.wait_ack(await fake.send_envelope("events_api", body))


# --------------------------------------------------------------------------- options


def test_options_need_exactly_one_mode() -> None:
    with pytest.raises(ValidationError, match="set slack.app_token"):
        SlackOptions(bot_token="xoxb-1")
    with pytest.raises(ValidationError, match="not both"):
        SlackOptions(bot_token="xoxb-1", app_token="xapp-1", signing_secret="s")
    # `${SLACK_APP_TOKEN:-}` left empty counts as unset.
    opts = SlackOptions(bot_token="xoxb-1", app_token="", signing_secret="s")
    assert not opts.socket_mode


def test_options_catch_swapped_tokens_without_echoing_them() -> None:
    text = """
backends: {docs: {kind: chatmount, url: "http://127.0.0.1:9/v1/chat", api_key: k}}
slack: {bot_token: "${BOT}", app_token: "${APP}"}
routes: [{platform: slack, backend: docs}]
"""
    env = {"BOT": "xapp-secret-value", "APP": "xoxb-other-secret"}
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env, registry=REGISTRY)
    message = str(caught.value)
    assert caught.value.path == "slack.bot_token"
    assert "app-level token" in message
    assert "secret-value" not in message and "other-secret" not in message
    with pytest.raises(ConfigError, match="exactly|set slack.app_token") as missing:
        parse_config(text.replace(', app_token: "${APP}"', ""), env={"BOT": "xoxb-1"},
                     registry=REGISTRY)
    assert missing.value.path == "slack"


def test_options_defaults_are_slacks_real_limits() -> None:
    opts = SlackOptions(bot_token="xoxb-1", app_token="xapp-1")
    assert opts.mode == "update" and opts.ignore_bots and opts.reset_command == "/chat-reset"
    assert (opts.update_rate.count, opts.update_rate.per) == (50, 60)
    assert (opts.post_rate.count, opts.post_rate.per) == (1, 1.0)
    assert (opts.append_rate.count, opts.append_rate.per) == (100, 60)
    assert opts.max_chars == 3900 and opts.api_url == "https://slack.com/api/"
    with pytest.raises(ValidationError, match="slash command"):
        SlackOptions(bot_token="xoxb-1", app_token="xapp-1", reset_command="reset")


def test_manifest_matches_what_the_adapter_needs() -> None:
    manifest = yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text(encoding="utf-8"))
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.groups", "message.im"} <= events
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "channels:history", "im:history", "chat:write",
            "commands", "reactions:write", "channels:read", "groups:read", "mpim:read"} <= scopes
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == [SlackOptions.model_fields["reset_command"].default]
    assert manifest["settings"]["socket_mode_enabled"] is True


# --------------------------------------------------------------------------- connecting


async def test_bad_bot_token_fails_start_clearly(fake_slack: FakeSlack) -> None:
    opts = SlackOptions(
        bot_token="xoxb-wrong-secret", app_token=fake_slack.app_token, api_url=fake_slack.url
    )
    platform = SlackPlatform(PlatformContext(options=opts))
    with pytest.raises(PlatformError, match="invalid_auth") as caught:
        await platform.start(Inbox())
    assert "wrong-secret" not in str(caught.value)
    # The config key, whichever variable it names (SLACK_BOT_TOKEN is only the usual one).
    assert "check slack.bot_token" in str(caught.value)
    assert platform._session is not None and platform._session.closed


async def test_bad_app_token_fails_start_clearly(fake_slack: FakeSlack) -> None:
    opts = SlackOptions(
        bot_token=fake_slack.bot_token, app_token="xapp-wrong-secret", api_url=fake_slack.url
    )
    platform = SlackPlatform(PlatformContext(options=opts))
    with pytest.raises(PlatformError, match="check slack.app_token") as caught:
        await platform.start(Inbox())
    assert "wrong-secret" not in str(caught.value)
    assert not platform.connected


async def test_an_outage_page_at_start_fails_start_as_slack_out_of_reach(
    fake_slack: FakeSlack,
) -> None:
    # slack-sdk's own asking for the Socket Mode URL read Slack's error code in a page
    # that is not JSON: an AttributeError, out of the bridge's reach, and the daemon
    # stopped with a traceback instead of a line saying Slack could not be reached.
    fake_slack.unavailable["apps.connections.open"] = [503]
    platform = SlackPlatform(PlatformContext(options=options(fake_slack)))
    with pytest.raises(PlatformUnreachable, match="apps.connections.open"):
        await platform.start(Inbox())
    assert not platform.connected


@pytest.mark.parametrize("tunnel", [False, True], ids=["forwarded", "https-tunnel"])
async def test_a_proxy_refusing_its_credentials_fails_start_naming_the_proxy(
    fake_slack: FakeSlack, no_proxies: pytest.MonkeyPatch, tunnel: bool
) -> None:
    # A 407 was told as Slack refusing the bot token: the admin reset a token that was fine.
    # Over https (Slack's own), the proxy refuses the tunnel (CONNECT) before any TLS.
    api_url = f"{'https' if tunnel else 'http'}://slack.example.invalid/api/"
    variable = "HTTPS_PROXY" if tunnel else "HTTP_PROXY"
    opts = options(fake_slack).model_copy(update={"api_url": api_url})
    async with FakeProxy(credentials="corp:right-password") as proxy:
        no_proxies.setenv(variable, proxy.url.replace("//", "//corp:expired-s3cret@"))
        platform = SlackPlatform(PlatformContext(options=opts))
        with pytest.raises(PlatformError) as caught:
            await platform.start(Inbox())
    said = str(caught.value)
    assert proxy.seen  # it was the proxy that answered
    assert "proxy" in said and "407" in said and f"user:password in {variable}" in said
    assert "token" not in said and "slack.bot_token" not in said
    assert "expired-s3cret" not in said and "corp:" not in said
    assert platform._session is not None and platform._session.closed


async def test_start_logs_no_warnings_with_the_usual_environment(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.bot_token)
    monkeypatch.setenv("SLACK_APP_TOKEN", fake_slack.app_token)
    platform = await started(fake_slack, Inbox())
    await platform.aclose()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert fake_slack.bot_token not in caplog.text


def test_web_api_debug_lines_are_never_formatted(fake_slack: FakeSlack) -> None:
    # slack-sdk formats a debug line per call (the request's body: what people wrote)
    # when its logger's own level allows it: not below INFO, at DEBUG either.
    root = logging.getLogger()
    before = root.level
    try:
        for level in (logging.WARNING, logging.INFO, logging.DEBUG):
            root.setLevel(level)
            platform = SlackPlatform(PlatformContext(options=options(fake_slack)))
            shown = max(logging.INFO, level)
            assert platform.client.logger.level == platform.decor.logger.level == shown
            assert logging.getLogger("chat_bridge.slack.bolt").level == shown  # payloads
    finally:
        root.setLevel(before)


async def test_http_mode_needs_the_listener(fake_slack: FakeSlack) -> None:
    with pytest.raises(PlatformError, match="http.listen"):
        SlackPlatform(PlatformContext(options=options(fake_slack, http=True)))


# --------------------------------------------------------------------------- inbound


async def test_mention_in_channel_is_delivered_once(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> how do I  deploy?")
    assert [b["event"]["type"] for b in bodies] == ["message", "app_mention"]
    await deliver(fake_slack, bodies)
    [msg] = await inbox.wait(1)
    assert socket_platform.connected
    root = bodies[0]["event"]["ts"]
    assert msg == Inbound(
        platform="slack",
        workspace=fake_slack.team_id,
        channel=CHANNEL,
        user="U0USER001",
        text="how do I  deploy?",  # the asker's spaces are theirs; only the mention goes
        message_id=root,
        event_id=f"{CHANNEL}:{root}",
        thread=root,
        is_dm=False,
        mentioned=True,
        received_at=msg.received_at,
        sent_at=float(root),
    )
    # A later message proves nothing else was queued behind the duplicate.
    await deliver(fake_slack, fake_slack.user_message(CHANNEL, "unrelated chatter"))
    assert len(await inbox.wait(2)) == 2
    assert inbox.inbound[1].mentioned is False


async def test_a_mention_posted_with_a_file_is_delivered(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # With a file, Slack sends the message event alone: no app_mention to wait for.
    bodies = fake_slack.user_message(
        CHANNEL, f"<@{fake_slack.bot_user_id}> what is this error?", subtype="file_share"
    )
    assert [b["event"]["type"] for b in bodies] == ["message"]
    await deliver(fake_slack, bodies)
    [msg] = await inbox.wait(1)
    assert msg.text == "what is this error?" and msg.mentioned
    assert msg.event_id == f"{CHANNEL}:{bodies[0]['event']['ts']}"


async def test_the_bots_mention_within_a_question_is_its_name(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Taken out, it would leave "what can do for me?"; at the start or the end it
    # only says who is asked.
    me = f"<@{fake_slack.bot_user_id}>"
    asked = [
        f"what can {me} do for me?",
        f"ask <@U0OTHER01> and {me} about it",
        f"{me}, what is a bridge?",
        f"thanks {me}!",
    ]
    for n, text in enumerate(asked, 1):
        await deliver(fake_slack, fake_slack.user_message(CHANNEL, text))
        await inbox.wait(n)
    assert [m.text for m in inbox.inbound] == [
        "what can chat-bridge do for me?",
        "ask @U0OTHER01 and chat-bridge about it",
        "what is a bridge?",
        "thanks!",
    ]


async def test_a_questions_spaces_are_kept_but_around_the_bots_mention(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    me = f"<@{fake_slack.bot_user_id}>"
    yaml = "```\n  routes:\n    - platform: slack\n      backend: docs\n```"
    asked = [
        f"{me}  what is a bridge?",
        f"{me} is this valid?\n{yaml}",
        f"{me}\n```  indented first line\n\tand a tab```",
        "what  `x  =  1`  means,\tasked in\ttabs?",
    ]
    for n, text in enumerate(asked, 1):
        await deliver(fake_slack, fake_slack.user_message(CHANNEL, text))
        await inbox.wait(n)
    assert [m.text for m in inbox.inbound] == [
        "what is a bridge?",
        f"is this valid?\n{yaml}",
        "```  indented first line\n\tand a tab```",
        "what  `x  =  1`  means,\tasked in\ttabs?",
    ]


async def test_a_channel_shared_with_another_organisation_is_the_installs_workspace(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Slack Connect: the body's team_id is the channel maker's organisation; a
    # /reset there carries the asker's, this install's or the other one's. One
    # conversation, not two.
    [body] = fake_slack.user_message(CHANNEL, "in a shared channel", thread_ts="1.000001")
    body["team_id"] = body["context_team_id"] = "T0OTHERORG"
    await deliver(fake_slack, [body])
    fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", fields))
    external = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0EXTERNAL")
    external["team_id"] = "T0OTHERORG"  # a member of the other organisation
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", external))
    asked, reset, reset_by_external = await inbox.wait(3)
    assert asked.workspace == reset.workspace == reset_by_external.workspace == (
        fake_slack.team_id
    )
    assert inbox.items[2][1].address.workspace == fake_slack.team_id


async def test_an_org_wide_install_resets_in_the_workspace_its_messages_come_from(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Enterprise Grid, the app installed for the whole organisation: an event names the
    # workspace it came through (`authorizations`), a command the one it was run in
    # (`team_id`); auth.test names only one. A reset in any other was taken for
    # auth.test's workspace: it reset nothing, and a route for its own refused it.
    org, second = "E0ORG00001", "T0WSB00002"
    for team, channel in ((second, "C0WSBCHAN1"), (fake_slack.team_id, CHANNEL)):
        [body] = fake_slack.user_message(channel, "hello", thread_ts="1.000001")
        body["team_id"] = body["context_team_id"] = body["event"]["team"] = team
        body["enterprise_id"] = org
        body["authorizations"][0].update(
            team_id=team, enterprise_id=org, is_enterprise_install=True
        )
        await deliver(fake_slack, [body])
        fields = fake_slack.slash_command("/chat-reset", channel)
        fields.update(team_id=team, enterprise_id=org, is_enterprise_install="true")
        await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", fields))
    got = await inbox.wait(4)
    assert [(m.workspace, m.command) for m in got] == [
        (second, None), (second, "reset"),
        (fake_slack.team_id, None), (fake_slack.team_id, "reset"),
    ]
    assert inbox.items[1][1].address.workspace == second


async def test_a_place_only_its_members_see_is_told_as_such(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # A private channel's id may start with C, and an app_mention does not say the
    # channel's type. Not known yet, a channel counts as private, and Slack is asked
    # once, in the background, for the questions after.
    fake = fake_slack
    fake.channels.update({"C0PRIVATE1": "group", "C0PRIVATE3": "group", "G0GROUPDM1": "mpim"})
    mention = f"<@{fake.bot_user_id}>"
    for channel in ("C0PRIVATE1", CHANNEL):  # app_mention alone
        [_, app_mention] = fake.user_message(channel, f"{mention} asked")
        await deliver(fake, [app_mention])
    kinds = socket_platform.kinds
    await wait_for(lambda: None not in (kinds.known("C0PRIVATE1"), kinds.known(CHANNEL)))
    for channel in ("C0PRIVATE1", CHANNEL):
        [_, app_mention] = fake.user_message(channel, f"{mention} asked again")
        await deliver(fake, [app_mention])
    await deliver(fake, fake.user_message("G0PRIVATE2", f"{mention} asked"))  # message first
    await deliver(fake, fake.user_message("G0GROUPDM1", f"{mention} asked")[:1])
    await deliver(fake, fake.user_message(DM, "asked"))
    await fake.wait_ack(await fake.send_envelope(
        "slash_commands", fake.slash_command("/chat-reset", "C0PRIVATE3")
    ))
    got = await inbox.wait(8)
    assert [(m.channel, m.audience) for m in got[:4]] == [
        ("C0PRIVATE1", "members"), (CHANNEL, "members"),  # not known yet
        ("C0PRIVATE1", "members"), (CHANNEL, "channel"),
    ]
    assert sorted((m.channel, m.audience) for m in got[4:]) == sorted([
        ("G0PRIVATE2", "members"), ("G0GROUPDM1", "members"), (DM, "channel"),
        ("C0PRIVATE3", "members"),  # a command in a private channel: its name says so
    ])
    asked = [a["channel"] for m, a in fake.calls if m == "conversations.info"]
    assert asked == ["C0PRIVATE1", CHANNEL]


async def test_the_channels_the_bot_is_in_are_known_from_the_start(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    fake_slack.channels.update({f"C0PUB{i:05d}": "channel" for i in range(250)})
    fake_slack.channels["C0PRIVATE1"] = "group"
    async with running(fake_slack, inbox) as platform:
        await wait_for(lambda: platform.kinds.known("C0PRIVATE1") is not None)
        for channel in ("C0PUB00249", "C0PRIVATE1"):
            [_, app_mention] = fake_slack.user_message(
                channel, f"<@{fake_slack.bot_user_id}> asked"
            )
            await deliver(fake_slack, [app_mention])
        got = await inbox.wait(2)
    assert [m.audience for m in got] == ["channel", "members"]
    assert [m for m, _ in fake_slack.calls if m == "users.conversations"] == [
        "users.conversations"
    ] * 2  # 251 channels, 200 a page
    assert not [m for m, _ in fake_slack.calls if m == "conversations.info"]


async def test_a_channel_the_bot_is_invited_to_is_known_from_its_invitation(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fake_slack.channels.update({"C0NEWPUB01": "channel", "C0NEWPRIV1": "group"})
    for channel in ("C0NEWPUB01", "C0NEWPRIV1"):
        await deliver(fake_slack, [fake_slack.invite_bot(channel)])
    await wait_for(lambda: socket_platform.kinds.known("C0NEWPRIV1") is not None)
    assert socket_platform.kinds.known("C0NEWPUB01") == "channel"
    assert socket_platform.kinds.known("C0NEWPRIV1") == "members"


async def test_a_channel_shared_with_another_organisation_is_told_as_only_its_members(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack Connect: people of another organisation read it, public as it is in this
    # workspace, and its events' channel_type says "channel". The listing at start
    # says it is shared, and so does every event's body (`is_ext_shared_channel`),
    # an app_mention's too: Slack need not be asked.
    fake = fake_slack
    fake.channels["C0LISTED01"] = "channel"
    fake.shared.update({"C0LISTED01", "C0MENTION1", "C0TOLD0001"})
    mention = f"<@{fake.bot_user_id}>"
    async with running(fake, inbox) as platform:
        kinds = platform.kinds
        await wait_for(lambda: kinds.known("C0LISTED01") is not None)
        [_, app_mention] = fake.user_message("C0MENTION1", f"{mention} asked")
        await deliver(fake, [app_mention])
        await deliver(fake, fake.user_message("C0TOLD0001", "no mention"))
        for channel in ("C0LISTED01", "C0TOLD0001"):
            [_, app_mention] = fake.user_message(channel, f"{mention} asked")
            await deliver(fake, [app_mention])
        got = await inbox.wait(4)
        assert {c: kinds.known(c) for c in ("C0LISTED01", "C0MENTION1", "C0TOLD0001")} == (
            dict.fromkeys(("C0LISTED01", "C0MENTION1", "C0TOLD0001"), "members")
        )
    assert [(m.channel, m.audience) for m in got] == [
        ("C0MENTION1", "members"), ("C0TOLD0001", "members"),  # the core answers or not
        ("C0LISTED01", "members"), ("C0TOLD0001", "members"),
    ]
    assert not [m for m, _ in fake.calls if m == "conversations.info"]


def test_a_channel_known_to_be_shared_stays_so() -> None:
    # Only an event's body says a channel is shared with another organisation: a
    # later event's type ("channel") does not say it no longer is, nor does the body
    # of one whose share is not accepted yet (Slack describes it as pending).
    kinds = places.ChannelKinds(AsyncWebClient(token="xoxb-1"), lambda work: work.close())
    kinds.learn("C0SHARED01", "channel", shared=True)
    kinds.learn("C0SHARED01", "channel")
    assert kinds.known("C0SHARED01") == "members"
    pending = {"id": "C0PENDING1", "is_channel": True, "is_private": False,
               "is_ext_shared": False, "is_pending_ext_shared": True}
    assert places._audience(places._kind(pending)) == "members"


def test_the_channel_types_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # One entry per channel ever heard from, for ever: months in a large workspace
    # (DMs included) grew it without end. The longest quiet are forgotten (asked
    # about again if they speak), and DMs are not kept at all.
    monkeypatch.setattr(places, "MAX_KINDS", 3)
    kinds = places.ChannelKinds(AsyncWebClient(token="xoxb-1"), lambda work: work.close())
    kinds.learn("D0DM0001", "im")
    for channel in ("C1", "C2", "C3"):
        kinds.learn(channel, "channel")
    assert kinds.known("C1") == "channel"  # heard from again: kept over C2
    kinds.learn("G4", "group")
    assert [c for c in ("C1", "C2", "C3", "G4") if kinds.known(c)] == ["C1", "C3", "G4"]
    assert kinds.known("D0DM0001") is None


async def test_questions_are_handed_over_in_order_while_their_channel_is_looked_up(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # A question was held for the lookup: the next, in a channel already known or
    # after it, overtook it (a question after /chat-reset went to the old session).
    fake_slack.slow["conversations.info"] = [1.0]
    mention = f"<@{fake_slack.bot_user_id}>"
    for text in ("first", "second"):
        [_, app_mention] = fake_slack.user_message(CHANNEL, f"{mention} {text}")
        await deliver(fake_slack, [app_mention])
    got = await inbox.wait(2)
    assert [m.text for m in got] == ["first", "second"]


async def test_a_channel_slack_will_not_describe_counts_as_private(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An app installed before it asked for channels:read: nothing said there can
    # reach another place's conversation, and the log says what to add.
    fake_slack.scopes.discard("channels:read")
    for _ in range(2):
        [_, app_mention] = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> hi")
        await deliver(fake_slack, [app_mention])
        await wait_for(lambda: not socket_platform.kinds._asking)
    got = await inbox.wait(2)
    assert [m.audience for m in got] == ["members", "members"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "channels:read" in warnings[0]
    assert fake_slack.bot_token not in caplog.text


async def test_slack_failing_for_now_is_not_taken_for_missing_scopes(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chat_bridge.slack")
    fake_slack.fail["conversations.info"] = ["internal_error"]
    [_, app_mention] = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> hi")
    await deliver(fake_slack, [app_mention])
    await inbox.wait(1)
    await wait_for(lambda: not socket_platform.kinds._asking)
    said = [r for r in caplog.records if "is private" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    assert "scopes" not in said[0].getMessage() and "internal_error" in said[0].getMessage()


async def test_a_channel_slack_will_not_describe_is_not_asked_about_at_every_question(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fake_slack.scopes.discard("channels:read")
    for _ in range(3):
        [_, app_mention] = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> hi")
        await deliver(fake_slack, [app_mention])
    got = await inbox.wait(3)
    assert [m.audience for m in got] == ["members"] * 3
    assert [m for m, _ in fake_slack.calls if m == "conversations.info"] == ["conversations.info"]


async def test_without_a_route_per_user_slack_is_not_asked_who_sees_a_channel(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Only `session: user` keys a conversation by who sees its place: elsewhere the
    # lookup would cost a call, and nag an app without the scopes it does not need.
    socket_platform.kinds.enabled = False
    fake_slack.scopes.discard("channels:read")
    fake_slack.channels["C0PRIVATE1"] = "group"
    for channel in (CHANNEL, "C0PRIVATE1"):
        [_, app_mention] = fake_slack.user_message(channel, f"<@{fake_slack.bot_user_id}> hi")
        await deliver(fake_slack, [app_mention])
    got = await inbox.wait(2)
    assert [m.audience for m in got] == ["channel", "channel"]
    assert not [m for m, _ in fake_slack.calls if m == "conversations.info"]
    await deliver(fake_slack, [fake_slack.invite_bot("C0PRIVATE1")])  # nor kept
    await deliver(fake_slack, fake_slack.user_message("C0PRIVATE1", "no mention"))
    assert len(socket_platform.kinds._kinds) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_thread_reply_without_mention_is_delivered_unmentioned(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    root = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> first")
    await deliver(fake_slack, root)
    root_ts = root[0]["event"]["ts"]
    follow_up = fake_slack.user_message(CHANNEL, "and a follow-up", thread_ts=root_ts)
    await deliver(fake_slack, follow_up)
    first, second = await inbox.wait(2)
    assert first.thread == second.thread == root_ts
    assert second.mentioned is False and second.text == "and a follow-up"
    _, target = inbox.items[1]
    assert target.address == Address("slack", fake_slack.team_id, CHANNEL, root_ts)


async def test_a_message_beginning_with_someone_elses_mention_says_so(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    me = f"<@{fake_slack.bot_user_id}>"
    texts = [
        "<@U0OTHERBOT> please summarise this thread",  # another bot, or a person
        " <!subteam^S0ONCALL|@oncall> can you look?",  # a user group
        f"<@U0OTHERBOT> what do you think, {me}?",  # the bot too: its own
        f"{me} and <@U0OTHERBOT>, what is it?",
        "thanks <@U0OTHERBOT>, and a question",  # not addressed to them first
        "a follow-up",
    ]
    bodies = [b for text in texts for b in fake_slack.user_message(CHANNEL, text, thread_ts="1.0")]
    await deliver(fake_slack, bodies)
    delivered = await inbox.wait(len(texts))
    assert [(m.addresses_other, m.mentioned) for m in delivered] == [
        (True, False), (True, False), (True, True), (False, True), (False, False), (False, False)
    ]


async def test_dm_is_delivered_as_dm_at_top_level(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    body = fake_slack.user_message(DM, "hello there")
    assert len(body) == 1
    await deliver(fake_slack, body)
    [msg] = await inbox.wait(1)
    assert msg.is_dm and msg.thread is None and msg.text == "hello there" and not msg.mentioned


async def test_own_and_other_bots_edits_and_subtypes_are_ignored(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fake = fake_slack
    ignored = [
        *fake.user_message(CHANNEL, "my own message", user=fake.bot_user_id, bot_id=fake.bot_id),
        *fake.user_message(CHANNEL, "another bot", user="U0OTHERBOT", bot_id="B0OTHER01"),
        *fake.user_message(CHANNEL, "joined", subtype="channel_join"),
        fake.event_body(
            {"type": "message", "subtype": "message_changed", "channel": CHANNEL, "hidden": True,
             "message": {"type": "message", "user": "U0USER001", "text": "edited", "ts": "1.1"},
             "ts": "1.2", "event_ts": "1.2", "channel_type": "channel"}
        ),
        fake.event_body(
            {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "hidden": True,
             "deleted_ts": "1.1", "ts": "1.3", "event_ts": "1.3", "channel_type": "channel"}
        ),
        fake.event_body({"type": "reaction_added", "user": "U0USER001", "reaction": "eyes",
                         "item": {"type": "message", "channel": CHANNEL, "ts": "1.1"}}),
    ]
    await deliver(fake, ignored)
    await deliver(fake, fake.user_message(CHANNEL, "a person", user="U0PERSON1"))
    [msg] = await inbox.wait(1)
    assert msg.user == "U0PERSON1"
    # Every envelope was acknowledged, ignored or not.
    assert len(fake.acks) == len(ignored) + 1


async def test_other_bots_can_be_let_in(fake_slack: FakeSlack, inbox: Inbox) -> None:
    async with running(fake_slack, inbox, ignore_bots=False):
        fake = fake_slack
        mine = fake.user_message(CHANNEL, "mine", user=fake.bot_user_id, bot_id=fake.bot_id)
        theirs = fake.user_message(CHANNEL, "theirs", user="U0OTHERBOT", bot_id="B0OTHER01")
        legacy = fake.event_body(
            {"type": "message", "subtype": "bot_message", "channel": CHANNEL, "text": "hook",
             "bot_id": "B0HOOK001", "username": "ci", "ts": "1.5", "event_ts": "1.5",
             "channel_type": "channel"}
        )
        await deliver(fake, [*mine, *theirs, legacy])
        theirs_msg, hook = await inbox.wait(2)
        assert theirs_msg.text == "theirs" and theirs_msg.user == "U0OTHERBOT"
        assert hook.text == "hook" and hook.user == "B0HOOK001"


async def test_retried_envelope_keeps_its_event_id(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    [body] = fake_slack.user_message(DM, "once")
    await deliver(fake_slack, [body])
    env = await fake_slack.send_envelope(
        "events_api", body, retry_attempt=1, retry_reason="timeout"
    )
    await fake_slack.wait_ack(env)
    first, second = await inbox.wait(2)
    assert first.event_id == second.event_id == f"{DM}:{body['event']['ts']}"


async def test_everything_goes_through_the_proxy_the_environment_names(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Named without a scheme, as curl and pip take it; slack-sdk's own reading
    # of the variable took "127.0.0.1:port" for a URL and could not start.
    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    fake_slack.host = "slack.test"  # reached through the proxy (loopback would go direct)
    async with FakeProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))
        async with running(fake_slack, inbox):
            fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
            await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", fields))
            await inbox.wait(1)
            _, target = inbox.items[0]
            await target.notice("Started a new conversation.")
    assert fake_slack.responses == [
        {"response_type": "ephemeral", "text": "Started a new conversation."}
    ]
    assert proxy.saw(f"POST {fake_slack.base}/api/auth.test ")  # the Web API
    assert proxy.saw(f"GET ws://slack.test:{fake_slack.port}/socket-mode?ticket=")  # Socket Mode
    assert proxy.saw(f"POST {fake_slack.base}/commands/response/")  # response_url


async def test_a_slack_on_loopback_is_reached_directly_whatever_the_proxy_variables_say(
    fake_slack: FakeSlack, inbox: Inbox, no_proxies: pytest.MonkeyPatch
) -> None:
    # As the chat APIs: a proxy elsewhere cannot reach this machine's loopback.
    async with FakeProxy() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            no_proxies.setenv(name, proxy.url)
        async with running(fake_slack, inbox):
            fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
            await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", fields))
            await inbox.wait(1)
            _, target = inbox.items[0]
            await target.notice("Started a new conversation.")
    assert fake_slack.responses == [
        {"response_type": "ephemeral", "text": "Started a new conversation."}
    ]
    assert proxy.seen == []


async def test_slash_command_delivers_reset_and_answers_ephemerally(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
    env = await fake_slack.send_envelope("slash_commands", fields)
    assert await fake_slack.wait_ack(env) is None  # empty ack: nothing shown in the channel
    [msg] = await inbox.wait(1)
    assert msg.command == "reset" and msg.channel == CHANNEL and msg.user == "U0USER001"
    assert msg.event_id == f"command:{fields['trigger_id']}"
    _, target = inbox.items[0]
    await target.notice("Started a new conversation.")
    assert fake_slack.responses == [
        {"response_type": "ephemeral", "text": "Started a new conversation."}
    ]
    assert fake_slack.bot_replies(CHANNEL) == []


async def test_stop_receiving_disconnects(
    fake_slack: FakeSlack, socket_platform: SlackPlatform
) -> None:
    await socket_platform.stop_receiving()
    assert not socket_platform.connected
    await fake_slack.wait_for(lambda: not fake_slack._sockets)


# --------------------------------------------------------------------------- HTTP mode


@pytest.fixture
async def http_platform(
    fake_slack: FakeSlack, inbox: Inbox
) -> AsyncIterator[tuple[SlackPlatform, str]]:
    async def health(only: Collection[str] | None = None) -> dict[str, str]:
        return {}

    server = HttpServer("127.0.0.1:0", health, _no_metrics)
    platform = SlackPlatform(PlatformContext(options=options(fake_slack, http=True), http=server))
    await server.start()
    url = f"http://127.0.0.1:{server.port}/slack/events"
    # Before start(), events are refused so Slack retries them later.
    status, _ = await fake_slack.post_event(url, fake_slack.user_message(DM, "early")[0])
    assert status == 503
    await platform.start(inbox)
    try:
        yield platform, url
    finally:
        await platform.aclose()
        await server.aclose()


async def test_http_events_are_verified_and_delivered(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> over http")
    for body in bodies:
        status, _ = await fake_slack.post_event(url, body)
        assert status == 200
    [msg] = await inbox.wait(1)
    assert msg.text == "over http" and msg.mentioned
    assert msg.event_id == f"{CHANNEL}:{bodies[0]['event']['ts']}"


async def test_http_bad_signature_and_stale_timestamp_get_401(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    [body] = fake_slack.user_message(DM, "forged")
    assert (await fake_slack.post_event(url, body, secret="not-the-secret"))[0] == 401
    assert (await fake_slack.post_event(url, body, timestamp=int(time.time()) - 600))[0] == 401
    assert (await fake_slack.post_event(url, body, signature="v0=deadbeef"))[0] == 401
    status, _ = await fake_slack.post_event(url, fake_slack.user_message(DM, "genuine")[0])
    assert status == 200
    [msg] = await inbox.wait(1)
    assert msg.text == "genuine"


async def test_http_refused_signatures_are_warned_of_once_a_minute_by_cause(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every refusal was one DEBUG line, the same for every cause: a wrong secret or a
    # proxy re-encoding bodies left Slack's requests refused and the log silent.
    caplog.set_level(logging.DEBUG, "chat_bridge.slack")
    _, url = http_platform
    [body] = fake_slack.user_message(DM, "refused")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    assert (await fake_slack.post_event(url, body, secret="not-the-secret"))[0] == 401
    [wrong] = warnings()
    assert "signature does not match the body (a wrong slack.signing_secret" in wrong
    # Within the minute: counted, not said again.
    assert (await fake_slack.post_event(url, body, timestamp=int(time.time()) - 360))[0] == 401
    raw = json.dumps(body)
    changed = fake_slack.sign(raw, int(time.time()))
    assert (await fake_slack.post_http(url, raw + "\n", "application/json", signature=changed))[
        0
    ] == 401
    assert warnings() == [wrong]
    # Requests not claiming to be Slack's are the internet's noise: never a warning.
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as resp:
        assert resp.status == 401
    monkeypatch.setattr("adapters.platforms.slack.http_mode.WARN_EVERY", 0.0)
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as resp:
        assert resp.status == 401
    assert warnings() == [wrong]
    assert (await fake_slack.post_event(url, body, timestamp=int(time.time()) + 360))[0] == 401
    [skew] = warnings()[1:]
    assert re.fullmatch(
        r"slack: refused a request to the events endpoint: timestamp 3[56]\d s off this "
        r"machine's clock \(clock skew, or a replayed request\); 2 more refused since the "
        r"last such warning",
        skew,
    ), skew
    assert fake_slack.signing_secret not in caplog.text
    assert changed.removeprefix("v0=") not in caplog.text


async def test_http_garbage_is_refused_in_a_word(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = http_platform
    json_type = "application/json"
    # Signed by Slack's secret but not a body Slack sends: 400.
    assert (await fake_slack.post_http(url, "{not json", json_type))[0] == 400
    assert (await fake_slack.post_http(url, "[1]", json_type))[0] == 400
    # Not signed, or not even text: 401, before anything is read.
    assert (await fake_slack.post_http(url, "{}", json_type, signature="v0=00"))[0] == 401
    async with aiohttp.ClientSession() as session:
        for headers in ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, {}):
            async with session.post(url, data=b"\xff\xfe", headers=headers) as resp:
                assert resp.status == 401
        # A signature that is not even ASCII (the digest comparison refuses it).
        stamp = str(int(time.time()))
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=\u00e9"}
        async with session.post(url, data=b"{}", headers=headers) as resp:
            assert resp.status == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    status, _ = await fake_slack.post_event(url, fake_slack.user_message(DM, "genuine")[0])
    assert status == 200
    [msg] = await inbox.wait(1)
    assert msg.text == "genuine"


async def test_http_slash_commands_that_say_payload_are_answered(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    # Bolt takes a form body holding the word "payload" anywhere for an interactivity
    # form: these were refused as unhandled requests (404) and the user told it failed.
    _, url = http_platform
    in_channel = fake_slack.slash_command("/chat-reset", CHANNEL)
    in_channel["channel_name"] = "payload-x"
    by_user = fake_slack.slash_command("/chat-reset", CHANNEL)
    by_user["user_name"] = "payloadops"
    with_text = fake_slack.slash_command("/chat-reset", CHANNEL, text="the payload question")
    for fields in (in_channel, by_user, with_text):
        assert (await fake_slack.post_command(url, fields))[0] == 200
    delivered = await inbox.wait(3)
    assert [m.command for m in delivered] == ["reset"] * 3
    assert all(m.channel == CHANNEL and m.user == "U0USER001" for m in delivered)
    assert [m.text for m in delivered] == ["", "", "the payload question"]


async def _send_part(
    url: str, headers: dict[str, str], declared: int, sent: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a POST declaring a body of `declared` bytes and send only `sent` of it."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = ["POST /slack/events HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}",
             "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
    await writer.drain()
    return reader, writer


async def _status_of(reader: asyncio.StreamReader) -> int:
    async with asyncio.timeout(5):  # a deadline for a hang, not a speed target
        return int((await reader.readline()).split()[1])


async def test_http_an_unsigned_request_is_refused_before_its_body_is_read(
    http_platform: tuple[SlackPlatform, str],
) -> None:
    # Its whole body was read first: anyone could make the daemon hold a megabyte a
    # connection, for as long as they kept the body from ending.
    _, url = http_platform
    stale = {"X-Slack-Request-Timestamp": str(int(time.time()) - 3600), "X-Slack-Signature": "v0=1"}
    for headers in ({}, stale):
        reader, writer = await _send_part(url, headers, 1_000_000, b"{")
        try:
            assert await _status_of(reader) == 401
        finally:
            writer.close()


async def test_http_a_timestamp_of_digits_no_number_is_refused_in_a_word(
    http_platform: tuple[SlackPlatform, str], caplog: pytest.LogCaptureFixture,
) -> None:
    # Digits Python's int() refuses ("²"), or thousands of them: a 500 and a traceback.
    _, url = http_platform
    for stamp in ("²", "9" * 5000):
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=1"}
        reader, writer = await _send_part(url, headers, 2, b"{}")
        try:
            assert await _status_of(reader) == 401
        finally:
            writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_http_a_body_that_does_not_arrive_in_time_is_refused(
    http_platform: tuple[SlackPlatform, str], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("adapters.platforms.slack.http_mode.BODY_SECONDS", 0.2)
    _, url = http_platform
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    reader, writer = await _send_part(url, fresh, 1000, b'{"type": ')
    try:
        assert await _status_of(reader) == 408
    finally:
        writer.close()
    # A client that leaves mid-body: a word at DEBUG, not an ERROR and a traceback.
    caplog.set_level(logging.DEBUG, "chat_bridge.slack")
    reader, writer = await _send_part(url, fresh, 1000, b'{"type": ')
    writer.close()
    await wait_for(lambda: any("left before" in r.getMessage() for r in caplog.records))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_http_a_body_over_a_mebibyte_is_refused_before_it_is_read(
    http_platform: tuple[SlackPlatform, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read before its signature can be checked, by anyone with a fresh timestamp: the
    # daemon held it until its deadline, a megabyte a connection.
    _, url = http_platform
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    reader, writer = await _send_part(url, fresh, 2_000_000, b"{")
    try:
        assert await _status_of(reader) == 413
    finally:
        writer.close()
    # No size told (chunked): refused once it passes the bound.
    monkeypatch.setattr("adapters.platforms.slack.http_mode.MAX_BODY", 1000)
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: v0=1\r\n\r\n400\r\n%s\r\n"
        % (int(time.time()), b" " * 0x400)
    )
    try:
        assert await _status_of(reader) == 413
    finally:
        writer.close()


async def test_http_large_bodies_arriving_at_once_are_bounded_and_slack_still_answered(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # 512 connections each sending a body of just under a megabyte, never ending,
    # made the daemon hold 700 MiB.
    monkeypatch.setattr("adapters.platforms.slack.http_mode.SMALL_BODY", 100)
    monkeypatch.setattr("adapters.platforms.slack.http_mode.LARGE_BODIES", 2000)
    platform, url = http_platform
    endpoint = platform._http_events.__self__  # type: ignore[attr-defined]
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    stalled = await _send_part(url, fresh, 1000, b"{")
    await wait_for(lambda: endpoint._large == 1000)
    second = await _send_part(url, fresh, 1500, b"{")
    try:
        assert await _status_of(second[0]) == 503  # at once, not when its body ends
        # A body within what is left is read: Slack's event (620 bytes, past SMALL_BODY).
        assert (await fake_slack.post_event(url, fake_slack.user_message(DM, "hi")[0]))[0] == 200
        [msg] = await inbox.wait(1)
        assert msg.text == "hi"
    finally:
        second[1].close()
        stalled[1].close()
    await wait_for(lambda: endpoint._large == 0)  # given back, its client gone
    assert (await fake_slack.post_event(url, fake_slack.user_message(DM, "again")[0]))[0] == 200
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "large bodies arriving at once" in warning


@pytest.mark.parametrize(
    "how",
    [
        b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde",
        b"Content-Encoding: deflate\r\nContent-Length: 5\r\n\r\nabcde",
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n",
    ],
    ids=["gzip", "deflate", "chunked"],
)
async def test_http_a_body_that_does_not_decode_is_refused_in_a_word(
    http_platform: tuple[SlackPlatform, str], caplog: pytest.LogCaptureFixture, how: bytes,
) -> None:
    # A fresh timestamp and any signature, and a body that is not what its compression
    # or chunking says: a 500 and two tracebacks, from anyone.
    _, url = http_platform
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: v0=00\r\n%s"
        % (int(time.time()), how)
    )
    try:
        assert await _status_of(reader) == 400
    finally:
        writer.close()
    # One DEBUG line (the endpoint's, or the listener's for broken chunking).
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_stop_waits_briefly_for_a_request_still_arriving(fake_slack: FakeSlack) -> None:
    # aiohttp waits a minute by default for requests still open: one client trickling
    # a body held every stop that long, a second signal notwithstanding.
    async def health(only: Collection[str] | None = None) -> dict[str, str]:
        return {}

    server = HttpServer("127.0.0.1:0", health, _no_metrics)
    platform = SlackPlatform(PlatformContext(options=options(fake_slack, http=True), http=server))
    await server.start()
    await platform.start(lambda msg, target: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
    url = f"http://127.0.0.1:{server.port}/slack/events"
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    reader, writer = await _send_part(url, fresh, 1000, b"{")
    try:
        await platform.aclose()
        async with asyncio.timeout(5):  # BODY_SECONDS is 10: the stop's own limit ends it
            await server.aclose()
            rest = await reader.read()
        # Refused, for Slack to send again, and the trickling connection closed.
        assert rest.startswith(b"HTTP/1.1 503 ") and reader.at_eof()
    finally:
        writer.close()


async def test_http_slacks_notice_that_it_drops_events_is_acknowledged_and_logged(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = http_platform
    notice = {"token": "t", "team_id": "T0TEAM0001", "minute_rate_limited": 1518467820,
              "api_app_id": "A0APP00001", "type": "app_rate_limited"}
    status, _ = await fake_slack.post_event(url, notice)
    assert status == 200  # not "unhandled request" (404), which Slack counts as a failure
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "Slack is dropping this app's events" in warning


async def test_http_an_event_arriving_as_the_stop_begins_is_refused_for_slack_to_retry(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    platform, _ = http_platform
    [body] = fake_slack.user_message(DM, "asked as the daemon stops")
    raw = json.dumps(body)
    stamp = int(time.time())

    class Body:
        """A body still arriving when the daemon begins to stop."""

        parts = [raw.encode(), b""]

        async def readany(self) -> bytes:
            if self.parts[0]:
                await platform.stop_receiving()
            return self.parts.pop(0)

    class Arriving:
        query_string = ""
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": fake_slack.sign(raw, stamp),
        }
        content_length = len(raw)
        content = Body()

    response = await platform._http_events(Arriving())  # type: ignore[arg-type]
    assert isinstance(response, web.Response)
    assert response.status == 503  # acked, it would be lost: Slack retries a 503
    assert inbox.items == []


async def test_an_event_the_stop_overtakes_in_bolt_is_not_acknowledged(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The stop begins while bolt dispatches an envelope: acked, nobody would
    # answer it and Slack would not send it again.
    platform, handler = socket_platform, socket_platform._handler
    overtaken = asyncio.Event()
    normalize = platform.inbound

    def stop_begins(*args: Any, **kw: Any) -> Any:
        if not overtaken.is_set():
            platform._handler = None  # what stop_receiving() does first
            overtaken.set()
        return normalize(*args, **kw)

    platform.inbound = stop_begins  # type: ignore[method-assign]
    [body] = fake_slack.user_message(DM, "asked as the deploy began")
    first = await fake_slack.send_envelope("events_api", body)
    await asyncio.wait_for(overtaken.wait(), 5)
    platform._handler = handler
    [later] = fake_slack.user_message(DM, "asked next")
    await fake_slack.wait_ack(await fake_slack.send_envelope("events_api", later))
    [msg] = await inbox.wait(1)
    assert msg.text == "asked next"
    assert first not in fake_slack.acks  # Slack sends it again
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_command_the_stop_overtakes_is_not_acknowledged(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    socket_platform._handler = None  # the stop has begun; the socket is still open
    fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
    first = await fake_slack.send_envelope("slash_commands", fields)
    await wait_for(  # bolt answered the command (500: no ack)
        lambda: any("Unsuccessful Bolt execution" in r.getMessage() for r in caplog.records),
        timeout=5,
    )
    assert first not in fake_slack.acks  # Slack tells the user it failed: not silence
    assert inbox.items == []


async def test_http_url_verification_and_retries(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    status, text = await fake_slack.post_event(
        url, {"token": "t", "challenge": "c-123", "type": "url_verification"}
    )
    assert status == 200 and "c-123" in text
    [body] = fake_slack.user_message(DM, "retry me")
    assert (await fake_slack.post_event(url, body))[0] == 200
    assert (await fake_slack.post_event(url, body, retry_num=1))[0] == 200
    first, second = await inbox.wait(2)
    assert first.event_id == second.event_id  # the core drops the second by event id


async def test_http_slash_command(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    status, text = await fake_slack.post_command(url, fake_slack.slash_command("/chat-reset", DM))
    assert status == 200 and text == ""
    [msg] = await inbox.wait(1)
    assert msg.command == "reset" and msg.is_dm


# --------------------------------------------------------------------------- replies


async def asked(
    fake: FakeSlack, inbox: Inbox, channel: str = CHANNEL, text: str = "q"
) -> SlackTarget:
    if not channel.startswith("D"):
        text = f"<@{fake.bot_user_id}> {text}"
    before = len(inbox.items)
    await deliver(fake, fake.user_message(channel, text))
    await inbox.wait(before + 1)
    return inbox.items[-1][1]


async def begun(fake: FakeSlack, inbox: Inbox) -> tuple[SlackTarget, str]:
    """A question asked and its reply begun: the target, and the ts of the reply's
    first message (a stream's, in native mode)."""
    target = await asked(fake, inbox)
    ts = await target.begin()
    assert ts is not None
    return target, ts


async def cut_while_slack_starts(fake: FakeSlack, inbox: Inbox, seconds: float) -> SlackTarget:
    """A question's reply, cut by a stop while Slack takes `seconds` to start its stream."""
    target = await asked(fake, inbox)
    fake.slow["chat.startStream"] = [seconds]
    begin = asyncio.create_task(target.begin())
    await fake.wait_for(lambda: fake.count("chat.startStream"))
    begin.cancel()  # the stop
    with pytest.raises(asyncio.CancelledError):
        await begin
    return target


async def answered(target: SlackTarget, text: str = "Hello world") -> None:
    """`text`, a whole answer, shown in `target` by a live reply, as the relay shows one."""
    reply = LiveReply(target, Budgets(), edit_interval=0.05)
    await reply.start()
    reply.feed(text)
    await reply.finish(None)


async def two_in_one_thread(fake: FakeSlack, inbox: Inbox) -> tuple[SlackTarget, SlackTarget]:
    """Two askers' questions in one thread: the targets of the first and the second."""
    first = await asked(fake, inbox, text="q1")
    mention = f"<@{fake.bot_user_id}> q2"
    await deliver(fake, fake.user_message(
        CHANNEL, mention, thread_ts=first.address.thread, user="U0USER002"
    ))
    await inbox.wait(2)
    return first, inbox.items[-1][1]


def stopped_text(fake: FakeSlack, ts: str) -> str:
    """The text of the bot's message `ts`, which must be there and streaming no more."""
    message = fake.find(CHANNEL, ts)
    assert message is not None and not message.streaming
    return message.text


async def test_update_mode_reply_in_thread(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target = await asked(fake_slack, inbox)
    assert target.limits.begin_posts and target.limits.max_chars == 3900
    assert target.limits.edit_bucket == f"slack:update:{fake_slack.team_id}"
    assert target.limits.post_bucket == f"slack:post:{fake_slack.team_id}:{CHANNEL}"
    placeholder = await target.begin()
    assert placeholder is not None
    await target.edit(placeholder, target.format_markdown("Partial **answer**"))
    body = target.format_markdown("Partial **answer**, complete <!here>.")
    sources = target.format_sources([Source("https://d.example", "Docs")])
    await target.edit(placeholder, body + "\n\n" + sources)
    await target.end()
    root = target.address.thread
    assert root is not None
    [reply] = fake_slack.bot_replies(CHANNEL, root)
    assert reply.versions[0] == "_Thinking…_"
    assert reply.text == (
        "Partial *answer*, complete @\u2060here.\n\n_Sources:_ <https://d.example|Docs>"
    )
    assert fake_slack.pings == []
    # The question got a "thinking" reaction for the duration of the answer (taken
    # off in the background: the end does not wait for it).
    await fake_slack.wait_for(lambda: not fake_slack.reactions[(CHANNEL, root)])
    assert fake_slack.count("reactions.add") == 1 and fake_slack.count("reactions.remove") == 1


@pytest.mark.parametrize(
    ("thinking_text", "shown"),
    # Empty (shown nowhere on Discord): Slack refused every placeholder (no_text).
    [("**Working**", "*Working*"), ("", "_Thinking…_")],
)
async def test_placeholder_follows_the_core_thinking_text(
    fake_slack: FakeSlack, thinking_text: str, shown: str
) -> None:
    ctx = PlatformContext(options=options(fake_slack), thinking_text=thinking_text)
    platform = SlackPlatform(ctx)
    inbox = Inbox()
    await platform.start(inbox)
    try:
        target = await asked(fake_slack, inbox)
        ts = await target.begin()
        message = fake_slack.find(CHANNEL, ts or "")
        assert message is not None and message.text == shown
        await target.end()
    finally:
        await platform.aclose()


async def test_update_never_sends_more_than_slack_takes(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target, ts = await begun(fake_slack, inbox)
    await target.edit(ts, "x" * 5000)
    assert len(fake_slack.find(CHANNEL, ts).text) == 4000  # type: ignore[union-attr]
    assert not fake_slack.rejected


async def test_refusals_become_platform_errors(
    fake_slack: FakeSlack, socket_platform: SlackPlatform
) -> None:
    target = socket_platform.target(Address("slack", fake_slack.team_id, CHANNEL, "1.1"))
    fake_slack.fail["chat.postMessage"] = ["msg_too_long"]
    with pytest.raises(PlatformError, match="msg_too_long") as refused:
        await target.post("hello")
    assert not isinstance(refused.value, PlaceGone)
    # A message, or the question whose thread a reply goes in, that is gone ends
    # the reply: trying again cannot help.
    with pytest.raises(PlaceGone, match="message_not_found"):
        await target.edit("9.9", "hello")
    with pytest.raises(PlaceGone, match="thread_not_found"):
        await target.post("hello")
    # So does a token Slack no longer takes, and the error says what to look at.
    fake_slack.fail["chat.postMessage"] = ["token_revoked"]
    with pytest.raises(PlaceGone, match="token_revoked.*uninstalled") as locked_out:
        await target.post("hello")
    assert fake_slack.bot_token not in str(locked_out.value)


async def test_a_page_that_is_not_slacks_answer_means_slack_could_not_be_reached(
    fake_slack: FakeSlack, socket_platform: SlackPlatform
) -> None:
    # An outage's 503 or a proxy's 502 comes with a page, not Slack's JSON: reading an
    # error code from it raised AttributeError, and each failure was logged as that.
    target = socket_platform.target(Address("slack", fake_slack.team_id, CHANNEL, None))
    fake_slack.unavailable["chat.postMessage"] = [503]
    reached = r"could not be reached for chat.postMessage \(HTTP 503\)"
    with pytest.raises(PlatformUnreachable, match=reached) as caught:
        await target.post("hello")
    assert not isinstance(caught.value, SlackRefused | PlaceGone)  # tried again, not ended
    ts = await target.post("hello")
    fake_slack.unavailable["chat.update"] = [502]
    with pytest.raises(PlatformError, match=r"could not be reached for chat.update \(HTTP 502\)"):
        await target.edit(ts, "hello again")
    # Slack's own refusals are still read from its answer: a refusal of this very
    # request (tried again a few times only), or Slack failing on its side (it may
    # take the request later: a reply's end is tried again for minutes).
    fake_slack.fail["chat.update"] = ["msg_too_long"]
    with pytest.raises(PlatformRefused, match="msg_too_long") as refused:
        await target.edit(ts, "hello again")
    assert isinstance(refused.value, SlackRefused)
    fake_slack.fail["chat.update"] = ["internal_error"]
    with pytest.raises(PlatformError, match="internal_error") as failing:
        await target.edit(ts, "hello again")
    assert not isinstance(failing.value, PlatformRefused)


async def dm_thread_target(fake_slack: FakeSlack, inbox: Inbox) -> SlackTarget:
    """The target of a question asked in a thread of a DM (an assistant thread)."""
    [root] = fake_slack.user_message(DM, "start")
    await deliver(fake_slack, [root])
    in_thread = fake_slack.user_message(DM, "in thread", thread_ts=root["event"]["ts"])
    await deliver(fake_slack, in_thread)
    await inbox.wait(2)
    return inbox.items[1][1]


async def test_dm_thread_uses_assistant_status(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target = await dm_thread_target(fake_slack, inbox)
    ts = await target.begin()
    assert ts is not None
    await target.end()
    assert [s["status"] for s in fake_slack.statuses] == ["is thinking…", ""]
    assert fake_slack.count("reactions.add") == 0


async def test_rate_limited_call_is_retried_after_retry_after(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target, ts = await begun(fake_slack, inbox)
    fake_slack.set_rate("chat.update", 1, 1.0)
    await target.edit(ts, "one")
    await target.edit(ts, "two")  # 429, Retry-After: 1, then retried
    assert fake_slack.rate_limited["chat.update"] == 1
    assert fake_slack.find(CHANNEL, ts).text == "two"  # type: ignore[union-attr]


async def test_a_429_that_ends_a_call_is_counted_too(fake_slack: FakeSlack, inbox: Inbox) -> None:
    limited: list[int] = []
    platform = await started(
        fake_slack, inbox, lambda: limited.append(1), max_retries=0, thinking="none"
    )
    try:
        target, ts = await begun(fake_slack, inbox)
        fake_slack.set_rate("chat.update", 1, 30.0)
        await target.edit(ts, "one")
        with pytest.raises(PlatformError, match="ratelimited"):
            await target.edit(ts, "two")  # 429, and no retry allowed
        assert len(limited) == fake_slack.rate_limited["chat.update"] == 1
    finally:
        await platform.aclose()


# --------------------------------------------------------------------------- native streaming


async def test_a_429_to_a_thinking_reaction_is_counted_and_not_waited_out(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The reactions' client had no handler at all: their 429s, the first under load,
    # were in no metric.
    seen: list[int] = []
    fake_slack.set_rate("reactions.add", 1, 60.0)
    async with running(fake_slack, inbox, lambda: seen.append(1), thinking="reaction"):
        for text in ("one", "two"):
            (await asked(fake_slack, inbox, text=text)).accepted()  # shows it is thinking
        await wait_for(lambda: fake_slack.rate_limited["reactions.add"] == 1 and seen == [1])
        assert fake_slack.count("reactions.add") == 2  # tried once: never waited out


async def test_native_mode_streams_appends_and_stops(fake_slack: FakeSlack, inbox: Inbox) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        assert target.limits.post_bucket == f"slack:stream:{fake_slack.team_id}"
        ts = await target.begin()
        assert ts is not None
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None and message.streaming
        assert message.recipient_user_id == "U0USER001"
        await target.edit(ts, target.format_markdown("Hello"))
        await target.edit(ts, target.format_markdown("Hello **world**\n```py\nx = 1\n```"))
        await target.edit(ts, target.format_markdown("Hello **world**\n```py\nx = 1\ny = 2\n```"))
        sources = target.format_sources([Source("https://d.example", "Docs")])
        await target.edit(ts, "Hello **world**\n```py\nx = 1\ny = 2\n```\n\n" + sources)
        await target.end()
        assert not message.streaming
        assert message.text == (
            "Hello **world**\n```py\nx = 1\ny = 2\n```\n\n_Sources:_ [Docs](https://d.example)"
        )
        assert fake_slack.count("chat.appendStream") == 4
        assert fake_slack.count("chat.update") == 0 and not fake_slack.rejected


async def test_native_mode_streams_for_the_askers_own_team(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack Connect: chat.startStream names the team of the person the stream is for
    # (`recipient_team_id`); one of another organisation's was named as this
    # workspace's. An Enterprise Grid organisation's id (E…), which Slack may give
    # instead of its workspace's, is not a team: the install's is named then.
    fake_slack.shared.add(CHANNEL)
    askers = [("U0EXTERN01", "T0PARTNER1"), ("U0USER001", None), ("W0EXTERN02", "E0PARTNER2")]
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        for user, team in askers:
            bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> q", user=user)
            for body in bodies:
                if team is not None:
                    body["event"].update(team=team, user_team=team, source_team=team)
            before = len(inbox.items)
            await deliver(fake_slack, bodies)
            await inbox.wait(before + 1)
            assert await inbox.items[-1][1].begin() is not None
    assert [
        (args["recipient_user_id"], args["recipient_team_id"])
        for method, args in fake_slack.calls if method == "chat.startStream"
    ] == [
        ("U0EXTERN01", "T0PARTNER1"), ("U0USER001", fake_slack.team_id),
        ("W0EXTERN02", fake_slack.team_id),
    ]


async def test_native_mode_posts_that_are_no_streams_keep_to_the_channels_post_rate(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox, DM)  # a top-level DM: no thread to stream in
        assert target.limits.post_bucket == f"slack:post:{fake_slack.team_id}:{DM}"
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
        reply.feed("\n\n".join(f"{i}. {paragraph}" for i in range(18)))  # three messages
        await reply.finish(None)
        assert len(fake_slack.bot_replies(DM)) == 3
        assert not fake_slack.rate_limited  # chat.postMessage: 1 a second in a channel


async def test_an_escaped_answer_leaves_its_completed_messages_as_they_are_at_the_end(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack's escapes (`&` is `&amp;`) make a message longer than its Markdown: the
    # end split the answer again, elsewhere, rewrote each message already complete
    # (a chat.update of the workspace's ~50 a minute each) and posted one more.
    fast = {"count": 100_000, "per": 1.0}
    fake_slack.set_rate("chat.update", 100_000, 1.0)
    fake_slack.set_rate("chat.postMessage", 100_000, 1.0)
    async with running(
        fake_slack, inbox, thinking="none", max_chars=1000, update_rate=fast, post_rate=fast
    ):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.0)
        await reply.start()
        text = escape_heavy_code(60)

        def shown() -> list[FakeMessage]:
            return fake_slack.bot_replies(CHANNEL, target.address.thread)

        for end in range(40, len(text) + 40, 40):
            reply.feed(text[end - 40 : end])
            fed = shown_words(text[:end])
            await wait_for(lambda: shown_words("\n".join(m.text for m in shown())) == fed)  # noqa: B023
        streamed = [(m.ts, m.text, m.edits) for m in shown()]
        assert len(streamed) > 2
        await reply.finish(None)
        final = [(m.ts, m.text, m.edits) for m in shown()]
        assert final[:-1] == streamed[:-1] and len(final) == len(streamed)


async def test_native_mode_where_streaming_is_refused_posts_keep_to_the_channels_post_rate(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The messages posted instead drew on the streams' budget (20 a minute, in bursts):
    # Slack refused most of them with 429 and each waited out its Retry-After.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        fake_slack.stream_error = "not_allowed"  # this channel only: the app may stream
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
        reply.feed("\n\n".join(f"{i}. {paragraph}" for i in range(30)))  # five messages
        await reply.finish(None)
        assert len(fake_slack.bot_replies(CHANNEL, target.address.thread)) == 5
        assert not fake_slack.rate_limited
        assert target.limits.post_bucket == f"slack:post:{fake_slack.team_id}:{CHANNEL}"


async def test_native_mode_where_streaming_is_refused_questions_at_once_draw_no_429(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Each refused stream's placeholder was posted within the streams' budget: four
    # questions at once in one channel drew 429s from chat.postMessage.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        fake_slack.stream_error = "not_allowed"
        budgets = Budgets()
        replies = []
        for _ in range(4):
            target = await asked(fake_slack, inbox)
            replies.append(LiveReply(target, budgets, edit_interval=0.05))
        await asyncio.gather(*(reply.start() for reply in replies))
        for reply in replies:
            reply.feed("An answer.")
        await asyncio.gather(*(reply.finish(None) for reply in replies))
        assert not fake_slack.rate_limited


async def test_a_tilde_fence_closed_for_display_does_not_end_the_stream(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        for markdown in ("Code:\n~~~py\nx = 1", "Code:\n~~~py\nx = 1\ny = 2",
                         "Code:\n~~~py\nx = 1\ny = 2\n~~~\nDone."):
            # As the renderer shows text so far: an open fence closed for display.
            await target.edit(ts, target.format_markdown(close_fences(markdown)))
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None and message.text == "Code:\n~~~py\nx = 1\ny = 2\n~~~\nDone."
        assert fake_slack.count("chat.appendStream") == 3  # grown by appends alone
        assert fake_slack.count("chat.update") == 0


async def test_thinking_goes_even_when_stopping_the_stream_fails(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="reaction"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, target.format_markdown("Hello"))
        await target.edit(ts, target.format_markdown("Hello, and the end\n```\nx\n```"))
        fake_slack.fail["chat.stopStream"] = ["internal_error"]
        fake_slack.fail["chat.update"] = ["internal_error"]
        with pytest.raises(PlatformError, match="chat.update"):
            await target.end()
        await fake_slack.wait_for(lambda: fake_slack.count("reactions.remove") == 1)
        assert fake_slack.count("reactions.add") == 1
        assert not fake_slack.reactions[(CHANNEL, target.address.thread or "")]


async def test_native_mode_a_stop_slack_refused_shows_the_whole_answer_by_chat_update(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The held-back end of the answer (its closing fence) went with the stop: refused,
    # the message was left streaming and unfinished, or the answer reported failed.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Run this:\n\n```python\nprint('hi')\n```")
        fake_slack.fail["chat.stopStream"] = ["internal_error"]
        await target.end()
        assert stopped_text(fake_slack, ts) == "Run this:\n\n```python\nprint('hi')\n```"


async def test_native_mode_an_append_slack_took_without_answering_is_not_shown_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The connection dropped after Slack took the append: sent again (slack-sdk's own
    # retry, or the renderer's), its text showed twice for good.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        fake_slack.lose_answer["chat.appendStream"] = 1
        with pytest.raises(PlatformError, match="could not be reached"):
            await target.edit(ts, "Hello world")
        await target.edit(ts, "Hello world, again")  # the renderer tries again, text so far
        await target.end()
        assert stopped_text(fake_slack, ts) == "Hello world, again"


async def test_native_mode_a_stream_slack_started_without_answering_is_not_started_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # slack-sdk sent chat.startStream again when its answer was lost: the answer went
    # to a second stream, and the first stayed empty and "being written" for good.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        fake_slack.lose_answer["chat.startStream"] = 1
        await answered(target)
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert stopped_text(fake_slack, message.ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 1
        assert fake_slack.count("conversations.replies") == 1


async def test_native_mode_a_continuation_started_without_answering_is_not_shown_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        await fake_slack.wait_for(lambda: fake_slack.count("chat.startStream") == 1)
        fake_slack.lose_answer["chat.startStream"] = 1  # the second message's
        paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
        answer = "\n\n".join(f"{i}. {paragraph}" for i in range(12))  # two messages
        reply.feed(answer)
        await reply.finish(None)
        first, second = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert not first.streaming and not second.streaming
        assert second.text.startswith("7. ") and second.text.endswith("11. " + paragraph)
        assert fake_slack.count("chat.startStream") == 2


async def test_native_mode_a_stream_slack_did_not_take_is_started_again(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The bot's message posted in the thread after the question (the answer before it
    # went on in a second message) is not taken for the lost one.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        earlier, first = await begun(fake_slack, inbox)
        root = earlier.address.thread
        mention = f"<@{fake_slack.bot_user_id}> and then?"
        await deliver(fake_slack, fake_slack.user_message(CHANNEL, mention, thread_ts=root))
        await inbox.wait(2)
        target = inbox.items[-1][1]
        second = await earlier.post("An earlier answer, part two")
        await earlier.end()
        fake_slack.drop["chat.startStream"] = 1
        await answered(target)
        assert stopped_text(fake_slack, second) == "An earlier answer, part two"
        replies = fake_slack.bot_replies(CHANNEL, root)
        assert [m.ts for m in replies[:2]] == [first, second] and len(replies) == 3
        assert stopped_text(fake_slack, replies[2].ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 4
        assert fake_slack.count("conversations.replies") == 1


@pytest.mark.parametrize("channel", [CHANNEL, DM])
async def test_update_mode_a_placeholder_posted_without_answering_is_not_posted_twice(
    fake_slack: FakeSlack, inbox: Inbox, channel: str
) -> None:
    # In a thread (conversations.replies), and at a DM's top level (.history).
    async with running(fake_slack, inbox, thinking="none"):
        target = await asked(fake_slack, inbox, channel)
        fake_slack.lose_answer["chat.postMessage"] = 1
        await answered(target)
        replies = fake_slack.bot_replies(channel)
        assert [m.text for m in replies] == ["Hello world"]
        assert fake_slack.count("chat.postMessage") == 1


async def test_update_mode_a_post_slack_did_not_take_is_not_taken_for_another_answer(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The bot's messages in the thread just now are another answer's (a replica's, to
    # another asker), tagged with its own nonce or not: the one this process did not
    # know was taken for the lost post, and this answer overwrote it.
    async with running(fake_slack, inbox, thinking="none"):
        target = await asked(fake_slack, inbox)
        root = target.address.thread
        fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root)
        tagged = {"event_type": "chat_bridge_reply", "event_payload": {"id": "another"}}
        fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root, metadata=tagged)
        fake_slack.set_rate("chat.postMessage", 100, 1.0)
        fake_slack.drop["chat.postMessage"] = 1  # the connection dropped: nothing posted
        await answered(target)
        texts = [m.text for m in fake_slack.bot_replies(CHANNEL, root)]
        assert texts == ["Another answer", "Another answer", "Hello world"]
        assert fake_slack.count("chat.postMessage") == 2


@pytest.mark.parametrize(("mode", "method"), [
    ("update", "chat.postMessage"), ("native", "chat.startStream"),
])
async def test_a_message_is_not_taken_for_another_whose_answer_is_on_its_way(
    fake_slack: FakeSlack, inbox: Inbox, mode: str, method: str
) -> None:
    # Two askers in one thread: the first answer's post (or stream) is in Slack, its
    # answer slow to come back, when the second's is dropped. The second took the
    # first's message, which both answers then edited. (Natively, the only stream this
    # process does not know is the first answer's, on its way.)
    async with running(fake_slack, inbox, mode=mode, thinking="none"):
        first, second = await two_in_one_thread(fake_slack, inbox)
        root = first.address.thread
        fake_slack.set_rate("chat.postMessage", 100, 1.0)
        fake_slack.slow_answer[method] = [0.5]
        begun_first = asyncio.create_task(first.begin())
        await fake_slack.wait_for(lambda: fake_slack.bot_replies(CHANNEL, root))
        fake_slack.drop[method] = 1
        b = await second.begin()
        a = await begun_first
        assert a is not None and b is not None and a != b
        assert [m.ts for m in fake_slack.bot_replies(CHANNEL, root)] == [a, b]
        assert fake_slack.count(method) == 3


async def test_update_mode_a_post_slack_took_late_is_not_posted_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # No answer in time (the client's timeout), and Slack posts the message a moment
    # later: looked for at once, it was not there yet, and it was posted again.
    async with running(fake_slack, inbox, thinking="none", timeout=0.5):
        target = await asked(fake_slack, inbox)
        fake_slack.slow["chat.postMessage"] = [0.8]  # carried out after the timeout
        await answered(target)
        assert [m.text for m in fake_slack.bot_replies(CHANNEL)] == ["Hello world"]
        assert fake_slack.count("chat.postMessage") == 1
        assert fake_slack.count("conversations.replies") >= 2


async def test_update_mode_an_edit_slack_made_late_does_not_cover_the_final_text(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A progress edit got no answer in time, and Slack made it after the final text:
    # the answer showed its first words for good (its sources and footnote gone).
    monkeypatch.setattr(slack_late, "WINDOW", 1.5)  # (6 s: as long as a lost post's looks)
    final = "Hello world, and this is the whole final answer."
    async with running(fake_slack, inbox, thinking="none", timeout=0.5):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        [message] = await fake_slack.wait_for(lambda: fake_slack.bot_replies(CHANNEL))
        fake_slack.slow["chat.update"] = [0.8]  # made after the client's timeout
        reply.feed("Hello")
        await fake_slack.wait_for(lambda: fake_slack.count("chat.update") == 1)
        reply.feed(" world, and this is the whole final answer.")
        await reply.finish(None)
        await fake_slack.wait_for(lambda: message.versions[-2:] == [final, "Hello"])
        await fake_slack.wait_for(lambda: message.versions[-1] == final)
        assert message.versions[-3:] == [final, "Hello", final]
        assert fake_slack.count("chat.update") == 3


async def test_native_mode_an_edit_slack_made_late_does_not_cover_the_final_text(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream's text replaced (chat.update, after its stop) is edited as a posted one.
    monkeypatch.setattr(slack_late, "WINDOW", 1.5)
    async with running(fake_slack, inbox, mode="native", thinking="none", timeout=0.5):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "_Working… 3 s_")
        fake_slack.slow["chat.update"] = [0.8]
        with pytest.raises(PlatformUnreachable):
            await target.edit(ts, "_Working… 4 s_")  # stops the stream; no answer in time
        await target.edit(ts, "The real answer")
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        late = ["The real answer", "_Working… 4 s_"]
        await fake_slack.wait_for(lambda: message.versions[-2:] == late)
        await fake_slack.wait_for(lambda: message.versions[-1] == "The real answer")
        assert stopped_text(fake_slack, ts) == "The real answer"


async def test_an_edit_that_timed_out_with_the_final_text_is_not_sent_again(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Made late, it shows the final text all the same: nothing to cover.
    monkeypatch.setattr(slack_late, "WINDOW", 0.3)
    async with running(fake_slack, inbox, thinking="none", timeout=0.5) as platform:
        target, ts = await begun(fake_slack, inbox)
        fake_slack.slow["chat.update"] = [0.6]
        with pytest.raises(PlatformUnreachable):
            await target.edit(ts, "Hello world")
        await target.edit(ts, "Hello world")  # the final text, tried again
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        await fake_slack.wait_for(lambda: message.versions[-2:] == ["Hello world"] * 2)
        await wait_for(lambda: not platform.late)
        assert fake_slack.count("chat.update") == 2


async def test_update_mode_a_post_slack_did_not_take_in_time_is_posted_again(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Looked for a few times over a few seconds, and then sent again: not waited for
    # while the asker sees nothing.
    monkeypatch.setattr(slack_target, "LOOK_AGAIN", (0.1, 0.1, 0.1))
    async with running(fake_slack, inbox, thinking="none", timeout=0.3):
        target = await asked(fake_slack, inbox)
        fake_slack.set_rate("chat.postMessage", 100, 1.0)
        fake_slack.slow["chat.postMessage"] = [0.35]  # no answer in time...
        fake_slack.drop["chat.postMessage"] = 1  # ...and then not taken
        ts = await target.begin()
        assert [m.ts for m in fake_slack.bot_replies(CHANNEL)] == [ts]
        assert fake_slack.count("chat.postMessage") == 2
        assert fake_slack.count("conversations.replies") == 4


async def test_native_mode_a_stream_not_surely_this_ones_is_not_taken(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # A stream carries no nonce: the bot's message in the thread that this process
    # does not know is the lost stream only if it is the only one. Here Slack started
    # it, and another answer's (a replica's) is there too: neither is taken, and the
    # answer goes to a new stream, the lost one left to Slack's time limit.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        root = target.address.thread
        other = fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root,
                                       streaming=True)
        fake_slack.lose_answer["chat.startStream"] = 1
        await answered(target)
        lost, answer = fake_slack.bot_replies(CHANNEL, root)[1:]
        # The lost one started with the answer's words, which had come already.
        assert other.text == "Another answer" and lost.text == "Hello world" and lost.streaming
        assert stopped_text(fake_slack, answer.ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 2


async def test_native_mode_a_stream_is_not_taken_for_another_answers_post(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Every message the bridge posts is tagged: a replica's answer posted (not
    # streamed) in the thread is no stream of this process's, lost.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        root = target.address.thread
        tagged = {"event_type": "chat_bridge_reply", "event_payload": {"id": "another"}}
        fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root, metadata=tagged)
        fake_slack.drop["chat.startStream"] = 1
        await answered(target)
        other, answer = fake_slack.bot_replies(CHANNEL, root)
        assert other.text == "Another answer"
        assert stopped_text(fake_slack, answer.ts) == "Hello world"


async def test_native_mode_a_stream_slack_started_late_is_not_started_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none", timeout=0.5):
        target = await asked(fake_slack, inbox)
        fake_slack.slow["chat.startStream"] = [0.8]
        await answered(target)
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert stopped_text(fake_slack, message.ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 1


async def test_native_mode_a_stream_slack_ended_goes_on_by_chat_update(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack ended the stream (its own time limit): every later edit was an append
    # refused, drawing on the workspace's budget, and the end a false failure.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        message.streaming = False
        await target.edit(ts, "Hello world")
        await target.edit(ts, "Hello world, and more")
        await target.end()
        assert message.text == "Hello world, and more"
        assert fake_slack.rejected["chat.appendStream:message_not_in_streaming_state"] == 1
        assert fake_slack.count("chat.appendStream") == 2
        assert fake_slack.count("chat.stopStream") == 0


async def test_native_mode_a_stream_the_person_stopped_ends_the_answer(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        fake_slack.fail["chat.appendStream"] = ["stopped_by_user"]
        with pytest.raises(PlaceGone):  # the relay lets the answer go
            await target.edit(ts, "Hello world")
        await target.end()
        assert fake_slack.count("chat.stopStream") == 0 and fake_slack.count("chat.update") == 0


@pytest.mark.parametrize("lost", [1, 3])
async def test_native_mode_a_stop_whose_answer_was_lost_still_shows_the_whole_answer(
    fake_slack: FakeSlack, inbox: Inbox, lost: int
) -> None:
    # Sent again (slack-sdk's retry), the stop was refused: the stream had stopped.
    # The whole answer was then reported failed, its sources replaced by the error.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        sources = target.format_sources([Source("https://d.example", "Docs")])
        await target.edit(ts, "Hello world\n\n" + sources)
        fake_slack.lose_answer["chat.stopStream"] = lost  # once, or past every retry
        await target.end()
        assert stopped_text(fake_slack, ts) == "Hello world\n\n_Sources:_ [Docs](https://d.example)"


async def test_native_mode_a_stream_slack_starts_as_a_stop_comes_is_stopped(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Its ts never came back: nothing could stop it, and it showed "typing" for ever.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await cut_while_slack_starts(fake_slack, inbox, 0.3)
        await target.end()
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert not message.streaming


async def test_a_web_api_call_is_given_the_configured_timeout(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The shared session's 30 s applied whatever `timeout` said.
    # (A post that times out is looked for before it is sent again: see
    # test_update_mode_a_post_slack_took_late_is_not_posted_twice.)
    async with running(fake_slack, inbox, thinking="none", timeout=0.5):
        target, ts = await begun(fake_slack, inbox)
        fake_slack.slow["chat.update"] = [3.0, 3.0, 3.0]  # slack-sdk retries twice
        with pytest.raises(PlatformUnreachable, match="could not be reached for chat.update"):
            await target.edit(ts, "Hello")


async def test_native_mode_rewrite_and_follow_up(fake_slack: FakeSlack, inbox: Inbox) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "_Working… 3 s_")
        await target.edit(ts, "The real answer")  # diverges: stop the stream, then chat.update
        second = await target.post("Part two")
        await target.edit(second, "Part two, longer")
        await target.end()
        first = fake_slack.find(CHANNEL, ts)
        follow = fake_slack.find(CHANNEL, second)
        assert first is not None and follow is not None
        assert (first.text, first.streaming) == ("The real answer", False)
        assert (follow.text, follow.streaming) == ("Part two, longer", False)
        assert not fake_slack.rejected


@pytest.mark.parametrize("ended", ["by_slack", "stop_answer_lost", "stop_never_answered"])
async def test_native_mode_a_text_replaced_after_its_stream_ended_goes_on_by_chat_update(
    fake_slack: FakeSlack, inbox: Inbox, ended: str
) -> None:
    # A status shown ("Working… 3 s"), then replaced by the answer once Slack had ended
    # the stream (its own time limit), or once the stop's answer was lost: the stop,
    # refused message_not_in_streaming_state (or unanswered), failed the edit.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "_Working… 3 s_")
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        if ended == "by_slack":
            message.streaming = False
        else:  # once (its retry refused), or past every retry
            fake_slack.lose_answer["chat.stopStream"] = 1 if ended == "stop_answer_lost" else 3
        await target.edit(ts, "The real answer")
        await target.end()
        assert stopped_text(fake_slack, ts) == "The real answer"


async def test_native_mode_a_status_replaced_after_slack_ended_its_stream_is_no_failure(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    failures: list[Exception] = []
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05, on_failure=failures.append)
        await reply.start()
        reply.set_status("Working… 3 s")
        await fake_slack.wait_for(lambda: fake_slack.count("chat.appendStream") == 1)
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        message.streaming = False  # Slack's own time limit
        reply.feed("The real answer")
        await reply.finish(None)
        assert stopped_text(fake_slack, message.ts) == "The real answer"
        assert not failures


async def test_native_mode_shows_a_link_whose_label_names_another_place_bare(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        answer = "Sign in at [acme.dev](https://evil.example/login) or [Acme](https://acme.dev)."
        for end in (24, 40, len(answer)):  # streamed as it comes, the link whole at last
            await target.edit(ts, target.format_markdown(answer[:end]))
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None and not message.streaming
        assert message.text == (
            "Sign in at <https://evil.example/login> or [Acme](https://acme.dev)."
        )
        assert not fake_slack.rejected


async def test_native_mode_falls_back_to_update_when_refused(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    fake_slack.stream_error = "unknown_method"
    async with running(fake_slack, inbox, mode="native", thinking="none") as platform:
        target = await asked(fake_slack, inbox)
        assert await target.begin() is None  # refused: the first words are posted
        ts = await target.post("**Markdown** answer")
        await target.end()
        reply = fake_slack.find(CHANNEL, ts)
        assert reply is not None and reply.markdown and reply.text == "**Markdown** answer"
        assert not platform.native_ok  # the whole app cannot stream: stop trying
        assert fake_slack.count("chat.startStream") == 1
        later = await asked(fake_slack, inbox)
        assert await later.begin() is not None
        assert fake_slack.count("chat.startStream") == 1


async def test_restarted_target_closes_a_leftover_stream(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none") as platform:
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "half an answ")
        # A new process fixes the reply up through `target(address)`.
        later = platform.target(target.address)
        await later.edit(ts, "half an answ\n\n_interrupted_")
        assert stopped_text(fake_slack, ts) == "half an answ\n\n_interrupted_"


@pytest.mark.parametrize("tombstone", [False, True])
async def test_a_deleted_question_is_withdrawn(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox, tombstone: bool
) -> None:
    # A thread's first message with replies is not deleted outright: Slack leaves a
    # tombstone in its place (message_changed), which withdraws the question too.
    bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> my password is x")
    await deliver(fake_slack, bodies)
    await inbox.wait(1)
    [(_, target)] = inbox.items
    assert not target.withdrawn()
    ts = bodies[0]["event"]["ts"]
    await deliver(fake_slack, [fake_slack.user_delete(CHANNEL, ts, tombstone=tombstone)])
    await wait_for(target.withdrawn)
    assert len(inbox.items) == 1  # the deletion is no question


async def _no_metrics() -> bytes:
    return b""
