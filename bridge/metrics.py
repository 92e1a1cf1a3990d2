"""Prometheus metrics of one bridge process."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bridge.errors import PlaceGone, PlatformRefused, PlatformUnreachable, StoppedByAsker

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
# A reply's end may wait minutes for a platform that fails (bridge/render.py).
_REPLY = (*_LATENCY, 300, 600)
# How a platform's request failed (`chat_bridge_platform_errors_total`'s kinds).
PLATFORM_FAILURES = ("refused", "gone", "unreachable", "failed")
# Why a question was refused (`chat_bridge_messages_refused_total`'s reasons). One
# refused as its backend's circuit is open is not among them: it is an answer's
# outcome, `unavailable`, as when the circuit opens while it waits its turn.
Refusal = Literal[
    "empty",
    "too_long",
    "reset_outside_thread",
    "conversation_busy",
    "busy",
    "rate_limited",
    "stopping",
]


def platform_failure(exc: BaseException) -> str:
    """The kind of a platform request's failure: `refused` (that request, a 4xx),
    `gone` (the reply's place, or the bot's access to it), `unreachable`, or `failed`
    (on the platform's side, or an error the adapter did not tell apart)."""
    if isinstance(exc, PlaceGone):  # before `refused`: Slack's are both
        return "gone"
    if isinstance(exc, PlatformRefused):
        return "refused"
    if isinstance(exc, PlatformUnreachable):
        return "unreachable"
    return "failed"


class Metrics:
    """Every metric the bridge exports, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "chat_bridge_messages_received",
            "Messages delivered by platforms",
            ["platform"],
            registry=r,
        )
        self.duplicates = Counter(
            "chat_bridge_duplicate_events",
            "Deliveries dropped as duplicates",
            ["platform"],
            registry=r,
        )
        self.answered = Counter(
            "chat_bridge_messages_answered",
            "Replies by outcome (answered, failed, interrupted, shown_late, too_long, ...)",
            ["platform", "backend", "outcome"],
            registry=r,
        )
        self.refused = Counter(
            "chat_bridge_messages_refused",
            "Questions refused before their chat API was asked, by reason (empty, "
            "too_long, reset_outside_thread, conversation_busy, busy, rate_limited, "
            "stopping) and whether the asker was told (yes, no)",
            ["platform", "reason", "told"],
            registry=r,
        )
        self.stream_seconds = Histogram(
            "chat_bridge_stream_seconds",
            "Time from asking the chat API to the end of its answer's stream (answers "
            "read to their end)",
            ["backend"],
            buckets=_LATENCY,
            registry=r,
        )
        self.reply_seconds = Histogram(
            "chat_bridge_reply_seconds",
            "Time from asking the chat API to the reply's end shown (or given up)",
            ["platform"],
            buckets=_REPLY,
            registry=r,
        )
        self.first_token = Histogram(
            "chat_bridge_time_to_first_token_seconds",
            "Time to the first answer token",
            ["backend"],
            buckets=_LATENCY,
            registry=r,
        )
        self.edits = Counter(
            "chat_bridge_platform_edits", "Message edits made", ["platform"], registry=r
        )
        self.platform_429 = Counter(
            "chat_bridge_platform_rate_limited",
            "429 answers from platforms",
            ["platform"],
            registry=r,
        )
        self.platform_errors = Counter(
            "chat_bridge_platform_errors",
            "Platform requests of replies and notices that failed, by kind (refused, gone, "
            "unreachable, failed)",
            ["platform", "kind"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "chat_bridge_queue_depth",
            "Messages taken and not answering yet (waiting for a stream slot, or for "
            "the answer before them in their conversation)",
            registry=r,
        )
        self.live_streams = Gauge(
            "chat_bridge_live_streams", "Answers streaming from their chat API now", registry=r
        )
        self.up = Gauge(
            "chat_bridge_component_up",
            "Whether a platform's connection, or the store, works (1) or not (0), as "
            "/healthz tells at the scrape",
            ["component"],
            registry=r,
        )
        self.backend_remaining = Gauge(
            "chat_bridge_backend_ratelimit_remaining",
            "Requests left in the backend's rate-limit window",
            ["backend"],
            registry=r,
        )
        self.backend_credits = Gauge(
            "chat_bridge_backend_credits_remaining",
            "Credits left on the backend's plan",
            ["backend"],
            registry=r,
        )

    def platform_failed(self, platform: str, exc: BaseException) -> None:
        """Count a platform request of a reply or a notice that failed with `exc`; not
        one its asker stopped (Slack's Stop): the platform did as it was asked."""
        if not isinstance(exc, StoppedByAsker):
            self.platform_errors.labels(platform, platform_failure(exc)).inc()

    def refusal(self, platform: str, reason: Refusal, told: bool) -> None:
        """Count a question refused for `reason`, its asker `told` so or not."""
        self.refused.labels(platform, reason, "yes" if told else "no").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
