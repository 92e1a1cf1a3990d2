"""A platform failing a reply: the answer stopped, the asker told apart, a stop not held up."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge import render
from bridge.errors import UNEXPECTED, PlaceGone, PlatformError, PlatformRefused, StoreError, told
from bridge.interfaces import Address
from bridge.interruptions import SHOWN_LATE_RESTART
from tests.core.fakeplatform import LocalPlatform, wait_for
from tests.core.recording import Op, RecordingTarget
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


class RefusingEdits(RecordingTarget):
    """A place whose edits (those `refused` picks, by their text) fail with `error`;
    each is recorded, none shown."""

    def __init__(
        self, error: PlatformError, refused: Callable[[str], bool] = lambda text: True
    ) -> None:
        super().__init__()
        self.error, self.refused = error, refused

    async def edit(self, message_id: str, text: str) -> None:
        self.ops.append(Op("edit", message_id, text))
        if self.refused(text):
            raise self.error


def vanishing_place() -> RefusingEdits:
    """A channel deleted (or the bot removed) after the reply's first message."""
    return RefusingEdits(
        PlaceGone("Discord could not edit a message: the channel or message is gone.")
    )


async def test_a_reply_whose_place_is_gone_stops_the_answer(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(100)], token_delay=0.05)
    monkeypatch.setattr(LocalPlatform, "target", lambda self, address: vanishing_place())
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A long one")
        await fake_chat_api.wait_disconnects(1)  # the API's stream is let go at once
        await wait_for(lambda: bridge.relay.live == 0)
    # One refused edit, nothing tried after it, and the indicators cleared once.
    assert [op.kind for op in target.ops] == ["begin", "post", "edit", "end"]


async def test_a_reply_gone_before_its_failure_is_shown_is_left_alone(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first message deleted, then the API failed: the failure's notice was
    # posted apart, into a place that had lost the reply.
    fake_chat_api.enqueue(
        tokens=["Partial ", "more ", "x"], error_after=2, error="boom", token_delay=0.2
    )
    # Deleted just before its failure is shown.
    gone = PlaceGone("Slack refused chat.update: message_not_found")
    monkeypatch.setattr(
        LocalPlatform, "target", lambda self, address: RefusingEdits(gone, lambda text: "⚠️" in text)
    )
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A question")
        await wait_for(
            lambda: bridge.relay.live == 0 and any("boom" in op.text for op in target.ops)
        )
    assert target.ops[-1].kind == "end" and target.notices == []


async def test_a_reply_that_cannot_be_finished_is_said_apart(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The final edit refused for good: the asker saw the first words and nothing
    # more, and was told nothing.
    fake_chat_api.enqueue(tokens=["Hello ", "world."], token_delay=0.1)
    monkeypatch.setattr(
        LocalPlatform,
        "target",
        lambda self, address: RefusingEdits(
            PlatformRefused("Slack refused chat.update: cant_update_message")
        ),
    )
    monkeypatch.setattr(render, "FINAL_RETRIES", 0)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("A question")
        await wait_for(lambda: bridge.relay.live == 0 and bool(target.notices))
    assert target.notices == [PlatformError.user_message]
    assert "cant_update_message" not in target.notices[0]


async def test_a_stop_cuts_short_a_reply_waiting_for_its_platform_and_marks_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of reach, the platform gets minutes to take the reply's end: a stop still
    # ends it within the grace, and marks it as any reply it cuts.
    fake_chat_api.enqueue(tokens=["Hello ", "world."], token_delay=0.1)
    unreachable = RefusingEdits(PlatformError("Could not reach the platform to edit a message."))

    def target(self: LocalPlatform, address: Address) -> RefusingEdits:
        unreachable.address = address  # where a stop's mark finds it
        return unreachable

    monkeypatch.setattr(LocalPlatform, "target", target)
    extra = "limits: {shutdown_grace: 0.2}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        await platform(bridge).say("A question")
        await wait_for(
            lambda: (
                [op.text for op in unreachable.ops if op.kind == "edit"].count("Hello world.") >= 2
            )
        )  # the whole answer is here, and being tried again
        assert bridge.relay.live == 1
        started = time.monotonic()
        await bridge.drain()
        assert time.monotonic() - started < 3.0
        assert bridge.relay.live == 0
    # Marked as a stop marks what it cut (here refused too: the next start cannot
    # find it either, as before), as the answer it is: whole, shown late.
    marked = f"Hello world.\n\n{SHOWN_LATE_RESTART}"
    assert any(op.text == marked for op in unreachable.ops if op.kind == "edit")


def test_a_platforms_failure_is_told_without_its_method_or_code() -> None:
    # A notice of it (a refusal whose post failed) showed "Slack refused
    # chat.postEphemeral: internal_error" to the asker, on Discord in the channel.
    assert told(PlatformError("Slack refused chat.postEphemeral: internal_error")) == (
        PlatformError.user_message
    )
    assert told(PlaceGone("Slack refused chat.update: message_not_found")) == (
        PlaceGone.user_message
    )
    assert told(StoreError("database is locked")) == StoreError.user_message
    assert told(KeyError("x")) == UNEXPECTED
