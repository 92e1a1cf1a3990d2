"""A forward HTTP proxy on loopback, as a corporate network puts between the
daemon and the internet: CONNECT tunnels, and absolute-form requests (plain
HTTP, and websocket upgrades) forwarded to their origin.

`seen` holds the request line of every request sent through it (for a
tunnel, its CONNECT line), so a test can tell which client used it. Given
`credentials` ("user:password"), it answers 407 Proxy Authentication Required
to a connection whose first request does not carry them, as a proxy does to a
wrong or expired password. Given `refuses` (a status: 403), it answers every
request (once its credentials are taken) with that status and a page saying
so, as a corporate proxy answers a host not on its allow list (a tunnel's
CONNECT, or a plain request).

The daemon goes direct to a loopback host whatever the proxy variables say, so
a fake meant to be reached through this proxy is named by a `.test` host
(`slack.test`, RFC 6761's names for testing), which only the proxy resolves:
to 127.0.0.1, as a corporate proxy reaches hosts the daemon itself cannot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from http import HTTPStatus
from types import TracebackType
from urllib.parse import urlsplit


class FakeProxy:
    def __init__(self, credentials: str | None = None, refuses: int | None = None) -> None:
        self.credentials = credentials
        self.refuses = refuses
        self.seen: list[str] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ends: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FakeProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for end in list(self._ends):  # the handlers see their connections end
            end.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def saw(self, start: str) -> bool:
        return any(line.startswith(start) for line in self.seen)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._ends.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.seen.append(line)
            if not self._authorized(head):
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="proxy"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if self.refuses is not None:
                page = b"<html><body>Access denied by corporate policy</body></html>"
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s"
                    % (self.refuses, HTTPStatus(self.refuses).phrase.encode(), len(page), page)
                )
                await writer.drain()
                return
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, upstream = await asyncio.open_connection(_reach(host), int(port))
                self._ends.add(upstream)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
                return
            where = urlsplit(target)
            assert where.hostname is not None, line
            up_reader, upstream = await asyncio.open_connection(
                _reach(where.hostname), where.port or 80
            )
            self._ends.add(upstream)
            answers = asyncio.ensure_future(_pipe(up_reader, writer))
            try:
                await self._requests(head, reader, upstream)
            finally:
                await answers
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    end.close()
                    self._ends.discard(end)
            self._tasks.discard(task)

    def _authorized(self, head: bytes) -> bool:
        if self.credentials is None:
            return True
        wanted = ["basic", base64.b64encode(self.credentials.encode()).decode()]
        for field in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = field.partition(":")
            if name.strip().lower() == "proxy-authorization":
                scheme, _, token = value.strip().partition(" ")
                return [scheme.lower(), token.strip()] == wanted
        return False

    async def _requests(
        self, head: bytes, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter
    ) -> None:
        """Forward the requests of a kept-alive connection one by one, each seen."""
        while True:
            upstream.write(head)
            fields = head.decode("latin-1").lower()
            if "\r\nupgrade:" in fields:  # a websocket: frames from here on
                await _pipe(reader, upstream)
                return
            length = 0
            for field in fields.split("\r\n"):
                if field.startswith("content-length:"):
                    length = int(field.partition(":")[2])
            if length:
                upstream.write(await reader.readexactly(length))
            await upstream.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                with contextlib.suppress(OSError, RuntimeError):
                    upstream.write_eof()
                return
            self.seen.append(head.split(b"\r\n", 1)[0].decode("latin-1"))


def _reach(host: str) -> str:
    """Where the proxy connects for `host`: a `.test` name's is loopback."""
    return "127.0.0.1" if host.lower().endswith(".test") else host


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()
