"""Slack's slash command (`/chat-reset` by default), its payload read as an `Inbound`
and the `SlackTarget` its answer goes to."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bridge.interfaces import Address, Inbound

from .target import SlackTarget

if TYPE_CHECKING:
    from .platform import SlackPlatform


def read_command(
    platform: SlackPlatform, command: dict[str, Any], team: str | None
) -> tuple[Inbound, SlackTarget]:
    """The reset a command payload asks for, and where its answer goes; `team` is the
    workspace bolt's context names."""
    channel = str(command.get("channel_id", ""))
    user = str(command.get("user_id", ""))
    # The install's workspace, as a message's is: in a channel shared with another
    # organisation, the payload's team_id is the asker's organisation. An install
    # for a whole Enterprise Grid organisation is in each of its workspaces, and
    # auth.test names one: a command's team_id is the workspace it was run in, the
    # one its messages name (their `authorizations`).
    if command.get("is_enterprise_install") in ("true", True) and command.get("team_id"):
        workspace = str(command["team_id"])
    else:
        workspace = str(platform.team_id or command.get("team_id") or team or "")
    is_dm = channel.startswith("D") or command.get("channel_name") == "directmessage"
    if command.get("channel_name") == "privategroup":  # a private channel
        platform.kinds.learn(channel, "group")
    trigger = str(command.get("trigger_id") or f"{channel}:{user}:{time.time()}")
    inbound = Inbound(
        platform=platform.name,
        workspace=workspace,
        channel=channel,
        user=user,
        text=str(command.get("text") or "").strip(),
        message_id=trigger,
        event_id=f"command:{trigger}",
        is_dm=is_dm,
        command="reset",
        # A command carries no time of Slack's: the core places it by the
        # store's clock as it came (not this host's, which may be off).
        received_at=time.time(),
    )
    address = Address(platform.name, workspace, channel, None)
    target = SlackTarget(
        platform, address, user=user, is_dm=is_dm, response_url=command.get("response_url")
    )
    return inbound, target
