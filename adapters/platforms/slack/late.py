"""Edits Slack may make late: a chat.update that got no answer within `timeout` may still
be carried out a moment after the client gave up on it (a busy Slack). Made after the
edits sent after it, the final text's included, it would show an older part of the
answer in its place for good (its sources and footnote gone): nothing edits the
message again once its reply is done.

So each message with such an edit is remembered, and once its reply is done and that
edit can no longer come (`WINDOW` after it timed out, as long as a lost post is looked
for: `lost.LOOK_AGAIN`), the newest text Slack did take for it is sent again, if one was
sent after the edit that timed out: chat.update is safe to repeat. It is sent in the
background, within the budget the reply's edits draw on: no reply waits for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from slack_sdk.web.async_client import AsyncWebClient

from bridge.budget import Budgets
from bridge.errors import PlatformError, PlatformRefused, for_log
from bridge.interfaces import Rate
from bridge.reply_budget import MORE

from .lost import LOOK_AGAIN
from .refusal import guard

log = logging.getLogger("chat_bridge.slack")

# Seconds after a chat.update timed out during which Slack may still make it.
WINDOW = sum(LOOK_AGAIN)
# Seconds after its window a message no reply ended is forgotten (its reply was cut).
FORGET = 60.0


class Body(TypedDict, total=False):
    """A message's text: `markdown_text` or `text`, one of the two."""

    text: str
    markdown_text: str


@dataclass(slots=True)
class _Late:
    """A message with an edit that timed out: when the newest such was sent, until when
    it may land, the texts that timed out, and the newest text Slack took since."""

    sent: float
    until: float
    late: list[Body] = field(default_factory=list)
    text: Body | None = None
    landed: float = 0.0  # when `text` was sent
    repair: asyncio.Task[None] | None = None


class LateEdits:
    """The messages, by (channel, ts), that an edit Slack may make late could leave
    showing an older text; `client` edits them (chat.update, within `budgets`)."""

    def __init__(
        self,
        client: AsyncWebClient,
        budgets: Budgets,
        locked_out: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        self._client = client
        self._budgets = budgets
        self._locked_out = locked_out
        self._messages: dict[tuple[str, str], _Late] = {}

    def timed_out(self, channel: str, ts: str, body: Body, sent: float) -> None:
        """A chat.update of `ts` sent at `sent` (time.monotonic()) got no answer in time."""
        now = time.monotonic()
        self._forget(now)
        late = self._messages.get((channel, ts))
        if late is None:
            late = self._messages[(channel, ts)] = _Late(sent=sent, until=now + WINDOW)
        late.sent = max(late.sent, sent)
        late.until = max(late.until, now + WINDOW)
        late.late.append(body)

    def landed(self, channel: str, ts: str, body: Body, sent: float) -> None:
        """A chat.update of `ts` sent at `sent` was made."""
        late = self._messages.get((channel, ts))
        if late is not None and sent >= late.landed:
            late.text, late.landed = body, sent

    def ended(self, channel: str, ts: str, bucket: str, rate: Rate) -> None:
        """The reply of `ts` is done: its newest text is shown again once an edit made
        late can no longer cover it, within the budget `bucket`."""
        late = self._messages.get((channel, ts))
        if late is not None and late.repair is None:
            late.repair = asyncio.create_task(
                self._repair(channel, ts, late, bucket, rate), name="slack-late-edit"
            )

    async def _repair(self, channel: str, ts: str, late: _Late, bucket: str, rate: Rate) -> None:
        try:
            # Until the newest edit that timed out can no longer come (another one may
            # time out meanwhile: a stop's mark of the message).
            while True:
                wait = late.until - time.monotonic()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            text = late.text
            if text is None or late.landed < late.sent or late.landed > late.until:
                # Nothing newer was taken (an edit made late shows the newest text),
                # or it was sent once none could come any more.
                return
            if all(body == text for body in late.late):
                return  # each edit that timed out had this very text
            await self._send(channel, ts, text, bucket, rate)
        finally:
            self._messages.pop((channel, ts), None)

    async def _send(self, channel: str, ts: str, text: Body, bucket: str, rate: Rate) -> None:
        budget = self._budgets.get(bucket, rate)
        for wait in (0.0, *LOOK_AGAIN):
            await asyncio.sleep(wait)
            stamp = await budget.acquire((MORE, time.monotonic()))
            try:
                await guard(
                    "chat.update",
                    self._client.chat_update(channel=channel, ts=ts, **text),
                    self._locked_out,
                )
            except PlatformRefused as exc:  # the message deleted, the channel closed
                log.debug("slack: a reply's text not shown again: %s", for_log(exc))
                return
            except PlatformError as exc:
                log.debug("slack: a reply's text not shown again yet: %s", for_log(exc))
                continue
            finally:
                budget.restamp(stamp)
            log.info(
                "slack: a reply's text shown again in %s over an edit Slack may have made late",
                channel,
            )
            return
        log.warning(
            "slack: a reply in %s may show an older text: an edit Slack took "
            "late could not be covered (Slack not reached)",
            channel,
        )

    def _forget(self, now: float) -> None:
        """Forget the messages whose reply was cut before it ended (none repairs them)."""
        for key, late in list(self._messages.items()):
            if late.repair is None and late.until + FORGET < now:
                del self._messages[key]

    def __len__(self) -> int:
        """How many messages are remembered."""
        return len(self._messages)

    async def aclose(self) -> None:
        tasks = [late.repair for late in self._messages.values() if late.repair is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
