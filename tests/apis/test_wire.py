"""The stream parsers: examples, and properties over arbitrary chunkings and bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.apis._wire import (
    DataLineParser,
    EventTooLarge,
    LineTooLong,
    NDJSONParser,
    SSEEvent,
    SSEParser,
    loads,
)
from bridge.errors import ProtocolError

PARSERS = (SSEParser, NDJSONParser, DataLineParser)


def feed_all(parser: Any, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# ---------------------------------------------------------------------------- examples


def test_sse_fields_comments_and_multiline_data():
    stream = (
        b"\xef\xbb\xbf: a comment\n"
        b"event: token\nid: 7\ndata: first\ndata:second\ndata\n\n"
        b"retry: 1500\nevent: \n\n"
        b"data:  two spaces\r\n\r\n"
        b"data: cr\r\r"
        b"id: 8\nunknown: x\ndata: last"
    )
    events = feed_all(SSEParser(), [stream])
    assert events == [
        SSEEvent("first\nsecond\n", "token", "7"),
        SSEEvent(" two spaces", "message", "7"),
        SSEEvent("cr", "message", "7"),
        SSEEvent("last", "message", "8"),  # dispatched at close, without a blank line
    ]


def test_sse_retry_is_kept():
    parser = SSEParser()
    parser.feed(b"retry: 1500\n\n")
    assert parser.retry == 1500


def test_crlf_split_across_chunks_is_one_line_break():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r\n") == [SSEEvent("a")]


def test_ndjson_skips_blank_and_malformed_lines(caplog):
    parser = NDJSONParser(backend="b")
    values = feed_all(parser, [b'{"a": 1}\n\n  \n{"b": \n', b'[1, 2]\r\n"x"'])
    assert values == [{"a": 1}, [1, 2], "x"]
    assert parser.malformed == 1
    assert "malformed stream line" in caplog.text


def test_data_lines_with_and_without_prefix():
    stream = b'data: {"a":1}\n\n{"b":2}\n: keepalive\nevent: x\nid: 1\ndata:\n[DONE]\n'
    assert feed_all(DataLineParser(), [stream]) == ['{"a":1}', '{"b":2}', "[DONE]"]


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_line_cap_raises_a_protocol_error(parser_cls):
    parser = parser_cls(max_line=16, backend="b")
    with pytest.raises(LineTooLong) as info:
        parser.feed(b"x" * 10)
        parser.feed(b"y" * 10)
    assert isinstance(info.value, ProtocolError)
    assert info.value.backend == "b"
    assert "16 bytes" in info.value.user_message
    with pytest.raises(LineTooLong):
        parser_cls(max_line=16).feed(b"ok\n" + b"z" * 17 + b"\nok\n")


@pytest.mark.parametrize(
    ("line", "first_past"),
    [
        (b"data: 0123456789\n", 6),  # 6 * 10 characters + 5 line breaks = 65
        (b"data:\n", 66),  # 65 line breaks: empty lines do not escape the count
        (b"error: 0123456789\n", 6),
    ],
    ids=["data", "empty data", "error"],
)
def test_an_event_past_the_cap_raises_a_protocol_error(line, first_past):
    # Data lines with no blank line between them were held as one event without bound.
    parser = SSEParser(max_line=64, backend="b")
    fed = 0
    with pytest.raises(EventTooLarge) as info:
        while fed < 1000:
            fed += 1
            parser.feed(line)
    assert fed == first_past
    assert isinstance(info.value, LineTooLong) and isinstance(info.value, ProtocolError)
    assert info.value.backend == "b"
    assert "an event of its stream is larger than 64 bytes" in info.value.user_message


def test_an_event_at_the_cap_passes_and_one_past_it_does_not():
    at_cap = b"data: 0123456789\n" * 5 + b"data: 012345678\n"  # 5 * 11 + 9 = 64
    for stream in (at_cap + b"\n", at_cap):  # ended by a blank line, or by the stream
        assert feed_all(SSEParser(max_line=64), [stream]) == [
            SSEEvent("\n".join(["0123456789"] * 5 + ["012345678"]))
        ]
        assert len(feed_all(SSEParser(max_line=64), [bytes([b]) for b in stream])) == 1
    past = at_cap.replace(b"678\n", b"6789\n")
    for chunks in ([past + b"\n"], [bytes([b]) for b in past + b"\n"], [past]):
        with pytest.raises(EventTooLarge):
            feed_all(SSEParser(max_line=64), chunks)


@pytest.mark.parametrize(
    ("parser_cls", "read"),
    [
        (SSEParser, [SSEEvent("0123456789")]),  # the JSON line is no SSE field
        (NDJSONParser, [{"k": 123456789}]),  # the data line is no JSON
        (DataLineParser, ["0123456789", '{"k": 123456789}']),
    ],
)
def test_lines_at_the_cap_pass(parser_cls, read):
    parser = parser_cls(max_line=16)
    assert feed_all(parser, [b"data: 0123456789\n", b'{"k": 123456789}\n']) == read


# ---------------------------------------------------------------------------- properties

text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12
)
field_name = st.sampled_from(["", "token", "sources", "done"])
newline = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A valid event stream and the events it means."""
    nl = draw(newline)
    out = [b"\xef\xbb\xbf"] if draw(st.booleans()) else []
    expected: list[SSEEvent] = []
    last_id: str | None = None
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            out.append(b":" + draw(text).encode() + nl)
        name = draw(field_name)
        if name:
            out.append(b"event: " + name.encode() + nl)
        if draw(st.booleans()):
            last_id = draw(text)
            out.append(b"id: " + last_id.encode() + nl)
        lines = draw(st.lists(text, min_size=1, max_size=3))
        for line in lines:
            sep = b"data: " if draw(st.booleans()) or line.startswith(" ") else b"data:"
            out.append(sep + line.encode() + nl)
        out.append(nl)
        expected.append(SSEEvent("\n".join(lines), name or "message", last_id))
    return b"".join(out), expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def ndjson_streams(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    nl = draw(newline)
    values = draw(st.lists(json_values, max_size=6))
    out = [b"\xef\xbb\xbf"] if draw(st.booleans()) else []
    for value in values:
        if draw(st.booleans()):
            out.append(nl)
        ascii_only = draw(st.booleans())
        out.append(json.dumps(value, ensure_ascii=ascii_only).encode() + nl)
    return b"".join(out), values


cuts = st.lists(st.integers(0, 10_000), max_size=20)


@given(sse_streams(), cuts)
def test_sse_any_chunking_gives_the_same_events(stream, points):
    data, expected = stream
    assert feed_all(SSEParser(), [data]) == expected
    assert feed_all(SSEParser(), split_at(data, points)) == expected
    assert feed_all(SSEParser(), [bytes([b]) for b in data]) == expected


@given(ndjson_streams(), cuts)
def test_ndjson_any_chunking_gives_the_same_values(stream, points):
    data, expected = stream
    assert feed_all(NDJSONParser(), [data]) == expected
    assert feed_all(NDJSONParser(), split_at(data, points)) == expected
    assert feed_all(NDJSONParser(), [bytes([b]) for b in data]) == expected


# Random bytes, and bytes drawn from the formats' own alphabet (more lines, fields, BOMs).
wire_bytes = st.binary(max_size=400) | st.lists(
    st.sampled_from(list(b'data: {}[]"1\r\n:x\xef\xbb\xbf\xff'))
).map(bytes)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PARSERS), wire_bytes, cuts)
def test_arbitrary_bytes_only_ever_raise_line_too_long(parser_cls, data, points):
    def run(chunks: list[bytes]) -> list[Any] | str:
        try:
            return feed_all(parser_cls(max_line=64), chunks)
        except LineTooLong:
            return "too long"

    whole = run([data])
    assert run(split_at(data, points)) == whole
    assert run([bytes([b]) for b in data]) == whole


@given(st.one_of(st.text(max_size=30), json_values.map(json.dumps)))
# After a value, JSON allows only space, tab, CR and LF; str.isspace() takes more.
@example("0\x1f")
@example('{"a": 1}\u00a0')
@example("1\u2028")
def test_fast_loads_agrees_with_json_loads(line):
    try:
        expected: Any = ("ok", json.loads(line))
    except (ValueError, RecursionError):
        expected = "error"
    try:
        got: Any = ("ok", loads(line))
    except (ValueError, RecursionError):
        got = "error"
    assert got == expected
