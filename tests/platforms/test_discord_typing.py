"""Discord's "typing…" while answers think (reasoning models: a minute before the
first word) and while questions wait their turn, through the whole bridge.

Times are scaled down: typing is renewed every 0.3 s and taken to show 0.5 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from adapters.platforms.discord import indicator
from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.interfaces import Rate
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.discord import FakeDiscord

RENEW = 0.3
SHOWN = 0.5


@pytest.fixture(autouse=True)
def fast_typing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indicator, "TYPING_RENEW", RENEW)
    monkeypatch.setattr(indicator, "TYPING_SHOWN", SHOWN)
    monkeypatch.setattr(indicator, "QUEUED_AFTER", 0.2)


@asynccontextmanager
async def bridge(
    fake: FakeDiscord, api: FakeChatAPI, db: Path, limits: str = ""
) -> AsyncIterator[Bridge]:
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs:
    kind: chatmount
    url: {api.endpoint("chatmount")}
    api_key: ${{CHAT_KEY}}
    timeouts: {{first_byte: 60}}
discord:
  token: ${{DISCORD_BOT_TOKEN}}
  api_url: {fake.api_url}
  gateway_url: {fake.gateway_url}
  guild_ready_timeout: 0.05
routes:
  - platform: discord
    trigger: mention
    session: channel
    backend: docs
{limits}
"""
    env = {"CHAT_KEY": api.api_key, "DISCORD_BOT_TOKEN": fake.token}
    async with Bridge(parse_config(text, env=env, registry=REGISTRY), REGISTRY) as running:
        yield running


def typing_in(fake: FakeDiscord, channel: str) -> list[float]:
    return sorted(r.at for r in fake.sent("POST", rf"/channels/{channel}/typing$"))


def first_post(fake: FakeDiscord, channel: str) -> float:
    return min(r.at for r in fake.sent("POST", rf"/channels/{channel}/messages$"))


def test_renewals_use_what_the_replies_leave_of_discords_limit() -> None:
    # 50 a second for the bot; the replies keep 40: 8 renewals, 2 left unbudgeted,
    # so 64 answers thinking at once (the default max_concurrent_streams) stay typing.
    assert indicator.renewals_per_second(Rate(40, 1.0)) == 8
    assert indicator.renewals_per_second(Rate(45, 1.0)) == 3  # what the replies leave
    assert indicator.renewals_per_second(Rate(50, 1.0)) == 1  # never none


def test_processes_splitting_global_rate_split_the_renewals_too() -> None:
    # docs/discord.md, "Scale-out": N processes give each `global_rate` 40/N. Renewals
    # were what each one's replies left of the bot's 50: two processes at 20 a second
    # planned 20 + 28 each, 96 a second together, and drew Discord's global 429.
    default = indicator.renewals_per_second(Rate(40, 1.0))
    assert indicator.renewals_per_second(Rate(20, 1.0)) <= default / 2
    assert indicator.renewals_per_second(Rate(100, 5.0)) <= default / 2  # 20 a second too
    for n in range(1, 13):
        each = 40 // n
        together = n * (each + indicator.renewals_per_second(Rate(each, 1.0)))
        assert together <= indicator.BOT_LIMIT, n


@pytest.mark.timeout(60)
async def test_typing_never_lapses_while_many_answers_think(
    fake_discord: FakeDiscord, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Renewals were 2 a second bot-wide, and one refused waited a whole renewal's
    # time: beyond a few thinking answers, channels showed nothing for most of it.
    fake = fake_discord
    guild = fake.add_guild("Community")
    channels = [fake.add_channel(guild, f"c{i}") for i in range(2)]
    users = [fake.add_user(f"u{i}") for i in range(2)]
    for user in users:
        fake.add_member(guild, user)
    for _ in channels:
        fake_chat_api.enqueue(tokens=["Answer", "."], first_delay=3.0)
    async with bridge(fake, fake_chat_api, tmp_path / "b.db"):
        for channel, user in zip(channels, users, strict=True):
            await fake.mention(channel, user, "hard question")
        await fake.wait_until(
            lambda: all(fake.sent("POST", rf"/channels/{c}/messages$") for c in channels),
            timeout=30,
        )
    for channel in channels:
        typing, posted = typing_in(fake, channel), first_post(fake, channel)
        assert typing and typing[0] < posted
        gaps = [b - a for a, b in zip(typing, [*typing[1:], posted], strict=True)]
        assert max(gaps) < 0.75, gaps  # renewed before it lapses (with room for a busy host)
    assert fake.global_limited == 0


@pytest.mark.timeout(60)
async def test_a_question_waiting_its_turn_shows_typing_until_it_is_answered(
    fake_discord: FakeDiscord, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # All stream places held by a thinking answer: the next question showed no sign
    # of being taken until it had a place (Slack shows its reaction at once).
    fake = fake_discord
    guild = fake.add_guild("Community")
    first, waiting = fake.add_channel(guild, "a"), fake.add_channel(guild, "b")
    users = [fake.add_user("u1"), fake.add_user("u2")]
    for user in users:
        fake.add_member(guild, user)
    # The first answer is held back until the waiting question shows typing:
    # typing that came only once a place was free would never come, and fail.
    held = asyncio.Event()
    fake_chat_api.enqueue(tokens=["Answer", "."], first_delay=2.0, gate=held)
    fake_chat_api.enqueue(tokens=["Second", "."])
    limits = "limits: {max_concurrent_streams: 1}"
    async with bridge(fake, fake_chat_api, tmp_path / "b.db", limits) as _:
        await fake.mention(first, users[0], "hard question")
        await fake.wait_until(lambda: fake_chat_api.requests)
        await fake.mention(waiting, users[1], "next question")
        await fake.wait_until(lambda: typing_in(fake, waiting), timeout=10)
        assert len(fake_chat_api.requests) == 1  # still waiting its turn
        assert not fake.sent("POST", rf"/channels/{first}/messages$")  # the first still thinking
        held.set()
        await fake.wait_until(
            lambda: fake.sent("POST", rf"/channels/{waiting}/messages$"), timeout=20
        )
        posted = first_post(fake, waiting)
    typing = typing_in(fake, waiting)
    gaps = [b - a for a, b in zip(typing, [*typing[1:], posted], strict=True)]
    assert max(gaps) < 0.75, gaps  # kept up while it waited
    assert all(at < posted for at in typing)  # and stopped by its answer


@pytest.mark.timeout(60)
async def test_a_waiting_question_deleted_stops_its_typing(
    fake_discord: FakeDiscord, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake = fake_discord
    guild = fake.add_guild("Community")
    first, waiting = fake.add_channel(guild, "a"), fake.add_channel(guild, "b")
    users = [fake.add_user("u1"), fake.add_user("u2")]
    for user in users:
        fake.add_member(guild, user)
    fake_chat_api.enqueue(tokens=["Answer", "."], first_delay=3.0)
    limits = "limits: {max_concurrent_streams: 1}"
    async with bridge(fake, fake_chat_api, tmp_path / "b.db", limits):
        await fake.mention(first, users[0], "hard question")
        await fake.wait_until(lambda: fake_chat_api.requests)
        question = await fake.mention(waiting, users[1], "never mind")
        await fake.wait_until(lambda: typing_in(fake, waiting), timeout=10)
        await fake.delete_message(question["id"])
        deleted = asyncio.get_running_loop().time()
        await fake.wait_until(
            lambda: fake.sent("POST", rf"/channels/{first}/messages$"), timeout=20
        )
        typing = typing_in(fake, waiting)
    # At most one renewal already on its way when the deletion came.
    assert [at for at in typing if at > deleted + 0.1][1:] == []
    assert not fake.sent("POST", rf"/channels/{waiting}/messages$")
    assert len(fake_chat_api.requests) == 1  # nor asked of the chat API


@pytest.mark.timeout(60)
async def test_typing_that_fails_is_tried_again_only_a_renewal_later(
    fake_discord: FakeDiscord, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A failed trigger put the last typing back: the renewals found typing overdue and
    # sent it again as fast as their budget let them (6 a second), each failure in
    # Discord's count of invalid requests (past 10,000 in 10 minutes, Cloudflare bans
    # the bot's address), ahead of the places whose typing showed.
    fake = fake_discord
    guild = fake.add_guild("Community")
    channel = fake.add_channel(guild, "a")
    user = fake.add_user("u1")
    fake.add_member(guild, user)
    fake.drop.extend([("POST", rf"/channels/{channel}/typing$")] * 100)  # never answered
    fake_chat_api.enqueue(tokens=["Answer", "."], first_delay=2.0)
    async with bridge(fake, fake_chat_api, tmp_path / "b.db"):
        await fake.mention(channel, user, "hard question")
        await fake.wait_until(
            lambda: fake.sent("POST", rf"/channels/{channel}/messages$"), timeout=20
        )
    typing = typing_in(fake, channel)
    assert len(typing) >= 3  # kept trying, a renewal apart
    gaps = [b - a for a, b in zip(typing, typing[1:], strict=False)]
    assert min(gaps) > RENEW * 0.9, gaps


@pytest.mark.timeout(60)
async def test_a_place_that_refuses_typing_is_not_asked_for_it_again(
    fake_discord: FakeDiscord,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A DM whose recipient blocked the bot refuses it (403): typing was sent there again
    # and again until the answer came, up to 10 minutes, logged at debug only.
    fake = fake_discord
    user = fake.add_user("u1")
    dm = fake.dm_channel(user)
    fake.refuse.append(("POST", rf"/channels/{dm}/typing$", 403, 50007))
    fake_chat_api.enqueue(tokens=["Answer", "."], first_delay=2.0)
    async with bridge(fake, fake_chat_api, tmp_path / "b.db"):
        await fake.dm(user, "hard question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{dm}/messages$"), timeout=20)
    assert len(typing_in(fake, dm)) == 1
    said = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO
        and "typing" in r.getMessage()
        and r.name.startswith("chat_bridge")
    ]
    assert said == [
        f"not showing typing in {dm} any more: Discord refused to show typing: "
        "the bot lacks a permission here (Refused)."
    ]
