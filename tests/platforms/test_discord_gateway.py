"""Discord's gateway once started: dropped and resumed, down and back, ended for good, and no
longer received from while the bridge stops (against the fake Discord)."""

from __future__ import annotations

import logging

import pytest

from bridge.interfaces import STOPPING_TEXT, Address
from tests.core.fakeplatform import wait_for
from tests.platforms.discord_support import Setup, World, running


async def test_gateway_drop_is_resumed_and_delivery_continues(world: World) -> None:
    async with running(world) as platform:
        await world.fake.drop_gateways()
        await world.fake.wait_until(lambda: world.fake.resumes == 1 and world.fake.gateways)
        await world.fake.mention(world.general, world.alice, "still there?")
        msg, _ = await world.next()
        assert platform.connected
    assert msg.text == "still there?"
    assert len(world.fake.identifies) == 1  # resumed, not a new session


async def test_a_gateway_outage_shows_as_disconnected_until_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # discord.py stays "ready" while it tries to reconnect: /healthz said ok throughout.
    # It logged each try at ERROR with a traceback, a screenful every few seconds.
    async with running(world) as platform:
        world.fake.gateway_down = True
        await world.fake.drop_gateways()
        await wait_for(lambda: not platform.connected, timeout=10)
        await wait_for(lambda: "HTTP 503" in caplog.text, timeout=10)
        tries = [r for r in caplog.records if r.getMessage().startswith("Attempting a reconnect")]
        assert tries and all(r.levelname == "WARNING" and not r.exc_info for r in tries)
        assert "Discord's gateway answered HTTP 503" in tries[-1].getMessage()
        world.fake.gateway_down = False
        await wait_for(lambda: platform.connected, timeout=30)
        await world.fake.mention(world.general, world.alice, "back?")
        msg, _ = await world.next()
    assert msg.text == "back?"


async def test_a_post_while_the_gateway_is_down_is_made_once(world: World) -> None:
    # Messages go by HTTP, not by the gateway: one posted while it is down is posted
    # (and the fake, which sends its MESSAGE_CREATE to no one, answers it as Discord).
    async with running(world) as platform:
        world.fake.gateway_down = True
        await world.fake.drop_gateways()
        await wait_for(lambda: not platform.connected, timeout=10)
        target = platform.target(Address("discord", world.guild, world.general, None))
        mid = await target.post("posted while the gateway is down")
        world.fake.gateway_down = False
    assert world.fake.messages[mid]["content"] == "posted while the gateway is down"
    assert len(world.fake.sent("POST", rf"/channels/{world.general}/messages$")) == 1
    assert len(world.fake.channel_messages(world.general)) == 1


async def test_a_shard_that_logs_in_again_shows_as_connected_once_it_is_back(
    world: World,
) -> None:
    # discord.py says "ready" only when every shard is, not when one logs in again:
    # /healthz said disconnected for good, though the bot went on answering.
    world.fake.gateway_shards = 2
    async with running(world, shard_count="auto") as platform:
        await wait_for(lambda: platform.connected, timeout=10)
        await world.fake.drop_gateways(shard=1, forget=True)
        await wait_for(lambda: len(world.fake.identifies) == 3, timeout=20)
        await wait_for(lambda: platform.connected, timeout=20)
        await world.fake.mention(world.general, world.alice, "still answering?")
        msg, _ = await world.next()
    assert msg.text == "still answering?"
    assert [i["shard"] for i in world.fake.identifies] == [[0, 2], [1, 2], [1, 2]]


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        (4004, "bot token refused"),
        (4011, "shard settings refused"),
        (4014, "intent not enabled"),
    ],
)
async def test_a_gateway_ended_for_good_ends_the_answers_and_says_why_in_healthz(
    setup: Setup, code: int, problem: str
) -> None:
    # Discord ends the gateway for good (the token reset, the shards refused): the
    # answers streaming were retried for five minutes against the client discord.py
    # had closed, and /healthz said "disconnected" as for an outage it would ride out.
    fake = setup.discord
    setup.chat.enqueue(tokens=["word "] * 40, token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "A slow one?")
        await fake.wait_until(lambda: fake.channel_messages(setup.general))
        await fake.drop_gateways(code=code, forget=True)
        await wait_for(lambda: bridge.relay.live == 0)
        assert bridge.platforms["discord"].problem == problem
        assert await bridge._health() == {"discord": problem}
        assert await bridge._health(["console"]) == {"console": "not configured"}
    if code == 4014:  # discord.py leaves its client open: the answer is shown whole
        [reply] = fake.channel_messages(setup.general)
        assert reply["content"] == "word " * 40


async def test_after_stop_receiving_commands_are_told_and_messages_still_delivered(
    world: World,
) -> None:
    # Discord never delivers a message again: the core tells a question among them to
    # ask again (it once heard nothing of them, and the question was lost unsaid).
    async with running(world) as platform:
        await platform.stop_receiving()
        await world.fake.mention(world.general, world.alice, "too late")
        await world.fake.invoke(world.general, world.alice, "reset")
        msg, target = await world.next()
        await world.fake.wait_until(lambda: world.fake.sent("POST", r"/callback$"))
        assert world.got.empty()  # the command is not handed on
        body = world.fake.sent("POST", r"/callback$")[0].body
    assert msg.text == "too late" and msg.mentioned
    assert not target.redelivered
    assert body["data"]["flags"] & 64 and body["data"]["content"] == STOPPING_TEXT


async def test_a_command_during_a_stop_whose_answer_fails_is_one_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # discord.py logged "Ignoring exception in command 'ask'" at ERROR, with a traceback.
    async with running(world) as platform:
        await platform.stop_receiving()
        world.fake.drop.append(("POST", r"/callback$"))  # the connection breaks
        await world.fake.invoke(world.general, world.alice, "ask", {"question": "now?"})
        await wait_for(lambda: "could not tell /ask" in caplog.text, timeout=10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [r for r in caplog.records if "could not tell /ask" in r.getMessage()]
    assert line.levelname == "WARNING" and not line.exc_info
    assert "Could not reach Discord to answer the command" in line.getMessage()
