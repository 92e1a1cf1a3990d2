"""The Discord platform adapter (discord.py)."""

from __future__ import annotations

import warnings

# discord.py imports the stdlib `audioop` (voice support, unused here), which
# warns on Python 3.11 and 3.12; keep that out of the daemon's logs and tests.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="'audioop' is deprecated", category=DeprecationWarning
    )
    import discord  # noqa: F401

from adapters.platforms.discord.options import DiscordOptions  # noqa: E402
from adapters.platforms.discord.platform import DiscordPlatform  # noqa: E402

__all__ = ["DiscordOptions", "DiscordPlatform"]
