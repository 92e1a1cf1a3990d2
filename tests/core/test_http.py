from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bridge import http as http_module
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import BridgeError
from bridge.http import HttpServer
from bridge.interfaces import Address
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
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
    return Bridge(
        parse_config(text, env={"KEY": fake.api_key}, registry=TEST_REGISTRY), TEST_REGISTRY
    )


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
            # One platform's probe (a load balancer's for Slack's requests) leaves the
            # others' out; one not configured is told so.
            one = await client.get(f"{base}/healthz", params={"platform": "slack"})
            assert one.status_code == 503
            assert one.json()["down"] == {"slack": "not configured"}
            both = await client.get(f"{base}/healthz", params={"platform": "console,slack"})
            assert set(both.json()["down"]) == {"console", "slack"}

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


async def test_a_store_that_hangs_is_told_down_in_time_and_in_the_metrics(
    fake_chat_api: FakeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `/healthz` waited the store's own timeouts (10-40 s): the image's health check
    # (4 s) saw a timeout, never why; and nothing in `/metrics` said what was down.
    monkeypatch.setattr("bridge.app.HEALTH_STORE_SECONDS", 0.2)
    async with make(fake_chat_api, tmp_path) as bridge:
        base = f"http://127.0.0.1:{bridge.http_port}"
        async with httpx.AsyncClient() as client:
            up = (await client.get(f"{base}/metrics")).text
            assert 'chat_bridge_component_up{component="store"} 1.0' in up
            assert 'chat_bridge_component_up{component="console"} 1.0' in up

            async def hangs() -> None:
                await asyncio.Event().wait()

            monkeypatch.setattr(bridge.store, "ping", hangs)
            down = await client.get(f"{base}/healthz", timeout=5)
            assert down.status_code == 503
            assert down.json()["down"] == {"store": "unavailable"}
            metrics = (await client.get(f"{base}/metrics", timeout=5)).text
    assert 'chat_bridge_component_up{component="store"} 0.0' in metrics
    assert 'chat_bridge_component_up{component="console"} 1.0' in metrics


async def test_streams_are_counted_while_the_chat_api_streams_and_timed_when_answered(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A failed request's time went into the chat API's answer times (an outage made
    # them look faster), and an answer counted as streaming until the platform
    # showed its end, past `max_concurrent_streams`.
    fake_chat_api.enqueue(status=400, body={"error": "no"})
    fake_chat_api.enqueue(tokens=["a", "b"])
    async with make(fake_chat_api, tmp_path) as bridge:
        console = bridge.platforms["console"]
        failed = await console.say("one", thread="T1")  # type: ignore[attr-defined]
        await asyncio.wait_for(failed.ended.wait(), 10)
        timed = bridge.metrics.stream_seconds.labels("docs")
        assert _count(timed) == 0
        held = asyncio.Event()
        target = console.target(Address("console", "W1", "C1", "T2"))  # type: ignore[attr-defined]
        end = target.end

        async def slow_end() -> None:
            await held.wait()  # the platform takes its time to finish the reply
            await end()

        target.end = slow_end  # type: ignore[method-assign]
        await console.say("two", thread="T2")  # type: ignore[attr-defined]
        await wait_for(lambda: _count(timed) == 1)
        assert bridge.relay.live == 1
        assert bridge.metrics.live_streams._value.get() == 0
        held.set()
        await asyncio.wait_for(target.ended.wait(), 10)


def _count(histogram: Any) -> float:
    return next(
        s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count")
    )


async def test_a_listen_address_in_use_is_one_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = HttpServer(f"127.0.0.1:{port}", _healthy, _no_metrics)
        with pytest.raises(BridgeError) as caught:
            await server.start()
        await server.aclose()
    finally:
        taken.close()
    # The error named the address, not what to do about it.
    assert str(caught.value).startswith(f"http.listen 127.0.0.1:{port}: cannot listen there (")
    assert str(caught.value).endswith("; choose a free port in http.listen, or stop what holds it")


async def test_a_port_that_needs_privileges_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*args: object, **kwargs: object) -> asyncio.AbstractServer:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(asyncio.get_running_loop(), "create_server", refused)
    server = HttpServer("0.0.0.0:80", _healthy, _no_metrics)
    with pytest.raises(BridgeError) as caught:
        await server.start()
    assert str(caught.value) == (
        "http.listen 0.0.0.0:80: cannot listen there (Permission denied); a port below 1024 "
        "needs privileges (root or CAP_NET_BIND_SERVICE): choose one of 1024 or above in "
        "http.listen"
    )


async def test_the_listener_is_an_async_context_manager() -> None:
    # Like the store, the clients and the platforms, the daemon's lifespan enters it.
    async with HttpServer("127.0.0.1:0", _healthy, _no_metrics) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            url = f"http://127.0.0.1:{server.port}/healthz"
            assert (await client.get(url)).status_code == 200
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_listening_on_every_ipv6_address_takes_ipv4_too() -> None:
    # `[::]:8080` is how many write "every address"; the image's health check asks
    # 127.0.0.1, and Docker publishes ports over IPv4.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = HttpServer(f"[::]:{port}", _healthy, _no_metrics)
    await server.start()
    try:
        hosts = ["127.0.0.1"] + (["[::1]"] if _has_ipv6_loopback() else [])
        async with httpx.AsyncClient(trust_env=False) as client:
            for host in hosts:
                response = await client.get(f"http://{host}:{port}/healthz", timeout=5)
                assert response.status_code == 200, host
    finally:
        await server.aclose()


async def test_a_request_whose_headers_never_end_is_closed_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_module, "HEADER_SECONDS", 0.3)
    server = HttpServer("127.0.0.1:0", _healthy, _no_metrics)
    await server.start()
    try:
        reader, writer = await _half_sent(server.port)
        # aiohttp's own deadline is an hour: the wait would time out.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        async with httpx.AsyncClient() as client:  # the listener itself is fine
            assert (await client.get(f"http://127.0.0.1:{server.port}/healthz")).status_code == 200
    finally:
        await server.aclose()


async def test_at_the_cap_half_sent_requests_make_room_and_healthz_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chat_bridge.http")
    # Those whose client sent something in the last second are kept (see the burst
    # below): here every half-sent one counts as idle at once.
    monkeypatch.setattr(http_module, "IDLE_SECONDS", 0.0)
    async with _capped(monkeypatch, 4) as server:
        held = [await _half_sent(server.port) for _ in range(4)]
        more: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        clients: list[httpx.AsyncClient] = []
        try:
            # Each /healthz, on a connection of its own kept open, closes the oldest.
            for _ in range(3):
                clients.append(client := httpx.AsyncClient())
                ok = await client.get(f"http://127.0.0.1:{server.port}/healthz")
                assert ok.status_code == 200
            for reader, _ in held[:3]:
                assert await asyncio.wait_for(reader.read(), 5) == b""
            more += [await _half_sent(server.port) for _ in range(20)]
            for reader, _ in more[:-4]:  # the crowd pushes itself out, the newest stay
                assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            for _, writer in held + more:
                writer.close()
            for client in clients:
                await client.aclose()
    full = [r for r in caplog.records if r.name == "chat_bridge.http"]
    assert len(full) == 1  # once a minute at most, not once a connection
    assert full[0].levelno == logging.WARNING
    assert "http.listen is full (4 connections" in full[0].getMessage()


async def test_at_the_cap_requests_whose_body_stalls_make_room_and_healthz_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A handler reading a body counted its connection busy: a crowd of bodies that
    # never end (by anyone: Slack's endpoint reads before it can check a signature)
    # kept /healthz and Slack out with 503 until each body's deadline.
    monkeypatch.setattr(http_module, "IDLE_SECONDS", 0.0)
    reading = asyncio.Semaphore(0)

    async def read(request: web.Request) -> web.Response:
        reading.release()
        try:
            return web.Response(text=f"{len(await request.read())} bytes")
        except ConnectionError:
            return web.Response(status=400)

    monkeypatch.setattr(http_module, "MAX_CONNECTIONS", 4)
    server = HttpServer("127.0.0.1:0", _healthy, _no_metrics)
    server.add_route("POST", "/read", read)
    await server.start()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            held.append((reader, writer))
        for _ in range(4):
            await asyncio.wait_for(reading.acquire(), 5)
        async with httpx.AsyncClient() as client:
            ok = await client.get(f"http://127.0.0.1:{server.port}/healthz")
            assert ok.status_code == 200
        async with httpx.AsyncClient() as client:  # a connection of its own too
            done = await client.post(f"http://127.0.0.1:{server.port}/read", content=b"{}")
            assert done.text == "2 bytes"
        # The oldest stalled body made room.
        closed = await asyncio.wait_for(held[0][0].read(), 5)
        assert not closed.startswith(b"HTTP/1.1 2")
    finally:
        for _, writer in held:
            writer.close()
        await server.aclose()


async def test_connections_already_closed_do_not_count_against_the_cap(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Counted for a second after they closed, a client opening and closing
    # connections (holding none) had /healthz and Slack answered 503.
    caplog.set_level(logging.WARNING, logger="chat_bridge.http")
    async with _capped(monkeypatch, 4) as server:
        for _ in range(8):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.close()
            await writer.wait_closed()
        assert server._runner is not None
        held = server._runner.server
        assert held is not None
        await wait_for(lambda: not held.connections)
        async with httpx.AsyncClient() as client:
            ok = await client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert ok.status_code == 200
    assert not [r for r in caplog.records if r.name == "chat_bridge.http"]


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chat_bridge.http")
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    async def slow(request: web.Request) -> web.Response:
        entered.release()
        await release.wait()
        return web.Response(text="done")

    async with _capped(monkeypatch, 2, slow=slow) as server, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{server.port}"
        busy = [asyncio.create_task(client.get(f"{url}/slow")) for _ in range(2)]
        for _ in range(2):
            await asyncio.wait_for(entered.acquire(), 5)
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503 ")
        release.set()
        assert [(await task).text for task in busy] == ["done", "done"]
        assert (await client.get(f"{url}/healthz")).status_code == 200
    full = [r for r in caplog.records if r.name == "chat_bridge.http"]
    assert len(full) == 1
    assert "refused 1 new ones" in full[0].getMessage()


async def test_at_the_cap_requests_just_arrived_are_kept_and_the_next_one_reads_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A burst through a proxy that opens a connection per request: requests whose bytes
    # had arrived, their handling not yet begun, were closed as idle to make room, and
    # the client refused at the cap saw its connection reset, not the 503.
    arrived = asyncio.Semaphore(0)
    go = asyncio.Event()

    @web.middleware
    async def not_yet(request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived.release()  # parsed, and held before the listener's handling begins
        await go.wait()
        return await handler(request)

    monkeypatch.setattr(http_module, "MAX_CONNECTIONS", 4)
    server = HttpServer("127.0.0.1:0", _healthy, _no_metrics)
    server.app.middlewares.insert(0, not_yet)
    await server.start()
    try:
        held = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            held.append((reader, writer))
        for _ in range(4):
            await asyncio.wait_for(arrived.acquire(), 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b"{" + b" " * 300_000 + b"}"  # a request the listener leaves unread
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        try:
            answer = await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
        go.set()
        for reader, writer in held:
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        go.set()
        await server.aclose()


async def test_malformed_requests_are_one_debug_line_and_a_handlers_failure_an_error(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each was an ERROR with a ten-line traceback, from anyone on the network: the
    # internet's scanners buried the log.
    caplog.set_level(logging.DEBUG)
    malformed = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 9000 + b": 1\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        # Broken past a first request, and a body unread whose compression is broken.
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nFOO\x00 / HTTP/1.1\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 5\r\n\r\nabcde",
    ]

    async def fails(request: web.Request) -> web.Response:
        raise RuntimeError("the handler's own bug")

    async with _capped(monkeypatch, http_module.MAX_CONNECTIONS, fails=fails) as server:
        for raw in malformed:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1."), raw[:40]  # answered, the listener fine
        async with httpx.AsyncClient() as client:
            failed = await client.get(f"http://127.0.0.1:{server.port}/fails")
        assert failed.status_code == 500
    malformed_lines = [r for r in caplog.records if "(a malformed request)" in r.getMessage()]
    assert len(malformed_lines) == len(malformed)
    assert all(r.levelno == logging.DEBUG and not r.exc_info for r in malformed_lines)
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.exc_info and "the handler's own bug" in str(error.exc_info[1])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def _capped(
    monkeypatch: pytest.MonkeyPatch, cap: int, **routes: Handler
) -> AsyncIterator[HttpServer]:
    """A started listener holding `cap` connections at most, with `routes` (GET) too."""
    monkeypatch.setattr(http_module, "MAX_CONNECTIONS", cap)
    server = HttpServer("127.0.0.1:0", _healthy, _no_metrics)
    for path, handler in routes.items():
        server.add_route("GET", f"/{path}", handler)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


async def _half_sent(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    await writer.drain()
    return reader, writer


async def _healthy(only: Collection[str] | None = None) -> dict[str, str]:
    return {}


async def _no_metrics() -> bytes:
    return b""
