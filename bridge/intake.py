"""The intake: messages taken from the platforms, in arrival order per place (channel
and thread), routed, deduplicated by event id, checked (commands, length, the
backend's circuit, the queue, the asker's rate) and handed to the relay as jobs;
or refused, with a word to the asker. During a stop none is taken; a question from a
platform that will not deliver it again is told to ask again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from bridge.config import RouteConfig
from bridge.errors import BridgeError, StoreError, for_log, told, wait_words
from bridge.fairness import Shares, UserRateLimiter
from bridge.flag import Flag
from bridge.interfaces import STOPPING_TEXT, Inbound, ReplyTarget
from bridge.interruptions import stopped
from bridge.jobs import Job, question_limit, too_long, unavailable
from bridge.logs import Repeats
from bridge.refusals import Refusals
from bridge.routing import conversation_key, follows, match_route
from bridge.split import grapheme_start
from bridge.store import Conversation, InFlight, Store

if TYPE_CHECKING:
    from bridge.relay import Relay

log = logging.getLogger("chat_bridge.intake")

# Places remembered as told to have no route, or to be closed to the bot: bounded,
# whatever a daemon meets.
UNROUTED_PLACES = 1000
CLOSED_PLACES = 1000
HELP_TEXT = "Ask me a question in words, and I will answer here."
# Where the next message is not answered without a mention (no thread the bot follows).
MENTION_HELP = "Mention me with a question in words, and I will answer it."
# Ends the event record of a message that asked nothing (see `Intake._check`).
ASKED_NOTHING = "|asked nothing"
# Ends the event record of a question refused as too long, before its length.
TOO_LONG = "|too long "
THREAD_RESET = "Each thread here is its own conversation: start a new thread to start over."
CONVERSATION_BUSY = (
    "This conversation already has questions waiting for their answers; "
    "please ask again once they are answered."
)
BUSY = "I am busy right now; please try again shortly."
NO_BACKEND = "none"  # the backend label of a message that failed before it was routed
INTAKE_BATCH = 16  # messages of one place recorded before their answers look ahead
# Ends the id of a record whose reply only its own target reaches (a slash command's
# webhook, whose token the process had): a later process cannot mark it.
MARKED_HERE_ONLY = "-own"


def record_id(target: ReplyTarget) -> str:
    """A new in-flight record's id: it sorts by when the message arrived here, so two
    messages sent in the same millisecond are answered in the order they came."""
    own = MARKED_HERE_ONLY if target.marks_own_interruption else ""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}{own}"


async def order_of(msg: Inbound, store: Store) -> float:
    """Where a message stands in its conversation, the same on every replica: the
    platform's time of it, else (a Slack slash command has none) the store's time when
    it came. Not this replica's own clock: ahead of the platform's, a question sent
    after a reset would go before it (answered in the old session); behind, a reset
    would go before questions sent earlier. The store's is one clock for every replica
    (PostgreSQL's); only the time since it came is this replica's to say."""
    if msg.sent_at:
        return msg.sent_at
    now = time.time()
    return await store.now() - max(0.0, now - (msg.received_at or now))


class Intake:
    """Takes the platforms' messages for a relay and starts its jobs."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._places: dict[tuple[str, ...], deque[tuple[Inbound, ReplyTarget, Flag]]] = {}
        self._refusals = Refusals(relay)
        self._users = UserRateLimiter()
        self._shares = Shares()
        # Places where the bot was asked and no route serves, already said (in order).
        self._unrouted_places: dict[tuple[str, ...], None] = {}
        # Places a route serves where the bot may not answer, already said (in order).
        self._closed_places: dict[tuple[str, ...], None] = {}
        # Records written for messages still being admitted (a thread may take long to
        # open): beaten for as the jobs' are, or they would look like a dead replica's.
        self.admitting: dict[str, InFlight] = {}
        self._telling = True  # a question that comes during a stop is told (`closing`)
        # Questions the store failed to take, in a row: told in moderation while it is down.
        self._store_failing = Repeats()

    def closing(self) -> None:
        """The platforms are about to close: a question that comes from now on is told
        nothing (its notice would go to a platform closing)."""
        self._telling = False

    async def handle(self, msg: Inbound, target: ReplyTarget) -> Flag:
        """Take a message from a platform. Returns at once, with a flag set once the
        message is taken: its event claimed and its in-flight record written (a crash
        from then on leaves the record, marked interrupted at the next start), or it
        is not to be answered. The answer follows. During a stop, nothing is taken
        (see `_tell_stopping`)."""
        taken = Flag()
        if not self.relay.accepting:
            taken.set()
            if not target.redelivered and self._telling:
                self.relay.spawn(self._tell_stopping(msg, target))
            return taken
        self.relay.metrics.received.labels(msg.platform).inc()
        place = (msg.platform, msg.workspace, msg.channel, msg.thread or "")
        queue = self._places.get(place)
        if queue is not None:
            queue.append((msg, target, taken))
            return taken
        queue = self._places[place] = deque([(msg, target, taken)])
        # Whatever ends the intake (a stop may cancel it before it even starts), none
        # of its messages is left waited for.
        self.relay.spawn(self._intake(place)).add_done_callback(lambda _: _all_taken(queue))
        return taken

    async def _tell_stopping(self, msg: Inbound, target: ReplyTarget) -> None:
        """A message that came during a stop, from a platform that will not deliver it
        again: if it is a question (a route takes it, as `_admit` would), its asker is
        told to ask again, once its event is claimed. Claimed already, it is told
        nothing: on a shared store, a replica that has taken over answers it; a
        delivery again was told already. Other messages are left unsaid, as ever."""
        try:
            asks = bool(msg.text.strip()) or msg.mentioned or msg.is_dm
            if not asks:  # a picture or a sticker where the bot follows: as `_check`
                return
            route = await self._route(msg)
            if route is None or not msg.may_post:
                return  # nobody asked the bot, or it may not say so there
            if not await self._claim(msg, msg.event_id):
                return
            log.info(
                "a question came during the stop: its asker is told to ask again",
                extra={"platform": msg.platform, "channel": msg.channel},
            )
            await self._refusals.tell(msg, target, STOPPING_TEXT, "stopping")
        except Exception as exc:  # a platform library's own error too: it is only a notice
            log.warning(
                "could not tell a question asked during the stop to ask again: %s",
                for_log(exc),
                extra={"platform": msg.platform, "channel": msg.channel},
            )

    async def _route(self, msg: Inbound) -> RouteConfig | None:
        """The route that takes `msg` (a follow-up counts where its thread's
        conversation is in the store), or None."""
        store = self.relay.store

        async def exists(key: str) -> bool:
            return await store.get_conversation(key) is not None

        return await match_route(self.relay.config.routes, msg, exists)

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
                msg, target, flag = queue[0]
                try:
                    job = await self._admit(msg, target, batch, flag)
                except BridgeError as exc:
                    # A message a route took (see `_admit`), taken all the same
                    # (acknowledged to the platform): the asker is told, and a delivery
                    # again would most likely fail again.
                    flag.set()
                    self._failed(msg, exc)
                    self.relay.metrics.answered.labels(msg.platform, NO_BACKEND, "failed").inc()
                    if _addresses_bot(msg):
                        with contextlib.suppress(BridgeError):
                            await self.relay.notice(target, told(exc))
                except Exception:  # keep the intake alive whatever one message does
                    log.exception("could not take message %s", msg.event_id)
                    self.relay.metrics.answered.labels(msg.platform, NO_BACKEND, "failed").inc()
                else:
                    if job is not None:
                        taken += 1
                        if tries := self._store_failing.ended():  # recorded: the store is back
                            log.info(
                                "the store takes questions again, after %d it could not", tries
                            )
                flag.set()
                queue.popleft()
                if taken >= INTAKE_BATCH:
                    batch.set()
                    batch, taken = Flag(), 0
        finally:
            batch.set()
            del self._places[place]

    def _failed(self, msg: Inbound, exc: BridgeError) -> None:
        """Log a question that could not be taken: a store that is down, once, then at
        most once a minute (it fails every question alike until it is back)."""
        if not isinstance(exc, StoreError):
            log.error("could not take message %s: %s", msg.event_id, exc)
        elif (again := self._store_failing.failed()) is not None:
            log.error("could not take message %s%s: %s", msg.event_id, again, exc)
        else:
            log.debug("could not take message %s: %s", msg.event_id, exc)

    async def _admit(
        self, msg: Inbound, target: ReplyTarget, batch: Flag, taken: Flag
    ) -> Job | None:
        """Route a message and record it; its job, if it is to be answered, starts
        (on a shared store, once `batch` is set) and is returned. `taken` is set once
        it is recorded and its event claimed (see `handle`). A failure raised is of a
        message a route took, or one addressed to the bot."""
        relay = self.relay
        try:
            route = await self._route(msg)
        except BridgeError as exc:
            if _addresses_bot(msg):
                raise
            # A message in a thread, not addressed to the bot, that the store could not
            # say continues a conversation: most often chatter in a thread the bot is
            # not in, not a failed answer; but it may be a follow-up the bot would have
            # answered, so it is told as the questions are, in moderation.
            if (again := self._store_failing.failed()) is not None:
                log.error(
                    "could not tell whether message %s continues a conversation%s "
                    "(a follow-up goes unanswered): %s",
                    msg.event_id,
                    again,
                    for_log(exc),
                )
            else:
                log.debug(
                    "could not tell whether message %s continues a conversation: %s",
                    msg.event_id,
                    for_log(exc),
                )
            return None
        if route is None:
            if _addresses_bot(msg):
                self._unrouted(msg)
            else:
                log.debug("no route for %s message in %s", msg.platform, msg.channel)
            if msg.command:  # a command expects an answer, even a refusal
                await relay.notice(target, "I am not set up to answer here.")
            return None
        if not msg.may_post and not (msg.may_thread and _opens_thread(route, msg)):
            self._closed(msg, route)
            return None
        key = conversation_key(route, msg)
        now = time.time()
        # Recorded before the event is claimed, so a replica answering a later
        # message of this conversation sees this one waiting ahead of it.
        record = InFlight(
            id=record_id(target),
            key=key,
            address=target.address,
            owner=relay.owner,
            started_at=await order_of(msg, relay.store),
            heartbeat_at=now,
        )
        await relay.store.inflight_begin(record)
        self.admitting[record.id] = record
        job: Job | None = None
        cut = False
        answering = Flag()
        try:
            job = await self._check(msg, target, route, key, record, taken, answering)
        except asyncio.CancelledError:
            if answering.is_set():
                # A stop cut a question to be answered (its thread being opened, say),
                # its event claimed: a redelivery would be dropped. It ends as one cut
                # while it waited its turn: its record stays, to be marked interrupted,
                # unless only its target reaches the asker (then told now).
                waited = Job(msg, target, route, key, record)
                await stopped(waited, relay.metrics, relay.fence)
                cut = waited.interrupted
            raise
        finally:
            del self.admitting[record.id]
            if job is None and not cut:
                await relay.end_record(record.id)
        if job is not None:
            job.target.accepted()  # (a thread opened for it: there)
            relay.start(job, batch)
            if not job.reset and job.route.session == "thread":
                # The conversation is known from now, on every replica: a follow-up in
                # its thread while this waits its turn is taken (its session comes with
                # the answer). Only thread conversations are followed so. After the job
                # is counted: the queue check stays exact.
                now = time.time()
                conv = Conversation(job.key, job.route.backend, None, now, now)
                try:
                    await relay.store.create_conversation(conv)
                except BridgeError as exc:  # only a follow-up meanwhile depends on it
                    log.warning(
                        "could not record the conversation: %s",
                        exc,
                        extra={"conversation": job.key},
                    )
        return job

    async def _check(
        self,
        msg: Inbound,
        target: ReplyTarget,
        route: RouteConfig,
        key: str,
        record: InFlight,
        taken: Flag,
        answering: Flag,
    ) -> Job | None:
        """Deduplicate, validate and answer commands; a job when there is a question to
        answer. `taken` is set once the event is claimed: what follows (a refusal told,
        a thread opened) is not waited for by the platform's acknowledgement.
        `answering` is set once no refusal is left: it is a question to answer."""
        relay = self.relay
        text = msg.text.strip()
        reset = msg.command == "reset" or (
            msg.is_dm and text.lower() in {k.lower() for k in relay.config.commands.reset_keywords}
        )
        if not text and not reset:
            if _addresses_bot(msg):
                # A record of its own, not the message's: the message edited to hold its
                # question (Slack delivers the edit with the message's event id) is then
                # answered, and a second delivery of it is still told nothing. A question
                # answered already and edited down to the mention alone is told nothing.
                if not await relay.store.event_claimed(msg.event_id) and await self._claim(
                    msg, f"{msg.event_id}{ASKED_NOTHING}"
                ):
                    taken.set()
                    await self._ask_in_words(msg, target, route, key)
            # Else a picture or a sticker in a channel or thread the bot follows:
            # nobody asked the bot anything.
            return None
        limit = question_limit(relay, route)
        if not reset and len(text) > limit:
            # A record of its own, as for a message that asked nothing: the question
            # shortened by an edit (delivered with the message's event id) is then
            # answered, and a second delivery of this one is told nothing. The length
            # is in the record: an edit that is still too long is told again.
            if not await relay.store.event_claimed(msg.event_id) and await self._claim(
                msg, f"{msg.event_id}{TOO_LONG}{len(text)}"
            ):
                taken.set()
                await self._refusals.tell(msg, target, too_long(len(text), limit), "too_long")
            return None
        if not await self._claim(msg, msg.event_id):
            return None
        taken.set()
        if reset:
            if route.session == "thread" and not msg.thread and not msg.is_dm:
                # A command run in the channel belongs to no thread's conversation.
                await self._refusals.tell(msg, target, THREAD_RESET, "reset_outside_thread")
                return None
            # The asker's own conversation there too (private /ask answers), if any.
            own = conversation_key(route, replace(msg, audience="asker"))
            if own == key:
                return Job(msg, target, route, key, record, reset=True)
            # Recorded in that conversation's order too: a question asked there after
            # the reset waits for it, on every replica. Never marked interrupted: it
            # shows nothing (its id says so to the one recovering it).
            aside = replace(
                record,
                key=own,
                id=f"{record.id.removesuffix(MARKED_HERE_ONLY)}-also{MARKED_HERE_ONLY}",
            )
            await relay.store.inflight_begin(aside)
            return Job(msg, target, route, key, record, reset=True, also=own, aside=aside)
        # Refusals that ask the backend nothing come before the asker's rate limit,
        # so that they do not count against it.
        circuit = relay.circuits[route.backend]
        if circuit.refusing:
            # Counted as an answer's outcome, as one refused so after waiting its turn.
            await self._refusals.tell(msg, target, unavailable(circuit), None)
            relay.metrics.answered.labels(msg.platform, route.backend, "unavailable").inc()
            return None
        # One behind another of its conversation waits for it, not for a stream: it
        # counts against its conversation's queue, never against other conversations'.
        limits = relay.config.limits
        space = (msg.platform, msg.workspace)
        self._shares.asked(space, time.monotonic())
        places = limits.queue_size + limits.max_concurrent_streams
        if in_conversation := relay.taken(key):
            if in_conversation > limits.conversation_queue_size:
                await self._refusals.tell(msg, target, CONVERSATION_BUSY, "conversation_busy")
                return None
        elif relay.ahead >= places or relay.ahead_in(space) >= self._shares.room(space, places):
            await self._refusals.tell(msg, target, BUSY, "busy")
            return None
        rate = route.rate_limit or relay.config.limits.rate_limit
        wait = self._users.check(
            self._rate_key(msg, route), rate.messages, rate.per, time.monotonic()
        )
        if wait is not None:
            await self._refusals.tell(
                msg,
                target,
                "You are sending messages faster than I can answer; "
                f"try again in {wait_words(wait)}.",
                "rate_limited",
            )
            return None

        answering.set()
        if _opens_thread(route, msg):
            opened = await relay.within_budgets(
                target, lambda: target.open_thread(_thread_name(text))
            )
            if opened is not None:
                thread_id, target = opened
                key = conversation_key(route, msg, thread=thread_id)
                # The same record, moved: it keeps its id and its place in the order.
                record = replace(record, key=key, address=target.address, heartbeat_at=time.time())
                self.admitting[record.id] = record
                await relay.store.inflight_begin(record)
            elif not msg.may_post:
                # Nowhere else to answer: the bot may not post in the channel itself.
                log.info(
                    "not answering in %s %s: no thread could be opened there",
                    msg.platform,
                    msg.channel,
                )
                return None
        return Job(msg, target, route, key, record)

    def _unrouted(self, msg: Inbound) -> None:
        """Say, once per place, that the bot was asked where no route serves: a route
        that names a channel wrongly otherwise looks like a bot that ignores people."""
        if not _first_time(
            self._unrouted_places, (msg.platform, msg.workspace, msg.channel), UNROUTED_PLACES
        ):
            return
        log.info(
            "no route serves %s %s %s (workspace %s): the bot was asked there and does not "
            "answer; check the routes' platform, workspace, channels (ids), dm, users and "
            "roles",
            msg.platform,
            "DM" if msg.is_dm else "channel",
            msg.channel,
            msg.workspace,
            extra={"platform": msg.platform, "channel": msg.channel},
        )

    def _closed(self, msg: Inbound, route: RouteConfig) -> None:
        """Say, once per place, that a route takes messages where the bot may not answer
        (a permission taken away): the bot otherwise looks as if it ignores people."""
        place = (msg.platform, msg.workspace, msg.channel, msg.thread or "")
        if not _first_time(self._closed_places, place, CLOSED_PLACES):
            return
        where = f"thread {msg.thread} of channel" if msg.thread else "channel"
        lacks = f"lacks {msg.lacks}" if msg.lacks else "may not post"
        if _opens_thread(route, msg):  # and none may open
            why = f"the bot {lacks} there, and no thread of its own can open there"
        elif msg.may_thread and not msg.thread and not msg.is_dm:
            why = (
                f"the bot {lacks} there, and could answer only in a thread of its own "
                "(a route with reply_in_thread: true and session: thread)"
            )
        else:
            why = f"the bot {lacks} there"
        log.info(
            "not answering in %s %s %s (workspace %s): %s",
            msg.platform,
            where,
            msg.channel,
            msg.workspace,
            why,
            extra={"platform": msg.platform, "channel": msg.channel},
        )

    async def _claim(self, msg: Inbound, event_id: str) -> bool:
        """Record `event_id` as taken; False (and logged) if it was already."""
        if await self.relay.store.claim_event(event_id, time.time()):
            return True
        log.info("duplicate delivery of event %s dropped", msg.event_id)
        self.relay.metrics.duplicates.labels(msg.platform).inc()
        return False

    async def _ask_in_words(
        self, msg: Inbound, target: ReplyTarget, route: RouteConfig, key: str
    ) -> None:
        """Ask for the question in words, promising an answer to a message without a
        mention only where it will have one. Where the bot was mentioned in a thread
        it follows once it answers there, the thread's conversation is recorded now:
        the question then written in it without a mention is answered."""
        if msg.is_dm or msg.command or (route.trigger == "all" and msg.follow_ups):
            words = HELP_TEXT
        elif follows(route, msg) and await self._follow(key, route):
            words = HELP_TEXT
        else:
            words = MENTION_HELP
        await self._refusals.tell(msg, target, words, "empty")

    async def _follow(self, key: str, route: RouteConfig) -> bool:
        """Record the conversation `key` (unless it is known): its thread is followed."""
        now = time.time()
        try:
            await self.relay.store.create_conversation(
                Conversation(key, route.backend, None, now, now)
            )
        except BridgeError as exc:
            log.warning("could not record the conversation: %s", exc, extra={"conversation": key})
            return False
        return True

    def _rate_key(self, msg: Inbound, route: RouteConfig) -> str:
        """The counter a message counts against: the asker's on `route` when the route
        sets its own rate_limit, else the asker's across every route that does not."""
        # The person, wherever they ask: a Discord user's id is the same in every
        # server and in DMs, a Slack user's in every workspace of an organisation.
        user = f"{msg.platform}:{msg.user}"
        if route.rate_limit is None:
            return user
        index = next((i for i, r in enumerate(self.relay.config.routes) if r is route), -1)
        return f"{user}|route {index}"


def _addresses_bot(msg: Inbound) -> bool:
    """Whether `msg` is addressed to the bot (a mention, a DM, a command), whatever
    the routes say."""
    return bool(msg.mentioned or msg.is_dm or msg.command)


def _all_taken(queue: deque[tuple[Inbound, ReplyTarget, Flag]]) -> None:
    for *_, taken in queue:
        taken.set()


def _first_time(said: dict[tuple[str, ...], None], place: tuple[str, ...], most: int) -> bool:
    """Whether `place` is yet to be said of (it then is); `said` keeps the `most`
    places said last, in order."""
    if place in said:
        return False
    said[place] = None
    if len(said) > most:  # the oldest said is forgotten
        del said[next(iter(said))]
    return True


def _opens_thread(route: RouteConfig, msg: Inbound) -> bool:
    """Whether the answer to `msg` goes in a thread opened on it."""
    return route.reply_in_thread and not msg.thread and not msg.is_dm and route.session == "thread"


def _thread_name(question: str) -> str:
    line = question.strip().splitlines()[0] if question.strip() else "Question"
    # A cut at a grapheme's start: no half flag or emoji family before the "…".
    return line[: grapheme_start(line, 97, 1)] + "…" if len(line) > 100 else line
