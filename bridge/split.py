"""Splitting Markdown answers into platform-sized messages.

Cuts fall at a paragraph boundary if one is close enough, else a line
boundary, else a space, else anywhere. A code fence open at a cut is closed at
the end of one message and reopened (same language) at the start of the next.
Each piece is formatted for the platform and fits its limit after formatting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FENCE = "```"
Formatter = Callable[[str], str]


def open_fence(text: str) -> str | None:
    """The info string of a code fence left open at the end of `text`, or None."""
    lang: str | None = None
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(FENCE):
            if lang is None:
                lang = stripped[3:].strip()
            else:
                lang = None
    return lang


def close_fences(text: str) -> str:
    """`text` with an open code fence closed, for display."""
    if open_fence(text) is None:
        return text
    return text + ("\n" if not text.endswith("\n") else "") + FENCE


@dataclass(frozen=True, slots=True)
class Piece:
    """One message's worth: its formatted text, and where it ended in the source."""

    text: str
    end: int  # offset in the source Markdown just past this piece
    reopen: str  # the fence line to prefix the next piece with ("" when none)


def _cut_point(text: str, budget: int, floor: int) -> int:
    """The best cut at or before `budget` (and after `floor`)."""
    window = text[:budget]
    # Prefer a paragraph break in the last half of the window, then a line break.
    for sep, min_frac in (("\n\n", 0.5), ("\n", 0.3), (" ", 0.3)):
        pos = window.rfind(sep)
        if pos > floor and pos >= budget * min_frac:
            return pos + len(sep)
    for sep in ("\n", " "):
        pos = window.rfind(sep)
        if pos > floor:
            return pos + len(sep)
    return max(budget, floor + 1)


def split_pieces(
    markdown: str, limit: int, fmt: Formatter, *, start: int = 0, prefix: str = ""
) -> list[Piece]:
    """Split `markdown[start:]` (continuing after `prefix`, a reopened fence) into pieces."""
    pieces: list[Piece] = []
    pos = start
    while True:
        rest = prefix + markdown[pos:]
        whole = fmt(close_fences(rest))
        if len(whole) <= limit:
            pieces.append(Piece(whole, len(markdown), ""))
            return pieces
        budget = limit - len(FENCE) - 2
        floor = len(prefix)
        while True:
            cut = _cut_point(rest, max(budget, floor + 1), floor)
            head = rest[:cut].rstrip("\n")
            lang = open_fence(head)
            shown = fmt(close_fences(head))
            if len(shown) <= limit or cut <= floor + 1:
                break
            budget -= max(1, len(shown) - limit)
        consumed = cut - len(prefix)
        pos += consumed
        # Skip the newlines we cut at, so the next message does not start blank.
        while pos < len(markdown) and markdown[pos] == "\n":
            pos += 1
        prefix = f"{FENCE}{lang}\n" if lang is not None else ""
        pieces.append(Piece(shown, pos, prefix))
        if pos >= len(markdown):
            return pieces


def split_markdown(markdown: str, limit: int, fmt: Formatter = lambda s: s) -> list[str]:
    """Formatted messages for `markdown`, each within `limit` characters."""
    return [p.text for p in split_pieces(markdown, limit, fmt)]
