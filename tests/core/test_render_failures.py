"""A reply on a platform that fails or refuses: tried again, told, and ended."""

from __future__ import annotations

import time

import pytest

from bridge import render
from bridge.budget import Budgets
from bridge.errors import PlatformError, PlatformRefused
from bridge.render import LiveReply
from tests.core.recording import Op, RecordingTarget
from tests.core.render_support import _settle, _stream


class RefusingPosts(RecordingTarget):
    """A place where no message can be posted (gone, or no permission)."""

    async def post(self, text: str) -> str:
        raise PlatformRefused("no_permission")


class RefusingEdits(RecordingTarget):
    """A place whose edits are refused (not for good: no PlaceGone) while `refusing`."""

    refusing = True

    async def edit(self, message_id: str, text: str) -> None:
        if self.refusing:
            self.ops.append(Op("refused", message_id, text))
            raise PlatformError("Slack refused chat.update: cant_update_message")
        await super().edit(message_id, text)


async def test_a_refused_edit_is_tried_again_less_and_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It was tried again at every wake (every token), spending the budget the place
    # shares with other replies, and logging a warning a try.
    target = RefusingEdits()
    reply = LiveReply(target, Budgets(), edit_interval=0.05)
    await reply.start()
    await _stream(reply, [f"w{i} " for i in range(100)], 0.01)  # about a second
    refused = target.times(("refused",))
    # Tries at 0, 0.05, 0.15, 0.35, 0.75 s, ... (0.05 s more in between, or 100 tries)
    assert 1 <= len(refused) <= 6
    gaps = [b - a for a, b in zip(refused, refused[1:], strict=False)]
    assert all(gap >= 0.05 * 2**i * 0.9 for i, gap in enumerate(gaps))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    target.refusing = False
    await reply.finish(None)
    assert target.visible() == ["".join(f"w{i} " for i in range(100))]


async def test_every_request_the_platform_fails_is_told() -> None:
    # For the metrics: a platform failing every reply moved none.
    failed: list[Exception] = []
    target = RefusingEdits(placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.01, on_failure=failed.append)
    await reply.start()
    await _stream(reply, ["Hello ", "world."], 0.02)
    target.refusing = False
    await reply.finish(None)
    refused = [op for op in target.ops if op.kind == "refused"]
    assert refused and len(failed) == len(refused)
    assert all(isinstance(exc, PlatformError) for exc in failed)
    assert target.visible() == ["Hello world."]


async def test_failure_keeps_partial_text_and_adds_a_notice() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("The first half of")
    await reply.fail("The answer was cut off.")
    assert target.visible() == ["The first half of\n\n_⚠️ The answer was cut off._"]


async def test_pacing_never_stalls_on_a_failing_platform() -> None:
    target = RefusingPosts()
    reply = LiveReply(target, Budgets(), edit_interval=0.2)
    await reply.start()
    waits = []
    for word in "a b c d e".split():
        reply.feed(word)
        await _settle()
        started = time.monotonic()
        await reply.pace()
        waits.append(time.monotonic() - started)
    # Each read waits for the next attempt at most, never for a success.
    assert max(waits) < 0.2 + 0.15
    await reply.aclose()


async def test_a_library_error_from_the_platform_does_not_stop_the_reply() -> None:
    class Dropped(Exception):
        """Not a BridgeError: as a client library's own error reaches the renderer."""

    class Flaky(RecordingTarget):
        failures = 2

        async def begin(self, text: str | None = None) -> str | None:
            raise Dropped("connection closed")

        async def edit(self, message_id: str, text: str) -> None:
            if self.failures:
                self.failures -= 1
                raise Dropped("connection closed")
            await super().edit(message_id, text)

    target = Flaky(placeholder=False)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await _stream(reply, [f"w{i} " for i in range(20)], 0.005)
    await reply.finish(None)
    assert target.visible() == ["".join(f"w{i} " for i in range(20))]
    assert target.failures == 0 and target.ended.is_set()


async def test_a_final_update_the_platform_keeps_refusing_raises_and_the_reply_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "FINAL_RETRIES", 1)

    target = RefusingPosts()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer nobody will see")
    with pytest.raises(PlatformError, match="could not be completed"):
        await reply.finish(None)
    assert target.ended.is_set()  # the platform's indicators are cleaned up all the same


class OutOfReach(RecordingTarget):
    """A platform that cannot be reached (or fails on its side) for its next `failures` posts."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def post(self, text: str) -> str:
        if self.failures:
            self.failures -= 1
            raise PlatformError("Could not reach the platform to post a message.")
        return await super().post(text)


async def test_a_final_update_the_platform_cannot_take_yet_is_tried_for_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "FINAL_RETRIES", 1)  # a refusal's: not this
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.01)
    target = OutOfReach(failures=10)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer shown once the platform is back")
    await reply.finish(None)
    assert target.visible() == ["An answer shown once the platform is back"]
    assert not reply.gave_up


async def test_a_platform_out_of_reach_for_longer_than_the_patience_ends_the_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.1)
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.01)
    target = OutOfReach(failures=10**6)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer nobody will see")
    with pytest.raises(PlatformError, match="could not be completed"):
        await reply.finish(None)
    assert reply.gave_up and target.ended.is_set()
