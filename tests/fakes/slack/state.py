"""The fake Slack's shared state: what `FakeSlack.__init__` sets and its parts call.

Each part of `FakeSlack` (the Web API, Socket Mode, events, ...) reads state
that `__init__` sets and calls methods another part defines; declaring them
once here lets each part be checked on its own.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

if TYPE_CHECKING:  # these modules' parts import this one
    from tests.fakes.slack.history import FakeMessage
    from tests.fakes.slack.limits import RateRule


class SlackState:
    """The base of every part of `FakeSlack`: its attributes (see `FakeSlack.__init__`
    for what each holds) and the methods one part calls on another."""

    team_id: str
    bot_user_id: str
    bot_id: str
    app_id: str
    bot_token: str
    app_token: str
    signing_secret: str
    channels: dict[str, str]
    shared: set[str]
    outside: set[str]
    messages: dict[str, list[FakeMessage]]
    ephemerals: list[dict[str, Any]]
    responses: list[dict[str, Any]]
    reactions: dict[tuple[str, str], set[str]]
    statuses: list[dict[str, Any]]
    slow: dict[str, list[float]]
    calls: list[tuple[str, dict[str, Any]]]
    pings: list[tuple[str, str, str]]
    rejected: Counter[str]
    rate_limited: Counter[str]
    rates: dict[str, RateRule]
    stream_error: str | None
    fail: dict[str, list[str]]
    unavailable: dict[str, list[int]]
    scopes: set[str]
    lose_answer: Counter[str]
    drop: Counter[str]
    slow_answer: dict[str, list[float]]
    acks: dict[str, dict[str, Any] | None]
    connections: int
    _sockets: list[web.WebSocketResponse]
    _ts: itertools.count[int]
    _ts_seconds: int
    _event_ids: itertools.count[int]
    _changed: asyncio.Event
    _runner: web.AppRunner | None
    _client: aiohttp.ClientSession | None
    port: int
    host: str

    @property
    @abstractmethod
    def base(self) -> str: ...

    @abstractmethod
    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any: ...

    @abstractmethod
    def _touch(self) -> None: ...

    @abstractmethod
    def _body_of(self, method: str, args: dict[str, Any], limit: int) -> tuple[str, bool] | str: ...

    @abstractmethod
    def channel_type(self, channel: str) -> str: ...

    @abstractmethod
    def find(self, channel: str, ts: str) -> FakeMessage | None: ...

    @abstractmethod
    def thread(self, channel: str, root: str) -> list[FakeMessage]: ...

    @abstractmethod
    def _next_ts(self) -> str: ...

    @abstractmethod
    def _record_pings(self, message: FakeMessage, args: dict[str, Any]) -> None: ...
