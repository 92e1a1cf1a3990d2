from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
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


def test_minimal_config_gets_defaults() -> None:
    config = parse(BASE)
    assert config.reply.edit_interval == 1.0
    assert config.routes[0].session == "thread"
    assert config.backends["docs"].api_key.get_secret_value() == SECRET
    assert SECRET not in repr(config)
    # A reasoning model thinks a minute or two before its first text.
    timeouts = config.backends["docs"].timeouts
    assert (timeouts.first_byte, timeouts.idle, timeouts.total) == (120.0, 30.0, None)


def test_an_answers_length_limit_has_a_floor_and_may_be_lifted() -> None:
    assert parse(BASE).reply.max_answer_chars == 20000
    assert parse(BASE + "reply: {max_answer_chars: null}\n").reply.max_answer_chars is None
    with pytest.raises(ConfigError) as err:
        parse(BASE + "reply: {max_answer_chars: 100}\n")
    assert err.value.path == "reply.max_answer_chars" and "500" in str(err.value)


def test_env_default_is_used_when_unset() -> None:
    text = BASE.replace("${CHATMOUNT_API_KEY}", "${MISSING_KEY:-fallback-key}")
    assert parse(text).backends["docs"].api_key.get_secret_value() == "fallback-key"


def test_missing_env_var_names_the_key_and_variable() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE, env={}, registry=REGISTRY)
    assert err.value.path == "backends.docs.api_key"
    assert "CHATMOUNT_API_KEY is not set" in str(err.value)


def test_every_unset_env_var_is_named_at_once() -> None:
    # A new deployment missing three variables was told of one a run.
    text = (
        BASE
        + """platforms:
  slack:
    bot_token: ${SLACK_BOT_TOKEN}
    app_token: ${SLACK_APP_TOKEN}
"""
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={}, registry=REGISTRY)
    assert err.value.path == "backends.docs.api_key"
    assert str(err.value).splitlines() == [
        "backends.docs.api_key: environment variable CHATMOUNT_API_KEY is not set; export "
        "it or write ${CHATMOUNT_API_KEY:-default} to give a default",
        "platforms.slack.bot_token: environment variable SLACK_BOT_TOKEN is not set; export "
        "it or write ${SLACK_BOT_TOKEN:-default} to give a default",
        "platforms.slack.app_token: environment variable SLACK_APP_TOKEN is not set; export "
        "it or write ${SLACK_APP_TOKEN:-default} to give a default",
    ]


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        # Each passed, then lost the asker's answer (an overflow making the refusal's
        # "try again in N s"), or held a core (a heartbeat a microsecond apart), or
        # told the asker a reset done had failed (an empty reply the platform refused).
        (
            "limits: {rate_limit: {messages: 1, per: .inf}}",
            "limits.rate_limit.per: must be a finite number "
            "(not .inf or .nan; where the key takes null, null is no limit)",
        ),
        (
            "limits: {circuit: {cooldown: .inf}}",
            "limits.circuit.cooldown: must be a finite number "
            "(not .inf or .nan; where the key takes null, null is no limit)",
        ),
        (
            "limits: {shutdown_grace: .nan}",
            "limits.shutdown_grace: must be a finite number "
            "(not .inf or .nan; where the key takes null, null is no limit)",
        ),
        (
            "limits: {heartbeat_interval: 0.000001}",
            "limits.heartbeat_interval: Input should be greater than or equal to 0.01",
        ),
        (
            "commands: {reset_reply: ' '}",
            "commands.reset_reply: must say something: the asker "
            "is told it once the conversation is reset",
        ),
    ],
)
def test_values_that_pass_for_numbers_or_text_but_cannot_work_are_refused(
    extra: str, said: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + extra + "\n")
    assert str(err.value) == said


def test_typo_in_top_level_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + "rplay: {}\n")
    assert str(err.value) == "rplay: unknown key (check its spelling)"


def test_typo_in_nested_key_names_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + "reply: {edit_intervl: 2}\n")
    assert str(err.value).startswith("reply.edit_intervl: unknown key")


def test_a_route_may_set_its_own_history_on_a_stateless_backend() -> None:
    text = """
backends:
  local: {kind: openai, url: "http://127.0.0.1:11434/v1", model: m, history: 8}
routes:
  - {channels: [C0123ABCD], backend: local, history: 2}
  - {backend: local}
"""
    config = parse(text)
    assert [route.history for route in config.routes] == [2, None]  # None: the backend's
    assert config.backends["local"].history == 8
    with pytest.raises(ConfigError) as err:
        parse(text.replace("history: 2", "history: 501"))
    assert str(err.value) == "routes[0].history: Input should be less than or equal to 500"


def test_a_routes_history_on_a_stateful_backend_is_refused_naming_its_kind() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + "    history: 5\n")
    stateless = [kind for kind, load in REGISTRY.dialects.items() if not load().stateful]
    assert {"bot-messages", "openai"} <= set(stateless)
    assert str(err.value) == (
        "routes[0].history: backend 'docs' is a chatmount API, which keeps its "
        "conversations itself: the bridge sends it no history, so drop `history` (it is "
        f"for routes to stateless APIs: {', '.join(stateless)})"
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


def test_shared_settings_merged_with_a_yaml_anchor_are_read() -> None:
    text = BASE.replace("  docs:\n", "  docs: &base\n", 1).replace(
        "routes:", "  docs2: {<<: *base, include_sources: false}\nroutes:", 1
    )
    config = parse(text)
    assert config.backends["docs2"].include_sources is False
    assert config.backends["docs2"].api_key.get_secret_value() == SECRET
    assert config.backends["docs"].include_sources is True


def test_a_key_given_twice_is_a_config_error() -> None:
    text = BASE.replace("  docs:\n", "  docs:\n    kind: openai\n    model: m\n  docs:\n", 1)
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == "the key 'docs' is given twice (lines 4 and 7)"


def test_a_route_for_named_channels_and_dms_only_is_a_config_error() -> None:
    for extra in ("    channels: [C1]\n    dm: true\n", "    channels: [C1]\n    trigger: dm\n"):
        with pytest.raises(ConfigError) as err:
            parse(BASE + extra)
        assert str(err.value).startswith("routes[0].channels: a DM is in a channel of its own")


@pytest.mark.parametrize(
    ("route", "path", "says"),
    [
        ("dm: false\n    trigger: dm", "routes[0].dm", "could never answer"),
        ("roles: [R1]", "routes[0].roles", "slack messages carry no roles"),
    ],
)
def test_a_route_that_could_never_answer_is_a_config_error(
    route: str, path: str, says: str
) -> None:
    slack = "slack: {bot_token: xoxb-1, app_token: xapp-1}\n"
    text = BASE.replace("platform: any", "platform: slack")
    with pytest.raises(ConfigError) as err:
        parse(text.replace("backend: docs", "backend: docs\n    " + route) + slack)
    assert err.value.path == path and says in str(err.value)


@pytest.mark.parametrize("key", ["channels", "users", "workspace", "roles"])
def test_a_route_with_an_empty_list_is_a_config_error(key: str) -> None:
    # `check` said "config ok", and the bot then answered nobody without a word.
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("backend: docs", f"backend: docs\n    {key}: []"))
    assert err.value.path == f"routes[0].{key}" and "could never answer" in str(err.value)


def test_no_route_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE.split("routes:")[0] + "routes: []\n")
    assert err.value.path == "routes" and "nothing would ever be answered" in str(err.value)


def test_bad_enum_names_route_index_and_choices() -> None:
    text = BASE + "  - platform: any\n    backend: docs\n  - backend: docs\n    session: threads\n"
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == (
        "routes[2].session: must be one of thread, channel, user, user+channel (read as 'threads')"
    )


def test_unknown_backend_in_route() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("backend: docs", "backend: dcos"))
    assert err.value.path == "routes[0].backend"
    assert "'dcos'" in str(err.value)


def test_dialect_option_typo_is_rejected_without_echoing_secrets() -> None:
    text = BASE.replace("    url: https", "    include_sorces: true\n    url: https")
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.path == "backends.docs.include_sorces"
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("${CHATMOUNT_API_KEY-fallback}", "that is not ${VAR} or ${VAR:-default}"),
        ("${NOT SET}", "that is not ${VAR} or ${VAR:-default}"),
        ("${OTHER:-${CHATMOUNT_API_KEY}}", "a default cannot hold another ${...}"),
    ],
)
def test_a_variable_the_config_cannot_expand_is_an_error(written: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("${CHATMOUNT_API_KEY}", written))
    assert err.value.path == "backends.docs.api_key" and says in str(err.value)
    assert SECRET not in str(err.value)  # it was taken as written before: no key sent


def test_an_unquoted_variable_in_a_flow_mapping_gets_a_hint() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + "limits: {shutdown_grace: ${GRACE}}\n", GRACE="5")
    assert str(err.value) == (
        "the file is not valid YAML at line 11, column 27 "
        '(inside { } or [ ], write a ${VAR} in quotes: "${VAR}")'
    )


def test_wrong_type_does_not_echo_the_value() -> None:
    text = BASE + "limits: {max_concurrent_streams: " + SECRET + "}\n"
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.path == "limits.max_concurrent_streams"
    assert SECRET not in str(err.value)


def test_invalid_yaml_says_where() -> None:
    with pytest.raises(ConfigError) as err:
        parse("backends: [\n")
    assert "not valid YAML at line" in str(err.value)


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


SLACK = "slack: {bot_token: '${SLACK_BOT}', app_token: '${SLACK_APP}'}\n"
BOT_TOKEN = "xoxb-111-SECRETBOT"


def slack_route(channels: str) -> str:
    return BASE.replace("platform: any", "platform: slack") + f"    channels: {channels}\n" + SLACK


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
    result = _check(
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


def _check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "adapters", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )


def test_check_accepts_the_example_config() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = _check(ROOT / "config.example.yaml", env)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.startswith("config ok") and "warning" not in result.stdout


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda t: t + "reply: {edit_intervl: 2}\n", "reply.edit_intervl"),
        (
            lambda t: t.replace("backend: docs", "backend: docs\n    trigger: always"),
            "routes[0].trigger",
        ),
        (
            lambda t: t.replace("${CHATMOUNT_API_KEY}", "${NOT_SET_ANYWHERE}"),
            "backends.docs.api_key",
        ),
    ],
)
def test_check_rejects_bad_configs_with_the_path(tmp_path: Path, edit, path: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(edit(BASE))
    result = _check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 2
    assert path in result.stderr
    assert SECRET not in result.stdout + result.stderr


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
    result = _check(config, env)
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
    result = _check(config, env)
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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@127.0.0.1:99999/test",
        "postgresql://u:p@h1:5432,h2:0/test",
        "postgresql://u:99999/SECRET@db/chat",
        "postgresql:///chat?host=/var/run/postgresql&port=70000",
    ],
)
def test_a_store_port_out_of_range_is_a_config_error(url: str) -> None:
    # `check` passed it; `run` then died on the socket's OverflowError.
    with pytest.raises(ConfigError) as caught:
        parse(BASE.replace("sqlite:///tmp/x.db", url))
    assert caught.value.path == "store" and "port outside 1-65535" in caught.value.problem
    assert "SECRET" not in str(caught.value) and "99999" not in str(caught.value)
    fine = "postgresql:///chat?host=/var/run/postgresql&port=65535"
    assert parse(BASE.replace("sqlite:///tmp/x.db", fine)).store == fine


@pytest.mark.parametrize("prefix", ["Bot ", "bot ", "Bearer "])
def test_a_discord_token_given_with_its_prefix_is_a_config_error(prefix: str) -> None:
    # discord.py adds "Bot ": Discord refused "Bot Bot …", and the error sent the
    # admin to reset a token that was fine.
    with pytest.raises(ConfigError) as caught:
        parse(BASE + "discord: {token: '${DISCORD}'}\n", DISCORD=prefix + "MTIz.abc.SECRETPART")
    assert caught.value.path == "discord.token" and "give the token alone" in str(caught.value)
    assert "SECRETPART" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # A key indented one space too many, on a line with ${VAR}: not a quoting matter.
        (BASE.replace("    api_key:", "     api_key:"), "check the indentation"),
        (BASE + "reply: {thinking_text: ${X}}\n", "write a ${VAR} in quotes"),
        # PyYAML's own words would quote a literal key read as an alias or a tag; the
        # hint names that mistake too, not the indentation only.
        (BASE.replace("${CHATMOUNT_API_KEY}", "*Qm9vX2tleV9zZWNyZXQ"), "starts with * & !"),
        (BASE.replace("${CHATMOUNT_API_KEY}", "!Pa55w0rd-secret"), "not valid YAML"),
    ],
)
def test_a_yaml_error_gets_the_hint_that_fits_it(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, X="x")
    assert said in str(caught.value) and "not valid YAML at line" in str(caught.value)
    assert "Qm9v" not in str(caught.value) and "Pa55w0rd" not in str(caught.value)


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(BASE.encode() + 'reply: {thinking_text: "Réflexion"}\n'.encode("latin-1"))
    result = _check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is not UTF-8 text (line 11); save it as UTF-8")
    assert "Traceback" not in result.stderr


def test_check_says_run_needs_a_platform(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE)
    result = _check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    assert "warning: no `slack:` or `discord:` block: `run` needs one" in result.stdout


def test_slack_http_mode_without_the_listener_is_a_config_error() -> None:
    slack = "slack: {bot_token: xoxb-1, signing_secret: s3cr3t}\n"
    with pytest.raises(ConfigError) as err:
        parse(BASE + slack + "http: {listen: null}\n")
    assert err.value.path == "http.listen"
    assert "Slack HTTP mode (slack.signing_secret) needs the HTTP listener" in str(err.value)
    assert parse(BASE + slack).platforms["slack"].needs_listener()
    assert parse(BASE + "slack: {bot_token: xoxb-1, app_token: xapp-1}\nhttp: {listen: null}\n")


def test_probe_logs_name_the_backend(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        BASE.replace("https://services.chatmount.co", "http://127.0.0.1:9") + "    # unreachable\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "adapters", "check", "--probe", "-c", str(config)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET},
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert "backend docs: unreachable" in result.stdout
    # Each of the backend's log lines says which backend it is about.
    lines = [line for line in result.stderr.splitlines() if "connection refused" in line]
    assert lines and all(line.endswith("backend=docs") for line in lines)
    assert "connection refused at 127.0.0.1:9" in lines[0]
    assert SECRET not in result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_check_warns_of_user_ids_hashed_with_a_public_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    block = (
        "  bot:\n    kind: bot-messages\n    url: https://bots.example/v1/chat\n    bot_slug: b\n"
    )
    config.write_text(BASE.replace("backends:\n", "backends:\n" + block))
    result = _check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    assert "warning: backends.bot: user ids are hashed with the backend's URL" in result.stdout
    keyed = BASE.replace("backends:\n", "backends:\n" + block + "    user_id_key: k3y\n")
    config.write_text(keyed)
    assert (
        "user ids are hashed"
        not in _check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET}).stdout
    )
    # A key whose variable is empty is no key: the warning says so.
    config.write_text(keyed.replace("k3y", "'${USER_ID_KEY}'"))
    result = _check(
        config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET, "USER_ID_KEY": ""}
    )
    assert "user ids are hashed with the backend's URL" in result.stdout, result.stderr


def test_check_warns_of_trigger_all_without_the_message_content_intent(tmp_path: Path) -> None:
    # `check` said "config ok" and `run` then answered nothing in the channel.
    from bridge.cli import config_warnings

    discord = "discord: {token: d.t.k, message_content: false}\n"
    text = BASE.replace("platform: any", "platform: any\n    trigger: all") + discord
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = _check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    assert (
        "warning: routes[0]: trigger: all answers nothing in discord channels but messages "
        "that mention the bot: without the Message Content intent "
        "(discord.message_content: false) they come without their text; use trigger: mention"
    ) in result.stdout
    assert config_warnings(parse(text.replace("platform: any", "platform: discord")))
    # Mentions, DMs, and the intent on: nothing to say.
    assert not config_warnings(parse(BASE + discord))
    assert not config_warnings(parse(text.replace("trigger: all", "trigger: all\n    dm: true")))
    assert not config_warnings(parse(text.replace("content: false", "content: true")))


def test_kind_that_is_not_a_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("kind: chatmount", "kind: [chatmount]"))
    assert err.value.path == "backends.docs.kind"
    assert "must be one of chatmount" in str(err.value)


def test_run_without_a_platform_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import run_cli

    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace("${CHATMOUNT_API_KEY}", "cm_test_key"), encoding="utf-8")
    assert run_cli(["run", "-c", str(path)], REGISTRY) == 2
    assert "no platform to answer on: add a `slack:` or `discord:` block" in capsys.readouterr().err


def test_discord_ids_written_as_numbers_are_read_as_ids() -> None:
    # "Copy ID" gives a number, and YAML reads it as one: it was refused with
    # pydantic's bare "Input should be a valid string".
    config = parse(
        BASE.replace(
            "routes:\n",
            "routes:\n  - {channels: [1234567890123456789], users: 987654321098765432,"
            " roles: [111], workspace: [222], backend: docs}\n",
        )
    )
    first = config.routes[0]
    assert first.channels == ["1234567890123456789"]
    assert (first.users, first.roles, first.workspace) == (["987654321098765432"], ["111"], ["222"])


@pytest.mark.parametrize("written", ['"C0123ABCD,C0456EFGH"', '"C0123ABCD C0456EFGH"', '""'])
def test_ids_in_one_string_are_refused_not_matched_against_nothing(written: str) -> None:
    # `channels: ${CHANNELS}` with "C1,C2" became one id that matched no channel.
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("    backend: docs\n", f"    backend: docs\n    channels: {written}\n"))
    assert err.value.path == "routes[0].channels" and "list of ids" in str(err.value)
