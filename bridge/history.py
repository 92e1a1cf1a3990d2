"""Which of a conversation's turns a stateless API is sent with a question.

One rule, used twice: a dialect picks by it what it sends of the stored history,
and the store trims by it what it keeps after each answer, so nothing is kept
(and read back with every question) that would never be sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.interfaces import Turn

#: The most turns (a question and its answer) a history may be set to: a stateless
#: backend's `history`, and a route's.
MOST_TURNS = 500


def kept_from(sizes: Sequence[int], keep: int, max_chars: int | None) -> int:
    """The index of the oldest message kept of messages of `sizes` characters each,
    oldest first: of the newest `keep` messages, the newest whole question+answer
    pairs that come to at most `max_chars` characters (None: no cap)."""
    start = max(0, len(sizes) - keep) if keep > 0 else len(sizes)
    if max_chars is not None:
        size = sum(sizes[start:])
        while start < len(sizes) and size > max_chars:
            # The oldest turn goes whole: a question and its answer (the history is
            # kept in pairs).
            size -= sum(sizes[start : start + 2])
            start += 2
    return min(start, len(sizes))


def recent(history: Sequence[Turn], keep: int, max_chars: int | None) -> tuple[Turn, ...]:
    """The messages of `history` that `kept_from` keeps."""
    return tuple(history[kept_from([len(turn.content) for turn in history], keep, max_chars) :])
