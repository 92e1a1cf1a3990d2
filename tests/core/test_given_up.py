"""Replies given up on while their platform failed (`GivenUp`), marked by the heartbeat
once it takes the mark: a reply that never can be is forgotten, a platform that
fails holds up only its own replies, and is warned of once for each way it fails."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import ClassVar

import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import PlaceGone, PlatformError, PlatformRefused, PlatformUnreachable
from bridge.interfaces import Address, Registry
from bridge.interruptions import GIVEN_UP
from bridge.store import InFlight
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.fakes.chatapi import FakeChatAPI

NOT_MARKED = "could not mark a reply given up on"


class Elsewhere(LocalPlatform):
    """A second in-process platform, configured as `slack`."""

    name: ClassVar[str] = "slack"


REGISTRY = Registry(
    dialects=TEST_REGISTRY.dialects,
    platforms={**TEST_REGISTRY.platforms, "slack": lambda: Elsewhere},
)


def two_platforms(fake: FakeChatAPI, db: Path) -> Bridge:
    """A bridge on `console` and a second platform, its heartbeat a tenth of a second."""
    config = parse_config(
        f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: {fake.endpoint("chatmount")}, api_key: "${{KEY}}"}}
console: {{}}
slack: {{}}
routes: [{{platform: any, backend: docs}}]
limits: {{heartbeat_interval: 0.1}}
""",
        env={"KEY": fake.api_key},
        registry=REGISTRY,
    )
    return Bridge(config, REGISTRY)


async def give_up(bridge: Bridge, rec_id: str, platform: str = "console") -> RecordingTarget:
    """A reply that showed nothing, given up on; the target its mark goes to."""
    address = Address(platform, "W1", f"C-{rec_id}", "t")
    rec = InFlight(
        id=rec_id, key=f"k-{rec_id}", address=address, owner=bridge.owner, started_at=time.time()
    )
    await bridge.store.inflight_begin(rec)
    assert bridge.relay.given_up.keep(rec)
    target = bridge.platforms[platform].target(address)
    assert isinstance(target, RecordingTarget)
    return target


def failing(monkeypatch: pytest.MonkeyPatch, fails: dict[str, BaseException]) -> list[str]:
    """Posts in the channels of `fails` raise what it says there (changed at will);
    returns the channels of the posts tried."""
    tried: list[str] = []
    post = RecordingTarget.post

    async def post_or_fail(self: RecordingTarget, text: str) -> str:
        tried.append(self.address.channel)
        if (exc := fails.get(self.address.channel)) is not None:
            raise exc
        return await post(self, text)

    monkeypatch.setattr(RecordingTarget, "post", post_or_fail)
    return tried


async def recorded(bridge: Bridge) -> set[str]:
    return {rec.id for rec in await bridge.store.inflight_orphans("nobody", float("inf"))}


def warned(caplog: pytest.LogCaptureFixture, text: str = NOT_MARKED) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


@pytest.mark.parametrize(
    "never",
    [
        PlaceGone("Slack refused chat.postMessage: thread_not_found"),
        PlatformRefused("Discord refused to post (HTTP 403)"),
    ],
)
async def test_a_reply_that_can_never_be_marked_is_forgotten_and_holds_no_other_up(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    never: PlatformError,
) -> None:
    # Its mark failed at every heartbeat for a week, and every reply given up on
    # after it waited behind it (on PostgreSQL, every question of its conversation).
    tried = failing(monkeypatch, {"C-gone": never})
    async with two_platforms(fake_chat_api, tmp_path / "b.db") as bridge:
        await give_up(bridge, "gone")
        later = await give_up(bridge, "later")
        await wait_for(lambda: later.visible() == [GIVEN_UP])
        await wait_for(lambda: not bridge.relay.given_up.records)
        assert await recorded(bridge) == set()
        assert tried.count("C-gone") == 1  # not tried again
    [why] = warned(caplog)
    assert str(never) in why and "forgotten" in why


async def test_a_platform_out_of_reach_holds_up_only_its_own_replies(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pass stopped at the first mark that failed, whatever its platform.
    tried = failing(
        monkeypatch,
        {
            "C-down": PlatformUnreachable("slack could not be reached"),
            "C-down2": PlatformUnreachable("slack could not be reached"),
        },
    )
    async with two_platforms(fake_chat_api, tmp_path / "b.db") as bridge:
        await give_up(bridge, "down", "slack")
        await give_up(bridge, "down2", "slack")
        here = await give_up(bridge, "here")
        await wait_for(lambda: here.visible() == [GIVEN_UP])
        await wait_for(lambda: tried.count("C-down") >= 3)  # tried again at later heartbeats
        assert "C-down2" not in tried  # its platform failed the first already
        assert list(bridge.relay.given_up.records) == ["down", "down2"]
        assert await recorded(bridge) == {"down", "down2"}


async def test_a_platform_failing_is_warned_of_once_for_each_way_it_fails(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Warned of once a reply, however the platform's failure changed.
    fails: dict[str, BaseException] = {"C-r1": PlatformUnreachable("console could not be reached")}
    tried = failing(monkeypatch, fails)
    async with two_platforms(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await give_up(bridge, "r1")
        await wait_for(lambda: len(tried) >= 3)
        assert len(warned(caplog)) == 1
        fails["C-r1"] = PlatformError("console failed: 503")  # reached now, failing
        await wait_for(lambda: len(tried) >= 6)
        assert len(warned(caplog)) == 2
        fails["C-r1"] = PlatformUnreachable("console could not be reached")
        await wait_for(lambda: len(tried) >= 9)
        assert len(warned(caplog)) == 3
        del fails["C-r1"]
        await wait_for(lambda: target.visible() == [GIVEN_UP])
        assert ["503" in w for w in warned(caplog)] == [False, True, False]
