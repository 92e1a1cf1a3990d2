"""The `chat-bridge` command's entry point.

It imports nothing heavy before it takes charge of the stop signals: as PID 1
in a container, a signal the process has no handler for is ignored, so a
`docker stop` during the second or so of imports would otherwise be lost and
the container killed when its stop timeout ran out.

The daemon holds them back (blocks them) until its event loop handles them,
which then takes one that came meanwhile and ends the start. A handler that
raised meanwhile would not do: what it raises is dropped where it lands in code
the import machinery runs for its own bookkeeping ("Exception ignored in ..."),
and the stop is lost; inside an extension's import it ends the process with a
traceback. The other commands stop on a signal as on Ctrl-C.
"""

from __future__ import annotations

import io
import os
import signal
import sys


def hold_stop_signals() -> None:
    """Block SIGTERM, SIGINT and SIGHUP (unless ignored: `nohup`) until the daemon's
    event loop handles them (`bridge.cli`), so that one sent meanwhile waits for it.

    Unlike one with no handler, a blocked signal is kept for PID 1. Threads and
    processes started meanwhile inherit the mask; the daemon starts none before.
    """
    held = {signal.SIGTERM, signal.SIGINT}
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        held.add(signal.SIGHUP)
    signal.pthread_sigmask(signal.SIG_BLOCK, held)


def interrupt_on_stop_signals() -> None:
    """SIGTERM and SIGHUP stop the command as Ctrl-C does (what it made is removed,
    the exit code is 130); a signal that is ignored (SIGHUP under `nohup`) stays
    ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        hold_stop_signals()
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
