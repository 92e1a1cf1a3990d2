"""The fake Discord's REST API: its middleware and the routes of the bot's own calls."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState
from tests.fakes.discord.wire import (
    LOADING,
    READ_MESSAGE_HISTORY,
    SUPPRESS_EMBEDS,
    Recorded,
    _body,
    _error,
    _json,
    _now_iso,
    snowflake,
)


class RestRoutes(DiscordState):
    """The REST routes: recording, authenticating, faults, then channels and messages."""

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        body = await _body(request)
        rec = Recorded(request.method, request.path, body, dict(request.query), time.monotonic())
        self.requests.append(rec)
        needs_auth = "/interactions/" not in request.path and "/webhooks/" not in request.path
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        for i, (method, pattern, seconds) in enumerate(self.slow):
            if request.method == method and re.search(pattern, request.path):
                del self.slow[i]
                await asyncio.sleep(seconds)
                break
        for i, (method, pattern) in enumerate(self.drop):
            if request.method == method and re.search(pattern, request.path):
                del self.drop[i]
                self._changed()  # a test may wait for the drop to happen
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=204)  # never reaches the client
        if needs_auth and self.global_rule is not None:
            refused = self._global_limit(self.global_rule)
            if refused is not None:
                return refused
        try:
            refusal = next(
                (
                    (status, code)
                    for method, pattern, status, code in self.refuse
                    if request.method == method and re.search(pattern, request.path)
                ),
                None,
            )
            if refusal is not None:
                response = _error(*refusal, "Refused")
            else:
                response = await handler(request)
        except Exception as exc:  # a bug in the fake: fail the test, not only this request
            self.errors.append(f"{request.method} {request.path}: {exc!r}")
            raise
        if response.status >= 400 and response.status != 429:
            self.rejected.append(rec)
        self._changed()
        return response

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot)

    async def _application(self, request: web.Request) -> web.Response:
        # flags: GATEWAY_MESSAGE_CONTENT_LIMITED (1 << 19) when the intent is enabled
        return _json(
            dict(
                id=self.app_id,
                name=self.bot["username"],
                icon=None,
                description="",
                rpc_origins=[],
                bot_public=True,
                bot_require_code_grant=False,
                verify_key="0" * 64,
                flags=(1 << 19) if self.message_content_enabled else 0,
                owner=self.bot,
                team=None,
                interactions_endpoint_url=None,
            )
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json(
            {"url": self.gateway_url, "shards": self.gateway_shards, "session_start_limit": limit}
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        self.commands = [
            {**c, "id": snowflake(), "application_id": self.app_id, "version": snowflake()}
            for c in await _body(request)
        ]
        return _json(self.commands)

    async def _get_channel(self, request: web.Request) -> web.Response:
        ch = self.channels.get(request.match_info["cid"])
        if ch is None:
            return _error(404, 10003, "Unknown Channel")
        return _json(ch)

    async def _typing(self, request: web.Request) -> web.Response:
        if request.match_info["cid"] not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        return self._may_not_send(request.match_info["cid"]) or web.Response(status=204)

    async def _post_message(self, request: web.Request) -> web.Response:
        cid, body = request.match_info["cid"], await _body(request) or {}
        if cid not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        if (forbidden := self._may_not_send(cid)) is not None:
            return forbidden
        if self.channels[cid]["type"] in (15, 16):  # a forum takes posts, not messages
            return _error(400, 50008, "Cannot send messages in a non-text channel")
        if (
            body.get("message_reference")
            and self.channels[cid].get("guild_id")
            and self._denied(cid, READ_MESSAGE_HISTORY)
        ):  # a reply needs Read Message History
            return _error(403, 50013, "Missing Permissions")
        refused, headers = self._admit(body, f"post:{cid}", "post", require=True)
        if refused is not None:
            return refused
        extra: dict[str, Any] = {}
        if body.get("flags"):  # SUPPRESS_EMBEDS: no preview cards under it
            extra["flags"] = int(body["flags"])
        ref = body.get("message_reference")
        if ref:  # Discord answers with string ids
            extra["message_reference"] = {
                k: str(v) if k.endswith("_id") else v for k, v in ref.items()
            }
            extra["type"] = 19
        msg = self._new_message(cid, self.bot, body.get("content") or "", **extra)
        self.edits[msg["id"]] = []
        if self.gateways:  # (Discord posts it all the same: its MESSAGE_CREATE reaches no one)
            await self._dispatch_message(msg)
        return _json(msg, headers=headers)

    async def _edit_message(self, request: web.Request) -> web.Response:
        msg = self._bots_message(request, (50005, "Cannot edit a message authored by another user"))
        if isinstance(msg, web.Response):
            return msg
        cid = msg["channel_id"]
        body = await _body(request) or {}
        refused, headers = self._admit(body, f"edit:{cid}", "edit", require=False)
        if refused is not None:
            return refused
        self._apply_edit(msg, body)
        return _json(msg, headers=headers)

    async def _delete_message(self, request: web.Request) -> web.Response:
        """The bot deletes its own message (it may always): MESSAGE_DELETE follows."""
        msg = self._bots_message(request, (50013, "Missing Permissions"))
        if isinstance(msg, web.Response):
            return msg
        cid, mid = msg["channel_id"], msg["id"]
        del self.messages[mid]
        gid = msg.get("guild_id")
        data = {"id": mid, "channel_id": cid, **({"guild_id": gid} if gid else {})}
        for gw in self._gateways_for(gid):
            await self._send_dispatch(gw, "MESSAGE_DELETE", data)
        self._changed()
        return web.Response(status=204)

    def _bots_message(
        self, request: web.Request, not_its_own: tuple[int, str]
    ) -> dict[str, Any] | web.Response:
        """The bot's own message a request names (its channel's and its ids), or
        Discord's refusal: an unknown channel or message, or 403 `not_its_own` (the
        code and message for one another user wrote)."""
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        if cid not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        msg = self.messages.get(mid)
        if msg is None or msg["channel_id"] != cid:
            return _error(404, 10008, "Unknown Message")
        if msg["author"]["id"] != self.app_id:
            return _error(403, *not_its_own)
        return msg

    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        if "content" in body:
            msg["content"] = body["content"] or ""
            msg["edited_timestamp"] = _now_iso()
            self.edits.setdefault(msg["id"], []).append(msg["content"])
        if "flags" in body and body["flags"] is not None:
            # An edit sets or clears SUPPRESS_EMBEDS only; the message's other flags stay.
            msg["flags"] = msg["flags"] & ~SUPPRESS_EMBEDS | int(body["flags"]) & SUPPRESS_EMBEDS
        msg["flags"] &= ~LOADING

    async def _open_thread(self, request: web.Request) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        parent, msg = self.channels.get(cid), self.messages.get(mid)
        if parent is None or msg is None or parent["type"] != 0:
            return _error(404, 10008, "Unknown Message")
        body = await _body(request) or {}
        name = body.get("name") or ""
        if not 1 <= len(name) <= 100:
            errors = {"name": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "bad"}]}}
            return _error(400, 50035, "Invalid Form Body", errors)
        if mid in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        meta = dict(
            archived=False,
            auto_archive_duration=body.get("auto_archive_duration", 1440),
            archive_timestamp=_now_iso(),
            locked=False,
        )
        thread = dict(
            id=mid,  # Discord: a thread opened on a message has the message's id
            type=11,
            guild_id=parent["guild_id"],
            parent_id=cid,
            owner_id=self.app_id,
            name=name,
            last_message_id=None,
            message_count=0,
            member_count=1,
            rate_limit_per_user=0,
            flags=0,
            thread_metadata=meta,
        )
        self.channels[mid] = thread
        msg["thread"] = thread
        for gw in self._gateways_for(parent["guild_id"]):
            await self._send_dispatch(gw, "THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, 201)
