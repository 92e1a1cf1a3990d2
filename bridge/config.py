"""Configuration: one YAML file -> validated pydantic models.

`${VAR}` and `${VAR:-default}` are expanded from the environment before
validation. Every error names the key path (`routes[2].session: ...`) and never
shows a secret's value: a value the environment gave is shown as the `${VAR}`
that names it (`bridge.env`), whichever key it was given to, as any of them
may hold a token.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from bridge.config_errors import explain, read_at
from bridge.config_yaml import read_yaml
from bridge.env import FromEnv, env_hidden, expand_env
from bridge.errors import ConfigError
from bridge.history import MOST_TURNS
from bridge.interfaces import THINKING_TEXT, DialectOptions, PlatformOptions, Registry
from bridge.route_ids import id_problem, in_no_dm_workspace

# The platforms of a config read without a registry (whose table says, where one is
# given: `platform_keys`).
BUILT_IN_PLATFORMS = ("slack", "discord", "console")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class RateLimitConfig(_Model):
    """Per-user message budget."""

    messages: int = Field(10, ge=1)
    per: float = Field(60.0, gt=0)


class RouteConfig(_Model):
    """Which messages go to which backend, and how conversations are scoped."""

    # A platform of the registry's table (`platform_keys`), or "any".
    platform: str = "any"
    workspace: list[str] | None = None
    channels: list[str] | None = None
    dm: bool | None = None
    users: list[str] | None = None
    roles: list[str] | None = None
    trigger: Literal["mention", "all", "dm"] = "mention"
    session: Literal["thread", "channel", "user", "user+channel"] = "thread"
    backend: str
    reply_in_thread: bool = False
    rate_limit: RateLimitConfig | None = None
    # Turns of history kept and sent for this route's questions, where its backend is
    # stateless; None: the backend's `history`.
    history: int | None = Field(None, ge=0, le=MOST_TURNS)

    def serves(self, platform: str) -> bool:
        """Whether the route takes messages of `platform`."""
        return self.platform in ("any", platform)

    @property
    def dms_only(self) -> bool:
        """Whether the route takes DMs alone (`dm: true`, or `trigger: dm`)."""
        return self.dm is True or self.trigger == "dm"

    @field_validator("platform", mode="before")
    @classmethod
    def _known_platform(cls, value: Any, info: ValidationInfo) -> Any:
        """One of the platforms the config is read with (`parse_config`'s registry,
        given as the validation context), or "any"."""
        context = info.context if isinstance(info.context, Mapping) else {}
        choices = (*context.get("platforms", BUILT_IN_PLATFORMS), "any")
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    @field_validator("workspace", "channels", "users", "roles", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        """Ids as strings: a Discord id copied from the app is a number, and YAML reads
        it as one (exactly); one id alone is a list of one."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        elif isinstance(value, str):
            if not value.strip() or any(c == "," or c.isspace() for c in value.strip()):
                # `${CHANNELS}` holding "C1,C2", or nothing: no id would ever match.
                raise ValueError('must be a list of ids, e.g. ["C0123ABCD", "C0456EFGH"]')
            value = [value.strip()]
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("workspace", "channels", "users", "roles")
    @classmethod
    def _id_shapes(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Ids, not names, links or email addresses: a route matches by ids alone, so
        a name would pass and the route would never answer."""
        platform = info.data.get("platform", "any")
        for item in value or ():
            problem = id_problem(str(info.field_name), item, platform)
            if problem:
                raise ValueError(problem)
        return value


class SourcesConfig(_Model):
    show: bool = True
    max: int = Field(5, ge=0, le=50)


class ReplyConfig(_Model):
    """How live replies are shown."""

    edit_interval: float = Field(1.0, ge=0.05, le=60)
    # Past it an answer is stopped: a model repeating itself for ever would fill
    # the channel with messages and spend credits nobody reads. None: no limit.
    max_answer_chars: int | None = Field(20000, ge=500)
    sources: SourcesConfig = SourcesConfig()
    thinking_text: str = THINKING_TEXT


class HttpConfig(_Model):
    """The daemon's HTTP listener: /healthz, /metrics, /slack/events."""

    listen: str | None = "127.0.0.1:8080"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "/" in value:  # `http://0.0.0.0:8080`, `0.0.0.0:8080/`: no address to bind
            raise ValueError('must be "host:port" without a scheme, e.g. "0.0.0.0:8080"')
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError('must be "host:port", e.g. "127.0.0.1:8080"')
        return value


class CircuitConfig(_Model):
    """When to stop calling a backend that keeps failing."""

    failures: int = Field(5, ge=1)
    cooldown: float = Field(30.0, gt=0)


class LimitsConfig(_Model):
    """Guards for the daemon as a whole."""

    max_concurrent_streams: int = Field(64, ge=1)
    queue_size: int = Field(256, ge=0)
    # Questions waiting behind another of their own conversation (answered one at a
    # time), each conversation apart: they never hold up other conversations.
    conversation_queue_size: int = Field(10, ge=0)
    max_question_chars: int = Field(4000, ge=1)
    rate_limit: RateLimitConfig = RateLimitConfig()
    shutdown_grace: float = Field(20.0, ge=0)
    event_ttl: float = Field(86400.0, gt=0)
    # Conversations unused this long are forgotten, with their history; None: kept.
    conversation_ttl: float | None = Field(None, gt=0)
    circuit: CircuitConfig = CircuitConfig()
    # (A floor: at a microsecond the heartbeat held a core and the store busy.)
    heartbeat_interval: float = Field(10.0, ge=0.01)


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, populate_by_name=True
    )


class CommandsConfig(_Model):
    reset_keywords: list[str] = ["reset"]
    reset_reply: str = "Started a new conversation."

    @field_validator("reset_reply")
    @classmethod
    def _says_something(cls, value: str) -> str:
        # The platforms refuse to post nothing: the asker was told the reset failed,
        # though it was done.
        if not value.strip():
            raise ValueError(
                "must say something: the asker is told it once the conversation is reset"
            )
        return value


class Config(_Model):
    """The whole configuration."""

    store: str = "sqlite:///data/chat-bridge.db"
    http: HttpConfig = HttpConfig()
    backends: dict[str, Any]
    platforms: dict[str, Any] = {}
    routes: list[RouteConfig]
    reply: ReplyConfig = ReplyConfig()
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = LoggingConfig()
    commands: CommandsConfig = CommandsConfig()

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        if value.startswith("postgres"):
            # A password's "/", "?" or ":" cuts the host part short, where a port then
            # is no number; after a "#" the rest would be lost as a fragment.
            netloc = urllib.parse.urlsplit(value).netloc
            hosts = netloc.rpartition("@")[2].split(",")
            ports = [h.rpartition(":")[2] for h in hosts if ":" in h and not h.endswith("]")]
            # A second "@": a password's, which the driver would take for the host's start.
            unreadable = (
                "#" in value or netloc.count("@") > 1 or not all(port.isdigit() for port in ports)
            )
            if unreadable:  # never echoed: it holds a password
                raise ValueError(
                    "cannot be read as a URL; %-encode special characters in its user and "
                    "password (@ as %40, / as %2F, # as %23, : as %3A)"
                )
            # `?port=` names the hosts' ports too. Beyond 65535 the socket refused it at
            # connect, long after `check` had passed; 0 is no server's port. The port
            # is never echoed: an unencoded "/" can put a password's digits there.
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(value).query)
            ports += [p for v in query.get("port", []) for p in v.split(",") if p]
            if not all(port.isdigit() and 1 <= int(port) <= 65535 for port in ports):
                raise ValueError(
                    "has a port outside 1-65535; check the store URL's port (PostgreSQL's "
                    "is 5432), and %-encode special characters in its user and password "
                    "(/ as %2F, : as %3A)"
                )
        return value

    def secrets(self) -> list[str]:
        """Every secret value in the config, so logs can be scrubbed of them."""
        found: list[str] = []
        for block in (*self.backends.values(), *self.platforms.values()):
            _collect_secrets(block, found)
        for block in self.backends.values():
            # A key may ride in a URL's query (`?key=${KEY}`), which an HTTP client logs.
            url = getattr(block, "url", None)
            if isinstance(url, str):
                found += _query_values(url)
        found += _query_values(self.store, keys=("password", "sslpassword"))
        if "@" in self.store and "://" in self.store:
            userinfo = self.store.split("://", 1)[1].split("@", 1)[0]
            if ":" in userinfo:
                found.append(userinfo.split(":", 1)[1])
        return [s for s in found if s]


_TOP_KEYS = {"store", "http", "backends", "routes", "reply", "limits", "logging", "commands"}


def platform_keys(registry: Registry | None) -> tuple[str, ...]:
    """The platforms a config may have a block of and route to: the registry's table,
    or the built-in ones where no registry is given."""
    return tuple(registry.platforms) if registry is not None else BUILT_IN_PLATFORMS


def _query_values(url: str, keys: tuple[str, ...] | None = None) -> list[str]:
    """The values in a URL's query long enough to be a key (not `?v=1`); only those
    of `keys`, when given."""
    query = urllib.parse.urlsplit(url).query if "?" in url else ""
    return [
        value
        for name, value in urllib.parse.parse_qsl(query)
        if (keys is None and len(value) >= 8) or (keys is not None and name in keys)
    ]


def _collect_secrets(model: Any, out: list[str]) -> None:
    from pydantic import SecretStr

    if isinstance(model, SecretStr):
        out.append(model.get_secret_value())
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            _collect_secrets(getattr(model, name), out)
    elif isinstance(model, Mapping):
        for value in model.values():
            _collect_secrets(value, out)
    elif isinstance(model, list | tuple):
        for value in model:
            _collect_secrets(value, out)


def _validate(
    model: type[BaseModel],
    data: Any,
    prefix: str,
    used: list[FromEnv],
    context: Mapping[str, Any] | None = None,
) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise explain(prefix, exc, used) from None


def parse_config(
    text: str,
    env: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> Config:
    """Validate a YAML config text. Raises ConfigError naming the key path, where a
    value the environment gave is shown as its `${VAR}` (`env_hidden`)."""
    raw = read_yaml(text)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("", "the file must be a mapping of keys (store, backends, routes, ...)")
    used: list[FromEnv] = []
    raw = expand_env(raw, os.environ if env is None else env, used=used)
    try:
        return _validated(raw, registry, used)
    except ConfigError as exc:
        raise env_hidden(exc, used) from None


def _validated(raw: dict[Any, Any], registry: Registry | None, used: list[FromEnv]) -> Config:
    """The config of an expanded YAML tree (see `parse_config`), where `used` holds
    the values the environment gave."""
    keys = platform_keys(registry)
    for key in raw:
        if key not in _TOP_KEYS and key not in keys:
            raise ConfigError(str(key), _misplaced(str(key), raw, registry))
    platforms = {k: raw.pop(k) for k in keys if k in raw}
    for key in ("backends", "routes"):
        if key not in raw:
            raise ConfigError(key, "is required")
    if not isinstance(raw["backends"], dict) or not raw["backends"]:
        raise ConfigError("backends", "must map at least one backend name to its settings")
    config: Config = _validate(Config, raw, "", used, {"platforms": keys})

    backends: dict[str, DialectOptions] = {}
    for name, block in config.backends.items():
        backends[name] = _backend_options(name, block, registry, used)
    validated_platforms: dict[str, Any] = {}
    for name, block in platforms.items():
        validated_platforms[name] = _platform_options(name, block, registry, used)
        needs = validated_platforms[name].needs_listener()
        if needs and config.http.listen is None:
            raise ConfigError(
                "http.listen",
                f"{needs} needs the HTTP listener; set http.listen "
                '(e.g. "0.0.0.0:8080"), or use Socket Mode with slack.app_token',
            )

    if not config.routes:
        raise ConfigError("routes", "is empty, so nothing would ever be answered: add a route")
    for i, route in enumerate(config.routes):
        for name in ("workspace", "channels", "users", "roles"):
            if getattr(route, name) == []:
                raise ConfigError(
                    f"routes[{i}].{name}",
                    "is an empty list, so this route could never answer: leave it out "
                    "(or null) for any",
                )
        if route.backend not in backends:
            known = ", ".join(sorted(backends))
            raise ConfigError(
                f"routes[{i}].backend", f"no backend named {route.backend!r} (known: {known})"
            )
        kind = backends[route.backend].kind
        if route.history is not None and registry and registry.dialects[kind]().stateful:
            stateless = [k for k, load in registry.dialects.items() if not load().stateful]
            raise ConfigError(
                f"routes[{i}].history",
                f"backend {route.backend!r} is a {kind} API, which keeps its conversations "
                "itself: the bridge sends it no history, so drop `history` (it is for "
                f"routes to stateless APIs: {', '.join(stateless)})",
            )
        if route.channels is not None and route.dms_only:
            raise ConfigError(
                f"routes[{i}].channels",
                "a DM is in a channel of its own, so this route could never answer: "
                "drop `channels`, or `dm: true` / `trigger: dm`",
            )
        if route.dms_only and in_no_dm_workspace(route.platform, route.workspace):
            raise ConfigError(
                f"routes[{i}].workspace",
                "a Discord DM is in no server (its workspace is @dm), so this route could "
                "never answer: drop `workspace`, or `dm: true` / `trigger: dm`",
            )
        if route.dms_only and route.roles is not None:
            raise ConfigError(
                f"routes[{i}].roles",
                "a DM carries no roles, so this route could never answer: drop `roles`, "
                "or `dm: true` / `trigger: dm`",
            )
        if route.dm is False and route.trigger == "dm":
            raise ConfigError(
                f"routes[{i}].dm",
                "`dm: false` with `trigger: dm` could never answer: drop one of them",
            )
        if route.roles is not None and route.platform in ("slack", "console"):
            raise ConfigError(
                f"routes[{i}].roles",
                f"{route.platform} messages carry no roles, so this route could never "
                "answer: roles are Discord's",
            )
        if route.platform not in ("any", "console") and route.platform not in validated_platforms:
            raise ConfigError(
                f"routes[{i}].platform",
                f"{route.platform} is routed but has no `{route.platform}:` block",
            )
    return config.model_copy(update={"backends": backends, "platforms": validated_platforms})


_SECTIONS: dict[str, type[BaseModel]] = {
    "http": HttpConfig,
    "reply": ReplyConfig,
    "limits": LimitsConfig,
    "logging": LoggingConfig,
    "commands": CommandsConfig,
}


def _has_key(model: type[BaseModel], key: str) -> bool:
    return any(key in (name, field.alias) for name, field in model.model_fields.items())


def _shaped_like(value: Any, registry: Registry | None) -> str | None:
    """What an unknown top-level key's value looks like, by its keys, and where it
    belongs: a backend (`backends:` left with its name unindented below it), the
    backends, a route or the routes, a platform's block; None if nothing."""

    def route(item: Any) -> bool:
        return isinstance(item, dict) and "backend" in item

    if isinstance(value, list) and value and all(route(item) for item in value):
        return "looks like the routes (items with `backend:`): list them under `routes:`"
    if not isinstance(value, dict) or not value:
        return None
    # `kind:` says a backend (a `url:` alone may be a store's or a proxy's).
    keys = [k for k in ("kind", "url") if k in value] if "kind" in value else []
    if keys:
        has = " and ".join(f"`{k}:`" for k in keys)
        return f"looks like a backend (it has {has}): indent it under `backends:`"
    if all(isinstance(v, dict) and "kind" in v for v in value.values()):
        return "looks like the backends (each with `kind:`): list them under `backends:`"
    if route(value):
        return (
            "looks like a route (it has `backend:`): make it an item of `routes:`, "
            "indented under it and starting with `- `"
        )
    homes = [
        name
        for name, load in (registry.platforms.items() if registry else ())
        if all(_has_key(load().Options, str(k)) for k in value)
    ]
    if homes:
        where = " or ".join(f"`{name}:`" for name in homes)
        return f"looks like a platform's settings: write them under {where}"
    return None


def _misplaced(key: str, raw: Mapping[Any, Any], registry: Registry | None) -> str:
    """What to say of an unknown top-level key: where it belongs when its value looks
    like a backend, a route or a platform's block, or when it is a key of a section, a
    platform's block or a route (indented wrong, or a route's key written where no
    route is), else to check its spelling."""
    shaped = _shaped_like(raw.get(key), registry)  # None: a key YAML read as no string
    if shaped is not None:
        return shaped

    def has(model: type[BaseModel]) -> bool:
        return _has_key(model, key)

    homes = [f"`{name}:`" for name, model in _SECTIONS.items() if has(model)]
    platforms = (
        [
            name
            for name in (registry.platforms if registry else ())
            if has(registry.platforms[name]().Options)
        ]
        if registry
        else []
    )
    # A key several platforms have (api_url): the blocks the file has.
    platforms = [name for name in platforms if name in raw] or platforms
    homes += [f"`{name}:`" for name in platforms]
    if has(RouteConfig) and homes:
        return (
            f"not a top-level key: indent it under {' or '.join(homes)}, or (a route's "
            "own) under an item of `routes:`"
        )
    if has(RouteConfig):
        return "not a top-level key but a route's: indent it under an item of `routes:`"
    if homes:
        return f"not a top-level key: indent it under {' or '.join(homes)}"
    return "unknown key (check its spelling)"


def _backend_options(
    name: str, block: Any, registry: Registry | None, used: list[FromEnv]
) -> DialectOptions:
    path = f"backends.{name}"
    if not isinstance(block, dict):
        raise ConfigError(path, "must be a mapping with at least `kind:` and `url:`")
    kind = block.get("kind")
    if registry is None:
        raise ConfigError(path, "no dialect registry given")
    if not isinstance(kind, str) or kind not in registry.dialects:
        read = read_at(f"{path}.kind", kind, used)
        raise ConfigError(f"{path}.kind", f"must be one of {', '.join(registry.dialects)}{read}")
    # `kind` is a key of the table (checked just above), so a str.
    dialect = registry.dialects[cast(str, kind)]()
    options: DialectOptions = _validate(dialect.Options, block, path, used)
    return options


def _platform_options(
    name: str, block: Any, registry: Registry | None, used: list[FromEnv]
) -> PlatformOptions:
    if registry is None or name not in registry.platforms:
        raise ConfigError(name, "no such platform")
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ConfigError(name, "must be a mapping of settings")
    return _validate(registry.platforms[name]().Options, block, name, used)


def load_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> Config:
    """Read and validate a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError("", f"{path} is not UTF-8 text (line {line}); save it as UTF-8") from None
    return parse_config(text, env, registry)
