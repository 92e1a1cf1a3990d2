"""What a live reply's messages show of its text: what shows at all, what is held back
while it arrives, notes shown as written, and what is left of a message cut short."""

from __future__ import annotations

import re

from bridge.split import close_fences, row_arriving


def shows(text: str) -> bool:
    """Whether `text` shows anything: a platform refuses a blank message (Discord trims
    the content and answers 50006), so whitespace alone counts as no text."""
    return bool(text) and not text.isspace()


# A link still arriving at the end of the text ("[the guide](https://do"): a progress
# edit shows the text before it, and the link once whole (half of one shows as raw
# Markdown, its address cut short). Bounded: a "[" that never closes is shown soon.
_LINK_ARRIVING = re.compile(r"!?\[[^\[\]\n]{0,200}(?:\](?:\([^()\s]{0,500})?)?\Z")
_ARRIVING_AT_MOST = 720  # the longest match the pattern can make, and a little more


# Marks that would make text in a note markup (an API's `max_completion_tokens` would
# end the note's italics), and the code spans they are kept in: the bridge's own
# notices name a command in one.
_MARKS = re.compile(r"[\\`*_~|\[\]]")
_CODE_SPAN = re.compile(r"`[^`\n]+`")


def as_text(text: str) -> str:
    """`text` as Markdown shows it as written: its marks escaped, but in code spans."""
    out: list[str] = []
    last = 0
    for span in _CODE_SPAN.finditer(text):
        out += (_MARKS.sub(r"\\\g<0>", text[last : span.start()]), span.group())
        last = span.end()
    return "".join(out) + _MARKS.sub(r"\\\g<0>", text[last:])


def settled(text: str, start: int) -> str:
    """`text` without a table row or a link still arriving at its end (after `start`)."""
    row = row_arriving(text, start)
    if row < len(text):
        return text[:row]  # (a link in it goes with it)
    found = _LINK_ARRIVING.search(text, max(start, len(text) - _ARRIVING_AT_MOST))
    return text if found is None else text[: found.start()]


def with_note(shown: str, note: str, limit: int) -> str:
    """A message showing `shown` (formatted) ended with `note` under it, within `limit`
    characters: where both do not fit, the message's last lines make room (the answer
    is cut there anyway), and a code block they leave open is closed, or it would hold
    the note."""
    body = shown.rstrip()
    room = limit - len(note) - 2
    while room > 0:
        if len(body) > room:
            head = body[:room]
            cut = head.rfind("\n")
            if cut <= 0:
                cut = head.rfind(" ")
            body = head[:cut] if cut > 0 else head
        body = close_fences(body.rstrip())
        if len(body) <= room:
            return f"{body}\n\n{note}" if shows(body) else note
        room -= len(body) - room  # the fence closed took room: cut that much more
    return note[:limit]
