"""The fake Discord's shared state: what `FakeDiscord.__init__` sets and its parts call.

Each part of `FakeDiscord` (the REST routes, the gateway, the world, ...) reads
state that `__init__` sets and calls methods another part defines; declaring
them once here lets each part be checked on its own.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord.wire import Recorded

if TYPE_CHECKING:  # these modules' parts import this one
    from tests.fakes.discord.gateway import _Gateway
    from tests.fakes.discord.limits import RateRule


class DiscordState:
    """The base of every part of `FakeDiscord`: its attributes (see
    `FakeDiscord.__init__` for what each holds) and the methods one part calls on
    another."""

    token: str
    app_id: str
    bot: dict[str, Any]
    message_content_enabled: bool
    ratelimit_headers: bool
    rates: dict[str, RateRule]
    global_rule: RateRule | None
    global_limited: int
    tolerance: float
    users: dict[str, dict[str, Any]]
    guilds: dict[str, dict[str, Any]]
    left: set[str]
    channels: dict[str, dict[str, Any]]
    messages: dict[str, dict[str, Any]]
    edits: dict[str, list[str]]
    requests: list[Recorded]
    rate_limited: int
    rejected: list[Recorded]
    drop: list[tuple[str, str]]
    slow: list[tuple[str, str, float]]
    refuse: list[tuple[str, str, int, int]]
    late_guilds: set[str]
    commands: list[dict[str, Any]]
    interactions: dict[str, dict[str, Any]]
    identifies: list[dict[str, Any]]
    resumes: int
    gateway_down: bool
    _sessions: dict[str, tuple[tuple[int, int], int]]
    errors: list[str]
    gateway_shards: int
    unanswered_shards: set[int]
    _unanswered: list[_Gateway]
    gateways: list[_Gateway]
    _windows: dict[str, deque[float]]
    _tick: asyncio.Event
    _runner: web.AppRunner | None
    host: str
    port: int

    @property
    @abstractmethod
    def gateway_url(self) -> str: ...

    @abstractmethod
    def _changed(self) -> None: ...

    @abstractmethod
    def _gateways_for(self, guild_id: str | None) -> list[_Gateway]: ...

    @abstractmethod
    async def _send_dispatch(self, gw: _Gateway, event: str, data: Any) -> None: ...

    @abstractmethod
    def _global_limit(self, rule: RateRule) -> web.Response | None: ...

    @abstractmethod
    def _admit(
        self, body: Any, key: str, kind: str, *, require: bool
    ) -> tuple[web.Response | None, dict[str, str]]: ...

    @abstractmethod
    def _new_message(
        self, channel_id: str, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]: ...

    @abstractmethod
    async def _dispatch_message(
        self, msg: dict[str, Any], kind: str = "MESSAGE_CREATE"
    ) -> None: ...

    @abstractmethod
    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any]) -> None: ...

    @abstractmethod
    async def add_thread(
        self, parent_id: str, name: str, *, private: bool = False, quietly: bool = False
    ) -> str: ...

    @abstractmethod
    def dm_channel(self, user_id: str) -> str: ...

    @abstractmethod
    def _denied(self, channel_id: str, permission: int) -> bool: ...

    @abstractmethod
    def _may_not_send(self, channel_id: str) -> web.Response | None: ...

    @abstractmethod
    def _member_obj(self, guild_id: str, user_id: str, *, with_user: bool) -> dict[str, Any]: ...

    @abstractmethod
    def _guild_create(self, gid: str) -> dict[str, Any]: ...
