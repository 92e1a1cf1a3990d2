"""Fixtures shared by this directory's test modules."""

from __future__ import annotations

# The Discord modules' fixtures: `world` (the adapter alone against the fake Discord) and
# `setup` (the real Bridge against the fake Discord and chat API).
from tests.platforms.discord_support import setup, world  # noqa: F401
