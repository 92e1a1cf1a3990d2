"""The daemon's lifespan: open everything in order, close it in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Collection
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import httpx

from bridge.budget import Budgets
from bridge.config import Config
from bridge.conversations import tell_of_other_backends, tell_of_unmade_scopes
from bridge.deletions import record_deletion
from bridge.errors import BridgeError, StoreCorrupt, StoreReplaced, for_log
from bridge.http import HttpServer
from bridge.interfaces import ChatAPI, Platform, PlatformContext, Registry
from bridge.logs import Repeats
from bridge.metrics import PLATFORM_FAILURES, Metrics
from bridge.platform_starts import PlatformStarts
from bridge.recovery import Recovery
from bridge.relay import Relay
from bridge.resources import raise_open_files, warn_of_few_open_files
from bridge.stopping import StopClock, Unanswered
from bridge.store import InFlightProgress, Store, open_store
from bridge.transport import http_client, tls_context

log = logging.getLogger("chat_bridge.app")

# How often old conversations are looked for (limits.conversation_ttl), and how
# many are forgotten at most in one heartbeat.
CONVERSATION_PRUNE_EVERY = 600.0
PRUNE_BATCH = 1000
# Seconds between a heartbeat's `Store.compact` (SQLite: the write-ahead log emptied, so
# what a reset or a pruning deleted leaves the files within about this long).
COMPACT_EVERY = 60.0
# How long a stop spends, after the grace, on the store and on marking the replies it
# cut as interrupted, all told: retrying to remove finished replies' records from a
# failing store, finding the cut replies' records, the marks. What is left then is
# for the next start (the records stay).
AFTER_GRACE_SECONDS = 5.0
# How long `/healthz` (and a scrape of `/metrics`) waits for the store to answer.
HEALTH_STORE_SECONDS = 2.0
# How long a closing bridge waits for its background tasks (the heartbeat...) to end.
TASKS_END_SECONDS = 0.5


def build_backends(
    config: Config, registry: Registry, http: httpx.AsyncClient
) -> dict[str, ChatAPI]:
    """One dialect instance per configured backend."""
    backends: dict[str, ChatAPI] = {}
    for name, options in config.backends.items():
        cls = registry.dialects[options.kind]()
        backends[name] = cls(name, options, http)
    return backends


def _log_failure(task: asyncio.Task[None]) -> None:
    """A background task should run until cancelled: say so if one ended on an error."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task %r ended", task.get_name(), exc_info=exc)


class Bridge:
    """Store, backends, HTTP listener and platforms, wired to one relay."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        *,
        owner: str | None = None,
        platform_extra: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.owner = owner or f"proc-{uuid.uuid4().hex[:12]}"
        self.metrics = Metrics()
        self.budgets = Budgets()
        self.platforms: dict[str, Platform] = {}
        self._platform_extra = platform_extra or {}
        self._contexts: dict[str, PlatformContext] = {}
        # Those that did not start while another did, tried again meanwhile.
        self.starts = PlatformStarts(self._started, self._made_anew)
        self._stack = AsyncExitStack()
        self.store: Store
        self.relay: Relay
        self.chat_http: httpx.AsyncClient  # the chat APIs' client
        self.http: HttpServer | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._fence: asyncio.Task[None] | None = None
        # Recovery running beside the heartbeat (its marks may wait long for a
        # platform's budget), and the orphans it has claimed and not yet marked.
        self._recovering: asyncio.Task[object] | None = None
        self._drained = False  # a graceful stop ran (`drain`)
        self.recovery: Recovery
        # Marking the replies given up on (`Relay.given_up`), beside the heartbeat.
        self._given_up: asyncio.Task[None] | None = None
        self._progress: asyncio.Task[None] | None = None
        self.heartbeat = config.limits.heartbeat_interval
        # (monotonic, so a wall clock stepped back does not put them off) When old
        # conversations were last all forgotten; when the store last let go of what
        # deletes leave.
        self._pruned_at = -math.inf
        self._compacted_at = -math.inf
        self._beat_failed_at = -math.inf  # (monotonic) when a heartbeat last failed
        # (the database's clock) When the last heartbeat that succeeded began, on a
        # shared store.
        self._beaten_in_store: float | None = None
        self._beats_failing = Repeats()  # heartbeats failed in a row, told in moderation

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    async def __aenter__(self) -> Bridge:
        await self.open()
        await self._or_close(self.recovered())
        return self

    async def open(self) -> None:
        """Open the store and the clients, and start the platforms: questions are
        answered from now on, while the replies the last run left are marked
        interrupted (`recovered`)."""
        await self._or_close(self._open())

    async def recovered(self) -> None:
        """Wait for the start's marking of the replies the last run left. Cancelled,
        the marking stops: the next start marks the rest."""
        assert self._recovering is not None, "open() first"
        await self._recovering

    async def _or_close(self, step: Awaitable[None]) -> None:
        """A step of the start, after which a failure (or a cancel) closes everything."""
        try:
            await step
        except BaseException as exc:
            # What the platforms delivered before the failure stops first, then
            # the store and the clients it was using close. The failure that
            # stopped the start is the one reported.
            try:
                if isinstance(exc, Exception) and hasattr(self, "recovery"):
                    # A platform began answering before the start failed (another one
                    # refusing its token, or every other one out of reach): its
                    # answers are cut now and marked interrupted, as a stop's are, with
                    # no grace. Else they would stay half-shown, unmarked, until a start
                    # succeeds.
                    await self.drain(grace=0.0)
                await self.aclose()
            except Exception as exc:
                log.warning("closing after a failed start: %s", for_log(exc))
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> None:
        stack = self._stack
        raise_open_files()
        streams = self.config.limits.max_concurrent_streams
        warn_of_few_open_files(streams)
        # Its pool, on PostgreSQL, grows with the streams (see docs/store.md).
        self.store = open_store(self.config.store, streams=streams)
        stack.push_async_callback(self.store.aclose)
        await self.store.hold()
        await self.store.open()
        await tell_of_other_backends(
            self.store,
            {route.backend for route in self.config.routes},
            self.config.limits.conversation_ttl,
        )
        await tell_of_unmade_scopes(
            self.store, self.config.routes, self.config.limits.conversation_ttl
        )

        # Every answer streaming at once holds a connection: the pool never makes one wait.
        self.chat_http = client = http_client(
            max_connections=max(1000, streams + 100), ssl_context=await tls_context()
        )
        stack.push_async_callback(client.aclose)
        self.backends = build_backends(self.config, self.registry, client)
        self.relay = Relay(
            self.config,
            self.store,
            self.backends,
            budgets=self.budgets,
            metrics=self.metrics,
            owner=self.owner,
        )
        self.recovery = Recovery(
            self.store,
            self.relay,
            self.platforms,
            self.metrics,
            self.owner,
            stopped=lambda: self._drained,
        )

        if self.config.http.listen:
            self.http = HttpServer(self.config.http.listen, self._health, self._metrics)
        for name, options in self.config.platforms.items():
            for kind in PLATFORM_FAILURES:  # at 0 from the start: an alert sees the first
                self.metrics.platform_errors.labels(name, kind)
            cls = self.registry.platforms[name]()
            ctx = PlatformContext(
                options=options,
                http=self.http,
                on_rate_limited=self.metrics.platform_429.labels(name).inc,
                thinking_text=self.config.reply.thinking_text,
                per_user=any(
                    route.session == "user" and route.serves(name) for route in self.config.routes
                ),
                extra=self._platform_extra.get(name, {}),
                deleted=partial(record_deletion, self.store, name),
                # A question waiting its turn is asked as it reads then, whatever the
                # API (only a stateless API's history keeps questions, for edits after).
                edited=partial(self.relay.edits.edited, name),
                route_channels=_route_channels(self.config, name),
                budgets=self.budgets,
            )
            self._contexts[name] = ctx
            self.platforms[name] = cls(ctx)
            self.relay.reset_commands[name] = self.platforms[name].reset_command
        if self.http is not None:
            await stack.enter_async_context(self.http)
        await self.starts.start(self.platforms)
        self._heartbeat = asyncio.create_task(self._beat(), name="heartbeat")
        self._progress = asyncio.create_task(self.relay.progress.run(), name="progress writer")
        for task in (self._heartbeat, self._progress):
            task.add_done_callback(_log_failure)
        if self.store.shared:
            self._fence = asyncio.create_task(self.relay.fence.watch(self.relay.cut), name="fence")
            self._fence.add_done_callback(_log_failure)
        # After the heartbeat starts: marking may wait long on the platforms' budgets,
        # and what it claimed (and the first live replies) must be beaten for meanwhile.
        # As `_recovering`, so the heartbeat starts no second recovery beside it.
        self._recovering = asyncio.create_task(self.recovery.recover(), name="recovery")

    async def _started(self, name: str, platform: Platform) -> None:
        """Start `platform`, and from then on answer on it as `name`."""
        await platform.start(self.relay.handle)
        self.platforms[name] = platform
        self._stack.push_async_callback(platform.aclose)
        log.info("platform connected", extra={"platform": name})

    def _made_anew(self, name: str) -> Platform:
        # A platform whose start failed has closed for good.
        return self.registry.platforms[name]()(self._contexts[name])

    async def _beat(self) -> None:
        """Keep this process's replies marked alive; on a shared store, take over
        the replies of processes that stopped beating."""
        while True:
            # On a shared store a failed heartbeat is tried again soon, and again, until
            # one succeeds: a blip of the store, or a beat that took long to fail, does
            # not fence the replica (bridge/fence.py).
            failed = self._beat_failed_at > self.relay.fence.beaten_at
            await self.relay.fence.due(
                self.heartbeat / 4 if failed and self.store.shared else self.heartbeat
            )
            try:
                await self._beat_once()
            except BridgeError as exc:
                self._beat_failed_at = time.monotonic()
                if (again := self._beats_failing.failed()) is not None:
                    log.warning("heartbeat failed%s: %s", again, exc)
            except Exception:
                # A bug or an untranslated error must not end the heartbeat: other
                # replicas would take this one's replies over as if it were dead.
                self._beat_failed_at = time.monotonic()
                log.exception("heartbeat failed")
            else:
                if tries := self._beats_failing.ended():
                    log.info("the heartbeat reached the store again, after %d failed tries", tries)

    async def _beat_once(self) -> None:
        # Its own frame: what a beat gathers (every live reply's text) is let go
        # when it ends, not kept through the sleep until the next one.
        stamp = self.relay.fence.stamp()
        began, now = stamp[0], time.time()
        cut = 0
        if self.store.shared:
            # By the database's clock: this process's own does not count a pause of
            # its host (a suspend, a VM paused or migrated), nor does the fence.
            beating_at = await self.store.now()
            last = self._beaten_in_store
            if last is not None and beating_at - last >= self.relay.stale_after:
                cut = self.relay.cut(taken_over=True)
        # First the records of replies that ended while the store failed: left, they
        # would look like orphans to the other replicas.
        await self.relay.end_records()
        rows: list[InFlightProgress] = []
        for rec, reply in self.relay.records():
            ids = reply.message_ids if reply is not None else rec.message_ids
            text = reply.recorded if reply is not None else rec.text
            rows.append((rec.id, ids, text, now))
        for marking in (self.recovery.marking, self.relay.given_up.records):
            rows.extend((rec.id, rec.message_ids, rec.text, now) for rec in marking.values())
        recorded = await self.store.inflight_update_many(rows, self.owner)
        if self.store.shared:
            leases = self.relay.turns.leases()
            renewed = await self.store.renew_leases(leases, self.owner, self.relay.stale_after, now)
            # Those another replica took over, this one having not beaten for as long.
            cut += self.relay.lost({row[0] for row in rows} - recorded, set(leases) - renewed)
            self._beaten_in_store = beating_at
        if cut:
            log.warning(
                "this replica was paused (its host suspended, or its VM paused or moved), "
                "or cut off from the store, longer than the takeover time (%g s): another "
                "replica took its answers over, or was about to; %d of its answers stop "
                "here and are marked interrupted again",
                self.relay.stale_after,
                cut,
            )
        # Marked alive as of `now`: what follows may take long, or fail, and changes
        # nothing to that.
        self.relay.fence.beaten(stamp)
        kept = max(
            [self.config.limits.event_ttl]
            + [type(platform).redelivers_within for platform in self.platforms.values()]
        )
        await self.store.prune_events(now - kept)
        await self.store.prune_leases(now)
        if began - self._compacted_at >= COMPACT_EVERY:
            self._compacted_at = began
            await self.store.compact()
        ttl = self.config.limits.conversation_ttl
        if ttl is not None and began - self._pruned_at >= CONVERSATION_PRUNE_EVERY:
            # In batches, one a beat, so a large backlog never holds the store long.
            if await self.store.prune_conversations(now - ttl, PRUNE_BATCH) < PRUNE_BATCH:
                self._pruned_at = began
        if self.store.shared and time.monotonic() - self._beat_failed_at >= self.relay.stale_after:
            # Not while this process could not reach the store lately: the other
            # replicas likely could not either, and their records look stale only
            # until they beat again (finished answers were marked interrupted).
            # Beside the heartbeat, not in it: marking many replies waits on the
            # platforms' budgets, and a heartbeat held up meanwhile would make this
            # replica's own live replies look dead to the others.
            if not self._drained and (self._recovering is None or self._recovering.done()):
                self._recovering = asyncio.create_task(self._recover_once(), name="recovery")
                self._recovering.add_done_callback(_log_failure)
        # Beside the heartbeat too, for the same reason.
        if (
            self.relay.given_up.records
            and not self._drained
            and (self._given_up is None or self._given_up.done())
        ):
            self._given_up = asyncio.create_task(self._given_up_once(), name="given up")
            self._given_up.add_done_callback(_log_failure)

    async def _recover_once(self) -> None:
        try:
            await self.recovery.recover()
        except BridgeError as exc:
            log.warning("could not look for interrupted replies: %s", exc)

    async def _given_up_once(self) -> None:
        try:
            await self.recovery.mark_given_up()
        except BridgeError as exc:
            log.warning("could not mark the replies given up on as interrupted: %s", exc)

    async def _health(self, only: Collection[str] | None = None) -> dict[str, str]:
        """What keeps the daemon from answering: the platforms' problems (of those
        `only` names, where given: one not configured is "not configured") and the
        store's."""
        problems: dict[str, str] = {}
        for name in self.platforms if only is None else only:
            platform = self.platforms.get(name)
            problem = self.starts.problems.get(name) or (
                platform.problem if platform is not None else "not configured"
            )
            if problem is not None:
                problems[name] = problem
        try:
            # A store that hangs (a partition) is told as down, in time for the health
            # check that asked (the image's gives up after 4 s).
            async with asyncio.timeout(HEALTH_STORE_SECONDS):
                await self.store.ping()
        except TimeoutError:
            log.debug("health: the store did not answer within %g s", HEALTH_STORE_SECONDS)
            problems["store"] = "unavailable"
        except BridgeError as exc:
            # The detail (the store's address) is for the log, not for whoever polls.
            log.debug("health: the store failed: %s", exc)
            # Corrupt: trying again, or a restart, cannot help; a restore from a backup does.
            problems["store"] = (
                "corrupt"
                if isinstance(exc, StoreCorrupt)
                else "replaced"
                if isinstance(exc, StoreReplaced)
                else "unavailable"
            )
        return problems

    async def _metrics(self) -> bytes:
        """The metrics, with each platform's and the store's state as `/healthz` tells
        it now: an alert on them needs nothing but the scrape."""
        problems = await self._health()
        for name in (*self.platforms, "store"):
            self.metrics.up.labels(name).set(0 if name in problems else 1)
        return self.metrics.render()

    async def drain(self, grace: float | None = None) -> bool:
        """Graceful stop: finish live replies for the grace period (`grace`, else
        limits.shutdown_grace), mark the rest.

        Then the replies cut and the store have `AFTER_GRACE_SECONDS` in all; after a
        second stop signal, the replies cut have what their platforms take to clear
        their indicators and each call to the store about a second (see `StopClock`).
        False when the store failed or did not answer, leaving records for the next
        start (which marks their replies interrupted); what no time was left for is
        left to it too, without blaming the store.
        """
        self._drained = True  # from now on the heartbeat begins no marking of its own
        await self.starts.aclose()  # a platform not started is not started now
        if self._recovering is not None and not self._recovering.done():
            # Marking other processes' replies (the start's, or the heartbeat's on a
            # shared store) would take the platforms' budgets the stop's own marks
            # need. What it claimed and did not mark, the stop marks, or it is left.
            self._recovering.cancel()
            await asyncio.wait([self._recovering], timeout=TASKS_END_SECONDS)
        for platform in self.platforms.values():
            await platform.stop_receiving()
        if grace is None:
            grace = self.config.limits.shutdown_grace
        clock = StopClock(self.relay, grace + AFTER_GRACE_SECONDS)
        cancelled = await self.relay.drain(grace, clock)
        clock.end_within(AFTER_GRACE_SECONDS)  # the grace may have ended early
        if self._given_up is not None:
            # It began no mark since the stop began, and most likely ended the one it
            # was making. One it cuts stays given up on: its record is left for the
            # next start (or another replica), not marked by the stop below.
            self._given_up.cancel()
            await asyncio.wait([self._given_up], timeout=TASKS_END_SECONDS)
        if self._progress is not None:
            # The flush below writes what is left. Writing beside it, the writer would
            # queue a statement after another to a store that does not answer.
            self._progress.cancel()
        try:
            await clock.within(self.relay.progress.flush())
        except Unanswered:
            log.warning(
                "could not record the last progress of live replies: the store "
                "did not answer in time"
            )
        except TimeoutError:
            log.warning(
                "no time was left to record the last progress of live replies: "
                "left for the next start, which marks them from what was recorded"
            )
        clean = await self.close_records(AFTER_GRACE_SECONDS, clock)
        if cancelled:
            log.info(
                "%d replies did not finish in time or were not begun; marking them interrupted",
                cancelled,
            )
            try:
                found = await clock.within(self.store.inflight_orphans(self.owner, time.time() + 1))
            except (BridgeError, Unanswered):
                return self._unmarked(cancelled)
            except TimeoutError:
                log.warning(
                    "no time was left to mark the %d replies cut by the stop "
                    "interrupted: left for the next start",
                    cancelled,
                )
                return clean
            left = [
                rec
                for rec in found
                # A record not removed yet (the store failed, or the stop cut its
                # removal) is of a finished reply (or one marked already). One given
                # up on is left for the next start: its platform was failing lately,
                # and a mark failing here would end it.
                if rec.owner == self.owner
                and rec.id not in self.relay.unended
                and rec.id not in self.relay.given_up
            ]
            try:
                while left:
                    # A second signal asks for the marks at once; it does not cut them.
                    await clock.within(
                        self.recovery.mark_interrupted(left[0], kept=True), hurried=None
                    )
                    left.pop(0)
            except TimeoutError:
                log.warning(
                    "%d replies are left to mark interrupted; the next start marks them",
                    len(left),
                )
            except BridgeError:
                return self._unmarked(len(left))
        return clean

    @staticmethod
    def _unmarked(count: int) -> bool:
        """The store failed or did not answer: the next start marks what the stop cut."""
        log.error(
            "the store is unavailable: %d replies cut by the stop are not marked "
            "interrupted, and the next start will mark them",
            count,
        )
        return False

    async def close_records(self, within: float, clock: StopClock | None = None) -> bool:
        """Retry, for up to `within` seconds (or until `clock`'s deadline), removing the
        in-flight records of finished replies that the store failed to remove; False
        if some are left.

        A record left behind makes the next start take its reply for one cut by
        a crash and mark it interrupted.
        """
        clock = clock or StopClock(self.relay, within)
        while self.relay.unended:
            try:
                await clock.within(self.relay.end_records())
            except (BridgeError, TimeoutError):
                # After a second stop signal, no second try: the admin asked to stop now.
                left = clock.left()
                if self.relay.hurried or left <= 0 or await self.relay.hurry_within(min(0.5, left)):
                    log.error(
                        "the store is unavailable: %d finished replies are still recorded "
                        "as live, and the next start will mark them interrupted",
                        len(self.relay.unended),
                    )
                    return False
        return True

    async def aclose(self) -> None:
        tasks = [
            t
            for t in (
                self._heartbeat,
                self._fence,
                self._progress,
                self._recovering,
                self._given_up,
            )
            if t
        ]
        self._heartbeat = self._fence = self._progress = self._recovering = self._given_up = None
        await self.starts.aclose()
        for task in tasks:
            task.cancel()
        if tasks:
            # One cut in a statement to a database that does not answer may wait on it
            # still (to give its connection back): left to end as the store closes.
            await asyncio.wait(tasks, timeout=TASKS_END_SECONDS)
        try:
            if hasattr(self, "relay"):
                # A question that comes from now on is told nothing: the platforms close
                # next. Those being told are cut below, before they close.
                self.relay.intake.closing()
                await self.relay.drain(0)
                if not self._drained:  # a drain tried already, within its deadline
                    with contextlib.suppress(TimeoutError):
                        await StopClock(self.relay, AFTER_GRACE_SECONDS).within(
                            self.relay.progress.flush()
                        )
        finally:  # the store, the clients and the platforms are closed whatever happened
            await self._stack.aclose()


def _route_channels(config: Config, platform: str) -> dict[str, str]:
    """The channel ids the routes of `platform` list, each with the first key naming it."""
    found: dict[str, str] = {}
    for i, route in enumerate(config.routes):
        if route.serves(platform):
            for channel in route.channels or ():
                found.setdefault(channel, f"routes[{i}].channels")
    return found
