"""A brake on the bot and another bot answering each other for ever (`ignore_bots: false`):
another assistant that answers in the threads it is in would answer each answer, and
each of its answers would be asked of the chat API (paid for) and answered in turn."""

from __future__ import annotations

from adapters.platforms.recent import Recent

# Bot messages in a row, with no person's between, that a conversation takes; the next
# bots' messages there are not answered until a person writes in it.
BOT_TURNS = 3
# Conversations remembered at most (the least recently heard from are forgotten first).
MAX_PLACES = 1000

# (workspace, channel, thread): a thread, or a DM
Place = tuple[str, str, str | None]


class BotTurns:
    """Bot messages handed over in a row in each conversation."""

    limit = BOT_TURNS

    def __init__(self) -> None:
        # bot messages in a row there, and the last one's id (a message Slack sends
        # twice, as a retry or as message and app_mention, is one turn)
        self._turns: Recent[Place, tuple[int, str]] = Recent(MAX_PLACES)

    def person(self, place: Place) -> None:
        """A person wrote in `place`: bots are answered there again."""
        self._turns.pop(place)

    def answered(self, place: Place, root: str) -> None:
        """A person wrote in the thread of `root`, a message at `place` (a channel's top
        level): where it is the last bot message counted there, bots are answered there
        again (people discussing a bot's post, not two bots answering each other)."""
        found = self._turns.get(place)
        if found is not None and found[1] == root:
            self._turns.pop(place)

    def bot(self, place: Place, message_id: str) -> int:
        """A bot wrote `message_id` in `place`: how many bot messages in a row that makes
        (past `limit`, it is not to be answered)."""
        count, last = self._turns.pop(place) or (0, "")
        if message_id != last:
            count += 1
        self._turns.put(place, (count, message_id))
        return count
