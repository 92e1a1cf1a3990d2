"""Questions edited on their platform: kept in a history as they read now.

A stateless API is sent a conversation's history with every question: a question
edited once answered (a password cut from it) would be sent again as it was, while
the platform shows only the edit. The adapter's call (`PlatformContext.edited`) gives
the edited text, read as a question's is (the bot's mention gone, names in words), to
the question's turn (kept under its id, `bridge.deletions.question_id`) in every
conversation that keeps it; its answer stays. An edit that leaves no question (the
bot's mention alone, or nothing a platform lets the bot read) has the turn forgotten,
as a deletion does; so does one longer than a question may be: it would have been
refused, and cut it would say what nobody wrote.

An edit told while its question is answered finds no turn yet. The last edit of each
of the last `EDITS_KEPT` messages edited is kept here, and a turn kept takes its
question's. On a shared store the edit may have reached another replica than the
one answering, and a replica's own may not be the last: each is recorded as an event
id of its own, pruned with the others after `limits.event_ttl`, and the replica
answering forgets the turn instead (its text might not be the last). An edit that
is itself the question asked (one adding the bot's mention forgotten, where the
adapter can tell) is not recorded so, or its own turn would go. Edits of one
question are applied one at a time, the last told winning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from bridge.deletions import question_id
from bridge.errors import BridgeError
from bridge.store import Store
from bridge.text import valid_text

log = logging.getLogger("chat_bridge.relay")

# Messages whose last edit is kept for a turn not kept yet (their answer streams):
# a bound on what edits in busy channels leave in memory.
EDITS_KEPT = 1000


def edit_id(question: str) -> str:
    """The event id that stands for an edit of the question `question`."""
    return f"edited:{question}"


class Edits:
    """The edits of questions, for the turns a history keeps of them."""

    def __init__(self, store: Store, longest: int) -> None:
        self._store = store
        self._longest = longest  # the longest question a stateless API is asked
        # By question id, the latest edit's text (None: the turn is to go), oldest first.
        self._told: OrderedDict[str, str | None] = OrderedDict()
        # One edit at a time reaches the store: on PostgreSQL two would race, and the
        # older could be written last.
        self._writing = asyncio.Lock()

    async def edited(
        self, platform: str, workspace: str, channel: str, message_id: str, text: str,
        asks: bool = False,
    ) -> None:
        """A message was edited to read `text` (read as a question's text is): where it
        is a question answered, its turn says so, in every conversation keeping it.
        `asks`: the edit is itself a question (see the module's docstring)."""
        question = question_id(platform, workspace, channel, message_id)
        kept = self._question(text)
        # Before the store is asked: a turn kept meanwhile finds it (`settle`).
        self._told[question] = kept
        self._told.move_to_end(question)
        while len(self._told) > EDITS_KEPT:
            self._told.popitem(last=False)
        where = {"platform": platform, "channel": channel}
        async with self._writing:
            if question in self._told:
                kept = self._told[question]  # the last told, by now
            await self._record(question, kept, message_id, where, asks)

    async def _record(
        self, question: str, kept: str | None, message_id: str, where: dict[str, str],
        asks: bool,
    ) -> None:
        if self._store.shared and not asks:
            try:
                await self._store.claim_event(edit_id(question), time.time())
            except BridgeError as exc:
                log.warning("could not record the edit of message %s: %s; if another replica "
                            "is answering it, its turn keeps the question as it was asked",
                            message_id, exc, extra=where)
        try:
            changed = await self._apply(question, kept)
        except BridgeError as exc:
            log.warning("could not keep the edit of message %s: %s; if it was a question "
                        "answered, its conversation's history keeps it as it was asked until "
                        "a reset", message_id, exc, extra=where)
            return
        if changed:
            log.info("edited question %s %s its conversation's history", message_id,
                     "forgotten from" if kept is None else "kept as edited in", extra=where)

    async def settle(self, question: str) -> None:
        """The turn of `question` was just kept: an edit told meanwhile is taken, or on
        a shared store, one told to another replica has the turn forgotten."""
        try:
            async with self._writing:
                if self._store.shared and await self._store.event_claimed(edit_id(question)):
                    log.info("the question was edited as it was answered (perhaps on "
                             "another replica, perhaps more than once): its turn is not kept")
                    await self._store.forget_question(question)
                elif question in self._told:
                    await self._apply(question, self._told[question])
        except BridgeError as exc:
            log.warning("could not keep the edit of the question: %s; its turn keeps the "
                        "question as it was asked", exc)

    def _question(self, text: str) -> str | None:
        """What `text` keeps of the question: None where nothing is to be kept."""
        text = valid_text(text).strip()
        return text if text and len(text) <= self._longest else None

    async def _apply(self, question: str, text: str | None) -> int:
        if text is None:
            return await self._store.forget_question(question)
        return await self._store.edit_question(question, text)
