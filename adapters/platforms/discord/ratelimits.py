"""discord.py's lines about 429s: each counted, and told in moderation.

discord.py waits out a 429 and retries by itself, and says so only in its log, a
WARNING each time: while Discord keeps answering 429s, that is a line per retry of
every live reply. Each is counted (for `/metrics`); the first is logged as it is,
the rest for a minute at DEBUG, then one WARNING sums them up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bridge.logs import apart, relevel

log = logging.getLogger("chat_bridge.discord")

# Where discord.py says it met a 429: its REST client, and the webhooks that
# carry the answers of /ask.
COUNTED_LOGGERS = ("discord.http", "discord.webhook.async_")
QUIET_FOR = 60.0  # seconds; tests shorten it


class RateLimitLines(logging.Filter):
    """Counts discord.py's 429 lines and keeps all but the first of each minute
    below WARNING; a filter of the loggers themselves, so it sees every record
    before any handler does."""

    def __init__(self, on_rate_limited: Callable[[], None] | None) -> None:
        super().__init__()
        self._on_rate_limited = on_rate_limited
        self.every = QUIET_FOR
        self._since: float | None = None  # (monotonic) a minute being summed up began
        self._timer: asyncio.TimerHandle | None = None
        self._told_last = False  # the last 429 was logged whole
        self._untold = 0
        self._bot_wide = 0
        self._commands = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = str(record.msg)
        if "Global rate limit" in text:
            # The second line of a 429 already counted: it says the limit is the bot's.
            if not self._told_last:
                self._bot_wide += 1
                relevel(record, logging.DEBUG)
            self._told_last = False
            return True
        if "429" not in text and "is rate limited" not in text:
            return True
        if self._on_rate_limited is not None:
            self._on_rate_limited()
        if "erroring instead" in text:
            # discord.py gives the request up rather than wait that long: not a retry.
            self._told_last = False
            return True
        if self._since is None:
            self._begin()
            self._told_last = True
            return True
        self._told_last = False
        self._untold += 1
        if record.name == "discord.webhook.async_":
            self._commands += 1
        relevel(record, logging.DEBUG)
        return True

    def _begin(self) -> None:
        self._since = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # logged outside the event loop: summed up at close
            return
        # Not in the context of the answer whose 429 began the minute: the sum is no
        # one answer's.
        self._timer = loop.call_later(self.every, self._minute_over, context=apart())

    def _minute_over(self) -> None:
        self._timer = None
        if self._tell():
            self._begin()  # still limited: the next minute is summed up too
        else:
            self._since = None  # the next 429 is logged whole

    def _tell(self) -> bool:
        """Log the sum of the 429s not logged since the minute began (if any)."""
        if self._since is None or not self._untold:
            return False
        details = [
            f"{n} {what}"
            for n, what in (
                (self._bot_wide, "bot-wide"),
                (self._commands, "for slash commands' answers"),
            )
            if n
        ]
        log.warning(
            "Discord rate-limited %d more request%s in the last %.0f s%s; each was waited "
            "out and retried (a reply that failed all the same has its own line)",
            self._untold,
            "" if self._untold == 1 else "s",
            time.monotonic() - self._since,
            f" (of them: {', '.join(details)})" if details else "",
            extra={"platform": "discord"},
        )
        self._untold = self._bot_wide = self._commands = 0
        return True

    def close(self) -> None:
        """Sum up what the minute so far held, and stop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._tell()
        self._since = None
        self._told_last = False
