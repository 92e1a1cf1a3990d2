"""`chat-bridge ask` streams an answer, with its sources, from every kind of backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli_support import run_command_async
from tests.fakes.chatapi import FakeChatAPI

BLOCKS = {
    "chatmount": 'kind: chatmount\n    url: "{url}"\n    api_key: "${{KEY}}"',
    "ndjson": 'kind: ndjson\n    url: "{url}"\n    api_key: "${{KEY}}"',
    "chaturdata": (
        'kind: chaturdata\n    url: "{url}"\n    api_key: "${{KEY}}"\n    poll_interval: 1'
    ),
    "bot-messages": (
        'kind: bot-messages\n    url: "{url}"\n    api_key: "${{KEY}}"\n    bot_slug: taxson'
    ),
    "openai": 'kind: openai\n    url: "{url}"\n    api_key: "${{KEY}}"\n    model: test-model',
}


@pytest.mark.parametrize("kind", sorted(BLOCKS))
async def test_ask_with_every_kind(fake_chat_api: FakeChatAPI, tmp_path: Path, kind: str) -> None:
    fake_chat_api.enqueue(
        tokens=["Forty", "-two."], sources=[("https://docs.example/answer", "The answer")]
    )
    block = BLOCKS[kind].format(url=fake_chat_api.endpoint(kind))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"store: sqlite://{tmp_path / 'b.db'}\nbackends:\n  b:\n    {block}\n"
        "routes: [{platform: any, backend: b}]\n"
    )
    # The key ends in a line break, as a secret file or a YAML block leaves it.
    code, text, err = await run_command_async(
        "ask",
        "-c",
        str(config),
        "--backend",
        "b",
        "What is the answer?",
        env={"KEY": fake_chat_api.api_key + "\n", "PATH": "/usr/bin:/bin"},
    )
    assert code == 0, err
    assert "Warning" not in err, err
    assert text.startswith("Forty-two.\n")
    if kind in ("chatmount", "chaturdata", "openai"):  # the APIs that cite sources
        assert text.endswith("\nSources:\n  1. The answer — https://docs.example/answer\n")
    assert fake_chat_api.api_key not in text + err


async def test_ask_whose_reader_went_away_stops_without_a_traceback(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # `chat-bridge ask ... | head -0`: the answer has nowhere to go.
    fake_chat_api.enqueue(tokens=["Forty", "-two."])
    block = BLOCKS["chatmount"].format(url=fake_chat_api.endpoint("chatmount"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"store: sqlite://{tmp_path / 'b.db'}\nbackends:\n  b:\n    {block}\n"
        "routes: [{platform: any, backend: b}]\n"
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the answer comes
    try:
        code, _, err = await run_command_async(
            "ask",
            "-c",
            str(config),
            "--backend",
            "b",
            "Why?",
            env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin"},
            stdout=write_end,
        )
    finally:
        os.close(write_end)
    assert code == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert "Warning" not in err, err


async def test_ask_writes_no_control_characters_of_the_answer(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Written to the admin's terminal as sent: ESC[8m hid text, OSC 0 set the window's
    # title, OSC 52 wrote the clipboard, a CR wrote over the line.
    fake_chat_api.enqueue(
        tokens=[
            "Hours: 9-5.",
            "\x1b[8m(hidden)\x1b[0m",
            "\x1b",
            "]0;pwned\x07",
            "\r",
            "\u009b2J\tok",
        ],
        sources=[("https://a.example/", "A\x1b]52;c;cm0gLXJmIH4K\x07")],
    )
    block = BLOCKS["chatmount"].format(url=fake_chat_api.endpoint("chatmount"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"store: sqlite://{tmp_path / 'b.db'}\nbackends:\n  b:\n    {block}\n"
        "routes: [{platform: any, backend: b}]\n"
    )
    code, out, err = await run_command_async(
        "ask",
        "-c",
        str(config),
        "--backend",
        "b",
        "Hours?",
        env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin"},
    )
    assert code == 0, err
    assert "Warning" not in err, err
    assert out == (
        "Hours: 9-5.[8m(hidden)[0m]0;pwned2J\tok\n"
        "\nSources:\n  1. A]52;c;cm0gLXJmIH4K — https://a.example/\n"
    )
