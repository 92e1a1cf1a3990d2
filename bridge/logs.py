"""Logging set-up: plain or JSON lines, with every configured secret scrubbed (the
daemon's written from a thread of their own: `LogWriter`), and failures that repeat
while something is down told in moderation (`Repeats`)."""

from __future__ import annotations

import contextvars
import copy
import datetime
import json
import logging
import logging.handlers
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from urllib.parse import quote, unquote, urlsplit

from bridge.proxies import proxy_variables

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Tokens no config holds but URLs carry, which libraries log (discord.py at DEBUG):
# a Discord interaction's or webhook's token, a Slack response_url's path, and the
# ticket of a Socket Mode URL (slack-sdk logs it, at ERROR, when Slack refuses the
# connection: it lets a websocket receive the app's events).
_URL_TOKENS = (
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s\"'<>?#]+"), r"\1***"),
    (re.compile(r"([?&]ticket=)[^&\s\"'<>]+"), r"\1***"),
    # The path's slashes escaped too: Slack's JSON writes `\/`, logged as `\\/` in a repr.
    (re.compile(r"(hooks\.slack\.com(?:\\*/|%2[fF]))[^\s\"'<>]+"), r"\1***"),
)
# What would break a plain log line or drive the terminal: line breaks and other
# control characters (an API's error text carries them as it likes).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escaped(text: str) -> str:
    """`text` on one line: control characters as Python writes them (`\\n`, `\\x1b`)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text) if _CONTROL.search(text) else text


# A `token` field of a payload logged whole (discord.py logs every gateway event
# at DEBUG, an interaction's token with it), as a dict's repr or as JSON.
_TOKEN_FIELD = re.compile(r"""(['"][\w-]*token['"]\s*:\s*)(['"])(?:(?!\2).)+\2""")


# The fields of the answer being made (its `conversation` and `platform`), for every
# line logged while it is made, whoever logs it: a platform's failed request, a chat
# API's retry.
_ANSWER: ContextVar[Mapping[str, str] | None] = ContextVar("chat_bridge_answer", default=None)


def log_answer(**fields: str) -> None:
    """Give every line logged from now on by the running task, and by the tasks it
    starts, these fields (unless a line has its own). Set in an answer's own task,
    they last as long as it does."""
    _ANSWER.set(fields)


def apart() -> contextvars.Context:
    """The running task's context without an answer's fields: for work it starts that
    serves others too (a worker shared by a workspace), whose lines are no one
    answer's."""
    context = contextvars.copy_context()
    context.run(_ANSWER.set, None)
    return context


def relevel(record: logging.LogRecord, level: int) -> None:
    """Log a library's record at `level`, as one line: its traceback goes (a line
    rewritten so says what failed)."""
    record.levelno, record.levelname = level, logging.getLevelName(level)
    record.exc_info = record.exc_text = None


class AnswerFilter(logging.Filter):
    """Adds the fields of the answer being made (see `log_answer`) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _ANSWER.get()
        if fields:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record's message and fields with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        if "hooks" in text or "/interactions/" in text or "ticket=" in text:
            for pattern, keep in _URL_TOKENS:
                text = pattern.sub(keep, text)
        if "token" in text:
            text = _TOKEN_FIELD.sub(r"\1\2***\2", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _STANDARD or value is None or isinstance(value, bool | int | float):
                continue
            # Anything else is written as text: scrub that text.
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            setattr(record, key, self.scrub(text))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            # ISO 8601 to the millisecond, with the offset: lines a shipper re-sorts
            # keep their order.
            "time": datetime.datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                data[key] = value
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


class PlainFormatter(logging.Formatter):
    """`time level logger: message key=value ...`, one line a record (a traceback
    follows on its own lines): no text logged can end the line and forge another."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = _escaped(record.message)
        line = super().formatMessage(record)
        extras = " ".join(
            f"{k}={_escaped(str(v))}" for k, v in vars(record).items() if k not in _STANDARD
        )
        return f"{line} {extras}" if extras else line


def proxy_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The passwords in the proxy variables (`http://user:password@proxy:3128`).

    Every client here uses them, and libraries log a proxy's URL whole: aiohttp's
    errors through discord.py's reconnect tracebacks, slack-sdk at DEBUG.
    """
    found: list[str] = []
    for _, url in proxy_variables(environ):
        try:
            password = urlsplit(url).password
        except ValueError:  # not a URL at all: nothing the clients could use
            continue
        if password:
            # As written, decoded, and encoded as clients rewrite it (`:` `@`
            # spaces and letters beyond ASCII come out percent-encoded).
            plain = unquote(password)
            found += [password, plain, quote(plain, safe=""), quote(plain, safe="!$&'()*+,;=")]
    return found


def setup_logging(level: str, json_format: bool, secrets: Iterable[str]) -> SecretFilter:
    """Configure the root logger once for the process; returns the scrubbing filter.

    The passwords of the proxy variables are scrubbed with `secrets`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    scrub = SecretFilter([*secrets, *proxy_secrets()])
    handler.addFilter(AnswerFilter())
    handler.addFilter(scrub)
    # The handler keeps to the level too: a library logger set lower on purpose
    # (so its records are made, and counted) prints nothing below it.
    handler.setLevel(level)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # What people write is never logged, DEBUG included: the store's statements carry
    # it (the platform adapters keep their libraries' payload dumps off likewise).
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLevelName(level)))
    if level != "DEBUG":
        # httpx writes a line per request at INFO; the bridge logs what matters itself.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # While PostgreSQL is down asyncpg logs each failed reconnect with a long
        # traceback; the store's own errors say what matters in a line.
        logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    return scrub


# The lines the writer may hold while the log's reader is slow; past them lines are
# dropped (and counted) rather than waited for.
LOG_QUEUE_LINES = 5000


class LogWriter(logging.handlers.QueueHandler):
    """Stands in for `output` on a logger: a line is queued where it is logged, and a
    thread of its own writes it. A reader of the log that stalls (a pipe nobody
    drains: a log driver down, a hung journald) holds back that thread alone, not the
    event loop; the lines it has no room for are dropped, and their count is written
    where they went missing, once writing resumes."""

    def __init__(self, output: logging.Handler, size: int = LOG_QUEUE_LINES) -> None:
        self.lines: queue.Queue[logging.LogRecord | None] = queue.Queue(size)
        super().__init__(self.lines)
        self.output = output
        self.setLevel(output.level)
        self.dropped = 0  # since the last line queued
        self.written = 0  # by the thread, so far
        self._ended = False  # the thread wrote all and stopped
        self._thread = threading.Thread(
            target=self._write, name="chat-bridge log writer", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def filter(self, record: logging.LogRecord) -> bool:
        # The output's filters run where the line is logged: with the fields of the
        # answer its task makes (context variables), and no secret is ever queued.
        return self.output.filter(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The line is fixed now, the writer formats it later: the message merged with
        # its arguments (objects that may change meanwhile), a traceback as text. The
        # copy is the writer's alone (other handlers format the same record).
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            if not record.exc_text:
                formatter = self.output.formatter or logging.Formatter()
                record.exc_text = formatter.formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        # (Under the handler's lock: one thread at a time.)
        if self._ended:  # the writer stopped: written here, in order
            self._emit(record)
        elif self.dropped and not self._tell_dropped():
            self.dropped += 1
        else:
            try:
                self.lines.put_nowait(record)
            except queue.Full:
                self.dropped += 1

    def _tell_dropped(self, timeout: float | None = None) -> bool:
        """Queue the count of the lines dropped, where they went missing."""
        dropped = self.dropped
        notice = logging.LogRecord(
            "chat_bridge.logs",
            logging.WARNING,
            __file__,
            0,
            f"{dropped} log line{' was' if dropped == 1 else 's were'} dropped: "
            "the log's reader did not keep up",
            None,
            None,
        )
        try:
            if timeout is None:
                self.lines.put_nowait(notice)
            else:
                self.lines.put(notice, timeout=timeout)
        except queue.Full:
            return False
        self.dropped = 0
        return True

    def _emit(self, record: logging.LogRecord) -> None:
        # The output's filters ran where the line was logged.
        self.output.acquire()
        try:
            self.output.emit(record)  # (which reports its own failures)
        finally:
            self.output.release()

    def _write(self) -> None:
        while (record := self.lines.get()) is not None:
            self._emit(record)
            self.written += 1

    def stop(self, patience: float = 5.0) -> bool:
        """Write the lines queued and end the thread; lines logged after are written
        where they are logged. False if the log's reader took no line for `patience`
        seconds meanwhile (it stalled): the rest stays queued, the thread blocked."""
        self.acquire()  # lines logged meanwhile wait, then come after those queued
        try:
            if self.dropped and not self._tell_dropped(patience):
                return False
            try:
                self.lines.put(None, timeout=patience)
            except queue.Full:
                return False
            while True:
                written = self.written
                self._thread.join(patience)
                if not self._thread.is_alive():
                    self._ended = True
                    return True
                if self.written == written:
                    return False
        finally:
            self.release()


def write_apart(logger: logging.Logger | None = None, size: int = LOG_QUEUE_LINES) -> LogWriter:
    """Put `logger`'s handler (the root's, as `setup_logging` made it) behind a
    started `LogWriter` of `size` lines."""
    logger = logger or logging.getLogger()
    (output,) = logger.handlers
    writer = LogWriter(output, size)
    writer.start()
    logger.removeHandler(output)
    logger.addHandler(writer)
    return writer


class Repeats:
    """A failure that comes again and again while something is down (a store retried
    twice a second): logged the first time, then at most once every `every` seconds
    with how many tries failed in between, so the lines that matter are not buried."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] | None = None) -> None:
        self.every = every
        self.tries = 0  # failed in a row
        self._clock = clock  # None: time.monotonic
        self._told_at = -math.inf  # (on that clock)
        self._untold = 0

    def failed(self) -> str | None:
        """One more failure: None if it goes unlogged, else what to add to its line
        ("" the first time)."""
        self.tries += 1
        now = self._clock() if self._clock is not None else time.monotonic()
        if now - self._told_at < self.every:
            self._untold += 1
            return None
        self._told_at, untold, self._untold = now, self._untold, 0
        return f" (again: {untold + 1} tries failed since the last line)" if untold else ""

    def ended(self) -> int:
        """It works again: how many tries had failed in a row (0: none)."""
        tries, self.tries, self._untold, self._told_at = self.tries, 0, 0, -math.inf
        return tries
