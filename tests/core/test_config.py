from __future__ import annotations

from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.cli_support import ROOT, run_command
from tests.core.config_support import BASE, SECRET, parse, run_check


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


def test_invalid_yaml_says_where() -> None:
    with pytest.raises(ConfigError) as err:
        parse("backends: [\n")
    assert "not valid YAML at line" in str(err.value)


def test_check_accepts_the_example_config() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = run_check(ROOT / "config.example.yaml", env)
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
    result = run_check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 2
    assert path in result.stderr
    assert SECRET not in result.stdout + result.stderr


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
    result = run_check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is not UTF-8 text (line 11); save it as UTF-8")
    assert "Traceback" not in result.stderr


def test_check_says_run_needs_a_platform(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE)
    result = run_check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
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
    result = run_command(
        "check",
        "--probe",
        "-c",
        str(config),
        env={"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET},
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
    result = run_check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    assert "warning: backends.bot: user ids are hashed with the backend's URL" in result.stdout
    keyed = BASE.replace("backends:\n", "backends:\n" + block + "    user_id_key: k3y\n")
    config.write_text(keyed)
    assert (
        "user ids are hashed"
        not in run_check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET}).stdout
    )
    # A key whose variable is empty is no key: the warning says so.
    config.write_text(keyed.replace("k3y", "'${USER_ID_KEY}'"))
    result = run_check(
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
    result = run_check(config, {"PATH": "/usr/bin:/bin", "CHATMOUNT_API_KEY": SECRET})
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
