"""The terminal platform (what `chat-bridge demo` uses), through the real bridge."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import shutil
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from adapters.platforms.console import ConsoleTarget
from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import Config, parse_config
from bridge.demo import DEMO_QUESTION, run_demo
from bridge.interruptions import INTERRUPTED
from bridge.render import as_text
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.terminal import FakeTerminal


def console_config(fake: FakeChatAPI, tmp_path: Path, console: str = "{}") -> Config:
    return parse_config(
        f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "{fake.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {console}
routes: [{{platform: console, backend: docs, session: user}}]
reply: {{edit_interval: 0.05}}
""",
        env={"KEY": fake.api_key},
        registry=REGISTRY,
    )


async def test_questions_and_answers_in_order_with_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["One ", "answer."], sources=[("https://a.example/", "A")])
    fake_chat_api.enqueue(tokens=["Another."])
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    out = io.StringIO()
    extra = {"console": {"stdin": io.StringIO("second?\n\nreset\n"), "stdout": out}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert out.getvalue().splitlines() == [
        "ana › first?",
        "bot › One answer.",
        "",
        "Sources:",
        "  1. A — https://a.example/",
        "ana › second?",
        "bot › Another.",
        "ana › reset",
        "bot › Started a new conversation.",
    ]
    first, second = fake_chat_api.requests
    assert first.json["session_id"] == second.json["session_id"]


async def test_a_line_that_is_not_utf8_loses_no_question(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    for _ in range(3):
        fake_chat_api.enqueue(tokens=["Yes."])
    config = console_config(fake_chat_api, tmp_path)
    # A UTF-8 terminal's stdin, strict as most locales make it, given a Latin-1 byte.
    stdin = io.TextIOWrapper(io.BytesIO(b"first?\n\xff bad?\nthird?\n"), encoding="utf-8")
    extra = {"console": {"stdin": stdin, "stdout": io.StringIO()}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    asked = [r.json["message"] for r in fake_chat_api.requests]
    assert asked == ["first?", "\ufffd bad?", "third?"]


class _ReaderGone(io.StringIO):
    """Output whose reader went away after its first line (`chat-bridge demo | head -1`)."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


async def test_when_nobody_reads_the_output_any_more_the_conversation_ends(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The reply's end could not be written: the platform never learnt the question was
    # answered, and `demo | head -1` hung for ever.
    fake_chat_api.enqueue(tokens=["One ", "answer."])
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    out = _ReaderGone()
    extra = {"console": {"stdin": io.StringIO("second?\n"), "stdout": out}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert out.getvalue() == "ana › first?\n"


# ---------------------------------------------------------------- on a terminal


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    """Standard output that is an 80 x 12 terminal."""
    term = FakeTerminal(80, 12)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): term.size())
    return term


@pytest.fixture
def keyboard() -> Iterator[tuple[int, IO[str]]]:
    """A terminal to type on: what is written to the first end is typed on the second."""
    typing, keys = os.openpty()
    stdin = open(keys, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        yield typing, stdin
    finally:
        os.close(typing)  # the reading thread's read ends
        stdin.close()


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def echoes(stdin: IO[str]) -> bool:
    return bool(termios.tcgetattr(stdin.fileno())[3] & termios.ECHO)


async def test_a_reply_taller_than_the_terminal_is_shown_once(
    fake_chat_api: FakeChatAPI, tmp_path: Path, terminal: FakeTerminal
) -> None:
    # Redrawn in place from above the window's top, each edit left a copy of the
    # reply in the scrollback.
    lines = [f"line {i} of a long answer" for i in range(12)]
    lines[5:8] = ["```sh", "chat-bridge check -c config.yaml", "```"]  # closed while open
    tokens = [t for line in lines for t in (*(w + " " for w in line.split(" ")), "\n")]
    fake_chat_api.enqueue(tokens=tokens, token_delay=0.01, sources=[("https://a.example/", "A")])
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    extra = {"console": {"stdin": io.StringIO(), "stdout": terminal}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert terminal.getvalue().count("\x1b[") > 10  # redrawn as it grew, then written on
    shown = [row.rstrip() for row in terminal.transcript()]
    assert shown == [
        "ana › first?",
        f"bot › {lines[0]}",
        *lines[1:],
        "",
        "Sources:",
        "  1. A — https://a.example/",
    ]


async def test_a_question_typed_during_an_answer_is_shown_before_its_answer(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    terminal: FakeTerminal,
    keyboard: tuple[int, IO[str]],
) -> None:
    # The terminal's echo landed in the reply being redrawn: the question vanished,
    # the reply's first line was left twice, and the next answer came under no question.
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(20)], token_delay=0.03)
    fake_chat_api.enqueue(tokens=["Another."])
    typing, stdin = keyboard
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    extra = {"console": {"stdin": stdin, "stdout": terminal}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await until(lambda: "w3" in terminal.getvalue())
        assert not echoes(stdin)  # typing lands in the reply no more
        os.write(typing, b"second?\n")
        await until(lambda: "Another." in terminal.getvalue())
        await until(lambda: terminal.getvalue().endswith("ana › "))
        assert echoes(stdin)  # at the prompt, what is typed is seen
        os.write(typing, b"\x04")  # Ctrl-D
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    shown = [row.rstrip() for row in terminal.transcript()]
    assert shown == [
        "ana › first?",
        "bot › " + " ".join(f"w{i}" for i in range(20)),
        "ana › second?",
        "bot › Another.",
        "ana ›",
    ]


class _Typed(io.StringIO):
    """Standard input that is a terminal, and has nothing more to give (Ctrl-D)."""

    def isatty(self) -> bool:
        return True


async def test_ctrl_d_at_the_prompt_ends_its_line(
    fake_chat_api: FakeChatAPI, tmp_path: Path, terminal: FakeTerminal
) -> None:
    # The shell's prompt came on the line of the console's, after it.
    config = console_config(fake_chat_api, tmp_path, "{user: ana}")
    extra = {"console": {"stdin": _Typed(), "stdout": terminal}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert terminal.getvalue() == "ana › \n"


async def test_ctrl_c_during_the_demos_answer_marks_it_cut_and_asks_nothing_more(
    terminal: FakeTerminal, keyboard: tuple[int, IO[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C ended the reply as if complete, and a last prompt came before the shell's.
    typing, stdin = keyboard
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stdin", stdin)
    demo = asyncio.create_task(run_demo(REGISTRY, [DEMO_QUESTION], read_stdin=True))
    await until(lambda: "relays the" in terminal.getvalue())
    demo.cancel()  # what asyncio.run does on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await demo
    shown = [row.rstrip() for row in terminal.transcript()]
    assert shown[0] == f"you › {DEMO_QUESTION}"
    assert sum(row.startswith("bot ›") for row in shown) == 1
    assert "Sources:" not in shown
    assert shown[-2:] == ["", INTERRUPTED]
    assert terminal.getvalue().endswith(f"{INTERRUPTED}\n")  # nothing after: the shell's turn
    assert echoes(stdin)  # the terminal is left as it was found


def test_a_note_naming_an_apis_parameter_shows_no_backslashes() -> None:
    # The bridge escapes an API's words in its notes (`max_completion_tokens` would end
    # Markdown's italics); a terminal shows Markdown as written, so the escapes go, but
    # in code, where a backslash is the code's own.
    notice = "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead."
    shown = ConsoleTarget.format_markdown(None, f"_⚠️ {as_text(notice)}_")  # type: ignore[arg-type]
    assert shown == f"_⚠️ {notice}_"
    code = "Run `grep a\\_b` then:\n```\nre\\*\n```"
    assert ConsoleTarget.format_markdown(None, code) == code  # type: ignore[arg-type]


# What a terminal acts on rather than shows; the console's own redraw (`ESC[nF`, `ESC[J`)
# aside.
_ACTED_ON = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


async def test_an_answers_control_characters_do_nothing_to_the_terminal(
    fake_chat_api: FakeChatAPI, tmp_path: Path, terminal: FakeTerminal
) -> None:
    # Written as the API sent them: ESC[8m hid the rest of the answer, OSC 0 set the
    # window's title, OSC 52 wrote the clipboard, a CR wrote over the line.
    fake_chat_api.enqueue(
        tokens=[
            "Hours: 9-5.",
            "\x1b[8m(hidden)\x1b[0m",
            "\x1b",
            "]0;pwned\x07",
            "\r",
            "\u009b2J ok",
        ],
        token_delay=0.01,
        sources=[("https://a.example/", "A\x1b]52;c;cm0gLXJmIH4K\x07")],
    )
    config = console_config(fake_chat_api, tmp_path, '{questions: ["hours?"], user: ana}')
    extra = {"console": {"stdin": io.StringIO(), "stdout": terminal}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    written = re.sub(r"\x1b\[\d*[FJ]", "", terminal.getvalue())
    assert _ACTED_ON.findall(written) == []
    shown = [row.rstrip() for row in terminal.transcript()]
    assert shown == [
        "ana › hours?",
        "bot › Hours: 9-5.[8m(hidden)[0m]0;pwned2J ok",
        "",
        "Sources:",
        "  1. A]52;c;cm0gLXJmIH4K — https://a.example/",
    ]


async def test_a_tab_indented_answer_is_shown_once(
    fake_chat_api: FakeChatAPI, tmp_path: Path, terminal: FakeTerminal
) -> None:
    # A tab counted one column where the terminal moves to the next 8-column stop: the
    # rows a tab-indented line wrapped onto went uncounted, and each redraw left a copy
    # of the reply's first lines above it.
    recipe = "\t\techo " + "x" * 60  # 81 columns: two rows
    lines = ["Here is a Makefile:", "```make", "all:", recipe, recipe, "```"]
    tokens = [t for line in lines for t in (*(w + " " for w in line.split(" ")), "\n")]
    fake_chat_api.enqueue(tokens=tokens, token_delay=0.01)
    config = console_config(fake_chat_api, tmp_path, '{questions: ["a makefile?"], user: ana}')
    extra = {"console": {"stdin": io.StringIO(), "stdout": terminal}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        await asyncio.wait_for(bridge.platforms["console"].finished.wait(), 20)  # type: ignore[attr-defined]
    assert terminal.getvalue().count("\x1b[") > 3  # redrawn as it grew
    wide = " " * 16 + "echo " + "x" * 60 + " "
    shown = [row.rstrip() for row in terminal.transcript()]
    assert shown == [
        "ana › a makefile?",
        "bot › Here is a Makefile:",
        "```make",
        "all:",
        *[wide[:80], wide[80:].rstrip()] * 2,
        "```",
    ]


class _DiskFull(io.StringIO):
    """Output on a full disk: every write fails (`chat-bridge demo > /dev/full`)."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_output_that_cannot_be_written_ends_the_conversation_as_failed(
    fake_chat_api: FakeChatAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Only a closed pipe was known: the console stopped with "OSError" and the demo
    # exited 0, as if it had been shown.
    config = console_config(fake_chat_api, tmp_path, '{questions: ["first?"], user: ana}')
    extra = {"console": {"stdin": io.StringIO("second?\n"), "stdout": _DiskFull()}}
    async with Bridge(config, REGISTRY, platform_extra=extra) as bridge:
        console = bridge.platforms["console"]
        await asyncio.wait_for(console.finished.wait(), 20)  # type: ignore[attr-defined]
        assert console.failed  # type: ignore[attr-defined]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["the console's output could not be written: No space left on device"]
    assert fake_chat_api.requests == []  # nobody would see the answer: nothing is asked
