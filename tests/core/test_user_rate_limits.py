"""Each user's rate limit: counted across servers and DMs, told with its wait, counters kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import wait_words
from bridge.intake import UserRateLimiter
from tests.core.fakeplatform import TEST_REGISTRY
from tests.core.relay_support import ask_and_wait, bridge_for, make_config, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_the_rate_limit_counts_a_user_in_every_server_and_dm(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A Discord user is the same person in each server and in DMs: one allowance.
    extra = "limits: {rate_limit: {messages: 1, per: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        first = await platform(bridge).say("one", thread="T1", workspace="G1")
        await asyncio.wait_for(first.ended.wait(), 10)
        second = await platform(bridge).say("two", thread="T2", workspace="@dm")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert len(fake_chat_api.requests) == 1
    assert "faster than I can answer" in second.notices[0]


async def test_per_user_rate_limit_says_when(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    extra = "limits: {rate_limit: {messages: 1, per: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        first = await p.say("one", thread="T1")
        await asyncio.wait_for(first.ended.wait(), 10)
        second = await p.say("two", thread="T2")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert len(fake_chat_api.requests) == 1
    assert second.notices[0].startswith("You are sending messages faster than I can answer")


async def test_a_refusal_that_asks_the_backend_nothing_does_not_count_against_the_rate_limit(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(2):  # the first try, and its retry
        fake_chat_api.enqueue(status=503)
    extra = "limits: {rate_limit: {messages: 2, per: 60}, circuit: {failures: 1, cooldown: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        await ask_and_wait(p, "one", thread="T1")  # fails: the circuit opens
        refused = await ask_and_wait(p, "two", thread="T2")
        assert refused.notices[0].startswith("The assistant is unavailable right now")
        bridge.relay.circuits["docs"].success()  # the backend is back
        third = await ask_and_wait(p, "three", thread="T3")
    assert third.notices == [] and third.visible() == ["Hello from the fake."]


async def test_the_wait_a_rate_limit_tells_is_rounded_up(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    extra = "limits: {rate_limit: {messages: 1, per: 2.9}}"  # the first answer's 0.9 s
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        p = platform(bridge)
        await ask_and_wait(p, "one", thread="T1")
        second = await ask_and_wait(p, "two", thread="T2")
    # Trying again after 2 s would be refused again.
    assert second.notices == [
        "You are sending messages faster than I can answer; try again in 3 s."
    ]


@pytest.mark.parametrize(
    ("wait", "told"),
    [
        (0.2, "1 s"),
        (89.0, "89 s"),
        (89.5, "2 min"),
        (3412.0, "57 min"),
        (5340.0, "89 min"),
        (5340.5, "2 h"),
        (1e12, "277778 h"),
    ],
)
def test_a_wait_is_told_in_the_words_every_notice_uses(wait: float, told: str) -> None:
    # A user's own limit said "try again in 3412 s" where a 429 said "57 min".
    assert wait_words(wait) == told


async def test_a_route_with_its_own_rate_limit_counts_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # HOURLY has its own limit; the other two routes share the global one.
    routes = """
  - {platform: console, channels: [HOURLY], backend: docs,
     rate_limit: {messages: 2, per: 3600}}
  - {platform: console, channels: [O1], backend: docs}
  - {platform: console, backend: docs}
"""
    text = make_config(
        fake_chat_api, tmp_path / "b.db", extra="limits: {rate_limit: {messages: 2, per: 3.0}}"
    )
    text = text.replace("  - platform: console\n    backend: docs\n", routes)
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    assert len(config.routes) == 3

    async with Bridge(config, TEST_REGISTRY) as bridge:
        p = platform(bridge)

        async def ask(text: str, channel: str) -> list[str]:
            target = await p.say(text, channel=channel, thread=text)
            await asyncio.wait_for(target.ended.wait(), 10)
            return target.notices

        assert await ask("o1", "O1") == []
        assert await ask("o2", "O2") == []
        counted = time.monotonic()
        assert await ask("o3", "O1")  # the global limit spans the routes without their own
        # Messages elsewhere do not count against HOURLY's limit...
        assert await ask("h1", "HOURLY") == []
        assert await ask("h2", "HOURLY") == []
        assert await ask("h3", "HOURLY")
        await asyncio.sleep(max(0.0, counted + 3.05 - time.monotonic()))
        # ...and answering elsewhere, once the global window has passed, does not
        # free HOURLY's hour.
        assert await ask("o4", "O1") == []
        assert await ask("h4", "HOURLY")
    asked = [r.json["message"] for r in fake_chat_api.requests]
    assert asked == ["o1", "o2", "h1", "h2", "o4"]


def test_a_rate_limiter_keeps_long_windows_when_it_forgets_quiet_users() -> None:
    limiter = UserRateLimiter()
    assert limiter.check("U1|hourly", 1, 3600.0, 0.0) is None
    for n in range(10_001):  # past 10,000 counters, quiet ones are forgotten
        assert limiter.check(f"U{n}", 5, 1.0, 10.0) is None
    assert limiter.check("U1|hourly", 1, 3600.0, 20.0) == 3580.0


def test_a_rate_limiter_forgets_each_counter_by_its_own_window() -> None:
    limiter = UserRateLimiter()
    assert limiter.check("U0|daily", 5, 86400.0, 0.0) is None
    for n in range(9_999):  # quiet after a second, their window
        assert limiter.check(f"U{n}", 5, 1.0, 0.0) is None
    assert limiter.check("U-new", 5, 1.0, 10.0) is None  # the sweep: a daily one is kept
    assert len(limiter._seen) == 2


def test_a_rate_limiter_with_many_askers_in_a_long_window_does_not_sweep_at_every_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = UserRateLimiter()
    sweeps = 0
    seen = limiter.check

    def counted(key: str, messages: int, per: float, now: float) -> float | None:
        nonlocal sweeps
        before = limiter._seen
        result = seen(key, messages, per, now)
        sweeps += limiter._seen is not before  # a sweep builds the table anew
        return result

    monkeypatch.setattr(limiter, "check", counted)
    for n in range(40_000):  # a community with a daily quota: nobody is quiet yet
        assert limiter.check(f"U{n}", 20, 86400.0, float(n)) is None
    assert sweeps <= 3  # at 10,000, 20,000 and 40,000 counters, not at every message


def test_user_rate_limit_window_slides() -> None:
    limiter = UserRateLimiter()
    assert limiter.check("U1", 2, 10.0, 0.0) is None
    assert limiter.check("U1", 2, 10.0, 4.0) is None
    assert limiter.check("U1", 2, 10.0, 6.0) == 4.0  # the first message leaves at 10
    assert limiter.check("U2", 2, 10.0, 6.0) is None  # each user has their own window
    assert limiter.check("U1", 2, 10.0, 10.0) is None  # it left: one more fits
    assert limiter.check("U1", 2, 10.0, 11.0) == 3.0  # 4.0 and 10.0 are in the window
    assert limiter.check("U1", 2, 10.0, 30.0) is None  # both left at once
