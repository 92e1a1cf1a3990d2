"""The chat APIs' HTTP transport: httpx's interface over aiohttp's connections.

Dialects speak httpx (`httpx.AsyncClient`, its requests, responses and
errors). Underneath, this transport sends the requests with aiohttp, for two
reasons that matter when hundreds of answers stream at once:

- aiohttp decodes chunked bodies in C and hands over everything that has
  arrived in one read, where httpx's own stack turns every HTTP chunk (one
  token, for most chat APIs) into a separate event through several layers;
- a body is read only while its reader asks for more: between reads the
  socket is paused, so tokens that arrive while a reply waits for its next
  edit (see `bridge.interfaces.READ_GATE`) gather in the kernel and cost one
  read, not one each.

aiohttp's errors become the httpx errors they correspond to, so a dialect's
error handling is the same whichever transport it runs on. A failure to
connect says what failed in words an admin can act on (a host name that does
not resolve, a TLS handshake that failed, a refused connection), naming the
host and port only: never the URL, whose query may carry a key. A proxy that
could not be reached is `ProxyConnectError`, and one that refuses the tunnel
`ProxyDenied` (`ProxyAuthFailed` for its 407), each naming the proxy and the
variable to check (`bridge.proxies`), never its password. A connection the
bridge could not open as it is out of open files is `OutOfFiles`, naming the
limit to raise.

The chat APIs trust certifi's CAs, or, where SSL_CERT_FILE or SSL_CERT_DIR is
set, what OpenSSL's defaults do (`tls_context`), as Slack's and Discord's
clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.cookiejar
import os
import resource
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping

import aiohttp
import httpx
import yarl

from bridge.errors import ConfigError
from bridge.proxies import (
    PROXY_AUTH_REQUIRED,
    env_proxy,
    host_port,
    proxy_refusal,
    proxy_unreachable,
    proxy_variable,
)

# aiohttp's errors and what they mean to an httpx caller; the first match wins.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.TimeoutException),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


# getaddrinfo's answers that the name does not exist (not that the lookup failed).
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class ProxyDenied(httpx.ProxyError):
    """The proxy the environment names refused the tunnel to the API: it answered
    CONNECT with `status` (403, say: the host is not on its allow list). Trying
    again will not mend it. The message (`bridge.proxies.proxy_refused`) names the
    proxy and what to check (the variable, NO_PROXY)."""

    def __init__(self, message: str, *, status: int, request: httpx.Request) -> None:
        super().__init__(message, request=request)
        self.status = status


class ProxyAuthFailed(ProxyDenied):
    """The proxy the environment names refused the request its credentials (407 Proxy
    Authentication Required, to a tunnel). The message says which variable to check."""


class ProxyConnectError(httpx.ConnectError):
    """The proxy the environment names could not be reached (it refused the
    connection, say): the request went no further. The message names the proxy's
    host and port and the variable to check."""


class BadAddress(httpx.ConnectError):
    """A connection that trying again will not mend: the URL's host name does not
    resolve, or the TLS handshake failed (https to a plain-HTTP port, a certificate
    refused). The message says what to check."""


class CompressedBody(httpx.DecodingError):
    """The answer's body came compressed (`coding`: its Content-Encoding) though the
    request asked for none: it is not read. An API (or a proxy between) that
    compresses regardless is told by the message, which names the coding."""

    def __init__(self, coding: str, *, request: httpx.Request) -> None:
        super().__init__(
            f"the answer came compressed (Content-Encoding: {coding}) though the request "
            "asked for none (Accept-Encoding: identity): not read; turn compression off "
            "at the API, or at a proxy between",
            request=request,
        )
        self.coding = coding


def content_coding(values: Iterable[str]) -> str | None:
    """The Content-Encoding (`values`: each of its headers) of a body that is coded
    (gzip, br, a chain of them...); None for one sent as is (none, or identity)."""
    codings = [c.strip().lower() for c in ",".join(values).split(",")]
    coded = [c for c in codings if c and c != "identity"]
    return ", ".join(coded)[:100] if coded else None


class OutOfFiles(httpx.ConnectError):
    """The bridge could not open a connection: the process is out of open files
    (EMFILE), or the system is (ENFILE). The far end is not at fault; the message
    names the limit and what to do."""


# A socket (or the resolver's) refused as the process or the system has no file left.
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE}


@contextlib.contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as exc:
        refused = proxy_refusal(exc)
        if refused is not None:
            status = getattr(exc, "status", PROXY_AUTH_REQUIRED)
            if status >= 500:  # the proxy could not reach the API: as a refused connection
                raise httpx.ConnectError(refused, request=request) from exc
            kind = ProxyAuthFailed if status == PROXY_AUTH_REQUIRED else ProxyDenied
            raise kind(refused, status=status, request=request) from exc
        said = _connect_failure(exc, str(request.url))
        if said is not None:
            raise said[0](said[1], request=request) from exc
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                # The message names the error type only: aiohttp's text may
                # quote the URL, which can carry a key in its query.
                raise ours(type(exc).__name__, request=request) from exc
        raise


def _connect_failure(
    exc: aiohttp.ClientError, url: str
) -> tuple[type[httpx.ConnectError], str] | None:
    """The httpx error and the words for a connection for `url` that failed for a
    reason an admin can act on; None for the others. Host and port are aiohttp's
    (those of the proxy, where it was the proxy that failed), never the URL."""
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return None
    if exc.errno in _OUT_OF_FILES:  # whoever it was to reach, the proxy too
        return OutOfFiles, _out_of_files(exc.errno)
    where = host_port(exc.host, exc.port)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        why = "connection refused" if _refused(exc) else (exc.strerror or type(exc).__name__)
        return ProxyConnectError, proxy_unreachable(url, where, why)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if exc.errno in _NO_SUCH_NAME:
            target = yarl.URL(url)
            if exc.host != target.host:  # the proxy's: the variable naming it is wrong
                name = proxy_variable(target) or "HTTPS_PROXY / HTTP_PROXY"
                return BadAddress, (
                    f"the host name {exc.host} of the proxy does not resolve (check {name})"
                )
            return BadAddress, (
                f"the host name {exc.host} does not resolve (check the backend's url)"
            )
        # The resolver failed for now (EAI_AGAIN, say): the name may well be right.
        return httpx.ConnectError, f"the host name {exc.host} could not be looked up for now"
    if isinstance(exc, aiohttp.ClientSSLError):
        return BadAddress, (
            f"the TLS handshake with {where} failed (check the url's scheme and port, "
            f"or the certificate: {_tls_reason(exc)})"
        )
    if _refused(exc):
        return httpx.ConnectError, f"connection refused at {where}"
    return None


def _refused(exc: aiohttp.ClientConnectorError) -> bool:
    return isinstance(exc.os_error, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED


def out_of_files(exc: BaseException) -> str | None:
    """`_out_of_files`' words where `exc` failed for want of an open file (a platform
    client's connection error, or the OSError itself); None for any other."""
    code = getattr(exc, "errno", None)
    return _out_of_files(code) if code in _OUT_OF_FILES else None


def _out_of_files(code: int | None) -> str:
    """What an admin is told of a connection refused for want of open files."""
    if code == errno.ENFILE:
        return (
            "the system is out of open files (ENFILE): raise its limit (fs.file-max) "
            "or lower limits.max_concurrent_streams"
        )
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        f"the bridge is out of open files (its limit is {soft}): raise it (`ulimit -n`, "
        "docker's --ulimit nofile=) or lower limits.max_concurrent_streams"
    )


def _tls_reason(exc: aiohttp.ClientSSLError) -> str:
    """Why a TLS handshake failed: "self-signed certificate", "wrong version number"..."""
    cause = getattr(exc, "certificate_error", None) or exc.os_error
    said = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
    if isinstance(cause, ssl.SSLError) and said:
        return str(said).replace("_", " ").lower() if str(said).isupper() else str(said)
    return type(cause).__name__


def plain_url(value: str, *, credentials: str = "") -> str:
    """`value`, a URL without a user or password and with a valid host and port;
    else ValueError, which never echoes it (what precedes an @ is a password, and
    a key may ride in the query). `credentials` says where they go instead."""
    if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError(f"must not carry a user or password (user:password@host){credentials}")
    try:
        host = yarl.URL(value).host
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        host = None
    if not host or any(c.isspace() for c in value):
        raise ValueError("is not a valid URL (check its host and port)")
    return value


class _Body(httpx.AsyncByteStream):
    """A response body, read only while its consumer asks for more.

    Its own async iterator rather than an async generator: one fewer object per
    answer streaming, and none in the event loop's registry of async generators.
    A body that came compressed (`coding`) raises `CompressedBody` at its first
    read: nothing of it reaches httpx's decoders."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, coding: str | None
    ) -> None:
        self._response = response
        self._request = request
        self._coding = coding

    def _socket(self) -> asyncio.Transport | None:
        connection = self._response.connection  # None once the body is complete
        transport = connection.transport if connection is not None else None
        return transport if isinstance(transport, asyncio.Transport) else None

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self._coding is not None:
            raise CompressedBody(self._coding, request=self._request)
        content = self._response.content
        socket = self._socket()
        if socket is not None:
            socket.resume_reading()
        with _as_httpx(self._request):
            chunk = await content.readany()
        if not chunk:
            raise StopAsyncIteration
        socket = self._socket()
        if socket is not None and not content.is_eof():
            # Leave what arrives next in the kernel until it is asked for.
            socket.pause_reading()
        return chunk

    async def aclose(self) -> None:
        response = self._response
        if response.content.is_eof():
            response.release()  # the connection goes back to the pool
        else:
            response.close()  # a body left unread: drop its connection


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending requests with one aiohttp session."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        keepalive: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str, int | None], str | None] = {}

    @property
    def max_connections(self) -> int:
        """The most connections open at once (a request waits for one beyond that)."""
        return self._max_connections

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the running loop
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive,
                ssl=self._ssl or _tls_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, as it would on its own transport
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                # A cookie of one conversation's answer is not sent with another's.
                cookie_jar=aiohttp.DummyCookieJar(),
                # Proxies come from `_proxy`: aiohttp's own trust_env would make two
                # trips to a worker thread (netrc, then the environment) per request.
                trust_env=False,
            )
        return self._session

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy the environment names for `url` (`env_proxy`); read once per origin."""
        origin = (url.scheme, url.host, url.port)
        if origin not in self._proxies:
            if len(self._proxies) >= 256:
                self._proxies.clear()
            where = yarl.URL.build(scheme=url.scheme, host=url.host, port=url.port)
            self._proxies[origin] = env_proxy(str(where))
        return self._proxies[origin]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers.raw
            if k.lower() not in _NOT_SENT
        ]
        # httpx's default asks for gzip: see the module's docstring.
        headers.append(("Accept-Encoding", "identity"))
        proxy = self._proxy(request.url)
        with _as_httpx(request):
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                proxy=proxy,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=_sum(timeout.get("pool"), timeout.get("connect")),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        coding = content_coding(response.headers.getall("Content-Encoding", ()))
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request, coding),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# Request headers not passed on: aiohttp sets the first three, the transport the last.
_NOT_SENT = (b"host", b"content-length", b"transfer-encoding", b"accept-encoding")


def _sum(*parts: float | None) -> float | None:
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: object, request: object) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None


async def tls_context() -> ssl.SSLContext:
    """The chat APIs' TLS context (`_tls_context`), made in a worker thread: loading
    the CAs takes tens of milliseconds, which the first question would otherwise
    hold the event loop for."""
    return await asyncio.to_thread(_tls_context)


def _tls_context() -> ssl.SSLContext:
    """The CAs the chat APIs trust: certifi's; or, where SSL_CERT_FILE or SSL_CERT_DIR
    is set, OpenSSL's default paths, as Slack's and Discord's clients (aiohttp's
    default) trust them: the bundle SSL_CERT_FILE names in place of the system's,
    and the directory SSL_CERT_DIR names (certificates by their hash) in place of
    the system's, each whether the other is set or not. (httpx's own reading took
    SSL_CERT_FILE alone where both were set.)"""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    return httpx.create_ssl_context(trust_env=False)  # certifi's


def check_tls_env(env: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError where SSL_CERT_FILE names no file: OpenSSL would pass it by
    without a word, and the private CA it holds go untrusted."""
    env = os.environ if env is None else env
    bundle = env.get("SSL_CERT_FILE", "")
    if bundle and not os.path.isfile(bundle):
        raise ConfigError(
            "SSL_CERT_FILE",
            "names no file (give the path of a PEM bundle of the CAs to "
            "trust: the public roots and your private CA)",
        )
    if bundle:
        try:  # one not PEM (a CA exported as DER) is passed by as silently
            ssl.create_default_context(cafile=bundle)
        except (ssl.SSLError, OSError):
            raise ConfigError(
                "SSL_CERT_FILE",
                "holds no certificate this user can read as PEM (give a "
                "PEM bundle of the CAs to trust: the public roots and your private CA; "
                "`openssl x509 -inform der -in ca.der` turns a DER one into PEM)",
            ) from None


def http_client(
    max_connections: int = 1000, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    """The shared outbound client of the chat APIs; dialects set per-request timeouts.

    It keeps no cookies: it serves every conversation, and a cookie one answer
    set (a session an API keys on a cookie, say) would go with everyone's
    questions after it. Without `ssl_context` (see `tls_context`), one is made
    at the first request.
    """
    return httpx.AsyncClient(
        transport=AiohttpTransport(max_connections=max_connections, ssl_context=ssl_context),
        cookies=_NoCookies(),
        timeout=httpx.Timeout(30.0, connect=5.0),
        follow_redirects=False,
    )
