"""What the bridge's end-to-end tests share: a console bridge on the fake chat API, and
the store, metrics and asking helpers its tests use."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NoReturn

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import StoreError
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform
from tests.core.recording import RecordingTarget
from tests.fakes.chatapi import FakeChatAPI


def make_config(
    fake: FakeChatAPI,
    db: Path,
    extra: str = "",
    route: str = "",
    console: str = "{}",
    reply: str = "",
) -> str:
    return f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs:
    kind: chatmount
    url: {fake.endpoint("chatmount")}
    api_key: ${{KEY}}
    retries: {{attempts: 2, backoff: 0.01}}
console: {console}
routes:
  - platform: console
    backend: docs
    {route}
reply: {{edit_interval: 0.05, {reply}}}
{extra}
"""


def bridge_for(fake: FakeChatAPI, db: Path, **kw: str) -> Bridge:
    config = parse_config(
        make_config(fake, db, **kw), env={"KEY": fake.api_key}, registry=TEST_REGISTRY
    )
    return Bridge(config, TEST_REGISTRY)


def platform(bridge: Bridge) -> LocalPlatform:
    return bridge.platforms["console"]  # type: ignore[return-value]


# An admin's detail of a store failure: never shown in the chat.
STORE_DOWN = "PostgreSQL store db.internal:5432/chat: the connection failed while reading: reset"


def store_down(bridge: Bridge, method: str) -> None:
    """Make one of the store's methods fail as an unreachable store's do."""

    async def down(*args: object) -> NoReturn:
        raise StoreError(STORE_DOWN)

    setattr(bridge.store, method, down)


def failed_answers(bridge: Bridge, outcome: str = "failed") -> float:
    """chat_bridge_messages_answered_total of one outcome (its first series)."""
    for line in bridge.metrics.render().decode().splitlines():
        if line.startswith("chat_bridge_messages_answered_total{") and (
            f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def refused(bridge: Bridge, reason: str, told: str, platform: str = "console") -> float:
    """chat_bridge_messages_refused_total of one platform, reason and told, as exported."""
    series = f'chat_bridge_messages_refused_total{{platform="{platform}",reason="{reason}",'
    for line in bridge.metrics.render().decode().splitlines():
        if line.startswith(series + f'told="{told}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def stateless_bridge(fake: FakeChatAPI, db: Path, options: str = "") -> Bridge:
    """A bridge whose backend keeps no conversation (openai: the bridge sends the
    history), one conversation per console user."""
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  local: {{kind: openai, url: {fake.endpoint("openai")}, model: m, api_key: "${{KEY}}"{options}}}
console: {{}}
routes: [{{platform: console, backend: local, session: user}}]
reply: {{edit_interval: 0.05}}
"""
    config = parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY)
    return Bridge(config, TEST_REGISTRY)


async def ask_and_wait(p: LocalPlatform, text: str, **kw: Any) -> RecordingTarget:
    target = await p.say(text, **kw)
    await asyncio.wait_for(target.ended.wait(), 10)
    return target


def sample(bridge: Bridge, name: str, **labels: str) -> float | None:
    """The value of one series of the bridge's metrics (None where it is not exported)."""
    want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    series = f"{name}{{{want}}}" if labels else name
    for line in bridge.metrics.render().decode().splitlines():
        if line.rsplit(" ", 1)[0] == series:
            return float(line.rsplit(" ", 1)[1])
    return None
