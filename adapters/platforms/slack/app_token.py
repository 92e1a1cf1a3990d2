"""Socket Mode's URLs (apps.connections.open), asked for with the app-level token at
start and at each reconnection slack-sdk makes; and Slack refusing that token while
the daemon runs (the token revoked, the app uninstalled, Socket Mode turned off):
one ERROR naming `slack.app_token`, /healthz saying so, and Slack asked again once a
minute, not at every ping, until it takes the token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.errors import PlatformError
from bridge.logs import Repeats

from .refusal import SlackRefused, guard, told

log = logging.getLogger("chat_bridge.slack")

# While Slack refuses the app-level token, it is asked for a URL again this often.
RECHECK_SECONDS = 60.0


def refused_text(error: str) -> str:
    """What to say of Slack refusing the app-level token with `error`."""
    return (
        f"Slack refused the app-level token ({error}); check slack.app_token "
        "(xapp-…, with the connections:write scope) and that Socket Mode is enabled"
    )


def said_by_slack(exc: SlackRefused) -> bool:
    """Whether Slack itself refused (its JSON's error code), not a page in its place."""
    cause = exc.__cause__
    return isinstance(cause, SlackApiError) and told(cause) is not None


class AppTokenRefused(PlatformError):
    """Slack refuses the app-level token: Socket Mode cannot reconnect until it takes it
    (already logged: slack-sdk's lines for it are dropped)."""

    def __init__(self, error: str) -> None:
        super().__init__(refused_text(error))
        self.error = error


class SocketURLs:
    """Asks Slack for Socket Mode's URL through the platform's `guard`: at start
    (`open`, a refusal failing the start) and for slack-sdk's reconnections (`reopen`,
    which stands in for its own asking)."""

    def __init__(self, client: AsyncWebClient, app_token: str) -> None:
        self._client = client
        self._app_token = app_token
        self.refused: str | None = None  # Slack's error code while it refuses the token
        self._tried_at = -math.inf  # (loop time) the last try while refused
        self._told = Repeats()  # its ERROR line, at most once a minute
        self._one_at_a_time = asyncio.Lock()
        self._closed = asyncio.Event()

    async def open(self) -> str:
        """A URL to connect to; SlackRefused if Slack refuses the token, another
        PlatformError if it failed or was out of reach."""
        opened = await guard(
            "apps.connections.open", self._client.apps_connections_open(app_token=self._app_token)
        )
        return str(opened["url"])

    async def reopen(self) -> str:
        """A URL to connect to again, in place of slack-sdk's asking (a try at every
        `ping_interval`, two raw ERROR lines each). AppTokenRefused while Slack refuses
        the token (logged here, at most once a minute); the next try then waits out
        RECHECK_SECONDS since the last (slack-sdk's close cancels the wait)."""
        async with self._one_at_a_time:
            if self.refused is not None:
                await self._wait(self._tried_at + RECHECK_SECONDS)
            self._tried_at = asyncio.get_running_loop().time()
            try:
                url = await self.open()
            except SlackRefused as exc:
                if not said_by_slack(exc):
                    # A page in place of Slack's answer (a proxy's 408, 429s past the
                    # retries): a failed try, not the token refused; the next ping
                    # tries again, and the try is one WARNING (`_ReconnectLines`).
                    raise
                self.refused = exc.error
                if (again := self._told.failed()) is not None:
                    log.error(
                        "slack: %s: Socket Mode is down, and no question reaches the bridge, "
                        "until Slack takes it (asked again once a minute)%s",
                        refused_text(exc.error),
                        again,
                    )
                raise AppTokenRefused(exc.error) from exc
            if self.refused is not None:
                self.refused = None
                self._told.ended()
                log.info("slack: Slack accepts the app-level token again; reconnecting")
            return url

    async def _wait(self, deadline: float) -> None:
        """Wait until `deadline` (loop time); AppTokenRefused if closed meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._closed.wait()
        if self._closed.is_set():
            raise AppTokenRefused(self.refused or "closed")

    def close(self) -> None:
        """Socket Mode is closing: a reconnection waiting ends."""
        self._closed.set()
