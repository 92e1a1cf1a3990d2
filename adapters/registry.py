"""The explicit tables of dialects and platforms, and the command run with them.

Each entry imports its module only when called, so a config that uses only
Slack never imports discord.py.
"""

from __future__ import annotations

from bridge.interfaces import ChatAPI, Platform, Registry


def _chatmount() -> type[ChatAPI]:
    from adapters.apis.chatmount import ChatMount

    return ChatMount


def _ndjson() -> type[ChatAPI]:
    from adapters.apis.ndjson import NDJSONStream

    return NDJSONStream


def _chaturdata() -> type[ChatAPI]:
    from adapters.apis.chaturdata import ChatUrData

    return ChatUrData


def _bot_messages() -> type[ChatAPI]:
    from adapters.apis.bot_messages import BotMessages

    return BotMessages


def _openai() -> type[ChatAPI]:
    from adapters.apis.openai import OpenAICompatible

    return OpenAICompatible


def _console() -> type[Platform]:
    from adapters.platforms.console import ConsolePlatform

    return ConsolePlatform


def _slack() -> type[Platform]:
    from adapters.platforms.slack import SlackPlatform

    return SlackPlatform


def _discord() -> type[Platform]:
    from adapters.platforms.discord import DiscordPlatform

    return DiscordPlatform


REGISTRY = Registry(
    dialects={
        "chatmount": _chatmount,
        "ndjson": _ndjson,
        "chaturdata": _chaturdata,
        "bot-messages": _bot_messages,
        "openai": _openai,
    },
    # In this order the config's blocks are read and its platforms started.
    platforms={
        "slack": _slack,
        "discord": _discord,
        "console": _console,
    },
)


def main(argv: list[str] | None = None) -> int:
    from bridge.cli import run_cli

    return run_cli(argv, REGISTRY)
