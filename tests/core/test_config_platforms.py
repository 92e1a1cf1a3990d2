"""The platforms a config may name are the registry's: a platform added to its table
is configured and routed to like a built-in one."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import ConfigDict

from adapters.registry import REGISTRY
from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.interfaces import Address, Handler, Platform, PlatformOptions, Registry, ReplyTarget


class LinesOptions(PlatformOptions):
    """The `lines:` block."""

    model_config = ConfigDict(extra="forbid")

    questions: list[str] = []


class LinesPlatform(Platform):
    """A platform known only to the registry below; the config reads it, nothing runs it."""

    name: ClassVar[str] = "lines"
    Options: ClassVar[type[PlatformOptions]] = LinesOptions

    async def start(self, handler: Handler) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def target(self, address: Address) -> ReplyTarget:
        raise NotImplementedError


BUILT_IN = Registry(
    dialects=REGISTRY.dialects,
    platforms={name: REGISTRY.platforms[name] for name in ("slack", "discord", "console")},
)
WITH_LINES = Registry(
    dialects=REGISTRY.dialects,
    platforms={**BUILT_IN.platforms, "lines": lambda: LinesPlatform},
)

CONFIG = """
backends:
  local: {kind: openai, url: "http://127.0.0.1:11434/v1", model: m}
routes:
  - {platform: lines, backend: local}
lines:
  questions: [hi]
"""


def test_a_platform_added_to_the_registry_has_a_block_and_routes() -> None:
    config = parse_config(CONFIG, {}, WITH_LINES)
    assert config.routes[0].platform == "lines"
    assert config.routes[0].serves("lines")
    options = config.platforms["lines"]
    assert isinstance(options, LinesOptions)
    assert options.questions == ["hi"]


def test_an_added_platforms_block_is_checked_by_its_options() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG.replace("questions:", "questoins:"), {}, WITH_LINES)
    assert str(err.value).startswith("lines.questoins: unknown key")


def test_an_added_platform_routed_without_its_block_is_refused() -> None:
    text = CONFIG.split("lines:\n")[0]
    with pytest.raises(ConfigError) as err:
        parse_config(text, {}, WITH_LINES)
    assert str(err.value) == "routes[0].platform: lines is routed but has no `lines:` block"


def test_a_route_names_one_of_the_registrys_platforms() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG.replace("platform: lines", "platform: line"), {}, WITH_LINES)
    assert str(err.value) == (
        "routes[0].platform: must be one of slack, discord, console, lines, any (read as 'line')"
    )
    # Without it in the table, the platform is none of the config's.
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG, {}, BUILT_IN)
    assert str(err.value) == (
        "lines: looks like a platform's settings: write them under `console:`"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG.split("lines:\n")[0], {}, BUILT_IN)
    assert str(err.value) == (
        "routes[0].platform: must be one of slack, discord, console, any (read as 'lines')"
    )
