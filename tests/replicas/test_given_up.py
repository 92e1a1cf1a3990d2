"""A reply given up on (its platform failing) on a shared store: marked once, by the
replica that gave it up or by the one that took its record over, never by both."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from bridge import render
from bridge.errors import PlatformUnreachable
from bridge.interruptions import GIVEN_UP, INTERRUPTED
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.fakes.chatapi import FakeChatAPI
from tests.replicas.test_fence import cut_off
from tests.replicas.test_shared_order import shared_bridge
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

FAST = "heartbeat_interval: 0.3"


@pytest.fixture
def platform_down(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The in-process platform out of reach while `["on"]`; replies give up soon."""
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.5)
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.1)
    down = {"on": True}

    def out_of_reach(request: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
        async def unless_down(self: RecordingTarget, *args: str) -> object:
            if down["on"]:
                raise PlatformUnreachable("console could not be reached")
            return await request(self, *args)

        return unless_down

    for name in ("post", "edit", "notice"):
        monkeypatch.setattr(RecordingTarget, name, out_of_reach(getattr(RecordingTarget, name)))
    return down


def marks(target: RecordingTarget) -> int:
    return sum(INTERRUPTED in text or GIVEN_UP in text for text in target.visible())


async def test_a_replica_fenced_leaves_its_replies_given_up_on_to_the_one_taking_over(
    fake_chat_api: FakeChatAPI, platform_down: dict[str, bool]
) -> None:
    # Once its store was back, it marked the reply the other replica had marked
    # already: the asker saw two marks.
    fake_chat_api.enqueue(tokens=["An ", "answer."])
    async with (
        pg_schema_url() as url,
        shared_bridge(fake_chat_api, url, FAST) as a,
        shared_bridge(fake_chat_api, url, FAST) as b,
    ):
        on_a: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        on_b: LocalPlatform = b.platforms["console"]  # type: ignore[assignment]
        on_b.targets = on_a.targets  # one platform, seen by both replicas
        target = await on_a.say("q", thread="T1")
        await wait_for(lambda: a.relay.given_up.records, timeout=20)
        back = cut_off(a)  # its store out of reach: fenced, taken over
        await wait_for(lambda: a.relay.fence.up)
        assert not a.relay.given_up.records  # left to the other replica
        platform_down["on"] = False
        await wait_for(lambda: marks(target) == 1, timeout=20)  # by the other replica
        back.set()
        await wait_for(lambda: not a.relay.fence.up)
        await a.recovery.mark_given_up()  # a heartbeat's
        assert target.visible() == [INTERRUPTED]


async def test_a_reply_given_up_on_that_another_replica_took_over_is_left_to_it(
    fake_chat_api: FakeChatAPI, platform_down: dict[str, bool]
) -> None:
    # Taken over without this replica seeing its fence go up (its heartbeats late, or
    # the clocks apart), it was marked by both.
    fake_chat_api.enqueue(tokens=["An ", "answer."])
    async with pg_schema_url() as url, shared_bridge(fake_chat_api, url, FAST) as a:
        console: LocalPlatform = a.platforms["console"]  # type: ignore[assignment]
        target = await console.say("q", thread="T1")
        await wait_for(lambda: a.relay.given_up.records, timeout=20)
        [rec] = a.relay.given_up.records.values()
        [stored] = await a.store.inflight_for_key(rec.key)
        assert await a.store.inflight_claim(rec.id, "proc-other", stored.heartbeat_at)
        platform_down["on"] = False
        await wait_for(lambda: not a.relay.given_up.records)
        assert marks(target) == 0  # left to the replica that took it
        [left] = await a.store.inflight_for_key(rec.key)
        assert left.owner == "proc-other"
