"""A terminal conversation: questions from standard input, replies drawn as they grow.

How the terminal shows them is `console_screen`'s part.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import IO, ClassVar

from pydantic import ConfigDict

from adapters.platforms.console_screen import Screen
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

log = logging.getLogger("chat_bridge.console")

BOT = "bot › "
# A terminal shows Markdown as written, but for its escapes (the bridge's notes escape
# an API's `max_completion_tokens`): code, fenced or inline, is left as it is.
_ESCAPE_OR_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`|\\([!-/:-@\[-`{-~])", re.DOTALL)


class ConsoleOptions(PlatformOptions):
    """The `console:` block."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user: str = "you"
    questions: list[str] = []  # asked first, in order, before reading standard input
    read_stdin: bool = True


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

    async def begin(self, text: str | None = None) -> str | None:
        self._live = True
        self._status = "…"
        self._platform.screen.draw(self._render())
        return None

    async def post(self, text: str) -> str:
        message_id = self._platform.new_id()
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
        else:  # a fix-up of a complete reply (the mark of one a stop cut)
            self._platform.fix_up(message_id, text)

    async def end(self) -> None:
        self._platform.screen.settle(self._render())
        if self._live and self._messages:
            self._platform.shown(*list(self._messages.items())[-1])
        self._live = False  # complete: a later edit is a fix-up
        self._platform.answered()

    async def notice(self, text: str) -> None:
        self._platform.screen.line(BOT + text)
        self._platform.answered()

    def format_markdown(self, markdown: str) -> str:
        if "\\" not in markdown:
            return markdown
        return _ESCAPE_OR_CODE.sub(lambda m: m.group(1) or m.group(0), markdown)

    def format_sources(self, sources: Sequence[Source]) -> str:
        lines = ["Sources:"]
        for i, source in enumerate(sources, 1):
            title = source.title or source.url
            lines.append(f"  {i}. {title} — {source.url}" if source.title else f"  {i}. {title}")
        return "\n".join(lines)


class ConsolePlatform(Platform):
    """A local terminal as a chat platform (used by `chat-bridge demo`).

    `ctx.extra` may give `stdin` / `stdout` streams instead of the process's.
    `finished` is set once input has ended and every question was answered, or the
    terminal failed; `failed` says whether it did (logged).
    """

    name: ClassVar[str] = "console"
    Options: ClassVar[type[PlatformOptions]] = ConsoleOptions

    def __init__(self, ctx: PlatformContext) -> None:
        super().__init__(ctx)
        self.options: ConsoleOptions = ctx.options
        extra = ctx.extra
        stdout: IO[str] = extra["stdout"] if "stdout" in extra else sys.stdout
        self._stdin: IO[str] = extra["stdin"] if "stdin" in extra else sys.stdin
        self.screen = Screen(stdout, self._stdin if self.options.read_stdin else None)
        self._handler: Handler | None = None
        self._outstanding = 0
        self._input_done = False
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._count = 0
        self._ids = 0
        self._stopping = False  # a stop began: no further question is asked for
        # The last message of the last reply shown, and its text: a mark a stop adds
        # to it shows only what it adds.
        self._last: tuple[str, str] | None = None
        self.failed = False

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._read())
        self._task.add_done_callback(self._read_ended)

    def _read_ended(self, task: asyncio.Task[None]) -> None:
        # A failure of the terminal ends the conversation, never leaves it waiting.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the console stopped: %s", for_log(exc))
            self.failed = True
            self.finished.set()

    async def _read(self) -> None:
        lines = None
        if self.options.read_stdin:
            # Read from the start: a line typed ahead (while the first answers are
            # shown) is known to be one, and is shown as it is asked.
            lines = _read_lines(self._stdin, self.screen.typing_hidden)
            self.screen.hide_typing()
        for question in self.options.questions:
            if self._stopping:
                return
            await self._ask(question, echo=True)
        if lines is not None:
            typed = self._stdin.isatty()  # the terminal shows what was typed already
            while not self._stopping and not self.screen.closed:
                if typed:
                    self.screen.prompt(f"{self.options.user} › ")
                got = await lines.get()
                if got is None:  # Ctrl-D: the shell's prompt comes on a line of its own
                    self.screen.end_line()
                    break
                line, unseen = got
                if self._stopping:
                    return
                if typed:
                    self.screen.entered(line, unseen)
                if line.strip():
                    await self._ask(line.strip(), echo=not typed)
        self._input_done = True
        self._check_finished()

    async def _ask(self, text: str, *, echo: bool) -> None:
        assert self._handler is not None
        if echo:
            self.screen.line(f"{self.options.user} › {text}")
        if self.screen.closed:  # nobody would see the answer (`| head`, a full disk)
            self._check_finished()
            return
        self._count += 1
        self._outstanding += 1
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
            # Nobody reads the answers any more (`demo | head`), or they cannot be
            # written (a full disk): the conversation is over.
            if (exc := self.screen.failed) is not None and not self.failed:
                self.failed = True
                log.error(
                    "the console's output could not be written: %s",
                    exc.strerror or type(exc).__name__,
                )
            self.finished.set()
        elif self._input_done and not self._outstanding:
            self.finished.set()

    def new_id(self) -> str:
        self._ids += 1
        return f"m{self._ids}"

    def shown(self, message_id: str, text: str) -> None:
        self._last = (message_id, text)

    def fix_up(self, message_id: str, text: str) -> None:
        """A complete reply's message edited (a stop marks one it cut): on the last
        reply shown, what the edit adds to it; else (one a process before this one
        showed) the message again, whole."""
        if self._last is not None and self._last[0] == message_id:
            before = self._last[1]
            if text.startswith(before):
                self._last = (message_id, text)
                if added := text[len(before) :].removeprefix("\n"):
                    self.screen.line(added)
                return
        self.screen.line(BOT + text)

    def target(self, address: Address) -> ReplyTarget:
        return ConsoleTarget(self, address)

    async def stop_receiving(self) -> None:
        """A stop began: no prompt for a further question, the one shown is closed."""
        self._stopping = True
        self.screen.end_line()

    async def aclose(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.screen.close()


def _read_lines(
    stream: IO[str], hidden: Callable[[], bool]
) -> asyncio.Queue[tuple[str, bool] | None]:
    """Lines of a blocking stream, read from now on by a daemon thread (exit never
    waits on it), each with whether `hidden()` said it was entered unseen (not
    echoed); None once the stream ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bool] | None] = asyncio.Queue()

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
                loop.call_soon_threadsafe(queue.put_nowait, (line, hidden()))
        except (OSError, ValueError):
            pass
        finally:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except RuntimeError:
                pass  # the loop is gone; nobody is listening

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue
