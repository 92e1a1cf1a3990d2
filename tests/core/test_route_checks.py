"""Routes that load but could never take a message: `check` said "config ok", `run`
started silently, and the messages went to another backend (or nowhere)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge.cli import config_warnings
from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.cli_support import ROOT, run_command

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
            "'acme' is not a Slack team id (T…: capital letters and digits)",
            "the T… after /client/",
        ),
        # A Slack message's workspace is its team's, an org-wide install's too: a route
        # listing the organisation loaded, and never answered.
        (
            "slack",
            "workspace",
            "[T0ACME, E0ORG1234]",
            "'E0ORG1234' is an Enterprise Grid organisation's id, not a workspace's: list "
            "the organisation's workspaces by their T… ids, as docs/slack.md "
            '("Enterprise Grid") says',
            "the T… after /client/",
        ),
        ("any", "workspace", "[E0ORG1234]", "Enterprise Grid organisation's id", "/client/"),
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
        ("slack", "workspace", "[T0ACME, T0WSB0002]"),
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


def warnings_of(routes: str) -> list[str]:
    return config_warnings(parse(routes))


def test_a_channel_moved_to_another_backend_and_still_listed_above_is_warned_of() -> None:
    # The admin added a route at the bottom to move C0ENG to support: the first match
    # still sent every message there to eng.
    routes = (
        "  - {platform: slack, channels: [C0ENG], backend: eng}\n"
        "  - {platform: slack, channels: [C0SUP], backend: support}\n"
        "  - {platform: slack, channels: [C0ENG], backend: support}\n"
    )
    assert warnings_of(routes) == [
        "routes[2] can never answer: routes[0] takes every message it would; move routes[2] "
        "above routes[0], or remove routes[0]"
    ]
    wider = routes.replace(
        "channels: [C0ENG], backend: eng", "channels: [C0ENG, C0OPS], backend: eng"
    )
    assert warnings_of(wider) == [
        "routes[2] can never answer: routes[0] takes every message it would; move routes[2] "
        "above routes[0], or remove C0ENG from routes[0].channels"
    ]


def test_a_route_below_a_default_is_warned_of() -> None:
    default = "  - {platform: slack, backend: eng}\n"
    assert warnings_of(
        default + "  - {platform: slack, channels: [C0SUP], backend: support}\n"
    ) == [
        "routes[1] can never answer: routes[0] takes every message it would; move routes[1] "
        "above routes[0]"
    ]
    # A workspace's default: the channel's route is dead in that workspace (a channel
    # is in one workspace).
    routes = (
        "  - {platform: slack, workspace: [T0ACME], backend: eng}\n"
        "  - {platform: slack, channels: [C0SUP], backend: support}\n"
        "  - {platform: slack, users: [U0ALICE], dm: true, backend: support}\n"
    )
    assert warnings_of(routes) == [
        "routes[1] can never answer in workspace T0ACME: routes[0] takes every message it "
        "would there; move routes[1] above routes[0]",
        "routes[2] can never answer in workspace T0ACME: routes[0] takes every message it "
        "would there; move routes[2] above routes[0]",
    ]
    # DMs only below a route for any message; the Discord default below a catch-all.
    assert warnings_of("  - {backend: eng}\n  - {platform: discord, dm: true, backend: eng}\n")
    assert warnings_of(
        "  - {platform: any, trigger: all, backend: eng}\n"
        "  - {platform: discord, trigger: all, backend: support}\n"
    )


@pytest.mark.parametrize(
    "routes",
    [
        # The right order: specific first.
        "  - {platform: slack, channels: [C0SUP], backend: support}\n"
        "  - {platform: slack, backend: eng}\n",
        # Partial overlaps: each earlier route leaves the later one something.
        "  - {platform: slack, channels: [C0ENG], backend: eng}\n"
        "  - {platform: slack, channels: [C0ENG, C0SUP], backend: support}\n",
        "  - {platform: slack, users: [U0ALICE], backend: eng}\n"
        "  - {platform: slack, backend: support}\n",
        "  - {platform: discord, roles: ['333'], backend: eng}\n"
        "  - {platform: discord, roles: ['333', '444'], backend: support}\n",
        "  - {platform: slack, backend: eng}\n"
        "  - {platform: any, backend: support}\n",  # Discord's messages
        "  - {platform: slack, dm: false, backend: eng}\n"
        "  - {platform: slack, backend: support}\n",  # DMs
        "  - {platform: slack, trigger: dm, backend: eng}\n"
        "  - {platform: slack, backend: support}\n",
        "  - {platform: slack, workspace: [T0ACME], backend: eng}\n"
        "  - {platform: slack, workspace: [T0OTHER], backend: support}\n",
        # Mentions above `trigger: all`: the messages without a mention are left.
        "  - {platform: slack, channels: [C0ASK], backend: eng}\n"
        "  - {platform: slack, channels: [C0ASK], trigger: all, backend: support}\n",
        # A server's default, then DMs: those are in no server (docs/discord.md's example).
        "  - {platform: discord, workspace: ['987'], reply_in_thread: true, backend: eng}\n"
        "  - {platform: discord, dm: true, session: user, backend: eng}\n",
        "  - {platform: any, workspace: ['987'], backend: eng}\n"
        "  - {platform: slack, channels: [C0SUP], backend: support}\n",
        # The follow-ups, without a mention, of the threads support opens for alice
        # in C0ENG: routes[1] has no conversation there and leaves them to routes[2].
        "  - {platform: slack, users: [U0ALICE], backend: support}\n"
        "  - {platform: slack, channels: [C0ENG], session: user, backend: eng}\n"
        "  - {platform: slack, channels: [C0ENG], backend: support}\n",
    ],
)
def test_routes_that_merely_overlap_are_not_warned_of(routes: str) -> None:
    assert warnings_of(routes) == []


def test_a_later_route_whose_threads_the_earlier_one_follows_is_warned_of() -> None:
    # The same backend and thread sessions: every follow-up routes[1] would take,
    # routes[0] takes first (the conversation is the same).
    routes = (
        "  - {platform: slack, channels: [C0ENG], backend: eng}\n"
        "  - {platform: slack, channels: [C0ENG], rate_limit: {messages: 2}, backend: eng}\n"
    )
    assert warnings_of(routes) == [
        "routes[1] can never answer: routes[0] takes every message it would; move routes[1] "
        "above routes[0], or remove routes[0]"
    ]


@pytest.mark.parametrize("session", ["channel", "user", "user+channel"])
def test_reply_in_thread_with_a_session_that_opens_none_is_warned_of(session: str) -> None:
    # The answer went in the channel, and nothing said why.
    routes = (
        f"  - {{platform: discord, channels: ['111'], session: {session}, "
        "reply_in_thread: true, backend: eng}\n"
    )
    assert warnings_of(routes) == [
        f"routes[0]: reply_in_thread: true opens no thread with session: {session} (only "
        "with session: thread); drop it, or use session: thread"
    ]
    assert warnings_of(routes.replace(f"session: {session}", "session: thread")) == []
    assert warnings_of(
        "  - {platform: discord, dm: true, reply_in_thread: true, backend: eng}\n"
    ) == [
        "routes[0]: reply_in_thread: true opens no thread in DMs, and this route takes DMs "
        "only; drop it"
    ]


def test_check_prints_the_routes_that_can_never_answer(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        HEAD
        + (
            "  - {platform: slack, channels: [C0ENG], backend: eng}\n"
            "  - {platform: slack, workspace: [T0ACME], backend: eng}\n"
            "  - {platform: slack, channels: [C0SUP], backend: support}\n"
            "  - {platform: slack, channels: [C0ENG], backend: support}\n"
            "  - {platform: discord, channels: ['111'], session: channel, reply_in_thread: true,"
            " backend: eng}\n"
        )
    )
    result = run_command("check", "-c", str(config), env={"PATH": "/usr/bin:/bin"})
    # Warnings, not errors: a config that works still starts.
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "warning: routes[4]: reply_in_thread: true opens no thread with session: channel "
        "(only with session: thread); drop it, or use session: thread",
        "warning: routes[2] can never answer in workspace T0ACME: routes[1] takes every "
        "message it would there; move routes[2] above routes[1]",
        "warning: routes[3] can never answer: routes[0] takes every message it would; move "
        "routes[3] above routes[0], or remove routes[0]",
    ]
    config.write_text(HEAD + "  - {platform: discord, roles: [Moderators], backend: eng}\n")
    result = run_command("check", "-c", str(config), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.startswith(
        "config error: routes[0].roles: 'Moderators' is not a Discord role id (digits)"
    ), result.stderr


@pytest.mark.timeout(60)
def test_run_logs_the_routes_that_can_never_answer_as_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"store: sqlite://{tmp_path / 'b.db'}\n"
        "http: {listen: null}\n"
        "backends:\n"
        "  eng: {kind: chatmount, url: https://services.chatmount.co/v1/chat, api_key: k1}\n"
        "  support: {kind: chatmount, url: https://services.chatmount.co/v1/chat, api_key: k2}\n"
        "console: {read_stdin: false}\n"
        "routes:\n"
        "  - {platform: console, backend: eng}\n"
        "  - {platform: console, channels: [terminal], backend: support}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "adapters", "run", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        lines = []
        while not any("chat-bridge running" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)  # it stopped
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lines.extend(proc.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert any(
        "WARNING chat_bridge.cli: routes[1] can never answer: routes[0] takes every message "
        "it would; move routes[1] above routes[0]" in line
        for line in lines
    ), "".join(lines)
    assert not [line for line in lines if "Warning" in line], "".join(lines)
