"""The console's terminal: the live reply redrawn in place, and what is typed meanwhile.

A reply is redrawn where it stands (ANSI cursor movement) while it fits the
window: the cursor cannot move above the window's top, so a taller one is
written on as it grows instead, each line once it can no longer change, and the
rest once the reply is complete. While a reply is drawn the terminal does not
echo what is typed (the echo would land in the middle of the reply): a line
entered meanwhile is shown after the reply, as it is asked. When output is a
pipe or a file, each reply is written once, whole, when it is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import unicodedata
from typing import IO, Any

from bridge.terminal import discard_output, printable

if sys.platform != "win32":
    import termios

# Shown with no width of their own: joiners, variation selectors ("⚠️").
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\ufe0e\ufe0f")


def terminal_size() -> os.terminal_size:
    return shutil.get_terminal_size((80, 24))


def cells(line: str) -> int:
    """The columns `line` takes on a terminal: wide characters two, combining ones none."""
    if line.isascii():
        return len(line)
    width = 0
    for ch in line:
        if ch in _ZERO_WIDTH or unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def shown(text: str) -> str:
    """`text` as it is written to the terminal: without control characters, and its
    tabs made the spaces up to the next 8-column stop (the terminal would move the
    cursor over them, leaving rows the redraw does not count)."""
    text = printable(text)
    if "\t" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        parts = line.split("\t")
        column = 0
        for i, part in enumerate(parts[:-1]):
            column += cells(part)
            pad = 8 - column % 8
            parts[i] = part + " " * pad
            column += pad
        lines.append("".join(parts))
    return "\n".join(lines)


class Screen:
    """Owns the terminal output; redraws the live reply in place while it fits.

    `keys` is the terminal that is typed on (standard input), if it is one.
    """

    def __init__(self, out: IO[str], keys: IO[str] | None = None) -> None:
        self.out = out
        self.tty = out.isatty()
        self.closed = False  # whoever read the output went away (`| head`), or it failed
        self.failed: OSError | None = None  # why the output could not be written (disk full)
        self._lines = 0  # rows the live part of the reply takes on screen, cursor below
        # Text of the live reply written for good (it outgrew the window); None while
        # the reply is redrawn whole, in place.
        self._kept: str | None = None
        self._open = False  # a prompt is shown, with nothing entered after it yet
        self._keys = _Echo(keys) if self.tty and keys is not None else None

    # ------------------------------------------------------------------ output

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            discard_output(self.out)
        except OSError as exc:
            self.closed = True
            self.failed = exc
            discard_output(self.out)

    def _height(self, text: str, at_most: int) -> int:
        """Rows `text` takes, wrapped lines counted (more than `at_most`: stops there)."""
        width = max(1, terminal_size().columns)
        rows = 0
        for line in text.split("\n"):
            rows += max(1, -(-cells(line) // width))
            if rows > at_most:
                break
        return rows

    def _clear(self) -> str:
        """What takes the cursor back to where the live part begins, clearing it."""
        up, self._lines = self._lines, 0
        return f"\x1b[{up}F\x1b[J" if up else ""

    def draw(self, text: str) -> None:
        """Show the live reply as it now reads."""
        if not self.tty:
            return
        text = shown(text)
        # Below it the cursor's row, above it one row at least: a clear from the
        # window's top-left corner is a clear of the whole window, which some
        # terminals (tmux) keep in the scrollback, a copy each time.
        rows = max(1, terminal_size().lines - 2)
        if self._kept is None:
            height = self._height(text, rows)
            if height <= rows:
                self._write(self._clear() + text + "\n")
                self._lines = height
                return
            self._kept = ""  # it outgrew the window: written on from now on
        if not text.startswith(self._kept):
            # An earlier line changed (rare: the reply was rewritten): it cannot be
            # redrawn any more; shown whole once complete.
            self._write(self._clear())
            return
        # Lines that can no longer change: all but the last two (the last one grows,
        # and may be followed by a code block's closing line added to show it).
        last = text.rfind("\n")
        done = max(len(self._kept), text.rfind("\n", 0, max(0, last)) + 1)
        fresh, tail = text[len(self._kept) : done], text[done:]
        self._kept += fresh
        height = self._height(tail, rows)
        if height <= rows:
            self._write(self._clear() + fresh + tail + "\n")
            self._lines = height
        else:  # one line longer than the window: shown once complete
            self._write(self._clear() + fresh)

    def settle(self, text: str) -> None:
        """The reply is complete: leave it on screen for good."""
        text = shown(text)
        if not self.tty:
            self._write(text + "\n")
            return
        kept = self._kept or ""
        rest = text[len(kept) :] if text.startswith(kept) else text
        self._write(self._clear() + rest + "\n")
        self._kept = None

    def line(self, text: str) -> None:
        self._write(shown(text) + "\n")

    # ------------------------------------------------------------------ typing

    def hide_typing(self) -> None:
        """What is typed from now on is not echoed (until the next prompt)."""
        if self._keys is not None:
            self._keys.hide()

    def prompt(self, text: str) -> None:
        """Ask for the next question on a terminal; the person types after it, seeing
        what they type."""
        if self._keys is not None:
            self._keys.show()
        self._write(text)
        self._open = True

    def entered(self, line: str, unseen: bool) -> None:
        """A line was entered after the prompt; `unseen` when the terminal did not
        echo it (it was typed ahead, before the prompt): it is shown now. What is
        typed next is not echoed until the next prompt."""
        self.hide_typing()
        if self._open and unseen:
            self._write(shown(line.rstrip("\r\n")) + "\n")
        self._open = False

    def typing_hidden(self) -> bool:
        """Whether what is typed now is not echoed (asked from the reading thread)."""
        return self._keys is not None and self._keys.hidden

    def end_line(self) -> None:
        """Input ended or the conversation stops: a prompt shown gets its line ended,
        so what comes next (the shell's prompt) starts on a line of its own."""
        if self._open:
            self._open = False
            self._write("\n")

    def close(self) -> None:
        self.end_line()
        if self._keys is not None:
            self._keys.show()


class _Echo:
    """The echo of the terminal typed on, turned off while a reply is drawn."""

    def __init__(self, keys: IO[str]) -> None:
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        if sys.platform != "win32":
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if keys.isatty():
                    self._fd = keys.fileno()

    @property
    def hidden(self) -> bool:
        return self._saved is not None

    def hide(self) -> None:
        if self._fd is None or self._saved is not None or sys.platform == "win32":
            return
        try:
            saved = termios.tcgetattr(self._fd)
            quiet = list(saved)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(self._fd, termios.TCSANOW, quiet)
        except (termios.error, OSError):
            self._fd = None  # not a terminal we may change: typing stays echoed
            return
        self._saved = saved

    def show(self) -> None:
        if self._fd is None or self._saved is None or sys.platform == "win32":
            return
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
        self._saved = None
