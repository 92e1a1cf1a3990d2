"""Connections to the chat APIs: one per stream, made off the loop, holding no finished reply."""

from __future__ import annotations

import asyncio
import gc
import ssl
import threading
from pathlib import Path

import pytest

from bridge import transport
from bridge.render import LiveReply
from bridge.transport import AiohttpTransport
from tests.core.fakeplatform import wait_for
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_the_chat_api_pool_has_a_connection_for_every_stream(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # With more streams than connections, answers past the pool's size waited for a
    # connection and failed to connect in time.
    extra = "limits: {max_concurrent_streams: 1500, queue_size: 10}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        transport = bridge.chat_http._transport  # the client's own transport
        assert isinstance(transport, AiohttpTransport)
        assert transport.max_connections >= 1500


async def test_a_finished_reply_is_freed_while_its_connection_stays_open(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The chat API's connection, kept open for the next request, keeps a copy of
    # the context it was last read in; that copy held the whole reply, its text
    # and its platform target, for as long as the connection lived. The
    # heartbeat, which beats here while the answer streams, held the last reply
    # it saw until it saw another.
    fake_chat_api.enqueue(tokens=["a ", "b ", "c"], token_delay=0.05)
    extra = "limits: {heartbeat_interval: 0.02}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        target = await platform(bridge).say("Hello?")
        await asyncio.wait_for(target.ended.wait(), 10)
        await wait_for(lambda: bridge.relay.live == 0)
        transport = bridge.chat_http._transport
        assert isinstance(transport, AiohttpTransport) and transport._session is not None
        assert transport._session.connector is not None
        pooled = sum(len(c) for c in transport._session.connector._conns.values())
        assert pooled == 1  # the connection waits in the pool
        gc.collect()
        assert [o for o in gc.get_objects() if isinstance(o, LiveReply)] == []


async def test_the_chat_apis_tls_context_is_made_off_the_event_loop(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loading the CAs takes tens of milliseconds: on the loop, the first question
    # after a start would hold every other reply that long.
    made_in: list[threading.Thread] = []
    make = transport._tls_context

    def recording() -> ssl.SSLContext:
        made_in.append(threading.current_thread())
        return make()

    monkeypatch.setattr(transport, "_tls_context", recording)
    fake_chat_api.enqueue(tokens=["Fine."])
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("How are you?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["Fine."]
    assert made_in and threading.main_thread() not in made_in
