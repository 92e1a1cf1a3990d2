"""Discord's "typing…" kept showing while answers think, within what the bot may send.

Discord shows typing for 10 s after each trigger, so a reply whose answer is
coming (or whose question waits its turn) triggers it again every
`TYPING_RENEW` seconds. The renewals of the whole process share one budget,
a fifth of the replies' (`global_rate`, 40 by default: 8 a second, and 2 of
Discord's 50 left for the requests nobody budgets, a channel looked up), and
never more than what the replies leave of the 50. A process's `global_rate` is
its share of the bot's limit (40/N each for N processes), so its renewals take
the same share, and N processes together stay within Discord's 50 (up to 12 of
them: each keeps at least one renewal a second). They never take a slot the
replies' edits count on, so they cannot slow an answer or earn a 429. A renewal
that finds the budget spent waits for its next free slot (within a second), and the
places whose indicator has been off longest (or never shown) go first.
A renewal Discord refuses is tried again only a renewal later, as one it took:
Discord counts every refused request toward its limit on invalid ones, past
which Cloudflare bans the bot's address. (A place that refuses typing for
good, 403, shows none any more: the target stops it.)
A question waiting its turn (all stream places held) shows typing too, from
`QUEUED_AFTER` on, until it is answered, refused or withdrawn.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from bridge.budget import Budget
from bridge.flag import Flag
from bridge.interfaces import Rate

TYPING_SHOWN = 10.0  # Discord: typing shows this long after each trigger
TYPING_RENEW = 8.0  # triggered again this long after the last one, before it lapses
TYPING_MAX = 600.0  # never type for longer than this, whatever happens upstream
# A question taken shows typing this long after, unless its answer began meanwhile
# (and showed typing within the reply's own budgets): one that waits its turn.
QUEUED_AFTER = 1.0
# Discord's limit on all of a bot's requests, and what renewals leave of what the
# replies leave for requests the bridge does not budget (lookups, commands' sync).
BOT_LIMIT = 50
UNBUDGETED = 2
# One renewal a second for every this many of the replies' requests a second: 8
# beside the default 40. Proportional, so that processes which split the bot's
# limit by their `global_rate` split the renewals' share of it the same way.
REPLIES_PER_RENEWAL = 5


def renewals_per_second(global_rate: Rate) -> int:
    """Renewals a second a process may send beside its replies' `global_rate`: a
    fifth of it, within what it leaves of the bot's limit, and never none."""
    replies = global_rate.count / global_rate.per
    left = BOT_LIMIT - math.ceil(replies) - UNBUDGETED
    return max(1, min(left, math.floor(replies / REPLIES_PER_RENEWAL)))


class Typist:
    """Keeps typing showing in places, with every renewal of the bot in one budget."""

    def __init__(self, per_second: int) -> None:
        self._budget = Budget(Rate(per_second, 1.0))

    async def keep_up(
        self,
        trigger: Callable[[], Awaitable[None]],
        asked_at: Callable[[], float | None],
        stop: Flag,
        gone: Callable[[], bool],
        *,
        first_after: float = 0.0,
    ) -> None:
        """Trigger typing (`trigger`, which never raises) until `stop` is set or the
        place is `gone`: `first_after` seconds from now if `asked_at()` (monotonic;
        None: never) says it was not asked for by then, then a renewal after each
        request, whether Discord took it or not. Cancelled, it stops at once."""
        start = time.monotonic()
        until = start + TYPING_MAX
        while not gone():
            last = asked_at()
            due = start + first_after if last is None else last + TYPING_RENEW
            now = time.monotonic()
            if now >= until:
                return
            if due > now:
                try:
                    async with asyncio.timeout(min(due, until) - now):
                        await stop.wait()
                    return
                except TimeoutError:
                    continue  # asked for meanwhile (the reply's own first typing): due later
            if stop.is_set():
                return
            # Off (or soon off) since: the earliest goes first.
            stamp = await self._budget.acquire((0, now if last is None else last + TYPING_SHOWN))
            last = asked_at()
            renewed = last is not None and time.monotonic() < last + TYPING_RENEW
            if stop.is_set() or gone() or renewed:
                self._budget.release(stamp)  # asked for meanwhile, or no longer wanted
                continue
            try:
                await trigger()
            finally:
                self._budget.restamp(stamp)
