"""The fake chat API's shared state: what `FakeChatAPI.__init__` sets and its parts call.

Each part of `FakeChatAPI` (one a dialect, and what they share in answering)
reads state that `__init__` sets and calls methods another part defines;
declaring them once here lets each part be checked on its own.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.chatapi.script import Recorded, Script

if TYPE_CHECKING:  # the module's part imports this one
    from tests.fakes.chatapi.chaturdata import _Thread


class ChatAPIState:
    """The base of every part of `FakeChatAPI`: its attributes (see
    `FakeChatAPI.__init__` for what each holds) and the methods one part calls on
    another."""

    api_key: str
    url: str
    requests: list[Recorded]
    disconnects: int
    threads: dict[str, _Thread]
    chaturdata_echo_thread: bool
    compress: bool
    _scripts: deque[Script]
    _changed: asyncio.Condition
    _closing: asyncio.Event
    _ids: itertools.count[int]
    _remaining: int
    _runner: web.AppRunner | None
    answer_for: Callable[[str], Script] | None

    @abstractmethod
    async def _notify(self) -> None: ...

    @abstractmethod
    async def _record(self, request: web.Request) -> Recorded: ...

    @abstractmethod
    def _next(self, question: str | None = None) -> Script: ...

    @abstractmethod
    def _bearer_ok(self, rec: Recorded) -> bool: ...

    @abstractmethod
    def _scripted_error(
        self, script: Script, default_body: Any, extra: dict[str, str] | None = None
    ) -> web.Response: ...

    @abstractmethod
    async def _stream(
        self,
        request: web.Request,
        script: Script,
        content_type: str,
        token: Callable[[str], bytes],
        *,
        head: bytes = b"",
        malformed: bytes,
        error: Callable[[str], bytes],
        tail: Callable[[], bytes],
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse: ...
