"""What a Slack event says: its workspace, whether a person or a bot wrote it, when,
and its text as plain words for a chat API."""

from __future__ import annotations

import re
from typing import Any

# Message subtypes that are still a person talking (`me_message`: a `/me ...`); every
# other subtype (edits, deletions, joins, integrations added, ...) is not a question.
USER_SUBTYPES = {None, "file_share", "thread_broadcast", "me_message"}
_ENTITY = re.compile(r"&(amp|lt|gt);")
# Never a `<` inside (Slack escapes one in text, `&lt;`): else a run of `<` never
# closed (text posted through the API, unescaped) is read to its end from each one,
# seconds a message, the whole daemon held meanwhile.
_LINK = re.compile(r"<((?:https?|mailto):[^|<>]+)(?:\|([^<>]*))?>")
_REF = re.compile(r"<([@#!])([^|<>]*)(?:\|([^<>]*))?>")
# A mention of a person or a bot (<@U…>), or of a user group (<!subteam^S…>), first.
_FIRST_MENTION = re.compile(r"\s*<(@[^|<>]+|!subteam\^[^|<>]+)(?:\|[^<>]*)?>")


def plain_text(text: str) -> str:
    """Slack message markup as plain text for the chat API: links, mentions, entities.

    A labelled link keeps its address as Markdown, `[label](url)`: "why does
    <https://…/setup#proxy|this step> fail?" asks about that step. One whose label
    is its own address (Slack's auto-links, `<https://example.com|example.com>`,
    `<mailto:a@b.example|a@b.example>`) is that address, once.
    """

    def link(match: re.Match[str]) -> str:
        # Entities are decoded once, after: here they are only compared decoded.
        url, label = match.groups()
        if not label:
            return url
        scheme, _, rest = url.partition(":")
        seen = _decoded(label)
        if scheme == "mailto" and seen == _decoded(rest):
            return rest
        if seen in (_decoded(url), _decoded(rest.removeprefix("//"))):
            return url
        return f"[{label}]({url})"

    def ref(match: re.Match[str]) -> str:
        sigil, target, label = match.groups()
        if sigil == "#":
            return "#" + (label or target)
        if sigil == "!" and target.split("^", 1)[0] == "date":
            return label or target  # <!date^…|Feb 18, 2014>: a date, shown as its text
        if label:
            return label if label.startswith("@") else "@" + label
        return "@" + target.split("^", 1)[-1]

    text = _LINK.sub(link, text)
    return _decoded(_REF.sub(ref, text))


def forwarded(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages a message event forwards (Slack's Forward, or Share message): its
    attachments marked `is_share`, each with the forwarded message's `text` (markup)
    and `files`. A link's preview is not one: a web page's, or a pasted link to a
    message (`is_msg_unfurl` without `is_share`); its text is not what was asked."""
    attachments = event.get("attachments")
    if not isinstance(attachments, list):
        return []
    return [a for a in attachments if isinstance(a, dict) and a.get("is_share") is True]


def _decoded(text: str) -> str:
    """`text` with Slack's three entities (`&amp;`, `&lt;`, `&gt;`) as the characters."""
    return _ENTITY.sub(lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], text)


def addresses_other(text: str, me: str | None) -> bool:
    """Whether a message's text (Slack markup) begins by addressing someone other than
    the bot whose user id is `me`: a mention of another person, bot or user group."""
    first = _FIRST_MENTION.match(text)
    return first is not None and first.group(1) != f"@{me}"


def workspace_of(body: dict[str, Any], event: dict[str, Any], team_id: str | None) -> str:
    """The workspace an event belongs to: the install's (see `installed_in`)."""
    return str(installed_in(body) or body.get("team_id") or event.get("team") or team_id or "")


def team_of_asker(event: dict[str, Any], workspace: str) -> str:
    """The team of the person who wrote `event`: in a channel shared with another
    organisation (Slack Connect), theirs, not the install's `workspace`.

    Slack may name an Enterprise Grid organisation (E…) instead of one of its
    workspaces; that is no team, and `workspace` is taken then.
    """
    for team in (event.get("user_team"), event.get("team")):
        if isinstance(team, str) and team and not team.startswith("E"):
            return team
    return workspace


def from_bot(event: dict[str, Any]) -> bool:
    """Whether a message event is a bot's (this one's too), not a person's."""
    return bool(
        event.get("bot_id") or event.get("subtype") == "bot_message" or event.get("bot_profile")
    )


def installed_in(body: dict[str, Any]) -> str | None:
    """The workspace the app is installed in that the event came through.

    In a channel shared with another organisation (Slack Connect) the body's
    `team_id` may be that organisation's, the channel's maker; a slash command
    there carries the asker's, and its budgets are the install's: this one.
    """
    found = body.get("authorizations")
    if isinstance(found, list) and found and isinstance(found[0], dict):
        team = found[0].get("team_id")
        return str(team) if team else None
    return None


def ts_seconds(ts: str) -> float:
    """A Slack message ts ("1700000000.000100") as epoch seconds; 0 when it is not one."""
    try:
        return float(ts)
    except ValueError:
        return 0.0


def ext_shared(body: dict[str, Any]) -> bool:
    """Whether an event's body says its channel is shared with another organisation."""
    return body.get("is_ext_shared_channel") is True
