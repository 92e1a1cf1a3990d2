"""The `chat-bridge` command's entry point.

It imports nothing heavy before it makes a stop signal end the process: as PID
1 in a container, a signal the process has no handler for is ignored, so a
`docker stop` during the second or so of imports would otherwise be lost and
the container killed when its stop timeout ran out. The daemon sets its own
handlers once it runs (a stop then drains its live replies).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_on_stop_signals() -> None:
    """End the process on SIGTERM and SIGHUP until the daemon handles them itself."""
    _on_stop_signals(_stop)


def interrupt_on_stop_signals() -> None:
    """SIGTERM and SIGHUP stop the command as Ctrl-C does (what it made is removed,
    the exit code is 130)."""
    _on_stop_signals(signal.default_int_handler)


def _on_stop_signals(handler: Callable[[int, FrameType | None], Any]) -> None:
    """Handle SIGTERM and SIGHUP with `handler`; a signal that is ignored (SIGHUP
    under `nohup`) stays ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        exit_on_stop_signals()
    else:
        # As Ctrl-C does: what the command made is cleaned up (the demo's store), and
        # as PID 1 in a container (`docker run IMAGE check --probe`) a stop is heard.
        interrupt_on_stop_signals()
    stand_in = None
    if sys.stdout is None:  # closed by whoever started it (`>&-`)
        sys.stdout = stand_in = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    elif isinstance(sys.stdout, io.TextIOWrapper):
        # A terminal whose encoding lacks a character of an answer ("›", "—") shows
        # a "?" for it, rather than stopping the command.
        sys.stdout.reconfigure(errors="replace")
    try:
        from adapters.registry import main as run

        return run(argv)
    except KeyboardInterrupt:  # Ctrl-C while the command still imports
        return 130
    finally:
        if stand_in is not None:  # closed here, not left to the collector to warn of
            stand_in.close()
