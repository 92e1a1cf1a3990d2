"""A chat API's answer that comes compressed: asked for none, refused unread.

A few kilobytes of gzip can inflate to gigabytes: inflated as they arrive, on
the event loop, they would stall every conversation and take the memory.
"""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from bridge.errors import ProtocolError, Unauthorized, Unavailable
from tests.apis.helpers import ask, collect, collect_until_error, make, text_of
from tests.fakes.chatapi import FakeChatAPI

KINDS = ["chatmount", "ndjson", "chaturdata", "bot-messages", "openai"]
REFUSED = "The assistant's answer could not be read (it came compressed). Tell an admin."


def gzipped(*parts: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join(packer.compress(p) for p in parts) + packer.flush()


@pytest.mark.parametrize("kind", KINDS)
async def test_every_request_asks_for_an_uncompressed_answer(fake_chat_api, http, kind):
    api = make(kind, fake_chat_api, http)
    assert text_of(await collect(api, ask(api))) == "Hello from the fake."
    assert fake_chat_api.requests
    assert {r.headers.get("accept-encoding") for r in fake_chat_api.requests} == {"identity"}


@pytest.mark.parametrize("kind", KINDS)
async def test_an_answer_compressed_all_the_same_is_refused_with_a_notice(
    fake_chat_api, http, caplog, kind
):
    fake_chat_api.compress = True  # a small, well-formed answer, gzip-compressed
    api = make(kind, fake_chat_api, http)
    with caplog.at_level(logging.WARNING, "adapters.apis"):
        seen, exc = await collect_until_error(api, ask(api))
    assert seen == []
    assert type(exc) is ProtocolError and exc.user_message == REFUSED and exc.backend == "bot"
    assert len(fake_chat_api.requests) == 1  # asking again would be answered the same way
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert getattr(warning, "backend", None) == "bot"
    assert "compressed (Content-Encoding: gzip)" in warning.getMessage()


@pytest.mark.parametrize("stream", [True, False])
async def test_a_compressed_error_keeps_its_status_and_its_body_is_not_read(
    fake_chat_api, http, caplog, stream
):
    fake_chat_api.compress = True
    fake_chat_api.enqueue(status=503, body={"error": "down for maintenance"})
    api = make("chatmount", fake_chat_api, http, stream=stream, retries={"attempts": 1})
    with caplog.at_level(logging.INFO, "adapters.apis"):
        _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unavailable) and exc.status == 503
    assert "maintenance" not in caplog.text
    assert "(its body came compressed, Content-Encoding: gzip: not read)" in caplog.text
    api = make("chatmount", fake_chat_api, http, api_key="wrong-key", stream=stream)
    _, exc = await collect_until_error(api, ask(api))
    assert isinstance(exc, Unauthorized)


@pytest_asyncio.fixture
async def bomb() -> AsyncIterator[str]:
    """A ChatMount URL whose stream is a token, then 16 MiB of newlines: 16 KiB of gzip."""
    body = gzipped(b'data: {"type":"token","content":"Hi"}\n\n', b"\n" * (16 << 20))

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )
        await resp.prepare(request)
        for i in range(0, len(body), 4096):
            await resp.write(body[i : i + 4096])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat", handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat"
    finally:
        await runner.cleanup()


async def test_a_gzip_bomb_is_refused_without_inflating_it(bomb, http: httpx.AsyncClient):
    fake = FakeChatAPI()
    fake.url = bomb.removesuffix("/v1/chat")
    api = make("chatmount", fake, http, retries={"attempts": 1})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    tracemalloc.start()
    try:
        ticking = asyncio.create_task(ticker())
        _, exc = await collect_until_error(api, ask(api))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    turned, ticks = ticks, 0
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    ticking.cancel()
    # Inflated, the 16 MiB would have been held at once (and a list entry made of each
    # newline), on the event loop; refused, nothing of it was.
    assert peak < 4 << 20, peak
    assert type(exc) is ProtocolError and exc.user_message == REFUSED
    assert turned > 0 and ticks > 0  # the loop went on turning, and still does
