"""Chat Ur Data: post a message to a thread, then poll the thread until its run ends.

`POST {url}/newMessage {message, thread_id?}` answers with the thread id (the
API assigns it on the first message; it is the conversation's session from
then on) and a run status. `GET {url}/getThread?threadId=…` is polled every
`poll_interval` seconds until `run_status.status` is `completed` (the answer
is the assistant message(s) after the question) or `expired` / `cancelled` /
`failed` (the error is shown). Messages are in the OpenAI assistants format;
text annotations become sources and their inline markers (【4:0†source】) are
removed. Polling gives up after `timeouts.total` (default 120 s).

`poll_interval` is validated to 1-10 s. Tests that need a faster pace set it
with `Options.model_copy(update={"poll_interval": 0.05})`, which skips
validation on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from adapters.apis._http import HTTPDialect, HTTPOptions, RequiredKey, Timeouts, answer_end
from adapters.apis._urls import under
from bridge.errors import (
    APIReportedError,
    BadRequest,
    ChatAPIError,
    CutOff,
    ProtocolError,
    RateLimited,
    Unavailable,
)
from bridge.interfaces import (
    ChatEvent,
    ChatRequest,
    Done,
    Session,
    Source,
    Sources,
    Status,
    Token,
)

log = logging.getLogger("adapters.apis")

# A citation marker holds a dagger (【4:0†source】); other 【…】 is the answer's own text.
_MARKER = re.compile(r"【[^】†]{0,80}†[^】]{0,80}】")
_FILE_NAME = re.compile(r"†([^】]+)】")
_FAILED = {"expired", "cancelled", "failed"}
NEW_THREAD = (
    "_(The assistant no longer had our earlier conversation, so this answer starts a new one.)_"
)
# The same, where the question's run in the new thread gives no answer.
LOST_THREAD = (
    "The assistant no longer had our earlier conversation, so this question began a new one."
)


class PollTimeouts(Timeouts):
    """Timeouts of each request, and `total`: how long to poll for one answer."""

    total: float | None = Field(120.0, gt=0)

    @field_validator("total")
    @classmethod
    def _required(cls, value: float | None) -> float | None:
        if value is None:
            raise ValueError("must be set: it bounds the polling (default 120)")
        return value


class ChatUrDataOptions(HTTPOptions):
    """`backends.<name>` with `kind: chaturdata`. `url` is the API base (…/api);
    the endpoints go under its path, before any query it has."""

    kind: Literal["chaturdata"] = "chaturdata"
    url: str = "https://www.chaturdata.com/api"
    api_key: RequiredKey
    poll_interval: float = Field(3.0, ge=1, le=10)
    timeouts: PollTimeouts = PollTimeouts()
    file_url: str | None = None
    """A link for file citations, with `{file_id}` in it; without it they give no source."""

    def warnings(self) -> list[str]:
        if self.poll_interval < 3:
            # Faster polling costs the account's rate limit, not the asker's wait.
            return [
                f"poll_interval {self.poll_interval:g} s is shorter than the 3-5 s Chat Ur "
                "Data recommends: each answer polls more often and counts against the "
                "account's rate limit"
            ]
        return []


class ChatUrData(HTTPDialect):
    """The Chat Ur Data threads API (stateful; the API assigns thread ids)."""

    kind: ClassVar[str] = "chaturdata"
    stateful: ClassVar[bool] = True
    streams: ClassVar[bool] = False
    client_sessions: ClassVar[bool] = False
    Options: ClassVar[type[ChatUrDataOptions]] = ChatUrDataOptions
    options: ChatUrDataOptions

    @property
    def probe_timeout(self) -> float:
        # The answer comes whole when its run ends, which may be `total` after the
        # question (polling is bounded by it).
        return max(super().probe_timeout, self.options.timeouts.total or 0.0)

    async def _attempt(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        opts = self.options
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The answer's end, its retries included (validated: `total` is always set).
        deadline = answer_end(started, opts.timeouts.total) or started

        body: dict[str, Any] = {"message": req.message}
        if req.session:
            body["thread_id"] = req.session
        session, note = req.session, ""
        try:
            posted = await self._request_json("POST", under(opts.url, "/newMessage"), json=body)
        except BadRequest as exc:
            if not session or exc.status != 404:
                raise
            # The thread is gone (deleted, or expired at the API): asking in it
            # would fail every time, so the question starts a new one, and says so.
            log.warning(
                "the stored thread was not found; starting a new one", extra={"backend": self.name}
            )
            session, note = None, NEW_THREAD + "\n\n"
            posted = await self._request_json(
                "POST", under(opts.url, "/newMessage"), json={"message": req.message}
            )
        # The API may leave the thread id out when adding to a thread it was given.
        thread = (posted.get("thread_id") if isinstance(posted, dict) else None) or session
        if not isinstance(thread, str) or not thread:
            raise ProtocolError(
                "The assistant's answer could not be read (no thread id in it).",
                backend=self.name,
            )
        if thread != session:
            # The question is in this thread now, whatever becomes of its run: the
            # next question goes on in it (a follow-up such as "did you finish?").
            yield Session(thread)
        try:
            async with aclosing(self._poll(thread, note, started, deadline)) as events:
                async for event in events:
                    yield event
        except ChatAPIError as exc:
            if note:
                # The new thread is kept, and the next question goes on in it unannounced:
                # the failure's notice is the asker's only word of the lost conversation.
                exc.user_message = f"{LOST_THREAD} {exc.user_message}"
            raise

    async def _poll(
        self, thread: str, note: str, started: float, deadline: float
    ) -> AsyncGenerator[ChatEvent, None]:
        """Poll `thread` until its run ends: its answer (after `note`), or an error."""
        opts = self.options
        poll = under(opts.url, "/getThread")
        loop = asyncio.get_running_loop()
        failed = 0  # polls that failed in a row: the first is a WARNING, the rest DEBUG
        while True:
            wait = min(opts.poll_interval, deadline - loop.time())
            if wait <= 0:
                raise self._timed_out("total")
            await asyncio.sleep(wait)
            try:
                async with asyncio.timeout_at(deadline):
                    # A poll is a small read, not the model thinking: one that hangs
                    # (a connection lost without a word) is given up after `idle`.
                    data = await self._request_json(
                        "GET",
                        poll,
                        params={"threadId": thread},
                        within=opts.timeouts.idle,
                    )
            except (Unavailable, ProtocolError) as exc:
                if loop.time() >= deadline:
                    raise  # the answer's own deadline: told where it passed
                # A failed or unreadable poll is retried by the next one: reading
                # the thread is harmless and the run goes on server-side.
                # (Its detail, where it has one, was not logged where it was made.)
                said = exc.detail or type(exc).__name__
                failed += 1
                (log.warning if failed == 1 else log.debug)(
                    "poll failed (%s)%s",
                    said,
                    "; polling on" if failed == 1 else "",
                    extra={"backend": self.name},
                )
                continue
            except BadRequest as exc:
                if exc.status != 404:
                    raise
                # The thread went (deleted, or expired at the API) while its run was
                # polled: the answer is lost, not the bridge misconfigured.
                raise CutOff(
                    "The assistant lost this conversation while answering; please ask again.",
                    backend=self.name,
                    status=404,
                ) from exc
            except RateLimited as exc:
                # Polled too often: the question is asked and its run goes on, so
                # wait as told (within the deadline) rather than ask again later.
                log.warning("poll rate limited", extra={"backend": self.name})
                if exc.retry_at is not None:
                    pause = exc.retry_at - time.time() - opts.poll_interval
                    await asyncio.sleep(max(0.0, min(pause, deadline - loop.time())))
                continue
            except TimeoutError:
                continue  # the loop's deadline check reports it
            if failed:
                log.info(
                    "polls answer again, after %d failed", failed, extra={"backend": self.name}
                )
                failed = 0
            status = _run_status(data)
            answer = _answer(data) if status in ("completed", None) else None
            if status == "completed" or answer is not None:
                text, sources = self._clean(*(answer or ("", [])))
                if not text:
                    raise ProtocolError(
                        "The assistant finished without an answer.", backend=self.name
                    )
                text = note + text
                yield Token(text)
                if sources:
                    yield Sources(tuple(sources))
                yield Done(text=text, session=thread)
                return
            if status in _FAILED:
                raise APIReportedError(
                    self._scrub(_run_error(data)) or f"the run {status}", backend=self.name
                )
            yield Status(f"Working… {round(loop.time() - started)} s")

    def _clean(self, text: str, annotations: list[dict[str, Any]]) -> tuple[str, list[Source]]:
        """Remove citation markers from the text; annotations become sources."""
        sources: list[Source] = []
        for note in annotations:
            marker = note.get("text")
            if isinstance(marker, str) and marker:
                text = text.replace(marker, "")
            source = self._source(note)
            if source is not None and source not in sources:
                sources.append(source)
        text = _MARKER.sub("", text)
        return re.sub(r"[ \t]+\n", "\n", text).strip(), sources

    def _source(self, note: dict[str, Any]) -> Source | None:
        kind = note.get("type")
        detail = note.get(kind) if isinstance(kind, str) else None
        if not isinstance(detail, dict):
            return None
        url = detail.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return Source(url, str(detail.get("title") or ""))
        file_id = detail.get("file_id")
        if self.options.file_url and isinstance(file_id, str) and file_id:
            # The marker names the file ("【4:0†guide.md】"); "source" names nothing.
            named = _FILE_NAME.search(str(note.get("text") or ""))
            title = named.group(1) if named and named.group(1) != "source" else file_id
            return Source(self.options.file_url.replace("{file_id}", file_id), title)
        return None


def _run_status(data: Any) -> str | None:
    run = data.get("run_status") if isinstance(data, dict) else None
    if isinstance(run, dict):
        run = run.get("status")
    return run if isinstance(run, str) else None


def _run_error(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    run = data.get("run_status")
    error = run.get("last_error") if isinstance(run, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    for key in ("error", "message"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return None


def _answer(data: Any) -> tuple[str, list[dict[str, Any]]] | None:
    """The assistant's text after the question, and its annotations (None: no answer yet)."""
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        return None
    messages = [m for m in messages if isinstance(m, dict)]
    if _newest_first(messages):
        messages.reverse()
    if any("role" in m for m in messages):
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        replies = [m for m in messages[last_user + 1 :] if m.get("role") == "assistant"]
    else:
        replies = [m for m in messages[-1:] if _text(m)[0]]
    texts: list[str] = []
    notes: list[dict[str, Any]] = []
    for message in replies:
        text, annotations = _text(message)
        if text:
            texts.append(text)
            notes.extend(annotations)
    return ("\n\n".join(texts), notes) if texts else None


def _newest_first(messages: list[dict[str, Any]]) -> bool:
    """The list's order: by created_at where it tells, else the API's default (newest first)."""
    stamps = [m.get("created_at") for m in messages]
    if len(stamps) > 1 and all(isinstance(s, int | float) for s in stamps):
        if stamps[0] != stamps[-1]:
            return bool(stamps[0] > stamps[-1])  # type: ignore[operator]
    return True


def _text(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    content = message.get("content")
    if isinstance(content, str):
        return content, []
    parts: list[str] = []
    notes: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict) or part.get("type") != "text":
            continue
        text = part.get("text")
        if isinstance(text, str):
            parts.append(text)
        elif isinstance(text, dict) and isinstance(text.get("value"), str):
            parts.append(text["value"])
            notes.extend(a for a in text.get("annotations") or () if isinstance(a, dict))
    return "\n".join(parts), notes
