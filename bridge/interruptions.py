"""Replies a stop or the fence cut short, or given up on: how they are marked interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Literal

from bridge.errors import for_log
from bridge.interfaces import Rate, ReplyTarget
from bridge.metrics import platform_failure
from bridge.split import close_fences, row_arriving

if TYPE_CHECKING:
    from bridge.fence import Fence
    from bridge.jobs import Job
    from bridge.metrics import Metrics
    from bridge.relay import Relay
    from bridge.store import InFlight, Store

log = logging.getLogger("chat_bridge.relay")

END_ON_STOP = 2.0  # seconds an interrupted reply's platform gets to clear its indicators
INTERRUPTED = "_⚠️ interrupted by a restart — please ask again_"
# The mark of a reply given up on (`GivenUp`): nothing restarted, its platform failed.
GIVEN_UP = "_⚠️ interrupted: the answer could not be shown in full — please ask again_"
# The marks of a reply whose answer was complete, its end not shown (each in place of
# the mark above of a reply cut so): the answer shows whole, with what ends it.
SHOWN_LATE = "_⚠️ shown late: the platform could not be reached when the answer was ready_"
SHOWN_LATE_RESTART = "_⚠️ shown late: a restart came as the answer was being shown_"
_LATE = {GIVEN_UP: SHOWN_LATE, INTERRUPTED: SHOWN_LATE_RESTART}
# In a reply's record, between a complete answer's text and what ends it (`record_text`):
# ASCII's "end of text", taken out of the text it joins. The record then says the
# answer was complete to whatever marks it, this process or the next.
_ENDED = "\x03"
# Replies given up on that a process keeps, to mark them interrupted once their
# platform is back; one given up on past that is left for the next start (or another
# replica), as a crashed process's would be.
GIVEN_UP_KEPT = 1000
# How a mark showed (`show_interrupted`): the answer whole under a "shown late" mark,
# or the reply marked as cut.
Marked = Literal["late", "cut"]


def record_text(text: str, ending: str | None) -> str:
    """A reply's text as its record keeps it: where its answer was complete (`ending`
    not None: what ends it, `LiveReply.ending`), with what ends it and word of that."""
    text = text.replace(_ENDED, "")
    if ending is None or not text.strip():
        return text
    return f"{text}{_ENDED}{ending.replace(_ENDED, '')}"


def complete(text: str) -> bool:
    """Whether a reply's record (`record_text`) says its answer was complete."""
    return _ENDED in text


def interrupted_edit(
    target: ReplyTarget, text: str, message_ids: Sequence[str], mark: str = INTERRUPTED
) -> tuple[str, str] | None:
    """How a reply cut short is marked in place: its last message and the text that
    message gets (what the reply showed, then `mark`). None where it has no message
    yet, or that would not fit one: the mark then goes on its own.

    A reply whose record says its answer was complete (`record_text`) shows it whole as
    it would have ended, its sources too (or without them, where they do not fit),
    then a mark saying it showed late; where even its text does not fit, it is marked
    as one cut, its end never shown."""
    if not message_ids:
        return None
    text, whole, ending = text.partition(_ENDED)
    if not whole and (row := row_arriving(text, cut=True)) < len(text):
        text = text[:row].rstrip("\r\n")  # cut: half a row would show as raw Markdown
    # A code block left open would hold the mark: shown as code, it reads as the
    # answer's (Discord's formatting leaves a fence as it is; Slack's closes it).
    body = target.format_markdown(close_fences(text)) if text else ""
    if whole:  # as it ends once shown: one blank line under it
        body, mark = body.rstrip(), _LATE.get(mark, mark)
    tries = [[body, ending, mark], [body, mark]] if whole else [[body, mark]]
    for parts in tries:
        note = "\n\n".join(part for part in parts if part)
        if len(note) <= target.limits.max_chars:
            return message_ids[-1], note
    return None


async def show_interrupted(
    relay: Relay,
    target: ReplyTarget,
    rec: InFlight,
    mark: str = INTERRUPTED,
    *,
    kept: bool = False,
    wanted: Callable[[], bool] = lambda: True,
) -> Marked | None:
    """Say on a reply left in flight (by a process that ended, or given up on) that
    it was interrupted (`mark`), keeping its text, within the platform's budgets (with
    `kept`, a stop's mark: it may take the slots the stop kept back); raises where the
    platform fails. Returns how it showed: "late" where its answer, complete, showed
    whole (`interrupted_edit`), else "cut"; None where it was no longer `wanted` once
    the budget let it go."""
    edit = interrupted_edit(target, rec.text, rec.message_ids, mark)
    # Within the platform's limits, as every reply is: live replies may
    # just have used the budget up.
    limits = target.limits
    steps: list[tuple[Callable[[], Awaitable[object]], str, Rate]] = []
    if edit is not None:
        steps.append((partial(target.edit, *edit), limits.edit_bucket, limits.edit_rate))
    else:
        if rec.message_ids and limits.settle_bucket and limits.settle_rate:
            # Its last message may still show as being written (a Slack stream).
            steps.append(
                (
                    partial(target.settle, rec.message_ids[-1]),
                    limits.settle_bucket,
                    limits.settle_rate,
                )
            )
        steps.append((partial(target.post, mark), limits.post_bucket, limits.post_rate))
    for request, bucket, rate in steps:
        if not await relay.within_budgets(
            target, partial(_if_wanted, wanted, request), [(bucket, rate)], kept=kept
        ):
            return None
    return "late" if edit is not None and complete(rec.text) and mark in _LATE else "cut"


async def _if_wanted(wanted: Callable[[], bool], request: Callable[[], Awaitable[object]]) -> bool:
    # Asked as the request's turn comes: the wait for the budget may be long.
    if not wanted():
        return False
    await request()
    return True


async def still_ours(store: Store, owner: str, rec: InFlight) -> bool:
    """Whether a reply's record is still `owner`'s: on a shared store, another replica
    may have taken it over (to mark it) while this one's heartbeats failed."""
    return not store.shared or any(
        r.id == rec.id and r.owner == owner for r in await store.inflight_for_key(rec.key)
    )


def never_markable(exc: BaseException) -> bool:
    """Whether a mark that failed with `exc` never can show: its message or place is
    gone, the bot removed, or the platform refuses it (not out of reach, nor failing)."""
    return platform_failure(exc) in ("gone", "refused")


class GivenUp:
    """The replies this process gave up on, their platform failing so long that nothing
    showed they ended (`bridge.answering._fail`): each as its record, with the text and
    messages the reply had. Their records stay in flight, beaten for by the heartbeat, until
    the bridge marks them interrupted (`Recovery.mark_given_up`), in the order they
    were given up, or they are dropped: never to be marked (`failed`), superseded by
    their conversation's next answer (`superseded`), left to the other replicas
    (`leave`). A reply a dead process left, whose mark failed at start-up as its
    platform was out of reach, is kept with them (marked as a restart's)."""

    def __init__(self, most: int = GIVEN_UP_KEPT) -> None:
        self.most = most
        self.records: dict[str, InFlight] = {}
        self.marks: dict[str, str] = {}  # each record's mark
        # How marks failed lately on each platform (`platform_failure`'s kind): warned
        # of once, until it fails otherwise or takes a mark.
        self._failing: dict[str, str] = {}

    def __contains__(self, rec_id: object) -> bool:
        return rec_id in self.records

    def keep(self, rec: InFlight, mark: str = GIVEN_UP) -> bool:
        """Keep a reply given up on, to be marked with `mark`; False where `most` are
        kept already."""
        if len(self.records) >= self.most:
            return False
        self.records[rec.id] = rec
        self.marks[rec.id] = mark
        return True

    def failed(self, rec: InFlight, exc: BaseException, what: str = "a reply given up on") -> bool:
        """The mark of `what` failed with `exc`: True where its platform is out of reach
        or failing (its other replies wait for the next pass); False where this reply
        can never be marked (its message or place is gone, the bot removed, the
        platform refuses it), to be forgotten."""
        platform, kind = rec.address.platform, platform_failure(exc)
        extra = {"platform": platform, "channel": rec.address.channel}
        if never_markable(exc):
            log.warning(
                "could not mark %s as interrupted: %s; it never will be, and is forgotten",
                what,
                for_log(exc),
                extra=extra,
            )
            return False
        if self._failing.get(platform) != kind:
            self._failing[platform] = kind
            log.warning(
                "could not mark %s as interrupted: %s; its platform's are tried "
                "again at every heartbeat until it takes them",
                what,
                for_log(exc),
                extra=extra,
            )
        return True

    def shown(self, platform: str) -> None:
        """A mark showed on `platform`: a failure there is warned of anew."""
        self._failing.pop(platform, None)

    def forget(self, rec_id: str) -> None:
        """Done with it: marked, or never to be."""
        self.records.pop(rec_id, None)
        self.marks.pop(rec_id, None)

    def superseded(self, key: str) -> list[str]:
        """Conversation `key` begins its next answer: the replies given up on there that
        showed nothing are forgotten, their records to end. Their mark, a message of its
        own, would come below that answer, which takes their place. (One that showed
        text is marked in its own message, above that answer, where it reads right.)"""
        gone = [rec.id for rec in self.records.values() if rec.key == key and not rec.message_ids]
        for rec_id in gone:
            self.forget(rec_id)
        if gone:
            log.info(
                "not marking %d replies given up on that showed nothing: the "
                "conversation's next answer supersedes them",
                len(gone),
                extra={"conversation": key},
            )
        return gone

    def leave(self) -> None:
        """This replica is fenced off the shared store (bridge/fence.py): another replica
        takes the records over and marks them (or the next start does), and this one
        must not as well."""
        if self.records:
            log.warning(
                "%d replies given up on are left for another replica (or the next "
                "start) to mark interrupted",
                len(self.records),
            )
        self.records.clear()
        self.marks.clear()
        self._failing.clear()


async def stopped(job: Job, metrics: Metrics, fence: Fence) -> None:
    """A job a stop (or the fence) cut, answering or waiting its turn: its reply is
    marked interrupted now where only this process can reach it, else its record
    stays for that (marked by the stop, another replica or the next start)."""
    job.interrupted = True
    if job.reply is None and not job.reset:  # cut while it waited its turn
        metrics.answered.labels(job.msg.platform, job.route.backend, "interrupted").inc()
        log.info(
            "answered",
            extra={
                "conversation": job.key,
                "backend": job.route.backend,
                "outcome": "interrupted",
                "seconds": 0.0,
            },
        )
    if job.target.marks_own_interruption and not job.reset:
        # Nothing else can reach this reply later: marked now, briefly (the
        # process is going). Its record goes, marked or not: through the
        # address it keeps, a later mark would land in the channel.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(END_ON_STOP):
                await asyncio.shield(mark_interrupted(job))
        job.interrupted = False
    elif job.reply is None and not job.reset:
        # Cut while it waited its turn: the platform clears what shows that
        # it was taken (a "thinking" reaction), briefly: the process is going.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(END_ON_STOP):
                await asyncio.shield(job.target.end())
    if job.fenced and not (job.reset or job.target.marks_own_interruption):
        await _mark_cut(job, metrics, fence)


async def mark_interrupted(job: Job) -> None:
    """Say on a reply cut by a stop that it was interrupted, as a later process would
    (see `Recovery.mark_interrupted`), through its own target."""
    target, reply = job.target, job.reply
    edit = None if reply is None else interrupted_edit(target, reply.recorded, reply.message_ids)
    if edit is not None:
        await target.edit(*edit)
    else:
        if reply is not None and reply.message_ids and target.limits.settle_bucket:
            await target.settle(reply.message_ids[-1])
        await target.notice(INTERRUPTED)


async def _mark_cut(job: Job, metrics: Metrics, fence: Fence) -> None:
    """Mark a reply the fence cut, before the other replicas may take it over (their
    mark then comes after it). Its record goes once the store answers (the heartbeat
    removes it); one not marked in time stays, for them to mark. One taken over
    (`Relay.lost`) is marked again whenever it can: its edits may have undone the
    other replica's mark."""
    left = END_ON_STOP if job.taken_over else fence.takeover_at - time.monotonic()
    try:
        async with asyncio.timeout(max(0.0, min(END_ON_STOP, left))):
            await mark_interrupted(job)
    except Exception as exc:  # a platform library's own error too
        if not isinstance(exc, TimeoutError):  # not in time: no request failed
            metrics.platform_failed(job.msg.platform, exc)
        log.warning(
            "could not mark a reply cut off as interrupted (%s): %s",
            for_log(exc),
            "it may show no mark" if job.taken_over else "another replica will",
            extra={"conversation": job.key},
        )
    else:
        job.interrupted = False
