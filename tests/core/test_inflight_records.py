"""Live replies' records: removed once finished though the store fails, never a dead process's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.errors import StoreError
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget
from tests.core.relay_support import STORE_DOWN, bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


async def finished_with_its_record_stuck(
    bridge: Bridge,
    stuck: Callable[[str], bool],
    question: str = "Everything?",
    channel: str = "C1",
) -> RecordingTarget:
    """Ask and wait for the reply to finish while the store fails to remove the
    in-flight records `stuck` picks (the others are removed as usual)."""
    end = bridge.store.inflight_end

    async def blip(rec_id: str) -> None:
        if stuck(rec_id):
            raise StoreError(STORE_DOWN)
        await end(rec_id)

    bridge.store.inflight_end = blip  # type: ignore[method-assign]
    target = await platform(bridge).say(question, channel=channel)
    await asyncio.wait_for(target.ended.wait(), 10)
    await wait_for(lambda: bool(bridge.relay.unended))
    return target


async def test_a_second_daemon_on_the_sqlite_file_waits_for_the_first(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Started beside it (a deploy, a second `docker run`), it took the first one's
    # live replies for a dead process's and marked them interrupted.
    fake_chat_api.enqueue(tokens=["Still ", "being ", "answered."], token_delay=0.1)
    first = bridge_for(fake_chat_api, tmp_path / "b.db")
    second = bridge_for(fake_chat_api, tmp_path / "b.db")
    async with first:
        target = await platform(first).say("Long one?")
        await wait_for(lambda: target.visible() != [])
        starting = asyncio.create_task(second.__aenter__())
        try:
            await wait_for(lambda: "another chat-bridge (pid" in caplog.text)
            await asyncio.wait_for(target.ended.wait(), 10)
            assert not starting.done()
        except BaseException:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting  # started after all: closed, not left running
                await second.__aexit__(None, None, None)
            raise
    await asyncio.wait_for(starting, 10)  # the first stopped: the second starts
    await second.__aexit__(None, None, None)
    assert target.visible() == ["Still being answered."]


async def test_a_finished_reply_whose_record_the_store_failed_to_remove_is_never_marked(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        failures = iter([True])  # the first removal fails
        target = await finished_with_its_record_stuck(bridge, lambda _: next(failures, False))
        assert await bridge.recovery.recover() == 0  # as a restart or another replica would
        await bridge._beat_once()  # the heartbeat removes the record
        assert not bridge.relay.unended
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    assert target.visible() == ["The full answer."]


async def test_a_stop_retries_removing_the_records_of_finished_replies(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        down = [True]
        target = await finished_with_its_record_stuck(bridge, lambda _: down[0])
        # The store stays down past the retries: the stop says what that leaves behind.
        assert await bridge.close_records(0.1) is False
        assert "1 finished replies are still recorded as live" in caplog.text
        # The store comes back while a stop retries: the record goes.
        down[0] = False
        await bridge.drain()
        assert not bridge.relay.unended
        assert await bridge.store.inflight_orphans("anyone", time.time() + 1) == []
    assert target.visible() == ["The full answer."]


async def test_a_second_stop_signal_does_not_wait_on_a_failing_store(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        await finished_with_its_record_stuck(bridge, lambda _: True)
        bridge.relay.hurry()  # "stopping at once"
        started = time.monotonic()
        await bridge.drain()
        assert time.monotonic() - started < 2.0  # not the 5 s of retries
    assert "1 finished replies are still recorded as live" in caplog.text


async def test_a_stop_that_cuts_a_reply_leaves_finished_ones_as_they_are(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "full ", "answer."])
    fake_chat_api.enqueue(tokens=["Half ", "and never more"], hang_after=1)
    async with bridge_for(
        fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 0.2}"
    ) as bridge:
        stuck: set[str] = set()

        def first_record(rec_id: str) -> bool:  # its removal keeps failing
            if not stuck:
                stuck.add(rec_id)
            return rec_id in stuck

        finished = await finished_with_its_record_stuck(bridge, first_record, "A?", "CA")
        cut = await platform(bridge).say("B?", channel="CB")
        await wait_for(lambda: any(t.startswith("Half") for t in cut.visible()))
        bridge.relay.hurry()
        await bridge.drain()
    assert finished.visible() == ["The full answer."]
    assert "interrupted" in cut.visible()[-1]
