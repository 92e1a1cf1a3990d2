"""What a refusal of the Slack Web API says (slack-sdk's `SlackApiError`): its HTTP
status and Slack's error code, whatever its body (Slack's JSON, or the page of a
proxy or of an outage, which is not); and what it means for the bridge (`guard`:
the PlatformError it is)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bridge.errors import (
    PlaceGone,
    PlatformError,
    PlatformRefused,
    PlatformUnreachable,
    StoppedByAsker,
)
from bridge.proxies import PROXY_AUTH_REQUIRED, proxy_refusal, proxy_refused
from bridge.transport import out_of_files

# Errors that say the token may not do this (the app installed without the method's
# scope, a user token given where a bot token is needed).
NO_SCOPE = {"missing_scope", "not_allowed_token_type"}
# Errors that say Slack failed on its side, or is busy: the same request may pass later.
FAILING = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# Errors of a post that say the bot may not post in the channel at all (not invited,
# the channel deleted or archived, posting restricted or suspended, an Enterprise Grid
# workspace the app is not granted).
CLOSING = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_non_threadable_channel",
    "restricted_action_thread_only_channel",
    "no_permission",
    "ekm_access_denied",
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


class SlackRefused(PlatformRefused):
    """Slack answered `ok: false`; `error` is Slack's error code (e.g. `msg_too_long`),
    `needed` the scopes it says the app lacks (with `missing_scope`)."""

    def __init__(self, method: str, error: str, needed: str | None = None) -> None:
        lacks = f" (the app lacks the {needed} scope)" if needed else ""
        super().__init__(f"Slack refused {method}: {error}{lacks}")
        self.method = method
        self.error = error
        self.needed = needed


class SlackFailed(PlatformError):
    """Slack failed on its side (`ok: false` with a 5xx, or an error such as
    `ratelimited` or `internal_error`): it may take the request later."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"Slack failed {method}: {error}")
        self.method = method
        self.error = error


class SlackGone(SlackRefused, PlaceGone):
    """A message could not be posted or edited because its place is gone."""


class SlackStopped(SlackRefused, StoppedByAsker):
    """The person pressed Stop on a native stream (`stopped_by_user`)."""


class SlackLockedOut(SlackRefused, PlaceGone):
    """Slack no longer takes the bot's token: no reply can go on until an admin acts."""

    def __init__(self, method: str, error: str, needed: str | None = None) -> None:
        super().__init__(method, error, needed)
        if needed is None and error not in NO_SCOPE:
            self.args = (
                f"Slack refused {method}: {error} (the bot token is no longer accepted: "
                "was the app uninstalled, or its token revoked or replaced?)",
            )


# Errors of chat.* that no retry can mend: the channel, the message or the thread
# (the question it answers) was deleted or archived, or the bot was removed or may
# not post there.
_GONE = CLOSING | {"message_not_found", "thread_not_found"}
# Errors of any method that say the bot's token no longer works.
_LOCKED_OUT = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
# The token may not post at all (the app reinstalled without chat:write, a user token
# given) when a method every reply needs refuses so (NO_SCOPE).
_ESSENTIAL = {"chat.postMessage", "chat.update"}


async def guard(
    method: str,
    call: Awaitable[Any],
    locked_out: Callable[[str, str, str | None], None] | None = None,
) -> Any:
    """Await a Web API call, translating slack-sdk and aiohttp errors into PlatformError;
    `locked_out(method, error, needed)` is told when Slack refuses the bot token."""
    try:
        return await call
    except SlackApiError as exc:
        if status(exc) == PROXY_AUTH_REQUIRED:
            # The proxy's answer, not Slack's (which never sends a 407): the request
            # went no further, and the bot token was not checked.
            url = str(getattr(exc.response, "api_url", "") or "https://slack.com/api/")
            raise PlatformUnreachable(
                f"Slack could not be reached for {method}: {proxy_refused(url)}"
            ) from exc
        if told(exc) is None and status(exc) >= 500:
            # Not Slack's answer, or Slack failing (an outage's page, a proxy's 502).
            raise PlatformUnreachable(
                f"Slack could not be reached for {method} (HTTP {status(exc)})"
            ) from exc
        error = error_code(exc)
        if status(exc) >= 500 or error in FAILING:
            raise SlackFailed(method, error) from exc
        if error in _GONE and method.startswith("chat."):
            raise SlackGone(method, error) from exc
        if error in _LOCKED_OUT or (error in NO_SCOPE and method in _ESSENTIAL):
            if locked_out is not None:
                locked_out(method, error, needed(exc))
            raise SlackLockedOut(method, error, needed(exc)) from exc
        raise SlackRefused(method, error, needed(exc)) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The tunnel to Slack refused by the proxy; no file left for the connection.
        refused = proxy_refusal(exc) or out_of_files(exc)
        said = f": {refused}" if refused else ""
        raise PlatformUnreachable(f"Slack could not be reached for {method}{said}") from exc
