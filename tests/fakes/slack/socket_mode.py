"""The fake Slack's Socket Mode websocket: envelopes pushed, acknowledgements kept."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.slack.state import SlackState


class SocketMode(SlackState):
    """Socket Mode connections, the envelopes sent on them and their acks."""

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
