"""Secrets in the config: read from the environment, cleaned of what files and headers
cannot carry, collected for scrubbing, and never echoed by an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from tests.core.config_support import (
    BASE,
    BOT_TOKEN,
    SECRET,
    SLACK,
    parse,
    run_check,
    slack_route,
)


def test_an_api_key_whose_variable_is_empty_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE, CHATMOUNT_API_KEY="")
    assert str(err.value) == ("backends.docs.api_key: is empty (is its environment variable set?)")


def test_a_backend_url_with_a_password_in_it_is_a_config_error() -> None:
    url = "https://bot:${CHATMOUNT_API_KEY}@services.chatmount.co/v1/chat"
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("https://services.chatmount.co/v1/chat", url))
    assert err.value.path == "backends.docs.url"
    assert "give the key in api_key" in str(err.value) and SECRET not in str(err.value)


def test_secrets_lose_the_line_break_a_secret_file_leaves() -> None:
    config = parse(
        BASE
        + "slack: {bot_token: '${BOT}', signing_secret: '${SIGNING}'}\n"
        + "discord: {token: '${DISCORD}'}\n",
        CHATMOUNT_API_KEY=SECRET + "\n",
        BOT="xoxb-1\n",
        SIGNING="f00d\r\n",
        DISCORD="d.t.k\n",
    )
    assert config.backends["docs"].api_key.get_secret_value() == SECRET
    assert config.platforms["slack"].signing_secret.get_secret_value() == "f00d"
    assert config.platforms["discord"].token.get_secret_value() == "d.t.k"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CHATMOUNT_API_KEY", SECRET + "\nX-Other: y"),  # two lines of a file
        ("CHATMOUNT_API_KEY", f"\u201c{SECRET}\u201d"),  # curly quotes from a copy
        ("BOT", "xoxb-1\nxoxb-2"),
        ("DISCORD", "d.t\tk"),
    ],
)
def test_a_secret_a_header_cannot_carry_is_a_config_error(variable: str, value: str) -> None:
    # It passed `check`, then failed every request with an error about something else
    # (Slack: a traceback at the start; a chat API: "the question has characters...").
    text = BASE + (
        "slack: {bot_token: '${BOT}', app_token: xapp-1}\ndiscord: {token: '${DISCORD}'}\n"
    )
    env = {"BOT": "xoxb-1", "DISCORD": "d.t.k", variable: value}
    with pytest.raises(ConfigError) as err:
        parse(text, **env)
    assert "a line break or a character that is not plain ASCII" in str(err.value)
    path = {
        "CHATMOUNT_API_KEY": "backends.docs.api_key",
        "BOT": "slack.bot_token",
        "DISCORD": "discord.token",
    }[variable]
    assert err.value.path == path
    assert SECRET not in str(err.value) and value not in str(err.value)


def test_dialect_option_typo_is_rejected_without_echoing_secrets() -> None:
    text = BASE.replace("    url: https", "    include_sorces: true\n    url: https")
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.path == "backends.docs.include_sorces"
    assert SECRET not in str(err.value)


def test_wrong_type_does_not_echo_the_value() -> None:
    text = BASE + "limits: {max_concurrent_streams: " + SECRET + "}\n"
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.path == "limits.max_concurrent_streams"
    assert SECRET not in str(err.value)


def test_secrets_are_collected_for_scrubbing() -> None:
    assert SECRET in parse(BASE).secrets()
    # A key in a backend URL's query or a password in the store's: an HTTP client
    # logs the URL whole at DEBUG. A short value (?v=1) is no key.
    text = BASE.replace("/v1/chat", "/v1/chat?v=1&key=${QUERY_KEY}").replace(
        "sqlite:///tmp/x.db",
        "postgresql://bridge@db/bridge?search_path=chat_bridge_prod&password=pg_SECRET_pw"
        "&sslmode=verify-full",
    )
    found = parse(text, QUERY_KEY="q_SECRET_key_42").secrets()
    assert "q_SECRET_key_42" in found and "pg_SECRET_pw" in found and "1" not in found
    # The store's other settings are no secrets: an error naming the schema keeps it.
    assert "chat_bridge_prod" not in found and "verify-full" not in found


@pytest.mark.parametrize(
    ("text", "env", "said"),
    [
        # A token's variable in `channels` by mistake: the token was in the container's log.
        (slack_route('["${SLACK_BOT}"]'), {}, "routes[0].channels: '${SLACK_BOT}' is not a Slack"),
        (slack_route('"${SLACK_BOT}"'), {}, "routes[0].channels: '${SLACK_BOT}' is not a Slack"),
        # Around the variable, what was written stays.
        (slack_route('["C${SLACK_BOT}"]'), {}, "'C${SLACK_BOT}' is not a Slack"),
        # As the secret file left it, a line break quoted as \n.
        (
            slack_route('["${SLACK_BOT}"]'),
            {"SLACK_BOT": BOT_TOKEN + "\n"},
            "routes[0].channels: '${SLACK_BOT}' is ",
        ),
        # Too long to be quoted whole, it was quoted cut short.
        (
            slack_route('["${CHATMOUNT_API_KEY}"]'),
            {"CHATMOUNT_API_KEY": "sk-proj-" + "S" * 150},
            "routes[0].channels: '${CHATMOUNT_API_KEY}' is not a Slack",
        ),
        # Another key's message.
        (
            BASE.replace("backend: docs", "backend: ${CHATMOUNT_API_KEY}"),
            {},
            "routes[0].backend: no backend named '${CHATMOUNT_API_KEY}' (known: docs)",
        ),
    ],
)
def test_a_config_error_shows_a_value_the_environment_gave_as_its_variable(
    text: str, env: dict[str, str], said: str
) -> None:
    env = {"SLACK_BOT": BOT_TOKEN, "SLACK_APP": "xapp-1-SECRETAPP", **env}
    with pytest.raises(ConfigError) as caught:
        parse(text, **env)
    assert said in str(caught.value)
    for value in (*env.values(), SECRET):
        shown = repr(value)[1:-1]
        assert shown[:12] not in str(caught.value) and shown[:12] not in caught.value.problem


def test_each_line_of_a_config_error_shows_the_environments_values_as_their_variables() -> None:
    text = (
        BASE.replace("platform: any", "platform: slack")
        + """    channels: ["${SLACK_BOT}"]
  - platform: slack
    backend: docs
    channels: ["${SLACK_APP}"]
    session: ${SESSION}
  - platform: slack
    backend: docs
    session: users
"""
        + SLACK
    )
    with pytest.raises(ConfigError) as caught:
        parse(text, SLACK_BOT=BOT_TOKEN, SLACK_APP="xapp-1-SECRETAPP", SESSION="user")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("routes[0].channels: '${SLACK_BOT}' is not a Slack channel id")
    assert lines[1].startswith("routes[1].channels: '${SLACK_APP}' is not a Slack channel id")
    # A short value is shown in its own key's line alone, not in words it spells.
    assert lines[2] == (
        "routes[2].session: must be one of thread, channel, user, user+channel (read as 'users')"
    )
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("written", "value", "said"),
    [
        ("reply:\n  edit_interval: ${SET}", "0", "greater than or equal to 0.05"),
        ("reply:\n  max_answer_chars: ${SET}", "50", "greater than or equal to 500"),
    ],
)
def test_a_short_value_the_environment_gave_leaves_the_bound_its_error_says(
    written: str, value: str, said: str
) -> None:
    # Hidden wherever it was spelt, `0` made the bound `${SET}.${SET}5`.
    with pytest.raises(ConfigError) as caught:
        parse(BASE + written + "\n", SET=value)
    assert said in str(caught.value)


def test_check_prints_no_secret_a_config_error_would_quote(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(slack_route('["${SLACK_BOT}"]'))
    result = run_check(
        config,
        {
            "PATH": "/usr/bin:/bin",
            "CHATMOUNT_API_KEY": SECRET,
            "SLACK_BOT": BOT_TOKEN,
            "SLACK_APP": "xapp-1-SECRETAPP",
        },
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: routes[0].channels: '${SLACK_BOT}' is not")
    assert BOT_TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "block",
    [
        "slack: {bot_token: xoxb-1, app_token: xapp-1, api_url: 'http://u:pw_SECRET@h/api/'}",
        "slack: {bot_token: xoxb-1, app_token: xapp-1, api_url: 'http://h:port_SECRET/api/'}",
        "discord: {token: d.t.k, api_url: 'https://u:pw_SECRET@h/api'}",
        "discord: {token: d.t.k, gateway_url: 'wss://u:pw_SECRET@h/'}",
        "slack: {bot_token: xoxb-1, app_token: xapp-1, api_url: 'https:///api/'}",
        "slack: {bot_token: xoxb-1, app_token: xapp-1, api_url: 'https://sla ck.com/api/'}",
    ],
)
def test_a_platform_url_with_a_password_or_no_port_is_refused(block: str) -> None:
    # aiohttp would refuse it at the first request, with a traceback.
    with pytest.raises(ConfigError) as caught:
        parse(BASE + block + "\n")
    assert caught.value.path.endswith("_url") and "pw_SECRET" not in str(caught.value)
    assert "port_SECRET" not in str(caught.value)


@pytest.mark.parametrize("value", ["http://u:pw_SECRET@proxy:port", "http://u:p\\w_SECRET@proxy:1"])
def test_a_proxy_variable_that_is_no_url_is_a_config_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE)
    env = {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET, "https_proxy": value}
    result = run_check(config, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config error: https_proxy: is not a valid proxy URL")
    assert "SECRET" not in result.stdout + result.stderr


def test_host_lists_in_variables_named_like_proxies_are_no_proxies(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE)
    env = {
        "PATH": "/usr/bin:/bin",
        "CHATMOUNT_API_KEY": SECRET,
        "NO_PROXY": "::1,h:80",
        "npm_config_no_proxy": "localhost,::1",
        "DOCKER_NO_PROXY": "127.0.0.1:9000",
    }
    result = run_check(config, env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("password", ["p@ss:w/rd#1", "abc#def", "ab/cd", "a?b", "Secr3t@2024"])
def test_a_store_password_that_needs_encoding_is_a_config_error(password: str) -> None:
    # `check` passed it; `run` then said only that the URL was invalid.
    text = BASE.replace("sqlite:///tmp/x.db", "postgresql://bridge:${PG}@db:5432/chat")
    with pytest.raises(ConfigError) as caught:
        parse(text, PG=password)
    assert caught.value.path == "store" and "%-encode" in caught.value.problem
    assert password not in str(caught.value)
    assert parse(text, PG="p%40ss%3Aw%2Frd%231").store.endswith("@db:5432/chat")
    for fine in (
        "postgresql://u:p@h1:5432,h2:5433/chat",
        "postgresql://u:p@[::1]:5432/chat",
        "postgresql://u@[::1]/chat",
        "postgresql:///chat?host=/var/run/postgresql",
    ):
        assert parse(BASE.replace("sqlite:///tmp/x.db", fine)).store == fine


@pytest.mark.parametrize("prefix", ["Bot ", "bot ", "Bearer "])
def test_a_discord_token_given_with_its_prefix_is_a_config_error(prefix: str) -> None:
    # discord.py adds "Bot ": Discord refused "Bot Bot …", and the error sent the
    # admin to reset a token that was fine.
    with pytest.raises(ConfigError) as caught:
        parse(BASE + "discord: {token: '${DISCORD}'}\n", DISCORD=prefix + "MTIz.abc.SECRETPART")
    assert caught.value.path == "discord.token" and "give the token alone" in str(caught.value)
    assert "SECRETPART" not in str(caught.value)
