"""A native stream's state (`chat.startStream` / `appendStream` / `stopStream`), and how
far a text may be streamed for good: what is appended cannot be taken back."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.fences import QUOTE_MARK
from bridge.split import closing_fence

# A line of block-quote markers alone (`> `, `> > `): a quoted line's start.
_QUOTE_MARKS = re.compile(f"(?:{QUOTE_MARK})+")


@dataclass(slots=True)
class Stream:
    """A natively streamed message: what was appended, and the newest full text."""

    sent: str = ""
    full: str = ""
    open: bool = True


def stable_prefix(markdown: str) -> str:
    """`markdown` as far as a stream may be sent it for good: without a code fence the
    renderer closed only for display (``` or ~~~, of any length, in a block quote or
    not: the closer is the open fence's own marker, in its quotes), nor a last line
    still arriving that could turn out to be that closer or a line of a quoted block
    (`> `, `> ``` so far), nor line breaks at the end (what follows them decides what
    they are): sent, a stream cannot take it back."""
    head, _, last = markdown.rpartition("\n")
    if markdown.endswith(("```", "~~~")):
        closer = closing_fence(head)
        if last != closer:
            return markdown
        shown = head.rstrip("\n")  # without the closer
        before, _, line = shown.rpartition("\n")
        if line and closer.startswith(line) and closing_fence(before) == closer:
            shown = before  # its own closing line, still arriving
        return shown.rstrip("\n")
    if last and _QUOTE_MARKS.fullmatch(last):
        return head.rstrip("\n")  # quote markers alone: what they quote is not known yet
    return markdown.rstrip("\n")
