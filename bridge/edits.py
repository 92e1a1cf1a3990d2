"""Questions edited on their platform: asked, and kept in a history, as they read now.

A question edited while it waits its turn (behind another answer of its
conversation, or for a stream) is asked as it reads then, not as it came: someone
who cut a password from it is not sent on with it. The adapter's call
(`PlatformContext.edited`) gives the edited text, read as a question's is (the
bot's mention gone, names in words); the last edit of each of the last
`EDITS_KEPT` messages edited is kept here, and the relay reads it (`latest`) just
before asking the chat API. An edit that leaves no question (the bot's mention
alone, or nothing a platform lets the bot read) withdraws it, as a deletion does.

A stateless API is sent a conversation's history with every question: a question
edited once answered would be sent again as it was, while the platform shows only
the edit. So the edit is given to the question's turn (kept under its id,
`bridge.deletions.question_id`) in every conversation that keeps it; its answer
stays. An edit that leaves no question has the turn forgotten, as a deletion does;
so does one longer than a question may be: it would have been refused, and cut it
would say what nobody wrote. An edit told while its question is answered finds no
turn yet: a turn kept takes its question's last edit.

On a shared store an edit may reach another replica than the one holding the
question, and a replica's own may not be the last. Each edit is recorded as an
event id numbered in the order recorded (`edit_id`: the first, then `#2`, `#3`...),
pruned with the others after `limits.event_ttl`. The replica about to ask a
question looks for an edit numbered after the last it recorded (one told here whose
record failed is known here all the same): there is one, and its text is not known
here, so the question is withdrawn (the asker is told to ask again). A turn kept of
a question with any edit recorded is forgotten (its text might not be the last). An
edit that is itself the question asked (one adding the bot's mention forgotten, where
the adapter can tell) is not recorded so, or its own turn would go. Edits of one
question are applied one at a time, the last told winning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from bridge.deletions import question_id
from bridge.errors import BridgeError
from bridge.store import Store
from bridge.text import valid_text

log = logging.getLogger("chat_bridge.relay")

# Messages whose last edit is kept for a question or turn to come (one waiting its
# turn, or whose answer streams): a bound on what edits in busy channels leave in memory.
EDITS_KEPT = 1000


def edit_id(question: str, number: int = 1) -> str:
    """The event id that stands for the `number`th edit recorded of the question
    `question` (the first's is what a replica that kept its turn looks for)."""
    return f"edited:{question}" if number == 1 else f"edited:{question}#{number}"


@dataclass
class _Told:
    """A message's edit told here: its text, read as a question's (valid, stripped)."""

    text: str
    # On a shared store, the number of the last of the message's edits recorded here:
    # this one's, or where it took none (itself asked, or the store failed), the one
    # before's (0: none recorded).
    number: int = 0


class Latest(NamedTuple):
    """A question about to be asked, as its edits leave it."""

    text: str | None  # as it reads now ("": nothing left to ask); None: never edited here
    elsewhere: bool  # edited on another replica after that: its text is not known here


class Edits:
    """The edits of questions, for the questions asked and the turns a history keeps."""

    def __init__(self, store: Store, longest: int, history: bool = True) -> None:
        self._store = store
        self._longest = longest  # the longest question a stateless API is asked
        self._history = history  # whether any history keeps questions (a stateless API)
        # By question id, the latest edit told, oldest first.
        self._told: OrderedDict[str, _Told] = OrderedDict()
        # One edit at a time reaches the store: on PostgreSQL two would race, and the
        # older could be written last. (Also numbered in the order told.)
        self._writing = asyncio.Lock()

    async def edited(
        self,
        platform: str,
        workspace: str,
        channel: str,
        message_id: str,
        text: str,
        asks: bool = False,
    ) -> None:
        """A message was edited to read `text` (read as a question's text is): a question
        of it waiting its turn is asked so, and where it is a question answered, its
        turn says so, in every conversation keeping it. `asks`: the edit is itself a
        question (see the module's docstring)."""
        question = question_id(platform, workspace, channel, message_id)
        told = _Told(valid_text(text).strip())
        before = self._told.get(question)
        # Before the store is asked: a question asked or a turn kept meanwhile finds it.
        self._told[question] = told
        self._told.move_to_end(question)
        while len(self._told) > EDITS_KEPT:
            self._told.popitem(last=False)
        where = {"platform": platform, "channel": channel}
        async with self._writing:
            await self._record(question, told, before, message_id, where, asks)

    async def _record(
        self,
        question: str,
        told: _Told,
        before: _Told | None,
        message_id: str,
        where: dict[str, str],
        asks: bool,
    ) -> None:
        if self._store.shared:
            if asks:  # not an edit of the question: the question (numbered as before)
                told.number = before.number if before is not None else 0
            else:
                try:
                    told.number = await self._number(question)
                except BridgeError as exc:
                    # Its text is known here all the same: an edit found after the one
                    # before is another replica's (or this one's, recorded though the
                    # store said it failed: withdrawn, as the text may not be the last).
                    told.number = before.number if before is not None else 0
                    log.warning(
                        "could not record the edit of message %s: %s; if another "
                        "replica holds it as a question, it asks it (or keeps its "
                        "turn) as it was asked",
                        message_id,
                        exc,
                        extra=where,
                    )
        if not self._history:
            return
        # The last told, by now (each edit waits its turn here, the last writes last).
        kept = self._question(self._told.get(question, told).text)
        try:
            changed = await self._apply(question, kept)
        except BridgeError as exc:
            log.warning(
                "could not keep the edit of message %s: %s; if it was a question "
                "answered, its conversation's history keeps it as it was asked until "
                "a reset",
                message_id,
                exc,
                extra=where,
            )
            return
        if changed:
            log.info(
                "edited question %s %s its conversation's history",
                message_id,
                "forgotten from" if kept is None else "kept as edited in",
                extra=where,
            )

    async def _number(self, question: str) -> int:
        """Record an edit of `question`: the first number no edit of it has taken yet
        (a message is edited a few times, so a few claims)."""
        number = 1
        while not await self._store.claim_event(edit_id(question, number), time.time()):
            number += 1
        return number

    async def latest(self, question: str) -> Latest:
        """How the question `question`, about to be asked, reads now: the last edit told
        here, and on a shared store, whether another replica was told a later one. A
        store that cannot say raises (the question is not asked)."""
        async with self._writing:  # the edits told so far are numbered
            told = self._told.get(question)
            text = told.text if told is not None else None
            if not self._store.shared:
                return Latest(text, False)
            after = edit_id(question, (told.number if told is not None else 0) + 1)
            return Latest(text, await self._store.event_claimed(after))

    async def settle(self, question: str) -> None:
        """The turn of `question` was just kept: an edit told meanwhile is taken, or on
        a shared store, one told to another replica has the turn forgotten."""
        try:
            async with self._writing:
                if self._store.shared and await self._store.event_claimed(edit_id(question)):
                    log.info(
                        "the question was edited as it was answered (perhaps on "
                        "another replica, perhaps more than once): its turn is not kept"
                    )
                    await self._store.forget_question(question)
                elif question in self._told:
                    await self._apply(question, self._question(self._told[question].text))
        except BridgeError as exc:
            log.warning(
                "could not keep the edit of the question: %s; its turn keeps the "
                "question as it was asked",
                exc,
            )

    def _question(self, text: str) -> str | None:
        """What `text` keeps of the question: None where nothing is to be kept."""
        return text if text and len(text) <= self._longest else None

    async def _apply(self, question: str, text: str | None) -> int:
        if text is None:
            return await self._store.forget_question(question)
        return await self._store.edit_question(question, text)
