"""The daemon's HTTP listener: /healthz, /metrics, and platform webhooks."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import resource
import time
from collections.abc import Awaitable, Callable, Collection
from functools import partial
from typing import Any, cast

from aiohttp import web
from aiohttp.http import HttpProcessingError
from aiohttp.web import RequestHandler, RequestPayloadError

from bridge.errors import BridgeError
from bridge.logs import relevel

log = logging.getLogger("chat_bridge.http")

# What keeps the daemon (or the platforms named: None, all of them) from answering.
Health = Callable[[Collection[str] | None], Awaitable[dict[str, str]]]
SHUTDOWN_SECONDS = 2.0
# From a connection's start, or its last answer, to the end of a request's headers:
# past this the connection is closed (aiohttp's default is an hour).
HEADER_SECONDS = 15.0
# Connections held at once: at most this, and at most half the open files the
# process may have, so that a crowd of clients leaves room for the chat APIs,
# the store and the platforms.
MAX_CONNECTIONS = 512
# At the cap, a connection is closed to make room only if nothing came from its
# client for this long: one whose request has just arrived, its handling not yet
# begun (as in a burst through a proxy opening a connection per request), is kept.
IDLE_SECONDS = 1.0
# A connection refused at the cap is answered 503 and closed when its client ends
# it, or after this: closed at once, its request unread, the kernel resets it and
# the client may see the reset and not the 503.
REFUSED_LINGER_SECONDS = 1.0
FULL_WARNING_SECONDS = 60.0
_REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HttpServer:
    """An aiohttp listener; platforms add their routes before `start()` (or before
    it is entered as an async context manager, which starts it and closes it)."""

    def __init__(
        self, listen: str, health: Health, metrics: Callable[[], Awaitable[bytes]]
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        # `[::]` (every IPv6 address) alone would leave IPv4 out (asyncio makes IPv6
        # sockets IPv6-only): a container's health check at 127.0.0.1 and a port
        # published over IPv4 were refused. None: every address, IPv4 and IPv6.
        self._bind: str | None = None if self.host == "::" else self.host
        self.port = int(port)
        self._health = health
        self._metrics = metrics
        self.app = web.Application(middlewares=[self._track])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics_handler)
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[Any]]] = {}
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self.max_connections = MAX_CONNECTIONS
        # The connections with a request in hand (and that request); those closed to
        # make room; when each last had bytes from its client or gave an answer.
        self._busy: dict[RequestHandler, web.Request] = {}
        self._evicted: set[RequestHandler] = set()
        self._active: dict[RequestHandler, float] = {}
        self._lingering: set[_Refused] = set()
        self._closed_idle = 0
        self._refused = 0
        self._next_full_warning = 0.0

    def add_route(self, method: str, path: str, handler: Callable[..., Awaitable[Any]]) -> None:
        """Route `method` `path` to `handler`. Added again, the route's handler is
        replaced, the listener started or not (a platform made anew, to try its start
        again)."""
        if (method, path) not in self._routes:
            self.app.router.add_route(method, path, partial(self._routed, (method, path)))
        self._routes[(method, path)] = handler

    async def _routed(self, route: tuple[str, str], request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await self._routes[route](request)
        return response

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Listen at `host:port` (where the port asked was 0, `port` is then the one
        bound); a BridgeError saying how to mend it where it cannot."""
        # Its requests are short: a stop waits for one still open this long at most
        # (aiohttp's default is a minute, for a client that may be trickling a body),
        # and a connection that sends no request, or only part of its headers, is
        # closed HEADER_SECONDS after it opened (or after its last answer).
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_SECONDS,
            keepalive_timeout=HEADER_SECONDS,
            logger=_requests_log,
        )
        await self._runner.setup()
        self.max_connections = min(MAX_CONNECTIONS, max(_open_files() // 2, 1))
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                self._accept, self._bind, self.port
            )
        except OSError as exc:  # the port is taken, the host unknown, ...
            await self._runner.cleanup()
            self._runner = None
            raise BridgeError(_cannot_listen(self.host, self.port, exc)) from exc
        # The bound socket tells the real port when 0 was asked. AbstractServer has
        # no `sockets`; asyncio's and uvloop's servers do.
        sockets = getattr(self._listener, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and close the connections, waiting `SHUTDOWN_SECONDS` at most
        for a request being answered; a server never started, or closed, is left so."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _accept(self) -> asyncio.BaseProtocol:
        """A new connection's protocol. At the cap, the open connection idle longest
        that has no whole request in hand (headers or body still arriving, or idle
        between requests) and has sent nothing for IDLE_SECONDS is closed to make room,
        so a crowd of half-sent requests cannot keep /healthz or Slack out; when there
        is none, the new one is answered 503 and closed.

        Open connections are aiohttp's own count (made, not yet lost): one closed is
        no longer counted. Those accepted in the same burst are counted once open,
        so a burst may pass the cap by what the accept backlog holds."""
        server = self._runner.server if self._runner is not None else None
        assert server is not None
        held = server.connections
        self._evicted.intersection_update(held)  # those lost since are forgotten
        if len(held) >= self.max_connections:
            now = time.monotonic()
            # One lost, its handling still ending, is no longer in `_active`: idle.
            idle = min(
                (
                    conn
                    for conn in held
                    if not self._whole(conn)
                    and conn not in self._evicted
                    and now - self._active.get(conn, -math.inf) >= IDLE_SECONDS
                ),
                key=lambda conn: self._active.get(conn, -math.inf),
                default=None,
            )
            if idle is None:
                self._refused += 1
                self._warn_full(len(held))
                # Those lingering are bounded too: past as many as the cap, closed at once.
                return _Refused(self._lingering, len(self._lingering) < self.max_connections)
            idle.force_close()  # counted until it is lost: not chosen again meanwhile
            self._evicted.add(idle)
            self._closed_idle += 1
            self._warn_full(len(held))
        return _Watched(server(), self._active)

    def _whole(self, conn: RequestHandler) -> bool:
        """Whether `conn` has a request in hand whose body has all arrived: one whose
        body is still arriving (a handler reading it) is half-sent, as one whose
        headers are."""
        request = self._busy.get(conn)
        return request is not None and request.content.is_eof()

    def _warn_full(self, held: int) -> None:
        now = time.monotonic()
        if now < self._next_full_warning:
            return
        self._next_full_warning = now + FULL_WARNING_SECONDS
        log.warning(
            "http.listen is full (%d connections, the most it holds): closed %d idle or "
            "half-sent connections and refused %d new ones since the last such warning",
            held,
            self._closed_idle,
            self._refused,
        )
        self._closed_idle = self._refused = 0

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = request.protocol
        self._busy[conn] = request
        try:
            return await handler(request)
        finally:
            self._busy.pop(conn, None)
            if conn in self._active:  # not if lost meanwhile
                self._active[conn] = time.monotonic()

    async def _healthz(self, request: web.Request) -> web.Response:
        # `?platform=slack`: that platform's health (and the store's) alone, for a load
        # balancer that sends Slack's requests here while Discord is down.
        named = request.query.get("platform")
        only = {name.strip() for name in named.split(",")} if named is not None else None
        problems = await self._health(only)
        body = {"status": "ok" if not problems else "unhealthy", "down": problems}
        return web.Response(
            status=200 if not problems else 503,
            text=json.dumps(body),
            content_type="application/json",
        )

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(
            body=await self._metrics(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )


class _Malformed(logging.Filter):
    """aiohttp logs each request it cannot parse (a bad Content-Length, a header or
    URL past 8 KiB, broken chunking or compression) at ERROR with a traceback: the
    internet's scanners and broken clients, not the bridge's failure, and a screenful
    for each. Each is one DEBUG line here; a handler's own failure stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | RequestPayloadError):
            record.msg = f"{record.getMessage()}: {type(exc).__name__} (a malformed request)"
            record.args = ()
            relevel(record, logging.DEBUG)
        return True


# aiohttp's own lines for the listener's connections (aiohttp.server's, kept apart).
_requests_log = logging.getLogger("chat_bridge.http.requests")
_requests_log.addFilter(_Malformed())


class _Watched(asyncio.Protocol):
    """aiohttp's protocol for a connection, noting in `active` when its client last
    sent something."""

    def __init__(self, handler: RequestHandler, active: dict[RequestHandler, float]) -> None:
        self._handler = handler
        self._active = active

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._active[self._handler] = time.monotonic()
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._active[self._handler] = time.monotonic()
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        self._handler.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._active.pop(self._handler, None)
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    """Why `host:port` could not be listened on, and how to mend it. A BridgeError's
    words, not a ConfigError's: a port another process holds is no fault of the file
    (and a failed start exits 1 either way)."""
    said = f"http.listen {host}:{port}: cannot listen there ({exc.strerror or type(exc).__name__})"
    if exc.errno == errno.EADDRINUSE:
        return f"{said}; choose a free port in http.listen, or stop what holds it"
    if exc.errno == errno.EACCES:
        return (
            f"{said}; a port below 1024 needs privileges (root or CAP_NET_BIND_SERVICE): "
            "choose one of 1024 or above in http.listen"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{said}; the host is no address of this machine: write 0.0.0.0:{port} "
            f"(every address) or 127.0.0.1:{port} (this machine alone) in http.listen"
        )
    return f"{said}; check the host and port in http.listen"


class _Refused(asyncio.Protocol):
    """A connection past the cap: answered 503, its writing side shut, what its client
    sends read and dropped, and closed when the client ends it or after
    REFUSED_LINGER_SECONDS (at once if `linger` is false), so the 503 is what the
    client sees, not a reset."""

    def __init__(self, lingering: set[_Refused], linger: bool) -> None:
        self._lingering = lingering
        self._linger = linger
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.write(_REFUSAL)
        if not (self._linger and stream.can_write_eof()):
            stream.close()
            return
        stream.write_eof()
        self._lingering.add(self)
        self._deadline = asyncio.get_running_loop().call_later(REFUSED_LINGER_SECONDS, stream.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: dropped, so that nothing unread resets the close

    def eof_received(self) -> bool | None:
        return False  # the client's end: closed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._lingering.discard(self)


def _open_files() -> int:
    """The open files this process may have (see `bridge.resources.raise_open_files`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_CONNECTIONS * 2 if soft == resource.RLIM_INFINITY else soft
