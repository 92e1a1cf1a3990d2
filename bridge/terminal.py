"""The terminal the commands write to."""

from __future__ import annotations

import contextlib
import os
import re
from typing import IO

# The control characters a terminal acts on rather than shows, but the line break and
# the tab: ESC and the C1 controls begin sequences that hide text, set the window's
# title or write the clipboard, BEL ends some, CR returns over the line already shown.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """A chat API's text as a terminal may be given it: its control characters left out.

    A sequence split over two tokens is defused as well, each part on its own: what
    remains of it ("]0;title") shows as text and does nothing.
    """
    return _CONTROLS.sub("", text)


def discard_output(out: IO[str]) -> None:
    """Point `out`'s file at /dev/null once its reader went away, so what is left in
    its buffer (flushed at exit) does not raise again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
