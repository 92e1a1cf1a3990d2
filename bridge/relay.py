"""The relay: each job the intake takes (bridge/intake.py) -> one streamed reply.

Messages of one conversation are answered strictly in order, different
conversations concurrently, at most `limits.max_concurrent_streams` streams at
once with a bounded queue behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from bridge.answering import answer, log_failure
from bridge.budget import Budgets
from bridge.circuit import Circuit
from bridge.config import Config
from bridge.edits import Edits
from bridge.errors import BridgeError, told
from bridge.fairness import FairSlots
from bridge.fence import Fence
from bridge.flag import Flag
from bridge.intake import Intake
from bridge.interfaces import ChatAPI, Inbound, Rate, ReplyTarget
from bridge.interruptions import END_ON_STOP, GivenUp, stopped
from bridge.jobs import Job
from bridge.logs import log_answer
from bridge.metrics import Metrics
from bridge.progress import ProgressLog
from bridge.render import LiveReply
from bridge.reply_budget import FIRST, Promise, Slots, refusal_slots, restamp
from bridge.stopping import HURRIED_SECONDS, StopClock
from bridge.store import InFlight, Store
from bridge.turns import Turns

log = logging.getLogger("chat_bridge.relay")

T = TypeVar("T")

# On a shared store, seconds an answer waits at most for the messages taken with it
# to be recorded (see `Intake._intake`).
INTAKE_WAIT = 1.0


class Relay:
    """Answers the jobs its intake takes, each as one streamed reply."""

    def __init__(
        self,
        config: Config,
        store: Store,
        backends: Mapping[str, ChatAPI],
        *,
        budgets: Budgets | None = None,
        metrics: Metrics | None = None,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.backends = backends
        # `is None`, not `or`: an empty Budgets is false, and the bridge's own must be used.
        self.budgets = budgets if budgets is not None else Budgets()
        self.metrics = metrics if metrics is not None else Metrics()
        self.owner = owner or f"proc-{uuid.uuid4().hex[:12]}"
        self._chains: dict[str, asyncio.Future[None]] = {}
        # Handed out between workspaces: a flood in one holds up no other's questions
        # behind its backlog.
        self._slots = FairSlots(config.limits.max_concurrent_streams)
        self._queued = 0  # accepted, not answering yet
        # Jobs taken and not ended, by conversation: all but its first wait behind
        # it and could not take a free stream slot. (On a shared store the first may
        # itself wait for another replica's answer: counted all the same, one per
        # conversation, or questions in conversations busy elsewhere would pile up.)
        self._taken: dict[str, int] = {}
        self._spaces: dict[tuple[str, str], int] = {}  # `ahead`, by workspace
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: set[Job] = set()
        # Records of finished replies not yet removed from the store (being removed,
        # or their removal failed): the heartbeat, or a stop, removes them, and nobody
        # may mark them interrupted.
        self.unended: set[str] = set()
        # Replies whose end nothing showed (the platform kept failing): their records
        # stay, for the bridge to mark them interrupted once the platform is back.
        self.given_up = GivenUp()
        self.progress = ProgressLog(store, self.owner)
        # Questions edited once asked: asked as they read then, if they wait their turn;
        # and the turns a stateless API's history keeps of them read as the edits do,
        # within the longest question such an API is asked.
        most = config.limits.max_question_chars
        self.edits = Edits(
            store,
            min(
                [
                    most,
                    *(
                        api.max_message_chars or most
                        for api in backends.values()
                        if not api.stateful
                    ),
                ]
            ),
            history=any(not api.stateful for api in backends.values()),
        )
        # A replica that has not beaten for three heartbeats has stopped: the leases
        # it did not renew and the records it did not mark are nobody's.
        self.stale_after = 3 * config.limits.heartbeat_interval
        # On a shared store, answers stop before the others take over when no heartbeat
        # reaches the store (the bridge watches it).
        self.fence = Fence(config.limits.heartbeat_interval, self.stale_after)
        self.turns = Turns(store, self.owner, self.stale_after, self._jobs, self.fence)
        circuit = config.limits.circuit
        self.circuits = {
            name: Circuit(circuit.failures, circuit.cooldown, name=name) for name in backends
        }
        # Each platform's reset command (`Platform.reset_command`), for notices.
        self.reset_commands: dict[str, str | None] = {}
        self.accepting = True
        self._unasked = 0  # questions a stop ended before they were asked (`drain`)
        self._hurry = Flag()  # a second stop signal: the grace is over
        self.intake = Intake(self)

    # ---------------------------------------------------------------- jobs

    async def handle(self, msg: Inbound, target: ReplyTarget) -> Flag:
        """Take a message from a platform. Returns at once, with a flag set once the
        message is taken (see `Intake.handle`); the answer follows."""
        return await self.intake.handle(msg, target)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start(self, job: Job, batch: Flag) -> None:
        """Queue a job the intake took; it runs once its turn comes (on a shared store,
        once `batch` is set: the messages taken with it are recorded)."""
        if not self.store.shared:  # on a shared store, `turns` orders them
            job.previous = tuple(
                previous for key in job.keys if (previous := self._chains.get(key)) is not None
            )
            for key in job.keys:
                self._chains[key] = job.mine
        self._jobs.add(job)
        if job.key not in self._taken:
            self._spaces[job.space] = self._spaces.get(job.space, 0) + 1
        self._taken[job.key] = self._taken.get(job.key, 0) + 1
        self._queued += 1
        self.metrics.queue_depth.set(self._queued)
        if not job.previous:
            self._promise(job)
        job.recorded = batch
        job.task = self.spawn(self._run(job))

    def _promise(self, job: Job) -> None:
        """A slot of its place's post budget for its first words, which refusals told
        there leave it: from when it is first of its conversation (one behind another
        shows nothing until that one ends), if refusals are posted there."""
        limits = job.target.limits
        if limits.notices_post and not job.reset and job.promise is None:
            job.promise = Promise(self.budgets.get(limits.post_bucket, limits.post_rate))

    @property
    def ahead(self) -> int:
        """Questions answering, or that could take a free stream slot now: the first
        one taken of each conversation (those behind it wait for it, not for a slot)."""
        return len(self._taken)

    def ahead_in(self, space: tuple[str, str]) -> int:
        """`ahead`, of one workspace: (platform, workspace)."""
        return self._spaces.get(space, 0)

    def taken(self, key: str) -> int:
        """The questions of conversation `key` taken here and not ended."""
        return self._taken.get(key, 0)

    async def notice(self, target: ReplyTarget, text: str, *, by: float | None = None) -> bool:
        """Tell the asker something instead of answering, within the bot-wide budget
        and, where a notice is a message in the place, the place's post budget.

        With `by` (a refusal posted in the place), it waits for its slots after every
        reply's request and leaves those promised to answers yet to show; if they are
        not granted by `by` (time.monotonic()), it is not told: False.
        """
        limits = target.limits
        place = [(limits.post_bucket, limits.post_rate)] if limits.notices_post else []
        try:
            if by is None:
                await self.within_budgets(target, lambda: target.notice(text), place)
                return True
            held = await refusal_slots(self.budgets, self._wanted(target, place), by)
            if held is None:
                return False
            try:
                await target.notice(text)
            finally:
                restamp(held)
            return True
        except Exception as exc:
            self.metrics.platform_failed(target.address.platform, exc)
            raise

    @staticmethod
    def _wanted(target: ReplyTarget, first: Sequence[tuple[str, Rate]]) -> list[tuple[str, Rate]]:
        """The budgets of a request outside a reply: those in `first`, then the bot-wide one."""
        limits = target.limits
        wanted = list(first)
        if limits.global_bucket and limits.global_rate:
            wanted.append((limits.global_bucket, limits.global_rate))
        return wanted

    async def within_budgets(
        self,
        target: ReplyTarget,
        request: Callable[[], Awaitable[T]],
        first: Sequence[tuple[str, Rate]] = (),
        *,
        kept: bool = False,
    ) -> T:
        """Make a request of the platform outside a reply within its bot-wide budget, if
        any, and the budgets in `first` before it (as a reply takes its own budget first).
        With `kept` (a stop's mark), it may take the slots a stop kept back."""
        held: Slots = []
        try:
            for bucket, rate in self._wanted(target, first):
                budget = self.budgets.get(bucket, rate)
                # It comes before first words.
                stamp = await budget.acquire((FIRST, time.monotonic()), kept=kept)
                held.append((budget, stamp))
            return await request()
        finally:
            restamp(held)

    # ---------------------------------------------------------------- answering

    async def _run(self, job: Job) -> None:
        # Every line logged for this answer names it (this task's and those it starts).
        log_answer(conversation=job.key, platform=job.msg.platform)
        # Once a stop began, a question is asked only if its turn comes at once (one
        # being taken as it began); one that waits for its turn is not (see below). On
        # a shared store its wait in `turns` is not seen: only one taken before counts.
        at_once = not self.accepting
        unasked = False
        try:
            if self.store.shared:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(INTAKE_WAIT):
                        await job.recorded.wait()
                if not await self.turns.take(job):
                    with contextlib.suppress(Exception):
                        await job.target.end()
                    return
            for previous in job.previous:
                at_once = at_once and previous.done()
                await asyncio.shield(previous)
            self._promise(job)
            if job.reset:
                self._dequeue(job)
                await self.store.reset_conversation(job.key)
                if job.also is not None:
                    await self.store.reset_conversation(job.also)
                await self.notice(job.target, self.config.commands.reset_reply)
                self.metrics.answered.labels(job.msg.platform, job.route.backend, "reset").inc()
                return
            at_once = at_once and not self._slots.locked()
            await self._slots.acquire(job.space)
            if not (self.accepting or at_once):
                # A stop is on and it waited its turn: asked now, it would be paid for and
                # most likely cut at the grace's end, unread. It ends as a question cut
                # while it waited does (its record left, to be marked interrupted).
                self._slots.release(job.space)
                self._unasked += 1
                unasked = True
                await stopped(job, self.metrics, self.fence)
                return
            self._dequeue(job)
            held = True

            def free_slot() -> None:  # once: the answer read, its end still to show
                nonlocal held
                if held:
                    held = False
                    self._slots.release(job.space)

            try:
                await answer(self, job, free_slot)
            finally:
                free_slot()
        except asyncio.CancelledError:
            if not unasked:  # cut as it ended unasked: counted and cleared already
                await stopped(job, self.metrics, self.fence)
            raise
        except Exception as exc:  # before the answer began (a store lookup): say so
            self.metrics.answered.labels(job.msg.platform, job.route.backend, "failed").inc()
            log_failure(job.key, exc)
            with contextlib.suppress(Exception):
                await self.notice(job.target, told(exc))
        finally:
            self._dequeue(job)  # if it never left the queue (a failure or a stop before)
            if job.promise is not None:  # (its reply may have given it back already)
                job.promise.done()
            if not job.mine.done():
                job.mine.set_result(None)
            if (left := self._taken[job.key] - 1) > 0:
                self._taken[job.key] = left
            else:
                del self._taken[job.key]
                if (holds := self._spaces[job.space] - 1) > 0:
                    self._spaces[job.space] = holds
                else:
                    del self._spaces[job.space]
            for key in job.keys:
                if self._chains.get(key) is job.mine:
                    del self._chains[key]
            try:
                if not job.interrupted:  # (one given up on: `given_up` holds its progress)
                    self.progress.forget(job.record.id)
                if not (job.interrupted or job.unmarked):
                    # Shielded, all in one: a stop arriving now must not leave a finished
                    # reply (or a reset's second record) looking interrupted to the next
                    # process, nor to this one's stop.
                    await asyncio.shield(self.end_record(*(r.id for r in job.records)))
            finally:
                try:
                    for key in job.leased:  # let go even if a stop came during the line above
                        await asyncio.shield(self.turns.let_go(key))
                finally:
                    self._jobs.discard(job)

    def _dequeue(self, job: Job) -> None:
        """The job leaves the queue (once)."""
        if job.queued:
            job.queued = False
            self._queued -= 1
            self.metrics.queue_depth.set(self._queued)

    async def end_record(self, *rec_ids: str) -> None:
        """Remove finished replies' in-flight records; if the store fails, the heartbeat
        will. Each is in `unended` until it is gone: a stop that cuts this removal (a
        statement on its way, its record still seen by the store's other connections)
        ends it, and does not take it for a reply it cut."""
        self.unended.update(rec_ids)
        for rec_id in rec_ids:
            try:
                await self.store.inflight_end(rec_id)
            except BridgeError as exc:
                log.error("could not close the record of reply %s (will retry): %s", rec_id, exc)
            else:
                self.unended.discard(rec_id)

    async def end_records(self) -> None:
        """Remove the records whose removal failed (or is on its way: it is idempotent)."""
        for rec_id in list(self.unended):
            await self.store.inflight_end(rec_id)
            self.unended.discard(rec_id)

    def cut(self, *, taken_over: bool = False) -> int:
        """Stop the answers holding a conversation's lease (answering, or about to), as
        a stop does, and leave the replies given up on to the other replicas: the fence
        is up (bridge/fence.py), or, `taken_over`, this replica was paused past the
        takeover time and others may have taken them over. Returns how many it stopped."""
        self.given_up.leave()
        return self._cut([job for job in self._jobs if job.leased], taken_over)

    def lost(self, records: Collection[str], leases: Collection[str]) -> int:
        """Stop the jobs whose records or leases another replica took over, this one
        having been paused, or cut off from the store, past the takeover time (the
        heartbeat found them another's). One answering is cut as the fence cuts it,
        its reply marked interrupted again: the other replica marked it, and this one
        may have edited it after. One waiting its turn ends, as it does once the fence
        is down (the other told its asker). Returns how many it stopped."""
        return self._cut(
            [
                job
                for job in self._jobs
                if any(r.id in records for r in job.records) or any(k in leases for k in job.leased)
            ],
            True,
        )

    def _cut(self, jobs: list[Job], taken_over: bool) -> int:
        cut = 0
        for job in jobs:
            # Not one that has ended, its record being removed: it would look cut off.
            # Nor one cut already: its mark may be on its way.
            if not (job.mine.done() or job.task is None or job.fenced or job.taken_over):
                job.fenced = bool(job.leased)
                job.taken_over = taken_over
                job.task.cancel()
                if job.reply is not None:
                    # Its updates stop now, not once the cancellation reaches them: the
                    # heartbeat may let an update waiting for it go (`Fence.checked`).
                    job.reply.halt()
                cut += 1
        return cut

    def records(self) -> list[tuple[InFlight, LiveReply | None]]:
        """Every reply this process owns, being admitted, queued or streaming (for
        heartbeats)."""
        jobs = [(job.record, job.reply) for job in self._jobs]
        asides = [(job.aside, None) for job in self._jobs if job.aside is not None]
        return jobs + asides + [(record, None) for record in self.intake.admitting.values()]

    # ---------------------------------------------------------------- lifecycle

    @property
    def live(self) -> int:
        """Replies started and not yet finished with (their store record included)."""
        return sum(1 for job in self._jobs if job.reply is not None)

    def hurry(self) -> None:
        """End a drain's grace now (the admin asked a second time to stop)."""
        self._hurry.set()

    @property
    def hurried(self) -> bool:
        return self._hurry.is_set()

    async def hurry_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for `hurry`; whether it came."""
        try:
            async with asyncio.timeout(seconds):
                await self._hurry.wait()
        except TimeoutError:
            return False
        return True

    async def drain(self, grace: float, clock: StopClock | None = None) -> int:
        """Stop taking messages; let live replies finish for `grace` seconds.

        A question still waiting for its turn is not asked once it comes: it would be
        paid for and most likely cut unread. Returns how many replies were cut: still
        running at the grace's end and cancelled, or not begun (their in-flight
        records stay, to be marked interrupted). Those cut end on the store (their
        leases let go): until `clock`'s deadline (after a second signal, about
        END_ON_STOP + HURRIED_SECONDS from it), past which they are left to end on
        their own.
        """
        self.accepting = False
        self._unasked = 0
        for job in self._jobs:  # the replies it cuts find slots for their marks
            if job.reply is not None:
                job.reply.keep_back()
        deadline = asyncio.get_running_loop().time() + grace
        pending = {t for t in self._tasks if not t.done()}
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            while pending and not self._hurry.is_set():
                # A message being taken as the drain began starts its answer later:
                # wait for that one too, within the same grace.
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                await asyncio.wait(
                    {*pending, hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending = {t for t in self._tasks if not t.done()}
        finally:
            hurry.cancel()
        # A task not begun (a question taken as the stop began) cancelled now would
        # never run a line: none of its ending (its asker told, its indicator
        # cleared, its place in the queue given back). Each runs to its first wait (a
        # turn of the loop, and one more for any a task started meanwhile).
        while any(_not_begun(t) for t in self._tasks):  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0)
        pending = {t for t in self._tasks if not t.done()}
        for task in pending:
            task.cancel()
        if pending:
            ended = asyncio.gather(*pending, return_exceptions=True)
            if clock is None:
                await ended
            else:
                # After a second signal, the time their platforms take to clear their
                # indicators and a store call's (their leases let go); one not ended by
                # then leaves the clock `stalled`.
                with contextlib.suppress(TimeoutError):
                    await clock.within(ended, hurried=END_ON_STOP + HURRIED_SECONDS)
        return len(pending) + self._unasked


def _not_begun(task: asyncio.Task[None]) -> bool:
    """Whether a task has yet to run its coroutine's first line."""
    coro = task.get_coro()
    return inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
