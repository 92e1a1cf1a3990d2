"""The chat APIs' transport: httpx requests sent over aiohttp, bodies read on demand."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohappyeyeballs
import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from adapters.platforms.discord.failures import platform_error
from adapters.platforms.slack.refusal import guard
from bridge.errors import PlatformUnreachable
from bridge.transport import BadAddress, CompressedBody, OutOfFiles, http_client
from tests.fakes.proxy import FakeProxy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A raw HTTP/1.1 server on loopback; yields its base URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length) if length else b""


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


async def test_what_arrives_between_reads_comes_in_one_read() -> None:
    written = asyncio.Event()
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + chunk(b"first\n"))
        await writer.drain()
        await go_on.wait()
        for i in range(20):  # one network write per token, as chat APIs send them
            writer.write(chunk(b"token %d\n" % i))
            await writer.drain()
        written.set()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        async with client.stream("POST", url, json={"q": 1}) as response:
            chunks = aiter(response.aiter_bytes())
            assert await anext(chunks) == b"first\n"
            go_on.set()
            await written.wait()  # all 20 tokens were sent while nobody read
            rest = await anext(chunks)
            assert rest.count(b"token") == 20
            assert [c async for c in chunks] == []


async def test_a_connection_is_reused_after_a_complete_body() -> None:
    peers: list[object] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        for _ in range(2):
            await read_request(reader)
            writer.write(STREAM_HEAD + chunk(b"a\n") + chunk(b"b\n") + b"0\r\n\r\n")
            await writer.drain()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        for _ in range(2):
            async with client.stream("GET", url) as response:
                assert b"".join([c async for c in response.aiter_bytes()]) == b"a\nb\n"
    assert len(peers) == 1  # the second request went over the same connection


async def test_a_stream_closed_halfway_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + chunk(b"partial\n"))
        await writer.drain()
        await reader.read()  # until the client goes away
        closed.set()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        async with client.stream("GET", url) as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(closed.wait(), 5)


async def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with http_client() as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{port}/v1/chat?key=sk-secret-1")
    assert not isinstance(caught.value, BadAddress)  # a server restarting, as likely as not
    assert str(caught.value) == f"connection refused at 127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (
            errno.EMFILE,
            "the bridge is out of open files (its limit is 1234): raise it "
            "(`ulimit -n`, docker's --ulimit nofile=) or lower limits.max_concurrent_streams",
        ),
        (
            errno.ENFILE,
            "the system is out of open files (ENFILE): raise its limit "
            "(fs.file-max) or lower limits.max_concurrent_streams",
        ),
    ],
    ids=["process", "system"],
)
async def test_a_connection_the_bridge_has_no_file_for_says_so(
    monkeypatch: pytest.MonkeyPatch, code: int, said: str
) -> None:
    async def out_of_files(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(code, "Too many open files")

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", out_of_files)
    monkeypatch.setattr("bridge.transport.resource.getrlimit", lambda _: (1234, 4096))
    async with http_client() as client:
        with pytest.raises(OutOfFiles) as caught:
            await client.get("http://127.0.0.1:9/v1/chat?key=sk-secret-1")
    assert str(caught.value) == said


async def test_a_platform_request_the_bridge_has_no_file_for_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slack's and Discord's failed requests were "could not be reached" (ClientConnector
    # Error): the admin looked at the network, not at `ulimit -n`.
    monkeypatch.setattr("bridge.transport.resource.getrlimit", lambda _: (1234, 4096))
    short = OSError(errno.EMFILE, "Too many open files")

    async def failing() -> None:
        raise aiohttp.ClientConnectorError(
            ConnectionKey("slack.com", 443, True, True, None, None, None), short
        )

    with pytest.raises(PlatformUnreachable) as slack:
        await guard("chat.update", failing())
    assert str(slack.value) == (
        "Slack could not be reached for chat.update: the bridge is out of open files (its "
        "limit is 1234): raise it (`ulimit -n`, docker's --ulimit nofile=) or lower "
        "limits.max_concurrent_streams"
    )
    discord = platform_error("edit the reply", short)
    assert str(discord).startswith(
        "Could not reach Discord to edit the reply: the bridge is out of open files"
    )


async def test_a_host_name_that_does_not_resolve_is_named() -> None:
    async with http_client() as client:
        with pytest.raises(BadAddress) as caught:
            await client.get("https://chat.exmaple-typo.invalid/v1/chat?key=sk-secret-1")
    assert str(caught.value) == (
        "the host name chat.exmaple-typo.invalid does not resolve (check the backend's url)"
    )


async def test_a_resolver_failing_for_now_is_no_wrong_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # EAI_AGAIN: the name may well be right, and the asker may try again shortly.
    async def failing(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", failing)
    async with http_client() as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get("https://chat.example.com/v1/chat")
    assert not isinstance(caught.value, BadAddress)
    assert str(caught.value) == "the host name chat.example.com could not be looked up for now"


async def test_https_to_a_plain_http_port_says_the_tls_handshake_failed() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # a TLS hello, answered as HTTP/1.1 would
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        secure = url.replace("http://", "https://")
        with pytest.raises(BadAddress) as caught:
            await client.get(f"{secure}/v1/chat?key=sk-secret-1")
    said = str(caught.value)
    where = secure.removeprefix("https://")
    assert said.startswith(
        f"the TLS handshake with {where} failed (check the url's scheme and port, "
        "or the certificate: "
    ), said
    assert "sk-secret-1" not in said and "/v1/chat" not in said


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server's TLS context with a certificate nobody vouches for."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):  # CI runs every test: a missing tool is its failure
            pytest.fail("needs the openssl command to make a certificate; install it in CI")
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_a_certificate_refused_says_why(self_signed: ssl.SSLContext) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=self_signed)
    port = server.sockets[0].getsockname()[1]
    try:
        async with http_client() as client:
            with pytest.raises(BadAddress) as caught:
                await client.get(f"https://127.0.0.1:{port}/v1/chat?key=sk-secret-1")
    finally:
        server.close()
        await server.wait_closed()
    assert str(caught.value) == (
        f"the TLS handshake with 127.0.0.1:{port} failed (check the url's scheme and port, "
        "or the certificate: self-signed certificate)"
    )


async def test_a_body_cut_off_is_an_httpx_transport_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + chunk(b"half of it\n"))
        await writer.drain()
        writer.close()  # no final chunk

    async with serve(handler) as url, http_client() as client:
        async with client.stream("GET", url) as response:
            chunks = aiter(response.aiter_bytes())
            assert await anext(chunks) == b"half of it\n"
            with pytest.raises(httpx.TransportError):
                await anext(chunks)


async def test_requests_and_responses_keep_their_headers_and_bodies() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        seen.append(await reader.readexactly(length))
        body = b'{"error": "nope"}'
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        response = await client.post(
            url + "/v1/chat", json={"message": "hi"}, headers={"Authorization": "Bearer k"}
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": "nope"}
    head = seen[0].lower()
    assert head.startswith(b"post /v1/chat http/1.1")
    assert b"authorization: bearer k" in head
    assert b"content-type: application/json" in head
    assert seen[1] == b'{"message":"hi"}'


async def test_an_http_proxy_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        body = b'{"ok": true}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async with serve(proxy) as proxy_url:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        async with http_client() as client:
            response = await client.get("http://chat.example.invalid/v1/health")
    assert response.json() == {"ok": True}
    assert seen == [b"GET http://chat.example.invalid/v1/health HTTP/1.1"]


async def test_a_loopback_host_is_reached_directly_whatever_the_proxy_variables_say(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    # A proxy elsewhere cannot reach this machine's loopback: `chat-bridge demo`'s
    # stand-in API was asked through it, and the proxy's 403 told as a bad API key.
    async def api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with serve(api) as url, FakeProxy(credentials="corp:right-password") as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            no_proxies.setenv(name, proxy.url)
        async with http_client() as client:
            answers = [
                (await client.get(f"{base}/v1/health")).text
                for base in (url, url.replace("127.0.0.1", "localhost"))
            ]
    assert answers == ["ok", "ok"]
    assert proxy.seen == []


async def test_a_proxys_credentials_are_sent_to_it(no_proxies: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with serve(proxy) as where:
        no_proxies.setenv("HTTP_PROXY", where.replace("http://", "http://me:s3cret@"))
        async with http_client() as client:
            response = await client.get("http://chat.example.invalid/v1/health")
    assert response.text == "ok"
    assert b"Proxy-Authorization: Basic bWU6czNjcmV0" in seen[0]  # me:s3cret


async def test_the_fake_proxy_takes_its_credentials_and_refuses_others(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    async def api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    statuses: list[int] = []
    async with serve(api) as url, FakeProxy(credentials="corp:right-password") as proxy:
        # A .test name, which the proxy reaches: loopback would be reached direct.
        named = url.replace("127.0.0.1", "api.test")
        for password in ("right-password", "expired-s3cret"):
            no_proxies.setenv("HTTP_PROXY", proxy.url.replace("//", f"//corp:{password}@"))
            async with http_client() as client:
                statuses.append((await client.get(f"{named}/v1/health")).status_code)
    assert statuses == [200, 407]
    assert proxy.saw("GET http://api.test:")


async def test_a_proxy_named_without_a_scheme_is_used(no_proxies: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with serve(proxy) as where:
        no_proxies.setenv("HTTP_PROXY", where.removeprefix("http://"))
        async with http_client() as client:
            response = await client.get("http://chat.example.invalid/v1/health")
    assert response.text == "ok"
    assert seen == [b"GET http://chat.example.invalid/v1/health HTTP/1.1"]


async def test_no_proxy_sends_a_host_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    async def api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b'{"direct": true}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    with socket.socket() as closed:  # a port nothing listens on: a proxy there would fail
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    async with serve(api) as url:
        for name in ("HTTPS_PROXY", "https_proxy", "http_proxy", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", dead)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with http_client() as client:
            first = await client.get(f"{url}/v1/health")
            again = await client.get(f"{url}/v1/health")  # the origin's answer is remembered
    assert first.json() == again.json() == {"direct": True}


async def test_a_cookie_one_answer_got_is_not_sent_with_the_next() -> None:
    """The client serves every conversation: a cookie set in one person's answer (a
    session an API keys on a cookie) must not ride along with someone else's question."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            heads.append(head.lower())
            body = b"{}"
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=alice; Path=/\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        for _ in range(2):  # by name: aiohttp keeps no cookie of a bare IP address
            response = await client.get(url.replace("127.0.0.1", "localhost") + "/v1/chat")
            assert response.status_code == 200
        assert len(client.cookies) == 0
    assert len(heads) == 2
    assert all(b"cookie" not in head for head in heads), heads


async def test_an_answer_is_asked_for_uncompressed_and_one_compressed_is_not_read() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        body = gzip.compress(b"\n" * (1 << 20))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async with serve(handler) as url, http_client() as client:
        # Whatever the caller asks for, the transport asks for no compression.
        async with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status_code == 200  # status and headers are there to read
            with pytest.raises(CompressedBody) as caught:
                await response.aread()
    assert caught.value.coding == "gzip"
    assert "Content-Encoding: gzip" in str(caught.value)
    sent = [line.lower() for line in heads[0].split(b"\r\n")]
    assert [line for line in sent if line.startswith(b"accept-encoding:")] == [
        b"accept-encoding: identity"
    ]
