"""The "thinking" reaction on Slack questions: put on within Slack's limits, always taken off.

Slack takes about 50 `reactions.add` a minute per workspace (Tier 3) but only
about 20 `reactions.remove` (Tier 2). A reaction put on and never taken off
says for good that the bot is still thinking, so the removal is the part that
must not be lost:

- A reaction is put on only when its removal fits the workspace's budget
  (`rate`): reactions on (or on their way, or waiting to be taken off) and
  removals sent within the last window are never more than `rate.count`
  together. Each removal can then go the moment its answer ends; a workspace
  busier than that has questions without the reaction. Adds stay within
  `rate.count` a window too, well under Slack's 50.
- Removals are queued per workspace and sent by a task of their own, which
  the reply never waits for. One Slack refuses for its rate (429: another
  replica took the budget) is sent again after its Retry-After, one that
  could not reach Slack after a pause that doubles up to a minute, for as
  long as it takes. Slack's other refusals (`no_reaction`, the message gone,
  the token refused) leave nothing to do.
- An add is never waited out or retried: shown late, it would say nothing.
  After a 429 no add goes to that workspace until its Retry-After has passed.
  After a refusal for a missing scope (the app installed without
  `reactions:write`) none goes there for `NO_SCOPE_SECONDS`; the first says so
  in a warning.
  An add whose answer was lost may have been carried out: it is taken off
  like any other.
- At a stop, the removals still queued are tried for up to `FLUSH_SECONDS`
  (not before a Retry-After Slack gave); what is left is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.budget import drop_older
from bridge.interfaces import Rate
from bridge.logs import apart

from .refusal import FAILING, NO_SCOPE, error_code, status

log = logging.getLogger("chat_bridge.slack")

# How long a stop waits for the removals still queued.
FLUSH_SECONDS = 3.0
# The longest pause between tries of a removal that could not reach Slack.
MAX_PAUSE = 60.0
# Added to the budget's window, as the bridge's budgets do: requests reach Slack a
# little after they are sent, unevenly.
MARGIN = 0.05
# Seconds without adds in a workspace whose token may not add reactions.
NO_SCOPE_SECONDS = 600.0
# Workspaces known before the idle ones are first forgotten.
SWEEP_FLOOR = 64

_Outcome = Literal["done", "limited", "failed"]


@dataclass(frozen=True, slots=True)
class Reaction:
    """One reaction on one message: `name` on `ts` in `channel` of `workspace`."""

    workspace: str
    channel: str
    ts: str
    name: str


@dataclass(eq=False)
class _Workspace:
    """One workspace's reactions: its budget's account, and its queue of removals."""

    on: int = 0  # put on (or on their way, or queued to go), not yet taken off
    spent: list[float] = field(default_factory=list)  # removals sent in the window
    queue: deque[Reaction] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    removals_at: float = 0.0  # no removal before this: a 429's Retry-After
    adds_at: float = 0.0  # no add before this: a 429's Retry-After, a missing scope
    no_scope: bool = False  # reactions.add was refused for its scope: said once


class ThinkingReactions:
    """The thinking reactions of one Slack platform; `aclose()` at its close."""

    def __init__(
        self, client: AsyncWebClient, rate: Rate, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # A client that does not wait out 429s itself: the times are kept here.
        self._client = client
        self._count = rate.count
        self._window = rate.per + MARGIN
        self._clock = clock
        self._workspaces: dict[str, _Workspace] = {}
        self._sweep_at = SWEEP_FLOOR  # workspaces known when the idle ones are next forgotten
        self._closing = False
        self._closed = False

    def _workspace(self, key: str) -> _Workspace:
        found = self._workspaces.get(key)
        if found is None:
            if len(self._workspaces) >= self._sweep_at:
                self._forget_idle()
            found = self._workspaces[key] = _Workspace()
        return found

    def _forget_idle(self) -> None:
        """Forget the workspaces with nothing on, queued or counted (a daemon installed
        across an organisation meets many): each sweep is paid for by as many new ones."""
        now = self._clock()
        for key, ws in list(self._workspaces.items()):
            if (
                not ws.queue
                and ws.on == 0
                and ws.worker is None
                and not ws.no_scope
                and max(ws.adds_at, ws.removals_at) <= now
                and all(now - sent >= self._window for sent in ws.spent)
            ):
                del self._workspaces[key]
        self._sweep_at = max(SWEEP_FLOOR, 2 * len(self._workspaces))

    def pending(self) -> int:
        """Removals queued, not yet taken by Slack."""
        return sum(len(ws.queue) for ws in self._workspaces.values())

    # ------------------------------------------------------------------ adding

    async def add(self, reaction: Reaction) -> bool:
        """Put `reaction` on; True if it may be on, and must then be `remove`d.

        False, with nothing sent, while its removal would not fit the budget or a
        429's Retry-After runs; False too when Slack refuses it.
        """
        ws = self._workspace(reaction.workspace)
        now = self._clock()
        drop_older(ws.spent, now, self._window)
        if self._closing or now < ws.adds_at or ws.on + len(ws.spent) >= self._count:
            return False
        ws.on += 1
        try:
            await self._client.reactions_add(
                channel=reaction.channel, timestamp=reaction.ts, name=reaction.name
            )
        except SlackApiError as exc:
            error = error_code(exc)
            if error == "already_reacted":
                return True  # left by a process stopped before it took it off: ours
            if status(exc) == 429:
                ws.adds_at = self._clock() + (_retry_after(exc) or 1.0)
            ws.on -= 1
            if error in NO_SCOPE:
                ws.adds_at = self._clock() + NO_SCOPE_SECONDS
                if not ws.no_scope:
                    ws.no_scope = True
                    log.warning(
                        "slack: the thinking reaction is not shown in workspace %s: Slack "
                        "refused reactions.add (%s); add the reactions:write scope to the "
                        "app and reinstall it. Answers are given as usual; reactions are "
                        "tried again every %d minutes",
                        reaction.workspace,
                        error,
                        NO_SCOPE_SECONDS // 60,
                    )
                return False
            log.debug("slack: reaction not added: %s", error)
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Slack may have put it on and its answer been what was lost: taken off
            # all the same (`no_reaction` if it was not).
            log.debug("slack: reaction perhaps not added: %s", type(exc).__name__)
            return True
        except asyncio.CancelledError:
            self.remove(reaction)  # the request may have gone
            raise
        if ws.no_scope:
            ws.no_scope = False
            log.info(
                "slack: thinking reactions are shown again in workspace %s", reaction.workspace
            )
        return True

    # ------------------------------------------------------------------ removing

    def remove(self, reaction: Reaction) -> None:
        """Take off `reaction` (which `add` said may be on), in the background."""
        if self._closed:
            log.warning(
                "slack: the :%s: reaction stays on a question: it was to be taken off "
                "after the stop",
                reaction.name,
            )
            return
        ws = self._workspace(reaction.workspace)
        ws.queue.append(reaction)
        if ws.worker is None and not self._closing:
            # The workspace's, not the answer's that happens to start it.
            ws.worker = asyncio.create_task(self._work(ws), name="slack-reactions", context=apart())

    async def _work(self, ws: _Workspace) -> None:
        try:
            await self._drain(ws)
        finally:
            ws.worker = None

    async def _drain(self, ws: _Workspace, until: float | None = None) -> None:
        """Send `ws`'s removals in turn: for as long as it takes, or (at a stop)
        until `until`, trying each no more once Slack could not be reached."""
        failures = 0
        while ws.queue:
            wait = ws.removals_at - self._clock()
            if wait > 0:
                if until is not None and ws.removals_at >= until:
                    return  # Slack said not before the stop
                await asyncio.sleep(wait)
                continue
            outcome = await self._send(ws, ws.queue[0])
            if outcome == "done":
                ws.queue.popleft()
                ws.on -= 1
                failures = 0
            elif outcome == "failed":
                if until is not None:
                    return
                await asyncio.sleep(min(MAX_PAUSE, 2.0**failures))
                failures += 1

    async def _send(self, ws: _Workspace, reaction: Reaction) -> _Outcome:
        ws.spent.append(self._clock())
        try:
            await self._client.reactions_remove(
                channel=reaction.channel, timestamp=reaction.ts, name=reaction.name
            )
        except SlackApiError as exc:
            code, error = status(exc), error_code(exc)
            if code == 429:
                after = _retry_after(exc)
                if after is None:  # Slack always says; were it not to, a pause of our own
                    return "failed"
                ws.removals_at = self._clock() + after
                log.debug("slack: reaction removal rate limited; again in %g s", after)
                return "limited"
            if code >= 500 or error in FAILING:  # ratelimited: a 429, met above
                log.debug("slack: reaction not removed yet: %s", error)
                return "failed"
            # Nothing to take off (`no_reaction`, the message gone), or it never will be.
            log.debug("slack: reaction not removed: %s", error)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("slack: reaction not removed yet: %s", type(exc).__name__)
            return "failed"
        return "done"

    # ------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Stop: no more adds; queued removals are tried for up to `FLUSH_SECONDS`."""
        if self._closing:
            return
        self._closing = True
        workers = [ws.worker for ws in self._workspaces.values() if ws.worker is not None]
        for worker in workers:
            # A removal cut on its way is sent again below; Slack takes it once.
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        until = self._clock() + FLUSH_SECONDS
        queued = [ws for ws in self._workspaces.values() if ws.queue]
        if queued:
            try:
                async with asyncio.timeout(FLUSH_SECONDS):
                    await asyncio.gather(*(self._drain(ws, until) for ws in queued))
            except TimeoutError:
                pass
        self._closed = True
        left = self.pending()
        if left:
            log.warning(
                "slack: %d question(s) keep the :%s: reaction: Slack did not take its "
                "removal before the stop (rate limited, or not reached)",
                left,
                next(ws.queue[0].name for ws in self._workspaces.values() if ws.queue),
            )


def _retry_after(exc: SlackApiError) -> float | None:
    """The seconds a 429 said to wait, or None when it said nothing readable."""
    headers = getattr(exc.response, "headers", None) or {}  # aiohttp's: any case
    value = headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else -1.0
    except (TypeError, ValueError):  # not a number of seconds
        return None
    return seconds if 0 <= seconds < float("inf") else None
