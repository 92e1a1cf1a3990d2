"""The fake Discord's limits: message length, per-channel and global rate buckets."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState
from tests.fakes.discord.wire import MAX_CONTENT, _error, _json


@dataclass
class RateRule:
    """At most `count` requests in any `per`-second window (minus `tolerance`)."""

    count: int = 5
    per: float = 5.0


class RateLimits(DiscordState):
    """What the fake Discord refuses for its limits: too long, too empty, too often."""

    def _global_limit(self, rule: RateRule) -> web.Response | None:
        """Discord's per-bot limit on all requests: a 429 with `global: true`, or None."""
        now = time.monotonic()
        window = self._windows.setdefault("@global", deque())
        while window and window[0] <= now - rule.per + self.tolerance:
            window.popleft()
        if len(window) < rule.count:
            window.append(now)
            return None
        self.global_limited += 1
        wait = window[0] + rule.per - now
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(wait))),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
        }
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(wait, 3),
            "global": True,
        }
        return _json(body, 429, headers)

    def _limit(self, key: str, rule: RateRule) -> tuple[web.Response | None, dict[str, str]]:
        """Count one request against `key`'s window: (a 429 response, or None; headers)."""
        now = time.monotonic()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - rule.per + self.tolerance:
            window.popleft()
        over = len(window) >= rule.count
        if not over:
            window.append(now)
        reset_after = window[0] + rule.per - now
        headers = {
            "Via": "1.1 google",  # discord.py retries a 429 only when this is present
            "X-RateLimit-Bucket": f"fake-{key.split(':')[0]}",
            "X-RateLimit-Limit": str(rule.count),
            "X-RateLimit-Remaining": str(rule.count - len(window)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if over:
            self.rate_limited += 1
            headers["Retry-After"] = str(max(1, round(reset_after)))
            headers["X-RateLimit-Scope"] = "user"
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(reset_after, 3),
                "global": False,
            }
            return _json(body, 429, headers), {}
        return None, (headers if self.ratelimit_headers else {})

    def _admit(
        self, body: Any, key: str, kind: str, *, require: bool
    ) -> tuple[web.Response | None, dict[str, str]]:
        """Content limits first, then the rate limit: (a refusal or None, headers)."""
        content = (body or {}).get("content")
        if content is not None and len(content) > MAX_CONTENT:
            problem = {
                "code": "BASE_TYPE_MAX_LENGTH",
                "message": f"Must be {MAX_CONTENT} or fewer in length.",
            }
            errors = {"content": {"_errors": [problem]}}
            return _error(400, 50035, "Invalid Form Body", errors), {}
        # Discord trims the content: whitespace alone is an empty message, refused on a
        # post (no content) and on an edit (content given) unless embeds show something.
        blank = not (content or "").strip()
        if blank and (require or content is not None) and not (body or {}).get("embeds"):
            return _error(400, 50006, "Cannot send an empty message"), {}
        return self._limit(key, self.rates[kind])
