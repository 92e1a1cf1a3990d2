"""The budgets one live reply draws on, and how it takes, holds and gives back their slots.

A reply's edits draw on its platform's edit budget (its appends, where the platform
has a budget for those, on that one), its new messages on the post budget, and both
on the bot-wide budget where the platform has one; typing draws on a share of that
one. Waiters are served by priority class, then by how long their text has waited: a
reply's first words go first, then typing, then more words of replies already showing
some, and refusals posted in the place last. Until its first request is granted, an
answer taken in a place where refusals are posted holds a slot of that place's post
budget promised (`Promise`), which those refusals leave it (`refusal_slots`). During a
stop a reply keeps a slot of each budget its edits draw on back for the mark saying
it was interrupted (`keep_back`), and gives it back once no mark will be needed
(`let_go`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from bridge.budget import Budget, Budgets, Priority
from bridge.flag import Flag
from bridge.interfaces import Limits, Rate

# Who goes first when replies wait for the same budget (then: who has waited longest).
FIRST = 0  # a reply's first words (or its placeholder)
COURTESY = 1  # typing: worth a request only while the words are not there
# Typing may take at most this share of a bot-wide budget's window, so the first
# words of answers asked in a burst find requests left to show them at once.
TYPING_SHARE = 0.5
MORE = 2  # more words of a reply already showing some
# A refusal posted in the place (Discord's channels): after every reply's request, as a
# refusal told late is worth nothing, and it is told in time or not at all.
REFUSAL = 3

# What a reply asks of its platform: a new message, an edit, or an edit that only adds
# to the end of its message (see `Limits.append_bucket`).
Op = Literal["post", "edit", "append"]
# Budget slots taken for one operation, and (with Held) which operation.
Slots = list[tuple[Budget, float]]
Held = tuple[Op, Slots]


def restamp(slots: Slots) -> None:
    """The operation is done: its slots count from now, not from when they were granted."""
    for budget, stamp in slots:
        budget.restamp(stamp)


def release(slots: Slots) -> None:
    """Give back slots whose operation was not made."""
    for budget, stamp in slots:
        budget.release(stamp)


class Promise:
    """A slot of a place's post budget promised to an answer taken there, until its
    first request is granted or it ends: the refusals posted there meanwhile leave it
    (see `Budget.promise`)."""

    __slots__ = ("_budget",)

    def __init__(self, budget: Budget) -> None:
        self._budget: Budget | None = budget
        budget.promise(1)

    def done(self) -> None:
        """Give the promise back (once): the answer's request was granted, or it ended."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.promise(-1)


async def refusal_slots(
    budgets: Budgets, wanted: list[tuple[str, Rate]], by: float
) -> Slots | None:
    """A slot of each budget in `wanted`, in order, for a refusal posted in a place: after
    every reply's request, leaving the slots promised to answers yet to show. None (and
    none held) if they are not all granted by `by` (time.monotonic())."""
    slots: Slots = []
    try:
        if time.monotonic() >= by:
            return None
        async with asyncio.timeout(by - time.monotonic()):
            for bucket, rate in wanted:
                budget = budgets.get(bucket, rate)
                stamp = await budget.acquire((REFUSAL, time.monotonic()), spares=True)
                slots.append((budget, stamp))
    except TimeoutError:
        release(slots)
        return None
    except BaseException:
        release(slots)
        raise
    return slots


class ReplyBudget:
    """The budgets one live reply draws on: its platform's for edits (`edit`), for
    appends if it has one (`append`) and for new messages (`post`), the bot-wide one if
    any (`bot`) and typing's share of it (`typing`). Its waits name it, for `Budget.promote`.
    Its `promise`, if any, is given back once its first post or edit is granted."""

    # Slots, not a dict per reply: a thousand replies may be live at once.
    __slots__ = ("_budgets", "_kept", "_promise", "append", "bot", "edit", "post", "typing")

    def __init__(self, budgets: Budgets, limits: Limits, promise: Promise | None = None) -> None:
        self._budgets = budgets
        self._promise = promise
        self.follow(limits)
        bucket, rate = limits.global_bucket, limits.global_rate
        self.bot = budgets.get(bucket, rate) if bucket and rate else None
        self.typing = (
            budgets.get(f"{bucket}:typing", Rate(max(1, int(rate.count * TYPING_SHARE)), rate.per))
            if bucket and rate and not limits.begin_posts
            else None
        )
        # None until a stop begins (`keep_back`); then the budgets keeping a slot back
        # for this reply's mark, none once it ends.
        self._kept: list[Budget] | None = None

    def follow(self, limits: Limits) -> None:
        """Take the edit, append and post budgets `limits` name."""
        self.edit = self._budgets.get(limits.edit_bucket, limits.edit_rate)
        self.post = self._budgets.get(limits.post_bucket, limits.post_rate)
        bucket, rate = limits.append_bucket, limits.append_rate
        self.append = self._budgets.get(bucket, rate) if bucket and rate else None

    async def for_begin(self, begin_posts: bool, has_text: Flag) -> Slots | None:
        """Slots for showing that an answer is coming (a placeholder, or typing), or
        None: a busy budget, and the answer's first text came first."""
        now = time.monotonic()
        slots: Slots = []
        try:
            if begin_posts:
                slots.append((self.post, await self.post.acquire((FIRST, now))))
                if self.bot is not None:
                    slots.append((self.bot, await self.bot.acquire((FIRST, now))))
                self._granted()
            elif self.bot is not None:  # typing is a request too
                if not await self._typing_slots((COURTESY, now), slots, has_text):
                    release(slots)
                    return None
        except BaseException:
            release(slots)
            raise
        return slots

    async def _typing_slots(self, priority: Priority, slots: Slots, has_text: Flag) -> bool:
        """Slots of typing's share and of the bot-wide budget (added to `slots`),
        unless the answer's first text comes first."""
        for budget in (self.typing, self.bot):
            assert budget is not None
            stamp = await self._slot_before_text(budget, priority, has_text)
            if stamp is None:
                return False
            slots.append((budget, stamp))
        return True

    @staticmethod
    async def _slot_before_text(budget: Budget, priority: Priority, has_text: Flag) -> float | None:
        """Wait for a slot of `budget` (its stamp), unless the answer's first text comes first."""
        slot = asyncio.ensure_future(budget.acquire(priority))
        text = asyncio.ensure_future(has_text.wait())
        try:
            try:
                await asyncio.wait({slot, text}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                text.cancel()
                if not slot.done():
                    slot.cancel()
                await asyncio.gather(slot, text, return_exceptions=True)
        except BaseException:
            if not slot.cancelled() and slot.exception() is None:
                budget.release(slot.result())  # granted as we were stopped: not used
            raise
        return None if slot.cancelled() else slot.result()

    async def acquire(self, op: Op, first: bool, since: float, closing: bool) -> Held:
        """A slot of each budget an edit, an append or a new message (`op`) draws on, in
        order: for a reply's `first` words, or more of them, whose text has waited
        `since` then."""
        priority = (FIRST if first else MORE, since)
        if op == "post":
            budgets = [self.post]
        else:
            budgets = [self.append if op == "append" and self.append else self.edit]
        if self.bot is not None:
            budgets.append(self.bot)
        # A reply ending during a stop: see `_ends_in_stop`.
        kept = closing and self._kept is not None
        slots: Slots = []
        try:
            for budget in budgets:
                slots.append((budget, await budget.acquire(priority, kept=kept, owner=self)))
        except BaseException:
            release(slots)
            raise
        self._granted()
        return op, slots

    def _granted(self) -> None:
        """A first post or edit was granted: the slot promised for it is taken."""
        if self._promise is not None:
            self._promise.done()
            self._promise = None

    def keep_back(self, closing: bool) -> None:
        """A stop began: keep a slot of each budget its edits draw on (Slack's chat.update:
        one per workspace) back from the live replies' updates, for the mark saying it
        was interrupted should the grace end before it does (`closing`: it ends already)."""
        if self._kept is not None:
            return
        self._kept = [b for b in (self.edit, self.bot) if b is not None]
        for budget in self._kept:
            budget.keep(1)
        if closing:
            self._ends_in_stop()

    def closing(self) -> None:
        """The reply is ending: during a stop, see `_ends_in_stop`."""
        if self._kept is not None:
            self._ends_in_stop()

    def _ends_in_stop(self) -> None:
        """It ends during a stop: its end (the edit waiting already too) goes before the
        live replies' updates and may take the slots kept back; it needs no mark."""
        for budget in (self.edit, self.append, self.post, self.bot):
            if budget is not None:
                budget.promote(self)
        self.let_go()  # after: its end goes first

    def let_go(self) -> None:
        """No mark will be needed: the slots kept back for it go back to the others."""
        for budget in self._kept or ():
            budget.keep(-1)
        self._kept = []
