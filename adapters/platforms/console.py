"""A terminal conversation: questions from standard input, replies redrawn in place.

On a terminal, every edit redraws the reply where it stands (ANSI cursor
movement); when output is a pipe or a file, each reply is written once, whole,
when it is complete.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import IO, Any, ClassVar

from pydantic import ConfigDict

from bridge.errors import for_log
from bridge.interfaces import (
    Address,
    Handler,
    Inbound,
    Limits,
    Platform,
    PlatformContext,
    PlatformOptions,
    Rate,
    ReplyTarget,
    Source,
)
from bridge.terminal import discard_output

log = logging.getLogger("chat_bridge.console")

BOT = "bot › "


class ConsoleOptions(PlatformOptions):
    """The `console:` block."""

    model_config = ConfigDict(extra="forbid")

    user: str = "you"
    questions: list[str] = []  # asked first, in order, before reading standard input
    read_stdin: bool = True


class _Screen:
    """Owns the terminal output; redraws the live reply in place."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self._lines = 0  # lines the live reply occupies on screen
        self.closed = False  # whoever read the output went away (`| head`)

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            discard_output(self.out)

    def _height(self, text: str) -> int:
        width = max(20, shutil.get_terminal_size((80, 24)).columns)
        return sum(max(1, -(-len(line) // width)) for line in text.split("\n"))

    def draw(self, text: str) -> None:
        if not self.tty:
            return
        up = f"\x1b[{self._lines}F\x1b[J" if self._lines else ""
        self._write(up + text + "\n")
        self._lines = self._height(text)

    def settle(self, text: str) -> None:
        """The reply is complete: leave it on screen for good."""
        if self.tty:
            self.draw(text)
        else:
            self._write(text + "\n")
        self._lines = 0

    def prompt(self, text: str) -> None:
        """Ask for the next question on a terminal; the person types after it."""
        self._write(text)
        self._lines = 0

    def line(self, text: str) -> None:
        self._write(text + "\n")
        self._lines = 0


class ConsoleTarget(ReplyTarget):
    """Messages of one reply, shown as one block of text."""

    def __init__(self, platform: ConsolePlatform, address: Address) -> None:
        self._platform = platform
        self.address = address
        self.limits = Limits(
            max_chars=100_000,
            edit_bucket="console:edit",
            edit_rate=Rate(1000, 1.0),
            post_bucket="console:post",
            post_rate=Rate(1000, 1.0),
        )
        self._messages: dict[str, str] = {}
        self._status = ""
        self._live = False  # begin() was called: a reply is being drawn

    def _render(self) -> str:
        body = "\n".join(self._messages.values()) or self._status
        return BOT + body

    async def begin(self) -> str | None:
        self._live = True
        self._status = "…"
        self._platform.screen.draw(self._render())
        return None

    async def post(self, text: str) -> str:
        message_id = f"m{len(self._messages) + 1}"
        self._messages[message_id] = text
        if self._live:
            self._platform.screen.draw(self._render())
        else:
            self._platform.screen.line(BOT + text)
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        self._messages[message_id] = text
        if self._live:
            self._platform.screen.draw(self._render())
        else:  # a fix-up of an earlier reply (after a restart): show it as a line
            self._platform.screen.line(BOT + text)

    async def end(self) -> None:
        self._platform.screen.settle(self._render())
        self._platform.answered()

    async def notice(self, text: str) -> None:
        self._platform.screen.line(BOT + text)
        self._platform.answered()

    def format_markdown(self, markdown: str) -> str:
        return markdown

    def format_sources(self, sources: Sequence[Source]) -> str:
        lines = ["Sources:"]
        for i, source in enumerate(sources, 1):
            title = source.title or source.url
            lines.append(f"  {i}. {title} — {source.url}" if source.title else f"  {i}. {title}")
        return "\n".join(lines)


class ConsolePlatform(Platform):
    """A local terminal as a chat platform (used by `chat-bridge demo`).

    `ctx.extra` may give `stdin` / `stdout` streams instead of the process's.
    `finished` is set once input has ended and every question was answered.
    """

    name: ClassVar[str] = "console"
    Options: ClassVar[type[PlatformOptions]] = ConsoleOptions

    def __init__(self, ctx: PlatformContext) -> None:
        super().__init__(ctx)
        self.options: ConsoleOptions = ctx.options
        extra = ctx.extra
        stdout: IO[str] = extra["stdout"] if "stdout" in extra else sys.stdout
        self.screen = _Screen(stdout)
        self._stdin: IO[str] = extra["stdin"] if "stdin" in extra else sys.stdin
        self._handler: Handler | None = None
        self._outstanding = 0
        self._input_done = False
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._count = 0

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._read())
        self._task.add_done_callback(self._read_ended)

    def _read_ended(self, task: asyncio.Task[None]) -> None:
        # A failure of the terminal ends the conversation, never leaves it waiting.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the console stopped: %s", for_log(exc))
            self.finished.set()

    async def _read(self) -> None:
        for question in self.options.questions:
            await self._ask(question, echo=True)
        if self.options.read_stdin:
            typed = self._stdin.isatty()  # the terminal shows what was typed already
            lines = _lines(self._stdin)
            while True:
                if typed:
                    self.screen.prompt(f"{self.options.user} › ")
                line = await anext(lines, None)
                if line is None:
                    break
                if line.strip():
                    await self._ask(line.strip(), echo=not typed)
        self._input_done = True
        self._check_finished()

    async def _ask(self, text: str, *, echo: bool) -> None:
        assert self._handler is not None
        self._count += 1
        self._outstanding += 1
        if echo:
            self.screen.line(f"{self.options.user} › {text}")
        msg = Inbound(
            platform="console",
            workspace="local",
            channel="terminal",
            user=self.options.user,
            text=text,
            message_id=str(self._count),
            event_id=f"console-{uuid.uuid4().hex}",
            is_dm=True,
        )
        await self._handler(msg, self.target(Address("console", "local", "terminal")))
        # Wait for the answer before reading the next question, like a person would.
        while self._outstanding:
            await self._idle.wait()
            self._idle.clear()

    @property
    def _idle(self) -> asyncio.Event:
        event = getattr(self, "_idle_event", None)
        if event is None:
            event = self._idle_event = asyncio.Event()
        return event

    def answered(self) -> None:
        self._outstanding = max(0, self._outstanding - 1)
        self._idle.set()
        self._check_finished()

    def _check_finished(self) -> None:
        if self.screen.closed:
            # Nobody reads the answers any more (`demo | head`): the conversation is over.
            self.finished.set()
        elif self._input_done and not self._outstanding:
            self.finished.set()

    def target(self, address: Address) -> ReplyTarget:
        return ConsoleTarget(self, address)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _lines(stream: IO[str]) -> Any:
    """Lines of a blocking stream, read on a daemon thread so exit never waits on it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def decoded() -> Iterator[str]:
        # Bytes decoded a line at a time: a line that is not valid text is read
        # with replacement characters instead of ending the input.
        raw = getattr(stream, "buffer", None)
        if raw is None:
            yield from stream
            return
        encoding = getattr(stream, "encoding", None) or "utf-8"
        for line in raw:
            yield line.decode(encoding, "replace")

    def pump() -> None:
        try:
            for line in decoded():
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        finally:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except RuntimeError:
                pass  # the loop is gone; nobody is listening

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line
