"""Slack refusing the app-level token (Socket Mode) while the daemon runs: the real
Bridge, the fake Slack, the fake chat API."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.platforms.slack import app_token
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, open_harness

RECHECK = 0.5  # seconds between tries while the token is refused (a minute, really)
PING = 0.05  # Socket Mode's ping_interval: slack-sdk's cadence of tries


async def test_a_revoked_app_token_is_one_error_tried_again_once_a_minute_and_in_healthz(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # slack-sdk asked apps.connections.open again at every ping, forever, each try two
    # raw ERROR lines (`Failed to retrieve WSS URL: … 'invalid_auth'`) naming no
    # setting, and /healthz said "disconnected" as for an outage it would ride out.
    monkeypatch.setattr(app_token, "RECHECK_SECONDS", RECHECK)
    slack = fake_slack
    h, bridge = await open_harness(
        slack, fake_chat_api, tmp_path, "socket", f"ping_interval: {PING}"
    )
    health = f"http://127.0.0.1:{bridge.http_port}/healthz"

    async def healthz() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(health) as resp:
            return resp.status, await resp.json()

    def told() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "slack.app_token" in r.getMessage()]

    try:
        good, slack.app_token = slack.app_token, "xapp-revoked-app-token"
        before = slack.count("apps.connections.open")
        for ws in list(slack._sockets):  # Slack drops the connection
            await ws.close()
        await wait_for(lambda: told(), timeout=10)
        started = asyncio.get_running_loop().time()
        assert await healthz() == (
            503,
            {"status": "unhealthy", "down": {"slack": "app token refused"}},
        )
        # Three more tries: a RECHECK apart each, not a ping apart.
        await slack.wait_for(lambda: slack.count("apps.connections.open") >= before + 4)
        waited = asyncio.get_running_loop().time() - started
        assert waited >= 2 * RECHECK, waited
        assert slack.count("apps.connections.open") - before <= 2 + waited / RECHECK
        assert slack.rejected["apps.connections.open:invalid_auth"] >= 4

        [line] = told()  # one line, repeated at most once a minute
        assert line.levelname == "ERROR" and not line.exc_info
        assert line.getMessage().startswith(
            "slack: Slack refused the app-level token (invalid_auth); check slack.app_token "
        )
        bolt = [r for r in caplog.records if r.name == "chat_bridge.slack.bolt"]
        assert not [r.getMessage() for r in bolt if r.levelno >= logging.WARNING]
        assert not [r.getMessage() for r in bolt if "Failed" in r.getMessage()]
        assert (await healthz())[1]["down"] == {"slack": "app token refused"}

        # The app fixed on Slack's side (the same token taken again): back within a try.
        slack.app_token = good
        await slack.wait_socket(10)
        await wait_for(
            lambda: any(
                "accepts the app-level token again" in r.getMessage() for r in caplog.records
            )
        )
        assert await healthz() == (200, {"status": "ok", "down": {}})
        fake_chat_api.enqueue(tokens=["Back."])
        root = await h.ask(CHANNEL, "back?")
        await h.answer(CHANNEL, root, "Back.")
        assert len(told()) == 1
    finally:
        await bridge.aclose()
    # Neither token in any line (tracebacks included).
    assert good not in caplog.text and "xapp-revoked-app-token" not in caplog.text


@pytest.mark.parametrize("pages", [[408], [429] * 4])
async def test_a_page_in_place_of_slacks_answer_is_a_failed_try_not_the_token_refused(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    pages: list[int],
) -> None:
    # A proxy's 408, or 429 pages past the retries, answering one reconnection: taken for
    # the token refused, the bridge told the admin to check slack.app_token, /healthz
    # said "app token refused", and Socket Mode stayed down a minute.
    monkeypatch.setattr(app_token, "RECHECK_SECONDS", 600.0)
    slack = fake_slack
    h, bridge = await open_harness(
        slack, fake_chat_api, tmp_path, "socket", f"ping_interval: {PING}"
    )
    try:
        connections = slack.connections
        slack.unavailable["apps.connections.open"] = list(pages)
        for ws in list(slack._sockets):  # Slack drops the connection
            await ws.close()
        await slack.wait_for(lambda: slack.connections > connections and bool(slack._sockets))
        assert not slack.unavailable["apps.connections.open"]  # each page was met
        health = f"http://127.0.0.1:{bridge.http_port}/healthz"
        async with aiohttp.ClientSession() as session, session.get(health) as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ok", "down": {}})
        fake_chat_api.enqueue(tokens=["Back."])
        root = await h.ask(CHANNEL, "back?")
        await h.answer(CHANNEL, root, "Back.")
    finally:
        await bridge.aclose()
    assert "slack.app_token" not in caplog.text
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("Socket Mode could not reconnect: Slack answered with a page" in w for w in warned)
