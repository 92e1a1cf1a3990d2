"""Slack refusing the bot token (the app uninstalled, its token revoked, the app
reinstalled without chat:write): no question is answered, nor sent to the chat
API, until Slack takes the token again; /healthz says so meanwhile, and clears
once Slack takes it, whether or not anyone asks."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.errors import PlatformError
from bridge.logs import apart

from .refusal import NO_SCOPE

log = logging.getLogger("chat_bridge.slack")

# While Slack refuses the bot token, it is checked again (auth.test) this often, and
# no more often for the questions asked meanwhile.
RECHECK_SECONDS = 60.0


class TokenGate:
    """Whether Slack takes the bot token, as the replies' refusals and a check now
    and then (`auth_test`: auth.test through the platform's guard) tell."""

    def __init__(self, auth_test: Callable[[], Awaitable[Any]]) -> None:
        self._auth_test = auth_test
        self.refused: str | None = None  # Slack's error code while it refuses the token
        self._checked_at = -math.inf  # (monotonic) the last check
        self._check: asyncio.Task[bool] | None = None  # that check, while it runs
        self._watch: asyncio.Task[None] | None = None  # checks while the token is refused
        self._closed = False

    def lock_out(self, method: str, error: str, needed: str | None = None) -> None:
        """Slack refused the bot token (told by `guard`); `needed`, the scopes Slack
        says it lacks."""
        if self.refused is None and error in NO_SCOPE:
            lacks = f"the {needed} scope" if needed else "a scope it needs to post"
            log.error(
                "slack: the bot token may not post (%s, on %s: the app lacks %s): "
                "questions are not answered, nor sent to the chat API, until it may; "
                "add the scope to the app (see slack-app-manifest.yaml), reinstall it, "
                "and check that slack.bot_token is the app's Bot User OAuth Token",
                error,
                method,
                lacks,
            )
        elif self.refused is None:
            log.error(
                "slack: Slack no longer accepts the bot token (%s, on %s): questions are "
                "not answered, nor sent to the chat API, until it does; check "
                "slack.bot_token and that the app is still installed",
                error,
                method,
            )
        self.refused = error
        if not self._closed and (self._watch is None or self._watch.done()):
            # Told by an answer's call: the checks are no one answer's.
            self._watch = asyncio.create_task(
                self._watch_token(), name="slack-token-watch", context=apart()
            )

    async def _watch_token(self) -> None:
        """Check the token every RECHECK_SECONDS until Slack takes it: with no
        question asked (a quiet workspace, a replica /healthz keeps out of the
        load balancer's rotation), /healthz and chat_bridge_component_up would
        otherwise say it is refused for ever."""
        since = time.monotonic()
        while self.refused is not None:
            due = max(since, self._checked_at) + RECHECK_SECONDS
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                await self.accepted()  # the check a question would share
            except Exception:
                log.exception("slack: checking the bot token again failed")

    async def accepted(self) -> bool:
        """Whether Slack takes the bot token now: asked at most every RECHECK_SECONDS,
        once for every question waiting on the answer."""
        if self.refused is None:
            return True
        if self._check is None or self._check.done():
            if time.monotonic() - self._checked_at < RECHECK_SECONDS:
                return False
            self._checked_at = time.monotonic()
            self._check = asyncio.create_task(
                self._recheck(), name="slack-token-check", context=apart()
            )
        return await asyncio.shield(self._check)

    async def _recheck(self) -> bool:
        try:
            auth = await self._auth_test()
        except PlatformError as exc:
            log.debug("slack: the bot token is still refused: %s", exc)
            return False
        if self.refused in NO_SCOPE:
            # auth.test takes a token that may not post: its scopes must say it may.
            told = {k.lower(): v for k, v in (auth.headers or {}).items()}
            scopes = {s.strip() for s in str(told.get("x-oauth-scopes", "")).split(",")}
            if "chat:write" not in scopes:
                log.debug("slack: the bot token still lacks chat:write")
                return False
        self.refused = None
        log.info("slack: Slack accepts the bot token again; answering questions")
        return True

    async def aclose(self) -> None:
        self._closed = True
        tasks = [t for t in (self._watch, self._check) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
