"""The questions Discord replies answer, as their targets share them: which ones
stop, and why, when a moderator deletes them, their place goes, or the bot loses it."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable

from bridge.errors import PlaceGone

log = logging.getLogger("chat_bridge.discord")


class Question:
    """The message (or /ask) a reply answers, as its targets share it: `deleted` once
    a moderator removed it, or the channel or thread it was asked in (the answer
    then stops), or the bot lost that place; `place_shows` then: whether its asker
    still sees the place (an /ask dropped so says `why` to them); `taken_back`: the
    question itself was deleted (its answer's messages then go too). `places`: the ids of that
    channel and thread; `replies_in`: where its answer is posted as the bot's own
    messages (None: through a command's webhook)."""

    def __init__(self, places: frozenset[int] = frozenset(), replies_in: int | None = None) -> None:
        self.deleted = False
        self.taken_back = False
        self.posted = False  # its answer has a message already (edits go on)
        self.places = places
        self.replies_in = replies_in
        self.why = "the question was deleted while it was being answered."
        self.place_shows = False

    def check(self) -> None:
        """Raise PlaceGone once the question (or its place) is gone."""
        if self.deleted:
            raise PlaceGone(self.why)


class Questions:
    """The questions being answered or waiting their turn, by message id, as long
    as a target holds them (so never more than the bridge has taken)."""

    def __init__(self) -> None:
        self._by_id: weakref.WeakValueDictionary[int, Question] = weakref.WeakValueDictionary()

    def add(self, message_id: int, question: Question) -> None:
        self._by_id[message_id] = question

    def held(self, message_id: int) -> Question | None:
        """The question of `message_id` still being answered or waiting, if any."""
        return self._by_id.get(message_id)

    def deleted(self, message_ids: Iterable[int]) -> None:
        """Discord says these messages were deleted."""
        for message_id in message_ids:
            question = self._by_id.pop(message_id, None)
            if question is not None:
                log.info(
                    "question %s was deleted: its answer stops, and what it showed is deleted",
                    message_id,
                )
                question.deleted = True
                question.taken_back = True

    def place_gone(self, place_id: int) -> None:
        """The channel or thread `place_id` was deleted (its threads with a channel):
        the questions asked there are not answered, nor sent to the chat API."""
        if stopped := self._stop({place_id}, "the channel or thread it was asked in was deleted."):
            log.info(
                "channel or thread %s was deleted: the %d question(s) asked there "
                "stop, and none still waiting is sent to the chat API",
                place_id,
                stopped,
                extra={"platform": "discord", "channel": str(place_id)},
            )

    def out_of_reach(self, place_id: int) -> None:
        """Discord answered "Missing Access" in the channel or thread `place_id`: the bot
        was removed from its server, or may no longer see it (the gateway's event may
        never have come). The questions asked there are not answered, nor sent to the
        chat API; their places still show, so a waiting /ask's asker is told."""
        why = "the bot can no longer reach the channel or thread it was asked in."
        if stopped := self._stop({place_id}, why, place_shows=True):
            log.info(
                "the bot cannot reach channel or thread %s (Discord answers Missing "
                "Access): the %d question(s) asked there stop, and none still waiting "
                "is sent to the chat API",
                place_id,
                stopped,
                extra={"platform": "discord", "channel": str(place_id)},
            )

    def server_left(self, server_id: int, place_ids: set[int]) -> None:
        """The bot was removed from server `server_id` (kicked, or the server deleted),
        whose channels and threads are `place_ids`: the questions asked there are not
        answered, nor sent to the chat API. A waiting /ask's asker is told (a kick
        leaves its place showing)."""
        why = "the bot was removed from the server it was asked in."
        if stopped := self._stop(place_ids, why, place_shows=True):
            log.info(
                "the bot was removed from server %s: the %d question(s) asked there stop, "
                "and none still waiting is sent to the chat API",
                server_id,
                stopped,
                extra={"platform": "discord"},
            )

    def _stop(self, place_ids: set[int], why: str, *, place_shows: bool = False) -> int:
        """Mark the questions asked in any of `place_ids` gone, saying `why` (to their
        askers too where the place still shows to them); how many."""
        gone = [q for q in list(self._by_id.values()) if q.places & place_ids and not q.deleted]
        for question in gone:
            question.deleted = True
            question.why = why
            question.place_shows = place_shows
        return len(gone)

    def refused(self, place_id: int) -> None:
        """Discord refused the bot's message in `place_id` for a missing permission
        (Send Messages taken away, which the cache did not know): the other questions
        whose answers have no message there yet would be refused too, after the chat
        API was paid."""
        # Those with a message already go on: Discord lets the bot edit its own.
        refused = [
            q
            for q in list(self._by_id.values())
            if q.replies_in == place_id and not (q.deleted or q.posted)
        ]
        for question in refused:
            question.deleted = True
            question.why = "Discord does not let the bot send messages there any more."
        if refused:
            log.info(
                "Discord refused the bot's message in %s (a missing permission): the "
                "%d question(s) to be answered there stop, and none still waiting is "
                "sent to the chat API",
                place_id,
                len(refused),
                extra={"platform": "discord", "channel": str(place_id)},
            )
