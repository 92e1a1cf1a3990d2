"""A conversation's order on a shared store, and the leases held while answering.

Several replicas take messages of one conversation; each answers them in the
same order (the messages' time, then their record's id) and holds the
conversation's lease while it answers, so no two answer it at once. A
process's own jobs wait for each other without polling the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

from bridge.errors import BridgeError
from bridge.fence import Fence
from bridge.jobs import Job
from bridge.store import Store

log = logging.getLogger("chat_bridge.relay")


class Turns:
    """Where this process's jobs stand in their conversations on a shared store."""

    def __init__(
        self, store: Store, owner: str, stale_after: float, jobs: Collection[Job], fence: Fence
    ) -> None:
        self.store = store
        self.owner = owner
        self.stale_after = stale_after
        self._jobs = jobs  # this process's jobs, live
        self.fence = fence
        # Conversations whose lease this process holds: done when the job holding
        # it lets go.
        self._leases: dict[str, asyncio.Future[None]] = {}

    async def take(self, job: Job) -> bool:
        """Wait for the job's turn and take its conversations' leases, never while this
        replica is fenced (see bridge/fence.py): a job held by the fence takes its turn
        afresh once it is down. False where another replica took the job's record over
        meanwhile, as a dead replica's (it told the asker the reply was interrupted)."""
        while True:
            if self.fence.up:
                await self.fence.passable()
                if not any(
                    r.id == job.record.id and r.owner == self.owner
                    for r in await self.store.inflight_for_key(job.key)
                ):
                    log.info(
                        "not answering: another replica took the question over while "
                        "this one could not reach the store",
                        extra={"conversation": job.key},
                    )
                    return False
            await self.wait(job)
            await self.take_leases(job)
            if not self.fence.up:
                return True
            # Fenced while it took them (the fence's cut saw no lease of it yet).
            for key in job.leased:
                await self.let_go(key)
            job.leased.clear()

    async def wait(self, job: Job) -> None:
        """Wait while an earlier message of this conversation is answered, here or elsewhere.

        On a shared store the order is the records' (message time, then record
        id), the same on every replica, for this process's own jobs too: a
        second order (the order they arrived in here) could make two jobs wait
        for each other for ever.
        """
        pause = 0.05
        mine = (job.record.started_at, job.record.id)
        own = {r.id for r in job.records}
        while True:
            # The store's clock, which wrote the heartbeats: this process's own may be
            # behind (a dead replica's reply would hold the conversation up) or ahead.
            stale = await self.store.now() - self.stale_after
            ahead = {
                r.id
                for key in job.keys
                for r in await self.store.inflight_for_key(key)
                if r.id not in own and r.heartbeat_at >= stale and (r.started_at, r.id) < mine
            }
            if not ahead:
                return
            # A job of ours still answering (one that is done only has its
            # record left to remove: polling waits for that, with its pause).
            local = next(
                (
                    j
                    for j in self._jobs
                    if not j.mine.done() and any(r.id in ahead for r in j.records)
                ),
                None,
            )
            if local is not None:
                await asyncio.shield(local.mine)  # no polling for a job of our own
                pause = 0.05
                continue
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def take_leases(self, job: Job) -> None:
        """Hold its conversations' leases while answering: no other job, here or on
        another replica, answers one meanwhile, even one whose message was
        recorded too late for the order to show it. (Taken in one order, so two
        jobs that each want two cannot wait for each other.)"""
        for key in sorted(job.keys):
            await self._take_lease(job, key)

    async def _take_lease(self, job: Job, key: str) -> None:
        pause = 0.05
        while True:
            held = self._leases.get(key)
            if held is not None:  # by a job of ours
                await asyncio.shield(held)
                continue
            # Renewed by the heartbeat (`leases`) while the answer runs.
            try:
                taken = await self.store.acquire_lease(
                    key, self.owner, self.stale_after, time.time()
                )
            except asyncio.CancelledError:
                # Cut (a stop) with the store's answer on its way: the lease may be this
                # process's all the same, and would keep the conversation from the other
                # replicas until it expires. Unless a job of ours holds it meanwhile.
                if key not in self._leases:
                    await asyncio.shield(self._release(key))
                raise
            if taken:
                if key in self._leases:
                    continue  # another job of ours took it meanwhile
                self._leases[key] = asyncio.get_running_loop().create_future()
                job.leased.append(key)
                return
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def let_go(self, key: str) -> None:
        try:
            await self._release(key)
        finally:
            # Released in the store first: a job of ours waiting for it takes it anew.
            held = self._leases.pop(key, None)
            if held is not None and not held.done():
                held.set_result(None)

    async def _release(self, key: str) -> None:
        try:
            await self.store.release_lease(key, self.owner)
        except BridgeError as exc:  # it expires on its own
            log.warning("could not release the lease: %s", exc, extra={"conversation": key})

    def leases(self) -> list[str]:
        """The conversations whose lease this process holds (for heartbeats)."""
        return list(self._leases)
