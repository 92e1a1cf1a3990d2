"""What the ids a route lists look like on each platform, and where an admin copies them.

A route matches a message by ids alone: a name, a link or an email address where an
id belongs would load, and the route would then never answer. Console values are
any name (its terminal's, or a test's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class IdShape:
    """One platform's ids of one route key."""

    pattern: re.Pattern[str]
    kind: str  # what it is, to say what a value is not
    where: str  # where to copy one
    # Ids of something else that an admin may take for one: what each is instead.
    mistaken: tuple[tuple[re.Pattern[str], str], ...] = ()


_DEV_MODE = "Discord: turn on Developer Mode, then"

# A Discord DM's workspace: it is in no server (the Discord adapter's name for it).
DISCORD_DM_WORKSPACE = "@dm"

SHAPES: dict[str, dict[str, IdShape]] = {
    "channels": {
        "slack": IdShape(
            re.compile(r"[CGD][A-Z0-9]+"),
            "a Slack channel id (C…, G… or D…: capital letters and digits)",
            "Slack: open the channel's details, the id is at the bottom",
        ),
        "discord": IdShape(
            re.compile(r"[0-9]+"),
            "a Discord channel id (digits)",
            f"{_DEV_MODE} Copy Channel ID on the channel",
        ),
    },
    "workspace": {
        # A Slack message's workspace is always its team's (T…), an org-wide install's too.
        "slack": IdShape(
            re.compile(r"T[A-Z0-9]+"),
            "a Slack team id (T…: capital letters and digits)",
            "Slack: open Slack in a browser, the id is the T… after /client/ in its address",
            mistaken=(
                (
                    re.compile(r"E[A-Z0-9]+"),
                    "an Enterprise Grid organisation's id, not a workspace's: list the "
                    "organisation's workspaces by their T… ids, as docs/slack.md "
                    '("Enterprise Grid") says',
                ),
            ),
        ),
        "discord": IdShape(
            re.compile(r"[0-9]+|" + DISCORD_DM_WORKSPACE),
            f"a Discord server id (digits; {DISCORD_DM_WORKSPACE} for DMs)",
            f"{_DEV_MODE} Copy Server ID on the server's icon",
        ),
    },
    "users": {
        "slack": IdShape(
            re.compile(r"[UW][A-Z0-9]+"),
            "a Slack member id (U… or W…: capital letters and digits)",
            "Slack: open the person's profile, then ⋮ > Copy member ID",
        ),
        "discord": IdShape(
            re.compile(r"[0-9]+"),
            "a Discord user id (digits)",
            f"{_DEV_MODE} Copy User ID on the person",
        ),
    },
    # Slack and console messages carry no roles: such a route is refused apart.
    "roles": {
        "discord": IdShape(
            re.compile(r"[0-9]+"),
            "a Discord role id (digits)",
            f"{_DEV_MODE} Copy Role ID in Server Settings > Roles",
        ),
    },
}

# Whose id each key lists, and what a value written with `@` or spaces is instead.
_OWNER = {"channels": "channel", "workspace": "workspace", "users": "person", "roles": "role"}
_NAME = {
    "channels": "a channel's name",
    "workspace": "a name",
    "users": "a person's name",
    "roles": "a role's name",
}


def id_problem(key: str, value: str, platform: str) -> str | None:
    """What is wrong with `value` as an id in a route's `key` (channels, workspace,
    users, roles) on `platform` routes, with where to copy the id; None when it is
    one. A `platform: any` route takes either platform's ids."""
    platforms = ("slack", "discord") if platform == "any" else (platform,)
    shapes = [SHAPES[key][p] for p in platforms if p in SHAPES[key]]
    if not shapes and key != "channels":
        return None  # console values are any name; roles of Slack are refused apart
    if any(shape.pattern.fullmatch(value) for shape in shapes):
        return None
    how = "; ".join(shape.where for shape in shapes)
    use = f"use the {_OWNER[key]}'s id" + (f" ({how})" if how else "")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if value.startswith("#"):
        return f"{shown!r} is a channel's name: {use}"
    if "/" in value:
        return f"{shown!r} is a link: {use}"
    if not shapes:
        return None  # a console's places are any name but these
    if value.startswith("@") or any(c.isspace() for c in value):
        return f"{shown!r} is {_NAME[key]}: {use}"
    if "@" in value:
        return f"{shown!r} is an email address: {use}"
    for shape in shapes:
        for pattern, instead in shape.mistaken:
            if pattern.fullmatch(value):
                return f"{shown!r} is {instead} ({how})"
    kinds = " or ".join(shape.kind for shape in shapes)
    return f"{shown!r} is not {kinds}: {use}"


def in_no_dm_workspace(platform: str, workspace: list[str] | None) -> bool:
    """Whether a route of `platform` listing `workspace` can take no DM for its
    workspace alone: a Discord DM is in `@dm`, not in a server (a Slack DM is in its
    team, so a `platform: any` route listing a Slack team id may take one)."""
    if workspace is None or DISCORD_DM_WORKSPACE in workspace:
        return False
    if platform == "discord":
        return True
    # Ids were checked against both platforms' shapes: digits alone are servers.
    return platform == "any" and all(value.isdigit() for value in workspace)
