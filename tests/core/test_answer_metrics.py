"""An answer's metrics: the API's quota, stream and reply times, platform failures by kind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import NoReturn

import pytest

from bridge import render
from bridge.errors import PlaceGone, PlatformError, PlatformRefused, PlatformUnreachable
from bridge.interfaces import Address
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import bridge_for, platform, sample
from tests.fakes.chatapi import RATE_LIMIT, FakeChatAPI


async def test_the_metrics_show_what_the_api_said_of_its_quota(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Fine."], usage={"credits_used": 1, "credits_remaining": 41})
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("How are you?")
        await asyncio.wait_for(target.ended.wait(), 10)
        lines = bridge.metrics.render().decode().splitlines()
    assert 'chat_bridge_backend_credits_remaining{backend="docs"} 41.0' in lines
    # X-RateLimit-Remaining after the one request.
    assert f'chat_bridge_backend_ratelimit_remaining{{backend="docs"}} {RATE_LIMIT - 1.0}' in lines


class HeldEnd(RecordingTarget):
    """A busy place: the reply's end (the message with its sources) waits for `go`."""

    def __init__(self, go: asyncio.Event) -> None:
        super().__init__()
        self.go = go

    async def post(self, text: str) -> str:
        if "Sources" in text:
            await self.go.wait()
        return await super().post(text)

    async def edit(self, message_id: str, text: str) -> None:
        if "Sources" in text:
            await self.go.wait()
        await super().edit(message_id, text)


async def test_the_stream_time_is_the_chat_apis_and_the_reply_time_the_whole_replys(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy platform's wait to show the end was counted as the chat API's stream
    # time: a busy Slack made the chat API look many times slower.
    fake_chat_api.enqueue(tokens=["The ", "answer."], sources=[("https://a.example/1", "One")])
    go = asyncio.Event()

    def target(self: LocalPlatform, address: Address) -> HeldEnd:
        held = HeldEnd(go)
        held.address = address
        return held

    monkeypatch.setattr(LocalPlatform, "target", target)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        reply = await platform(bridge).say("A question")
        # The stream is timed once read, while its end still waits for the platform.
        await wait_for(
            lambda: sample(bridge, "chat_bridge_stream_seconds_count", backend="docs") == 1.0
        )
        assert not reply.ended.is_set()
        assert not sample(bridge, "chat_bridge_reply_seconds_count", platform="console")
        go.set()
        await wait_for(
            lambda: sample(bridge, "chat_bridge_reply_seconds_count", platform="console") == 1.0
        )
        stream = sample(bridge, "chat_bridge_stream_seconds_sum", backend="docs")
        whole = sample(bridge, "chat_bridge_reply_seconds_sum", platform="console")
    assert reply.visible() == ["The answer.\n\nSources: [One](https://a.example/1)"]
    assert stream is not None and whole is not None and stream <= whole


class PlatformDown(RecordingTarget):
    """A platform whose every request fails with `error` (each one recorded)."""

    def __init__(self, error: PlatformError) -> None:
        super().__init__()
        self.error = error
        self.failed: list[str] = []

    def _fail(self, kind: str) -> NoReturn:
        self.failed.append(kind)
        raise self.error

    async def begin(self, text: str | None = None) -> str | None:
        self._fail("begin")

    async def post(self, text: str) -> str:
        self._fail("post")

    async def edit(self, message_id: str, text: str) -> None:
        self._fail("edit")

    async def notice(self, text: str) -> None:
        self._fail("notice")


async def test_a_platform_failing_every_request_shows_in_the_metrics(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slack's Web API down (every call 503, or out of reach) moved no metric while
    # no answer reached anyone.
    fake_chat_api.enqueue(tokens=["Hello ", "world."], token_delay=0.05)
    down = PlatformDown(PlatformUnreachable("Slack could not be reached for chat.update"))

    def target(self: LocalPlatform, address: Address) -> PlatformDown:
        down.address = address
        return down

    monkeypatch.setattr(LocalPlatform, "target", target)
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.0)  # the reply's end gives up at once
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        # Every kind is there from the start, at 0: an alert sees the first failure.
        for kind in ("refused", "gone", "unreachable", "failed"):
            assert (
                sample(bridge, "chat_bridge_platform_errors_total", platform="console", kind=kind)
                == 0.0
            )
        await platform(bridge).say("A question")
        # Showing the reply failed, then telling the asker apart did too.
        await wait_for(lambda: bridge.relay.live == 0 and "notice" in down.failed)
        unreachable = sample(
            bridge, "chat_bridge_platform_errors_total", platform="console", kind="unreachable"
        )
        others = [
            sample(bridge, "chat_bridge_platform_errors_total", platform="console", kind=kind)
            for kind in ("refused", "gone", "failed")
        ]
    assert {"begin", "post", "notice"} <= set(down.failed)
    assert unreachable == len(down.failed)
    assert others == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (PlatformRefused("Slack refused chat.postEphemeral: msg_too_long"), "refused"),
        (PlaceGone("Slack refused chat.postEphemeral: channel_not_found"), "gone"),
        (PlatformError("Slack failed chat.postEphemeral: service_unavailable"), "failed"),
    ],
)
async def test_a_notice_the_platform_fails_is_counted_by_kind(
    error: PlatformError,
    kind: str,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = PlatformDown(error)

    def target(self: LocalPlatform, address: Address) -> PlatformDown:
        down.address = address
        return down

    monkeypatch.setattr(LocalPlatform, "target", target)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await platform(bridge).say("x" * 5000)  # refused: too long, told in a notice
        await wait_for(lambda: "notice" in down.failed)
        await wait_for(
            lambda: (
                sample(bridge, "chat_bridge_platform_errors_total", platform="console", kind=kind)
                == len(down.failed)
            )
        )
    assert not fake_chat_api.requests
