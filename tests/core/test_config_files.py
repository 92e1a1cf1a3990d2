"""Config files as they arrive: a template's placeholders left in, a file of variables
saved with Windows line endings, spaces pasted from a web page. Each is a config error
that names the real mistake and its line, or is read as meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.cli_support import run_command
from tests.core.config_support import BASE, parse


@pytest.mark.parametrize(
    ("placeholder", "write"),
    [
        ("{{ CHATMOUNT_API_KEY }}", "${CHATMOUNT_API_KEY}"),  # Jinja's, Ansible's
        ("{{CHATMOUNT_API_KEY}}", "${CHATMOUNT_API_KEY}"),
        ("{{ .Values.chatmount.apiKey }}", "${VAR}"),  # Helm's
        ("{{ .Values.key | quote }}", "${VAR}"),
    ],
)
def test_a_templates_placeholder_is_a_config_error_saying_to_write_a_variable(
    placeholder: str, write: str
) -> None:
    # A traceback before: "TypeError: unhashable type: 'dict'".
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("${CHATMOUNT_API_KEY}", placeholder))
    assert str(err.value) == (
        "the file is not valid YAML at line 7, column 14 "
        f"({{{{ }}}} is not substituted: write {write}, a variable of the environment)"
    )


def test_a_templates_directive_on_a_line_of_its_own_is_named() -> None:
    # YAML fails at the start of the line below it.
    with pytest.raises(ConfigError) as err:
        parse(BASE + "{{- if .Values.slack }}\n")
    assert str(err.value).startswith(
        "the file is not valid YAML at line 11, column 1 ({{ }} is not substituted"
    )


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        (BASE + "[a, b]: 1\n", 11, 1),
        (BASE + "reply: {[edit_interval]: 2}\n", 11, 9),
        (BASE.replace("  docs:", "  ? [docs]\n  :"), 4, 5),
    ],
)
def test_a_key_that_is_a_list_or_a_mapping_is_a_config_error(
    text: str, line: int, column: int
) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == (
        f"the file is not valid YAML at line {line}, column {column} "
        "(a key in [ ] or { } is a list or a mapping, not a name: quote it)"
    )


def test_check_of_a_file_with_a_placeholder_says_where_without_a_traceback(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE.replace("${CHATMOUNT_API_KEY}", "{{ CHATMOUNT_API_KEY }}"))
    result = run_command("check", "-c", str(config), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config error: the file is not valid YAML at line 7")
    assert "Traceback" not in result.stderr


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


SPACES = [
    ("\xa0", "a non-breaking space"),
    ("\u2007", "a figure space"),
    ("\u202f", "a narrow non-breaking space"),
    ("\u3000", "a full-width space"),
]


@pytest.mark.parametrize(("space", "name"), SPACES)
@pytest.mark.parametrize(
    ("written", "pasted", "line", "column"),
    [
        ("    kind: chatmount", "    kind:{}chatmount", 5, 10),  # after the colon
        ("    url:", "  {} url:", 6, 3),  # in the indentation
        ("  - platform: any", "  - platform:{}any", 9, 14),
        ("    backend: docs", "    backend: docs\n    trigger:{}mention", 11, 13),  # last line
    ],
)
def test_a_pasted_space_yaml_fails_on_is_named_by_its_own_line(
    space: str, name: str, written: str, pasted: str, line: int, column: int
) -> None:
    # It was "not valid YAML" at the line below, with a word of tabs.
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace(written, pasted.format(space)))
    assert str(err.value) == (
        f"the file is not valid YAML: {name} (copied from a web page or chat) at line "
        f"{line}, column {column}: retype it as a normal space"
    )


def test_a_pasted_space_yaml_reads_is_not_blamed_for_another_mistake() -> None:
    text = "# copied\xa0from the docs\n" + BASE.replace("    url:", "\turl:")
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value).startswith("the file is not valid YAML at line 7, column 1 (check")


def test_a_pasted_space_in_a_quoted_value_is_not_blamed_for_one_above_it() -> None:
    # French puts a non-breaking space before "!": valid in the prompt's quotes, it was
    # named in place of the one after `kind:` that YAML stumbled on.
    text = BASE.replace(
        "    kind: chatmount",
        '    kind:\xa0chatmount\n    system_prompt: "Réponds en français\xa0!"',
    )
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == (
        "the file is not valid YAML: a non-breaking space (copied from a web page or chat) "
        "at line 5, column 10: retype it as a normal space"
    )
