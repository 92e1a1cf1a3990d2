"""PostgreSQL the server, apart from what the store keeps in it: how many connections
a process keeps to it (`pool_size`), its URL as messages show it (`describe_url`,
never the password), and what the driver's errors mean, in words an admin can act
on (`server_error`)."""

from __future__ import annotations

import math
import ssl
import urllib.parse

import asyncpg

from bridge.errors import StoreError

# The pool's size follows limits.max_concurrent_streams: one connection per
# STREAMS_PER_CONNECTION streams (an answer holds one only for its statements, a few
# milliseconds each), at least POOL_MIN (the default 64 streams get 10) and at most
# POOL_MAX, so that a few replicas and a rolling deploy's extra one stay within
# PostgreSQL's default max_connections (100, 3 of them kept for superusers).
POOL_MIN = 10
POOL_MAX = 30
STREAMS_PER_CONNECTION = 8


def pool_size(streams: int) -> int:
    """The most connections a process answering `streams` at once keeps to PostgreSQL."""
    return max(POOL_MIN, min(POOL_MAX, math.ceil(streams / STREAMS_PER_CONNECTION)))


# What the driver raises when the server or the connection fails: `server_error`'s.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

_LOGIN_ERRORS = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "postgresql://(unparsable URL)"


def server_error(exc: BaseException, what: str, where: str, url: str, pool_max: int) -> StoreError:
    """A StoreError that says what went wrong with PostgreSQL at `where` (`describe_url`
    of `url`) while `what`, and what to do; never the password. `pool_max` is the
    pool's size."""
    where = f"PostgreSQL at {where}"
    if isinstance(exc, _LOGIN_ERRORS):
        return StoreError(f"{where} refused the login; check the user and password in `store:`")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(f"{where}: the database does not exist; create it first")
    if isinstance(exc, asyncpg.InvalidSchemaNameError):
        schema = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("search_path", [""])[0]
        named = f" {schema!r}" if schema else ""
        return StoreError(
            f"{where}: the schema{named} (search_path in `store:`) does not exist; "
            "create it first (CREATE SCHEMA)"
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StoreError(
            f"{where}: the user may not do this ({what}); grant it the rights to "
            "create and write tables in the database or schema"
        )
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return StoreError(
            f"{where} has no free connections ({what}); raise its max_connections "
            f"(each bridge process keeps up to {pool_max} connections, a number "
            "that grows with limits.max_concurrent_streams: see docs/store.md) or "
            "lower limits.max_concurrent_streams"
        )
    if isinstance(exc, TimeoutError):
        return StoreError(
            f"{where} did not answer in time ({what}); check the server and the network"
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        if isinstance(exc, ssl.SSLError) or "SSL" in reason:
            return StoreError(
                f"TLS with {where} failed ({reason}) while {what}; check `sslmode` "
                "(and `sslrootcert`) in `store:` against the server's TLS set-up"
            )
        return StoreError(
            f"cannot reach {where} ({reason}) while {what}; check that the server is "
            "running and that `store:` points at it"
        )
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return StoreError(f"{where}: the connection failed while {what}: {exc}")
    return StoreError(f"{where} failed while {what}: {exc.__class__.__name__}: {exc}")
