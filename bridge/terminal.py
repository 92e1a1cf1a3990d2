"""The terminal the commands write to."""

from __future__ import annotations

import contextlib
import os
from typing import IO


def discard_output(out: IO[str]) -> None:
    """Point `out`'s file at /dev/null once its reader went away, so what is left in
    its buffer (flushed at exit) does not raise again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
