"""What makes a line a code fence: one reading for the splitter and every platform's
formatting, so a block one of them takes for code the others take for code too."""

from __future__ import annotations

import re

# A fence line: the block quotes it stands in (`> `, `> > ` or none: CommonMark's
# marker is up to three spaces, `>` and a space or not), its indent, three or more
# backticks (whose info string holds none: ```x``` is inline code) or tildes, and
# the info string. Any indent: a fence in a list item is indented as deep as the
# item's text (four spaces or a tab under `1. `), which a line alone does not tell,
# and the platforms read such a line as a fence too (Discord wherever ``` stands).
# (The quote markers are taken atomically: `> > > x` is read once, not in every way
# its spaces could be shared between them.)
QUOTE_MARK = r" {0,3}>[ \t]?"  # one block quote's marker (a pattern, for others to build on)
FENCE_LINE = re.compile(rf"((?:{QUOTE_MARK})*+)(\s*)(`{{3,}}(?=[^`]*$)|~{{3,}})(.*)$")
_QUOTE_MARK = re.compile(QUOTE_MARK)


def quotes_of(opening: re.Match[str]) -> str:
    """The block quotes a fence line `FENCE_LINE` matched stands in, as `in_quotes`
    takes them: "> " for each."""
    return "> " * opening.group(1).count(">")


def in_quotes(line: str, quote: str) -> str | None:
    """`line` past the markers of the block quotes `quote` stands for; None where it
    is in fewer (the quote ended there, and a code block in it with it)."""
    at = 0
    for _ in range(quote.count(">")):
        mark = _QUOTE_MARK.match(line, at)
        if mark is None:
            return None
        at = mark.end()
    return line[at:]


def closes_fence(marker: str, line: str) -> bool:
    """Whether `line` (past the quote markers of the block: see `in_quotes`) closes
    the fenced block opened with `marker`: a fence line of the same character, at
    least as many, with nothing after it (CommonMark), in no further quote."""
    closing = FENCE_LINE.match(line)
    return (
        closing is not None
        and not closing.group(1)
        and closing.group(3)[0] == marker[0]
        and len(closing.group(3)) >= len(marker)
        and not closing.group(4).strip()
    )
