"""The parameters of a run, and how its conversations are laid out over workspaces and channels.

Shared by both processes of the benchmark, so it imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# The real limits, as both the fakes and the adapters are configured with them (but
# Discord's bot-wide one, which the bridge keeps under: DISCORD_BOT_BUDGET).
SLACK_UPDATE = (50, 60.0)  # chat.update per workspace (Tier 3)
SLACK_POST = (1, 1.0)  # chat.postMessage per channel
SLACK_REACTION_ADD = (50, 60.0)  # reactions.add per workspace (Tier 3)
SLACK_REACTION_REMOVE = (20, 60.0)  # reactions.remove per workspace (Tier 2)
DISCORD_EDIT = (5, 5.0)  # message edits per channel
DISCORD_POST = (5, 5.0)  # new messages per channel
DISCORD_GLOBAL = (50, 1.0)  # every REST request of the bot (interactions aside)
# The bridge's own bot-wide budget: discord.global_rate, its default, under Discord's 50.
DISCORD_BOT_BUDGET = (40, 1.0)
BUDGET_MARGIN = 0.05  # what bridge.budget.Budgets adds to every window
CHANNELS_PER_GUILD = 50


@dataclass
class Params:
    """One run of the streams benchmark (see `python3 -m bench.streams --help`)."""

    conversations: int = 1000
    platform: str = "both"  # slack | discord | both
    slack_workspaces: int | None = None  # default: one per Slack conversation
    slack_channels: int = 1  # per workspace
    discord_channels: int | None = None  # default: one per Discord conversation
    discord_guilds: int | None = None  # default: 50 channels per guild
    tokens: int = 300  # tokens per answer
    tps: float = 20.0  # tokens per second of each answer
    tokens_per_write: int = 1  # token events the API sends in one network write
    ttft: float = 0.5  # the API's time to first token, seconds
    edit_interval: float = 1.25
    ramp: float = 5.0  # questions are asked evenly over this many seconds
    discord_global: bool = True  # enforce Discord's global 50 requests/s per bot
    quick: bool = False

    # ------------------------------------------------------------------ derived

    @property
    def slack_count(self) -> int:
        if self.platform == "slack":
            return self.conversations
        if self.platform == "discord":
            return 0
        return self.conversations // 2

    @property
    def discord_count(self) -> int:
        return self.conversations - self.slack_count

    @property
    def workspaces(self) -> int:
        return max(1, self.slack_workspaces or self.slack_count)

    @property
    def channels(self) -> int:
        return max(1, self.discord_channels or self.discord_count)

    @property
    def guilds(self) -> int:
        return max(1, self.discord_guilds or math.ceil(self.channels / CHANNELS_PER_GUILD))

    @property
    def stream_seconds(self) -> float:
        return self.ttft + (self.tokens - 1) / self.tps

    def layout(self) -> list[tuple[str, int, int]]:
        """(platform, workspace or guild index, channel index) of every conversation.

        Conversations are dealt round-robin: Slack ones over workspaces (and
        their channels), Discord ones over channels (and those over guilds).
        """
        out: list[tuple[str, int, int]] = []
        for i in range(self.slack_count):
            ws = i % self.workspaces
            ch = (i // self.workspaces) % self.slack_channels
            out.append(("slack", ws, ch))
        for i in range(self.discord_count):
            ch = i % self.channels
            out.append(("discord", ch % self.guilds, ch))
        return out

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            slack_conversations=self.slack_count,
            discord_conversations=self.discord_count,
            slack_workspaces=self.workspaces if self.slack_count else 0,
            discord_channels=self.channels if self.discord_count else 0,
            discord_guilds=self.guilds if self.discord_count else 0,
            stream_seconds=round(self.stream_seconds, 3),
        )
        return data


def quick(params: Params) -> Params:
    """The small run: 50 conversations, short answers; well under 30 s."""
    params.conversations = 50
    params.tokens = 60
    params.ramp = 1.0
    params.ttft = 0.3
    params.quick = True
    return params


def token_text(conversation: int, index: int) -> str:
    """Token `index` of conversation `conversation`'s answer.

    Each token carries a marker (`k<conversation>x<index>`) so the platform
    side can tell which tokens a message shows; every 40th ends a paragraph.
    """
    end = "\n\n" if index % 40 == 39 else " "
    return f"k{conversation}x{index}{end}"
