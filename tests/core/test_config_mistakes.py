"""Mistakes a first config makes that `check` used to pass and `run` then failed on (or
that left the bot silent): each is a config error that points at the real mistake."""

from __future__ import annotations

import pytest

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.core.config_support import SECRET

BOT = "xoxb-1234-SECRETBOT"

BASE = """
store: sqlite:///tmp/x.db
backends:
  docs:
    kind: chatmount
    url: https://services.chatmount.co/v1/chat
    api_key: ${CHATMOUNT_API_KEY}
slack:
  bot_token: ${SLACK_BOT_TOKEN}
  app_token: xapp-1
discord:
  token: ${DISCORD_BOT_TOKEN}
routes:
  - platform: any
    backend: docs
"""


def parse(text: str, **env: str):
    env = {"CHATMOUNT_API_KEY": SECRET, "SLACK_BOT_TOKEN": BOT, "DISCORD_BOT_TOKEN": "d.t.k", **env}
    return parse_config(text, env=env, registry=REGISTRY)


def with_route(platform: str, channels: str) -> str:
    return BASE.replace("platform: any", f"platform: {platform}\n    channels: {channels}")


@pytest.mark.parametrize(
    ("platform", "channels", "says"),
    [
        ("slack", '["#general"]', "'#general' is a channel's name"),
        ("slack", "[general]", "'general' is not a Slack channel id"),
        ("slack", "[https://myteam.slack.com/archives/C0123ABCD]", "is a link"),
        ("slack", "[c0123abcd]", "is not a Slack channel id"),
        ("slack", "[U0123ABCD]", "is not a Slack channel id"),  # a user's id
        ("slack", "[123456789012345678]", "is not a Slack channel id"),
        ("discord", '["#ask-ai"]', "is a channel's name"),
        ("discord", "[ask-ai]", "'ask-ai' is not a Discord channel id (digits)"),
        ("discord", "[https://discord.com/channels/1/2]", "is a link"),
        (
            "any",
            "[general]",
            "is not a Slack channel id (C…, G… or D…: capital letters and "
            "digits) or a Discord channel id (digits)",
        ),
        ("console", '["#general"]', "is a channel's name"),
    ],
)
def test_a_channel_given_by_name_or_link_is_a_config_error(
    platform: str, channels: str, says: str
) -> None:
    # It passed `check`, and the bot then never answered there: only a DEBUG line said so.
    with pytest.raises(ConfigError) as err:
        parse(with_route(platform, channels))
    assert err.value.path == "routes[0].channels" and says in str(err.value)
    where = {"slack": "Slack: open the channel's details", "discord": "Copy Channel ID"}
    for name, how in where.items():
        assert (how in str(err.value)) == (platform in (name, "any")), str(err.value)


@pytest.mark.parametrize(
    ("platform", "channels"),
    [
        ("slack", "[C0123ABCD, G01ABCDEF23, D999]"),
        ("discord", '["123456789012345678", 987654321098765432]'),
        ("any", "[C0123ABCD, 123456789012345678]"),
        ("console", "[terminal, HOURLY]"),  # a console's places are any name
    ],
)
def test_channel_ids_of_the_routes_platform_are_taken(platform: str, channels: str) -> None:
    assert parse(with_route(platform, channels)).routes[0].channels


@pytest.mark.parametrize("key", ["bot_token", "app_token"])
def test_a_variable_without_braces_is_a_config_error(key: str) -> None:
    # `$SLACK_BOT_TOKEN` was sent to Slack as the token, as written.
    text = BASE.replace("${SLACK_BOT_TOKEN}", "$SLACK_BOT_TOKEN")
    if key == "app_token":
        text = BASE.replace("xapp-1", "$SLACK_APP_TOKEN")
    with pytest.raises(ConfigError) as err:
        parse(text, SLACK_APP_TOKEN="xapp-2")
    assert err.value.path == f"slack.{key}"
    assert str(err.value).endswith(f"write ${{SLACK_{key.upper()}}}: the braces are needed")


def test_a_dollar_in_a_written_value_is_kept_as_written() -> None:
    # Passwords, prices and formulas hold `$`: configs that held them before still work.
    store = "store: postgresql://bridge:{}@db:5432/chat\n"
    for password in ("pa$word", "pa$$word", "$$x"):
        config = parse(BASE.replace("store: sqlite:///tmp/x.db\n", store.format(password)))
        assert config.store == f"postgresql://bridge:{password}@db:5432/chat"
    text = BASE + "reply: {thinking_text: 'Costs $5, $USD or $$x^2$$; $${KEY} is a literal'}\n"
    assert parse(text).reply.thinking_text == "Costs $5, $USD or $$x^2$$; ${KEY} is a literal"
    # A whole value that is a name without braces is a variable meant: said, the name
    # not shown (it is not one of the environment's).
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("store: sqlite:///tmp/x.db\n", "store: $STORE_URL\n"))
    assert err.value.path == "store" and "STORE_URL" not in str(err.value)
    assert "write ${VAR}" in str(err.value)


@pytest.mark.parametrize(
    ("variable", "path"),
    [
        ("SLACK_BOT_TOKEN", "slack.bot_token"),
        ("DISCORD_BOT_TOKEN", "discord.token"),
        ("CHATMOUNT_API_KEY", "backends.docs.api_key"),
    ],
)
@pytest.mark.parametrize("quote", ['"', "'"])
def test_a_secret_wrapped_in_quotes_is_a_config_error(variable: str, path: str, quote: str) -> None:
    # docker --env-file keeps the quotes of KEY="...": the token was refused at run,
    # with advice to reset it.
    value = {"SLACK_BOT_TOKEN": BOT, "DISCORD_BOT_TOKEN": "d.t.k", "CHATMOUNT_API_KEY": SECRET}
    quoted = quote + value[variable] + quote
    with pytest.raises(ConfigError) as err:
        parse(BASE, **{variable: quoted})
    assert err.value.path == path
    assert "is wrapped in quotes; remove them (docker --env-file keeps them)" in str(err.value)
    assert value[variable] not in str(err.value)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("xoxp-1234-SECRETUSER", "is a user token (xoxp-…)"),
        ("1234-SECRETOTHER", "is not a bot token"),
        ("SLACK_BOT_TOKEN", "is not a bot token"),
    ],
)
def test_a_bot_token_that_is_none_is_a_config_error(token: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE, SLACK_BOT_TOKEN=token)
    assert err.value.path == "slack.bot_token" and says in str(err.value)
    assert "starts xoxb- (xoxe.xoxb- when tokens rotate)" in str(err.value)
    assert token not in str(err.value)


def test_a_rotating_bot_token_is_taken() -> None:
    config = parse(BASE, SLACK_BOT_TOKEN="xoxe.xoxb-1-ROTATING")
    assert config.platforms["slack"].bot_token.get_secret_value() == "xoxe.xoxb-1-ROTATING"


HTTP_MODE = BASE.replace("app_token: xapp-1", "signing_secret: ${SLACK_SIGNING_SECRET}") + (
    "http: {listen: '0.0.0.0:8080'}\n"
)


@pytest.mark.parametrize(
    "secret", ["xapp-1-A0APP0001-123-SECRETAPP", "xoxb-1234-SECRETBOT2", "xoxp-1-SECRETUSER"]
)
def test_a_token_as_the_signing_secret_is_a_config_error(secret: str) -> None:
    # It passed `check`, and HTTP mode then answered every request of Slack's 401.
    with pytest.raises(ConfigError) as err:
        parse(HTTP_MODE, SLACK_SIGNING_SECRET=secret)
    assert err.value.path == "slack.signing_secret"
    assert str(err.value) == (
        "slack.signing_secret: is a token (xox…/xapp-…); HTTP mode takes the app's Signing "
        "Secret: Basic Information → App Credentials in the app's settings"
    )
    assert secret not in str(err.value) and secret[5:] not in str(err.value)


def test_a_signing_secret_is_taken() -> None:
    config = parse(HTTP_MODE, SLACK_SIGNING_SECRET="8f14e45fceea167a5a36dedd4bea2543\n")
    secret = config.platforms["slack"].signing_secret
    assert secret.get_secret_value() == "8f14e45fceea167a5a36dedd4bea2543"


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (
            "8f14e45fceea167a5a36dedd4bea2543",
            "is a signing secret, it seems (HTTP mode takes it: slack.signing_secret)",
        ),
        ("xoxb-1234-SECRETBOT2", "is a bot or user token"),
        ("xoxe.xoxb-1-SECRETROT", "is a bot or user token"),
        ("SECRETAPP-1234", "is not an app-level token"),
        ("1-A0APP0001-123-SECRETAPP", "is not an app-level token"),  # xapp- left off
    ],
)
def test_an_app_token_that_is_none_is_a_config_error(token: str, says: str) -> None:
    # Anything but xapp-… passed `check` (bot and user tokens aside), and `run` then
    # failed to open Socket Mode.
    with pytest.raises(ConfigError) as err:
        parse(BASE.replace("xapp-1", "${SLACK_APP_TOKEN}"), SLACK_APP_TOKEN=token)
    assert err.value.path == "slack.app_token" and says in str(err.value)
    assert str(err.value).endswith(
        "; Socket Mode takes the app-level token, which starts xapp-: Basic Information → "
        "App-Level Tokens in the app's settings, with the connections:write scope"
    )
    assert token not in str(err.value)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("SECRETclientSECRETclientSECRETcl", "is not a bot token"),  # the Client Secret
        ("1234567890123456789", "is not a bot token"),  # the Application ID
        (
            "8f14e45fceea167a5a36dedd4bea25438f14e45fceea167a5a36dedd4bea2543",
            "is not a bot token",
        ),  # the Public Key
        ("MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.SECRETPART", "is not a bot token"),  # a part short
        ("MTIzNDU2Nzg5MDEyMzQ1Njc4OQ..SECRETPART", "is not a bot token"),
        ("xoxb-1234-SECRETBOT2", "is a Slack token (xox…/xapp-…)"),
        ("xapp-1-A0APP0001-123-SECRETAPP", "is a Slack token (xox…/xapp-…)"),
    ],
)
def test_a_discord_token_that_is_none_is_a_config_error(token: str, says: str) -> None:
    # Each passed `check`, and Discord then refused the login.
    with pytest.raises(ConfigError) as err:
        parse(BASE, DISCORD_BOT_TOKEN=token)
    assert err.value.path == "discord.token"
    assert str(err.value) == (
        f"discord.token: {says}; it takes the bot's token, three parts joined by dots: "
        "Developer Portal → Bot → Reset Token (not the Client Secret, Application ID or "
        "Public Key)"
    )
    assert token not in str(err.value) and "SECRET" not in str(err.value)


def test_a_discord_bot_token_is_taken() -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghij-klmnopqrstuvwxyz_0123456789A"
    config = parse(BASE, DISCORD_BOT_TOKEN=token + "\n")
    assert config.platforms["discord"].token.get_secret_value() == token


@pytest.mark.parametrize("listen", ["http://0.0.0.0:8080", "0.0.0.0:8080/", "//h:80"])
def test_a_listen_address_with_a_scheme_or_path_is_a_config_error(listen: str) -> None:
    # `http://0.0.0.0:8080` passed `check`, and `run` failed to bind it.
    with pytest.raises(ConfigError) as err:
        parse(BASE + f"http: {{listen: '{listen}'}}\n")
    assert str(err.value) == (
        'http.listen: must be "host:port" without a scheme, e.g. "0.0.0.0:8080"'
    )
    assert parse(BASE + "http: {listen: '[::]:8080'}\n").http.listen == "[::]:8080"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (
            "trigger: all",
            "trigger: not a top-level key but a route's: indent it under an item of `routes:`",
        ),
        ("backend: docs", "backend: not a top-level key but a route's"),
        ("app_token: xapp-2", "app_token: not a top-level key: indent it under `slack:`"),
        (
            "message_content: false",
            "message_content: not a top-level key: indent it under `discord:`",
        ),
        ("edit_interval: 2", "edit_interval: not a top-level key: indent it under `reply:`"),
        (
            "rate_limit: {messages: 5, per: 60}",
            "rate_limit: not a top-level key: indent it "
            "under `limits:`, or (a route's own) under an item of `routes:`",
        ),
        ("rplay: {}", "rplay: unknown key (check its spelling)"),
        ("rplay: {edit_intervl: 2}", "rplay: unknown key (check its spelling)"),
        (
            "search: {kind: openai, url: 'https://api.openai.com/v1'}",
            "search: looks like a backend (it has `kind:` and `url:`): indent it under `backends:`",
        ),
        # A `url:` alone may be a store's or a proxy's: not said to be a backend.
        (
            "database: {url: 'postgresql://bridge@db/chat'}",
            "database: unknown key (check its spelling)",
        ),
        (
            "search: {kind: openai}",
            "search: looks like a backend (it has `kind:`): indent it under `backends:`",
        ),
        (
            "backend: {search: {kind: openai}}",
            "backend: looks like the backends (each with `kind:`): list them under `backends:`",
        ),
        (
            "route: [{platform: slack, backend: docs}]",
            "route: looks like the routes (items with `backend:`): list them under `routes:`",
        ),
        (
            "support: {platform: slack, backend: docs, trigger: all}",
            "support: looks like a "
            "route (it has `backend:`): make it an item of `routes:`, indented under it and "
            "starting with `- `",
        ),
        (
            "Slack: {bot_token: xoxb-9-SECRET, signing_secret: SECRET}",
            "Slack: looks like a platform's settings: write them under `slack:`",
        ),
        (
            "discrod: {token: a.b.SECRET, message_content: false}",
            "discrod: looks like a platform's settings: write them under `discord:`",
        ),
        (
            "chat: {api_url: 'http://127.0.0.1:1/api/'}",
            "chat: looks like a platform's settings: write them under `slack:` or `discord:`",
        ),
    ],
)
def test_a_key_out_of_place_at_the_top_says_where_it_belongs(line: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + line + "\n")
    assert str(err.value) == says or str(err.value).startswith(says)
    assert "SECRET" not in str(err.value)


def test_a_backend_left_unindented_under_backends_says_to_indent_it() -> None:
    # `docs:` at the left margin below `backends:` was an "unknown key (check its
    # spelling)", when its spelling was right and its place wrong.
    text = BASE.replace("\n  docs:\n    kind", "\ndocs:\n  kind").replace("\n    url:", "\n  url:")
    text = text.replace("\n    api_key:", "\n  api_key:")
    assert "backends:\ndocs:\n  kind: chatmount\n  url: " in text
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == (
        "docs: looks like a backend (it has `kind:` and `url:`): indent it under `backends:`"
    )


def test_a_key_several_platforms_have_is_put_under_the_block_the_file_has() -> None:
    slack_only = BASE.replace("discord:\n  token: ${DISCORD_BOT_TOKEN}\n", "")
    with pytest.raises(ConfigError) as err:
        parse(slack_only + "api_url: http://127.0.0.1:1/api/\n")
    assert str(err.value) == "api_url: not a top-level key: indent it under `slack:`"


SLACK_ROUTE = BASE.replace("platform: any", "platform: slack")
SMART_ALL = "\u201call\u201d"
YAML_BOOL = "YAML reads yes/no/on/off as true/false: quote it"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # Curly quotes pasted from a chat.
        (
            SLACK_ROUTE + f"    trigger: {SMART_ALL}\n",
            f"routes[0].trigger: must be one of mention, all, dm (read as '{SMART_ALL}')",
        ),
        (
            BASE.replace("kind: chatmount", "kind: \u201cchatmount\u201d"),
            "backends.docs.kind: must be one of chatmount, ndjson, chaturdata, bot-messages, "
            "openai (read as '\u201cchatmount\u201d')",
        ),
        (
            SLACK_ROUTE + "    trigger: mention\xa0\n",
            "routes[0].trigger: must be one of mention, all, dm (read as 'mention\\xa0', "
            "with a non-breaking space: retype it as a normal space)",
        ),
        (
            SLACK_ROUTE.replace("  app_token: xapp-1", "  app_token: xapp-1\n  thinking: off"),
            "slack.thinking: must be one of auto, status, reaction, none "
            f"(read as false; {YAML_BOOL})",
        ),
        (
            SLACK_ROUTE + "reply: {thinking_text: off}\n",
            f"reply.thinking_text: Input should be a valid string (read as false; {YAML_BOOL})",
        ),
        (
            SLACK_ROUTE + "commands: {reset_keywords: [reset, no]}\n",
            "commands.reset_keywords[1]: Input should be a valid string "
            f"(read as false; {YAML_BOOL})",
        ),
        (
            SLACK_ROUTE + "http: {listen: 12:30}\n",  # YAML 1.1's base 60
            "http.listen: Input should be a valid string (read as 750)",
        ),
        (
            SLACK_ROUTE + "    session:\n",
            "routes[0].session: must be one of thread, channel, user, user+channel (read as null)",
        ),
    ],
)
def test_a_choice_or_string_the_file_got_wrong_says_what_was_read(text: str, said: str) -> None:
    # It listed the choices alone: `“all”` looked like `all`, `off` like one of them.
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == said


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (SLACK_ROUTE + "    trigger: ${VALUE}\n", SMART_ALL),
        (SLACK_ROUTE + "    trigger: ${VALUE}\n", "xoxb-9-SECRET"),
        (SLACK_ROUTE + '    trigger: "a${VALUE}"\n', "-SECRET"),
        (BASE.replace("kind: chatmount", "kind: ${VALUE}"), "cm_SECRET"),
        (
            SLACK_ROUTE.replace("  app_token: xapp-1", "  app_token: xapp-1\n  mode: ${VALUE}"),
            "socket",
        ),
    ],
)
def test_a_choice_the_environment_got_wrong_is_not_quoted(text: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, VALUE=value)
    assert "must be one of" in str(err.value)
    assert "read as" not in str(err.value) and value not in str(err.value)


def test_a_long_value_written_in_a_choices_key_is_not_quoted() -> None:
    # A key pasted into the wrong one, most often.
    text = SLACK_ROUTE + f"    session: {SECRET}\n"
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == "routes[0].session: must be one of thread, channel, user, user+channel"


def test_a_number_written_where_a_secret_goes_is_not_quoted() -> None:
    # A short key of digits, read by YAML as a number: "(read as 8675309)" printed it.
    text = BASE.replace("api_key: ${CHATMOUNT_API_KEY}", "api_key: 8675309")
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value) == "backends.docs.api_key: Input should be a valid string"
