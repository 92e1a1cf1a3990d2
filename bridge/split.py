"""Splitting Markdown answers into platform-sized messages.

Cuts fall at a paragraph boundary if one is close enough, else a line
boundary, else a space, else anywhere, but never where the message before the
cut would show nothing (blank lines, a fence's opening line). A code fence open
at a cut is closed at the end of one message and reopened (same language) at
the start of the next. Each piece is formatted for the platform and fits its
limit after formatting.
"""

from __future__ import annotations

import re
import unicodedata
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


def _blank(text: str) -> bool:
    """Whether `text` shows nothing as a message: blank lines and code fence lines only."""
    if "```" not in text and "~~~" not in text:
        return not text or text.isspace()
    return all(not line.strip() or _FENCE_LINE.match(line) for line in text.split("\n"))


# What a cut at a space inside would break in two, showing raw markup on both
# sides: a code span, a Markdown link or image, a <...> link.
_INLINE = re.compile(r"`[^`\n]+`|!?\[[^\]\n]*\]\([^)\s]*\)|<[^<>\s][^<>\n]*>")
# One of those opened and not closed before the window's end: it closes after it.
_OPENED = re.compile(r"`[^`\n]*$|!?\[[^\]\n]*(?:\](?:\([^)\s]*)?)?$|<[^<>\s][^<>\n]*$")


def _inline_spans(window: str, start: int) -> list[tuple[int, int]]:
    """Where in `window` (from `start`) a cut at a space would break a code span or a
    link: those closed within it, and one opened in its last quarter that closes
    after it (one opened earlier is more likely a stray backtick or bracket, and
    keeping it whole would leave the message short)."""
    spans = [m.span() for m in _INLINE.finditer(window, start)]
    rest = spans[-1][1] if spans else start
    opened = _OPENED.search(window, rest)
    if opened is not None and opened.start() >= len(window) * 3 // 4:
        spans.append((opened.start(), len(window) + 1))
    return spans


def _cut_point(text: str, budget: int, floor: int) -> int:
    """The best cut at or before `budget` (and after `floor`).

    A cut is taken only where the message before it shows some text: not
    before leading blank lines, nor right after a code fence's opening line
    (that message would be blank, or an empty code block, and a platform
    refuses a blank message). A space inside a code span or a link is no cut.
    With no such cut the text is cut at `budget`, between characters a reader
    sees as one.
    """
    window = text[:budget]
    inline: list[tuple[int, int]] | None = None
    # Prefer a paragraph break in the last half of the window, then a line break.
    for sep, min_frac in (("\n\n", 0.5), ("\n", 0.3), (" ", 0.3), ("\n", 0.0), (" ", 0.0)):
        end = len(window)
        while (pos := window.rfind(sep, 0, end)) > floor and pos >= budget * min_frac:
            if sep == " ":
                if inline is None:
                    # Within the window only: the cut must not move as text arrives
                    # after it (a streamed message already frozen would change).
                    inline = _inline_spans(window, max(floor, 0))
                around = next((a for a, b in inline if a < pos < b), None)
                if around is not None:
                    end = around  # inside a code span or a link: cut before it
                    continue
            head = text[:pos].rstrip()
            if _blank(head):
                break  # an earlier cut would show even less
            line = head.rfind("\n") + 1
            if _opener(head) is not None and _opener(head[:line]) is None:
                end = line  # the last line opens a fence: cut before it
                continue
            return pos + len(sep)
    # The character at the budget is there whenever a piece is cut from a streaming
    # answer (its text is longer than a message), so this cut does not move later.
    return _grapheme_start(text, max(budget, floor + 1), floor + 1)


def _joins_previous(char: str) -> bool:
    """Whether `char` belongs to the character before it (a combining mark, a
    joiner, a variation selector, an emoji skin tone, a Hangul syllable's jamo)."""
    code = ord(char)
    return (
        code == 0x200D
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F  # the tags of subdivision flags
        or 0x1160 <= code <= 0x11FF  # a Hangul syllable's vowel and last consonant,
        or 0xD7B0 <= code <= 0xD7FF  # written apart (NFD, as macOS keeps file names)
        or unicodedata.category(char) in ("Mn", "Mc", "Me")
    )


def _joins_next(char: str) -> bool:
    """Whether `char` belongs to the character after it (a joiner, a virama)."""
    return char == "\u200d" or unicodedata.combining(char) == 9


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _grapheme_start(text: str, cut: int, lowest: int) -> int:
    """`cut`, moved back (not below `lowest`, nor more than a few characters) so
    that it does not fall inside what a reader sees as one character: an accented
    letter, an emoji sequence joined by ZWJ, a flag."""
    start = cut
    while (
        cut > lowest
        and start - cut < 32
        and cut < len(text)
        and (_joins_previous(text[cut]) or _joins_next(text[cut - 1]))
    ):
        cut -= 1
    if cut < len(text) and _regional(text[cut]):
        run = cut
        while run > 0 and _regional(text[run - 1]):
            run -= 1
        if (cut - run) % 2 and cut - 1 >= lowest:
            cut -= 1  # a flag is two regional indicators: keep the pair together
    return cut if start - cut < 32 else start


def split_pieces(
    markdown: str, limit: int, fmt: Formatter, *, start: int = 0, prefix: str = ""
) -> list[Piece]:
    """Split `markdown[start:]` (continuing after `prefix`, a reopened fence) into pieces."""
    pieces: list[Piece] = []
    pos = _past_breaks(markdown, start)  # an answer's leading blank lines show nothing
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
            head = rest[:cut].rstrip("\r\n")
            opened = _opener(head)
            shown = fmt(_closed(head, opened))
            if len(shown) <= limit or cut <= floor + 1:
                break
            # Formatting grew the text (escapes): try the share of it that fits. Taking
            # off only the excess would overshoot where it more than doubles (Slack's
            # `&` is `&amp;`) and cut a piece to a few characters.
            budget = min(budget - 1, (cut - floor) * limit // len(shown) + floor)
        # Skip the line breaks we cut at, so the next message does not start blank.
        cut_at = pos + cut - len(prefix)
        pos = _past_breaks(markdown, cut_at)
        if pos >= len(markdown) or _blank(markdown[pos:]):
            pieces.append(Piece(shown, len(markdown), ""))  # the rest shows nothing
            return pieces
        # The fence left open is reopened with its own line; a table cut
        # between two of its rows (one line break, no blank line) goes on under
        # its header again.
        if opened is not None:
            prefix = f"{opened[0]}{opened[1]}\n"
        elif (rest[len(head) : cut] + markdown[cut_at:pos]).count("\n") == 1:
            prefix = _table_header(head, markdown[pos : pos + 2000], limit)
        else:
            prefix = ""
        pieces.append(Piece(shown, pos, prefix))


TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _table_header(head: str, after: str, limit: int) -> str:
    """The header and rule lines of the Markdown table `head` ends inside, when
    `after` goes on with its rows; else "".

    Without them, the rows of the next message are not a table any more (Slack's
    formatter shows a table as preformatted text only under its header).
    """
    following = after.split("\n", 2)
    # A row, maybe still arriving (its closing pipe not yet there), and not the
    # header of another table (a header is followed by its rule line).
    if "|" not in head[-2:] or not following[0].lstrip().startswith("|"):
        return ""
    if len(following) > 1 and TABLE_RULE.match(following[1]):
        return ""
    lines = head.split("\n")
    i = len(lines)
    while i > 0 and (TABLE_ROW.match(lines[i - 1]) or TABLE_RULE.match(lines[i - 1])):
        i -= 1
    for j in range(i, len(lines) - 1):
        if TABLE_ROW.match(lines[j]) and TABLE_RULE.match(lines[j + 1]):
            header = f"{lines[j]}\n{lines[j + 1]}\n"
            return header if len(header) <= limit // 4 else ""
    return ""


def _past_breaks(markdown: str, pos: int) -> int:
    """The offset past the line breaks (LF or CRLF) at `pos`."""
    while pos < len(markdown) and markdown[pos] in "\r\n":
        pos += 1
    return pos


def split_markdown(markdown: str, limit: int, fmt: Formatter = lambda s: s) -> list[str]:
    """Formatted messages for `markdown`, each within `limit` characters."""
    return [p.text for p in split_pieces(markdown, limit, fmt)]
