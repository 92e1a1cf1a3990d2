"""The Slack platform adapter (slack-bolt, Socket Mode or HTTP events)."""

from __future__ import annotations

from .options import SlackOptions
from .platform import SlackPlatform
from .target import SlackTarget

__all__ = ["SlackOptions", "SlackPlatform", "SlackTarget"]
