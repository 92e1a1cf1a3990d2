"""What a refusal of the Slack Web API says (slack-sdk's `SlackApiError`): its HTTP
status and Slack's error code, whatever its body (Slack's JSON, or the page of a
proxy or of an outage, which is not)."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

# Errors that say the token may not do this (the app installed without the method's
# scope, a user token given where a bot token is needed).
NO_SCOPE = {"missing_scope", "not_allowed_token_type"}
# Errors that say Slack failed on its side, or is busy: the same request may pass later.
FAILING = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
           "request_timeout"}
# Errors of a post that say the bot may not post in the channel at all (not invited,
# the channel deleted or archived, posting restricted or suspended, an Enterprise Grid
# workspace the app is not granted).
CLOSING = {
    "not_in_channel", "channel_not_found", "is_archived", "restricted_action",
    "restricted_action_read_only_channel", "restricted_action_non_threadable_channel",
    "restricted_action_thread_only_channel", "no_permission", "ekm_access_denied",
    "team_access_not_granted",
}


def status(exc: SlackApiError) -> int:
    """The HTTP status of a refusal (slack-sdk's response, or aiohttp's); 0 if unknown."""
    response = exc.response
    found = getattr(response, "status_code", None) or getattr(response, "status", 0)
    return found if isinstance(found, int) else 0


def told(exc: SlackApiError) -> str | None:
    """Slack's error code (`not_in_channel`), if the body is Slack's JSON and says one."""
    data = getattr(exc.response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else None


def needed(exc: SlackApiError) -> str | None:
    """The scopes a `missing_scope` refusal says the app lacks (Slack's `needed`)."""
    data = getattr(exc.response, "data", None)
    scopes = data.get("needed") if isinstance(data, dict) else None
    return str(scopes) if scopes else None


def error_code(exc: SlackApiError) -> str:
    """Slack's error code, else the HTTP status (`503`), else `unknown_error`."""
    return told(exc) or str(status(exc) or "unknown_error")
