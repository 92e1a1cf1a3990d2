"""The daemon's HTTP listener: /healthz, /metrics, and platform webhooks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.errors import BridgeError

Health = Callable[[], Awaitable[dict[str, str]]]
SHUTDOWN_SECONDS = 2.0


class HttpServer:
    """An aiohttp listener; platforms add their routes before `start()`."""

    def __init__(self, listen: str, health: Health, metrics: Callable[[], bytes]) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self._health = health
        self._metrics = metrics
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics_handler)
        self._runner: web.AppRunner | None = None

    def add_route(self, method: str, path: str, handler: Callable[..., Awaitable[Any]]) -> None:
        self.app.router.add_route(method, path, handler)

    async def start(self) -> None:
        # Its requests are short: a stop waits for one still open this long at most
        # (aiohttp's default is a minute, for a client that may be trickling a body).
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:  # the port is taken, the host unknown, ...
            await self._runner.cleanup()
            self._runner = None
            raise BridgeError(
                f"http.listen {self.host}:{self.port}: cannot listen there "
                f"({exc.strerror or type(exc).__name__})"
            ) from exc
        # The bound socket tells the real port when 0 was asked. `_server` is typed
        # as AbstractServer, which has no `sockets`; asyncio's and uvloop's servers do.
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        problems = await self._health()
        body = {"status": "ok" if not problems else "unhealthy", "down": problems}
        return web.Response(
            status=200 if not problems else 503,
            text=json.dumps(body),
            content_type="application/json",
        )

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )
