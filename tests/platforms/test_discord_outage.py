"""Discord's REST API out of reach (503s) as an answer ends: the reply whose end could
not be shown is marked for what it is once Discord is back, or as the bridge stops
(the real Bridge and discord.py client against the fakes)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from adapters.registry import REGISTRY
from bridge import render
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.interruptions import GIVEN_UP, SHOWN_LATE, SHOWN_LATE_RESTART
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import fake_discord  # noqa: F401
from tests.platforms.discord_support import SOURCE, SOURCES_BLOCK, Setup, setup  # noqa: F401

WORDS = [f"w{i} " for i in range(10)]
ANSWER = "".join(WORDS).rstrip()
# Every message posted or edited is answered 503 while these stand.
OUTAGE = [("PATCH", r"/messages/\d+$", 503, 0), ("POST", r"/channels/\d+/messages$", 503, 0)]


@pytest.fixture
def gives_up_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply's end is tried again for half a second, not minutes, before it is
    given up on."""
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.5)
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.1)


@asynccontextmanager
async def beating(setup: Setup) -> AsyncIterator[Bridge]:
    """`setup`'s bridge, its heartbeat (which marks the replies given up on) a tenth of a
    second."""
    text = setup.config().replace(
        "limits: {rate_limit:", "limits: {heartbeat_interval: 0.1, rate_limit:"
    )
    env = {"CHAT_KEY": setup.chat.api_key, "DISCORD_BOT_TOKEN": setup.discord.token}
    async with Bridge(parse_config(text, env=env, registry=REGISTRY), REGISTRY) as bridge:
        yield bridge


async def out_of_reach_after_w2(setup: Setup) -> dict[str, object]:
    """Alice asks in #general; once the reply shows "w2", Discord takes no message more.
    The reply's message."""
    fake = setup.discord
    await fake.mention(setup.general, setup.alice, "first?")
    [reply] = await fake.wait_until(
        lambda: [m for m in fake.channel_messages(setup.general) if "w2" in m["content"]] or None
    )
    fake.refuse.extend(OUTAGE)
    return reply


def shown(setup: Setup) -> str:
    [reply] = setup.discord.channel_messages(setup.general)
    content: str = reply["content"]
    return content


def answered(bridge: Bridge) -> dict[str, float]:
    """chat_bridge_messages_answered_total on Discord, by outcome."""
    counts = {}
    for line in bridge.metrics.render().decode().splitlines():
        if line.startswith("chat_bridge_messages_answered_total{") and "discord" in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def logged(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


@pytest.mark.usefixtures("gives_up_soon")
async def test_an_answer_complete_as_discord_went_out_of_reach_shows_whole_once_it_is_back(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # It showed its text, without its sources, under "interrupted: the answer could not
    # be shown in full — please ask again": a second paid answer for one already whole.
    # Then it was still counted `failed`, logged an ERROR "could not answer" and, once
    # shown, "marked 1 replies given up on as interrupted".
    caplog.set_level(logging.INFO)
    setup.chat.enqueue(tokens=WORDS, sources=[SOURCE], token_delay=0.05)
    async with beating(setup) as bridge:
        await out_of_reach_after_w2(setup)
        await wait_for(lambda: bridge.relay.live == 0, timeout=20)  # given up
        assert bridge.relay.given_up.records
        setup.discord.refuse.clear()
        await setup.discord.wait_until(lambda: "⚠️" in shown(setup))
        assert shown(setup) == f"{ANSWER}\n\n{SOURCES_BLOCK}\n\n{SHOWN_LATE}"
        await wait_for(lambda: logged(caplog, "their platform back"))
        assert answered(bridge) == {"shown_late": 1.0}
    assert len(setup.chat.requests) == 1
    assert not logged(caplog, "could not answer", logging.ERROR)
    assert logged(caplog, "to be shown whole once the platform is back", logging.WARNING)
    assert logged(caplog, "their platform back") == [
        "showed 1 answers that had come whole, late, their platform back"
    ]


@pytest.mark.usefixtures("gives_up_soon")
async def test_an_answer_cut_as_discord_went_out_of_reach_is_marked_to_ask_again(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    setup.chat.enqueue(tokens=WORDS, drop_after=5, token_delay=0.05)
    async with beating(setup) as bridge:
        await out_of_reach_after_w2(setup)
        await wait_for(lambda: bridge.relay.live == 0, timeout=20)  # given up
        setup.discord.refuse.clear()
        await setup.discord.wait_until(lambda: "⚠️" in shown(setup))
        assert shown(setup).endswith(f"\n\n{GIVEN_UP}")
        assert "w9" not in shown(setup)
        await wait_for(lambda: logged(caplog, "their platform back"))
        assert answered(bridge) == {"failed": 1.0}
    assert logged(caplog, "to be marked interrupted once the platform is back", logging.WARNING)
    assert logged(caplog, "their platform back") == [
        "marked 1 replies given up on as interrupted, their platform back"
    ]


async def test_an_answer_complete_whose_end_a_stop_cut_shows_whole(
    setup: Setup,
) -> None:
    # The stop marked it "interrupted by a restart — please ask again" under the whole
    # answer, its sources left out.
    fake = setup.discord
    setup.chat.enqueue(tokens=WORDS, sources=[SOURCE], token_delay=0.05)
    async with setup.bridge() as bridge:
        await out_of_reach_after_w2(setup)
        [job] = bridge.relay._jobs
        await wait_for(lambda: job.reply is not None and job.reply.ending is not None, timeout=10)
        # Its end tried again and refused, its next try seconds away: Discord is back
        # as the stop comes.
        failed = len(fake.rejected)
        await fake.wait_until(lambda: len(fake.rejected) >= failed + 3)
        fake.refuse.clear()
        await bridge.drain(0)
        assert shown(setup) == f"{ANSWER}\n\n{SOURCES_BLOCK}\n\n{SHOWN_LATE_RESTART}"
        # Counted as what it shows, not `interrupted` ("please ask again").
        assert answered(bridge) == {"shown_late": 1.0}
