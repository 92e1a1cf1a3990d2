"""A fake terminal: output a program writes, kept as a terminal window shows it.

It keeps the window's rows and the scrollback above them, as a terminal does with
the little the console writes: text (wrapped at the width), newlines, tabs (the
cursor to the next 8-column stop, not past the last column), and the cursor
movements `ESC[nF` (up n lines, to their start: never above the window's
top) and `ESC[J` (clear to the end of the window; from its top-left corner, the
window's rows are kept in the scrollback, as tmux keeps them).
"""

from __future__ import annotations

import io
import os
import re
import unicodedata

_CONTROL = re.compile(r"\x1b\[(\d*)([A-Za-z])")


def _cells(ch: str) -> int:
    if ch in "\u200d\ufe0e\ufe0f" or unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class FakeTerminal(io.StringIO):
    """Standard output that is a terminal of `columns` x `lines`."""

    def __init__(self, columns: int = 80, lines: int = 24) -> None:
        super().__init__()
        self.columns = columns
        self.lines = lines

    def isatty(self) -> bool:
        return True

    def size(self) -> os.terminal_size:
        return os.terminal_size((self.columns, self.lines))

    def transcript(self) -> list[str]:
        """Every row the terminal shows or scrolled away, top to bottom, trailing
        blank rows left out."""
        scrolled: list[str] = []
        rows = [""] * self.lines
        row = col = at = 0  # `at`: the cursor's place in its row's text (col: its column)
        pending = False  # a row full: the next character starts the next row

        def newline() -> None:
            nonlocal row, col, at, pending
            pending = False
            col = at = 0
            if row == self.lines - 1:
                scrolled.append(rows.pop(0))
                rows.append("")
            else:
                row += 1

        text = self.getvalue()
        pos = 0
        while pos < len(text):
            found = _CONTROL.match(text, pos)
            if found:
                n, kind = int(found.group(1) or 1), found.group(2)
                if kind == "F":
                    row, col, at, pending = max(0, row - n), 0, 0, False
                elif kind == "J" and row == at == 0:
                    # The whole window cleared: tmux keeps what it showed in the
                    # scrollback (its `scroll-on-clear`).
                    scrolled += [line for line in rows if line]
                    rows = [""] * self.lines
                elif kind == "J":
                    rows[row] = rows[row][:at]
                    for below in range(row + 1, self.lines):
                        rows[below] = ""
                else:
                    raise AssertionError(f"the console wrote {found.group()!r}")
                pos = found.end()
                continue
            ch = text[pos]
            pos += 1
            if ch == "\n":
                newline()
            elif ch == "\r":
                col, at, pending = 0, 0, False
            elif ch == "\t":
                # Moves the cursor, writes nothing (a terminal never wraps on a tab).
                if not pending:
                    stop = min(self.columns - 1, (col // 8 + 1) * 8)
                    at += stop - col
                    rows[row] = rows[row].ljust(at)
                    col = stop
            else:
                if pending:
                    newline()
                rows[row] = rows[row][:at] + ch + rows[row][at + 1 :]
                at += 1
                col += _cells(ch)
                if col >= self.columns:
                    pending = True
        shown = scrolled + rows
        while shown and not shown[-1].strip():
            shown.pop()
        return shown
