"""The budget native streams' stops draw on: chat.stopStream is limited per workspace as
chat.startStream is (Tier 2), and apart from it. Stops of streams started in different
minutes may come together (long and short answers ending at once): within the starts'
budget alone, they drew 429s. And the streams a stop cut while Slack started them,
stopped once started (their replies never knew their ts)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from bridge.budget import Budgets
from bridge.errors import for_log
from bridge.interfaces import Address, Rate

from .refusal import guard

log = logging.getLogger("chat_bridge.slack")

# Seconds the close waits, all told, for streams Slack was starting when a stop cut
# their replies, to stop them once started (see `StreamStops.when_started`).
STARTS_ON_CLOSE = 5.0

T = TypeVar("T")


class StreamStops:
    """A budget of `rate` (`stream_rate`) per workspace for chat.stopStream, which
    `client` makes."""

    def __init__(self, rate: Rate, client: AsyncWebClient) -> None:
        self._rate = rate
        self._client = client
        self._budgets = Budgets()
        # Streams being started when their replies were cut, to stop: by channel.
        self.starting: dict[asyncio.Task[None], str] = {}

    async def within(self, workspace: str, stop: Callable[[], Awaitable[T]]) -> T:
        """Make `stop()` (a chat.stopStream) once `workspace`'s budget has room for it."""
        budget = self._budgets.get(f"slack:stop:{workspace}", self._rate)
        stamp = await budget.acquire()
        try:
            return await stop()
        finally:
            budget.restamp(stamp)

    def when_started(self, start: asyncio.Future[Any], address: Address) -> asyncio.Task[None]:
        """Stop the stream `start` (chat.startStream, on its way) starts at `address`,
        once Slack has started it: its reply was cut before its ts was known."""
        task = asyncio.create_task(self._stop_started(start, address), name="slack-stream-stop")
        self.starting[task] = address.channel
        task.add_done_callback(lambda done: self.starting.pop(done, None))
        return task

    async def _stop_started(self, start: asyncio.Future[Any], address: Address) -> None:
        channel = address.channel
        try:
            ts = str((await start)["ts"])
            await self.within(
                address.workspace,
                lambda: guard(
                    "chat.stopStream", self._client.chat_stopStream(channel=channel, ts=ts)
                ),
            )
        except Exception as exc:  # not started, or ended already: nothing shows it
            log.debug("slack: a stream started as its reply was cut: %s", for_log(exc))

    async def aclose(self) -> None:
        """Wait, `STARTS_ON_CLOSE` at most, for `when_started`'s streams to stop."""
        if not self.starting:
            return
        _, late = await asyncio.wait(list(self.starting), timeout=STARTS_ON_CLOSE)
        for task in late:
            log.warning(
                "slack: a stream Slack was still starting in channel %s (not within %g s) "
                "is left open; it shows as being written until Slack ends it",
                self.starting.get(task),
                STARTS_ON_CLOSE,
            )
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
