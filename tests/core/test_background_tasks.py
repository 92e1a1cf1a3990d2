"""The heartbeat and the progress writer outlive a round that fails unexpectedly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bridge import app
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import PlatformError, StoreError
from bridge.intake import MARKED_HERE_ONLY
from bridge.interfaces import Address, Handler
from bridge.interruptions import INTERRUPTED
from bridge.progress import ProgressLog
from bridge.recovery import Recovery
from bridge.store import Conversation, InFlight, InFlightProgress, open_store
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.core.recording import RecordingTarget
from tests.fakes.chatapi import FakeChatAPI


def bridge_for(fake: FakeChatAPI, db: Path, heartbeat: float = 0.05, limits: str = "") -> Bridge:
    config = parse_config(
        f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: {fake.endpoint("chatmount")}, api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs}}]
limits: {{heartbeat_interval: {heartbeat}{limits}}}
""",
        env={"KEY": fake.api_key},
        registry=TEST_REGISTRY,
    )
    return Bridge(config, TEST_REGISTRY)


def orphan(rec_id: str, owner: str = "proc-dead") -> InFlight:
    """A reply left by a process that stopped a minute ago."""
    then = time.time() - 60
    return InFlight(
        id=rec_id,
        key=f"k-{rec_id}",
        address=Address("console", "W1", "C1", "t"),
        owner=owner,
        started_at=then,
        message_ids=["m1"],
        text="partial",
        heartbeat_at=then,
    )


async def disconnected(self: RecordingTarget, message_id: str, text: str) -> None:
    raise aiohttp.ServerDisconnectedError()  # what discord.py lets through


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def count_rounds(bridge: Bridge) -> list[float]:
    """Each heartbeat round prunes events once: record when."""
    rounds: list[float] = []
    prune = bridge.store.prune_events

    async def counted(older_than: float) -> int:
        rounds.append(time.monotonic())
        return await prune(older_than)

    bridge.store.prune_events = counted  # type: ignore[method-assign]
    return rounds


async def test_a_platform_error_marking_an_orphan_does_not_stop_the_heartbeat(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RecordingTarget, "edit", disconnected)
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        bridge.store.shared = True  # as with PostgreSQL: replicas take over each other's orphans
        rounds = count_rounds(bridge)
        await bridge.store.inflight_begin(orphan("r1"))
        await wait_for(
            lambda: any("could not mark" in m for m in messages(caplog, logging.WARNING)), timeout=5
        )
        after = len(rounds)
        await wait_for(lambda: len(rounds) >= after + 2, timeout=5)
        assert bridge._heartbeat is not None and not bridge._heartbeat.done()
        # Its platform failing, the orphan is kept (beaten for, as this process's) to
        # be marked once the platform takes it: not dropped unmarked.
        [kept] = await bridge.store.inflight_orphans(bridge.owner, time.time() + 1)
        assert kept.id == "r1" and kept.owner == bridge.owner and "r1" in bridge.relay.given_up
    # Told once, not at every round that tries again.
    assert len([m for m in messages(caplog, logging.WARNING) if "could not mark" in m]) == 1


async def test_an_unexpected_error_in_a_heartbeat_round_is_logged_and_the_next_round_runs(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        rounds = count_rounds(bridge)
        prune = bridge.store.prune_events

        async def fails_once(older_than: float) -> int:
            n = await prune(older_than)
            if len(rounds) == 1:
                raise RuntimeError("the store's driver broke")
            return n

        bridge.store.prune_events = fails_once  # type: ignore[method-assign]
        await wait_for(lambda: len(rounds) >= 3, timeout=5)
        assert bridge._heartbeat is not None and not bridge._heartbeat.done()
    failed = [r for r in caplog.records if r.getMessage() == "heartbeat failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None


async def test_a_store_down_for_many_heartbeats_is_told_once_and_its_return_too(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # PostgreSQL down: a WARNING every retry (2.5 s on a shared store), each with the
    # same long reason, buried the lines that said what the bridge did about it.
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        rounds = count_rounds(bridge)
        prune = bridge.store.prune_events

        async def down_for_six(older_than: float) -> int:
            n = await prune(older_than)
            if len(rounds) <= 6:
                raise StoreError("cannot reach the store")
            return n

        bridge.store.prune_events = down_for_six  # type: ignore[method-assign]
        await wait_for(
            lambda: any("again, after" in m for m in messages(caplog, logging.INFO)), timeout=10
        )
    failed = [m for m in messages(caplog, logging.WARNING) if m.startswith("heartbeat failed")]
    assert failed == ["heartbeat failed: cannot reach the store"]
    assert "the heartbeat reached the store again, after 6 failed tries" in messages(
        caplog, logging.INFO
    )


async def test_start_up_recovery_survives_a_platform_error(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "b.db"
    async with open_store(f"sqlite://{db}") as store:
        await store.inflight_begin(orphan("r1"))
    monkeypatch.setattr(RecordingTarget, "edit", disconnected)
    async with bridge_for(fake_chat_api, db, heartbeat=10) as bridge:
        # Kept for the heartbeat to mark once the platform is back.
        [kept] = await bridge.store.inflight_orphans(bridge.owner, time.time() + 1)
        assert kept.owner == bridge.owner and "r1" in bridge.relay.given_up
        # Counted as every failed platform request is (it was not).
        counted = [
            line
            for line in bridge.metrics.render().decode().splitlines()
            if line.startswith('chat_bridge_platform_errors_total{kind="failed"')
        ]
    assert counted == ['chat_bridge_platform_errors_total{kind="failed",platform="console"} 1.0']
    assert any(
        "could not mark a reply left in flight as interrupted" in m
        for m in messages(caplog, logging.WARNING)
    )


async def test_a_mark_that_failed_at_start_up_is_shown_once_the_platform_takes_it(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One dropped connection as the start marked a crashed process's reply: its record
    # was dropped, and the answer stayed cut off, looking whole, for good.
    db = tmp_path / "b.db"
    async with open_store(f"sqlite://{db}") as store:
        await store.inflight_begin(orphan("r1"))
    edits: list[tuple[str, str]] = []

    async def fails_once(self: RecordingTarget, message_id: str, text: str) -> None:
        if not edits:
            edits.append(("dropped", text))
            await disconnected(self, message_id, text)
        edits.append((message_id, text))

    monkeypatch.setattr(RecordingTarget, "edit", fails_once)
    async with bridge_for(fake_chat_api, db) as bridge:
        await wait_for(lambda: len(edits) == 2, timeout=5)
        await wait_for(lambda: "r1" not in bridge.relay.given_up, timeout=5)
        assert await bridge.store.inflight_orphans(bridge.owner, time.time() + 1) == []
    assert edits[1] == ("m1", f"partial\n\n{INTERRUPTED}")


async def test_a_mark_the_stop_could_not_show_is_left_for_the_next_start(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "b.db"
    async with bridge_for(fake_chat_api, db, heartbeat=10) as bridge:
        record = replace(orphan("r1", owner=bridge.owner), heartbeat_at=time.time())
        await bridge.store.inflight_begin(record)
        monkeypatch.setattr(RecordingTarget, "edit", disconnected)
        assert await bridge.recovery.mark_interrupted(record, kept=True) is None
        [left] = await bridge.store.inflight_orphans(bridge.owner, 0)
        assert left.id == "r1" and "r1" not in bridge.relay.given_up


async def test_a_crashed_processs_reply_is_marked_though_the_clock_went_back(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An NTP step back, or a volume moved to a host whose clock is behind: the
    # record's time is ahead of this start's. On SQLite no other process can be
    # alive (the file is held): every other owner's record is an orphan.
    db = tmp_path / "b.db"
    ahead = replace(orphan("r1"), heartbeat_at=time.time() + 5)
    async with open_store(f"sqlite://{db}") as store:
        await store.inflight_begin(ahead)
    edits: list[tuple[str, str]] = []

    async def edit(self: RecordingTarget, message_id: str, text: str) -> None:
        edits.append((message_id, text))

    monkeypatch.setattr(RecordingTarget, "edit", edit)
    async with bridge_for(fake_chat_api, db, heartbeat=10) as bridge:
        assert await bridge.store.inflight_orphans("anyone", time.time() + 60) == []
    assert edits == [("m1", f"partial\n\n{INTERRUPTED}")]


async def test_a_reply_left_on_a_platform_no_longer_configured_is_kept_a_week(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # It was kept for ever, with its text, claimed anew by every start.
    db = tmp_path / "b.db"
    elsewhere = Address("discord", "G1", "C1", None)  # not configured here
    old = replace(orphan("r-old"), address=elsewhere, started_at=time.time() - 8 * 86400)
    recent = replace(orphan("r-new"), address=elsewhere)
    async with open_store(f"sqlite://{db}") as store:
        for rec in (old, recent):
            await store.inflight_begin(rec)
    async with bridge_for(fake_chat_api, db, heartbeat=10) as bridge:
        left = await bridge.store.inflight_orphans("anyone", time.time() + 60)
    assert [rec.id for rec in left] == ["r-new"]


async def test_a_slash_commands_reply_left_by_a_crash_is_not_marked_through_the_channel(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the crashed process had the command's webhook: through the channel an edit
    # is refused, and a queued command's note would be posted where nobody asked.
    db = tmp_path / "b.db"
    queued = replace(orphan(f"r1{MARKED_HERE_ONLY}"), message_ids=[], text="")
    async with open_store(f"sqlite://{db}") as store:
        await store.inflight_begin(queued)
    calls: list[str] = []

    async def post(self: RecordingTarget, text: str) -> str:
        calls.append(text)
        return "m9"

    monkeypatch.setattr(RecordingTarget, "post", post)
    async with bridge_for(fake_chat_api, db, heartbeat=10) as bridge:
        assert await bridge.store.inflight_orphans("anyone", time.time() + 60) == []
    assert calls == []


async def test_a_message_taken_while_the_platforms_connect_is_not_marked_interrupted(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_chat_api.enqueue(tokens=["The ", "answer."], token_delay=0.1)
    asked: list[RecordingTarget] = []

    async def start(self: LocalPlatform, handler: Handler) -> None:
        # A queued event arrives as soon as the platform connects, and is being
        # answered while start-up goes on (another platform's handshake, say).
        self.handler = handler
        asked.append(await self.say("Asked while we were away?"))
        await wait_for(lambda: bool(asked[0].visible()))

    monkeypatch.setattr(LocalPlatform, "start", start)
    async with bridge_for(fake_chat_api, tmp_path / "b.db", heartbeat=10) as bridge:
        await asyncio.wait_for(asked[0].ended.wait(), 10)
        await wait_for(lambda: bridge.relay.live == 0)
    assert asked[0].visible() == ["The answer."]
    assert not [op.text for op in asked[0].ops if "interrupted" in op.text]


async def test_a_failed_start_stops_what_the_platforms_had_delivered(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_chat_api.enqueue(tokens=["slow "] * 50, token_delay=0.1)

    async def start(self: LocalPlatform, handler: Handler) -> None:
        self.handler = handler
        await self.say("Asked while we connect")
        await wait_for(lambda: fake_chat_api.requests != [])  # its answer streams

    async def recover(self: Recovery) -> int:
        raise StoreError("the store went away during start-up")

    monkeypatch.setattr(LocalPlatform, "start", start)
    monkeypatch.setattr(Recovery, "recover", recover)
    bridge = bridge_for(fake_chat_api, tmp_path / "b.db", heartbeat=10)
    with pytest.raises(StoreError, match="went away"):  # the failure that stopped the start
        async with bridge:
            pass
    # Nothing of the relay goes on against the closed store and clients.
    assert not [t for t in bridge.relay._tasks if not t.done()]
    assert bridge.relay.live == 0


async def test_answers_a_failed_start_cut_are_marked_interrupted(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One platform answered as another failed to start (Slack's questions coming while
    # Discord's gateway was out of reach): the answers stayed half-shown, unmarked, for
    # as long as every start failed.
    fake_chat_api.enqueue(tokens=["slow "] * 50, token_delay=0.1)
    asked: list[RecordingTarget] = []

    async def start(self: LocalPlatform, handler: Handler) -> None:
        self.handler = handler
        asked.append(await self.say("Asked while the other platform connects"))
        await wait_for(lambda: bool(asked[0].visible()))  # its answer shows
        raise PlatformError("Cannot reach Discord")

    monkeypatch.setattr(LocalPlatform, "start", start)
    with pytest.raises(PlatformError, match="Cannot reach Discord"):
        async with bridge_for(fake_chat_api, tmp_path / "b.db", heartbeat=10):
            pass
    [shown] = asked[0].visible()
    assert shown.startswith("slow ") and shown.endswith(INTERRUPTED)


async def test_a_background_task_that_fails_anyway_is_logged(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Bridge):
        async def _beat(self) -> None:
            raise RuntimeError("a bug")

    config = bridge_for(fake_chat_api, tmp_path / "b.db").config
    async with Broken(config, TEST_REGISTRY):
        await wait_for(lambda: messages(caplog, logging.ERROR), timeout=5)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "heartbeat" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


class FlakyStore:
    """Records each batch written; fails once with an error no adapter translated."""

    def __init__(self) -> None:
        self.batches: list[list[InFlightProgress]] = []
        self.failures = 1

    async def inflight_update_many(self, rows: Sequence[InFlightProgress], owner: str) -> set[str]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the store's driver broke")
        self.batches.append(list(rows))
        return {row[0] for row in rows}


async def test_the_progress_writer_survives_an_unexpected_store_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    progress = ProgressLog(store, "me", every=0.01)  # type: ignore[arg-type]
    store.failures = 0
    await progress.note("r1", ["m1"], "a")  # a new message: written at once
    store.failures = 1
    writer = asyncio.create_task(progress.run())
    try:
        await progress.note("r1", ["m1"], "a b")  # the batch that fails
        await wait_for(lambda: store.failures == 0, timeout=5)
        await wait_for(lambda: len(store.batches) >= 2, timeout=5)
        assert [(rec_id, text) for rec_id, _, text, _ in store.batches[-1]] == [("r1", "a b")]
        assert not writer.done()
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None


async def test_closing_closes_the_store_even_when_the_last_flush_fails(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    bridge = await bridge_for(fake_chat_api, tmp_path / "b.db").__aenter__()

    async def broken() -> None:
        raise RuntimeError("a bug")

    bridge.relay.progress.flush = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await bridge.aclose()
    assert bridge.store._db is None  # type: ignore[attr-defined]


async def test_the_relay_spends_the_bridges_own_budgets(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        # An empty Budgets is false: it must not be swapped for another one.
        assert bridge.relay.budgets is bridge.budgets
        assert bridge.relay.metrics is bridge.metrics


@pytest.mark.parametrize("ttl", [None, 86400.0])
async def test_conversations_unused_for_conversation_ttl_are_forgotten(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ttl: float | None
) -> None:
    monkeypatch.setattr(app, "PRUNE_BATCH", 2)  # a backlog goes in batches, one a beat
    limits = f", conversation_ttl: {ttl}" if ttl else ""
    async with bridge_for(fake_chat_api, tmp_path / "b.db", heartbeat=60, limits=limits) as b:
        now = time.time()
        for key, age in (("old1", 3), ("old2", 2), ("old3", 2), ("recent", 0.5)):
            used = now - age * 86400
            await b.store.save_conversation(Conversation(key, "docs", "s", used, used))
        await b._beat_once()
        await b._beat_once()
        left = {
            k
            for k in ("old1", "old2", "old3", "recent")
            if await b.store.get_conversation(k) is not None
        }
    assert left == ({"recent"} if ttl else {"old1", "old2", "old3", "recent"})


async def test_event_records_are_kept_as_long_as_a_platform_may_deliver_a_message_again(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slack delivers a message edited to add the bot's mention again, up to 10 minutes
    # on: with `event_ttl` shorter than that, an answered question was answered twice.
    monkeypatch.setattr(LocalPlatform, "redelivers_within", 600.0)
    async with bridge_for(fake_chat_api, tmp_path / "b.db", limits=", event_ttl: 1") as bridge:
        cutoffs: list[float] = []

        async def recorded(older_than: float) -> int:
            cutoffs.append(time.time() - older_than)
            return 0

        bridge.store.prune_events = recorded  # type: ignore[method-assign]
        await wait_for(lambda: len(cutoffs) >= 1, timeout=5)
        assert cutoffs[0] >= 600.0


async def test_replies_are_not_taken_over_while_the_store_was_just_unreachable(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
) -> None:
    # The other replicas could not beat either: their records look stale only until
    # they do (finished answers were marked "interrupted" after a database restart).
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        bridge.store.shared = True
        failed_at: list[float] = []
        claimed_at: list[float] = []
        update, claim = bridge.store.inflight_update_many, bridge.store.inflight_claim

        async def fails_once(rows: Sequence[InFlightProgress], owner: str) -> set[str]:
            if not failed_at:
                failed_at.append(time.monotonic())
                raise StoreError("the database is restarting")
            return await update(rows, owner)

        async def claimed(rec_id: str, owner: str, expected: float) -> bool:
            claimed_at.append(time.monotonic())
            return await claim(rec_id, owner, expected)

        bridge.store.inflight_update_many = fails_once  # type: ignore[method-assign]
        bridge.store.inflight_claim = claimed  # type: ignore[method-assign]
        await bridge.store.inflight_begin(orphan("r1", owner="proc-other"))
        await wait_for(lambda: claimed_at, timeout=5)
        assert claimed_at[0] - failed_at[0] >= 3 * bridge.heartbeat


class SteppedClock:
    """The `time` module as the heartbeat sees it, with its wall clock stepped."""

    def __init__(self, step: float) -> None:
        self.step = step

    def time(self) -> float:
        return time.time() + self.step

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


async def test_a_clock_stepped_back_stops_neither_compaction_nor_pruning(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both are due at every beat; a wall clock stepped back an hour (NTP, a VM
    # resumed) once held them off for that hour.
    monkeypatch.setattr(app, "COMPACT_EVERY", 0.0)
    monkeypatch.setattr(app, "CONVERSATION_PRUNE_EVERY", 0.0)
    limits = ", conversation_ttl: 86400"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", heartbeat=60, limits=limits) as b:
        compacted: list[float] = []
        pruned: list[float] = []
        compact, prune = b.store.compact, b.store.prune_conversations

        async def counted_compact() -> None:
            compacted.append(time.monotonic())
            await compact()

        async def counted_prune(older_than: float, limit: int) -> int:
            pruned.append(older_than)
            return await prune(older_than, limit)

        b.store.compact = counted_compact  # type: ignore[method-assign]
        b.store.prune_conversations = counted_prune  # type: ignore[method-assign]
        await b._beat_once()
        monkeypatch.setattr(app, "time", SteppedClock(-3600.0))
        await b._beat_once()
        assert len(compacted) == 2 and len(pruned) == 2
        # The cut-off follows the wall clock: what was kept is still kept.
        assert pruned[1] == pytest.approx(time.time() - 3600 - 86400, abs=5)
