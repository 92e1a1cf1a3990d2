"""The fake Discord's slash commands: interactions, their callbacks and webhooks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState
from tests.fakes.discord.wire import EPHEMERAL, LOADING, _body, _error, _json, snowflake


class Interactions(DiscordState):
    """Slash-command interactions: invoking one, and the callback and webhook routes."""

    async def invoke(
        self, channel_id: str, user_id: str, command: str, options: dict[str, str] | None = None
    ) -> str:
        """A user runs a slash command (INTERACTION_CREATE); returns the interaction id."""
        known = {c["name"]: c for c in self.commands}
        if command not in known:
            raise AssertionError(f"/{command} was never synced (have {sorted(known)})")
        ch = self.channels[channel_id]
        iid, token = snowflake(), f"itoken-{snowflake()}"
        args = [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()]
        data: dict[str, Any] = dict(
            id=iid,
            application_id=self.app_id,
            type=2,
            token=token,
            version=1,
            channel_id=channel_id,
            channel={k: v for k, v in ch.items() if k != "recipients"},
            data={"id": known[command]["id"], "name": command, "type": 1, "options": args},
            app_permissions="0",
            locale="en-US",
            entitlements=[],
            authorizing_integration_owners={"0": ch.get("guild_id") or user_id},
            attachment_size_limit=8388608,
        )
        gid = ch.get("guild_id")
        if gid:
            member = {**self._member_obj(gid, user_id, with_user=True), "permissions": "0"}
            data.update(guild_id=gid, guild_locale="en-US", context=0, member=member)
        else:
            data.update(user=self.users[user_id], context=1)
        self.interactions[iid] = dict(
            id=iid,
            token=token,
            channel_id=channel_id,
            callback=None,
            original=None,
            expired=False,  # True: its token's 15 minutes are over
        )
        for gw in self._gateways_for(gid):
            await self._send_dispatch(gw, "INTERACTION_CREATE", data)
        self._changed()
        return iid

    def _interaction(self, token: str) -> dict[str, Any] | None:
        return next((i for i in self.interactions.values() if i["token"] == token), None)

    def _webhook_message(self, it: dict[str, Any], content: str, flags: int) -> dict[str, Any]:
        msg = self._new_message(
            it["channel_id"],
            self.bot,
            content,
            flags=flags,
            webhook_id=self.app_id,
            application_id=self.app_id,
            type=20,
        )
        self.edits[msg["id"]] = []
        return msg

    async def _callback(self, request: web.Request) -> web.Response:
        it = self.interactions.get(request.match_info["iid"])
        if it is None or it["token"] != request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        if it["callback"] is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = await _body(request) or {}
        data = body.get("data") or {}
        refused, _ = self._admit(data, f"callback:{it['id']}", "post", require=False)
        if refused is not None:
            return refused
        kind = body.get("type")
        flags = int(data.get("flags") or 0)
        if kind == 5:
            msg = self._webhook_message(it, "", flags | LOADING)
        elif kind == 4:
            msg = self._webhook_message(it, data.get("content") or "", flags)
        else:
            return _error(400, 50035, "Invalid Form Body")
        it["callback"], it["original"] = kind, msg["id"]
        reply = {
            "interaction": dict(
                id=it["id"],
                type=2,
                response_message_id=msg["id"],
                response_message_loading=kind == 5,
                response_message_ephemeral=bool(flags & EPHEMERAL),
            ),
            "resource": {"type": kind, "message": msg},
        }
        if request.query.get("with_response") in ("1", "true"):
            return _json(reply)
        return web.Response(status=204)

    def _webhook(self, request: web.Request) -> tuple[dict[str, Any], str] | web.Response:
        """The interaction a webhook request is for and the message it names (its
        original response for `@original`), or Discord's answer to an unknown one."""
        it = self._interaction(request.match_info["token"])
        if it is None or it["callback"] is None:
            return _error(404, 10015, "Unknown Webhook")
        if it["expired"]:
            return _error(401, 50027, "Invalid Webhook Token")
        mid = request.match_info.get("mid", "")
        return it, it["original"] if mid == "@original" else mid

    async def _followup(self, request: web.Request) -> web.Response:
        found = self._webhook(request)
        if isinstance(found, web.Response):
            return found
        it, _ = found
        body = await _body(request) or {}
        refused, headers = self._admit(body, f"post:{it['token']}", "post", require=True)
        if refused is not None:
            return refused
        msg = self._webhook_message(it, body.get("content") or "", int(body.get("flags") or 0))
        return _json(msg, headers=headers)

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        found = self._webhook(request)
        if isinstance(found, web.Response):
            return found
        it, mid = found
        msg = self.messages.get(mid)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        body = await _body(request) or {}
        refused, headers = self._admit(body, f"edit:{it['token']}", "edit", require=False)
        if refused is not None:
            return refused
        self._apply_edit(msg, body)
        return _json(msg, headers=headers)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        found = self._webhook(request)
        if isinstance(found, web.Response):
            return found
        _, mid = found
        if self.messages.pop(mid, None) is None:
            return _error(404, 10008, "Unknown Message")
        self._changed()
        return web.Response(status=204)
