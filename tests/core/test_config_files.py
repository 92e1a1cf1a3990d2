"""Config files as they arrive: a file of variables saved with Windows line endings
is read as meant."""

from __future__ import annotations

import pytest

from adapters.registry import REGISTRY
from bridge.config import parse_config

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


def parse(text: str, **env: str):
    return parse_config(text, env={"CHATMOUNT_API_KEY": SECRET, **env}, registry=REGISTRY)


WINDOWS_ENV = """
store: ${STORE}
backends:
  local:
    kind: openai
    url: ${URL}
    model: ${MODEL}
    system_prompt: ${PROMPT}
  tax:
    kind: bot-messages
    url: https://bots.example.com/v1/chat
    bot_slug: ${SLUG}
  widget:
    kind: ndjson
    url: https://api.example.com/v1/chat/stream
    api_key: ${WIDGET_KEY}
    auth_header: ${WIDGET_HEADER}
slack:
  bot_token: ${SLACK_BOT_TOKEN}
  app_token: ${SLACK_APP_TOKEN}
  reset_command: ${RESET_COMMAND}
routes:
  - platform: slack
    channels: ["${SUPPORT_CHANNEL}"]
    backend: local
  - platform: slack
    channels: ${DOCS_CHANNEL}
    backend: tax
  - platform: slack
    backend: widget
"""


@pytest.mark.parametrize("ending", ["\r", "\r\n"])
def test_a_variables_carriage_return_from_a_windows_file_is_dropped(ending: str) -> None:
    # `set -a; . ./prod.env` of a file saved with Windows line endings: the store was a
    # new SQLite file named "prod.db\r", the model "llama3.1\r" (every question a 404),
    # the channel id refused as a channel's name.
    env = {
        "STORE": "sqlite:///tmp/prod.db",
        "URL": "http://127.0.0.1:11434/v1",
        "MODEL": "llama3.1",
        "PROMPT": "Users live in Texas.",
        "SLUG": "taxson",
        "WIDGET_KEY": "abc123",
        "WIDGET_HEADER": "x-api-key",
        "SLACK_BOT_TOKEN": "xoxb-1-2-abc",
        "SLACK_APP_TOKEN": "xapp-1-abc",
        "RESET_COMMAND": "/chat-reset",
        "SUPPORT_CHANNEL": "C0123ABCD",
        "DOCS_CHANNEL": "C0456EFGH",
    }
    config = parse_config(
        WINDOWS_ENV, {name: value + ending for name, value in env.items()}, REGISTRY
    )
    assert config.store == "sqlite:///tmp/prod.db"
    local = config.backends["local"]
    assert (local.url, local.model, local.system_prompt) == (
        "http://127.0.0.1:11434/v1",
        "llama3.1",
        "Users live in Texas.",
    )
    assert config.backends["tax"].bot_slug == "taxson"
    widget = config.backends["widget"]
    assert widget.auth_header == "x-api-key"
    assert widget.api_key.get_secret_value() == "abc123"
    slack = config.platforms["slack"]
    assert slack.bot_token.get_secret_value() == "xoxb-1-2-abc"
    assert slack.app_token.get_secret_value() == "xapp-1-abc"
    assert slack.reset_command == "/chat-reset"
    assert [route.channels for route in config.routes] == [["C0123ABCD"], ["C0456EFGH"], None]


def test_a_carriage_return_within_a_variables_value_is_kept() -> None:
    config = parse(BASE.replace("routes:", "reply: {thinking_text: '${T}'}\nroutes:"), T="a\rb\r")
    assert config.reply.thinking_text == "a\rb"


def test_a_variable_that_is_a_carriage_return_alone_is_empty() -> None:
    config = parse(BASE.replace("sqlite:///tmp/x.db", "${STORE:-sqlite:///tmp/y.db}"), STORE="\r")
    assert config.store == "sqlite:///tmp/y.db"
