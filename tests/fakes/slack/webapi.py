"""The fake Slack's Web API: authentication, faults, limits, then each method."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.slack.history import FakeMessage
from tests.fakes.slack.limits import MARKDOWN_LIMIT, POST_TEXT_LIMIT, TEXT_LIMIT
from tests.fakes.slack.state import SlackState


class WebAPI(SlackState):
    """The Web API's methods, `_m_<family>_<name>` for `family.name`."""

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

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
        return web.json_response(
            {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": ",".join(sorted(self.scopes)),
            }
        )

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
        return self._ok(
            {
                "channels": [
                    {
                        "id": c,
                        "is_channel": k == "channel",
                        "is_group": k == "group",
                        "is_mpim": k == "mpim",
                        "is_im": False,
                        "is_private": k != "channel",
                        "is_ext_shared": c in self.shared,
                    }
                    for c, k in kinds.items()
                ],
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            }
        )

    def _history_scope(self, channel: str) -> str:
        kind = self.channel_type(channel)
        return {"channel": "channels", "group": "groups"}.get(kind, kind) + ":history"

    @staticmethod
    def _listed(message: FakeMessage, args: dict[str, Any]) -> dict[str, Any]:
        """A message as conversations.history and .replies list it: its metadata only
        with `include_all_metadata`."""
        listed: dict[str, Any] = {
            "type": "message",
            "ts": message.ts,
            "user": message.user,
            "text": message.text,
        }
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
        return self._ok(
            {
                "messages": [
                    self._listed(m, args) for m in [parent, *replies[: max(0, limit - 1)]]
                ],
                "has_more": len(replies) > limit - 1,
            }
        )

    def _m_conversations_history(self, method: str, args: dict[str, Any]) -> web.Response:
        # The channel's own messages (no thread's replies) after `oldest`, newest first.
        channel = str(args.get("channel", ""))
        if self._history_scope(channel) not in self.scopes:
            return self._no_scope(method, self._history_scope(channel))
        oldest = float(str(args.get("oldest") or 0))
        limit = int(str(args.get("limit") or 100))
        found = [
            m
            for m in reversed(self.messages.get(channel, []))
            if m.thread_ts in (None, m.ts) and float(m.ts) > oldest
        ]
        return self._ok(
            {
                "messages": [self._listed(m, args) for m in found[:limit]],
                "has_more": len(found) > limit,
            }
        )

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
