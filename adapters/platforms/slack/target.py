"""Where a Slack reply goes: a thread, answered by posting and editing, or by a native stream.

Mode `update` posts a placeholder at once and edits it with mrkdwn text.
Mode `native` streams Markdown with chat.startStream / appendStream /
stopStream: an edit whose text extends what was sent appends the difference;
any other edit stops the stream and replaces the text with chat.update. If
Slack refuses to start a stream, the target falls back to `update` behaviour
(Markdown sent as `markdown_text`). Appends draw on their own budget
(`append_rate`); any other edit, a stream's too, on chat.update's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.errors import PlaceGone, PlatformError, PlatformUnreachable
from bridge.interfaces import Address, Limits, ReplyTarget, Source
from bridge.proxies import env_proxy

from .late import Body
from .lost import LOOK_AGAIN, find_lost, since, tag, timed_out, unanswered
from .mrkdwn import markdown_sources, markdown_to_mrkdwn, mrkdwn_sources, neutralize_markdown
from .reactions import Reaction
from .refusal import (
    CLOSING,
    SlackGone,
    SlackLockedOut,
    SlackRefused,
    SlackStopped,
    guard,
)
from .streams import Stream, stable_prefix

if TYPE_CHECKING:
    from .platform import SlackPlatform

log = logging.getLogger("chat_bridge.slack")

# Slack rejects chat.update text past this; markdown_text takes more.
TEXT_LIMIT = 4000
# Seconds a reply's end waits for a stream a stop cut while Slack started it to be
# stopped (by the platform, which waits longer: `STARTS_ON_CLOSE`).
START_ON_STOP = 2.0
MARKDOWN_LIMIT = 12000
# A native stream's message that is no longer streaming (Slack ended it, or a stop did).
_NOT_STREAMING = "message_not_in_streaming_state"
# Errors that mean this app or workspace cannot stream at all (not just here).
_NO_STREAMING = {"unknown_method", "missing_scope", "not_allowed_token_type", "feature_not_enabled"}


class _Recipient(TypedDict, total=False):
    """Whom a stream in a channel is for (chat.startStream); empty in DMs."""

    recipient_team_id: str
    recipient_user_id: str


# Methods whose success says the bot may post in the channel.
_POSTS = {"chat.postMessage", "chat.startStream"}


def _stopped(exc: PlatformError) -> bool:
    """Whether a stop that failed so may count as done: the stream ended already (Slack's
    own time limit, or this very stop, sent again when its answer was lost), or no answer
    came (a chat.update next closes a stream still open: see `SlackTarget._update`)."""
    refused = isinstance(exc, SlackRefused) and exc.error == _NOT_STREAMING
    return refused or (isinstance(exc, PlatformUnreachable) and unanswered(exc))


class SlackTarget(ReplyTarget):
    """A reply in a Slack conversation (a thread, or a DM's top level)."""

    # An event not acknowledged (a stop began) is sent again, to the next process.
    redelivered = True

    def __init__(
        self,
        platform: SlackPlatform,
        address: Address,
        *,
        question_ts: str | None = None,
        user: str | None = None,
        team: str | None = None,
        is_dm: bool = False,
        response_url: str | None = None,
    ) -> None:
        self.platform = platform
        self.address = address
        self.options = platform.options
        self.question_ts = question_ts
        self.user = user
        # The asker's team: another organisation's in a channel shared with it.
        self.team = team or address.workspace
        self.is_dm = is_dm
        self.response_url = response_url
        self.markdown = self.options.mode == "native"
        # Streams need a thread to live in, and (in channels) the asker to show them to.
        self._native = (
            self.markdown
            and platform.native_ok
            and address.thread is not None
            and (is_dm or user is not None)
        )
        self._streams: dict[str, Stream] = {}
        # Streams a stop cut while Slack started them, which the platform stops.
        self._starting: list[asyncio.Task[None]] = []
        # Messages with a chat.update that timed out, which Slack may make late.
        self._late: set[str] = set()
        self._indicator: asyncio.Task[None] | None = None
        self._status_on = False
        self._reaction_on = False
        self.limits = self._limits()
        self.deleted = False  # the question was deleted: not answered if not begun

    def _limits(self) -> Limits:
        """The budgets of streams started and appended to, or of messages posted where
        none streams, and of messages updated."""
        team, channel = self.address.workspace, self.address.channel
        if self._native:
            post_bucket, post_rate = f"slack:stream:{team}", self.options.stream_rate.rate()
        else:  # chat.postMessage, in native mode too where no stream can be started
            post_bucket, post_rate = f"slack:post:{team}:{channel}", self.options.post_rate.rate()
        # A stream a stopped process left open is settled within the streams' budget.
        # Its stop, as every chat.stopStream, draws on the stops' too (`StreamStops`):
        # stops of streams started apart may come together (answers ending at once).
        settle = self.markdown and self.address.thread is not None
        return Limits(
            max_chars=self.options.max_chars,
            edit_bucket=f"slack:update:{team}",
            edit_rate=self.options.update_rate.rate(),
            post_bucket=post_bucket,
            post_rate=post_rate,
            begin_posts=True,
            settle_bucket=f"slack:stream:{team}" if settle else None,
            settle_rate=self.options.stream_rate.rate() if settle else None,
            # chat.appendStream (Tier 4), not chat.update's budget (Tier 3). An edit
            # that replaces a stream's text (a status by the next, or by the answer)
            # is a chat.update (its stopStream within the stops' budget).
            append_bucket=f"slack:append:{team}" if self._native else None,
            append_rate=self.options.append_rate.rate() if self._native else None,
        )

    def appends(self, message_id: str, text: str) -> bool:
        stream = self._streams.get(message_id)
        return stream is not None and stream.open and stable_prefix(text).startswith(stream.sent)

    @property
    def client(self) -> AsyncWebClient:
        return self.platform.client

    # ------------------------------------------------------------------ the reply

    async def _guard(self, method: str, call: Awaitable[Any]) -> Any:
        workspace, channel = self.address.workspace, self.address.channel
        try:
            resp = await guard(method, call, self.platform.gate.lock_out)
        except SlackGone as exc:
            if exc.error in CLOSING:  # the channel, not just this reply's message
                self.platform.closed.close(workspace, channel, exc.error)
            raise
        if method in _POSTS:
            self.platform.closed.opened(workspace, channel)
            self.platform.posted.add(channel, str(resp["ts"]))
        return resp

    async def _once(
        self, method: str, send: Callable[[], Awaitable[Any]], nonce: str | None = None
    ) -> Any:
        """Make `send()`, a call that posts a message (through `platform.once`), and its
        answer; if that answer was lost, the message Slack posted all the same
        (`{"ts": …}`: the one tagged `nonce`, or a stream: see `lost`), and only if there
        is none for certain, `send()` again.

        A stream that may be this one but is not surely is not taken: taken wrongly,
        another answer's message would be overwritten. It is then started again at once
        rather than this start failed: failed, the renderer would only start a new one
        later (the answer's first words shown late), and a stream Slack did start would
        be left empty, "being written" until Slack's own time limit, all the same."""
        platform = self.platform
        channel, thread = self.address.channel, self.address.thread
        with platform.posted.sending((channel, thread)):
            sent_at = time.time()
            try:
                return await self._guard(method, send())
            except PlatformUnreachable as exc:
                if not unanswered(exc):
                    raise
                lost = exc
            try:
                for wait in (0.0, *(LOOK_AGAIN if timed_out(lost) else ())):
                    await asyncio.sleep(wait)
                    ts = await find_lost(
                        platform.client,
                        self._guard,
                        platform.posted,
                        (platform.bot_user_id, platform.bot_id),
                        (channel, thread),
                        since(sent_at, self.question_ts),
                        nonce,
                    )
                    if ts is not None:
                        break
            except PlatformError:
                # Whether it was posted is unknown: sent again, it might show twice.
                raise lost from lost.__cause__
            if ts is None:
                log.info(
                    "slack: %s's answer was lost, and Slack had not surely taken it: sent again",
                    method,
                )
                return await self._guard(method, send())
            log.info("slack: %s's answer was lost; its message is found in %s", method, channel)
            platform.posted.add(channel, ts)
            return {"ts": ts}

    def withdrawn(self) -> bool:
        # A question still waiting when Slack refused the bot its channel, or its token
        # (a scope taken away, the token revoked): its answer could not be shown, and
        # asking the chat API would cost a request.
        return (
            self.deleted
            or self.platform.gate.refused is not None
            or self.platform.closed.closed(self.address.workspace, self.address.channel)
        )

    def accepted(self) -> None:
        # A question waiting its turn (behind another of its conversation, or for
        # a free stream) shows at once that it was taken.
        self._think()

    def _think(self) -> None:
        if self.options.thinking != "none" and self._indicator is None:
            if not (self._reaction_on or self._status_on):
                self._indicator = asyncio.create_task(self._thinking_on(), name="slack-thinking")

    async def begin(self, text: str | None = None) -> str | None:
        self._think()
        if self._native:
            # Refused, no placeholder: it would be posted within the streams' budget
            # the renderer took for this call, not the channel's (Slack's 1 a second).
            # The answer's first words are posted within the channel's.
            return await self._start_stream(text or "")
        return await self._post(text or self.format_markdown(self.platform.placeholder))

    async def post(self, text: str) -> str:
        if self._native:
            await self._stop_streams()
            ts = await self._start_stream(text)
            if ts is not None:
                return ts
        return await self._post(text)

    async def edit(self, message_id: str, text: str) -> None:
        stream = self._streams.get(message_id)
        if stream is not None and stream.open:
            stream.full = text
            stable = stable_prefix(text)
            if stable.startswith(stream.sent):
                delta = stable[len(stream.sent) :]
                if delta:
                    try:
                        await self._guard(
                            "chat.appendStream",
                            self.platform.once.chat_appendStream(
                                channel=self.address.channel, ts=message_id, markdown_text=delta
                            ),
                        )
                    except SlackRefused as exc:
                        # Slack answered: nothing was appended.
                        if exc.error == "stopped_by_user":
                            # The person pressed Stop: the answer ends here, as shown.
                            stream.open = False
                            raise SlackStopped("chat.appendStream", exc.error) from exc
                        if exc.error != _NOT_STREAMING:
                            raise
                        # The stream ended without us (Slack's own time limit): the
                        # message takes the whole text as any other does.
                        stream.open = False
                        await self._update(message_id, text)
                        return
                    except PlatformError:
                        # No answer: Slack may have appended it, and sent again it would
                        # show twice. The stream ends; the retried edit sends the whole
                        # text by chat.update, which is safe to repeat.
                        with contextlib.suppress(PlatformError):
                            await self._stop(message_id, stream, flush=False)
                        raise
                    stream.sent = stable
                return
            # The text changed behind what was streamed: make it a plain message.
            await self._stop(message_id, stream, flush=False)
        await self._update(message_id, text)

    async def end(self) -> None:
        try:
            await self._stop_streams()
            if self._starting:  # a start that lands quickly is stopped before the end
                await asyncio.wait(self._starting, timeout=START_ON_STOP)
        finally:  # the question's "thinking" goes, whatever became of the streams
            # Its last texts shown again over an edit Slack may make late (`late`).
            for ts in self._late:
                self.platform.late.ended(
                    self.address.channel, ts, self.limits.edit_bucket, self.limits.edit_rate
                )
            self._late.clear()
            await self._thinking_off()

    async def notice(self, text: str) -> None:
        try:
            await self._notice(text)
        finally:  # a question taken and then refused (a backend found down) is done
            await self._thinking_off()

    async def _notice(self, text: str) -> None:
        body = markdown_to_mrkdwn(text)
        channel, thread = self.address.channel, self.address.thread
        if self.response_url:
            payload = {"response_type": "ephemeral", "text": body}
            try:
                post = self.platform.session.post(
                    self.response_url, json=payload, proxy=env_proxy(self.response_url)
                )
                async with post as resp:
                    if resp.status < 300:
                        return
                    log.warning("slack: response_url answered %s", resp.status)
            except TimeoutError:  # the session's total timeout (`slack.timeout`)
                log.warning("slack: response_url did not answer in time")
            except aiohttp.ClientError:
                log.warning("slack: response_url unreachable")
        if self.user:
            await self._guard(
                "chat.postEphemeral",
                self.client.chat_postEphemeral(
                    channel=channel, user=self.user, text=body, thread_ts=thread
                ),
            )
            return
        await self._guard(
            "chat.postMessage",
            # Tagged as every post is: never taken for a stream whose answer was lost.
            self.client.chat_postMessage(
                channel=channel, thread_ts=thread, text=body, metadata=tag()[1]
            ),
        )

    def format_markdown(self, markdown: str) -> str:
        if self.markdown:
            return neutralize_markdown(markdown)
        return markdown_to_mrkdwn(markdown)

    def format_sources(self, sources: Sequence[Source]) -> str:
        if self.markdown:
            return markdown_sources(sources)
        return mrkdwn_sources(sources)

    # ------------------------------------------------------------------ messages

    def _body(self, text: str) -> Body:
        if self.markdown:
            return {"markdown_text": text[:MARKDOWN_LIMIT]}
        if len(text) > TEXT_LIMIT:
            text = text[: TEXT_LIMIT - 1] + "…"
        return {"text": text}

    async def _post(self, text: str) -> str:
        nonce, metadata = tag()  # by which it is found if its answer is lost
        resp = await self._once(
            "chat.postMessage",
            lambda: self.platform.once.chat_postMessage(
                channel=self.address.channel,
                thread_ts=self.address.thread,
                unfurl_links=False,
                unfurl_media=False,
                metadata=metadata,
                **self._body(text),
            ),
            nonce,
        )
        return str(resp["ts"])

    async def _update(self, message_id: str, text: str) -> None:
        body = self._body(text)
        try:
            await self._chat_update(message_id, body)
        except SlackRefused as exc:
            if exc.error != "streaming_state_conflict":
                raise
            # A stream left open (by an earlier process): close it, then edit.
            await self._stop_call(message_id)
            await self._chat_update(message_id, body)

    async def _chat_update(self, ts: str, body: Body) -> None:
        """chat.update; one that timed out may still be made, after later ones (`late`)."""
        channel, late = self.address.channel, self.platform.late
        sent = time.monotonic()
        try:
            await self._guard(
                "chat.update", self.client.chat_update(channel=channel, ts=ts, **body)
            )
        except PlatformUnreachable as exc:
            if timed_out(exc):
                late.timed_out(channel, ts, body, sent)
                self._late.add(ts)
            raise
        late.landed(channel, ts, body, sent)

    # ------------------------------------------------------------------ native streams

    async def _start_stream(self, text: str) -> str | None:
        """Start a stream showing `text`; None (and fall back) if Slack refuses."""
        stable = stable_prefix(text)
        recipient: _Recipient = {}
        if not self.is_dm and self.user:
            recipient = {"recipient_team_id": self.team, "recipient_user_id": self.user}
        call = asyncio.ensure_future(
            self._once(
                "chat.startStream",
                lambda: self.platform.once.chat_startStream(
                    channel=self.address.channel,
                    thread_ts=self.address.thread or "",
                    markdown_text=stable or None,
                    **recipient,
                ),
            )
        )
        try:
            resp = await asyncio.shield(call)
        except asyncio.CancelledError:
            # A stop while Slack starts the stream: it is started all the same, and
            # lost, it would show as being written until Slack's own time limit. The
            # platform waits for it, not this cancelled reply, and stops it.
            self._starting.append(self.platform.stops.when_started(call, self.address))
            raise
        except SlackRefused as exc:
            if isinstance(exc, PlaceGone):
                raise
            self._native = False
            self.limits = self._limits()  # posted, not streamed: at the channel's pace
            if exc.error in _NO_STREAMING:
                self.platform.native_ok = False
            log.warning("slack: streaming refused (%s); answering with chat.update", exc.error)
            return None
        ts = str(resp["ts"])
        self._streams[ts] = Stream(sent=stable, full=text)
        return ts

    async def _stop(self, ts: str, stream: Stream, *, flush: bool = True) -> None:
        stream.open = False
        rest: str | None = None
        if flush and stream.full.startswith(stream.sent):
            rest = stream.full[len(stream.sent) :] or None
        try:
            await self._stop_call(ts, rest)
        except PlatformError as exc:
            if isinstance(exc, PlaceGone):
                raise
            if not (flush and stream.full):
                if _stopped(exc):  # the text replaced next, by chat.update
                    return
                raise
            # Stopped already (by Slack, or by this very call, sent again when its
            # answer was lost), refused, or not answered: whether `rest` shows is
            # unknown. chat.update shows the whole text, closing a stream still open
            # (see `_update`), and is safe to repeat.
            await self._update(ts, stream.full)
            return
        if flush and rest is None and stream.full != stream.sent and stream.full:
            await self._update(ts, stream.full)

    async def _stop_call(self, ts: str, rest: str | None = None) -> None:
        """chat.stopStream, adding `rest`, within the workspace's budget for stops."""
        stop = self.client.chat_stopStream
        channel = self.address.channel
        await self.platform.stops.within(
            self.address.workspace,
            lambda: self._guard(
                "chat.stopStream", stop(channel=channel, ts=ts, markdown_text=rest)
            ),
        )

    async def _stop_streams(self) -> None:
        for ts, stream in list(self._streams.items()):
            if stream.open:
                await self._stop(ts, stream)

    async def settle(self, message_id: str) -> None:
        stream = self._streams.get(message_id)
        if stream is not None:  # this target's own stream: stopped with all its text
            if stream.open:
                await self._stop(message_id, stream)
            return
        if not self.limits.settle_bucket:
            return  # mode update, and top-level DMs, stream nothing
        # A stream an earlier process started, perhaps still open: Slack shows it as
        # being written until its own time limit.
        try:
            await self._stop_call(message_id)
        except SlackRefused as exc:
            if isinstance(exc, SlackLockedOut) or exc.error in CLOSING:
                raise  # nothing can be posted there either
            # Not streaming (ended already, or never a stream), or deleted: nothing is
            # left to settle, and the mark goes on.
            log.debug("slack: no stream to stop (%s)", exc.error)

    # ------------------------------------------------------------------ "thinking"

    def _assistant_thread(self) -> bool:
        return self.is_dm and self.address.thread is not None

    async def _thinking_on(self) -> None:
        mode = self.options.thinking
        if mode == "status" or (mode == "auto" and self._assistant_thread()):
            if self.address.thread is not None and await self._set_status("is thinking…"):
                self._status_on = True
                return
        if mode in ("auto", "reaction") and self.question_ts:
            self._reaction_on = await self.platform.reactions.add(self._reaction())

    def _reaction(self) -> Reaction:
        return Reaction(
            self.address.workspace,
            self.address.channel,
            self.question_ts or "",
            self.options.thinking_reaction,
        )

    async def _indicator_sent(self) -> None:
        """Wait for the "thinking" indicator's request, if it is still on its way."""
        if self._indicator is not None:
            await self._indicator
            self._indicator = None

    async def _thinking_off(self) -> None:
        await self._indicator_sent()
        if self._reaction_on:
            self._reaction_on = False
            # In the background, within Slack's limit for removals: never waited for.
            self.platform.reactions.remove(self._reaction())
        if self._status_on:
            self._status_on = False
            await self._set_status("")

    async def _set_status(self, status: str) -> bool:
        """Best effort: the assistant "is thinking…" line; False if Slack refused."""
        if self.address.thread is None:
            return False
        try:
            await self.platform.decor.assistant_threads_setStatus(
                channel_id=self.address.channel, thread_ts=self.address.thread, status=status
            )
            return True
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("slack: status not set: %s", type(exc).__name__)
            return False
