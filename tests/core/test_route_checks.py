"""Routes that load but could never take a message: `check` said "config ok", `run`
started silently, and the messages went to another backend (or nowhere)."""

from __future__ import annotations

import pytest

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError

HEAD = """
store: sqlite:///tmp/x.db
backends:
  eng: {kind: chatmount, url: https://services.chatmount.co/v1/chat, api_key: k1}
  support: {kind: chatmount, url: https://services.chatmount.co/v1/chat, api_key: k2}
slack: {bot_token: xoxb-1, app_token: xapp-1}
discord: {token: d.t.k}
routes:
"""


def parse(routes: str):
    return parse_config(HEAD + routes, env={}, registry=REGISTRY)


def one_route(platform: str, key: str, values: str, extra: str = "") -> str:
    return f"  - {{platform: {platform}, {key}: {values}, backend: eng{extra}}}\n"


@pytest.mark.parametrize(
    ("platform", "key", "values", "says", "where"),
    [
        (
            "discord",
            "workspace",
            '["Acme Community"]',
            "'Acme Community' is a name",
            "Copy Server ID",
        ),
        (
            "discord",
            "workspace",
            "[acme]",
            "'acme' is not a Discord server id (digits; @dm for DMs)",
            "Copy Server ID",
        ),
        (
            "slack",
            "workspace",
            "[acme]",
            "'acme' is not a Slack team id (T…, or E… for an Enterprise Grid organisation",
            "the T… after /client/",
        ),
        ("slack", "workspace", "[https://acme.slack.com]", "is a link", "/client/"),
        ("slack", "workspace", "[t0acme]", "is not a Slack team id", "/client/"),
        (
            "discord",
            "roles",
            "[Moderators]",
            "'Moderators' is not a Discord role id (digits)",
            "Copy Role ID",
        ),
        ("discord", "roles", '["@Moderators"]', "'@Moderators' is a role's name", "Copy Role ID"),
        ("slack", "users", '["@alice"]', "'@alice' is a person's name", "Copy member ID"),
        (
            "slack",
            "users",
            "[alice@acme.com]",
            "'alice@acme.com' is an email address",
            "Copy member ID",
        ),
        ("slack", "users", '["Alice Smith"]', "'Alice Smith' is a person's name", "Copy member ID"),
        ("slack", "users", "[C0ENG]", "'C0ENG' is not a Slack member id (U… or W…", "member"),
        (
            "discord",
            "users",
            "[alice]",
            "'alice' is not a Discord user id (digits)",
            "Copy User ID",
        ),
        (
            "any",
            "users",
            "[alice]",
            "is not a Slack member id (U… or W…: capital letters and "
            "digits) or a Discord user id (digits)",
            "Copy User ID",
        ),
    ],
)
def test_a_name_where_an_id_belongs_is_a_config_error(
    platform: str, key: str, values: str, says: str, where: str
) -> None:
    # It loaded, and the route never took a message: they went to the next one.
    with pytest.raises(ConfigError) as err:
        parse(one_route(platform, key, values))
    assert err.value.path == f"routes[0].{key}", str(err.value)
    assert says in str(err.value) and where in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("platform", "key", "values"),
    [
        ("slack", "workspace", "[T0ACME, E0ORG1234]"),  # a team, an Enterprise Grid org
        ("slack", "users", "[U0ALICE, W0BOB1234]"),  # W…: an Enterprise Grid member
        ("discord", "workspace", '["987654321098765432", 123456789012345678]'),
        ("discord", "workspace", '["@dm"]'),  # the workspace Discord DMs are in
        ("discord", "users", '["42"]'),
        ("discord", "roles", '["333333333333333333"]'),
        ("any", "workspace", '[T0ACME, "987654321098765432", "@dm"]'),
        ("any", "users", '[U0ALICE, "42"]'),
        ("any", "roles", '["333"]'),
        ("console", "users", '["you", "Alice Smith"]'),  # a console's values are any name
        ("console", "workspace", "[local]"),
    ],
)
def test_ids_of_the_routes_platform_are_taken(platform: str, key: str, values: str) -> None:
    assert getattr(parse(one_route(platform, key, values)).routes[0], key)


@pytest.mark.parametrize(
    ("platform", "workspace", "dm"),
    [
        ("discord", '["987654321098765432"]', ", dm: true"),
        ("discord", '["987654321098765432"]', ", trigger: dm"),
        ("any", '["987654321098765432"]', ", dm: true"),  # no Slack team listed
    ],
)
def test_a_discord_dm_route_for_a_server_is_a_config_error(
    platform: str, workspace: str, dm: str
) -> None:
    # Discord DMs are in no server (workspace @dm): such a route never took one.
    with pytest.raises(ConfigError) as err:
        parse(one_route(platform, "workspace", workspace, dm))
    assert err.value.path == "routes[0].workspace"
    assert str(err.value).endswith(
        "a Discord DM is in no server (its workspace is @dm), so this route could never "
        "answer: drop `workspace`, or `dm: true` / `trigger: dm`"
    )


@pytest.mark.parametrize(
    ("platform", "workspace"),
    [
        ("discord", '["@dm"]'),
        ("discord", '["987654321098765432", "@dm"]'),
        ("slack", "[T0ACME]"),  # a Slack DM is in its team
        ("any", '[T0ACME, "987654321098765432"]'),
    ],
)
def test_a_dm_route_for_a_workspace_dms_are_in_is_taken(platform: str, workspace: str) -> None:
    assert parse(one_route(platform, "workspace", workspace, ", dm: true")).routes[0].dm


@pytest.mark.parametrize("platform", ["discord", "any"])
def test_a_dm_route_for_roles_is_a_config_error(platform: str) -> None:
    # A DM's author has no roles: the route never took a message.
    with pytest.raises(ConfigError) as err:
        parse(one_route(platform, "roles", '["333"]', ", dm: true"))
    assert err.value.path == "routes[0].roles"
    assert "a DM carries no roles, so this route could never answer" in str(err.value)
