"""Splitting Markdown answers into platform-sized messages.

Cuts fall at a paragraph boundary if one is close enough, else a line
boundary, else a space, else anywhere, but never where the message before the
cut would show nothing (blank lines, a fence's opening line), nor where the
message after it would start with a fence marker the source has in the middle
of a line. A code fence open at a cut is closed at the end of one message and
reopened (same language, in the same block quotes) at the start of the next.
Each piece is formatted for the platform and fits its limit after formatting; a
piece whose formatted text shows nothing is no message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from bridge.fences import FENCE_LINE, closes_fence, in_quotes, quotes_of

FENCE = "```"
Formatter = Callable[[str], str]


class _Fence(NamedTuple):
    """A code fence left open: the quote markers it stands in, its marker, its info
    string."""

    quote: str  # "> " for each block quote, "" for none
    marker: str
    info: str


def _opener(text: str, continued: int = -1) -> _Fence | None:
    """The code fence left open at the end of `text`, or None.

    The line at offset `continued` (when given) is the rest of a line cut in two:
    only a line's start can open or close a fence, and it goes on in the quotes the
    line began in.
    """
    if "```" not in text and "~~~" not in text:
        return None  # most answers: no line to look at
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()  # (what follows a last line break is no line yet)
    skip = text.count("\n", 0, continued) if 0 <= continued <= len(text) else -1
    opened: _Fence | None = None
    for at, line in enumerate(lines):
        if at == skip:
            continue
        if opened is not None:
            inner = in_quotes(line, opened.quote)
            if inner is not None:
                if closes_fence(opened.marker, inner):
                    opened = None
                continue
            opened = None  # its quote ended: the line may open another
        match = FENCE_LINE.match(line)
        if match is not None:
            opened = _Fence(quotes_of(match), match.group(3), match.group(4).strip())
    return opened


def closing_fence(text: str) -> str | None:
    """The line that closes the code fence left open at the end of `text` (its quote
    markers and marker), or None."""
    opened = _opener(text)
    return None if opened is None else opened.quote + opened.marker


def close_fences(text: str) -> str:
    """`text` with an open code fence closed, for display."""
    return _closed(text, _opener(text))


def _closed(text: str, opened: _Fence | None) -> str:
    if opened is None:
        return text
    return text + ("\n" if not text.endswith("\n") else "") + opened.quote + opened.marker


@dataclass(frozen=True, slots=True)
class Piece:
    """One message's worth: its formatted text, and where it ended in the source."""

    text: str
    end: int  # offset in the source Markdown just past this piece
    reopen: str  # the fence line to prefix the next piece with ("" when none)


# A line that shows nothing: blank, or a code fence's marker with at most a language
# after it (an info string of more is shown by some platforms: Discord shows
# ```json{"k": 1} as code).
_SILENT_LINE = re.compile(r"\s*(?:(?:`{3,}|~{3,})[\w+#.-]*\s*)?")


def _blank(text: str, continued: int = -1) -> bool:
    """Whether `text` shows nothing as a message: blank lines and code fence lines only
    (an empty code block, or nothing at all). The line at offset `continued`, the rest
    of a line cut in two, is no fence line."""
    if "```" not in text and "~~~" not in text:
        return not text or text.isspace()
    if continued >= 0:
        end = text.find("\n", continued)
        if text[continued : len(text) if end < 0 else end].strip():
            return False
    return all(_SILENT_LINE.fullmatch(line) for line in text.split("\n"))


# A fence line with nothing after its marker.
_BARE_FENCE = re.compile(r"\s*(?:`{3,}|~{3,})\s*")


def _shows(formatted: str) -> bool:
    """Whether a formatted message shows anything: a platform refuses a blank one
    (Slack's formatting shows an empty heading as nothing), and an empty code block
    is no message either."""
    if "```" not in formatted and "~~~" not in formatted:
        return bool(formatted) and not formatted.isspace()
    return not all(
        not line.strip() or _BARE_FENCE.fullmatch(line) for line in formatted.split("\n")
    )


# What, at the start of the rest of a line cut at a space, a message would read as a
# fence line: a fence marker, or the start of one at the end of what is known, in a
# block quote or not (`> ````). (Eight quotes deep at most: tried at each space of a
# run of `> > > …`, more would read that run again from each.)
_MARKER_AHEAD = re.compile(r"[^\S\n]*(?:>[^\S\n]*){0,8}(```|~~~|`{0,2}\Z|~{0,2}\Z)")
_SPACED_MARKER = re.compile(r"[ \t]+(```|~~~)|[ \t]*(?:>[ \t]*)+(```|~~~|`{0,2}\Z|~{0,2}\Z)")


# What a cut at a space inside would break in two, showing raw markup on both
# sides: a code span, a Markdown link or image, a <...> link, bold, italic,
# underlined (Discord's `__`) or struck words, or a spoiler (Discord's `||`: kept
# whole on every platform, where `||x y||` is rare and whole costs nothing).
# Emphasis opens and closes at a word's edge as the platforms' formatters read it:
# a star within a word too (`the **API**s`), an underscore not (`snake_case_name`).
# Their bodies hold no mark of their kind: a stray one stops a try at once.
_INLINE = re.compile(
    r"`[^`\n]+`|!?\[[^\]\n]*\]\([^)\s]*\)|<[^<>\s][^<>\n]*>"
    r"|\*\*(?=\S)[^*\n]*?(?<=\S)\*\*|~~(?=\S)[^~\n]*?(?<=\S)~~"
    r"|(?<![_\w])__(?=\S)[^_\n]*?(?<=\S)__(?![_\w])"
    r"|(?<!\*)\*(?=[^\s*])[^*\n]*?(?<=[^\s*])\*(?!\*)"
    r"|(?<![_\w])_(?=\S)[^_\n]*?(?<=\S)_(?![_\w])"
    r"|\|\|(?=\S)[^|\n]*?(?<=\S)\|\|"
)
# One of those opened and not closed before the window's end: it closes after it.
_OPENED = re.compile(
    r"`[^`\n]*$|!?\[[^\]\n]*(?:\](?:\([^)\s]*)?)?$|<[^<>\s][^<>\n]*$"
    r"|\*\*(?=\S)[^*\n]*\*?$|~~(?=\S)[^~\n]*~?$"  # (half its closing mark in)
    r"|(?<![_\w])__(?=\S)[^_\n]*_?$|(?<!\*)\*(?=[^\s*])[^*\n]*$"
    r"|(?<![_\w])_(?=\S)[^_\n]*$|\|\|(?=\S)[^|\n]*\|?$"
)


def _inline_spans(window: str, start: int) -> list[tuple[int, int]]:
    """Where in `window` (from `start`) a cut at a space would break a code span, a
    link or emphasis: those closed within it, and one opened in its last quarter
    that closes after it (one opened earlier is more likely a stray backtick, bracket
    or star, and keeping it whole would leave the message short)."""
    spans = [m.span() for m in _INLINE.finditer(window, start)]
    rest = spans[-1][1] if spans else start
    # From the last quarter on: a stray mark earlier (`*args`, `2*x`) would otherwise
    # be the one found, and hide one opened there.
    opened = _OPENED.search(window, max(rest, len(window) * 3 // 4))
    if opened is not None:
        spans.append((opened.start(), len(window) + 1))
    return spans


def _cut_point(text: str, budget: int, floor: int, continued: int = -1) -> int:
    """The best cut at or before `budget` (and after `floor`).

    A cut is taken only where the message before it shows some text: not
    before leading blank lines, nor right after a code fence's opening line
    (that message would be blank, or an empty code block, and a platform
    refuses a blank message). A space inside a code span or a link is no cut,
    nor one before ``` or ~~~ (the next message would start with it, and read
    it as a fence). With no such cut the text is cut at `budget`, between
    characters a reader sees as one, and not just before a run of ` or ~.
    `continued` is as for `_opener`.
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
                if _MARKER_AHEAD.match(window, pos + 1):
                    # What follows would open the next message as a fence: cut before
                    # the spaces in front of it.
                    end = pos
                    while end > 0 and window[end - 1] in " \t":
                        end -= 1
                    continue
            head = text[:pos].rstrip()
            if _blank(head, continued):
                break  # an earlier cut would show even less
            line = head.rfind("\n") + 1
            if _opener(head, continued) is not None and _opener(head[:line], continued) is None:
                if sep != " " or line > floor or "\n" in window[pos:]:
                    end = line  # the last line opens a fence: cut before it
                    continue
                # It starts the message and goes on past it: cut inside it (the
                # message shows its part as code).
            return pos + len(sep)
    # The character at the budget is there whenever a piece is cut from a streaming
    # answer (its text is longer than a message), so this cut does not move later.
    cut = grapheme_start(text, max(budget, floor + 1), floor + 1)
    if cut < len(text) and (text[cut] in "`~" or _SPACED_MARKER.match(text, cut)):
        # The next message would start with what may be a fence marker (of a run
        # of ` or ~, only the first may be known yet): cut before it, and the
        # spaces and quote marks before it.
        back = cut
        while back > floor + 1 and cut - back < 64 and text[back] in "`~ \t>":
            back -= 1
        if text[back] not in "`~ \t>":
            cut = grapheme_start(text, back, floor + 1)
    return cut


def _joins_previous(char: str) -> bool:
    """Whether `char` belongs to the character before it (a combining mark, a
    joiner, a variation selector, an emoji skin tone, a Hangul syllable's jamo, Thai's
    and Lao's vowel AM, a letter by its category but a mark of the syllable before)."""
    code = ord(char)
    return (
        code == 0x200D
        or code in (0x0E33, 0x0EB3)
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


def grapheme_start(text: str, cut: int, lowest: int) -> int:
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
    """Split `markdown[start:]` (continuing after `prefix`, a reopened fence) into pieces.

    A piece whose formatted text shows nothing is no message: it is left out, and a
    text that shows nothing has no piece.
    """
    pieces: list[Piece] = []
    pos = _past_breaks(markdown, start)  # an answer's leading blank lines show nothing
    while True:
        # After a cut inside a line, the rest goes on as that line: no fence line.
        inside = 0 < pos < len(markdown) and markdown[pos - 1] != "\n"
        rest = prefix + markdown[pos:]
        floor = len(prefix)
        continued = floor if inside else -1
        whole = fmt(_closed(rest, _opener(rest, continued)))
        if len(whole) <= limit:
            if _shows(whole):
                pieces.append(Piece(whole, len(markdown), ""))
            return pieces
        budget = limit - len(FENCE) - 2
        while True:
            cut = _cut_point(rest, max(budget, floor + 1), floor, continued)
            head = rest[:cut].rstrip("\r\n")
            opened = _opener(head, continued)
            info = _cut_opening(rest, head, cut, opened, continued)
            if info >= 0 and opened is not None:  # the rest of the line shows as code
                shown = fmt(_closed(f"{head[:info]}\n{opened.quote}{head[info:]}", opened))
            else:
                shown = fmt(_closed(head, opened))
            if len(shown) <= limit:
                break
            if cut <= floor + 1:
                if not prefix:
                    break  # one character is over the limit: no limit a platform has
                # The reopened fence or table header leaves no room once formatted (a
                # header full of `&` on Slack): the rest goes on without it.
                prefix, rest, floor = "", markdown[pos:], 0
                continued = 0 if inside else -1
                budget = limit - len(FENCE) - 2
                continue
            # Formatting grew the text (escapes): try the share of it that fits. Taking
            # off only the excess would overshoot where it more than doubles (Slack's
            # `&` is `&amp;`) and cut a piece to a few characters.
            budget = min(budget - 1, (cut - floor) * limit // len(shown) + floor)
        # Skip the line breaks we cut at, so the next message does not start blank.
        cut_at = pos + cut - len(prefix)
        pos = _past_breaks(markdown, cut_at)
        inside = 0 < pos < len(markdown) and markdown[pos - 1] != "\n"
        if pos >= len(markdown) or _blank(markdown[pos:], 0 if inside else -1):
            if _shows(shown):
                pieces.append(Piece(shown, len(markdown), ""))  # the rest shows nothing
            return pieces
        # The fence left open is reopened with its quotes, marker and language; a
        # table cut between two of its rows (one line break, no blank line) goes on
        # under its header again.
        breaks = rest[len(head) : cut] + markdown[cut_at:pos]
        if opened is not None and opened.quote and not inside:
            end = markdown.find("\n", pos)
            following = markdown[pos : len(markdown) if end < 0 else end]
            if breaks.count("\n") > 1 or in_quotes(following, opened.quote) is None:
                opened = None  # it ended with its quote: a blank line, or one out of it
        if opened is not None:
            prefix = _reopening(opened if info < 0 else opened._replace(info=""), limit)
            if prefix and inside:
                prefix += opened.quote  # the rest of the line goes on in its quotes
        elif breaks.count("\n") == 1:
            prefix = _table_header(head, markdown[pos : pos + 2000], limit)
        else:
            prefix = ""
        if _shows(shown):
            pieces.append(Piece(shown, pos, prefix))


def _cut_opening(rest: str, head: str, cut: int, opened: _Fence | None, continued: int) -> int:
    """Where the info string starts in the last line of `head`, when that line opens
    the fence left open and the cut fell inside it (an opening line longer than a
    message); else -1.

    That message shows the part of the line it holds as code: taken for an info
    string, it would show nothing (an empty code block; Slack drops the info string).
    """
    if opened is None or len(head) != cut or cut >= len(rest) or rest[cut] in "\r\n":
        return -1
    line = head.rfind("\n") + 1
    if _opener(head[:line], continued) is not None:
        return -1
    match = FENCE_LINE.match(head[line:])
    return -1 if match is None else line + match.end(3)


def _reopening(opened: _Fence, limit: int) -> str:
    """The line to reopen a fence with in the next message: its quote markers, its
    marker and language (the first word of its info string, not all of it: an opening
    line can be longer than a message), or its marker alone where that would pass a
    quarter of one."""
    quote, marker, info = opened
    words = info.split(maxsplit=1)
    for line in (f"{quote}{marker}{words[0]}\n" if words else "", f"{quote}{marker}\n"):
        if line and len(line) <= limit // 4:
            return line
    return ""


TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
# The longest line taken for a table row still arriving: past it, a line begun with
# `|` shows as it is (it may be no row, and held back it would look stuck).
ROW_AT_MOST = 1000


def row_arriving(text: str, start: int = 0, *, cut: bool = False) -> int:
    """Where the table row still arriving at the end of `text` begins (not before
    `start`): its last line, when that begins with `|` (not a spoiler's `||`), is not
    in a code block, and stands under a table's row or rule, or (while the text is
    still coming) opens a block; else `len(text)`. With `cut` (the text ends there for
    good), a last line that is a whole row is kept.

    Its line break not there yet, it may be half a row, and half a row is no row: the
    platforms show it under the table as raw Markdown (`| Paris | 2.1`). A line begun
    with `|` that goes on a paragraph is prose (`|x| is never negative`), shown as it
    comes, and so is one a cut leaves: it may be prose too.
    """
    line = text.rfind("\n") + 1
    if line < start or len(text) - line > ROW_AT_MOST:
        return len(text)
    row = text[line:].lstrip(" \t")
    if not row.startswith("|") or row.startswith("||") or (cut and TABLE_ROW.match(row)):
        return len(text)
    above = text[text.rfind("\n", 0, line - 1) + 1 : line - 1] if line else ""
    in_table = TABLE_ROW.match(above) or TABLE_RULE.match(above) or not (cut or above.strip())
    if not in_table or _opener(text[:line]) is not None:
        return len(text)
    return line


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
