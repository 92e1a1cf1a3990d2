"""An in-process platform for core tests: tests deliver messages, targets record replies."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import ClassVar

from pydantic import ConfigDict

from adapters.registry import REGISTRY
from bridge.flag import Flag
from bridge.interfaces import (
    Address,
    Audience,
    Handler,
    Inbound,
    Platform,
    PlatformContext,
    PlatformOptions,
    Rate,
    Registry,
)
from tests.core.recording import RecordingTarget


class LocalOptions(PlatformOptions):
    model_config = ConfigDict(extra="forbid")

    max_chars: int = 2000
    edit_count: int = 100
    edit_per: float = 1.0


class LocalPlatform(Platform):
    """Registered as platform "console" so routes and config accept it."""

    name: ClassVar[str] = "console"
    Options: ClassVar[type[PlatformOptions]] = LocalOptions
    instances: ClassVar[list[LocalPlatform]] = []

    def __init__(self, ctx: PlatformContext) -> None:
        super().__init__(ctx)
        self.options: LocalOptions = ctx.options
        self.handler: Handler | None = None
        self.targets: dict[Address, RecordingTarget] = {}
        self.taken: Flag | None = None  # what the handler returned for the last message
        self._ids = itertools.count(1)
        LocalPlatform.instances.append(self)

    async def start(self, handler: Handler) -> None:
        self.handler = handler

    async def aclose(self) -> None:
        self.handler = None

    def target(self, address: Address) -> RecordingTarget:
        target = self.targets.get(address)
        if target is None:
            target = self.targets[address] = RecordingTarget(
                max_chars=self.options.max_chars,
                edit_rate=Rate(self.options.edit_count, self.options.edit_per),
                channel=address.channel,
            )
            target.address = address
        return target

    async def say(
        self,
        text: str,
        *,
        channel: str = "C1",
        user: str = "U1",
        thread: str | None = None,
        event_id: str | None = None,
        mentioned: bool = True,
        is_dm: bool = False,
        command: str | None = None,
        sent_at: float = 0.0,
        workspace: str = "W1",
        audience: Audience = "channel",
        follow_ups: bool = True,
    ) -> RecordingTarget:
        """Deliver a message; returns the target its reply goes to."""
        assert self.handler is not None
        n = next(self._ids)
        message_id = f"{n}.000"
        msg = Inbound(
            platform="console",
            workspace=workspace,
            channel=channel,
            user=user,
            text=text,
            message_id=message_id,
            event_id=event_id or f"ev-{uuid.uuid4().hex}",
            thread=thread,
            is_dm=is_dm,
            mentioned=mentioned,
            command=command,
            sent_at=sent_at,
            audience=audience,
            follow_ups=follow_ups,
        )
        target = self.target(Address("console", workspace, channel, thread or message_id))
        target.ended.clear()
        self.taken = await self.handler(msg, target)
        return target


TEST_REGISTRY = Registry(
    dialects=REGISTRY.dialects,
    platforms={**REGISTRY.platforms, "console": lambda: LocalPlatform},
)


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` until true, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
