"""Slack and Discord configured together: one failing to start leaves the other
answering, and is tried again until it starts. The real Bridge, the fake Slack and
Discord, the fake chat API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from adapters.registry import REGISTRY
from bridge import platform_starts
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import PlatformError
from tests.core.fakeplatform import wait_for
from tests.fakes.slack import FakeSlack
from tests.platforms.discord_support import Setup
from tests.platforms.slack_support import CHANNEL

pytestmark = pytest.mark.timeout(60)


def config(slack: FakeSlack, setup: Setup, mode: str = "socket") -> str:
    connection = (
        "app_token: ${SLACK_APP_TOKEN}"
        if mode == "socket"
        else "signing_secret: ${SLACK_SIGNING_SECRET}"
    )
    return f"""
store: sqlite://{setup.db}
http: {{listen: "127.0.0.1:0"}}
backends:
  docs: {{kind: chatmount, url: {setup.chat.endpoint("chatmount")}, api_key: "${{CHAT_KEY}}"}}
slack:
  bot_token: ${{SLACK_BOT_TOKEN}}
  {connection}
  api_url: {slack.url}
discord:
  token: ${{DISCORD_BOT_TOKEN}}
  api_url: {setup.discord.api_url}
  gateway_url: {setup.discord.gateway_url}
  guild_ready_timeout: 0.05
  connect_timeout: 1.0
routes:
  - platform: slack
    channels: [{CHANNEL}]
    trigger: mention
    session: thread
    backend: docs
  - platform: discord
    channels: ["{setup.general}"]
    trigger: mention
    session: channel
    backend: docs
reply: {{edit_interval: 0.05}}
"""


@asynccontextmanager
async def both(
    slack: FakeSlack, setup: Setup, mode: str = "socket", discord_token: str | None = None
) -> AsyncIterator[Bridge]:
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "DISCORD_BOT_TOKEN": discord_token or setup.discord.token,
        "CHAT_KEY": setup.chat.api_key,
    }
    parsed = parse_config(config(slack, setup, mode), env=env, registry=REGISTRY)
    async with Bridge(parsed, REGISTRY) as bridge:
        yield bridge


async def healthz(bridge: Bridge) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{bridge.http_port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def slack_answers(slack: FakeSlack, bridge: Bridge, question: str) -> None:
    """Someone mentions the bot in Slack; returns once its answer is there."""
    bodies = slack.user_message(CHANNEL, f"<@{slack.bot_user_id}> {question}")
    for body in bodies:
        await slack.wait_ack(await slack.send_envelope("events_api", body))
    root = bodies[0]["event"]["ts"]
    await slack.wait_for(
        lambda: any(
            m.text.endswith("Slack's answer.") and not m.streaming
            for m in slack.bot_replies(CHANNEL, root)
        )
    )


async def discord_answers(setup: Setup, question: str) -> None:
    await setup.discord.mention(setup.general, setup.alice, question)
    await setup.final(setup.general, "Discord's answer.")


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture(autouse=True)
def quick_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_starts, "FIRST_WAIT", 0.05)
    monkeypatch.setattr(platform_starts, "LONGEST_WAIT", 0.2)


@pytest.mark.parametrize("outage", ["rest 503", "gateway down"])
async def test_discord_out_of_reach_at_start_leaves_slack_answering_and_starts_later(
    fake_slack: FakeSlack, setup: Setup, caplog: pytest.LogCaptureFixture, outage: str
) -> None:
    # The whole daemon stopped (exit 1), Slack with it, for as long as Discord's
    # gateway or API was out of reach at start.
    fake = setup.discord
    if outage == "rest 503":
        fake.refuse.append(("GET", r"/users/@me$", 503, 0))
    else:
        fake.gateway_down = True
    setup.chat.enqueue(tokens=["Slack's ", "answer."])
    async with both(fake_slack, setup) as bridge:
        await fake_slack.wait_socket()
        await slack_answers(fake_slack, bridge, "Still there?")
        assert await healthz(bridge) == (
            503,
            {"status": "unhealthy", "down": {"discord": "not started"}},
        )
        tries = len(fake.sent("GET", r"/users/@me$"))
        await wait_for(lambda: len(fake.sent("GET", r"/users/@me$")) >= tries + 2)
        [told] = [line for line in errors(caplog) if "discord" in line]
        assert told.startswith("discord did not start: ")
        assert "tried again" in told and "slack answers meanwhile" in told

        fake.refuse.clear()
        fake.gateway_down = False
        await wait_for(lambda: bridge.platforms["discord"].connected)
        assert await healthz(bridge) == (200, {"status": "ok", "down": {}})
        setup.chat.enqueue(tokens=["Discord's ", "answer."])
        await discord_answers(setup, "And here?")
    assert [line for line in errors(caplog) if "discord" in line] == [told]


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_slack_out_of_reach_at_start_leaves_discord_answering_and_starts_later(
    fake_slack: FakeSlack, setup: Setup, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    fake_slack.unavailable["auth.test"] = [503] * 1000
    setup.chat.enqueue(tokens=["Discord's ", "answer."])
    async with both(fake_slack, setup, mode) as bridge:
        await discord_answers(setup, "Still there?")
        assert (await healthz(bridge))[1]["down"] == {"slack": "not started"}
        [told] = errors(caplog)
        assert told.startswith("slack did not start: Slack could not be reached for auth.test")

        fake_slack.unavailable["auth.test"].clear()
        await wait_for(lambda: bridge.platforms["slack"].connected)
        assert await healthz(bridge) == (200, {"status": "ok", "down": {}})
        setup.chat.enqueue(tokens=["Slack's ", "answer."])
        if mode == "socket":
            await fake_slack.wait_socket()
            await slack_answers(fake_slack, bridge, "And here?")
        else:  # the events reach the platform started anew
            url = f"http://127.0.0.1:{bridge.http_port}/slack/events"
            bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> And here?")
            for body in bodies:
                assert (await fake_slack.post_event(url, body))[0] == 200
            root = bodies[0]["event"]["ts"]
            await fake_slack.wait_for(
                lambda: any(
                    m.text.endswith("Slack's answer.") and not m.streaming
                    for m in fake_slack.bot_replies(CHANNEL, root)
                )
            )


async def test_discord_refusing_the_token_on_a_later_try_is_told_and_not_tried_again(
    fake_slack: FakeSlack, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    fake = setup.discord
    fake.refuse.append(("GET", r"/users/@me$", 503, 0))
    async with both(fake_slack, setup) as bridge:
        await wait_for(lambda: len(fake.sent("GET", r"/users/@me$")) >= 2)
        fake.refuse.clear()
        fake.token = "another.discord-bot.token"  # the token was reset meanwhile
        await wait_for(lambda: any("refused the bot token" in line for line in errors(caplog)))
        assert (await healthz(bridge))[1]["down"] == {"discord": "bot token refused"}
        tries = len(fake.sent("GET", r"/users/@me$"))
        await fake_slack.wait_socket()  # Slack is up meanwhile
        setup.chat.enqueue(tokens=["Slack's ", "answer."])
        await slack_answers(fake_slack, bridge, "Still there?")
        assert len(fake.sent("GET", r"/users/@me$")) == tries
    [refused] = [line for line in errors(caplog) if "refused" in line]
    assert "check discord.token" in refused.lower() or "discord.token" in refused


async def test_a_refused_discord_token_at_start_still_stops_the_start(
    fake_slack: FakeSlack, setup: Setup
) -> None:
    # As the docs say: `run` stops with the error, whatever else is configured.
    with pytest.raises(PlatformError, match="refused the bot token"):
        async with both(fake_slack, setup, discord_token="an.old-discord-bot.token"):
            pass


async def test_every_platform_out_of_reach_at_start_stops_the_start(
    fake_slack: FakeSlack, setup: Setup
) -> None:
    fake_slack.unavailable["auth.test"] = [503] * 10
    setup.discord.refuse.append(("GET", r"/users/@me$", 503, 0))
    with pytest.raises(PlatformError, match="Slack could not be reached"):
        async with both(fake_slack, setup):
            pass
