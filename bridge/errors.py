"""The one exception family of chat-bridge.

    BridgeError                  every error the bridge raises; `.user_message` is safe to show
    ├── ConfigError              the config file is wrong (`.path` names the key)
    ├── StoreError               the conversation store failed
    │   ├── StoreReplaced        ...as its SQLite file was removed or replaced under it
    │   └── StoreCorrupt         ...as its data is damaged (restore it from a backup)
    ├── PlatformError            a chat platform refused or failed (or could not be reached)
    │   ├── PlatformRefused      it answered and refused this request (a 4xx, not 429)
    │   │   └── SlackRefused     [slack] Slack answered `ok: false` (`.error`, `.needed`)
    │   │       ├── SlackGone    ...as the reply's place is gone (also a PlaceGone)
    │   │       ├── SlackStopped ...as the person pressed Stop (also a StoppedByAsker)
    │   │       └── SlackLockedOut ...as Slack takes the bot's token no more (also a PlaceGone)
    │   ├── PlaceGone            the reply's channel or message is gone, or closed to the bot
    │   │   └── StoppedByAsker   ...as the person asking stopped it there (Slack's Stop)
    │   ├── PlatformUnreachable  it could not be reached (no connection, no answer in time)
    │   ├── SlackFailed          [slack] Slack failed on its side (a 5xx, `ratelimited`)
    │   ├── StartRefused         the platform refused the bridge's token or settings at
    │   │                        start (`.problem`): trying again cannot help
    │   └── AppTokenRefused      [slack] Slack refuses the app-level token as Socket Mode
    │                            reconnects (adapters/platforms/slack/app_token.py)
    ├── TooLong                  an answer grew past `reply.max_answer_chars`
    ├── OutOfTime                an answer still streaming when its platform would soon
    │                            take no more of it (`ReplyTarget.cut_at`)
    └── ChatAPIError             a chat API failed (`.backend`, `.status`, `.detail`)
        ├── BadRequest           400/422: the API rejected the question (`.message`,
        │                        `.history_sent`)
        ├── Unauthorized         401: the API key is wrong
        ├── Forbidden            403: the key may not use this chatbot (or IP allowlist)
        ├── ProxyRefused         the proxy between refused the request: its credentials
        │                        (407), the host (403...; HTTPS_PROXY, NO_PROXY)
        ├── RateLimited          429: try again at `.retry_at` (epoch seconds, or None)
        ├── Unavailable          5xx, refused or dropped connection
        │   ├── Misaddressed     a host name that does not resolve, TLS that fails
        │   ├── Overloaded       the bridge is out of open files (not the API's fault)
        │   ├── ProxyUnreachable the proxy between could not be reached (HTTPS_PROXY)
        │   └── TimedOut         no answer within the configured timeout
        │       ├── SlowToBegin  ...no text of it within connect + first_byte
        │       ├── Stalled      ...its text begun, then nothing more within idle
        │       └── Unfinished   ...its text still flowing when total passed
        └── ProtocolError        the API spoke something we do not understand
            ├── NotAStream       the URL answered, but with no stream the dialect reads
            │   └── WebPage      ...a web page
            ├── CutOff           the stream ended before its terminal event
            │   └── Dropped      ...as its connection dropped (also an Unavailable)
            ├── LineTooLong      [wire] a line of the stream is past the parser's cap
            │   └── EventTooLarge ...an SSE event, its data lines joined
            └── APIReportedError the stream carried an error event (`.message`)

Marked ones are an adapter's, defined where the core does not look:
[slack] in adapters/platforms/slack/refusal.py, [wire] in adapters/apis/_wire.py.

Adapters translate third-party exceptions into these at the boundary with
`raise X from exc`; the core catches nothing else. Messages never contain a
secret.

Outside the family by design: the httpx errors of bridge/transport.py
(ProxyDenied, ProxyAuthFailed, ProxyConnectError, BadAddress, CompressedBody,
OutOfFiles). They are raised inside the HTTP client, where the dialects expect
httpx's own exceptions, and adapters/apis/_errors.py translates them into the
ChatAPIErrors above with the rest of httpx's.
"""

from __future__ import annotations

import math
import re
import time


class BridgeError(Exception):
    """Base of every chat-bridge error."""

    user_message: str = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.user_message)
        if message:
            self.user_message = message


class ConfigError(BridgeError):
    """The configuration is invalid; `path` is the key path, e.g. `routes[2].session`.
    `parts` are the errors it tells, one a line: itself alone, unless several were
    found at once (its path and problem are then the first's)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        self.parts: list[ConfigError] = [self]
        super().__init__(f"{path}: {problem}" if path else problem)


def together(errors: list[ConfigError]) -> ConfigError:
    """Several config errors as one: the first's path and problem, a line for each in
    its message."""
    if len(errors) == 1:
        return errors[0]
    error = ConfigError(errors[0].path, errors[0].problem)
    error.args = ("\n".join(str(e) for e in errors),)
    error.parts = errors
    return error


class StoreError(BridgeError):
    user_message = (
        "The bridge's conversation store is not available right now; please try again shortly."
    )


class StoreReplaced(StoreError):
    """The SQLite file the store opened was removed or replaced under it (a backup put
    back without a stop): what it writes goes to the old file, lost at the next start.
    The message is for the log and says what to do."""


class StoreCorrupt(StoreError):
    """The store's data is damaged (SQLite found its file corrupt): asking again meets
    the same damage, until an admin restores the store from a backup. The message is
    for the log; the asker is told to tell an admin."""

    user_message = (
        "The bridge's conversation store is damaged (it must be restored from a backup). "
        "Tell an admin."
    )


class PlatformError(BridgeError):
    """A chat platform failed a request. This kind alone says it failed on its side (a
    5xx), or the adapter cannot tell how (`PlatformUnreachable` says it could not be
    reached): it may take it later."""

    user_message = "The chat platform refused the reply; please ask again."


class PlatformRefused(PlatformError):
    """The platform answered and refused this very request (a 4xx other than 429: a
    text it will not take): trying it again soon would be refused the same way."""


class PlaceGone(PlatformError):
    """The reply cannot go on where it was: its channel or message was deleted, or the
    bot was removed or lost its access there. Trying again would fail the same way."""

    user_message = "The reply's channel or message is gone, or the bot may no longer post there."


class StoppedByAsker(PlaceGone):
    """The person asking stopped the answer where it shows (Slack's Stop on a native
    stream): it ends there, as shown. Not a failure, and nothing of it is marked."""


class PlatformUnreachable(PlatformError):
    """The platform could not be reached (the connection failed or timed out, or a
    proxy could not reach it): it may take the request later."""


class StartRefused(PlatformError):
    """The platform refused, as it started, what the config gives it (a token, an
    intent, shard settings): trying again cannot help until the config changes.
    `problem` says which in a word or two (for /healthz)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


class TooLong(BridgeError):
    """An answer grew past `reply.max_answer_chars`: what came before is shown, the
    rest is not asked for."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The answer was stopped here: it grew longer than this bot shows"
            f" ({limit:,} characters)."
        )
        self.limit = limit


class OutOfTime(BridgeError):
    """An answer still streaming when its platform would soon take no more of it (a
    Discord command's token expires): what came is shown with `user_message` (the
    platform's), the rest is not asked for."""


class ChatAPIError(BridgeError):
    """A chat API failed; the kind a dialect tries again is `Unavailable`. `detail` is
    what failed as the admin's log says it (a host and port, the API's own message),
    where the adapter knows more than the message says."""

    user_message = "The assistant failed to answer."
    # Where true, a message given is for the log alone: the asker is told the kind's
    # own `user_message` (the message names what an admin must look at).
    logged_only = False

    def __init__(
        self,
        message: str | None = None,
        *,
        backend: str | None = None,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        if self.logged_only:
            self.user_message = type(self).user_message
        self.backend = backend
        self.status = status
        self.detail = detail


class BadRequest(ChatAPIError):
    """The API rejected the question. `api_said` is its own reason, shown after
    "The assistant could not take that question:"; `.message` is that reason, or
    the whole message when the bridge wrote it. `history_sent`: the request refused
    carried the conversation's history (a stateless API's), even once asked again
    with less of it: that history may be what the API cannot take."""

    user_message = "The assistant could not take that question."
    history_sent = False

    def __init__(
        self,
        message: str | None = None,
        *,
        api_said: str | None = None,
        backend: str | None = None,
        status: int | None = None,
    ) -> None:
        api_said = (api_said or "").strip() or None
        if api_said:
            message = f"The assistant could not take that question: {_sentence(api_said)}"
        super().__init__(message, backend=backend, status=status)
        self.message = api_said or self.user_message
        if api_said:  # the whole of it is in the log
            self.user_message = _told_with(
                "The assistant could not take that question", api_said, BadRequest.user_message
            )


class Unauthorized(ChatAPIError):
    user_message = "The assistant is misconfigured (its API key was refused). Tell an admin."


class Forbidden(ChatAPIError):
    user_message = (
        "The assistant is misconfigured (its API key may not use this chatbot, "
        "or the bot's host is not on the API's allowlist). Tell an admin."
    )


class ProxyRefused(ChatAPIError):
    """The proxy the environment names refused the request, which went no further:
    the API key was not checked. 407 Proxy Authentication Required: it refused the
    credentials its variable (HTTPS_PROXY, HTTP_PROXY) gives, or wants some; another
    status (403, say): it may not reach the API's host. The message, for the log,
    says what to check (the variable, NO_PROXY); the asker is told to tell an
    admin, and it is not tried again."""

    user_message = (
        "The assistant is misconfigured (a proxy refused the bridge's credentials). Tell an admin."
    )
    logged_only = True

    def __init__(
        self, message: str | None = None, *, backend: str | None = None, status: int | None = 407
    ) -> None:
        super().__init__(message, backend=backend, status=status)
        if status != 407:
            self.user_message = (
                "The assistant is misconfigured (a proxy refused to reach it). Tell an admin."
            )


class RateLimited(ChatAPIError):
    """429. `retry_at` is an absolute time (epoch seconds), when the API says."""

    user_message = "The assistant is rate limited."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_at: float | None = None,
        backend: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, backend=backend, status=status)
        self.retry_at = retry_at
        if message is None:
            self.user_message = self.describe()

    def describe(self, now: float | None = None) -> str:
        if self.retry_at is None:
            return "The assistant is rate limited; please try again in a minute."
        wait = self.retry_at - (time.time() if now is None else now)
        return f"The assistant is rate limited; please try again in {wait_words(wait)}."


class Unavailable(ChatAPIError):
    user_message = "The assistant is unavailable right now; please try again shortly."


class Misaddressed(Unavailable):
    """The backend's address could not be reached in a way waiting will not mend (a
    host name that does not resolve, a TLS handshake that failed): still tried again
    (a name may just have been added), but the asker is told an admin must act."""

    user_message = (
        "The assistant is misconfigured (its address could not be reached). Tell an admin."
    )


class Overloaded(Unavailable):
    """The bridge itself could not open a connection to the chat API: the process
    (or the system) is out of open files. The API is not at fault, so it does not
    count against its circuit. The message, for the log, names the limit and what
    to raise; the asker is told the bridge is overloaded."""

    user_message = "The bridge is overloaded right now; please try again shortly."
    logged_only = True


class ProxyUnreachable(Unavailable):
    """The proxy the environment names (HTTPS_PROXY, HTTP_PROXY) could not be
    reached (it refused the connection, say): the API was not asked. Tried again as
    a refused connection is; the message, for the log, names the proxy's host and
    port and the variable to check, not the backend's url."""

    user_message = "The assistant could not be reached; please try again shortly."
    logged_only = True


class TimedOut(Unavailable):
    user_message = "The assistant took too long to answer; please try again."


class SlowToBegin(TimedOut):
    """No text of the answer came within the backend's connect + first_byte: most
    often a reasoning model thinking longer before its first word than the bridge
    waits (asking again would fail the same way, and be paid again), or a hung
    backend. It still counts against the backend's circuit."""

    user_message = (
        "The assistant took longer than the bridge waits to begin its answer; an admin "
        "can let it take longer."
    )


class Stalled(TimedOut):
    """The answer's text had begun, then not a byte more came within the backend's
    `idle` (its text so far is shown): a backend that hangs after its first words,
    or a model pausing mid-answer, silent, longer than the bridge waits; or `total`
    cut it first, nothing having come for half of `idle`. Only once text came:
    until then the deadline is `first_byte`'s (SlowToBegin). It counts against the
    backend's circuit, as SlowToBegin does (each such question is paid for, and
    its asker waits `idle` for half an answer); the log names `timeouts.idle`."""


class Unfinished(TimedOut):
    """The backend's `total` passed while the answer's text was still coming, a byte
    within half of its `idle` before (its text so far is shown): an answer longer
    than `total` allows (a long reasoning one), not the backend failing, so it does
    not count against its circuit; the log names `timeouts.total`."""


class ProtocolError(ChatAPIError):
    user_message = "The assistant's answer could not be read."


class NotAStream(ProtocolError):
    """The URL answered, but its body held not one event of the stream asked for (a
    JSON or text answer: a wrong URL or `kind`). Asking again cannot help. The
    message is for the log; the asker is told to tell an admin."""

    user_message = (
        "The assistant is misconfigured (its address did not answer with a stream). Tell an admin."
    )
    logged_only = True


class WebPage(NotAStream):
    """A web page came where the answer's stream should (a wrong URL, a proxy's or a
    sign-in page)."""

    user_message = (
        "The assistant is misconfigured (its address answered with a web page). Tell an admin."
    )


class CutOff(ProtocolError):
    user_message = "The answer was cut off; please ask again."


class Dropped(CutOff, Unavailable):
    """The connection dropped once the answer's stream had begun: cut off if the asker
    saw text already, else tried again (a stream's opening event shows nothing)."""

    user_message = "The answer was cut off (the connection dropped); please ask again."


class APIReportedError(ProtocolError):
    user_message = "The assistant reported an error."

    def __init__(
        self, message: str | None = None, *, backend: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(
            f"The assistant reported an error: {_sentence(message)}" if message else None,
            backend=backend,
            status=status,
        )
        self.message = message
        if message:  # the whole of it is in the log
            self.user_message = _told_with(
                "The assistant reported an error", message, APIReportedError.user_message
            )


# A link in an API's reason (many end with one to their docs): left out of what the
# asker sees, the rest of the sentence kept.
_LINK = re.compile(r"\s*\(?(?:see\s+)?<?\b[a-z][a-z0-9+.-]*://[^\s)>]+>?\)?", re.IGNORECASE)
# What an API's own reason must not hold to be shown to the asker: a host and port,
# an IP address, a file path, a traceback. Those are for the admin's log.
_INTERNAL = re.compile(
    r"traceback|\.py\b|(?:^|[\s(\"'])/[\w.-]+/"  # a traceback, a file path
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b|[\w.\]-]:\d{2,5}\b"  # an IPv4 address, a host:port
    r"|\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*::[0-9a-f]{1,4}\b|(?<![\w:])::[0-9a-f]{1,4}\b",  # IPv6
    re.IGNORECASE,
)


def shown_reason(api_text: str) -> str | None:
    """An API's own reason as the asker may see it: one short line, its links left
    out; None where it holds something internal."""
    text = _LINK.sub("", api_text.strip()).strip().rstrip(":;,-–—").strip()
    if not text or "\n" in text or len(text) > 300 or _INTERNAL.search(text):
        return None
    return text


def _told_with(what: str, reason: str, plain: str) -> str:
    """`what: reason.` as the asker may see it, or the `plain` sentence alone."""
    shown = shown_reason(reason)
    return f"{what}: {_sentence(shown)}" if shown else plain


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def wait_words(wait: float) -> str:
    """A wait as an asker is told it (`45 s`, `57 min`, `3 h`), rounded up: trying again
    when told is never too soon."""
    seconds = max(1, math.ceil(min(wait, 1e9)))  # (an hour's wait or a year's: a number)
    if seconds < 90:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{math.ceil(minutes / 60)} h"


def for_log(exc: BaseException) -> str:
    """A failure as a log line may name it: a bridge error's message, else only its kind
    (a library's own message may hold a URL with a token in it)."""
    return str(exc) if isinstance(exc, BridgeError) else type(exc).__name__


UNEXPECTED = "Something went wrong on the bridge's side; please ask again."


def told(exc: BaseException) -> str:
    """What the asker is told of a failure; a store's or a platform's details (a
    method, an error code) are for the admin's log."""
    for kind in (StoreCorrupt, StoreError, PlaceGone, PlatformError):
        if isinstance(exc, kind):
            return kind.user_message
    return exc.user_message if isinstance(exc, BridgeError) else UNEXPECTED
