"""The proxies the environment names, and what a proxy's failure means to an admin.

Every HTTP and websocket client of the bridge (the chat APIs' transport,
Slack's and Discord's clients) takes its proxy from `env_proxy`, which reads
HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY as curl and httpx do. A
proxy's URL may carry a user and password: the words here name a proxy by its
host and port and the variable that gives it, never by its URL.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.request
from collections.abc import Mapping
from http import HTTPStatus

import aiohttp
import yarl

from bridge.errors import ConfigError

# The status a proxy answers when it wants credentials, or refuses those it was given.
PROXY_AUTH_REQUIRED = 407


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`, read as httpx and curl read it;
    None to go direct.

    HTTPS_PROXY (wss: too) or HTTP_PROXY by the URL's scheme, else ALL_PROXY, in
    upper or lower case; none for a host NO_PROXY names (a name, a domain, an
    address, or a network of them: `10.0.0.0/8`, `fd00::/8`), nor for a loopback
    one (`is_loopback`), as Go's clients and browsers take it: a proxy elsewhere
    cannot reach this machine's loopback. A proxy given without a scheme
    (`proxy.corp:3128`) is an http:// one; an https:// one is used as such; any
    other kind (socks5://) is passed by. Credentials stay in the URL (aiohttp
    sends them as Proxy-Authorization): never log it.
    """
    target = yarl.URL(url)
    scheme = {"ws": "http", "wss": "https"}.get(target.scheme, target.scheme)
    proxies = urllib.request.getproxies_environment()
    named = (proxies.get(scheme) or proxies.get("all") or "").strip()
    if not named or target.host is None or is_loopback(target.host):
        return None
    if _in_no_proxy_network(target.host, proxies.get("no", "")):
        return None
    where = target.host if target.explicit_port is None else host_port(target.host, target.port)
    if urllib.request.proxy_bypass(_bracketed(where)):  # NO_PROXY (on Linux: the environment only)
        return None
    proxy = yarl.URL(_as_url(named))
    if proxy.scheme not in ("http", "https"):
        return None  # socks5:// and the like: no client here speaks them
    return str(proxy)


def _bracketed(where: str) -> str:
    """An IPv6 address alone in brackets, as urllib's NO_PROXY reading splits a port
    off at the last colon."""
    return f"[{where}]" if where.count(":") > 1 and not where.startswith("[") else where


def _in_no_proxy_network(host: str, no_proxy: str) -> bool:
    """Whether `host`, where it is an IP address, is one NO_PROXY lists, alone or
    in a network (`10.0.0.0/8`, `192.0.2.0/24`, `fd00::/8`), as curl and httpx read
    it; urllib knows names and suffixes only."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    for entry in no_proxy.split(","):
        try:
            network = ipaddress.ip_network(
                entry.strip().replace("[", "").replace("]", ""), strict=False
            )
        except ValueError:
            continue  # a name, or `*`: urllib's
        if address in network:  # never, between IPv4 and IPv6
            return True
    return False


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback: localhost (and its subdomains,
    RFC 6761), 127.0.0.0/8 or ::1."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def host_port(host: str, port: int | None) -> str:
    """`host:port`, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _as_url(proxy: str) -> str:
    """A proxy as the variables may name it, as a URL: without a scheme, http://."""
    return proxy if "://" in proxy else f"http://{proxy}"


def proxy_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, URL) of each proxy variable set that the clients read: HTTPS_PROXY,
    HTTP_PROXY and ALL_PROXY, in any case (NO_PROXY and the like, such as
    npm_config_no_proxy, are host lists)."""
    env = os.environ if env is None else env
    return [
        (name, _as_url(value.strip()))
        for name, value in env.items()
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy") and value.strip()
    ]


def check_proxy_env(env: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError naming a proxy variable (HTTPS_PROXY...) that is no URL.

    Found at start-up, not at the first request it would fail; its value is
    never echoed (it may hold a password).
    """
    for name, url in proxy_variables(env):
        try:
            yarl.URL(url).port  # noqa: B018 - parsing is the check
        except ValueError:
            raise ConfigError(
                name,
                "is not a valid proxy URL (check its host and port, and that "
                "special characters in its password are %-encoded)",
            ) from None


def proxy_refused(url: str | yarl.URL, status: int = PROXY_AUTH_REQUIRED) -> str:
    """What a proxy's refusal of a request for `url` means, in words an admin can
    act on: the proxy (its host and port) and the variable that names it, never
    its user or password. The request went no further than the proxy: no token or
    key of it was checked.

    407 Proxy Authentication Required: the credentials to check. Any other status
    (403, say: the host is not on its allow list), answered to the tunnel of an
    https:// or wss:// URL or to a plain request: the host it was asked for, and
    NO_PROXY, to check; a 5xx says the proxy could not reach that host."""
    target = yarl.URL(url)
    name = proxy_variable(target)
    if status != PROXY_AUTH_REQUIRED:
        return _proxy_denied(target, status, name)
    if name is None:  # a proxy no variable names (a transparent one): say which they are
        return (
            "a proxy refused the request (HTTP 407 Proxy Authentication Required): "
            "check the user:password in HTTPS_PROXY / HTTP_PROXY"
        )
    proxy = yarl.URL(_as_url(os.environ[name].strip()))
    where = host_port(proxy.host or "?", proxy.port)
    if not proxy.user:
        return (
            f"the proxy at {where} asks for a user and password (HTTP 407 Proxy "
            f"Authentication Required) and {name} gives none: give the user:password "
            f"in {name} ({proxy.scheme}://user:password@{where})"
        )
    return (
        f"the proxy at {where} refused the user and password {name} gives it (HTTP 407 "
        f"Proxy Authentication Required): check the user:password in {name} (special "
        "characters %-encoded)"
    )


def _proxy_denied(target: yarl.URL, status: int, name: str | None) -> str:
    """`proxy_refused`'s words for a status other than 407."""
    asked = "the tunnel to" if target.scheme in ("https", "wss") else "the request for"
    host = host_port(target.host or "?", target.port)
    try:
        answer = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        answer = f"HTTP {status}"
    if name is None:
        proxy = "a proxy (HTTPS_PROXY / HTTP_PROXY)"
    else:
        at = yarl.URL(_as_url(os.environ[name].strip()))
        proxy = f"the proxy at {host_port(at.host or '?', at.port)} ({name})"
    if status >= 500:
        return f"{proxy} answered {answer} to {asked} {host}: it could not reach that host"
    return (
        f"{proxy} answered {answer} to {asked} {host}: check that the proxy allows "
        "that host, or list the host in NO_PROXY to reach it directly"
    )


def proxy_unreachable(url: str | yarl.URL, where: str, why: str) -> str:
    """What a proxy that could not be reached (`where`: its host and port; `why`:
    "connection refused"...) for a request for `url` means: the variable to check."""
    name = proxy_variable(yarl.URL(url)) or "HTTPS_PROXY / HTTP_PROXY"
    return (
        f"the proxy at {where} could not be reached ({why}): check {name}, and that "
        "the proxy is running"
    )


def proxy_refusal(exc: BaseException) -> str | None:
    """`proxy_refused`'s words when `exc` is aiohttp's error for a proxy's refusal:
    a 407 (to a tunnel, or a websocket's upgrade), or any other answer but 200 to
    a tunnel; None for any other error."""
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status == PROXY_AUTH_REQUIRED:
        return proxy_refused(exc.request_info.url)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return proxy_refused(exc.request_info.url, exc.status)
    return None


def proxy_variable(url: yarl.URL) -> str | None:
    """The name, as set, of the variable that gives `url` its proxy (as `env_proxy`
    reads them: by scheme, else ALL_PROXY; the lower-case one first); None if none."""
    if env_proxy(str(url)) is None:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    for kind in (scheme, "all"):
        for name in (f"{kind}_proxy", f"{kind.upper()}_PROXY"):
            if os.environ.get(name, "").strip():
                return name
    return None
