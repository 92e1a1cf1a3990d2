"""Splitting Markdown answers into platform-sized messages.

Cuts fall at a paragraph boundary if one is close enough, else a line
boundary, else a space, else anywhere. A code fence open at a cut is closed at
the end of one message and reopened (same language) at the start of the next.
Each piece is formatted for the platform and fits its limit after formatting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

FENCE = "```"
Formatter = Callable[[str], str]
# A fence line: three or more backticks (whose info string has none: ```x``` is inline
# code) or tildes, then the info string.
_FENCE_LINE = re.compile(r"^\s*(`{3,}(?=[^`]*$)|~{3,})(.*)$")


def _opener(text: str) -> tuple[str, str] | None:
    """(marker, info string) of a code fence left open at the end of `text`, or None."""
    if "```" not in text and "~~~" not in text:
        return None  # most answers: no line to look at
    opened: tuple[str, str] | None = None
    for line in text.split("\n"):
        match = _FENCE_LINE.match(line)
        if match is None:
            continue
        marker, info = match.group(1), match.group(2).strip()
        if opened is None:
            opened = (marker, info)
        elif marker[0] == opened[0][0] and len(marker) >= len(opened[0]) and not info:
            opened = None  # closed by the same character, at least as many, alone
    return opened


def open_fence(text: str) -> str | None:
    """The opening line (marker and info string) of a code fence left open at the end
    of `text`, to reopen it with, or None."""
    opened = _opener(text)
    return None if opened is None else opened[0] + opened[1]


def close_fences(text: str) -> str:
    """`text` with an open code fence closed, for display."""
    return _closed(text, _opener(text))


def _closed(text: str, opened: tuple[str, str] | None) -> str:
    if opened is None:
        return text
    return text + ("\n" if not text.endswith("\n") else "") + opened[0]


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
            opened = _opener(head)
            shown = fmt(_closed(head, opened))
            if len(shown) <= limit or cut <= floor + 1:
                break
            budget -= max(1, len(shown) - limit)
        consumed = cut - len(prefix)
        pos += consumed
        # Skip the newlines we cut at, so the next message does not start blank.
        while pos < len(markdown) and markdown[pos] == "\n":
            pos += 1
        # The fence left open is reopened with its own line.
        prefix = f"{opened[0]}{opened[1]}\n" if opened is not None else ""
        pieces.append(Piece(shown, pos, prefix))
        if pos >= len(markdown):
            return pieces


def split_markdown(markdown: str, limit: int, fmt: Formatter = lambda s: s) -> list[str]:
    """Formatted messages for `markdown`, each within `limit` characters."""
    return [p.text for p in split_pieces(markdown, limit, fmt)]
