"""What the config tests share: a small valid config, the secret its variable gives, and
parsing with the built-in registry."""

from __future__ import annotations

import subprocess
from pathlib import Path

from adapters.registry import REGISTRY
from bridge.config import Config, parse_config
from tests.cli_support import run_command

SECRET = "cm_live_SUPERSECRET_value_123"

BASE = """
store: sqlite:///tmp/x.db
backends:
  docs:
    kind: chatmount
    url: https://services.chatmount.co/v1/chat
    api_key: ${CHATMOUNT_API_KEY}
routes:
  - platform: any
    backend: docs
"""


def parse(text: str, **env: str) -> Config:
    return parse_config(text, env={"CHATMOUNT_API_KEY": SECRET, **env}, registry=REGISTRY)


SLACK = "slack: {bot_token: '${SLACK_BOT}', app_token: '${SLACK_APP}'}\n"
BOT_TOKEN = "xoxb-111-SECRETBOT"


def slack_route(channels: str) -> str:
    """BASE as a Slack route for `channels`, with the Slack tokens from variables."""
    return BASE.replace("platform: any", "platform: slack") + f"    channels: {channels}\n" + SLACK


def run_check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`chat-bridge check -c path` in a process of its own, with `env` alone."""
    return run_command("check", "-c", str(path), env=env)
