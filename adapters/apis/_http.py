"""What every HTTP chat-API dialect shares: options, timeouts, retries, error mapping.

A dialect subclasses `HTTPDialect`, declares its `Options` (a subclass of
`HTTPOptions`) and writes one async generator, `_attempt(req)`, that makes a
single try at answering. `stream()` wraps it with retries: 5xx and connection
errors are retried with exponential backoff and full jitter, but only while no
`Token` has been yielded (text the user has seen is never shown twice). Each
failed attempt is one log line: what failed, and the wait before the next.

`_stream_batches(parser, ...)` opens a streaming request and yields what the
parser makes of each network read of the body, with three deadlines:
connect, the answer's first text, and idle time between reads (the
consumer's own time between reads is not counted, nor the pauses `READ_GATE`
asks for).
`_events(batches, convert)` turns those into chat events, joining each read's
tokens into one, and tells `_stream_batches` when the answer's text has begun
(and whether anything was an event of the API's stream at all: a body of
which nothing was is `NotAStream`).
`_request_json(...)` is the non-streaming twin. Both translate every httpx
error and HTTP error status into the `bridge.errors` family, with the backend
name and status set, and never put the API key in a message (`_errors` holds
that mapping).
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, aclosing
from contextvars import ContextVar
from json import loads as json_loads  # `json` is a request's body in the methods below
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar, cast

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from adapters.apis._bodies import error_body, media_type, read_at_most
from adapters.apis._errors import retried, scrub, status_error, timed_out, transport_error
from adapters.apis._urls import with_params
from bridge.errors import (
    BadRequest,
    ChatAPIError,
    CutOff,
    Dropped,
    NotAStream,
    ProtocolError,
    TimedOut,
    Unavailable,
    WebPage,
    for_log,
)
from bridge.interfaces import (
    READ_GATE,
    ChatAPI,
    ChatEvent,
    ChatRequest,
    DialectOptions,
    Done,
    Token,
    clean_secret,
)
from bridge.transport import plain_url

log = logging.getLogger("adapters.apis")

T = TypeVar("T")
# The most of a body read whole: an error status's (only its message is kept) and
# a whole JSON answer (`stream: false`, Chat Ur Data); the rest is not read.
ERROR_BODY_BYTES = 16 * 1024
JSON_BODY_BYTES = 8 * 1024 * 1024
# Content-Types of the streams the dialects read.
STREAM_TYPES = frozenset(
    {"text/event-stream", "application/x-ndjson", "application/ndjson", "application/jsonl"}
)
# Statuses an API refuses a request with that may be too large for its model (a
# context-length error: OpenAI's and vLLM's 400, llama.cpp's, a proxy's 413, a 422).
REFUSED_AS_TOO_LARGE = frozenset({400, 413, 422})
# What a dialect makes of one parsed item: a token's text ("" for an event of the
# stream that shows none), another event, or None: no event of the API's stream.
Event = str | ChatEvent | None


class Timeouts(BaseModel):
    """Seconds to wait: to connect, for the answer's first text, between reads, and overall.

    `first_byte` is long: a reasoning model thinks (a minute, two) before its first
    text, sending nothing or keep-alives meanwhile. A stall once text has begun is
    still caught by `idle`, and `total` bounds an answer where set.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(120.0, gt=0)
    idle: float = Field(30.0, gt=0)
    total: float | None = Field(None, gt=0)


class Retries(BaseModel):
    """Retries of 5xx and connection errors before any text was shown.

    `attempts` counts the first try; the n-th retry waits a random time up to
    `backoff * 2**(n-1)` seconds, at most `max_backoff`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    attempts: int = Field(3, ge=1, le=10)
    backoff: float = Field(0.5, ge=0, le=60)
    max_backoff: float = Field(8.0, ge=0, le=300)


def _trimmed(key: SecretStr | None) -> SecretStr | None:
    """The key as a header can carry it (see `clean_secret`)."""
    return None if key is None else clean_secret(key)


def _given(key: SecretStr) -> SecretStr:
    if not key.get_secret_value().strip():
        raise ValueError("is empty (is its environment variable set?)")
    return _trimmed(key)  # type: ignore[return-value]


# An API key the dialect cannot work without: an empty one is a config error.
RequiredKey = Annotated[SecretStr, AfterValidator(_given)]


class HTTPOptions(DialectOptions):
    """Options every HTTP dialect has."""

    url: str
    api_key: SecretStr | None = None
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return plain_url(value, credentials="; give the key in api_key")

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr | None) -> SecretStr | None:
        # `${KEY:-}` with the variable unset expands to "": no key, as if not given.
        return None if value is None or not value.get_secret_value().strip() else _trimmed(value)


class _Parser(Protocol[T]):
    def feed(self, chunk: bytes) -> list[T]: ...

    def close(self) -> list[T]: ...


class HTTPDialect(ChatAPI):
    """Base of the HTTP dialects: retries, deadlines and error translation."""

    Options: ClassVar[type[HTTPOptions]] = HTTPOptions
    options: HTTPOptions
    # Statuses this API may refuse a question with for its history's length.
    refused_as_too_large: ClassVar[frozenset[int]] = REFUSED_AS_TOO_LARGE

    def __init__(self, name: str, options: DialectOptions, http: httpx.AsyncClient) -> None:
        super().__init__(name, options, http)
        key = self.options.api_key
        self._key = key.get_secret_value() if key is not None else None
        t = self.options.timeouts
        # httpx enforces connecting; reads are timed by our own deadlines, which
        # know the difference between the wait for the first text and the ones after it.
        self._timeout = httpx.Timeout(
            connect=t.connect, read=None, write=t.connect + t.first_byte, pool=t.connect
        )

    # ------------------------------------------------------------------ for dialects

    def check_request(self, req: ChatRequest) -> None:
        """Refuse a request without any HTTP call (raise BadRequest)."""
        limit = self.max_message_chars
        if limit is not None and not 1 <= len(req.message) <= limit:
            raise BadRequest(f"Message must be between 1 and {limit} characters", backend=self.name)

    def auth_headers(self) -> dict[str, str]:
        """Request headers carrying the API key (Bearer by default)."""
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def with_less_history(self, req: ChatRequest) -> tuple[ChatRequest, int] | None:
        """`req` with less of the history the dialect would send (a stateless API's),
        to ask again when the API refused the request as too large, and the most
        characters it is sent with in all; None where it sends no history."""
        return None

    def took_history(self, chars: int) -> None:  # noqa: B027 - optional hook
        """Called when the API took a request of at most `chars` characters in all
        (made by `with_less_history`) after refusing it with more history as too large."""

    def on_response(self, response: httpx.Response) -> None:  # noqa: B027 - optional hook
        """Called with every response's headers (for rate-limit bookkeeping)."""

    def error_text(self, body: Any) -> str | None:
        """The API's human-readable error message from a parsed error body."""
        if isinstance(body, dict):
            for key in ("error", "message", "detail"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return value
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return str(value["message"])
        return None

    @abstractmethod
    def _attempt(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        """One try at answering: an async generator of events ending with Done."""

    # ------------------------------------------------------------------ ChatAPI

    @property
    def probe_timeout(self) -> float:
        # Time to connect, for the first text, and for one read more: a probe that
        # waited on the stream's own deadlines would wait for good on a backend
        # that sends keep-alives (each pushes them back) and never an answer.
        t = self.options.timeouts
        return t.connect + t.first_byte + t.idle

    async def stream(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        self.check_request(req)
        retries = self.options.retries
        loop = asyncio.get_running_loop()
        total = self.options.timeouts.total
        ends = loop.time() + total if total else None  # the answer's, across its attempts
        attempt = 0
        shortened = False
        took: int | None = None  # `req`'s size cap, refused with more, until it is taken
        try:
            while True:
                attempt += 1
                shown = False
                _ANSWER_ENDS.set(ends)
                try:
                    async with aclosing(self._attempt(req)) as events:
                        async for event in events:
                            if took is not None:
                                # Taken: the model's context holds that much history.
                                self.took_history(took)
                                took = None
                            if isinstance(event, Token) and event.text:
                                shown = True
                            yield event
                    return
                except BadRequest as exc:
                    if shown or exc.status not in self.refused_as_too_large:
                        raise
                    less = self.with_less_history(req)
                    if shortened or less is None:
                        # Still sent with history: the asker is told how to start over.
                        exc.history_sent = shortened and less is not None
                        raise
                    shorter, took = less
                    # A small model's context may not take `history_chars` of history:
                    # refused, the conversation would stay refused for good.
                    log.info(
                        "the chat API refused a question sent with the conversation's history "
                        "(HTTP %s); asking once more with half of it (%d messages)",
                        exc.status,
                        len(shorter.history),
                        extra={"backend": self.name},
                    )
                    req, shortened = shorter, True
                except Unavailable as exc:
                    if not retried(exc):  # a deadline: logged where it passed
                        raise
                    # One line a failed attempt: what failed (not logged where the
                    # error was made) and what comes next. INFO: whoever gets the
                    # error (the relay) says what came of them, once.
                    said = exc.detail or for_log(exc)
                    failed = f"attempt {attempt} of {retries.attempts}: {said}"
                    extra = {"backend": self.name}
                    if shown:
                        log.info("%s; not retried: text was shown", failed, extra=extra)
                        raise
                    if attempt >= retries.attempts:
                        log.info("%s", failed, extra=extra)
                        raise
                    cap = min(retries.max_backoff, retries.backoff * 2 ** (attempt - 1))
                    delay = random.uniform(0, cap)
                    if ends is not None and loop.time() + delay >= ends:
                        log.info("%s", failed, extra=extra)
                        raise self._timed_out("total") from exc
                    log.info("%s; retrying in %.2f s", failed, delay, extra=extra)
                    await asyncio.sleep(delay)
        finally:
            _ANSWER_ENDS.set(None)

    # ------------------------------------------------------------------ HTTP helpers

    async def _events(
        self,
        batches: AsyncGenerator[list[T], bool | None],
        convert: Callable[[T], Event],
        at_end: Callable[[], Done | None] | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """The chat events of a stream's batches, each read's tokens joined into one Token.

        `convert` makes one parsed item a token's text (str; "" for an event
        of the stream that shows none, such as NDJSON's `start`), an event, or
        None: no event of the API's stream (ignored); it may raise. Stops
        after a Done. A stream that ends without one was cut off, unless
        `at_end()` gives the Done it implies. Asking for each read after the
        first, it tells `batches` whether the last one held text, only events
        without text, or no event at all (True, False, None: see `_stream_batches`).
        """
        async with aclosing(batches):
            wrote: bool | None = None  # a just-started generator takes only None
            while True:
                try:
                    batch = await batches.asend(wrote)
                except StopAsyncIteration:
                    break
                wrote = None
                text: list[str] = []
                for item in batch:
                    try:
                        event = convert(item)
                    except ChatAPIError:
                        if text:  # what came before the error is still shown
                            yield Token("".join(text))
                        raise
                    if event is None:
                        continue
                    wrote = wrote or False
                    if not event:
                        continue
                    if isinstance(event, str):
                        text.append(event)
                        wrote = True
                        continue
                    if text:
                        yield Token("".join(text))
                        text = []
                    yield event
                    if isinstance(event, Done):
                        return
                if text:
                    yield Token("".join(text))
                # The next read may wait for the reply's next edit: keep nothing of this one.
                batch.clear()
                text.clear()
        done = at_end() if at_end is not None else None
        if done is None:
            raise CutOff(backend=self.name)
        yield done

    async def _stream_batches(
        self,
        parser: _Parser[T],
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[list[T], bool | None]:
        """Send a request and yield what the parser makes of each read of its body.

        The consumer sends back, with its request for the next read, whether
        the items it was given held the answer's text (`_events` does: True;
        False for events without text; None where none was an event of the
        API's stream). Until some held text, the deadline is the first-byte
        one: a stream's opening event (NDJSON's `start`, bot-messages' empty
        content, OpenAI's role chunk) comes as the stream opens, before the
        model has written anything. A body that ends without a single event
        of the stream (a JSON or text answer from a wrong URL or `kind`) is
        `NotAStream`: asking again would only cost another try. (One whose
        Content-Type is a stream's is left to the consumer: cut off.)
        """
        loop = asyncio.get_running_loop()
        t = self.options.timeouts
        start = loop.time()
        end = answer_end(start, t.total)
        deadline = _earliest(start + t.connect + t.first_byte, end)
        got_any = False  # an event was parsed
        known = False  # ...and the consumer took one for an event of its stream
        wrote = False  # ...and one held the answer's text
        heard = start  # when the last bytes came (for a `total` cut: still coming?)
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(
                        self.http.stream(
                            method,
                            with_params(url, params),
                            json=json,
                            headers={**self.auth_headers(), **(headers or {})},
                            timeout=self._timeout,
                        )
                    )
                self.on_response(response)
                if response.status_code >= 300:  # redirects are not followed: see _status_error
                    async with asyncio.timeout_at(deadline):
                        content = await error_body(response, ERROR_BODY_BYTES)
                    raise self._status_error(response, content)
                # httpx hints aiter_bytes() as an AsyncIterator; it is an async generator.
                body = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
                chunks = await stack.enter_async_context(aclosing(body))
                gate = READ_GATE.get()
                began = b""  # the body's first byte beyond blanks
                while True:
                    if gate is not None and got_any:
                        held = loop.time()
                        await gate()
                        # The pause is the reply's, not the API's idle time.
                        deadline = _earliest(deadline + loop.time() - held, end)
                        heard += loop.time() - held
                    try:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(chunks, None)
                    except httpx.TransportError as exc:
                        if not got_any:
                            raise
                        # Retried by `stream` while no text was shown (the stream may
                        # have opened with an event that shows none), else cut off.
                        raise Dropped(
                            backend=self.name,
                            status=response.status_code,
                            detail=f"the connection dropped mid-stream ({type(exc).__name__})",
                        ) from exc
                    heard = loop.time()
                    if chunk is None:
                        break
                    if not began and (began := chunk.lstrip()[:1]) == b"<":
                        # No stream starts so: a wrong URL, a proxy's or a sign-in page.
                        raise WebPage(
                            "The chat API's URL answered with a web page, not an answer: "
                            "check the backend's url, and any proxy or gateway between.",
                            backend=self.name,
                            status=response.status_code,
                        )
                    items = parser.feed(chunk)
                    # Any bytes are signs of life: a keep-alive comment (OpenRouter's
                    # while a model queues or reasons), an event without text (a
                    # stream's opening one); `total` bounds the whole answer. Until the
                    # answer's text has begun they only ever push the deadline later:
                    # `first_byte` may be longer than `idle`. Only text begins it:
                    # Sources are shown once the answer ends, and a Status or a
                    # Session is news about the answer, not the model writing it.
                    alive = loop.time() + t.idle
                    got_any = got_any or bool(items)
                    if items:
                        said = yield items
                        known = known or said is not None
                        wrote = bool(said) or wrote
                    deadline = _earliest(alive if wrote else max(deadline, alive), end)
                items = parser.close()
                if items:
                    known = (yield items) is not None or known
                ctype = response.headers.get("content-type", "")
                # A body said to be a stream that held none of its events (empty, or
                # keep-alives only) is one that ended before it began: cut off.
                if not known and media_type(ctype) not in STREAM_TYPES:
                    ctype = self._scrub(ctype, 100) or "none"
                    raise NotAStream(
                        "The chat API's URL did not answer with a stream "
                        f"(HTTP {response.status_code}, Content-Type: {ctype}"
                        f"{'' if began else ', an empty body'}): check the backend's url "
                        "and kind, and any proxy or gateway between.",
                        backend=self.name,
                        status=response.status_code,
                    )
        except TimeoutError as exc:
            over = end is not None and loop.time() >= end
            which: Literal["first", "idle", "total"] = (
                "total" if over else "idle" if wrote else "first"
            )
            raise self._timed_out(which, wrote=wrote, quiet=loop.time() - heard) from exc
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeEncodeError) as exc:
            raise self._transport_error(exc) from exc

    async def _request_json(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        within: float | None = None,
    ) -> Any:
        """Send a request and return its JSON body (errors translated).

        `within`: seconds its answer may take once connected, for a request that
        is not waiting for the model (a poll); past them it raises TimedOut with
        a `detail` and logs nothing, the caller telling what came of it.
        """
        t = self.options.timeouts
        now = asyncio.get_running_loop().time()
        # The whole answer comes at once: it is its first byte and its end.
        limit = now + t.connect + (t.first_byte if within is None else within)
        which: Literal["first", "total"] = "first"
        end = answer_end(now, t.total)
        if end is not None and end < limit:
            limit, which = end, "total"
        try:
            async with (
                asyncio.timeout_at(limit),
                self.http.stream(
                    method,
                    with_params(url, params),
                    json=json,
                    headers={**self.auth_headers(), **(headers or {})},
                    timeout=self._timeout,
                ) as response,
            ):
                failed = response.status_code >= 300
                if failed:
                    content = await error_body(response, ERROR_BODY_BYTES)
                else:
                    content = await read_at_most(response, JSON_BODY_BYTES)
        except TimeoutError as exc:
            if within is None or which == "total":
                raise self._timed_out(which) from exc
            waited = t.connect + within
            error = TimedOut(
                f"The assistant did not answer within {waited:g} s; please try again.",
                backend=self.name,
            )
            error.detail = f"no answer within {waited:g} s"
            raise error from exc
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeEncodeError) as exc:
            raise self._transport_error(exc) from exc
        self.on_response(response)
        if failed:  # redirects are not followed: see _status_error
            raise self._status_error(response, content)
        if content is None:
            raise answer_too_large(self.name, response.status_code)
        try:
            return json_loads(content)
        except ValueError as exc:
            raise ProtocolError(
                "The assistant's answer could not be read (it was not JSON).",
                backend=self.name,
                status=response.status_code,
            ) from exc

    # ------------------------------------------------------------------ error mapping (_errors)

    def _status_error(self, response: httpx.Response, content: bytes | None) -> ChatAPIError:
        """The error an HTTP status of 300 or more means (see `status_error`)."""
        return status_error(
            response,
            content,
            backend=self.name,
            key=self._key,
            error_text=self.error_text,
            body_limit=ERROR_BODY_BYTES,
        )

    def _timed_out(
        self, which: Literal["first", "idle", "total"], *, wrote: bool = False, quiet: float = 0.0
    ) -> TimedOut:
        """TimedOut for the deadline that passed: first text, between reads, or overall
        (`wrote`: once the answer's text had begun; `quiet`: seconds since the last
        bytes came)."""
        return timed_out(which, self.options.timeouts, self.name, wrote=wrote, quiet=quiet)

    def _transport_error(self, exc: Exception) -> ChatAPIError:
        """The error an httpx error means (see `transport_error`)."""
        t = self.options.timeouts
        return transport_error(exc, backend=self.name, key=self._key, timeouts=t)

    def _scrub(self, text: str | None, limit: int = 300) -> str | None:
        """An API message made safe to show: no API key, bounded length."""
        return scrub(text, self._key, limit)


def answer_too_large(backend: str, status: int | None = None) -> ProtocolError:
    """The error for a whole JSON answer past `JSON_BODY_BYTES`, however it came."""
    return ProtocolError(
        "The assistant's answer was too large to read.", backend=backend, status=status
    )


def _earliest(deadline: float, end: float | None) -> float:
    return deadline if end is None else min(deadline, end)


# When the answer being asked for must end (event-loop time): `stream` sets it for
# its attempts, so `timeouts.total` bounds the answer, not each attempt.
_ANSWER_ENDS: ContextVar[float | None] = ContextVar("answer_ends", default=None)


def answer_end(now: float, total: float | None) -> float | None:
    """The end of a request begun `now`: `total` from now, or the answer's end."""
    ends = [end for end in (now + total if total else None, _ANSWER_ENDS.get()) if end]
    return min(ends) if ends else None
