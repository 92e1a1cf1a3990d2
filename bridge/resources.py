"""The daemon process's own resources: its open files, the event loop's handler
for a listener out of them, and the garbage collector's settings once it is up."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import resource
from typing import Any

log = logging.getLogger("chat_bridge.app")

# Container allocations between two collections of the youngest generation
# (CPython's default is 700). A thousand live answers hold about 200,000
# objects; at the default, full collections ran while they streamed and held
# the event loop for 150-250 ms each time (bench/streams). The price: garbage
# in reference cycles waits longer, a few MB more at the peak of a burst.
GC_YOUNG_THRESHOLD = 10_000


def raise_open_files() -> None:
    """Raise the process's soft limit of open files to its hard one: every answer
    streaming holds a connection to its chat API, and the HTTP listener takes its
    own share (a soft limit of 1,024 is a common default in containers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or hard == resource.RLIM_INFINITY:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.debug("open files: the limit stays at %d (%s)", soft, exc)
    else:
        log.debug("open files: the limit raised from %d to %d", soft, hard)


def open_files_needed(streams: int) -> int:
    """About how many open files `streams` answers streaming at once take: each holds
    a connection to its chat API and, while its reply is edited, one to its platform
    (whose pool has no cap); a hundred more for the rest (the store's files, the
    listener and its clients, the platforms' own sockets, the resolver)."""
    return 2 * streams + 100


def warn_of_few_open_files(streams: int) -> None:
    """One warning when the limit of open files is below what `streams` need: past
    it, connections fail at random (the chat APIs', the platforms', the listener's)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = open_files_needed(streams)
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open files: the limit is %d, and %d answers streaming at once "
            "(limits.max_concurrent_streams) need about %d; raise it (`ulimit -n`, "
            "docker's --ulimit nofile=) or lower limits.max_concurrent_streams",
            soft,
            streams,
            needed,
        )


# What asyncio's listeners say when accept() fails for want of a file (or memory);
# they try again 1 s later, and said it with a traceback each time.
ACCEPT_OUT_OF_RESOURCE = "socket.accept() out of system resource"
# The least time between two warnings of such failures.
ACCEPT_WARN_EVERY = 60.0


class LoopExceptions:
    """The event loop's exception handler: a listener's accept() failing for want of
    open files is one warning a minute at most, with how many failed; any other
    context goes to asyncio's default handler."""

    def __init__(self) -> None:
        self.failed = 0
        self._warned_at: float | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_OUT_OF_RESOURCE:
            loop.default_exception_handler(context)
            return
        self.failed += 1
        now = loop.time()
        if self._warned_at is not None and now - self._warned_at < ACCEPT_WARN_EVERY:
            return
        log.warning(
            "listener: accept() failed %d time(s) (%s): the bridge is out of open files "
            "or memory; raise `ulimit -n` (docker's --ulimit nofile=) or lower "
            "limits.max_concurrent_streams",
            self.failed,
            _errno_name(context.get("exception")),
        )
        self.failed, self._warned_at = 0, now


def _errno_name(exc: BaseException | None) -> str:
    """EMFILE, ENFILE...: an OSError's code by its name, else the error's kind."""
    code = getattr(exc, "errno", None)
    return (
        errno.errorcode.get(code, type(exc).__name__)
        if isinstance(code, int)
        else (type(exc).__name__)
    )


def settle_heap() -> None:
    """Once the daemon is up: collect start-up's garbage, leave what remains
    (modules, config, clients) out of every later collection, and collect
    young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
