"""The Discord adapter's options: the documented example is valid, a bad one names its key, and
discord.py's own loggers never log Discord's payloads."""

from __future__ import annotations

import logging

import pytest

from adapters.platforms.discord import DiscordOptions, DiscordPlatform
from bridge.interfaces import PlatformContext


def _config(discord_block: str) -> str:
    return (
        "store: sqlite:///tmp/unused.db\n"
        "backends:\n  docs: {kind: chatmount, url: 'https://a.example/v1/chat', api_key: k}\n"
        + discord_block
    )


def test_documented_config_is_valid() -> None:
    import re
    from pathlib import Path

    from adapters.registry import REGISTRY
    from bridge.config import parse_config

    doc = (Path(__file__).parents[2] / "docs" / "discord.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert block is not None
    config = parse_config(
        _config(block.group(1)), env={"DISCORD_BOT_TOKEN": "t.0.k"}, registry=REGISTRY
    )
    opts = config.platforms["discord"]
    assert opts.token.get_secret_value() == "t.0.k"
    assert opts.api_url == "https://discord.com/api/v10" and opts.gateway_url is None
    assert (opts.edit_rate.rate().count, opts.edit_rate.rate().per) == (5, 5.0)
    assert (opts.post_rate.count, opts.post_rate.per, opts.ask_ephemeral) == (5, 5.0, False)
    assert [r.trigger for r in config.routes] == ["all", "mention", "mention"]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("discord: {token: ''}", "discord.token: is empty (is the environment variable"),
        # Half a rate took its other half from another rate's default.
        ("discord: {token: d.t.k, global_rate: {count: 20}}", "discord.global_rate.per"),
        ("discord: {token: d.t.k, shard_ids: [1]}", "shard_ids needs a numeric shard_count"),
        ("discord: {token: d.t.k, shard_count: 2, shard_ids: [2]}", "from 0 to 1"),
        ("discord: {token: d.t.k, shard_count: 0}", "shard_count: must be a number of shards (1 "),
        # One line naming the key, not the branches of its type (`shard_count.int`).
        (
            "discord: {token: d.t.k, shard_count: Auto}",
            'discord.shard_count: must be a number of shards (1 or more) or "auto"',
        ),
        ("discord: {token: d.t.k, edit_rate: {count: 0}}", "discord.edit_rate.count"),
        (
            "discord: {token: d.t.k, api_url: 'ftp://x'}",
            "discord.api_url: must start with https://",
        ),
        ("discord: {token: d.t.k, gateway_url: 'http://x'}", "discord.gateway_url: must start"),
        ("discord: {token: d.t.k, colour: 1}", "discord.colour: unknown key"),
    ],
)
def test_bad_options_name_the_key(block: str, expected: str) -> None:
    from adapters.registry import REGISTRY
    from bridge.config import parse_config
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(_config(block + "\nroutes: []"), env={}, registry=REGISTRY)
    assert expected in str(caught.value)


def test_discords_payloads_and_request_bodies_are_never_logged() -> None:
    # At DEBUG discord.py's gateway logged every MESSAGE_CREATE, the question's text
    # with it, and its HTTP client the bodies of the answers.
    root = logging.getLogger()
    before = root.level
    loggers = [logging.getLogger(n) for n in ("discord.gateway", "discord.http")]
    was = [logger.level for logger in loggers]
    try:
        root.setLevel(logging.DEBUG)
        DiscordPlatform(PlatformContext(options=DiscordOptions(token="d.t.k")))
        assert [logger.level for logger in loggers] == [logging.INFO, logging.INFO]
    finally:
        root.setLevel(before)
        for logger, level in zip(loggers, was, strict=True):
            logger.setLevel(level)
