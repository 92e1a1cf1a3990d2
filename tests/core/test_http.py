from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import BridgeError
from bridge.http import HttpServer
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform
from tests.fakes.chatapi import FakeChatAPI


def make(fake: FakeChatAPI, tmp_path: Path) -> Bridge:
    text = f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: "127.0.0.1:0"}}
backends:
  docs: {{kind: chatmount, url: "{fake.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs}}]
reply: {{edit_interval: 0.05}}
"""
    return Bridge(parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY),
                  TEST_REGISTRY)


async def test_healthz_reports_what_is_down(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch
) -> None:
    async with make(fake_chat_api, tmp_path) as bridge:
        base = f"http://127.0.0.1:{bridge.http_port}"
        async with httpx.AsyncClient() as client:
            ok = await client.get(f"{base}/healthz")
            assert ok.status_code == 200
            assert ok.json() == {"status": "ok", "down": {}}

            monkeypatch.setattr(LocalPlatform, "connected", property(lambda self: False))
            down = await client.get(f"{base}/healthz")
            assert down.status_code == 503
            assert down.json() == {"status": "unhealthy", "down": {"console": "disconnected"}}

            await bridge.store.aclose()  # the store stops answering
            worse = await client.get(f"{base}/healthz")
            assert worse.status_code == 503
            assert worse.json()["down"] == {"console": "disconnected", "store": "unavailable"}
            assert str(tmp_path) not in worse.text  # where the store is stays in the log


async def test_metrics_count_messages_and_backend_quota(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["a", "b"], usage={"credits_used": 1, "credits_remaining": 41})
    async with make(fake_chat_api, tmp_path) as bridge:
        target = await bridge.platforms["console"].say("hi")  # type: ignore[attr-defined]
        await asyncio.wait_for(target.ended.wait(), 10)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{bridge.http_port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'chat_bridge_messages_received_total{platform="console"} 1.0' in body
    assert (
        'chat_bridge_messages_answered_total{backend="docs",outcome="answered",platform="console"}'
        " 1.0" in body
    )
    assert 'chat_bridge_backend_credits_remaining{backend="docs"} 41.0' in body
    assert 'chat_bridge_backend_ratelimit_remaining{backend="docs"}' in body
    assert "chat_bridge_time_to_first_token_seconds_bucket" in body
    assert "chat_bridge_live_streams 0.0" in body
    assert "chat_bridge_queue_depth 0.0" in body


async def test_a_listen_address_in_use_is_one_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = HttpServer(f"127.0.0.1:{port}", _healthy, lambda: b"")
        with pytest.raises(BridgeError, match=rf"http.listen 127.0.0.1:{port}: cannot listen"):
            await server.start()
        await server.aclose()
    finally:
        taken.close()


async def _healthy() -> dict[str, str]:
    return {}
