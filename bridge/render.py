"""The live reply: shows an answer growing in place, within the platform's budgets.

Tokens are appended to a buffer; one flusher task per reply turns the buffer
into messages. Edits are coalesced (each edit shows everything received so
far), spaced by `edit_interval` per reply, and drawn from budgets shared by
every live reply in the same bucket. Text past the platform's limit continues
in follow-up messages; a message that is no longer the last one is frozen and
never edited again until the final pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bridge.budget import Budgets
from bridge.errors import BridgeError
from bridge.interfaces import ReplyTarget, Source
from bridge.split import split_pieces

log = logging.getLogger("chat_bridge.render")

FINAL_RETRIES = 5
# How long before its next edit a reply wants the text that arrived meanwhile.
READ_AHEAD = 0.05

ProgressHook = Callable[[Sequence[str], str], Awaitable[None]]


@dataclass
class RenderStats:
    """What a reply did, for metrics and benchmarks."""

    edits: int = 0
    posts: int = 0
    first_visible_at: float | None = None
    visible_marks: list[tuple[int, float]] = field(default_factory=list)


def dedupe_sources(sources: Sequence[Source], limit: int) -> list[Source]:
    """Sources in first-seen order, once per URL, at most `limit`."""
    seen: set[str] = set()
    out: list[Source] = []
    for source in sources:
        url = source.url.strip()
        if not url or url in seen:
            continue
        seen.add(url)
        out.append(source)
        if len(out) >= limit:
            break
    return out


class LiveReply:
    """One reply being streamed to one target."""

    def __init__(
        self,
        target: ReplyTarget,
        budgets: Budgets,
        *,
        edit_interval: float = 1.0,
        thinking_text: str = "_Thinking…_",
        on_progress: ProgressHook | None = None,
        track_latency: bool = False,
    ) -> None:
        self.target = target
        self.limits = target.limits
        self._edit_budget = budgets.get(self.limits.edit_bucket, self.limits.edit_rate)
        self._post_budget = budgets.get(self.limits.post_bucket, self.limits.post_rate)
        bucket, rate = self.limits.global_bucket, self.limits.global_rate
        self._global_budget = budgets.get(bucket, rate) if bucket and rate else None
        self.edit_interval = edit_interval
        self.thinking_text = thinking_text
        self._on_progress = on_progress
        self._track = track_latency

        self.text = ""
        self._status: str | None = None
        self._final_pieces: list[str] = []
        self._dirty = asyncio.Event()
        self._closed = asyncio.Event()
        self._first_shown = asyncio.Event()
        self._awaited_first = False
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None

        self.message_ids: list[str] = []
        self._shown: list[str] = []  # what each message shows now
        self._frozen: list[str] = []  # complete messages (all but the live last one)
        self._frozen_end = 0  # source offset just past the frozen messages
        self._reopen = ""  # fence to reopen at the start of the next message
        self._last_edit = float("-inf")
        self._pending_since: float | None = None
        self.stats = RenderStats()
        self._retries = 0

    # ------------------------------------------------------------------ feeding

    async def start(self) -> None:
        """Show activity at once, and start the flusher."""
        if self.limits.begin_posts:
            await self._post_budget.acquire((0, time.monotonic()))
        if self._global_budget is not None:  # begin() makes a request either way
            await self._global_budget.acquire((0, time.monotonic()))
        placeholder = await self.target.begin()
        if placeholder is not None:
            self.message_ids.append(placeholder)
            self._shown.append(self.thinking_text)
            self.stats.posts += 1
        self._flusher = asyncio.create_task(self._run(), name="live-reply")

    def feed(self, text: str) -> None:
        """Append answer text."""
        if not text:
            return
        self.text += text
        self._mark()

    def set_status(self, status: str | None) -> None:
        """Show a progress status while there is no text yet."""
        self._status = status
        if not self.text:
            self._mark()

    def _mark(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        if self._track:
            self.stats.visible_marks.append((len(self.text), time.monotonic()))
        self._dirty.set()

    async def pace(self) -> None:
        """Pause the reader while newer text could not be shown anyway.

        Text arriving before the next edit waits for it, so the reader may as
        well take it all at once: one network read per edit instead of one per
        token. Before the first text is shown, the reader waits for that edit
        (at most one interval), so a busy process shows answers before it reads
        further into them.
        """
        if self._closing:
            return
        if self.stats.first_visible_at is None:
            if self.text and not self._awaited_first:
                self._awaited_first = True  # once: a failing platform must not slow reading
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.edit_interval):
                        await self._first_shown.wait()
            return
        pause = self._last_edit + self.edit_interval - READ_AHEAD - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)

    async def finish(
        self, final_text: str | None, sources: Sequence[Source] = (), show_sources: bool = True
    ) -> None:
        """The answer is complete: show the authoritative text and the sources."""
        text = final_text if final_text is not None and final_text.strip() else self.text
        self.text = text
        block = self.target.format_sources(sources) if (sources and show_sources) else ""
        await self._close(text, block, empty_note="" if text else "_(no answer)_")

    async def fail(self, notice: str) -> None:
        """Keep what was shown and add a short notice of what happened."""
        note = self.target.format_markdown(f"_⚠️ {notice}_")
        await self._close(self.text, note, empty_note="")

    async def _close(self, text: str, tail: str, empty_note: str) -> None:
        pieces = (
            [p.text for p in split_pieces(text, self.limits.max_chars, self._fmt)] if text else []
        )
        if not pieces:
            pieces = [empty_note or tail]
            tail = "" if not empty_note else tail
        if tail:
            if len(pieces[-1]) + 2 + len(tail) <= self.limits.max_chars:
                pieces[-1] = f"{pieces[-1]}\n\n{tail}"
            else:
                pieces.append(tail[: self.limits.max_chars])
        # Messages the final text no longer needs (it came out shorter) say so.
        while len(pieces) < len(self.message_ids):
            pieces.append(self._fmt("_(continued above)_"))
        self._final_pieces = pieces
        self._closing = True
        self._closed.set()
        self._dirty.set()
        if self._flusher is not None:
            await self._flusher
        else:
            await self._sync(pieces)
        await self.target.end()

    def _fmt(self, markdown: str) -> str:
        return self.target.format_markdown(markdown)

    # ------------------------------------------------------------------ flushing

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self._closing:
                wait = self._last_edit + self.edit_interval - time.monotonic()
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._closed.wait(), wait)
                    except TimeoutError:
                        pass
            if self._closing:
                await self._sync(self._final_pieces, final=True)
                return
            await self._sync(self._progress_pieces())

    def _progress_pieces(self) -> list[str]:
        """Messages for the text so far: frozen ones as shown, then the live tail."""
        if not self.text:
            if not self._status:
                return list(self._shown)
            return [self._fmt(f"_{self._status}_")]
        pieces = split_pieces(
            self.text, self.limits.max_chars, self._fmt, start=self._frozen_end, prefix=self._reopen
        )
        if len(pieces) > 1:
            # Everything but the last piece is complete: freeze it.
            self._frozen.extend(p.text for p in pieces[:-1])
            self._frozen_end = pieces[-2].end
            self._reopen = pieces[-2].reopen
        return [*self._frozen, pieces[-1].text]

    async def _sync(self, pieces: list[str], final: bool = False) -> None:
        """Make the messages show `pieces`, spending budget per operation."""
        snapshot = len(self.text)
        for index, text in enumerate(pieces):
            if index < len(self._shown) and self._shown[index] == text:
                continue
            priority = (0 if self.stats.first_visible_at is None else 1, self._pending_since or 0.0)
            editing = index < len(self.message_ids)
            try:
                await (self._edit_budget if editing else self._post_budget).acquire(priority)
                if self._global_budget is not None:
                    await self._global_budget.acquire(priority)
                if editing:
                    await self.target.edit(self.message_ids[index], text)
                    self.stats.edits += 1
                    self._shown[index] = text
                else:
                    self.message_ids.append(await self.target.post(text))
                    self.stats.posts += 1
                    self._shown.append(text)
                await self._progress()
            except BridgeError as exc:
                log.warning("reply update failed: %s", exc)
                if final and self._retries < FINAL_RETRIES:
                    # The final text must land: try again after a pause.
                    await asyncio.sleep(min(8.0, 0.5 * 2**self._retries))
                    self._retries += 1
                    await self._sync(pieces, final=True)
                return
            now = time.monotonic()
            self._last_edit = now
            if self.stats.first_visible_at is None and self.text:
                self.stats.first_visible_at = now
                self._first_shown.set()
            if self._track:
                self.stats.visible_marks.append((-len(self.text), now))
        if len(self.text) == snapshot:
            self._pending_since = None

    async def _progress(self) -> None:
        if self._on_progress is not None:
            await self._on_progress(list(self.message_ids), self.text)

    async def aclose(self) -> None:
        """Stop the flusher without a final edit (used when the process is going away)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
