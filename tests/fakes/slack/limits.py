"""The fake Slack's limits: text lengths, and the rate of each method."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes.slack.state import SlackState

TEXT_LIMIT = 4000


POST_TEXT_LIMIT = 40000


MARKDOWN_LIMIT = 12000


@dataclass
class RateRule:
    """At most `count` calls in any `per`-second window, counted per `scope`."""

    count: int
    per: float
    scope: Literal["team", "channel"] = "team"
    stamps: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def check(self, key: str, now: float) -> float:
        """0 if allowed (and counted), else the seconds until a slot frees."""
        window = self.stamps[key]
        while window and window[0] <= now - self.per:
            window.popleft()
        if len(window) >= self.count:
            return window[0] + self.per - now
        window.append(now)
        return 0.0


class Limits(SlackState):
    """Methods' rates and the lengths their text may have."""

    def set_rate(
        self, method: str, count: int, per: float, scope: Literal["team", "channel"] | None = None
    ) -> None:
        """Limit `method` to `count` calls per `per` seconds (scope defaults to the method's)."""
        old = self.rates.get(method)
        self.rates[method] = RateRule(count, per, scope or (old.scope if old else "team"))

    def _body_of(self, method: str, args: dict[str, Any], limit: int) -> tuple[str, bool] | str:
        """(text, is_markdown), or an error code."""
        text, markdown = args.get("text"), args.get("markdown_text")
        if markdown is not None and text is not None:
            return "markdown_text_conflict"
        if markdown is not None:
            if len(markdown) > MARKDOWN_LIMIT:
                return "msg_too_long"
            return str(markdown), True
        if not text and not args.get("blocks"):
            return "no_text"
        if len(text or "") > limit:
            return "msg_too_long"
        return str(text or ""), False
