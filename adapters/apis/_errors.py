"""How an HTTP chat API's failures become the bridge's errors.

`status_error` maps an HTTP status of 300 or more (and the API's own message
in its body) to the `bridge.errors` family; `transport_error` does the same
for an httpx error, or a request that cannot be sent; `timed_out` words the
deadline that passed. Each sets the backend's name and the status, and logs
what the admin needs, save for a failure `stream` tries again on (`retried`):
that is kept in the error's `detail`, for `stream` to log once with the
attempt and what comes next; so is a refused key's (401, 403), for whoever
gets the error to log with the setting to mend (the relay, in moderation, as
every question meets it). `scrub` makes an API's message safe to show: the
API key never appears in a message or a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from json import loads as json_loads
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from adapters.apis._bodies import retry_at, without_query
from bridge.errors import (
    BadRequest,
    ChatAPIError,
    Forbidden,
    Misaddressed,
    Overloaded,
    ProtocolError,
    ProxyRefused,
    ProxyUnreachable,
    RateLimited,
    SlowToBegin,
    Stalled,
    TimedOut,
    Unauthorized,
    Unavailable,
    Unfinished,
)
from bridge.proxies import PROXY_AUTH_REQUIRED, env_proxy, proxy_refused
from bridge.transport import (
    BadAddress,
    CompressedBody,
    OutOfFiles,
    ProxyConnectError,
    ProxyDenied,
    content_coding,
)

if TYPE_CHECKING:
    from adapters.apis._http import Timeouts

log = logging.getLogger("adapters.apis")

E = TypeVar("E", bound=ChatAPIError)

# At the `total` cut, an answer whose text had begun was still coming (Unfinished,
# which its circuit does not count) where bytes came within this share of `idle`
# before it; quiet longer, it stopped mid-answer (Stalled, which counts). The quiet
# is under `idle` (else `idle` cut first): streamed text comes many times a second,
# so half of `idle` without a byte is no answer still flowing, and a backend that
# hangs after its first words, where `total` cuts it, is quiet that long more often
# than not (the longer `idle`, the likelier).
QUIET_SHARE = 0.5


def retried(error: ChatAPIError) -> bool:
    """Whether `HTTPDialect.stream` tries again on `error` (while no text was shown).
    Such an error is not logged where it is made: whoever catches it logs its
    `detail` (the loop, with the attempt: one line a failed attempt)."""
    return isinstance(error, Unavailable) and not isinstance(error, TimedOut)


def _logged(error: E, said: str, backend: str) -> E:
    """`error` with `said` as its detail, logged now unless `stream` logs it, or
    it is a refused key (see the module's docstring)."""
    error.detail = said
    if not retried(error) and not isinstance(error, Unauthorized | Forbidden):
        log.warning("%s", said, extra={"backend": backend})
    return error


def status_error(
    response: httpx.Response,
    content: bytes | None,
    *,
    backend: str,
    key: str | None,
    error_text: Callable[[Any], str | None],
    body_limit: int,
) -> ChatAPIError:
    """The error an HTTP status of 300 or more means; `content` is its body, None
    when that was over `body_limit` bytes (the status still says what went wrong).
    `error_text` finds the API's message in the parsed body (None, too, when it came
    compressed: see `error_body`)."""
    status = response.status_code
    kw: dict[str, Any] = {"backend": backend, "status": status}
    try:
        body: Any = json_loads(content) if content is not None else None
    except (ValueError, RecursionError):
        body = None
    if status < 400:
        # Not followed (a redirect could take the key to another host): the
        # admin sets the backend's url to where it leads.
        log.warning(
            "HTTP %d from the chat API: its url redirects to %s; set the backend's url to that",
            status,
            scrub(without_query(response, response.headers.get("location", "")), key) or "-",
            extra={"backend": backend},
        )
        return BadRequest(
            f"The assistant is misconfigured (HTTP {status} from its URL). Tell an admin.",
            **kw,
        )
    if status == PROXY_AUTH_REQUIRED:
        # The proxy's answer, not the API's: the key never reached the API.
        said = proxy_refused(str(response.request.url))
        log.warning("HTTP 407 from the proxy: %s", said, extra={"backend": backend})
        return ProxyRefused(said, **kw)
    if status == 403 and body is None and _forwarded(response.request.url):
        # No JSON of the API's: the deny page of a proxy, whose 403 to a host not on
        # its list was told as the API refusing the key.
        said = proxy_refused(str(response.request.url), status)
        log.warning(
            "HTTP 403 with no message of the chat API's, through the proxy: %s",
            said,
            extra={"backend": backend},
        )
        return ProxyRefused(said, **kw)
    detail = scrub(error_text(body), key)
    coded = content_coding(response.headers.get_list("content-encoding"))
    unread = (
        f" (its body came compressed, Content-Encoding: {coded}: not read)"
        if coded
        else f" (its body is over {body_limit} bytes: not read)"
    )
    said = f": {detail}" if detail else ("" if content is not None else unread)
    error = _status_kind(status, detail, response, kw)
    return _logged(error, f"HTTP {status} from the chat API{said}", backend)


def _forwarded(url: httpx.URL) -> bool:
    """Whether a request for `url` went through a proxy that answers it itself: a
    plain http:// one (an https:// request's answer comes through the proxy's
    tunnel from the API, the proxy's own refusal being the tunnel's)."""
    return url.scheme == "http" and env_proxy(str(url)) is not None


def _status_kind(
    status: int, detail: str | None, response: httpx.Response, kw: dict[str, Any]
) -> ChatAPIError:
    """The error an HTTP status of 400 or more means (`detail`: the API's message)."""
    if status == 401:
        return Unauthorized(**kw)
    if status == 403:
        return Forbidden(**kw)
    if status == 429:
        return RateLimited(retry_at=retry_at(response.headers), **kw)
    if status == 408:
        return TimedOut(**kw)
    if status >= 500:
        return Unavailable(
            f"The assistant is unavailable right now (HTTP {status}); please try again shortly.",
            **kw,
        )
    if status in (404, 405):
        # Most often the backend's URL is wrong: nothing the asker can mend. (A
        # dialect may know better: Chat Ur Data's 404 is a thread it forgot.)
        return BadRequest(
            f"The assistant is misconfigured (HTTP {status} from its URL). Tell an admin.",
            **kw,
        )
    if detail:
        return BadRequest(api_said=detail, **kw)
    return BadRequest(f"The assistant refused the question (HTTP {status}).", **kw)


def timed_out(
    which: Literal["first", "idle", "total"],
    timeouts: Timeouts,
    backend: str,
    *,
    wrote: bool = False,
    quiet: float = 0.0,
) -> TimedOut:
    """TimedOut for the deadline that passed: first text (SlowToBegin), between reads
    once text came (Stalled), or overall (Unfinished where text had come, `wrote`,
    and still came: nothing for `quiet` seconds, a share of `idle`, is Stalled).
    The log names the setting that decided it, for the admin to raise."""
    t = timeouts
    if which == "total" and wrote and quiet >= t.idle * QUIET_SHARE:
        log.warning(
            "backend %s stopped mid-answer: nothing more for %.3g s when its "
            "timeouts.total (now %g) cut the answer (timeouts.idle: %g)",
            backend,
            quiet,
            t.total or 0.0,
            t.idle,
            extra={"backend": backend},
        )
        return Stalled(
            f"The assistant did not finish within {t.total or 0.0:g} s; please try again.",
            backend=backend,
        )
    key, setting, wait = {
        "first": ("first_byte", t.first_byte, t.connect + t.first_byte),
        "idle": ("idle", t.idle, t.idle),
        "total": ("total", t.total or 0.0, t.total or 0.0),
    }[which]
    what = {
        "first": "sent no text",
        "idle": "sent nothing more",
        "total": "did not finish its answer",
    }[which]
    why = {
        "first": " for a model that thinks long before answering",
        "idle": " for a model that pauses long within an answer",
        "total": " for longer answers",
    }[which]
    log.warning(
        "backend %s %s within %g s: raise backends.%s.timeouts.%s (now %g)%s",
        backend,
        what,
        wait,
        backend,
        key,
        setting,
        why,
        extra={"backend": backend},
    )
    if which == "first":
        # Not "try again": a model that thinks this long would be cut (and paid) again.
        return SlowToBegin(
            f"The assistant took longer than {wait:g} s to begin its answer; an admin can "
            "let it take longer.",
            backend=backend,
        )
    if which == "idle":  # text came (until it does, the deadline is first_byte's)
        return Stalled(
            f"The assistant stopped answering within {wait:g} s; please try again.",
            backend=backend,
        )
    if wrote:  # still coming: a longer answer than `total` lets be, not a failure
        # Not "try again": it would be cut (and paid for) again, as SlowToBegin's.
        return Unfinished(
            f"The assistant did not finish within {wait:g} s; an admin can let it take longer.",
            backend=backend,
        )
    return TimedOut(
        f"The assistant did not finish within {wait:g} s; please try again.", backend=backend
    )


def transport_error(
    exc: Exception, *, backend: str, key: str | None, timeouts: Timeouts
) -> ChatAPIError:
    """The error an httpx error (or a request that cannot be sent) means."""
    # A failure to connect says what failed (the transport words it with the host
    # and port, never the URL); any other error is named by its kind only.
    worded = httpx.ConnectError | ProxyDenied | CompressedBody
    said = scrub(str(exc), key) if isinstance(exc, worded) else None
    error = _transport_kind(exc, backend, timeouts)
    return _logged(error, said or f"HTTP transport error: {type(exc).__name__}", backend)


def _transport_kind(exc: Exception, backend: str, timeouts: Timeouts) -> ChatAPIError:
    """The error an httpx error (or a request that cannot be sent) means."""
    if isinstance(exc, ProxyDenied):  # a tunnel refused: the key never left
        return ProxyRefused(str(exc), backend=backend, status=exc.status)
    if isinstance(exc, ProxyConnectError):  # the backend's url is not the one to check
        return ProxyUnreachable(str(exc), backend=backend)
    if isinstance(exc, CompressedBody):
        # Asking again would be answered the same way: only an admin can mend it.
        return ProtocolError(
            "The assistant's answer could not be read (it came compressed). Tell an admin.",
            backend=backend,
        )
    if isinstance(exc, UnicodeEncodeError):
        return BadRequest("The question has characters that cannot be sent.", backend=backend)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ChatAPIError(
            "The assistant is misconfigured (its URL is not valid). Tell an admin.",
            backend=backend,
        )
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return timed_out("first", timeouts, backend)
    if isinstance(exc, OutOfFiles):  # the bridge's own want: not the API's failure
        return Overloaded(str(exc), backend=backend)
    if isinstance(exc, BadAddress):
        # Saying "shortly" would send the asker back to a fault only an admin can mend.
        return Misaddressed(backend=backend)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Unavailable(
            "The assistant could not be reached; please try again shortly.", backend=backend
        )
    return Unavailable(backend=backend)


def scrub(text: str | None, key: str | None, limit: int = 300) -> str | None:
    """An API message made safe to show: no API key, bounded length."""
    if not text:
        return None
    if key and key in text:
        text = text.replace(key, "***")
    return text if len(text) <= limit else text[: limit - 1] + "…"
