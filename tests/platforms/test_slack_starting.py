"""Starting the Slack adapter: its options, a start that fails told clearly, and the
proxies it goes through."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from adapters.platforms.slack import SlackOptions, SlackPlatform
from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import (
    ConfigError,
    PlatformError,
    PlatformUnreachable,
)
from bridge.interfaces import PlatformContext
from tests.fakes.proxy import FakeProxy
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Inbox, options, running, started

ROOT = Path(__file__).resolve().parents[2]


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
        parse_config(
            text.replace(', app_token: "${APP}"', ""), env={"BOT": "xoxb-1"}, registry=REGISTRY
        )
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
    assert {
        "app_mentions:read",
        "channels:history",
        "im:history",
        "chat:write",
        "commands",
        "reactions:write",
        "channels:read",
        "groups:read",
        "mpim:read",
    } <= scopes
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == [SlackOptions.model_fields["reset_command"].default]
    assert manifest["settings"]["socket_mode_enabled"] is True


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
