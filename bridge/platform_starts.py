"""Platforms that did not start while another did: the others answer meanwhile, and
each is tried again, less and less often, until it starts or refuses what the config
gives it (a token Discord or Slack does not take)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from bridge.errors import BridgeError, PlatformError, StartRefused, for_log
from bridge.interfaces import Platform
from bridge.logs import Repeats

log = logging.getLogger("chat_bridge.app")

# The wait before the first try again, doubled after each that fails, up to the longest
# (about 300 tries a day: Discord resets a token that logs in 1,000 times a day).
FIRST_WAIT = 5.0
LONGEST_WAIT = 300.0
# What /healthz says of a platform not started yet.
NOT_STARTED = "not started"


class PlatformStarts:
    """The daemon's platforms as they start. `started(name, platform)` starts one (a
    BridgeError when it fails), `made_anew(name)` makes one again to try again;
    `problems` says, for /healthz, what keeps each one not started from answering."""

    def __init__(
        self,
        started: Callable[[str, Platform], Awaitable[None]],
        made_anew: Callable[[str], Platform],
    ) -> None:
        self._started = started
        self._made_anew = made_anew
        self.problems: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, platforms: Mapping[str, Platform]) -> None:
        """Start `platforms`, in order. One that fails stops the start, unless another
        starts and it failed for a while only (out of reach, failing on its side): it
        is tried again meanwhile. One refusing the token or the settings stops the
        start whatever the others do, as one alone does."""
        failed: dict[str, PlatformError] = {}
        for name, platform in list(platforms.items()):
            try:
                await self._started(name, platform)
            except StartRefused:
                raise
            except PlatformError as exc:
                if len(platforms) == 1:
                    raise
                failed[name] = exc
        up = [name for name in platforms if name not in failed]
        if not up:
            raise next(iter(failed.values()))
        for name, error in failed.items():
            self._failed(name, error, up)

    def _failed(self, name: str, error: BridgeError, up: list[str]) -> None:
        """`name` did not start, with `error`, while the platforms `up` did: say so,
        and try it again in the background."""
        log.error(
            "%s did not start: %s; %s answers meanwhile, and %s is tried again in %g s, "
            "then less and less often (every %g s at most)",
            name,
            for_log(error).rstrip("."),
            " and ".join(up),
            name,
            FIRST_WAIT,
            LONGEST_WAIT,
            extra={"platform": name},
        )
        self.problems[name] = NOT_STARTED
        self._tasks[name] = asyncio.create_task(self._again(name), name=f"starting {name}")

    async def _again(self, name: str) -> None:
        wait, failing = FIRST_WAIT, Repeats()
        failing.failed()  # the first failure, told by `failed`
        while True:
            await asyncio.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
            try:
                await self._started(name, self._made_anew(name))
            except StartRefused as exc:
                self.problems[name] = exc.problem
                log.error(
                    "%s did not start: %s; it is not tried again until a restart",
                    name,
                    for_log(exc),
                    extra={"platform": name},
                )
                return
            except BridgeError as exc:
                if (again := failing.failed()) is not None:
                    log.warning(
                        "%s did not start again%s: %s; tried again in %g s",
                        name,
                        again,
                        for_log(exc).rstrip("."),
                        wait,
                        extra={"platform": name},
                    )
            except Exception:  # a bug: told, and tried again all the same
                log.exception("%s did not start again", name, extra={"platform": name})
            else:
                del self.problems[name]
                log.info(
                    "%s started (tries that failed: %d)",
                    name,
                    failing.ended(),
                    extra={"platform": name},
                )
                return

    async def aclose(self) -> None:
        """Try no more: a try under way is cut (its platform closes itself)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
