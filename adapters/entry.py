"""The `chat-bridge` command's entry point.

It imports nothing heavy before it makes a stop signal end the process: as PID
1 in a container, a signal the process has no handler for is ignored, so a
`docker stop` during the second or so of imports would otherwise be lost and
the container killed when its stop timeout ran out. The daemon sets its own
handlers once it runs (a stop then drains its live replies).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_on_stop_signals() -> None:
    """End the process on SIGTERM and SIGHUP until the daemon handles them itself;
    a signal that is ignored (SIGHUP under `nohup`) stays ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _stop)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:  # the other commands end on a signal as any program does
        exit_on_stop_signals()
    from adapters.registry import main as run

    return run(argv)
