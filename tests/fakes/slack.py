"""A fake Slack: the Web API, Socket Mode, and signed HTTP event delivery.

It speaks the real wire format (slack-sdk and slack-bolt run against it
unmodified) and enforces the limits that matter to a streaming bot:
chat.update text past 4,000 characters is `msg_too_long` (as is a markdown_text
past 12,000 in any method, the stream methods' included), and methods given a
rate answer 429 with `Retry-After`: by default the methods a reply calls, at
Slack's tiers (chat.update, the stream methods and reactions per workspace,
chat.postMessage per channel). Every message is kept as a channel history, so
tests assert what a person would finally see.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import re
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

TEXT_LIMIT = 4000
POST_TEXT_LIMIT = 40000
MARKDOWN_LIMIT = 12000

_PING = re.compile(
    r"<!(channel|here|everyone)(?:\|[^>]*)?>|<!subteam\^[^>]+>|<@([UW][A-Z0-9]+)(?:\|[^>]*)?>"
)
_PLAIN_PING = re.compile(r"(?<![\w@])@(channel|here|everyone)\b")


def pings_in(text: str, *, plain: bool = True) -> list[str]:
    """What a message would notify: `<!here>` markup, and plain @here where Slack links names."""
    found = [m.group(0) for m in _PING.finditer(text)]
    if plain:
        found += [m.group(0) for m in _PLAIN_PING.finditer(text)]
    return found


@dataclass
class FakeMessage:
    """A message in a channel's history."""

    channel: str
    ts: str
    text: str
    user: str
    bot_id: str | None = None
    thread_ts: str | None = None
    markdown: bool = False
    streaming: bool = False
    versions: list[str] = field(default_factory=list)
    recipient_user_id: str | None = None
    # chat.postMessage's `metadata` (event_type, event_payload), listed only when asked
    metadata: dict[str, Any] | None = None

    @property
    def edits(self) -> int:
        return len(self.versions) - 1


@dataclass
class RateRule:
    """At most `count` calls in any `per`-second window, counted per `scope`."""

    count: int
    per: float
    scope: Literal["team", "channel"] = "team"
    stamps: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def check(self, key: str, now: float) -> float:
        """0 if allowed (and counted), else the seconds until a slot frees."""
        window = self.stamps[key]
        while window and window[0] <= now - self.per:
            window.popleft()
        if len(window) >= self.count:
            return window[0] + self.per - now
        window.append(now)
        return 0.0


class FakeSlack:
    """One workspace with one installed app; see the module docstring."""

    def __init__(
        self,
        *,
        team_id: str = "T0TEAM001",
        bot_user_id: str = "U0BOT0001",
        bot_id: str = "B0BOT0001",
    ) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = "A0APP0001"
        self.bot_token = "xoxb-fake-bot-token"
        self.app_token = "xapp-fake-app-token"
        self.signing_secret = "fake-signing-secret"
        self.channels: dict[str, str] = {}
        # Channels shared with another organisation (Slack Connect): events there say
        # `is_ext_shared_channel`, and Slack's descriptions `is_ext_shared`.
        self.shared: set[str] = set()
        # Channels the bot is not a member of: chat.* methods there are refused
        # not_in_channel, until `invite_bot`.
        self.outside: set[str] = set()
        self.messages: dict[str, list[FakeMessage]] = defaultdict(list)
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.reactions: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.statuses: list[dict[str, Any]] = []
        # method -> seconds each of its next calls takes before it is handled (carried
        # out, then answered: past the client's timeout, to no one)
        self.slow: dict[str, list[float]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pings: list[tuple[str, str, str]] = []
        self.rejected: Counter[str] = Counter()  # (method, error) -> count of ok:false answers
        self.rate_limited: Counter[str] = Counter()  # method -> 429s sent
        # Slack's tiers for the methods a reply calls (Tier 2 20, Tier 3 50, Tier 4
        # 100 a minute per workspace); `set_rate` changes one (a shorter window).
        self.rates: dict[str, RateRule] = {
            "chat.update": RateRule(50, 60.0, "team"),
            "chat.postMessage": RateRule(1, 1.0, "channel"),
            "chat.startStream": RateRule(20, 60.0, "team"),
            "chat.appendStream": RateRule(100, 60.0, "team"),
            "chat.stopStream": RateRule(20, 60.0, "team"),
            "reactions.add": RateRule(50, 60.0, "team"),
            "reactions.remove": RateRule(20, 60.0, "team"),
        }
        self.stream_error: str | None = None  # make chat.startStream refuse with this error
        # method -> errors its next calls answer with (ok: false), one per call
        self.fail: dict[str, list[str]] = {}
        # method -> HTTP statuses its next calls answer with, one per call, with a page
        # that is not JSON (an outage's, a proxy's 502)
        self.unavailable: dict[str, list[int]] = {}
        # The bot token's scopes (the manifest's), told in X-OAuth-Scopes on every
        # answer; a chat.* method without chat:write is refused missing_scope, as are
        # a reactions.* one without reactions:write and conversations.info without
        # the :read scope of the channel's type.
        self.scopes = {"app_mentions:read", "channels:history", "groups:history",
                       "im:history", "mpim:history", "channels:read", "groups:read",
                       "mpim:read", "chat:write", "commands", "reactions:write"}
        # method -> its next calls are carried out, then the connection closes unanswered
        self.lose_answer: Counter[str] = Counter()
        # method -> its next calls are dropped: the connection closes, nothing carried out
        self.drop: Counter[str] = Counter()
        # method -> seconds each of its next calls' answer takes once it is carried out
        # (`slow`: before it is)
        self.slow_answer: dict[str, list[float]] = {}
        self.acks: dict[str, dict[str, Any] | None] = {}
        self.connections = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._ts = itertools.count(1)
        self._ts_seconds = 0
        self._event_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = 0
        # The host its URLs name (it serves on 127.0.0.1): a `.test` one for a
        # Slack reached through `FakeProxy`, as the daemon goes direct to loopback.
        self.host = "127.0.0.1"

    # ------------------------------------------------------------------ lifecycle

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL (`slack.api_url`)."""
        return f"{self.base}/api/"

    async def start(self, port: int = 0) -> None:
        """Serve on `port` (a free one if 0; the one it had, to come back after `stop`)."""
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack-sdk GETs a few (conversations.info)
        app.router.add_get("/socket-mode", self._socket)
        app.router.add_post("/commands/response/{n}", self._response_url)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._client = aiohttp.ClientSession()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def set_rate(
        self, method: str, count: int, per: float, scope: Literal["team", "channel"] | None = None
    ) -> None:
        """Limit `method` to `count` calls per `per` seconds (scope defaults to the method's)."""
        old = self.rates.get(method)
        self.rates[method] = RateRule(count, per, scope or (old.scope if old else "team"))

    # ------------------------------------------------------------------ views

    def channel_type(self, channel: str) -> str:
        if channel in self.channels:
            return self.channels[channel]
        return {"D": "im", "G": "group"}.get(channel[:1], "channel")

    def find(self, channel: str, ts: str) -> FakeMessage | None:
        for message in self.messages.get(channel, []):
            if message.ts == ts:
                return message
        return None

    def thread(self, channel: str, root: str) -> list[FakeMessage]:
        """The root message and its replies, oldest first."""
        return [m for m in self.messages.get(channel, []) if m.ts == root or m.thread_ts == root]

    def bot_replies(self, channel: str, root: str | None = None) -> list[FakeMessage]:
        """Messages the bot posted (in one thread, or anywhere in the channel)."""
        return [
            m
            for m in self.messages.get(channel, [])
            if m.user == self.bot_user_id and (root is None or m.thread_ts == root)
        ]

    def all_bot_messages(self) -> list[FakeMessage]:
        return [m for msgs in self.messages.values() for m in msgs if m.user == self.bot_user_id]

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every change); returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError("timed out waiting for the fake Slack")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def _touch(self) -> None:
        self._changed.set()

    # ------------------------------------------------------------------ Web API

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        self.calls.append((method, args))
        self._touch()
        delays = self.slow.get(method)
        if delays:  # this call takes its time, as a busy Slack's would
            await asyncio.sleep(delays.pop(0))
        statuses = self.unavailable.get(method)
        if statuses:
            return web.Response(status=statuses.pop(0), text="Slack is having trouble")
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or str(args.get("token", ""))
        if method == "apps.connections.open":
            if token != self.app_token:
                return self._error(method, "invalid_auth")
            self.connections += 1
            ticket = uuid.uuid4().hex
            return self._ok({"url": f"ws://{self.host}:{self.port}/socket-mode?ticket={ticket}"})
        if token != self.bot_token:
            return self._error(method, "not_authed" if not token else "invalid_auth")
        failing = self.fail.get(method)
        if failing:
            return self._error(method, failing.pop(0))
        if method.startswith("chat.") and args.get("channel") in self.outside:
            return self._error(method, "not_in_channel")
        family = method.split(".", 1)[0]
        if family in ("chat", "reactions") and f"{family}:write" not in self.scopes:
            return self._no_scope(method, f"{family}:write")
        rule = self.rates.get(method)
        if rule is not None:
            key = self.team_id if rule.scope == "team" else f"{self.team_id}:{args.get('channel')}"
            wait = rule.check(key, time.monotonic())
            if wait > 0:
                self.rate_limited[method] += 1
                self._touch()
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._error(method, "unknown_method")
        if self.drop[method] > 0:
            self.drop[method] -= 1
            if request.transport is not None:  # None: the client stopped waiting already
                request.transport.close()
            return web.Response(status=503)  # never sent: the connection is gone
        result: web.Response = handler(method, args)
        self._touch()
        lags = self.slow_answer.get(method)
        if lags:
            await asyncio.sleep(lags.pop(0))
        if self.lose_answer[method] > 0:
            self.lose_answer[method] -= 1
            assert request.transport is not None
            request.transport.close()  # done, but the client never hears of it
        return result

    def _ok(self, data: dict[str, Any] | None = None) -> web.Response:
        return web.json_response(
            {"ok": True, **(data or {})},
            headers={"X-OAuth-Scopes": ",".join(sorted(self.scopes))},
        )

    def _error(self, method: str, error: str) -> web.Response:
        self.rejected[f"{method}:{error}"] += 1
        return web.json_response({"ok": False, "error": error})

    def _no_scope(self, method: str, needed: str) -> web.Response:
        # Slack names the scopes the method needs and those the token has.
        self.rejected[f"{method}:missing_scope"] += 1
        return web.json_response({"ok": False, "error": "missing_scope", "needed": needed,
                                  "provided": ",".join(sorted(self.scopes))})

    def _next_ts(self) -> str:
        # Slack's ts is the message's time: seconds, then a sequence within them.
        self._ts_seconds = max(self._ts_seconds, int(time.time()))
        return f"{self._ts_seconds}.{next(self._ts):06d}"

    def _m_auth_test(self, method: str, args: dict[str, Any]) -> web.Response:
        return self._ok(
            {
                "url": "https://fake.slack.test/",
                "team": "Fake Team",
                "user": "chat-bridge",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        )

    def _body_of(self, method: str, args: dict[str, Any], limit: int) -> tuple[str, bool] | str:
        """(text, is_markdown), or an error code."""
        text, markdown = args.get("text"), args.get("markdown_text")
        if markdown is not None and text is not None:
            return "markdown_text_conflict"
        if markdown is not None:
            if len(markdown) > MARKDOWN_LIMIT:
                return "msg_too_long"
            return str(markdown), True
        if not text and not args.get("blocks"):
            return "no_text"
        if len(text or "") > limit:
            return "msg_too_long"
        return str(text or ""), False

    def _record_pings(self, message: FakeMessage, args: dict[str, Any]) -> None:
        link_names = str(args.get("link_names", "")).lower() in ("1", "true")
        linked = link_names or args.get("parse") == "full"
        for ping in pings_in(message.text, plain=linked or message.markdown):
            self.pings.append((message.channel, message.ts, ping))

    def _m_chat_postMessage(self, method: str, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel", ""))
        if not channel:
            return self._error(method, "channel_not_found")
        body = self._body_of(method, args, POST_TEXT_LIMIT)
        if isinstance(body, str):
            return self._error(method, body)
        thread_ts = args.get("thread_ts") or None
        if thread_ts and self.find(channel, thread_ts) is None:
            return self._error(method, "thread_not_found")
        message = FakeMessage(
            channel, self._next_ts(), body[0], self.bot_user_id, self.bot_id, thread_ts, body[1]
        )
        metadata = args.get("metadata")
        message.metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        message.versions.append(message.text)
        self.messages[channel].append(message)
        self._record_pings(message, args)
        return self._ok({"channel": channel, "ts": message.ts, "message": {"text": message.text}})

    def _m_chat_update(self, method: str, args: dict[str, Any]) -> web.Response:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        message = self.find(channel, ts)
        if message is None:
            return self._error(method, "message_not_found")
        if message.user != self.bot_user_id:
            return self._error(method, "cant_update_message")
        if message.streaming:
            return self._error(method, "streaming_state_conflict")
        body = self._body_of(method, args, TEXT_LIMIT)
        if isinstance(body, str):
            return self._error(method, body)
        message.text, message.markdown = body
        message.versions.append(message.text)
        self._record_pings(message, args)
        return self._ok({"channel": channel, "ts": ts, "text": message.text})

    def _m_chat_postEphemeral(self, method: str, args: dict[str, Any]) -> web.Response:
        body = self._body_of(method, args, POST_TEXT_LIMIT)
        if isinstance(body, str):
            return self._error(method, body)
        if not args.get("user"):
            return self._error(method, "user_not_in_channel")
        self.ephemerals.append(dict(args))
        return self._ok({"message_ts": self._next_ts()})

    def _m_chat_startStream(self, method: str, args: dict[str, Any]) -> web.Response:
        if self.stream_error:
            return self._error(method, self.stream_error)
        channel, thread_ts = str(args.get("channel", "")), args.get("thread_ts")
        if not channel or not thread_ts:
            return self._error(method, "invalid_arguments")
        if self.channel_type(channel) != "im":
            if not args.get("recipient_team_id"):
                return self._error(method, "missing_recipient_team_id")
            if not args.get("recipient_user_id"):
                return self._error(method, "missing_recipient_user_id")
        if self.find(channel, thread_ts) is None:
            return self._error(method, "thread_not_found")
        text = str(args.get("markdown_text") or "")
        if len(text) > MARKDOWN_LIMIT:
            return self._error(method, "msg_too_long")
        message = FakeMessage(
            channel, self._next_ts(), text, self.bot_user_id, self.bot_id, thread_ts, True, True
        )
        message.recipient_user_id = args.get("recipient_user_id")
        message.versions.append(text)
        self.messages[channel].append(message)
        return self._ok({"channel": channel, "ts": message.ts})

    def _stream_target(self, method: str, args: dict[str, Any]) -> FakeMessage | web.Response:
        message = self.find(str(args.get("channel", "")), str(args.get("ts", "")))
        if message is None:
            return self._error(method, "message_not_found")
        if not message.streaming:
            return self._error(method, "message_not_in_streaming_state")
        return message

    def _m_chat_appendStream(self, method: str, args: dict[str, Any]) -> web.Response:
        message = self._stream_target(method, args)
        if isinstance(message, web.Response):
            return message
        chunk = str(args.get("markdown_text") or "")
        if not chunk:
            return self._error(method, "no_text")
        if len(chunk) > MARKDOWN_LIMIT:  # each call's markdown_text, as with the others
            return self._error(method, "msg_too_long")
        message.text += chunk
        message.versions.append(message.text)
        self._record_pings(message, args)
        return self._ok({"channel": message.channel, "ts": message.ts})

    def _m_chat_stopStream(self, method: str, args: dict[str, Any]) -> web.Response:
        message = self._stream_target(method, args)
        if isinstance(message, web.Response):
            return message
        last = str(args.get("markdown_text") or "")
        if len(last) > MARKDOWN_LIMIT:
            return self._error(method, "msg_too_long")
        message.text += last
        message.streaming = False
        message.versions.append(message.text)
        self._record_pings(message, args)
        return self._ok({"channel": message.channel, "ts": message.ts})

    def _m_reactions_add(self, method: str, args: dict[str, Any]) -> web.Response:
        key = (str(args.get("channel")), str(args.get("timestamp")))
        if self.find(*key) is None:
            return self._error(method, "message_not_found")
        if args.get("name") in self.reactions[key]:
            return self._error(method, "already_reacted")
        self.reactions[key].add(str(args.get("name")))
        return self._ok()

    def _m_reactions_remove(self, method: str, args: dict[str, Any]) -> web.Response:
        key = (str(args.get("channel")), str(args.get("timestamp")))
        if args.get("name") not in self.reactions.get(key, set()):
            return self._error(method, "no_reaction")
        self.reactions[key].discard(str(args.get("name")))
        return self._ok()

    def _m_assistant_threads_setStatus(self, method: str, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel_id", ""))
        if self.channel_type(channel) != "im":
            return self._error(method, "not_allowed")
        self.statuses.append(dict(args))
        return self._ok()

    def _m_users_conversations(self, method: str, args: dict[str, Any]) -> web.Response:
        # The channels the fake was told of (`channels`), paged by `limit` and `cursor`.
        if not {"channels:read", "groups:read", "mpim:read"} <= self.scopes:
            return self._no_scope(method, "channels:read,groups:read,mpim:read")
        listed = [c for c, kind in self.channels.items() if kind != "im"]
        start = int(str(args.get("cursor") or 0))
        limit = int(str(args.get("limit") or 100))
        page = listed[start : start + limit]
        more = start + limit < len(listed)
        kinds = {c: self.channels[c] for c in page}
        return self._ok({
            "channels": [
                {"id": c, "is_channel": k == "channel", "is_group": k == "group",
                 "is_mpim": k == "mpim", "is_im": False, "is_private": k != "channel",
                 "is_ext_shared": c in self.shared}
                for c, k in kinds.items()
            ],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        })

    def _history_scope(self, channel: str) -> str:
        kind = self.channel_type(channel)
        return {"channel": "channels", "group": "groups"}.get(kind, kind) + ":history"

    @staticmethod
    def _listed(message: FakeMessage, args: dict[str, Any]) -> dict[str, Any]:
        """A message as conversations.history and .replies list it: its metadata only
        with `include_all_metadata`."""
        listed: dict[str, Any] = {"type": "message", "ts": message.ts, "user": message.user,
                                  "text": message.text}
        if message.bot_id:
            listed["bot_id"] = message.bot_id
        if message.thread_ts:
            listed["thread_ts"] = message.thread_ts
        all_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        if message.metadata and all_metadata:
            listed["metadata"] = message.metadata
        return listed

    def _m_conversations_replies(self, method: str, args: dict[str, Any]) -> web.Response:
        # The thread's first message, then its replies after `oldest`, oldest first.
        channel, root = str(args.get("channel", "")), str(args.get("ts", ""))
        if self._history_scope(channel) not in self.scopes:
            return self._no_scope(method, self._history_scope(channel))
        parent = self.find(channel, root)
        if parent is None:
            return self._error(method, "thread_not_found")
        oldest = float(str(args.get("oldest") or 0))
        limit = int(str(args.get("limit") or 1000))
        replies = [m for m in self.thread(channel, root) if m.ts != root and float(m.ts) > oldest]
        return self._ok({
            "messages": [self._listed(m, args) for m in [parent, *replies[: max(0, limit - 1)]]],
            "has_more": len(replies) > limit - 1,
        })

    def _m_conversations_history(self, method: str, args: dict[str, Any]) -> web.Response:
        # The channel's own messages (no thread's replies) after `oldest`, newest first.
        channel = str(args.get("channel", ""))
        if self._history_scope(channel) not in self.scopes:
            return self._no_scope(method, self._history_scope(channel))
        oldest = float(str(args.get("oldest") or 0))
        limit = int(str(args.get("limit") or 100))
        found = [m for m in reversed(self.messages.get(channel, []))
                 if m.thread_ts in (None, m.ts) and float(m.ts) > oldest]
        return self._ok({
            "messages": [self._listed(m, args) for m in found[:limit]],
            "has_more": len(found) > limit,
        })

    def _m_conversations_info(self, method: str, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel", ""))
        kind = self.channel_type(channel)
        needs = {"channel": "channels", "group": "groups"}.get(kind, kind) + ":read"
        if needs not in self.scopes:
            return self._no_scope(method, needs)
        return self._ok(
            {
                "channel": {
                    "id": channel,
                    "is_channel": kind == "channel",
                    "is_group": kind == "group",
                    "is_im": kind == "im",
                    "is_mpim": kind == "mpim",
                    "is_private": kind != "channel",
                    "is_ext_shared": channel in self.shared,
                    "is_member": True,
                }
            }
        )

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        self._touch()
        return web.Response(text="ok")

    # ------------------------------------------------------------------ Socket Mode

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets) + 1,
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600},
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._sockets.append(ws)
        self._touch()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data.get("payload")
                    self._touch()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            self._touch()
        return ws

    async def wait_socket(self, timeout: float = 15.0) -> None:
        """Wait until a Socket Mode client is connected."""
        await self.wait_for(lambda: self._sockets, timeout)

    async def send_envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Push an envelope to the newest connection; returns its envelope id."""
        await self.wait_socket()
        envelope_id = str(uuid.uuid4())
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            }
        )
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        await self.wait_for(lambda: envelope_id in self.acks, timeout)
        return self.acks[envelope_id]

    # ------------------------------------------------------------------ events

    def user_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U0USER001",
        thread_ts: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
        files: tuple[str, ...] = (),
        attachments: tuple[dict[str, Any], ...] = (),
    ) -> list[dict[str, Any]]:
        """Someone posts `text` (with the files named `files` attached, a `file_share`;
        with `attachments`: a message forwarded, see `forwarded`, or a link's preview,
        see `unfurl`): it joins the history, and the event bodies Slack would send are
        returned (a mention in a channel comes twice: as `message` and as
        `app_mention`, both with the attachments)."""
        ts = self._next_ts()
        self.messages[channel].append(FakeMessage(channel, ts, text, user, bot_id, thread_ts))
        kind = self.channel_type(channel)
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": kind,
            "team": self.team_id,
        }
        if bot_id:
            event["bot_id"] = bot_id
        else:
            event["client_msg_id"] = str(uuid.uuid4())
        if files:
            subtype = subtype or "file_share"
            event["files"] = [
                {"id": f"F{uuid.uuid4().hex[:10].upper()}", "name": name, "mode": "hosted"}
                for name in files
            ]
        if attachments:
            event["attachments"] = [dict(a, id=i) for i, a in enumerate(attachments, 1)]
        if subtype:
            event["subtype"] = subtype
        if thread_ts:
            event["thread_ts"] = thread_ts
        bodies = [self.event_body(event)]
        if kind != "im" and f"<@{self.bot_user_id}>" in text and not subtype:
            mention = {k: v for k, v in event.items() if k not in ("channel_type", "type")}
            bodies.append(self.event_body({"type": "app_mention", **mention}))
        return bodies

    def bot_message(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        streaming: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> FakeMessage:
        """The bot posts `text` (or starts a stream) not through the client under test:
        another replica's answer. It joins the history, and is returned."""
        message = FakeMessage(channel, self._next_ts(), text, self.bot_user_id, self.bot_id,
                              thread_ts, streaming, streaming, metadata=metadata)
        message.versions.append(text)
        self.messages[channel].append(message)
        self._touch()
        return message

    def forwarded(
        self, channel: str, ts: str, *, files: tuple[str, ...] = (), pasted: bool = False
    ) -> dict[str, Any]:
        """The attachment a message forwarding `channel`'s message `ts` carries (Slack's
        Forward, or Share message): the message's text as written, in markup, and its
        author; `files` are named as the message's files. `pasted`: the preview of a
        link to the message pasted in another, which Slack does not mark `is_share`."""
        message = self.find(channel, ts)
        assert message is not None, f"no message {ts} in {channel}"
        shared: dict[str, Any] = {
            "is_msg_unfurl": True,
            "fallback": f"[{ts}] {message.user}: {message.text}",
            "text": message.text,
            "author_id": message.user,
            "author_name": message.user.lower(),
            "channel_id": channel,
            "channel_team": self.team_id,
            "ts": ts,
            "from_url": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            "mrkdwn_in": ["text"],
            "footer": f"Posted in <#{channel}>",
        }
        if not pasted:
            shared["is_share"] = True
        if files:
            shared["files"] = [
                {"id": f"F{uuid.uuid4().hex[:10].upper()}", "name": name, "mode": "hosted"}
                for name in files
            ]
        return shared

    @staticmethod
    def unfurl(url: str, title: str, text: str) -> dict[str, Any]:
        """The attachment Slack adds to a message that links a web page: its preview."""
        return {
            "from_url": url,
            "original_url": url,
            "title": title,
            "title_link": url,
            "text": text,
            "fallback": f"{title}: {text}",
            "service_name": url.split("/")[2],
        }

    def user_edit(
        self, channel: str, ts: str, text: str, *, user: str = "U0USER001"
    ) -> list[dict[str, Any]]:
        """Someone edits their message `ts` to `text`: the event bodies Slack sends.

        A `message_changed` message event, and, when the new text mentions the
        bot outside a DM, an `app_mention` again: a new event id, the message's
        own `ts`, and an `edited` field.
        """
        [message] = [m for m in self.messages[channel] if m.ts == ts]
        before, message.text = message.text, text
        edit_ts = self._next_ts()
        edited = {"user": user, "ts": edit_ts}
        changed: dict[str, Any] = {
            "type": "message", "subtype": "message_changed", "hidden": True,
            "channel": channel, "channel_type": self.channel_type(channel),
            "ts": edit_ts, "event_ts": edit_ts,
            "message": {"type": "message", "user": user, "text": text, "ts": ts,
                        "edited": edited, "team": self.team_id},
            "previous_message": {"type": "message", "user": user, "text": before, "ts": ts,
                                 "team": self.team_id},
        }
        if message.thread_ts:
            changed["message"]["thread_ts"] = message.thread_ts
        bodies = [self.event_body(changed)]
        if self.channel_type(channel) != "im" and f"<@{self.bot_user_id}>" in text:
            mention: dict[str, Any] = {
                "type": "app_mention", "channel": channel, "user": user, "text": text,
                "ts": ts, "event_ts": edit_ts, "edited": edited, "team": self.team_id,
            }
            if message.thread_ts:
                mention["thread_ts"] = message.thread_ts
            bodies.append(self.event_body(mention))
        return bodies

    def user_delete(self, channel: str, ts: str, *, tombstone: bool = False) -> dict[str, Any]:
        """Someone deletes their message `ts`: the `message_deleted` event body, or for
        a thread's first message that has replies (`tombstone`), the `message_changed`
        one that leaves "This message was deleted." in its place."""
        [message] = [m for m in self.messages[channel] if m.ts == ts]
        now = self._next_ts()
        if tombstone:
            message.text = "This message was deleted."
            return self.event_body({
                "type": "message", "subtype": "message_changed", "hidden": True,
                "channel": channel, "channel_type": self.channel_type(channel),
                "ts": now, "event_ts": now,
                "message": {"type": "message", "subtype": "tombstone", "hidden": True,
                            "text": "This message was deleted.", "ts": ts, "thread_ts": ts,
                            "user": "USLACKBOT"},
            })
        self.messages[channel].remove(message)
        return self.event_body({
            "type": "message", "subtype": "message_deleted", "hidden": True,
            "channel": channel, "channel_type": self.channel_type(channel),
            "ts": now, "event_ts": now, "deleted_ts": ts,
            "previous_message": {"type": "message", "user": message.user, "text": message.text,
                                 "ts": ts},
        })

    def invite_bot(self, channel: str, *, inviter: str = "U0USER001") -> dict[str, Any]:
        """Someone invites the bot to `channel`: the body of the `member_joined_channel`
        event Slack sends an app subscribed to it."""
        self.outside.discard(channel)
        return self.event_body({
            "type": "member_joined_channel", "user": self.bot_user_id, "channel": channel,
            "channel_type": "C" if self.channel_type(channel) == "channel" else "G",
            "team": self.team_id, "inviter": inviter,
        })

    def event_body(self, event: dict[str, Any]) -> dict[str, Any]:
        """Wrap an event in an `event_callback` envelope with a fresh event_id."""
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._event_ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": event.get("channel") in self.shared,
        }

    def slash_command(
        self, command: str, channel: str, *, user: str = "U0USER001", text: str = ""
    ) -> dict[str, str]:
        """The form fields of a slash command invocation."""
        n = next(self._event_ids)
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel,
            # Slack names a DM and a private channel by their type, not their name.
            "channel_name": {"im": "directmessage", "group": "privategroup"}.get(
                self.channel_type(channel), "general"
            ),
            "user_id": user,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.base}/commands/response/{n}",
            "trigger_id": f"{n}.trigger",
        }

    # ------------------------------------------------------------------ HTTP delivery

    def sign(self, raw: str, timestamp: int, secret: str | None = None) -> str:
        key = (secret or self.signing_secret).encode()
        base = f"v0:{timestamp}:{raw}".encode()
        return "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()

    async def post_http(
        self,
        url: str,
        raw: str,
        content_type: str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> tuple[int, str]:
        """POST a raw body to the daemon as Slack would; returns (status, body)."""
        assert self._client is not None
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": signature or self.sign(raw, stamp, secret),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        async with self._client.post(url, data=raw.encode(), headers=headers) as resp:
            return resp.status, await resp.text()

    async def post_event(self, url: str, body: dict[str, Any], **kw: Any) -> tuple[int, str]:
        return await self.post_http(url, json.dumps(body), "application/json", **kw)

    async def post_command(self, url: str, fields: dict[str, str], **kw: Any) -> tuple[int, str]:
        form = "application/x-www-form-urlencoded"
        return await self.post_http(url, urlencode(fields), form, **kw)


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started fake Slack on a free loopback port."""
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
