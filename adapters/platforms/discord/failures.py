"""What Discord's refusals and failures mean: a `PlatformError` in words an asker may read
and an admin can act on (`platform_error`), what a proxy's refusal says (`proxy_said`),
and the errors a Discord call may raise (`FAILURES`)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import discord

from bridge.errors import PlaceGone, PlatformError, PlatformRefused, PlatformUnreachable
from bridge.proxies import PROXY_AUTH_REQUIRED, proxy_refusal, proxy_refused
from bridge.transport import out_of_files

# A request with an interaction's token past its 15 minutes is refused with this code.
INVALID_WEBHOOK_TOKEN = 50027
# "Thread is archived": a message in an archived (or locked) thread cannot be edited.
ARCHIVED_THREAD = 50083
# "Unknown Channel": the channel or thread was deleted.
UNKNOWN_CHANNEL = 10003
# "Missing Permissions": refusing a post, Discord says the bot may not send messages there.
MISSING_PERMISSIONS = 50013
# "Thread is locked": in a locked thread only members with Manage Threads may post.
THREAD_LOCKED = 160005
# "Missing Access": the bot is no longer in the channel's server, or may not see the channel.
MISSING_ACCESS = 50001


def proxy_said(exc: BaseException) -> str | None:
    """What a proxy's refusal means (`proxy_refused`), where `exc` is one: discord.py's
    HTTPException for a 407 to a request the proxy forwarded no further, or
    aiohttp's error for a tunnel (https, wss) it refused (407, 403...). None for
    any other error."""
    if isinstance(exc, discord.HTTPException):
        if exc.status != PROXY_AUTH_REQUIRED:  # Discord never answers 407 itself
            return None
        return proxy_refused(getattr(exc.response, "url", None) or "https://discord.com/api")
    return proxy_refusal(exc)


def platform_error(action: str, exc: Exception) -> PlatformError:
    """A user-safe PlatformError for a failed Discord call."""
    refused = proxy_said(exc)
    if refused is not None:  # the request went no further than the proxy
        return PlatformUnreachable(f"Could not reach Discord to {action}: {refused}.")
    # Neither is mended by trying again: the reply stops (see PlaceGone).
    if isinstance(exc, discord.HTTPException) and exc.code == THREAD_LOCKED:
        return PlaceGone(
            f"Discord refused to {action}: the thread is locked (the bot lacks Manage "
            "Threads, which posting there takes)."
        )
    if isinstance(exc, discord.Forbidden) and (exc.text or "").lstrip().startswith("<"):
        # A page, not Discord's JSON: Cloudflare (or a proxy) blocked the request.
        return PlatformError(f"Discord failed to {action} (HTTP 403: {_said(exc.text)}).")
    if isinstance(exc, discord.Forbidden):
        return PlaceGone(
            f"Discord refused to {action}: the bot lacks a permission here "
            f"({_said(exc.text or '403')})."
        )
    if isinstance(exc, discord.NotFound):
        return PlaceGone(f"Discord could not {action}: the channel or message is gone.")
    if isinstance(exc, discord.HTTPException) and exc.code == INVALID_WEBHOOK_TOKEN:
        return PlaceGone(
            f"Discord no longer lets the bot {action}: a command's answer must come "
            "within 15 minutes."
        )
    if isinstance(exc, discord.HTTPException) and exc.status == 401:
        return PlaceGone(
            f"Discord refused to {action}: the bot token is no longer accepted (was it "
            "reset, or the application deleted?)."
        )
    if isinstance(exc, discord.HTTPException) and exc.code == ARCHIVED_THREAD:
        return PlaceGone(f"Discord refused to {action}: the thread is archived or locked.")
    if isinstance(exc, discord.HTTPException):
        code = f", error {exc.code}" if exc.code else ""
        text = _said(exc.text or "")
        if exc.status >= 500 or exc.status == 429:  # Discord failing, or busy: it may
            # take the request later (a 429 past discord.py's own waits, Cloudflare's)
            return PlatformError(f"Discord failed to {action} (HTTP {exc.status}{code}: {text}).")
        return PlatformRefused(f"Discord refused to {action} (HTTP {exc.status}{code}: {text}).")
    if isinstance(exc, RuntimeError):
        # aiohttp's "Session is closed": discord.py closes its HTTP session when Discord
        # ends the gateway for good (a token reset: 4004; shard settings refused), and
        # no request of this process reaches Discord again. The log says why.
        return PlaceGone(f"Could not {action}: the connection to Discord has ended ({exc}).")
    if (short := out_of_files(exc)) is not None:  # no file left for the connection
        return PlatformUnreachable(f"Could not reach Discord to {action}: {short}.")
    return PlatformUnreachable(f"Could not reach Discord to {action} ({exc.__class__.__name__}).")


# aiohttp's own errors (a dropped keep-alive connection) come through discord.py as they
# are; so does its RuntimeError for a closed session (see `platform_error`).
FAILURES = (discord.HTTPException, OSError, asyncio.TimeoutError, aiohttp.ClientError, RuntimeError)

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
SAID_MAX = 200  # characters of an error's text kept for the log


def _said(text: str) -> str:
    """What Discord said with an error, in a line: a page (Cloudflare's, a proxy's)
    by its title, not its markup (a few KB in every line that tells of it)."""
    if text.lstrip().startswith("<"):
        title = _TITLE.search(text)
        text = f"a page: {title.group(1)}" if title else "a page"
    text = " ".join(text.split())
    return text if len(text) <= SAID_MAX else text[:SAID_MAX] + "…"
