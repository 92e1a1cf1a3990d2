"""One answer: a job whose turn came (bridge/relay.py) -> its backend asked, the answer
streamed into a live reply, then kept in the conversation's history; or, where it
fails, the reply ended with what went wrong and the backend's circuit told."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from bridge.conversations import open_conversation, remember, take_session
from bridge.deletions import asked, deleted_elsewhere
from bridge.errors import (
    BadRequest,
    BridgeError,
    ChatAPIError,
    CutOff,
    Forbidden,
    Misaddressed,
    OutOfTime,
    Overloaded,
    PlaceGone,
    RateLimited,
    SlowToBegin,
    Stalled,
    StoppedByAsker,
    TooLong,
    Unauthorized,
    Unavailable,
    Unfinished,
    for_log,
    told,
)
from bridge.interfaces import ChatRequest, Inbound
from bridge.interruptions import END_ON_STOP, complete
from bridge.jobs import Job, question_limit, too_long, unavailable
from bridge.reading import read_answer
from bridge.render import LiveReply
from bridge.sources import dedupe_sources
from bridge.text import valid_text

if TYPE_CHECKING:
    from bridge.relay import Relay

log = logging.getLogger("chat_bridge.relay")

# Under the answer to a question that came with files: they are not sent on.
FILES_NOT_READ = "_Attached files are not read: only your text was sent._"
# To a question edited on another replica as it waited: its text is not known here.
EDITED_ELSEWHERE = (
    "Your question was edited while it waited for its answer; please ask it again as it reads now."
)


async def answer(relay: Relay, job: Job, free_slot: Callable[[], None]) -> None:
    """Answer a job; `free_slot` gives its stream slot back once the chat API's
    stream has ended (the final edit may wait long for a busy platform's budget,
    which is no reason for questions elsewhere to wait)."""
    route, key = job.route, job.key
    backend = relay.backends[route.backend]
    circuit = relay.circuits[route.backend]
    if (msg := await _still_asked(relay, job)) is None:
        return
    for rec_id in relay.given_up.superseded(key):
        await relay.end_record(rec_id)
    if not circuit.allow():
        await relay.notice(job.target, unavailable(circuit))
        relay.metrics.answered.labels(msg.platform, route.backend, "unavailable").inc()
        return
    # The probe this question is, where `allow` gave it the slot (0: it is not): the
    # circuit tells its answer from those let through, which may fail as it streams.
    probe = circuit.probe
    release = partial(circuit.release, probe=probe)
    try:
        conv, history = await open_conversation(relay.store, key, route.backend, backend)
    except BaseException:
        release()  # nothing was asked of the backend
        raise
    request = ChatRequest(
        message=valid_text(msg.text).strip(),
        session=conv.session,
        history=history,
        user_id=_user_key(msg),
        history_turns=route.history,
    )

    record = job.record

    async def progress(ids: Sequence[str], text: str) -> None:
        await relay.progress.note(record.id, ids, text)

    reply = LiveReply(
        job.target,
        relay.budgets,
        edit_interval=relay.config.reply.edit_interval,
        thinking_text=relay.config.reply.thinking_text,
        on_progress=progress,
        on_failure=partial(relay.metrics.platform_failed, msg.platform),
        footnote=FILES_NOT_READ if msg.has_attachments else "",
        promise=job.promise,
        # On a shared store: not after a pause until the heartbeat says it is still its.
        gate=relay.fence.checked if relay.store.shared else None,
    )
    job.reply = reply
    if not relay.accepting:  # asked as a stop began (its turn came at once)
        reply.keep_back()
    log.info("answering", extra={"conversation": key, "backend": route.backend})
    relay.metrics.live_streams.inc()
    streaming = True
    started = time.monotonic()
    outcome = "answered"
    try:
        await reply.start()

        async def keep_session(session: str) -> None:
            if session != conv.session and take_session(conv, session, route.backend):
                try:
                    await relay.store.save_conversation(conv)
                except BridgeError as exc:  # kept with the answer, if it completes
                    log.error(
                        "could not save the conversation: %s", exc, extra={"conversation": key}
                    )

        try:

            def first_token() -> None:
                relay.metrics.first_token.labels(route.backend).observe(time.monotonic() - started)
                # A probe's answer that has begun lets every question through: else
                # every other asker is refused until its last word. It counts once
                # whole, as any answer does: one that then stalls opens the circuit
                # again at once. (One cut after its first words by a dropped
                # connection, or `total` as its text flowed, counts neither way.)
                circuit.began(probe=probe)

            cut = job.target.cut_at()
            try:
                async with asyncio.timeout_at(_loop_time(cut)) as reading:
                    done, sources = await read_answer(
                        backend.stream(request),
                        reply,
                        cap=relay.config.reply.max_answer_chars,
                        on_first_token=first_token,
                        keep_session=keep_session,
                    )
            except TimeoutError:
                if cut is None or not reading.expired():
                    raise
                raise OutOfTime(cut[1]) from None  # (its stream closed as the read ended)
        finally:
            free_slot()
            # Its stream is over (the platform may take a while yet to show it).
            streaming = False
            relay.metrics.live_streams.dec()
        # The chat API's time for an answer read to its end: not the wait for the
        # platform to show it, nor a failure's time (those are `answered`'s).
        relay.metrics.stream_seconds.labels(route.backend).observe(time.monotonic() - started)
        final = done.text if done is not None else None
        if final:
            final = valid_text(final)
            cap = relay.config.reply.max_answer_chars
            if cap is not None and len(final) > cap:
                raise TooLong(cap)  # the streamed text, within it, stays
        # Keep the session and history first: the answer is complete even if
        # the process stops during the final edit.
        try:
            await remember(
                relay.store,
                conv,
                backend,
                request,
                final or reply.text,
                done,
                msg,
                job.target,
                relay.edits,
            )
        except BridgeError as exc:
            # The answer is whole: show it; only what follows it may lack context.
            log.error("could not save the conversation: %s", exc, extra={"conversation": key})
        cfg = relay.config.reply.sources
        circuit.success()
        await reply.finish(final, dedupe_sources(sources, cfg.max), show_sources=cfg.show)
    except TooLong as exc:
        outcome = "too_long"
        circuit.success()  # the chat API answered; the bridge stopped it
        log.warning(
            "answer stopped: longer than %d characters",
            exc.limit,
            extra={"conversation": key, "backend": route.backend},
        )
        await _fail(relay, job, reply, exc.user_message)
    except OutOfTime as exc:
        # Not too long: its platform's time for it ran out (a Discord /ask's 15 minutes).
        outcome = "out_of_time"
        release()  # the chat API was still answering: no word on it either way
        log.warning(
            "answer stopped: still streaming when its platform would soon take no "
            "more of it; what came shows, with a note saying so",
            extra={"conversation": key, "backend": route.backend},
        )
        await _fail(relay, job, reply, exc.user_message)
    except RateLimited as exc:
        outcome = "failed"
        release()
        if exc.retry_at is not None:
            circuit.hold(exc.retry_at)
        await _fail(relay, job, reply, exc.describe())
    except ChatAPIError as exc:
        outcome = "failed"
        level = logging.WARNING
        if isinstance(exc, Unauthorized | Forbidden):
            # Not a failure to stop calling the backend for: the first question
            # answered shows the key mended. The circuit's ERROR names the setting.
            release()
            circuit.refused(_key_refused(route.backend, exc))
            level = logging.INFO
        elif isinstance(exc, Unavailable) and not isinstance(exc, CutOff | Unfinished | Overloaded):
            # Not an answer cut once it had begun, its connection dropped (Dropped)
            # or `total` passed as its text flowed (Unfinished: a long answer): the
            # backend did answer; nor the bridge out of open files (Overloaded):
            # the backend was not asked. One that stopped past `idle` (Stalled)
            # counts: a backend that hangs after its first words is not asked again
            # and again, each asker waiting `idle` for half an answer.
            if probe and circuit.probe == probe:  # still down: the circuit's line says so
                level = logging.INFO
            circuit.failure(
                exc.user_message if isinstance(exc, Misaddressed) else None,
                late=_late(exc),
                probe=probe,
            )
        else:
            release()
        log.log(
            level,
            "backend %s failed: %s",
            route.backend,
            exc,
            extra={"conversation": key, "backend": route.backend},
        )
        notice = exc.user_message
        if isinstance(exc, BadRequest) and exc.history_sent:
            notice = f"{notice} {_start_over(relay, job)}"
        await _fail(relay, job, reply, notice)
    except PlaceGone as exc:
        outcome = "stopped" if isinstance(exc, StoppedByAsker) else "failed"
        release()
        try:
            await _stopped(job, reply, exc)
        except asyncio.CancelledError:  # a stop as its mark waited: as one cuts an answer
            await _cut(reply)
            raise
        with contextlib.suppress(Exception):
            await reply.abandon()
    except asyncio.CancelledError:
        # An answer come whole, cut as it was being shown: its mark shows it whole.
        outcome = "interrupted" if reply.ending is None else "shown_late"
        release()
        await _cut(reply)
        raise
    except Exception as exc:  # the bridge's own failure: end the reply, say so
        outcome = "failed"
        release()
        if reply.gave_up and reply.ending is not None:
            # Not a failure to answer: the answer came whole, and only its platform
            # kept its end from showing (`_fail` says what becomes of it).
            log.warning(
                "could not show the end of an answer that came whole: %s",
                for_log(exc),
                extra={"conversation": key},
            )
        else:
            log_failure(key, exc)
        await _fail(relay, job, reply, told(exc))
        if job.unmarked and complete(reply.recorded):
            outcome = "shown_late"  # once its platform is back (`_fail`)
    finally:
        for name, value in backend.health().items():
            gauge = (
                relay.metrics.backend_remaining
                if name == "ratelimit_remaining"
                else relay.metrics.backend_credits
            )
            gauge.labels(route.backend).set(value)
        if streaming:  # ended before its stream began
            relay.metrics.live_streams.dec()
        relay.metrics.edits.labels(msg.platform).inc(reply.stats.edits)
        relay.metrics.reply_seconds.labels(msg.platform).observe(time.monotonic() - started)
        relay.metrics.answered.labels(msg.platform, route.backend, outcome).inc()
        log.info(
            "answered",
            extra={
                "conversation": key,
                "backend": route.backend,
                "outcome": outcome,
                "seconds": round(time.monotonic() - started, 3),
            },
        )


async def _still_asked(relay: Relay, job: Job) -> Inbound | None:
    """The question `job` asks as it reads now its turn has come; None where it is
    asked no more (its asker told, where there is something to tell)."""
    msg, route = job.msg, job.route
    withdrawn = job.target.withdrawn() or await deleted_elsewhere(relay.store, msg)
    # Edited as it waited (a password cut from it): asked as it reads now.
    edit = None if withdrawn else await relay.edits.latest(asked(msg))
    if edit is not None and edit.elsewhere:
        # Its last edit was told to another replica: what it asks now is not known here.
        log.info(
            "not answering: the question was edited on another replica as it waited",
            extra={"conversation": job.key},
        )
        relay.metrics.answered.labels(msg.platform, route.backend, "withdrawn").inc()
        await relay.notice(job.target, EDITED_ELSEWHERE)
        return None
    if withdrawn or (edit is not None and edit.text == ""):
        # Posted by mistake (a password, the wrong channel) and deleted (the deletion
        # perhaps told to another replica) or edited down to nothing while it waited,
        # or waited past the platform's time for an answer: it is not sent on, nor
        # paid for.
        log.info(
            "not answering: the question was %s before its answer began",
            "withdrawn" if withdrawn else "edited down to nothing",
            extra={"conversation": job.key},
        )
        relay.metrics.answered.labels(msg.platform, route.backend, "withdrawn").inc()
        with contextlib.suppress(Exception):
            await job.target.end()
        return None
    if edit is not None and edit.text is not None and edit.text != msg.text.strip():
        if len(edit.text) > (limit := question_limit(relay, route)):
            log.info(
                "not answering: the question was edited past the longest one asked",
                extra={"conversation": job.key},
            )
            await relay.notice(job.target, too_long(len(edit.text), limit))
            relay.metrics.refusal(msg.platform, "too_long", told=True)
            return None
        log.info(
            "asking the question as it was edited while it waited", extra={"conversation": job.key}
        )
        return replace(msg, text=edit.text)
    return msg


def _key_refused(backend: str, exc: Unauthorized | Forbidden) -> str:
    """What the admin is to mend where a backend refused its key (never the key)."""
    said = f" ({exc.detail})" if exc.detail else ""
    if isinstance(exc, Unauthorized):
        return (
            f"backend {backend}: the chat API refused its API key{said}; set "
            f"backends.{backend}.api_key to a key it takes (revoked or rotated?)"
        )
    return (
        f"backend {backend}: the chat API refused its API key for this chatbot{said}; "
        f"check that backends.{backend}.api_key may use this chatbot, and that the "
        "bridge's host is on the API's allowlist"
    )


def _start_over(relay: Relay, job: Job) -> str:
    """For a question refused with its conversation's history: how to start afresh."""
    msg, keywords = job.msg, relay.config.commands.reset_keywords
    command = relay.reset_commands.get(msg.platform)
    if job.route.session == "thread" and not msg.is_dm:
        how = "start a new thread"
    elif msg.is_dm and keywords:
        how = f"send `{keywords[0]}`"
    elif command:
        how = f"use `{command}`"
    else:
        return "This conversation may be longer than it takes."
    return f"This conversation may be longer than it takes: {how} to start over."


async def _fail(relay: Relay, job: Job, reply: LiveReply, notice: str) -> None:
    """End a failed reply with `notice` after what it showed; where its message
    cannot take it, tell the asker apart (unless the place itself is gone). Where
    the platform takes neither, the reply's record stays, for the bridge to mark it
    interrupted once the platform is back (`given_up`)."""
    key = job.key
    try:
        await reply.fail(notice)
    except PlaceGone as exc:
        await _stopped(job, reply, exc)
    except Exception as exc:
        log.warning(
            "could not show that the answer failed: %s", for_log(exc), extra={"conversation": key}
        )
        try:
            await relay.notice(reply.target, notice)
        except Exception as missed:
            if reply.gave_up:  # the platform kept failing: nothing shows the reply ended
                job.unmarked = True
                text = reply.recorded
                kept = relay.given_up.keep(
                    replace(job.record, message_ids=list(reply.message_ids), text=text)
                )
                # An answer that had come whole is shown whole by its mark (shown late).
                done, do = (
                    ("shown whole", "show it whole")
                    if complete(text)
                    else ("marked interrupted", "mark it interrupted")
                )
                log.warning(
                    "could not tell the asker either (%s): the reply stays recorded as "
                    "in flight, %s",
                    for_log(missed),
                    f"to be {done} once the platform is back"
                    if kept
                    else f"for the next start (or another replica) to {do} (too many "
                    "replies given up on wait for their platform already)",
                    extra={"conversation": key},
                )


async def _cut(reply: LiveReply) -> None:
    """A stop cuts the answer: its updates stop (a late one would undo the "interrupted"
    mark the stop adds) and the platform clears its indicators, briefly: the process
    is going away."""
    with contextlib.suppress(Exception):
        await reply.aclose()
        async with asyncio.timeout(END_ON_STOP):
            await reply.target.end()


async def _stopped(job: Job, reply: LiveReply, exc: PlaceGone) -> None:
    """The platform let the answer go no further where it shows (`PlaceGone`): what is
    left of it says it was cut short where a message of it can (`LiveReply.cut_short`),
    and one line says so, and what its asker sees, however the mark ends (a stop may
    cut it). An answer its asker stopped is as they left it: an INFO line."""
    marked = False
    try:
        with contextlib.suppress(Exception):  # a platform library's own error too
            marked = await reply.cut_short()
    finally:
        if isinstance(exc, StoppedByAsker):
            sees = "its asker stopped it"
        elif marked:
            sees = "what showed of it is marked as cut short"
        elif reply.message_ids:
            sees = "no mark could be put on what showed of it"
        else:
            sees = "nothing of it had shown"
        (log.info if isinstance(exc, StoppedByAsker) else log.warning)(
            "answer stopped: %s; %s",
            exc,
            sees,
            extra={
                "conversation": job.key,
                "platform": job.msg.platform,
                "channel": job.msg.channel,
            },
        )


def _late(exc: Exception) -> str | None:
    """The timeout of the backend's an answer ran past, where it did (for the circuit)."""
    if isinstance(exc, SlowToBegin):
        return "first_byte"
    return "idle" if isinstance(exc, Stalled) else None


def log_failure(key: str, exc: Exception) -> None:
    """A conversation could not be answered: a bridge error in a line, anything else
    (a bug) with its traceback."""
    if isinstance(exc, BridgeError):
        log.error("could not answer: %s", exc, extra={"conversation": key})
    else:
        log.exception("could not answer", exc_info=exc, extra={"conversation": key})


def _loop_time(cut: tuple[float, str] | None) -> float | None:
    """A target's `cut_at` time (epoch seconds) on the event loop's clock; None: never."""
    if cut is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.time() + max(0.0, cut[0] - time.time())


def _user_key(msg: Inbound) -> str:
    """The asker, unique across platforms and workspaces."""
    return f"{msg.platform}:{msg.workspace}:{msg.user}"
