"""Live replies' progress, written to the store in batches.

A reply's in-flight record keeps the ids of its messages and the text they
show, so that after a crash the next process can mark the reply interrupted
without losing what was shown. Writing it at every edit would put a store
write in front of every edit of every reply (and, with SQLite, into the one
queue every other store call waits in). Instead the newest progress of each
reply is kept here and written in one batch at most every `every` seconds (up
to `RETRY_MAX` while the store fails); a crash loses at most that much of the
text, a graceful stop none (`flush()`).
A new message is written at once: the ids are what lets the next process
find the reply at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from bridge.errors import BridgeError
from bridge.logs import Repeats
from bridge.store import InFlightProgress, Store

log = logging.getLogger("chat_bridge.progress")

RETRY_MAX = 8.0  # seconds at most between batches while the store fails


class ProgressLog:
    """The newest progress of each live reply, until it is written."""

    def __init__(self, store: Store, owner: str, every: float = 0.5) -> None:
        self.store = store
        self.owner = owner  # only its records are written (another may have taken one over)
        self.every = every
        self._pending: dict[str, InFlightProgress] = {}
        self._ids: dict[str, list[str]] = {}  # the message ids last written, by record
        self._due = asyncio.Event()
        self._failing = Repeats()  # batches the store failed to write, in a row

    async def note(self, rec_id: str, message_ids: Sequence[str], text: str) -> None:
        """A reply now shows `text` in `message_ids`."""
        row = (rec_id, list(message_ids), text, time.time())
        if self._ids.get(rec_id) == row[1]:
            self._pending[rec_id] = row
            self._due.set()
            return
        self._ids[rec_id] = row[1]
        self._pending.pop(rec_id, None)
        written = False
        try:
            await self.store.inflight_update_many([row], self.owner)
            written = True
            self._written()
        except BridgeError as exc:
            log.warning("could not record the messages of a reply: %s", exc)
        finally:
            if not written:  # refused, or cut by a stop: written with the next batch
                self._pending.setdefault(rec_id, row)
                self._due.set()

    def forget(self, rec_id: str) -> None:
        """The reply's record is ending: nothing of it is left to write."""
        self._pending.pop(rec_id, None)
        self._ids.pop(rec_id, None)

    async def flush(self) -> None:
        """Write what is pending now."""
        rows, self._pending = list(self._pending.values()), {}
        if not rows:
            self._failing.ended()  # nothing left that failed: the next batch comes in time
            return
        written = False
        try:
            await self.store.inflight_update_many(rows, self.owner)
            written = True
        except BridgeError as exc:
            if (again := self._failing.failed()) is not None:
                log.warning(
                    "could not record the progress of %d replies%s: %s", len(rows), again, exc
                )
        finally:
            if not written:  # whatever stopped it: try again with the next batch, unless superseded
                for row in rows:
                    self._pending.setdefault(row[0], row)
                self._due.set()
        if written:
            self._written()

    def _written(self) -> None:
        if tries := self._failing.ended():
            log.info("recorded the progress of live replies again, after %d failed tries", tries)

    def _wait(self) -> float:
        """How long a batch gathers: longer and longer while the store keeps failing."""
        return min(RETRY_MAX, self.every * 2 ** min(self._failing.tries, 10))

    async def run(self) -> None:
        """Write batches until cancelled."""
        while True:
            await self._due.wait()
            await asyncio.sleep(self._wait())  # let the batch gather
            self._due.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not record the progress of live replies")
