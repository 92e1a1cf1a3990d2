"""A TCP relay on loopback that can cut its clients off from the server behind it,
as a network partition cuts one machine off from the database.

    async with Cutter("127.0.0.1", 5432) as cutter:
        url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{cutter.port}")
        ...
        cutter.cut()      # every connection closes, new ones are refused
        cutter.restore()  # new connections go through again
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class Cutter:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.upstream_port = host, port
        self.port = 0
        self.cutting = False
        self._server: asyncio.Server | None = None
        self._ends: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Cutter:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self._abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        self.cutting = True
        self._abort()

    def restore(self) -> None:
        self.cutting = False

    def _abort(self) -> None:
        for end in list(self._ends):
            end.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cutting:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, upstream = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        self._ends.update((writer, upstream))
        try:
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            self._ends.difference_update((writer, upstream))
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()
