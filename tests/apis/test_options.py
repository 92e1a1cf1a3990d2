"""Dialect options through the real config loader, and the documented example blocks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "chat-apis.md"


def documented_backends() -> dict[str, dict]:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None
    return yaml.safe_load(block.group(1))["backends"]


def config_with(backends: dict) -> str:
    routes = [{"backend": name} for name in backends]
    return yaml.safe_dump({"backends": backends, "routes": routes})


def test_documented_blocks_load_and_show_every_default():
    backends = documented_backends()
    assert {b["kind"] for b in backends.values()} == set(REGISTRY.dialects)
    env = {
        "CHATMOUNT_API_KEY": "k1",
        "WIDGET_API_KEY": "k2",
        "CHATURDATA_API_KEY": "k3",
    }
    config = parse_config(config_with(backends), env, REGISTRY)
    for name, block in backends.items():
        options = config.backends[name]
        defaults = type(options).model_validate(
            {k: v for k, v in options.model_dump().items() if k in ("kind", "url")}
            | _required(options.kind)
        )
        # Every option the model has is written out in the documentation
        # (timeouts and retries in full once, for the first backend).
        documented = set(block) | {"timeouts", "retries"}
        assert set(type(options).model_fields) <= documented, name
        # ... with its default value (secrets and required values aside).
        for key in set(block) - {"api_key", "model", "url", "bot_slug"}:
            assert getattr(options, key) == getattr(defaults, key), (name, key)


def _required(kind: str) -> dict:
    """The options `kind` cannot go without (none, for a kind not listed)."""
    return {
        "chatmount": {"api_key": "k"},
        "ndjson": {"api_key": "k"},
        "chaturdata": {"api_key": "k"},
        "bot-messages": {"bot_slug": "taxson"},
        "openai": {"model": "gpt-4o-mini"},
    }.get(kind, {})


@pytest.mark.parametrize(
    ("block", "path", "problem"),
    [
        (
            {"kind": "bot-messages", "url": "https://b.example.com/v1/chat"},
            "backends.x",
            "set exactly one of bot_uid or bot_slug",
        ),
        (
            {"kind": "chatmount", "api_key": "k", "timeouts": {"idel": 3}},
            "backends.x.timeouts.idel",
            "unknown key",
        ),
        (
            {"kind": "chaturdata", "api_key": "k", "poll_interval": 30},
            "backends.x.poll_interval",
            "less than or equal to 10",
        ),
        ({"kind": "openai"}, "backends.x.model", "is required"),
        ({"kind": "ndjson", "api_key": "k", "url": "api.example.com"}, "backends.x.url", "http"),
        (
            {"kind": "ndjson", "api_key": "k", "url": "http://127.0.0.1:99999/v1/chat"},
            "backends.x.url",
            "not a valid URL (check its host and port)",
        ),
        (
            {"kind": "chatmount", "api_key": "k", "url": "https:///v1/chat"},
            "backends.x.url",
            "not a valid URL",
        ),
        (
            {"kind": "chatmount", "api_key": "k", "url": "https://[::1/v1"},
            "backends.x.url",
            "not a valid URL",
        ),
    ],
)
def test_config_errors_name_the_key(block, path, problem):
    with pytest.raises(ConfigError) as info:
        parse_config(config_with({"x": block}), {}, REGISTRY)
    assert info.value.path == path
    assert problem in str(info.value)


def test_api_key_never_shows_in_a_config_error():
    block = {"kind": "chatmount", "api_key": "cm_live_s3cret", "stream": "maybe"}
    with pytest.raises(ConfigError) as info:
        parse_config(config_with({"x": block}), {}, REGISTRY)
    assert "cm_live_s3cret" not in str(info.value)
