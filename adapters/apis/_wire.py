"""I/O-free incremental parsers for the chat APIs' stream formats.

`SSEParser` (text/event-stream), `NDJSONParser` (one JSON value a line) and
`DataLineParser` (lines with or without SSE's `data: `) take bytes as they
arrive, in chunks of any size, and return what became complete:
`feed(chunk) -> list`, and `close() -> list` at the end of the stream. They
share one line splitter that accepts LF, CRLF and CR line
endings (a CR at the end of one chunk and an LF at the start of the next are
one line break), strips a UTF-8 byte-order mark at the start of the stream,
and raises `LineTooLong` when a line outgrows its cap; `SSEParser` raises
`EventTooLarge` (a `LineTooLong`) when an event's data lines, joined, outgrow
the same cap. So a misbehaving server cannot make the bridge buffer without
bound.

Bytes are split on line breaks before decoding (UTF-8 never has a CR or LF
byte inside a multi-byte character), and undecodable bytes become U+FFFD, so
arbitrary input can only ever raise `LineTooLong`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

from bridge.errors import ProtocolError

log = logging.getLogger("adapters.apis")

MAX_LINE_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


class LineTooLong(ProtocolError):
    """A line of the stream exceeded the parser's cap."""

    what = "a line of its stream is longer"

    def __init__(self, limit: int, *, backend: str | None = None) -> None:
        super().__init__(
            f"The assistant's answer could not be read ({self.what} than {limit} bytes).",
            backend=backend,
        )
        self.limit = limit


class EventTooLarge(LineTooLong):
    """An event of an SSE stream (its data lines, joined) exceeded the parser's cap."""

    what = "an event of its stream is larger"


class LineSplitter:
    """Splits a byte stream into decoded text lines (without their line breaks)."""

    __slots__ = ("_buf", "_skip_lf", "_first", "max_line", "backend")

    def __init__(self, max_line: int = MAX_LINE_BYTES, *, backend: str | None = None) -> None:
        self._buf = bytearray()
        self._skip_lf = False
        self._first = True
        self.max_line = max_line
        self.backend = backend

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # A CR ending this chunk ends a line now; remember to drop an LF
            # that may start the next chunk (the two halves of one CRLF).
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._buf += chunk
            if len(self._buf) > self.max_line:
                raise LineTooLong(self.max_line, backend=self.backend)
            return []
        head = chunk[:end]
        if self._buf:
            self._buf += head
            head = bytes(self._buf)
        self._buf = bytearray(chunk[end + 1 :])
        if len(self._buf) > self.max_line:
            raise LineTooLong(self.max_line, backend=self.backend)
        if self._first:
            self._first = False
            if head.startswith(_BOM):
                head = head[3:]
        # Only a head longer than the cap can hold a line longer than it.
        if len(head) > self.max_line and max(map(len, head.split(b"\n"))) > self.max_line:
            raise LineTooLong(self.max_line, backend=self.backend)
        return head.decode("utf-8", "replace").split("\n")

    def close(self) -> list[str]:
        """The last line, when the stream did not end with a line break."""
        rest = bytes(self._buf)
        self._buf = bytearray()
        if self._first:
            self._first = False
            if rest.startswith(_BOM):
                rest = rest[3:]
        return [rest.decode("utf-8", "replace")] if rest else []


class SSEEvent(NamedTuple):
    """One server-sent event: its joined `data` lines, `event` type and last event `id`."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Incremental text/event-stream parser.

    Follows the WHATWG event-stream rules (comments, `data` lines joined with
    newlines, `event`, `id`, `retry`, one optional space after the colon), with
    two leniencies: an event still pending at `close()` is dispatched, since
    some servers end the stream without the final blank line; and an `error:`
    line (llama.cpp's server sends its errors so) is an `error` event's data.
    An event whose data, joined, is longer than `max_line` raises
    `EventTooLarge`, whether it ends or not.
    """

    __slots__ = ("_lines", "_data", "_size", "_event", "_id", "retry")

    def __init__(self, max_line: int = MAX_LINE_BYTES, *, backend: str | None = None) -> None:
        self._lines = LineSplitter(max_line, backend=backend)
        self._data: list[str] = []
        self._size = 0  # of the pending event's data joined, as measured at the last read
        self._event = ""
        self._id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._parse(self._lines.feed(chunk))

    def close(self) -> list[SSEEvent]:
        events = self._parse(self._lines.close())
        if self._data:
            events.append(self._dispatch())
        return events

    def _dispatch(self) -> SSEEvent:
        data = self._data
        if len(data) == 1:
            text = data[0]  # one line: the splitter capped it
        else:
            text = "\n".join(data)
            if len(text) > self._lines.max_line:
                raise EventTooLarge(self._lines.max_line, backend=self._lines.backend)
        event = SSEEvent(text, self._event or "message", self._id)
        self._data = []
        self._event = ""
        return event

    def _parse(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = pending = self._data
        measured = len(data)
        for line in lines:
            if not line:
                if data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    self._event = ""
            elif line.startswith("data:"):
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line[0] != ":":
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "event":
                    self._event = value
                elif name == "data":  # "data" without a colon: an empty data line
                    data.append(value)
                elif name == "error":  # llama.cpp's errors: an `error` event
                    self._event = "error"
                    data.append(value)
                elif name == "id":
                    if "\0" not in value:
                        self._id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)
        if data:  # an event still open: bound what it holds before it ends
            self._measure(data, measured if data is pending else 0)
        return events

    def _measure(self, data: list[str], measured: int) -> None:
        """Add the data lines after the first `measured` (counted at earlier reads)
        to the pending event's size; raise `EventTooLarge` past the cap.

        Measured once a read, not a line, to keep the loop above lean: an event
        grows by at most one read's lines past the cap before it is refused.
        Characters are counted, each at least one byte of the stream, and every
        line its line break, so a flood of empty `data:` lines is bounded too.
        """
        new = data[measured:]
        size = (self._size if measured else -1) + sum(map(len, new)) + len(new)
        if size > self._lines.max_line:
            raise EventTooLarge(self._lines.max_line, backend=self._lines.backend)
        self._size = size


class NDJSONParser:
    """Incremental newline-delimited JSON parser.

    Returns each complete line's JSON value. Blank lines are skipped; a line
    that is not JSON is logged and skipped (counted in `malformed`).
    """

    __slots__ = ("_lines", "backend", "malformed")

    def __init__(self, max_line: int = MAX_LINE_BYTES, *, backend: str | None = None) -> None:
        self._lines = LineSplitter(max_line, backend=backend)
        self.backend = backend
        self.malformed = 0

    def feed(self, chunk: bytes) -> list[Any]:
        return self._parse(self._lines.feed(chunk))

    def close(self) -> list[Any]:
        return self._parse(self._lines.close())

    def _parse(self, lines: list[str]) -> list[Any]:
        values: list[Any] = []
        for line in lines:
            if not line:
                continue
            try:
                values.append(loads(line))
            except (ValueError, RecursionError) as exc:
                if not line.isspace():
                    self.malformed += 1
                    log_malformed(line, exc, self.backend)
        return values


class DataLineParser:
    """Line-oriented reading of a stream whose lines may or may not be SSE.

    Returns each line's payload: the value of a `data:` line, or a bare line
    as it is. Blank lines, `:` comments and the other SSE fields (`event:`,
    `id:`, `retry:`) are skipped. For APIs that send `{"json"}` lines with or
    without the `data: ` prefix; each payload is one line.
    """

    __slots__ = ("_lines",)

    def __init__(self, max_line: int = MAX_LINE_BYTES, *, backend: str | None = None) -> None:
        self._lines = LineSplitter(max_line, backend=backend)

    def feed(self, chunk: bytes) -> list[str]:
        return _payloads(self._lines.feed(chunk))

    def close(self) -> list[str]:
        return _payloads(self._lines.close())


_SSE_FIELDS = ("event:", "id:", "retry:")


def _payloads(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            value = line[6:] if line[5:6] == " " else line[5:]
            if value and not value.isspace():
                out.append(value)
        elif not line or line[0] == ":" or line.startswith(_SSE_FIELDS) or line.isspace():
            continue
        else:
            out.append(line)
    return out


_raw_decode = json.JSONDecoder().raw_decode
_JSON_BLANKS = " \t\n\r"  # the only whitespace JSON allows around a value


def loads(text: str) -> Any:
    """`json.loads` for one line, faster on the common case (no surrounding blanks).

    Raises ValueError (or RecursionError) exactly where `json.loads` would.
    """
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading blanks, or raise json's own error
    if end != len(text) and text[end:].strip(_JSON_BLANKS):
        # Not only JSON's own blanks after the value (str.isspace also takes
        # \x1c-\x1f, \xa0, \u2028, ...): json.loads raises "Extra data".
        return json.loads(text)
    return value


def json_or_none(text: str, backend: str | None = None) -> Any:
    """Parse one JSON text; a malformed one is logged and gives None."""
    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:
        log_malformed(text, exc, backend)
        return None


def log_malformed(line: str, exc: BaseException, backend: str | None) -> None:
    """Log a line that could not be parsed: its size and a short excerpt."""
    log.warning(
        "skipping a malformed stream line (%d chars: %r): %s",
        len(line),
        line[:60],
        type(exc).__name__,
        extra={"backend": backend},
    )
