"""The explicit tables of dialects and platforms, and the console-script entry point.

Each entry imports its module only when called, so a config that uses only
Slack never imports discord.py.
"""

from __future__ import annotations

from bridge.interfaces import ChatAPI, Platform, Registry


def _chatmount() -> type[ChatAPI]:
    from adapters.apis.chatmount import ChatMount

    return ChatMount


def _console() -> type[Platform]:
    from adapters.platforms.console import ConsolePlatform

    return ConsolePlatform


REGISTRY = Registry(
    dialects={
        "chatmount": _chatmount,
    },
    platforms={
        "console": _console,
    },
)


def main(argv: list[str] | None = None) -> int:
    from bridge.cli import run_cli

    return run_cli(argv, REGISTRY)
