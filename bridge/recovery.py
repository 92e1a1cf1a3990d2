"""Replies whose answer was cut, marked interrupted: those a dead process left in
flight (at start, and on a shared store whenever another replica stops beating),
those a stop cut, and those this process gave up on while their platform failed,
once it is back."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from functools import partial

from bridge.errors import for_log
from bridge.intake import MARKED_HERE_ONLY
from bridge.interfaces import Platform
from bridge.interruptions import (
    GIVEN_UP,
    INTERRUPTED,
    Marked,
    never_markable,
    show_interrupted,
    still_ours,
)
from bridge.metrics import Metrics
from bridge.relay import Relay
from bridge.store import InFlight, Store

log = logging.getLogger("chat_bridge.app")

# A reply cut off on a platform no longer configured is kept (with its text) this
# long for a later start that has it again to mark; then forgotten.
UNMARKED_KEPT = 7 * 24 * 3600.0


class Recovery:
    """Marks the replies left cut off; `stopped()` says a stop began (no marking of
    its own begins then). `marking` holds the orphans claimed and not yet marked, for
    the heartbeat to beat for."""

    def __init__(
        self,
        store: Store,
        relay: Relay,
        platforms: Mapping[str, Platform],
        metrics: Metrics,
        owner: str,
        *,
        stopped: Callable[[], bool],
    ) -> None:
        self.store = store
        self.relay = relay
        self.platforms = platforms
        self.metrics = metrics
        self.owner = owner
        self._stopped = stopped
        self.marking: dict[str, InFlight] = {}

    async def recover(self) -> int:
        """Mark replies left in flight by a dead process as interrupted.

        With a store of its own (SQLite) every other process's record left is an
        orphan; with a shared one, only records whose owner stopped beating its
        heartbeat. This process's own records are its live replies, at start-up
        too (the platforms deliver messages before this runs), or replies it gave up
        on, which the heartbeat marks (`mark_given_up`).
        """
        now = time.time()
        # A store of its own is held by this process alone (`Store.hold`): every other
        # owner's record is an orphan, whatever its time says (a clock set back).
        stale = now - self.relay.stale_after if self.store.shared else math.inf
        shown: list[Marked] = []
        for rec in await self.store.inflight_orphans(self.owner, stale):
            if rec.owner == self.owner:
                continue  # our own
            if rec.id in self.relay.unended:
                continue  # finished: only its record is left, for the heartbeat to remove
            if await self.store.inflight_claim(rec.id, self.owner, rec.heartbeat_at):
                # Beaten for while it waits to be marked, or it would look an orphan
                # again and be claimed and marked twice.
                self.marking[rec.id] = rec
                try:
                    if (marked := await self.mark_interrupted(rec)) is not None:
                        shown.append(marked)
                finally:
                    self.marking.pop(rec.id, None)
        if cut := shown.count("cut"):
            log.info("marked %d interrupted replies", cut)
        if late := shown.count("late"):
            log.info(
                "showed %d answers that had come whole, late: a restart came as they were shown",
                late,
            )
        return len(shown)

    async def mark_interrupted(self, rec: InFlight, *, kept: bool = False) -> Marked | None:
        """Edit a reply's last message to keep its text and say it was interrupted
        (with `kept`, a stop's mark: it may take the slots the stop kept back). Its
        record ends once marked, or where it never can be (its message or place gone,
        the platform refusing it). Where its platform is out of reach or failing, the
        record stays: a stop's, for the next start (or another replica); one a dead
        process left, to be tried again at every heartbeat, as a reply given up on.
        Returns how its mark showed (`show_interrupted`); None where it did not."""
        if not await self._markable(rec):
            return None
        try:
            target = self.platforms[rec.address.platform].target(rec.address)
            marked = await show_interrupted(self.relay, target, rec, kept=kept)
        except Exception as exc:  # a platform library's own error too: skip this reply only
            self.metrics.platform_failed(rec.address.platform, exc)
            given_up = self.relay.given_up
            if kept and not never_markable(exc):
                log.warning(
                    "could not mark a reply the stop cut as interrupted: %s; left for the "
                    "next start",
                    for_log(exc),
                    extra={"platform": rec.address.platform, "channel": rec.address.channel},
                )
                return None
            if given_up.failed(rec, exc, "a reply left in flight"):
                if given_up.keep(rec, INTERRUPTED):
                    return None
                log.warning(
                    "too many replies wait for their platform already: an "
                    "interrupted one is forgotten",
                    extra={"platform": rec.address.platform, "channel": rec.address.channel},
                )
            await self.store.inflight_end(rec.id)
            return None
        await self.store.inflight_end(rec.id)
        return marked

    async def _markable(self, rec: InFlight) -> bool:
        """Whether this process can mark a reply left in flight; where not, its record
        ends (or is kept, for a later start that has its platform)."""
        if rec.id.endswith(MARKED_HERE_ONLY):
            # A slash command's reply: only the process that had it could reach it,
            # and through the channel a mark would land where nobody asked. (A
            # reset's record in the asker's own conversation is one too: it shows
            # nothing.)
            log.info(
                "not marking an interrupted reply only the process that had it could "
                "reach (a slash command's), or a record that shows nothing",
                extra={"platform": rec.address.platform, "channel": rec.address.channel},
            )
            await self.store.inflight_end(rec.id)
            return False
        if rec.address.platform not in self.platforms:
            # Not configured now: kept for a while, for a later start.
            if time.time() - rec.started_at > UNMARKED_KEPT:
                log.info(
                    "forgetting an interrupted reply on %s, which is no longer configured",
                    rec.address.platform,
                )
                await self.store.inflight_end(rec.id)
            return False
        return True

    async def mark_given_up(self) -> None:
        """Mark the replies this process gave up on interrupted (an answer that had come
        whole shows whole, late), in the order it gave them up. Where a mark fails as its
        platform is out of reach or failing, that platform's replies wait for the next
        pass (the next heartbeat); one that can never be marked is forgotten
        (`GivenUp.failed`). A pass stops once a stop is on."""
        given_up, failing = self.relay.given_up, set[str]()
        shown: list[Marked] = []
        for rec in list(given_up.records.values()):
            if self._stopped():
                break
            platform = rec.address.platform
            if rec.id not in given_up or platform in failing:
                continue  # dropped meanwhile (`GivenUp`), or its platform failed this pass
            if not await self._markable(rec):  # a slash command's
                given_up.forget(rec.id)
                continue
            if not await still_ours(self.store, self.owner, rec):
                log.info(
                    "not marking a reply given up on: another replica took it over",
                    extra={"platform": platform, "channel": rec.address.channel},
                )
                given_up.forget(rec.id)
                continue
            if time.time() - rec.started_at > UNMARKED_KEPT:
                log.info(
                    "forgetting a reply given up on that its platform failed to mark "
                    "interrupted for a week",
                    extra={"platform": platform, "channel": rec.address.channel},
                )
            else:
                try:
                    # (A platform not started yet has no target: tried again later.)
                    target = self.platforms[platform].target(rec.address)
                    marked = await show_interrupted(
                        self.relay,
                        target,
                        rec,
                        given_up.marks.get(rec.id, GIVEN_UP),
                        wanted=partial(given_up.__contains__, rec.id),
                    )
                    if marked is None:
                        continue  # dropped while it waited for the platform's budget
                except Exception as exc:  # a platform library's own error too
                    self.metrics.platform_failed(platform, exc)
                    if given_up.failed(rec, exc):
                        failing.add(platform)
                        continue
                else:
                    given_up.shown(platform)
                    shown.append(marked)
            # Done with: nobody may mark it again, whatever cuts this now; its record
            # goes now, or with the heartbeat.
            given_up.forget(rec.id)
            self.relay.unended.add(rec.id)
            await self.relay.end_records()
        if cut := shown.count("cut"):
            log.info("marked %d replies given up on as interrupted, their platform back", cut)
        if late := shown.count("late"):
            log.info("showed %d answers that had come whole, late, their platform back", late)
