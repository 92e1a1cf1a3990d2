"""Shared pieces of the dialect tests: an HTTP client fixture and stream helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest_asyncio

from adapters.registry import REGISTRY
from bridge.errors import ChatAPIError
from bridge.interfaces import ChatAPI, ChatEvent, ChatRequest, Done, Token
from bridge.transport import http_client
from tests.fakes.chatapi import FakeChatAPI

FAST_RETRIES = {"attempts": 3, "backoff": 0.01, "max_backoff": 0.02}

# The options each dialect needs beyond url, api_key and retries (none, for a kind
# not listed).
REQUIRED: dict[str, dict[str, Any]] = {
    "chatmount": {},
    "ndjson": {},
    "chaturdata": {},
    "bot-messages": {"bot_slug": "taxson"},
    "openai": {"model": "test-model"},
}


def make(kind: str, fake: FakeChatAPI, client: httpx.AsyncClient, **options: Any) -> ChatAPI:
    """A dialect from a config block, as the core builds it, pointed at the fake."""
    block = {
        "kind": kind,
        "url": fake.endpoint(kind),
        "api_key": fake.api_key,
        "retries": FAST_RETRIES,
        **REQUIRED.get(kind, {}),
        **options,
    }
    cls = REGISTRY.dialects[kind]()
    opts = cls.Options.model_validate(block)
    if kind == "chaturdata":
        opts = opts.model_copy(update={"poll_interval": 0.02})
    return cls("bot", opts, client)


def ask(api: ChatAPI, message: str = "What are your hours?", **kw: Any) -> ChatRequest:
    """A request as the relay makes it for the first message of a conversation."""
    session = api.new_session() if api.stateful and api.client_sessions else None
    return ChatRequest(message=message, session=session, user_id="slack:T1:U1", **kw)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The shared HTTP client a dialect is built with."""
    async with http_client() as client:
        yield client


async def collect(api: ChatAPI, req: ChatRequest) -> list[ChatEvent]:
    """Every event of one answer (raises what the stream raises)."""
    async with aclosing(api.stream(req)) as events:
        return [event async for event in events]


async def collect_until_error(
    api: ChatAPI, req: ChatRequest
) -> tuple[list[ChatEvent], ChatAPIError]:
    """The events yielded before the stream raised, and the error."""
    seen: list[ChatEvent] = []
    try:
        async with aclosing(api.stream(req)) as events:
            async for event in events:
                seen.append(event)
    except ChatAPIError as exc:
        return seen, exc
    raise AssertionError(f"the stream ended without an error: {seen!r}")


def text_of(events: list[ChatEvent]) -> str:
    """The concatenated tokens."""
    return "".join(e.text for e in events if isinstance(e, Token))


def done_of(events: list[ChatEvent]) -> Done:
    """The one final Done, checked to be last and unique."""
    dones = [e for e in events if isinstance(e, Done)]
    assert len(dones) == 1 and events[-1] is dones[0], events
    return dones[0]


async def cancel_mid_stream(api: ChatAPI, req: ChatRequest) -> list[ChatEvent]:
    """Start a stream, cancel its task after the first token; returns what it saw."""
    seen: list[ChatEvent] = []
    first = asyncio.Event()

    async def consume() -> None:
        async with aclosing(api.stream(req)) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, Token):
                    first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await first.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert task.cancelled()
    return seen
