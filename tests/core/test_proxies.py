"""The proxies the environment names, and what the chat APIs' transport says of one
that fails: refuses its credentials or a host, cannot be reached, does not resolve."""

from __future__ import annotations

import socket

import httpx
import pytest

from bridge.proxies import env_proxy, proxy_refused
from bridge.transport import (
    BadAddress,
    ProxyAuthFailed,
    ProxyConnectError,
    ProxyDenied,
    http_client,
)
from tests.fakes.proxy import FakeProxy


@pytest.mark.parametrize(
    ("variables", "url", "found"),
    [
        # Without a scheme, as curl, pip and httpx take it: http://.
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "https://slack.com/api/", "http://proxy.corp:3128"),
        ({"https_proxy": "https://tls.corp:8443"}, "https://api.example/", "https://tls.corp:8443"),
        ({"HTTPS_PROXY": "http://p:1"}, "wss://wss-primary.slack.com/link", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, "https://api.example/", None),
        ({"ALL_PROXY": "http://all:1"}, "https://api.example/", "http://all:1"),
        ({"ALL_PROXY": "socks5://s:1080"}, "https://api.example/", None),  # none speaks it
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".internal"}, "https://a.internal/", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "localhost"}, "http://localhost:8080/x", None),
        ({"HTTPS_PROXY": " "}, "https://api.example/", None),
        # Loopback is this machine's, which no proxy elsewhere reaches: direct, NO_PROXY or not.
        ({"HTTP_PROXY": "http://p:1"}, "http://127.0.0.1:8080/v1/chat", None),
        ({"ALL_PROXY": "http://p:1"}, "http://127.8.9.10/", None),
        ({"HTTPS_PROXY": "http://p:1"}, "https://[::1]:8443/v1", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws://LocalHost:9000/gateway", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://api.localhost/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://localhost.example/", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, "http://10.0.0.1/", "http://p:1"),
        # A network NO_PROXY lists, as curl and httpx read it: an internal chat API went
        # through the corporate proxy.
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "https://10.1.2.3/v1", None),
        (
            {"HTTP_PROXY": "http://p:1", "no_proxy": ".corp, 192.0.2.0/24"},
            "http://192.0.2.2:18090/v1/chat",
            None,
        ),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "192.0.2.0/24"},
            "http://192.0.3.1/",
            "http://p:1",
        ),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"},
            "http://10.example/",
            "http://p:1",
        ),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8,.internal"},
            "https://a.internal/",
            None,
        ),
        # IPv6 addresses, alone or in a network, bracketed or not.
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "fd00::/8"}, "https://[fd12::5]/v1", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "fd12::5"}, "https://[fd12::5]/v1", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "[fd12::5]"}, "https://[fd12::5]:8443/", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"},
            "https://[fd12::5]/v1",
            "http://p:1",
        ),
    ],
)
def test_the_proxy_the_environment_names(
    no_proxies: pytest.MonkeyPatch, variables: dict[str, str], url: str, found: str | None
) -> None:
    for name, value in variables.items():
        no_proxies.setenv(name, value)
    assert env_proxy(url) == found


async def test_a_proxy_whose_host_name_does_not_resolve_is_told_as_the_proxys(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    # The admin was sent to the backend's url, which was right: the proxy's was not.
    no_proxies.setenv("HTTPS_PROXY", "http://me:s3cret@proxy.exmaple-typo.invalid:3128")
    async with http_client() as client:
        with pytest.raises(BadAddress) as caught:
            await client.get("https://chat.example.com/v1/chat")
    assert str(caught.value) == (
        "the host name proxy.exmaple-typo.invalid of the proxy does not resolve (check HTTPS_PROXY)"
    )


async def test_a_proxy_that_refuses_connections_is_named(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    # It was "ClientProxyConnectionError", and the admin sent to the backend's url.
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    no_proxies.setenv("HTTPS_PROXY", f"http://me:s3cret@127.0.0.1:{port}")
    async with http_client() as client:
        with pytest.raises(ProxyConnectError) as caught:
            await client.get("https://chat.example.com/v1/chat?key=sk-secret-1")
    assert str(caught.value) == (
        f"the proxy at 127.0.0.1:{port} could not be reached (connection refused): check "
        "HTTPS_PROXY, and that the proxy is running"
    )


@pytest.mark.parametrize(
    ("status", "kind", "said"),
    [
        (
            403,
            ProxyDenied,
            "answered HTTP 403 Forbidden to the tunnel to chat.example.invalid:"
            "443: check that the proxy allows that host, or list the host in NO_PROXY to reach "
            "it directly",
        ),
        # The proxy could not reach the API: as a connection refused, tried again.
        (
            502,
            httpx.ConnectError,
            "answered HTTP 502 Bad Gateway to the tunnel to "
            "chat.example.invalid:443: it could not reach that host",
        ),
    ],
    ids=["denied", "bad-gateway"],
)
async def test_a_tunnel_the_proxy_answers_otherwise_than_200_is_told_as_the_proxys(
    no_proxies: pytest.MonkeyPatch, status: int, kind: type[httpx.ConnectError], said: str
) -> None:
    # It was a bare RemoteProtocolError: the API "unavailable", asked again and again.
    async with FakeProxy(refuses=status) as proxy:
        no_proxies.setenv("HTTPS_PROXY", proxy.url.replace("//", "//corp:s3cret@"))
        async with http_client() as client:
            with pytest.raises(httpx.HTTPError) as caught:
                await client.get("https://chat.example.invalid/v1/chat?key=sk-secret-1")
    assert type(caught.value) is kind
    assert proxy.seen == ["CONNECT chat.example.invalid:443 HTTP/1.1"]
    where = proxy.url.removeprefix("http://")
    assert str(caught.value) == f"the proxy at {where} (HTTPS_PROXY) {said}"
    if isinstance(caught.value, ProxyDenied):
        assert caught.value.status == status


async def test_a_tunnel_the_proxy_refuses_names_the_variable_to_check(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    # It was a RemoteProtocolError: the dialects told it as the API being unavailable.
    async with FakeProxy(credentials="corp:right-password") as proxy:
        no_proxies.setenv("https_proxy", proxy.url.replace("//", "//corp:expired-s3cret@"))
        async with http_client() as client:
            with pytest.raises(ProxyAuthFailed) as caught:
                await client.get("https://chat.example.invalid/v1/health")
    assert proxy.seen == ["CONNECT chat.example.invalid:443 HTTP/1.1"]
    where = proxy.url.removeprefix("http://")
    assert caught.value.status == 407
    assert str(caught.value) == (
        f"the proxy at {where} refused the user and password https_proxy gives it (HTTP 407 "
        "Proxy Authentication Required): check the user:password in https_proxy (special "
        "characters %-encoded)"
    )


@pytest.mark.parametrize(
    ("variables", "url", "said"),
    [
        (
            {"HTTP_PROXY": "proxy.corp:3128"},
            "http://api.example/v1",
            "the proxy at proxy.corp:3128 asks for a user and password (HTTP 407 Proxy "
            "Authentication Required) and HTTP_PROXY gives none: give the user:password in "
            "HTTP_PROXY (http://user:password@proxy.corp:3128)",
        ),
        # A proxy spoken to over TLS keeps its scheme in the example.
        (
            {"HTTPS_PROXY": "https://proxy.corp:443"},
            "https://api.example/v1",
            "the proxy at proxy.corp:443 asks for a user and password (HTTP 407 Proxy "
            "Authentication Required) and HTTPS_PROXY gives none: give the user:password in "
            "HTTPS_PROXY (https://user:password@proxy.corp:443)",
        ),
        (
            {"ALL_PROXY": "http://me:s3cret@[::1]:3128"},
            "wss://gateway.example/",
            "the proxy at [::1]:3128 refused the user and password ALL_PROXY gives it",
        ),
        # No variable names a proxy for it (NO_PROXY): both are named.
        (
            {"HTTPS_PROXY": "http://me:s3cret@p:1", "NO_PROXY": ".example"},
            "https://api.example/",
            "a proxy refused the request (HTTP 407 Proxy Authentication Required): check the "
            "user:password in HTTPS_PROXY / HTTP_PROXY",
        ),
    ],
)
def test_a_proxys_407_names_the_proxy_and_its_variable_never_its_password(
    no_proxies: pytest.MonkeyPatch, variables: dict[str, str], url: str, said: str
) -> None:
    for name, value in variables.items():
        no_proxies.setenv(name, value)
    words = proxy_refused(url)
    assert words.startswith(said)
    assert "s3cret" not in words and "me:" not in words


@pytest.mark.parametrize(
    ("variables", "url", "said"),
    [
        # A plain request is forwarded, not tunnelled: the proxy answers it itself.
        (
            {"HTTP_PROXY": "http://me:s3cret@proxy.corp:3128"},
            "http://api.example/v1",
            "the proxy at proxy.corp:3128 (HTTP_PROXY) answered HTTP 403 Forbidden to the "
            "request for api.example:80: check that the proxy allows that host",
        ),
        (
            {"all_proxy": "http://me:s3cret@[fd00::3]:3128"},
            "wss://gateway.example:8443/",
            "the proxy at [fd00::3]:3128 (all_proxy) answered HTTP 403 Forbidden to the tunnel "
            "to gateway.example:8443: ",
        ),
        (
            {"HTTPS_PROXY": "http://me:s3cret@p:1", "NO_PROXY": ".example"},
            "https://api.example/",
            "a proxy (HTTPS_PROXY / HTTP_PROXY) answered HTTP 403 Forbidden to the tunnel to "
            "api.example:443: ",
        ),
    ],
)
def test_a_proxys_refusal_of_a_host_names_the_host_and_the_proxy_never_its_password(
    no_proxies: pytest.MonkeyPatch, variables: dict[str, str], url: str, said: str
) -> None:
    for name, value in variables.items():
        no_proxies.setenv(name, value)
    words = proxy_refused(url, 403)
    assert words.startswith(said)
    assert "s3cret" not in words and "me:" not in words
