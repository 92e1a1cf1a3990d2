"""The live reply: shows an answer growing in place, within the platform's budgets.

Tokens are appended to a buffer; one flusher task per reply turns the buffer
into messages. Edits are coalesced (each edit shows everything received so
far), spaced by `edit_interval` per reply, and drawn from budgets shared by
every live reply in the same bucket. Text past the platform's limit continues
in follow-up messages; a message that is no longer the last one is frozen and
never edited again, nor by the final pass where the final text goes on from the
one streamed (the rest of it is split after the frozen messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bridge.budget import Budgets
from bridge.errors import PlaceGone, PlatformError, PlatformRefused, StoppedByAsker, for_log
from bridge.flag import Flag
from bridge.interfaces import THINKING_TEXT, ReplyTarget, Source
from bridge.interruptions import record_text
from bridge.reply_budget import Held, Op, Promise, ReplyBudget, release, restamp
from bridge.reply_text import as_text, settled, shows, with_note
from bridge.sources import source_blocks
from bridge.split import row_arriving, split_pieces

log = logging.getLogger("chat_bridge.render")

# The final text must land. Where the platform refused it (`PlatformRefused`), it is
# tried again this many times (0.5 + 1 + 2 + 4 + 8 s); where the platform could not be
# reached or failed on its side, for FINAL_PATIENCE seconds, at most FINAL_BACKOFF
# apart: an outage of a few minutes costs no answer. A stop cuts the wait short.
FINAL_RETRIES = 5
FINAL_PATIENCE = 300.0
FINAL_BACKOFF = 30.0
# A progress edit the platform refused is tried again after 1, 2, 4, ... intervals, at
# most this many seconds: a reply it keeps refusing does not spend the budget its
# place shares with others (nor write a warning a try).
REFUSED_BACKOFF = 60.0
# How long an edit waits for a held reader to bring the text that arrived meanwhile.
READ_AHEAD = 0.05
# A held reader reads again after this many edit intervals even with no edit made.
HOLD_AT_MOST = 4

# The note under what is left of a reply whose platform let it go no further past its
# first message (`LiveReply.cut_short`).
CUT_SHORT = (
    "Cut short: the rest of this answer could not be shown (its next message was "
    "deleted, or the bot may no longer post here) — please ask again."
)

# Told of the reply's messages and its text as its record keeps it (`LiveReply.recorded`).
ProgressHook = Callable[[Sequence[str], str], Awaitable[None]]
# Told of each request of the platform that failed (for metrics).
FailureHook = Callable[[Exception], None]


@dataclass
class RenderStats:
    """What a reply did, for metrics and benchmarks."""

    edits: int = 0
    first_visible_at: float | None = None


class LiveReply:
    """One reply being streamed to one target."""

    # Slots, not a dict per reply: a thousand replies may be live at once.
    __slots__ = (
        "_budget",
        "_caught_up",
        "_closed",
        "_closing",
        "_dirty",
        "_failures",
        "_final_failed",
        "_final_pieces",
        "_final_since",
        "_flusher",
        "_frozen",
        "_frozen_end",
        "_gate",
        "_gone_at",
        "_has_text",
        "_last_edit",
        "_may_read",
        "_on_failure",
        "_on_progress",
        "_parked",
        "_pending_since",
        "_reopen",
        "_retries",
        "_shown",
        "_status",
        "_tail_of",
        "_version",
        "edit_interval",
        "ending",
        "footnote",
        "gave_up",
        "gone",
        "limits",
        "message_ids",
        "stats",
        "target",
        "text",
        "thinking_text",
    )

    def __init__(
        self,
        target: ReplyTarget,
        budgets: Budgets,
        *,
        edit_interval: float = 1.0,
        thinking_text: str = THINKING_TEXT,
        on_progress: ProgressHook | None = None,
        on_failure: FailureHook | None = None,
        footnote: str = "",
        promise: Promise | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.target = target
        # Passed just before each request of the platform (`bridge.fence.Fence.checked`).
        self._gate = gate
        # Markdown the reply ends with, under the answer and its sources (or under a
        # failure's notice where some answer shows): a word about the question itself.
        self.footnote = footnote
        self.limits = target.limits
        # `promise`: a slot of the place's post budget its first words are promised.
        self._budget = ReplyBudget(budgets, self.limits, promise)
        self.edit_interval = edit_interval
        self.thinking_text = thinking_text
        self._on_progress = on_progress
        self._on_failure = on_failure

        self.text = ""
        self._status: str | None = None
        self._final_pieces: list[str] = []
        self._final_failed = False  # the final update gave up
        # The end of the reply (its final text, or a failure's notice) could not be
        # shown: the platform kept failing. Nothing on screen says it ended.
        self.gave_up = False
        # Once the answer is complete: what shows under its text as the reply ends (its
        # sources, its footnote, in the platform's markup; "" where nothing does). A mark
        # saying the reply was cut keeps it (`recorded`).
        self.ending: str | None = None
        self._final_since: float | None = None  # when a final update first failed
        self.gone: PlaceGone | None = None  # the platform says the reply's place is gone
        self._gone_at = 0  # the message it said so of (one past the last: a new one)
        self._dirty = Flag()
        self._has_text = Flag()
        self._closed = Flag()
        # The reader of the answer's stream runs while this is set; it is held
        # while the next edit waits (for its interval or its budget).
        self._may_read = Flag()
        self._may_read.set()
        self._parked = False  # the reader waits in pace()
        self._caught_up = Flag()  # the reader fed what it read after being let go
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None

        self.message_ids: list[str] = []
        self._shown: list[str] = []  # what each message shows now
        self._frozen: list[str] = []  # complete messages (all but the live last one)
        self._frozen_end = 0  # source offset just past the frozen messages
        self._reopen = ""  # fence to reopen at the start of the next message
        self._version = 0  # counts changes of self.text
        self._tail_of: tuple[int, str] = (-1, "")  # (version of the text, its live last piece)
        self._last_edit = float("-inf")
        self._pending_since: float | None = None
        self.stats = RenderStats()
        self._retries = 0
        self._failures = 0  # progress updates refused in a row

    # ------------------------------------------------------------------ feeding

    async def start(self) -> None:
        """Start the flusher; it shows activity first (a placeholder, typing).

        Returns at once: the question goes to the chat API while the
        platform's first request waits for its budget.
        """
        self._flusher = asyncio.create_task(self._run(), name="live-reply")

    async def _begin(self) -> None:
        slots = await self._budget.for_begin(self.limits.begin_posts, self._has_text)
        if slots is None:
            return  # a busy budget and the answer came first: show it instead
        # Text that came while the placeholder waited for its post (a burst in the
        # place) is posted in its stead, in its turn: shown under a placeholder, it
        # would wait for an edit too, from a budget the same burst spends.
        first = self._first_pieces()
        snapshot, snapped_at = len(self.text), time.monotonic()
        try:
            if self._gate is not None:
                await self._gate()
            message_id = await self.target.begin(first[0] if first else None)
        except Exception as exc:  # the platform's failure, whatever its kind
            self._failed(exc)
            what = "reply update failed" if first else "could not show that an answer is coming"
            if isinstance(exc, PlaceGone):
                # The answer stops: whoever ends it says so, once (`bridge.answering`).
                log.debug("%s: %s", what, for_log(exc))
                self.gone = exc
            else:
                log.warning("%s: %s", what, for_log(exc))
            return
        finally:
            restamp(slots)
        if message_id is None:
            return
        self.message_ids.append(message_id)
        self._shown.append(first[0] if first else self.thinking_text)
        if first:
            self._sent(snapped_at, snapshot)
            if len(first) == 1:  # else the rest has waited since it came, and goes next
                self._caught_up_to(snapshot, snapped_at)
        # Recorded at once: after a crash before the first words, the next
        # process marks this message interrupted, not a new one.
        await self._progress()

    def _first_pieces(self) -> list[str]:
        """What the post showing that an answer is coming shows instead of a placeholder:
        the reply's pieces where it has text already (none: the placeholder)."""
        if not (self.limits.begin_posts and self._has_text.is_set()):
            return []
        return self._final_view() if self._closing else self._progress_pieces()

    def feed(self, text: str) -> None:
        """Append answer text."""
        if not text:
            return
        self.text += text
        self._version += 1
        self._has_text.set()
        self._mark()

    def set_status(self, status: str | None) -> None:
        """Show a progress status while there is no text yet."""
        self._status = status
        if not shows(self.text):
            self._mark()

    def _mark(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._dirty.set()

    async def pace(self) -> None:
        """The answer's reader is about to read the network again: wait while that is early.

        Called before each network read of the answer's stream after the
        first (through `bridge.interfaces.READ_GATE`). Text arriving while the
        next edit waits for its interval or its budget would wait with it, so
        the reader is held until that edit is about to be made, and then
        takes everything that arrived at once: one network read per edit
        instead of one per token. The first text waits for its edit too, so a
        busy process shows answers before it reads further into them.
        """
        if self._closing or self.gone is not None:
            return
        self._caught_up.set()
        if self._may_read.is_set():
            return
        self._parked = True
        try:
            # Bounded, so a flusher that stopped cannot stop the reading.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOLD_AT_MOST * self.edit_interval):
                    await self._may_read.wait()
        finally:
            self._parked = False

    async def _let_reader_catch_up(self) -> None:
        """Before an edit: let a held reader take what arrived, briefly."""
        if self._may_read.is_set():
            return
        parked = self._parked
        self._caught_up.clear()
        self._may_read.set()
        if parked:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READ_AHEAD):
                    await self._caught_up.wait()

    async def finish(
        self, final_text: str | None, sources: Sequence[Source] = (), show_sources: bool = True
    ) -> None:
        """The answer is complete: show the authoritative text and the sources."""
        text = final_text if final_text is not None and final_text.strip() else self.text
        if not text.startswith(self.text[: self._frozen_end]):
            # Another text than the one streamed: its messages are split from its start.
            self._frozen, self._frozen_end, self._reopen = [], 0, ""
        self.text = text
        self._version += 1
        blocks = (
            source_blocks(sources, self.target.format_sources, self.limits.max_chars)
            if (sources and show_sources)
            else [""]
        )
        under = [block for block in blocks if block]
        if self.footnote:
            under.append(self._fmt(self.footnote))
        self.ending = "\n\n".join(under)
        # Recorded now, not once the platform takes it: whatever marks this reply if
        # its end never shows (a stop, the next start) shows the answer whole.
        await self._progress()
        await self._close(
            text, blocks[0], empty_note="_(no answer)_", more=blocks[1:], footnote=True
        )

    async def fail(self, notice: str) -> None:
        """Keep what was shown and add a short notice of what happened."""
        note = self.target.format_markdown(f"_⚠️ {as_text(notice)}_")
        # A table's row still arriving, held back while it streamed, is left out: cut,
        # half of it would show as raw Markdown under the table.
        text = self.text[: row_arriving(self.text, self._frozen_end, cut=True)]
        # The footnote is about the answer: where none shows, the notice alone.
        await self._close(text, note, empty_note="", footnote=shows(text))

    async def _close(
        self,
        text: str,
        tail: str,
        empty_note: str,
        more: Sequence[str] = (),
        footnote: bool = False,
    ) -> None:
        """Show `text`, then `tail` under it; where `text` shows nothing once formatted
        (blank, or an empty heading on Slack), `empty_note` instead when there is one.
        With `footnote`, the reply's footnote (if it has one) ends it."""
        pieces = self._answer_pieces(text) if shows(text) else []
        if not pieces:
            pieces = [empty_note or tail]
            tail = "" if not empty_note else tail
        self._under(pieces, tail)
        pieces.extend(more)  # sources that did not fit in one message
        if footnote and self.footnote:
            self._under(pieces, self._fmt(self.footnote))
        self._final_pieces = pieces
        self._final_failed = False
        self._closing = True
        self._budget.closing()
        self._has_text.set()  # the answer is here: no typing slot to wait for
        self._closed.set()
        self._dirty.set()
        try:
            await self._flusher_ended()
            if (
                not self._final_failed
                and self.gone is None
                and self._first_change(self._final_view(), 0) is not None
            ):
                # No flusher, or it stopped before showing these pieces: show them here.
                await self._sync(self._final_view, final=True)
        finally:
            await self.target.end()
        if self.gone is not None:
            raise self.gone
        if self._final_failed:
            self.gave_up = True
            raise PlatformError(
                "The reply could not be completed: the platform kept refusing it, "
                "or could not be reached."
            )

    def _answer_pieces(self, text: str) -> list[str]:
        """The messages of `text`: those completed while it streamed as they are, then
        its rest split after them, as it was while streaming.

        A split of the whole text from its start could cut it elsewhere (a message's
        window holds more text at the end than while it filled up), and move text
        between messages a reader has read, an edit of the platform's budget each
        (Slack's escapes and table padding make a message longer than its source).
        """
        rest = split_pieces(
            text, self.limits.max_chars, self._fmt, start=self._frozen_end, prefix=self._reopen
        )
        return [*self._frozen, *(piece.text for piece in rest)]

    def _under(self, pieces: list[str], tail: str) -> None:
        """Put `tail` under the last of `pieces`, after a blank line, or in a message of
        its own where the last has no room for it."""
        if not tail:
            return
        body = pieces[-1].rstrip()  # an answer ending in a line break: one blank line
        if len(body) + 2 + len(tail) <= self.limits.max_chars:
            pieces[-1] = f"{body}\n\n{tail}"
        else:
            pieces.append(tail[: self.limits.max_chars])

    async def _flusher_ended(self) -> None:
        """Wait for the flusher to end; a failure of its own is logged, not raised."""
        flusher = self._flusher
        if flusher is None or flusher.cancelled():
            return
        try:
            await flusher
        except Exception as exc:
            log.warning("reply updates stopped: %s", for_log(exc))

    def _final_view(self) -> list[str]:
        """The final pieces, and for each message they no longer need (the final text
        came out shorter, or a post landed as the reply closed) a note saying so."""
        pieces = list(self._final_pieces)
        while len(pieces) < len(self.message_ids):
            pieces.append(self._fmt("_(continued above)_"))
        return pieces

    def _fmt(self, markdown: str) -> str:
        return self.target.format_markdown(markdown)

    # ------------------------------------------------------------------ flushing

    async def _run(self) -> None:
        try:
            await self._begin()
            while self.gone is None:
                await self._dirty.wait()
                self._dirty.clear()
                if not self._closing:
                    if self.text and not self._failures:
                        # Hold the reader until this edit (not while the platform
                        # refuses them: the next try may be a minute away).
                        self._may_read.clear()
                    wait = self._last_edit + self.edit_interval - time.monotonic()
                    if wait > 0:
                        # A timeout, not wait_for: no task made per edit.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(wait):
                                await self._closed.wait()
                if self._closing:
                    self._may_read.set()
                    await self._sync(self._final_view, final=True)
                    return
                await self._sync(self._progress_pieces)
                self._may_read.set()
        finally:
            self._may_read.set()

    def _progress_pieces(self) -> list[str]:
        """Messages for the text so far: frozen ones as shown, then the live tail."""
        text = settled(self.text, self._frozen_end)
        if shows(text) and self._tail_of[0] != self._version:
            # The same text is asked for twice per edit (before and after its budget
            # slot): split and format it once.
            pieces = split_pieces(
                text, self.limits.max_chars, self._fmt, start=self._frozen_end, prefix=self._reopen
            )
            if len(pieces) > 1:
                # Everything but the last piece is complete: freeze it.
                self._frozen.extend(p.text for p in pieces[:-1])
                self._frozen_end = pieces[-2].end
                self._reopen = pieces[-2].reopen
            # No piece: what follows the frozen ones shows nothing yet (an empty heading).
            self._tail_of = (self._version, pieces[-1].text if pieces else "")
        if shows(text) and (self._frozen or self._tail_of[1]):
            return [*self._frozen, self._tail_of[1]] if self._tail_of[1] else list(self._frozen)
        if not self._status:
            return list(self._shown)
        return [self._fmt(f"_{as_text(self._status)}_")]

    async def _sync(self, make: Callable[[], list[str]], final: bool = False) -> None:
        """Make the messages show the pieces `make()` returns, spending budget per operation.

        Progress updates draw on the budget first and take the text after, so
        an edit that waited for its turn shows what arrived while it waited.
        """
        pieces = make()
        start = self._first_change(pieces, 0)
        if start is None:
            self._pending_since = None
            return
        held: Held | None = await self._acquire(self._op(start, pieces[start]))
        try:
            if not final:
                await self._let_reader_catch_up()
                if self._closing:
                    # The final text came while this waited: this slot shows it (the
                    # progress pieces of a final text could show it half, or empty).
                    make, final, start = self._final_view, True, 0
                else:
                    # Text read while this edit is on its way waits for the next one.
                    self._may_read.clear()
                pieces = make()
            snapshot = len(self.text)
            snapped_at = time.monotonic()
            index = self._first_change(pieces, start)
            while index is not None:
                text = pieces[index]
                editing = index < len(self.message_ids)
                if not final and self._closing and not editing:
                    break  # the final pass takes over: no new message of older text
                try:
                    # An edit's budget may depend on its text (an append's, or not).
                    op = self._op(index, text)
                    if held is None or held[0] != op:
                        release(held[1] if held else [])
                        held = None
                        held = await self._acquire(op)
                    if self._gate is not None:
                        await self._gate()
                    slots, held = held[1], None
                    sent = time.monotonic()
                    try:
                        if editing:
                            await self.target.edit(self.message_ids[index], text)
                            self.stats.edits += 1
                            self._shown[index] = text
                        else:
                            self.message_ids.append(await self.target.post(text))
                            self._shown.append(text)
                    finally:
                        # Made or failed, the request may have reached the platform.
                        restamp(slots)
                    await self._progress()
                except Exception as exc:  # the platform's failure, whatever its kind
                    self._failed(exc)
                    first_final = final and self._final_since is None
                    if isinstance(exc, PlaceGone):
                        # Nothing more shows there. The answer stops: whoever ends it
                        # says so, once, and how what it showed ends (`cut_short`).
                        log.debug("reply update failed: %s", for_log(exc))
                        self.gone, self._gone_at = exc, index
                        return
                    if first_final or not (final or self._failures):
                        log.warning("reply update failed: %s", for_log(exc))
                    else:
                        log.debug("reply update failed again: %s", for_log(exc))
                    if final and self._may_retry(exc):
                        # The final text must land: try again after a pause.
                        await asyncio.sleep(min(FINAL_BACKOFF, 0.5 * 2**self._retries))
                        self._retries += 1
                        await self._sync(make, final=True)
                    elif final:
                        self._final_failed = True
                    else:
                        self._failures += 1
                        later = self.edit_interval * (2 ** min(self._failures - 1, 16) - 1)
                        self._last_edit = time.monotonic() + min(REFUSED_BACKOFF, later)
                    return
                self._failures = 0
                self._sent(sent, snapshot)
                index = self._first_change(pieces, index + 1)
            self._caught_up_to(snapshot, snapped_at)
        finally:
            release(held[1] if held else [])

    def _sent(self, sent: float, snapshot: int) -> None:
        """An update sent at `sent` showing the text's first `snapshot` characters landed."""
        # The interval runs from when this update was sent: text that arrives
        # while it is on its way waits one interval, not one plus its round trip.
        self._last_edit = sent
        if self.stats.first_visible_at is None and shows(self.text[:snapshot]):
            # Words, not a status, are on screen now.
            self.stats.first_visible_at = time.monotonic()

    def _caught_up_to(self, snapshot: int, snapped_at: float) -> None:
        """The messages show the text up to `snapshot`, taken at `snapped_at`."""
        if len(self.text) == snapshot:
            self._pending_since = None
        elif self._pending_since is not None:
            # Text came while this update was on its way: it has waited since
            # then, not since the first text this reply ever had pending (that
            # would rank a long answer ahead of every later one for good).
            self._pending_since = snapped_at

    def _may_retry(self, failure: Exception) -> bool:
        """Whether a final update that failed so is tried again (see FINAL_PATIENCE)."""
        now = time.monotonic()
        if self._final_since is None:
            self._final_since = now
        if isinstance(failure, PlatformRefused):
            return self._retries < FINAL_RETRIES
        return now - self._final_since < FINAL_PATIENCE

    def _first_change(self, pieces: list[str], start: int) -> int | None:
        """The first message from `start` on that does not show its piece yet."""
        shown = self._shown
        for index in range(start, len(pieces)):
            if index >= len(shown) or shown[index] != pieces[index]:
                return index
        return None

    def _op(self, index: int, text: str) -> Op:
        """What showing `text` as message `index` asks of the platform: a new message,
        an edit, or an append where appends have a budget of their own."""
        if index >= len(self.message_ids):
            return "post"
        if self.target.limits.append_bucket and self.target.appends(self.message_ids[index], text):
            return "append"
        return "edit"

    async def _acquire(self, op: Op) -> Held:
        """A slot of each budget an edit, an append or a new message draws on, in order."""
        if self.target.limits is not self.limits:
            # The platform changed how it answers here (Slack: a stream refused, so
            # messages are posted): its budgets follow.
            self.limits = self.target.limits
            self._budget.follow(self.limits)
        first = self.stats.first_visible_at is None
        return await self._budget.acquire(op, first, self._pending_since or 0.0, self._closing)

    def _failed(self, exc: Exception) -> None:
        if self._on_failure is not None:
            self._on_failure(exc)

    @property
    def recorded(self) -> str:
        """The reply's text as its in-flight record keeps it: once its answer is
        complete, with what ends it (`bridge.interruptions.record_text`)."""
        return record_text(self.text, self.ending)

    async def _progress(self) -> None:
        if self._on_progress is not None:
            await self._on_progress(list(self.message_ids), self.recorded)

    def keep_back(self) -> None:
        """A stop began: keep a slot back for the mark saying the reply was interrupted
        (see `ReplyBudget.keep_back`)."""
        self._budget.keep_back(self._closing)

    async def cut_short(self) -> bool:
        """Its place gone (`gone`) past its first message, say so under what is left of
        it: the message before the one the platform refused (a moderator deleted the
        live one, or took away the bot's Send Messages before the next). False where
        there is none, or that edit failed too (the place itself is gone)."""
        at = self._gone_at - 1
        if self.gone is None or isinstance(self.gone, StoppedByAsker):
            return False  # (stopped by its asker: as they left it)
        if not 0 <= at < len(self.message_ids):
            return False
        await self._flusher_ended()
        note = self._fmt(f"_⚠️ {as_text(CUT_SHORT)}_")
        text = with_note(self._shown[at], note, self.limits.max_chars)
        slots = (await self._acquire("edit"))[1]
        try:
            await self.target.edit(self.message_ids[at], text)
        except Exception as exc:  # the platform's failure, whatever its kind
            self._failed(exc)
            log.debug("could not mark a reply cut short: %s", for_log(exc))
            return False
        finally:
            restamp(slots)
        self._shown[at] = text
        return True

    async def abandon(self) -> None:
        """Stop without a final edit, and clear the platform's indicators unless
        closing the reply did (its place is gone: nothing more can be shown)."""
        self._budget.let_go()  # its place is gone: no mark can be shown there either
        closed = self._closed.is_set()
        await self.aclose()
        if not closed:
            await self.target.end()

    def halt(self) -> None:
        """Make no more updates from now on (the answer is being cut)."""
        if self._flusher is not None:
            self._flusher.cancel()

    async def aclose(self) -> None:
        """Stop the flusher without a final edit (used when the process is going away)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
