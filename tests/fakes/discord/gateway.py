"""The fake Discord's gateway websocket: identify, resume, shards and dispatches."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.state import DiscordState
from tests.fakes.discord.wire import MESSAGE_CONTENT, snowflake


@dataclass
class _Gateway:
    ws: web.WebSocketResponse
    seq: int = 0
    shard: tuple[int, int] = (0, 1)
    intents: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class GatewayServer(DiscordState):
    """The gateway: its connections, their sessions and shards, and the events sent."""

    def _gateways_for(self, guild_id: str | None) -> list[_Gateway]:
        if not self.gateways:
            raise AssertionError("no gateway connection")
        if guild_id is None:
            return [gw for gw in self.gateways if gw.shard[0] == 0][:1]
        return [gw for gw in self.gateways if (int(guild_id) >> 22) % gw.shard[1] == gw.shard[0]]

    async def _send(self, gw: _Gateway, payload: dict[str, Any]) -> None:
        async with gw.lock:
            await gw.ws.send_str(json.dumps(payload))

    async def _send_dispatch(self, gw: _Gateway, event: str, data: Any) -> None:
        async with gw.lock:
            gw.seq += 1
            await gw.ws.send_str(json.dumps({"op": 0, "t": event, "s": gw.seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return web.Response(status=503, text="Discord is down")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        gw = _Gateway(ws)
        await self._send(gw, {"op": 10, "d": {"heartbeat_interval": 41250}})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                op = payload.get("op")
                if op == 1:
                    await self._send(gw, {"op": 11})
                elif op == 2:
                    await self._identify(gw, payload["d"])
                elif op == 6:
                    await self._resume(gw, payload["d"])
        except Exception as exc:  # a bug in the fake: fail the test
            self.errors.append(f"gateway: {exc!r}")
            raise
        finally:
            if gw in self.gateways:
                self.gateways.remove(gw)
            self._changed()
        return ws

    async def _identify(self, gw: _Gateway, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if data.get("token") != self.token:
            await gw.ws.close(code=4004, message=b"Authentication failed.")
            return
        gw.intents = int(data.get("intents") or 0)
        if gw.intents & MESSAGE_CONTENT and not self.message_content_enabled:
            await gw.ws.close(code=4014, message=b"Disallowed intent(s).")
            self._changed()
            return
        gw.shard = tuple(data.get("shard") or (0, 1))  # type: ignore[assignment]
        if gw.shard[0] in self.unanswered_shards:
            self._unanswered.append(gw)
            self._changed()
            return
        await self._ready(gw)

    async def answer_identify(self, shard: int) -> None:
        """Answer the IDENTIFY of `shard` left unanswered (`unanswered_shards`), and any later."""
        self.unanswered_shards.discard(shard)
        for gw in [g for g in self._unanswered if g.shard[0] == shard]:
            self._unanswered.remove(gw)
            if not gw.ws.closed:
                await self._ready(gw)

    async def _ready(self, gw: _Gateway) -> None:
        mine = [g for g in self.guilds if (int(g) >> 22) % gw.shard[1] == gw.shard[0]]
        session_id = snowflake()
        self._sessions[session_id] = (gw.shard, gw.intents)
        ready = dict(
            v=10,
            user=self.bot,
            guilds=[{"id": g, "unavailable": True} for g in mine],
            session_id=session_id,
            resume_gateway_url=self.gateway_url,
            application={"id": self.app_id, "flags": 0},
            shard=list(gw.shard),
            private_channels=[],
            relationships=[],
        )
        await self._send_dispatch(gw, "READY", ready)
        for gid in mine:
            if gid not in self.late_guilds:
                await self._send_dispatch(gw, "GUILD_CREATE", self._guild_create(gid))
        self.gateways.append(gw)
        self._changed()

    async def _resume(self, gw: _Gateway, data: dict[str, Any]) -> None:
        known = self._sessions.get(data.get("session_id") or "")
        if known is None or data.get("token") != self.token:
            await self._send(gw, {"op": 9, "d": False})  # not resumable: identify again
            return
        gw.shard, gw.intents = known
        gw.seq = int(data.get("seq") or 0)
        await self._send_dispatch(gw, "RESUMED", {})
        self.resumes += 1
        self.gateways.append(gw)
        self._changed()

    async def drop_gateways(
        self, code: int = 1001, *, shard: int | None = None, forget: bool = False
    ) -> None:
        """Close every gateway connection (or `shard`'s) from the server side (Discord
        restarting); `forget`: their sessions cannot be resumed, they identify again."""
        for gw in [g for g in self.gateways if shard is None or g.shard[0] == shard]:
            if forget:
                self._sessions = {k: v for k, v in self._sessions.items() if v[0] != gw.shard}
            self.gateways.remove(gw)
            await gw.ws.close(code=code, message=b"going away")
        self._changed()
