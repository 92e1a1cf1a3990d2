"""The relay: one inbound message -> one streamed reply.

Messages are taken in arrival order per place (channel and thread), routed,
deduplicated by event id, and then answered: messages of one conversation
strictly in order, different conversations concurrently, at most
`limits.max_concurrent_streams` streams at once with a bounded queue behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from bridge.budget import Budget, Budgets, drop_older
from bridge.circuit import Circuit
from bridge.config import Config, RouteConfig
from bridge.errors import (
    BridgeError,
    ChatAPIError,
    CutOff,
    PlaceGone,
    PlatformError,
    RateLimited,
    StoreError,
    Unavailable,
    for_log,
)
from bridge.flag import Flag
from bridge.interfaces import (
    READ_GATE,
    ChatAPI,
    ChatEvent,
    ChatRequest,
    Done,
    Inbound,
    Rate,
    ReplyTarget,
    Session,
    Source,
    Sources,
    Status,
    Token,
    Turn,
)
from bridge.metrics import Metrics
from bridge.progress import ProgressLog
from bridge.render import FIRST, LiveReply, dedupe_sources
from bridge.routing import conversation_key, match_route
from bridge.store import Conversation, InFlight, Store

log = logging.getLogger("chat_bridge.relay")

T = TypeVar("T")

HELP_TEXT = "Ask me a question in words, and I will answer here."
UNEXPECTED = "Something went wrong on the bridge's side; please ask again."
THREAD_RESET = "Each thread here is its own conversation: start a new thread to start over."
END_ON_STOP = 2.0  # seconds an interrupted reply's platform gets to clear its indicators
INTERRUPTED = "_⚠️ interrupted by a restart — please ask again_"
# Refusals told to one person at most (beyond, they go unsaid): a member sending
# message after message where refusals are posted in the channel would otherwise
# fill its post budget with them, and answers to everyone else would wait.
REFUSALS_TOLD = (3, 60.0)  # notices, per seconds
NO_BACKEND = "none"  # the backend label of a message that failed before it was routed
INTAKE_BATCH = 16  # messages of one place recorded before their answers look ahead
INTAKE_WAIT = 1.0  # seconds an answer waits at most for that


class UserRateLimiter:
    """At most N messages per counter per window (sliding).

    A counter is a user's messages under one limit (see `Relay._rate_key`); each
    counter is always checked with the same limit.
    """

    SWEEP_FROM = 10_000

    def __init__(self) -> None:
        # Per counter: its window, and its stamps (a list, not a deque: a few
        # stamps per user, and an empty deque takes 600 bytes).
        self._seen: dict[str, tuple[float, list[float]]] = {}
        self._sweep_at = self.SWEEP_FROM

    def check(self, key: str, messages: int, per: float, now: float) -> float | None:
        """None if allowed (and counted), else the seconds until it would be."""
        if len(self._seen) >= self._sweep_at:
            # Forget counters quiet for their own window; the next sweep waits until
            # the counters kept have doubled, so a sweep costs O(1) a message.
            self._seen = {
                k: (window, s) for k, (window, s) in self._seen.items()
                if s and now - s[-1] < window
            }
            self._sweep_at = max(self.SWEEP_FROM, 2 * len(self._seen))
        counter = self._seen.get(key)
        if counter is None:
            counter = self._seen[key] = (per, [])
        stamps = counter[1]
        drop_older(stamps, now, per)
        if len(stamps) >= messages:
            return stamps[0] + per - now
        stamps.append(now)
        return None


@dataclass(eq=False)
class _Job:
    msg: Inbound
    target: ReplyTarget
    route: RouteConfig
    key: str
    record: InFlight
    previous: asyncio.Future[None] | None = None
    mine: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    reply: LiveReply | None = None
    interrupted: bool = False
    reset: bool = False  # a reset, in its turn: after the answers asked before it
    leased: bool = False  # holds its conversation's lease (shared store)
    queued: bool = True  # counted in the queue until it takes a slot
    # Set once the messages that were waiting with it in its place are recorded too.
    recorded: Flag = field(default_factory=Flag)


class _Pace:
    """What the relay puts in `READ_GATE`: a reply's `pace`, until the answer is read.

    Connections and timers made while an answer streams keep a copy of the
    context they were made in, a pooled connection for as long as it stays
    open. Closed, this holds nothing, so such a copy no longer keeps the
    finished reply alive, with its text and its platform target.
    """

    __slots__ = ("_pace",)

    def __init__(self, pace: Callable[[], Awaitable[None]]) -> None:
        self._pace: Callable[[], Awaitable[None]] | None = pace

    async def __call__(self) -> None:
        pace = self._pace
        if pace is not None:
            await pace()

    def close(self) -> None:
        self._pace = None


# What a chat API's text may hold that is no Unicode text: halves of UTF-16 pairs
# (a JSON "\ud83d" that a server cut from its "\ude00") and NUL. No store keeps them.
_ODD = re.compile("[\ud800-\udfff\x00]")


def valid_text(text: str) -> str:
    """`text` as Unicode: UTF-16 halves side by side paired, any other one U+FFFD, NUL gone."""
    if _ODD.search(text) is None:
        return text
    paired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return paired.replace("\x00", "")


class TokenText:
    """A stream's tokens made `valid_text`, a pair's halves in two tokens joined."""

    __slots__ = ("_high",)

    def __init__(self) -> None:
        self._high = ""  # the first half of a pair, waiting for the next token

    def clean(self, text: str) -> str:
        if self._high:
            text, self._high = self._high + text, ""
        if _ODD.search(text) is None:
            return text
        if "\ud800" <= text[-1] <= "\udbff":
            text, self._high = text[:-1], text[-1]
        return valid_text(text)

    def rest(self) -> str:
        """What is left at the stream's end: a half that never found its pair."""
        return "\ufffd" if self._high else ""


def interrupted_edit(
    target: ReplyTarget, text: str, message_ids: Sequence[str]
) -> tuple[str, str] | None:
    """How a reply cut short is marked in place: its last message and the text that
    message gets (what the reply showed, then the mark). None where it has no message
    yet, or that would not fit one: the mark then goes on its own."""
    if not message_ids:
        return None
    body = target.format_markdown(text) if text else ""
    note = f"{body}\n\n{INTERRUPTED}" if body else INTERRUPTED
    return (message_ids[-1], note) if len(note) <= target.limits.max_chars else None


# Ends the id of a record whose reply only its own target reaches (a slash command's
# webhook, whose token the process had): a later process cannot mark it.
MARKED_HERE_ONLY = "-own"


def _record_id(target: ReplyTarget) -> str:
    """A new in-flight record's id: it sorts by when the message arrived here, so two
    messages sent in the same millisecond are answered in the order they came."""
    own = MARKED_HERE_ONLY if target.marks_own_interruption else ""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}{own}"


def order_of(msg: Inbound) -> float:
    """Where a message stands in its conversation, the same on every replica."""
    return msg.sent_at or msg.received_at or time.time()


class Relay:
    """Routes inbound messages and streams the answers."""

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
        self._places: dict[tuple[str, ...], deque[tuple[Inbound, ReplyTarget]]] = {}
        self._chains: dict[str, asyncio.Future[None]] = {}
        self._slots = asyncio.Semaphore(config.limits.max_concurrent_streams)
        self._queued = 0  # accepted, not answering yet
        # Answering: streaming (holding one of `_slots`) or, the slot given back,
        # still showing the end (counted, or a place slow to edit takes questions
        # without end).
        self._answering = 0
        self._refusals: dict[tuple[str, str, str], asyncio.Task[None]] = {}  # last, by place
        self._tasks: set[asyncio.Task[None]] = set()
        self._users = UserRateLimiter()
        self._jobs: set[_Job] = set()
        # Records written for messages still being admitted (a thread may take long to
        # open): beaten for as the jobs' are, or they would look like a dead replica's.
        self._admitting: dict[str, InFlight] = {}
        # Conversations whose lease this process holds (shared store): done
        # when the job holding it lets go.
        self._leases: dict[str, asyncio.Future[None]] = {}
        # Records of finished replies whose removal from the store failed: the
        # heartbeat removes them later, and nobody may mark them interrupted.
        self.unended: set[str] = set()
        self.progress = ProgressLog(store)
        self.heartbeat_interval = config.limits.heartbeat_interval
        # A lease not renewed for three heartbeats has lost its owner.
        self.lease_ttl = 3 * self.heartbeat_interval
        circuit = config.limits.circuit
        self.circuits = {
            name: Circuit(circuit.failures, circuit.cooldown, name=name) for name in backends
        }
        self.accepting = True
        self._hurry = Flag()  # a second stop signal: the grace is over

    # ---------------------------------------------------------------- intake

    async def handle(self, msg: Inbound, target: ReplyTarget) -> None:
        """Take a message from a platform. Returns at once; the answer follows."""
        if not self.accepting:
            return
        self.metrics.received.labels(msg.platform).inc()
        place = (msg.platform, msg.workspace, msg.channel, msg.thread or "")
        queue = self._places.get(place)
        if queue is not None:
            queue.append((msg, target))
            return
        self._places[place] = deque([(msg, target)])
        self._spawn(self._intake(place))

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _intake(self, place: tuple[str, ...]) -> None:
        """Route the messages of one place in arrival order.

        On a shared store, an answer looks for messages ahead of it once those
        waiting with it here are recorded too (every INTAKE_BATCH, and for
        INTAKE_WAIT at most): one sent earlier but delivered just after is
        then seen, and goes first.
        """
        queue = self._places[place]
        batch, taken = Flag(), 0
        try:
            while queue:
                msg, target = queue[0]
                try:
                    taken += await self._admit(msg, target, batch) is not None
                except BridgeError as exc:
                    log.error("could not take message %s: %s", msg.event_id, exc)
                    self.metrics.answered.labels(msg.platform, NO_BACKEND, "failed").inc()
                    if msg.mentioned or msg.is_dm or msg.command:
                        # Only to whoever asked: chatter in a thread (checked against
                        # the store to see if it continues a conversation) is not told.
                        with contextlib.suppress(BridgeError):
                            await self._notice(target, _told(exc))
                except Exception:  # keep the intake alive whatever one message does
                    log.exception("could not take message %s", msg.event_id)
                    self.metrics.answered.labels(msg.platform, NO_BACKEND, "failed").inc()
                queue.popleft()
                if taken >= INTAKE_BATCH:
                    batch.set()
                    batch, taken = Flag(), 0
        finally:
            batch.set()
            del self._places[place]

    async def _admit(self, msg: Inbound, target: ReplyTarget, batch: Flag) -> _Job | None:
        """Route a message and record it; its job, if it is to be answered, starts
        (on a shared store, once `batch` is set) and is returned."""
        async def exists(key: str) -> bool:
            return await self.store.get_conversation(key) is not None

        route = await match_route(self.config.routes, msg, exists)
        if route is None:
            log.debug("no route for %s message in %s", msg.platform, msg.channel)
            if msg.command:  # a command expects an answer, even a refusal
                await self._notice(target, "I am not set up to answer here.")
            return None
        if not msg.may_post and not _opens_thread(route, msg):
            log.info("not answering in %s %s: the bot may only answer there in a thread "
                     "of its own (reply_in_thread)", msg.platform, msg.channel)
            return None
        key = conversation_key(route, msg)
        now = time.time()
        # Recorded before the event is claimed, so a replica answering a later
        # message of this conversation sees this one waiting ahead of it.
        record = InFlight(
            id=_record_id(target), key=key, address=target.address, owner=self.owner,
            started_at=order_of(msg), heartbeat_at=now,
        )
        await self.store.inflight_begin(record)
        self._admitting[record.id] = record
        job: _Job | None = None
        try:
            job = await self._check(msg, target, route, key, record)
        finally:
            del self._admitting[record.id]
            if job is None:
                await self._end_record(record.id)
        if job is not None:
            target.accepted()
            if not self.store.shared:  # on a shared store, `_wait_turn` orders them
                job.previous = self._chains.get(job.key)
                self._chains[job.key] = job.mine
            self._jobs.add(job)
            self._queued += 1
            self.metrics.queue_depth.set(self._queued)
            job.recorded = batch
            self._spawn(self._run(job))
            if not job.reset and job.route.session == "thread":
                # The conversation is known from now, on every replica: a follow-up in
                # its thread while this waits its turn is taken (its session comes with
                # the answer). Only thread conversations are followed so. After the job
                # is counted: the queue check stays exact.
                now = time.time()
                conv = Conversation(job.key, job.route.backend, None, now, now)
                try:
                    await self.store.create_conversation(conv)
                except BridgeError as exc:  # only a follow-up meanwhile depends on it
                    log.warning("could not record conversation %s: %s", job.key, exc)
        return job

    async def _check(
        self, msg: Inbound, target: ReplyTarget, route: RouteConfig, key: str, record: InFlight
    ) -> _Job | None:
        """Deduplicate, validate and answer commands; a job when there is a question to answer."""
        if not await self.store.claim_event(msg.event_id, time.time()):
            log.info("duplicate delivery of event %s dropped", msg.event_id)
            self.metrics.duplicates.labels(msg.platform).inc()
            return None
        text = msg.text.strip()
        if msg.command == "reset" or (
            msg.is_dm and text.lower() in {k.lower() for k in self.config.commands.reset_keywords}
        ):
            if route.session == "thread" and not msg.thread and not msg.is_dm:
                # A command run in the channel belongs to no thread's conversation.
                await self._refuse(msg, target, THREAD_RESET)
                return None
            return _Job(msg, target, route, key, record, reset=True)
        if not text:
            if msg.mentioned or msg.is_dm or msg.command:
                await self._refuse(msg, target, HELP_TEXT)
            # Else a picture or a sticker in a channel or thread the bot follows:
            # nobody asked the bot anything.
            return None
        backend = self.backends[route.backend]
        limit = min(
            self.config.limits.max_question_chars,
            backend.max_message_chars or self.config.limits.max_question_chars,
        )
        if len(text) > limit:
            await self._refuse(
                msg,
                target,
                f"That question is {len(text):,} characters long; the limit is {limit:,}. "
                "Please shorten it and ask again.",
            )
            return None
        # Refusals that ask the backend nothing come before the asker's rate limit,
        # so that they do not count against it.
        circuit = self.circuits[route.backend]
        if circuit.state == "open" or circuit.probing:
            await self._refuse(msg, target, _unavailable(circuit))
            self.metrics.answered.labels(msg.platform, route.backend, "unavailable").inc()
            return None
        # Waiting: questions not answering yet beyond the free streams (one behind
        # another of its conversation waits even while streams are free).
        limits = self.config.limits
        if self._queued + self._answering >= limits.queue_size + limits.max_concurrent_streams:
            await self._refuse(msg, target, "I am busy right now; please try again shortly.")
            return None
        rate = route.rate_limit or self.config.limits.rate_limit
        wait = self._users.check(
            self._rate_key(msg, route), rate.messages, rate.per, time.monotonic()
        )
        if wait is not None:
            await self._refuse(
                msg,
                target,
                "You are sending messages faster than I can answer; "
                f"try again in {_seconds(wait)} s.",
            )
            return None

        if _opens_thread(route, msg):
            opened = await self.within_budgets(
                target, lambda: target.open_thread(_thread_name(text))
            )
            if opened is not None:
                thread_id, target = opened
                key = conversation_key(route, msg, thread=thread_id)
                # The same record, moved: it keeps its id and its place in the order.
                record = replace(
                    record, key=key, address=target.address, heartbeat_at=time.time()
                )
                self._admitting[record.id] = record
                await self.store.inflight_begin(record)
            elif not msg.may_post:
                # Nowhere else to answer: the bot may not post in the channel itself.
                log.info("not answering in %s %s: no thread could be opened there",
                         msg.platform, msg.channel)
                return None
        return _Job(msg, target, route, key, record)

    def _rate_key(self, msg: Inbound, route: RouteConfig) -> str:
        """The counter a message counts against: the asker's on `route` when the route
        sets its own rate_limit, else the asker's across every route that does not."""
        # The person, wherever they ask: a Discord user's id is the same in every
        # server and in DMs, a Slack user's in every workspace of an organisation.
        user = f"{msg.platform}:{msg.user}"
        if route.rate_limit is None:
            return user
        index = next((i for i, r in enumerate(self.config.routes) if r is route), -1)
        return f"{user}|route {index}"

    async def _refuse(self, msg: Inbound, target: ReplyTarget, text: str) -> None:
        """Tell the asker why their message is not answered, unless the refusal is a
        message posted in a channel and they were told `REFUSALS_TOLD` times lately.

        A command's refusal is always said (it answers the command, privately, and
        unanswered the platform shows it failed), and so is one in a DM.
        """
        public = target.limits.notices_post and not msg.is_dm and not msg.command
        told, per = REFUSALS_TOLD
        key = f"refused {msg.platform}:{msg.user}"
        if public and self._users.check(key, told, per, time.monotonic()) is not None:
            log.info("refusal not told again to a %s user sending many: %s", msg.platform, text)
            return
        if public:
            # Posted in the channel, within the post budget its answers share: not
            # waited for, or the place's next messages (others') would wait behind it.
            # A place's refusals are posted in the order of their messages.
            place = (msg.platform, msg.workspace, msg.channel)
            after = self._refusals.get(place)
            self._refusals[place] = self._spawn(self._notice_apart(place, target, text, after))
            return
        await self._notice(target, text)

    async def _notice_apart(
        self, place: tuple[str, str, str], target: ReplyTarget, text: str,
        after: asyncio.Task[None] | None,
    ) -> None:
        try:
            if after is not None:
                await asyncio.wait([after])  # its outcome is its own
            await self._notice(target, text)
        except Exception as exc:  # a platform library's own error too: it is only a refusal
            log.warning("could not tell a refusal: %s", for_log(exc))
        finally:
            if self._refusals.get(place) is asyncio.current_task():
                del self._refusals[place]

    async def _notice(self, target: ReplyTarget, text: str) -> None:
        """Tell the asker something instead of answering, within the bot-wide budget
        and, where a notice is a message in the place, the place's post budget."""
        limits = target.limits
        place = [(limits.post_bucket, limits.post_rate)] if limits.notices_post else []
        await self.within_budgets(target, lambda: target.notice(text), place)

    async def within_budgets(
        self,
        target: ReplyTarget,
        request: Callable[[], Awaitable[T]],
        first: Sequence[tuple[str, Rate]] = (),
    ) -> T:
        """Make a request of the platform outside a reply within its bot-wide budget, if
        any, and the budgets in `first` before it (as a reply takes its own budget first)."""
        limits = target.limits
        wanted = list(first)
        if limits.global_bucket and limits.global_rate:
            wanted.append((limits.global_bucket, limits.global_rate))
        held: list[tuple[Budget, float]] = []
        try:
            for bucket, rate in wanted:
                budget = self.budgets.get(bucket, rate)
                # It comes before first words.
                held.append((budget, await budget.acquire((FIRST, time.monotonic()))))
            return await request()
        finally:
            for budget, stamp in held:
                budget.restamp(stamp)

    # ---------------------------------------------------------------- answering

    async def _run(self, job: _Job) -> None:
        try:
            if self.store.shared:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(INTAKE_WAIT):
                        await job.recorded.wait()
                await self._wait_turn(job)
                await self._take_lease(job)
            elif job.previous is not None:
                await asyncio.shield(job.previous)
            if job.reset:
                self._dequeue(job)
                await self.store.reset_conversation(job.key)
                await self._notice(job.target, self.config.commands.reset_reply)
                return
            await self._slots.acquire()
            self._dequeue(job)
            self._answering += 1
            held = True

            def free_slot() -> None:  # once: the answer read, its end still to show
                nonlocal held
                if held:
                    held = False
                    self._slots.release()

            try:
                await self._answer(job, free_slot)
            finally:
                free_slot()
                self._answering -= 1
        except asyncio.CancelledError:
            job.interrupted = True
            if job.reply is None and not job.reset:  # cut while it waited its turn
                self.metrics.answered.labels(
                    job.msg.platform, job.route.backend, "interrupted"
                ).inc()
                log.info("answered", extra={"conversation": job.key, "backend": job.route.backend,
                                            "outcome": "interrupted", "seconds": 0.0})
            if job.target.marks_own_interruption and not job.reset:
                # Nothing else can reach this reply later: marked now, briefly (the
                # process is going). Its record goes, marked or not: through the
                # address it keeps, a later mark would land in the channel.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(END_ON_STOP):
                        await asyncio.shield(self._mark_interrupted(job))
                job.interrupted = False
            elif job.reply is None and not job.reset:
                # Cut while it waited its turn: the platform clears what shows that
                # it was taken (a "thinking" reaction), briefly: the process is going.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(END_ON_STOP):
                        await asyncio.shield(job.target.end())
            raise
        except Exception as exc:  # before the answer began (a store lookup): say so
            if not job.reset:  # a reset asks no backend anything
                self.metrics.answered.labels(job.msg.platform, job.route.backend, "failed").inc()
            _log_failure(job.key, exc)
            with contextlib.suppress(Exception):
                await self._notice(job.target, _told(exc))
        finally:
            self._dequeue(job)  # if it never left the queue (a failure or a stop before)
            if not job.mine.done():
                job.mine.set_result(None)
            if self._chains.get(job.key) is job.mine:
                del self._chains[job.key]
            try:
                if not job.interrupted:
                    # Shielded: a stop arriving now must not leave a finished reply
                    # looking interrupted to the next process.
                    self.progress.forget(job.record.id)
                    await asyncio.shield(self._end_record(job.record.id))
            finally:
                try:
                    if job.leased:  # let go even if a stop came during the line above
                        await asyncio.shield(self._let_go(job.key))
                finally:
                    self._jobs.discard(job)

    async def _mark_interrupted(self, job: _Job) -> None:
        """Say on a reply cut by a stop that it was interrupted, as a later process would
        (see `Bridge._mark_interrupted`), through its own target."""
        target, reply = job.target, job.reply
        edit = None if reply is None else interrupted_edit(target, reply.text, reply.message_ids)
        if edit is not None:
            await target.edit(*edit)
        else:
            await target.notice(INTERRUPTED)

    def _dequeue(self, job: _Job) -> None:
        """The job leaves the queue (once)."""
        if job.queued:
            job.queued = False
            self._queued -= 1
            self.metrics.queue_depth.set(self._queued)

    async def _end_record(self, rec_id: str) -> None:
        """Remove a reply's in-flight record; if the store fails, the heartbeat will."""
        try:
            await self.store.inflight_end(rec_id)
        except BridgeError as exc:
            self.unended.add(rec_id)
            log.error("could not close the record of reply %s (will retry): %s", rec_id, exc)

    async def end_records(self) -> None:
        """Retry removing the records whose removal failed."""
        for rec_id in list(self.unended):
            await self.store.inflight_end(rec_id)
            self.unended.discard(rec_id)

    async def _wait_turn(self, job: _Job) -> None:
        """Wait while an earlier message of this conversation is answered, here or elsewhere.

        On a shared store the order is the records' (message time, then record
        id), the same on every replica, for this process's own jobs too: a
        second order (the order they arrived in here) could make two jobs wait
        for each other for ever.
        """
        pause = 0.05
        mine = (job.record.started_at, job.record.id)
        while True:
            stale = time.time() - 3 * self.heartbeat_interval
            ahead = {
                r.id for r in await self.store.inflight_for_key(job.key)
                if r.id != job.record.id and r.heartbeat_at >= stale
                and (r.started_at, r.id) < mine
            }
            if not ahead:
                return
            # A job of ours still answering (one that is done only has its
            # record left to remove: polling waits for that, with its pause).
            local = next(
                (j for j in self._jobs if j.record.id in ahead and not j.mine.done()), None
            )
            if local is not None:
                await asyncio.shield(local.mine)  # no polling for a job of our own
                pause = 0.05
                continue
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def _take_lease(self, job: _Job) -> None:
        """Hold the conversation's lease while answering: no other job, here or on
        another replica, answers it meanwhile, even one whose message was
        recorded too late for the order to show it."""
        pause = 0.05
        while True:
            held = self._leases.get(job.key)
            if held is not None:  # by a job of ours
                await asyncio.shield(held)
                continue
            # Renewed by the heartbeat (`leases`) while the answer runs.
            if await self.store.acquire_lease(job.key, self.owner, self.lease_ttl, time.time()):
                if job.key in self._leases:
                    continue  # another job of ours took it meanwhile
                self._leases[job.key] = asyncio.get_running_loop().create_future()
                job.leased = True
                return
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def _let_go(self, key: str) -> None:
        try:
            await self.store.release_lease(key, self.owner)
        except BridgeError as exc:  # it expires on its own
            log.warning("could not release the lease of %s: %s", key, exc)
        finally:
            # Released in the store first: a job of ours waiting for it takes it anew.
            held = self._leases.pop(key, None)
            if held is not None and not held.done():
                held.set_result(None)

    def leases(self) -> list[str]:
        """The conversations whose lease this process holds (for heartbeats)."""
        return list(self._leases)

    def records(self) -> list[tuple[InFlight, LiveReply | None]]:
        """Every reply this process owns, being admitted, queued or streaming (for
        heartbeats)."""
        jobs = [(job.record, job.reply) for job in self._jobs]
        return jobs + [(record, None) for record in self._admitting.values()]

    async def _answer(self, job: _Job, free_slot: Callable[[], None]) -> None:
        """Answer a job; `free_slot` gives its stream slot back once the chat API's
        stream has ended (the final edit may wait long for a busy platform's budget,
        which is no reason for questions elsewhere to wait)."""
        msg, route, key = job.msg, job.route, job.key
        backend = self.backends[route.backend]
        circuit = self.circuits[route.backend]
        if job.target.withdrawn():
            # Posted by mistake (a password, the wrong channel) and deleted while it
            # waited: it is not sent on, nor paid for.
            log.info("not answering: the question was deleted before its answer began",
                     extra={"conversation": key})
            with contextlib.suppress(Exception):
                await job.target.end()
            return
        if not circuit.allow():
            await self._notice(job.target, _unavailable(circuit))
            self.metrics.answered.labels(msg.platform, route.backend, "unavailable").inc()
            return
        now = time.time()
        history: tuple[Turn, ...] = ()
        try:
            known = await self.store.get_conversation(key)
            if known is not None and known.backend == route.backend:
                conv = known
            else:
                conv = Conversation(key, route.backend, None, now, now)
            fresh = conv is not known
            if conv.session is None and backend.stateful and backend.client_sessions:
                # A new conversation, or one a reset started afresh.
                conv.session = backend.new_session()
                fresh = True
            if fresh:
                await self.store.save_conversation(conv)
            if not backend.stateful:
                history = tuple(await self.store.history(key))
        except BaseException:
            circuit.release()  # nothing was asked of the backend
            raise
        request = ChatRequest(
            message=valid_text(msg.text).strip(),
            session=conv.session,
            history=history,
            user_id=_user_key(msg),
        )

        record = job.record

        async def progress(ids: Sequence[str], text: str) -> None:
            await self.progress.note(record.id, ids, text)

        reply = LiveReply(
            job.target,
            self.budgets,
            edit_interval=self.config.reply.edit_interval,
            thinking_text=self.config.reply.thinking_text,
            on_progress=progress,
        )
        job.reply = reply
        log.info("answering", extra={"conversation": key, "backend": route.backend})
        self.metrics.live_streams.inc()
        started = time.monotonic()
        outcome = "answered"
        try:
            await reply.start()

            async def keep_session(session: str) -> None:
                if session != conv.session:
                    conv.session = session
                    try:
                        await self.store.save_conversation(conv)
                    except BridgeError as exc:  # kept with the answer, if it completes
                        log.error("could not save conversation %s: %s", key, exc)

            try:
                done, sources = await self._consume(
                    backend.stream(request), reply, route.backend, started, keep_session
                )
            finally:
                free_slot()
            final = done.text if done is not None else None
            if final:
                final = valid_text(final)
            # Keep the session and history first: the answer is complete even if
            # the process stops during the final edit.
            try:
                await self._remember(conv, backend, request, final or reply.text, done)
            except BridgeError as exc:
                # The answer is whole: show it; only what follows it may lack context.
                log.error("could not save conversation %s: %s", key, exc)
            cfg = self.config.reply.sources
            circuit.success()
            await reply.finish(final, dedupe_sources(sources, cfg.max), show_sources=cfg.show)
        except RateLimited as exc:
            outcome = "failed"
            circuit.release()
            await self._fail(reply, exc.describe(), key)
        except ChatAPIError as exc:
            outcome = "failed"
            if isinstance(exc, Unavailable) and not isinstance(exc, CutOff):
                circuit.failure()  # not a drop mid-answer (Dropped): the backend did answer
            else:
                circuit.release()
            log.warning("backend %s failed: %s", route.backend, exc,
                        extra={"conversation": key, "backend": route.backend})
            await self._fail(reply, exc.user_message, key)
        except PlaceGone as exc:
            outcome = "failed"
            circuit.release()
            log.warning("answer stopped: %s", exc, extra={"conversation": key})
            with contextlib.suppress(Exception):
                await reply.abandon()
        except asyncio.CancelledError:
            outcome = "interrupted"
            circuit.release()
            # Stop its updates (a late one would undo the "interrupted" mark the stop
            # adds) and let the platform clear its indicators, briefly: the process
            # is going away.
            with contextlib.suppress(Exception):
                await reply.aclose()
                async with asyncio.timeout(END_ON_STOP):
                    await reply.target.end()
            raise
        except Exception as exc:  # the bridge's own failure: end the reply, say so
            outcome = "failed"
            circuit.release()
            _log_failure(key, exc)
            await self._fail(reply, _told(exc), key)
        finally:
            for name, value in backend.health().items():
                gauge = (self.metrics.backend_remaining if name == "ratelimit_remaining"
                         else self.metrics.backend_credits)
                gauge.labels(route.backend).set(value)
            self.metrics.live_streams.dec()
            self.metrics.edits.labels(msg.platform).inc(reply.stats.edits)
            self.metrics.stream_seconds.labels(route.backend).observe(time.monotonic() - started)
            self.metrics.answered.labels(msg.platform, route.backend, outcome).inc()
            log.info(
                "answered",
                extra={
                    "conversation": key, "backend": route.backend, "outcome": outcome,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

    async def _fail(self, reply: LiveReply, notice: str, key: str) -> None:
        """End a failed reply with `notice` after what it showed; where its message
        cannot take it, tell the asker apart (unless the place itself is gone)."""
        try:
            await reply.fail(notice)
        except PlaceGone as exc:
            log.warning("answer stopped: %s", exc, extra={"conversation": key})
        except Exception as exc:
            log.warning("could not show that the answer failed: %s", for_log(exc),
                        extra={"conversation": key})
            with contextlib.suppress(Exception):
                await self._notice(reply.target, notice)

    async def _consume(
        self,
        stream: AsyncGenerator[ChatEvent, None],
        reply: LiveReply,
        backend: str,
        started: float,
        keep_session: Callable[[str], Awaitable[None]],
    ) -> tuple[Done | None, list[Source]]:
        """Feed a chat API's events to the live reply; the Done event and the sources."""
        sources: list[Source] = []
        done: Done | None = None
        first_token = True
        tokens = TokenText()
        # The stream's next tokens gather in the network while the reply could
        # not show them anyway: its reads wait for the reply's edits.
        pace = _Pace(reply.pace)
        gate = READ_GATE.set(pace)
        try:
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    if reply.gone is not None:
                        raise reply.gone  # nobody can see the rest: stop asking for it
                    if isinstance(event, Token):
                        if first_token:
                            first_token = False
                            self.metrics.first_token.labels(backend).observe(
                                time.monotonic() - started
                            )
                        reply.feed(tokens.clean(event.text))
                    elif isinstance(event, Sources):
                        sources.extend(event.items)
                    elif isinstance(event, Status):
                        reply.set_status(event.text)
                    elif isinstance(event, Session):
                        await keep_session(event.session)
                    elif isinstance(event, Done):
                        done = event
            if tail := tokens.rest():
                reply.feed(tail)
        finally:
            READ_GATE.reset(gate)
            pace.close()
        return done, sources

    async def _remember(
        self, conv: Conversation, backend: ChatAPI, req: ChatRequest, answer: str, done: Done | None
    ) -> None:
        now = time.time()
        conv.last_used = now
        if done is not None and done.session:
            conv.session = done.session
        if done is not None and done.usage:
            conv.meta = {**conv.meta, **{k: v for k, v in done.usage.items() if _plain(v)}}
        await self.store.save_conversation(conv)
        if not backend.stateful and answer.strip():
            # An empty answer ("(no answer)") is no turn: kept, it would be sent
            # back with every later question, and some APIs refuse an empty one.
            keep = 2 * getattr(backend.options, "history", 20)
            await self.store.append_history(
                conv.key, [Turn("user", req.message), Turn("assistant", answer)], keep
            )

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

    async def drain(self, grace: float) -> int:
        """Stop taking messages; let live replies finish for `grace` seconds.

        Returns how many replies were still running and were cancelled (their
        in-flight records stay, to be marked interrupted).
        """
        self.accepting = False
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
                await asyncio.wait({*pending, hurry}, timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
                pending = {t for t in self._tasks if not t.done()}
        finally:
            hurry.cancel()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


def _log_failure(key: str, exc: Exception) -> None:
    """A conversation could not be answered: a bridge error in a line, anything else
    (a bug) with its traceback."""
    if isinstance(exc, BridgeError):
        log.error("could not answer %s: %s", key, exc)
    else:
        log.exception("could not answer %s", key, exc_info=exc)


def _told(exc: BaseException) -> str:
    """What the asker is told of a failure; a store's or a platform's details (a
    method, an error code) are for the admin's log."""
    for kind in (StoreError, PlaceGone, PlatformError):
        if isinstance(exc, kind):
            return kind.user_message
    return exc.user_message if isinstance(exc, BridgeError) else UNEXPECTED


def _user_key(msg: Inbound) -> str:
    """The asker, unique across platforms and workspaces."""
    return f"{msg.platform}:{msg.workspace}:{msg.user}"


def _unavailable(circuit: Circuit) -> str:
    wait = circuit.retry_in()
    if wait <= 0:  # a question is finding out whether the backend is back
        return "The assistant is unavailable right now; please try again shortly."
    return f"The assistant is unavailable right now; please try again in {_seconds(wait)} s."


def _seconds(wait: float) -> int:
    """A wait in whole seconds, rounded up: trying again when told is never too soon."""
    return max(1, math.ceil(wait))


def _opens_thread(route: RouteConfig, msg: Inbound) -> bool:
    """Whether the answer to `msg` goes in a thread opened on it."""
    return route.reply_in_thread and not msg.thread and not msg.is_dm and route.session == "thread"


def _thread_name(question: str) -> str:
    line = question.strip().splitlines()[0] if question.strip() else "Question"
    return line[:97] + "…" if len(line) > 100 else line


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None

