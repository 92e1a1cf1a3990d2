"""Throughput of the chat-API stream parsers, and of each streaming dialect end to end.

    python3 bench/parsers.py [--events 200000] [--chunk 4096] [--tokens-per-read 25]
                             [--answer-tokens 300]

Parsers: a generated stream of N events is fed in chunks of `--chunk` bytes
(like reads from a socket) and the events per second counted. Dialects: the
same size of answer in each dialect's wire format is served by an in-memory
httpx transport and read through the dialect's `stream()`, counting the
answer's token events per second (parsing, JSON decoding and event building,
without the network). chaturdata polls for whole answers and has no stream
parser, so it has no row.

Pipeline: the bridge's own work per streamed token, without the network
stacks: the events as chatmount answers of `--answer-tokens` tokens (300, as
in bench/streams), each read through the dialect as above, one chunk per
read, and fed to its own real live reply whose target formats every update
as Slack mrkdwn and sends it nowhere; `--tokens-per-read` token events arrive
in each read (25: an answer at 20 tokens/s read once per 1.25 s edit) and the
reply updates as often as it can, about once per read. CPU microseconds per
token event: parse, coalesce, render.

Unclosed marks: one line of 25,000 and one of 100,000 characters of emphasis
marks that never close (`*a **b ~~c __d ***e `) formatted as Slack mrkdwn,
characters per second; 4 times the line should take about 4 times as long.

Prints a table and writes bench/results/parsers.json. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.apis._wire import DataLineParser, NDJSONParser, SSEParser  # noqa: E402
from adapters.platforms.slack.mrkdwn import markdown_to_mrkdwn  # noqa: E402
from adapters.registry import REGISTRY  # noqa: E402
from bridge.budget import Budgets  # noqa: E402
from bridge.interfaces import (  # noqa: E402
    READ_GATE,
    Address,
    ChatRequest,
    Limits,
    Rate,
    ReplyTarget,
    Source,
    Token,
)
from bridge.render import LiveReply  # noqa: E402

# A timed run's result: (seconds, ...).
R = TypeVar("R", bound=tuple[Any, ...])

WORDS = ["The", " answer", " is", " forty", "-two", ",", " as", " the", " docs", " say", "."]


def _word(i: int) -> str:
    return WORDS[i % len(WORDS)]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# Each dialect's stream body for n tokens, as its API sends it.
def chatmount_body(n: int) -> bytes:
    tokens = b"".join(
        b"data: " + _json({"type": "token", "content": _word(i)}) + b"\n\n" for i in range(n)
    )
    return tokens + b'data: {"type":"done"}\n\n'


def ndjson_body(n: int) -> bytes:
    head = b'{"type":"start","conversationId":"c1"}\n'
    tokens = b"".join(_json({"type": "token", "token": _word(i)}) + b"\n" for i in range(n))
    return head + tokens + b'{"type":"done","message":"m","conversationId":"c1"}\n'


def bot_messages_body(n: int) -> bytes:
    return b"".join(b"data: " + _json({"content": _word(i)}) + b"\n\n" for i in range(n)) + (
        b"data: [DONE]\n\n"
    )


def openai_body(n: int) -> bytes:
    def chunk(i: int) -> bytes:
        delta = {"content": _word(i)}
        body = {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        return b"data: " + _json(body) + b"\n\n"

    return b"".join(chunk(i) for i in range(n)) + b"data: [DONE]\n\n"


BODIES: dict[str, Callable[[int], bytes]] = {
    "chatmount": chatmount_body,
    "ndjson": ndjson_body,
    "bot-messages": bot_messages_body,
    "openai": openai_body,
}
OPTIONS: dict[str, dict[str, Any]] = {
    "chatmount": {"url": "http://bench.invalid/v1/chat", "api_key": "k"},
    "ndjson": {"url": "http://bench.invalid/v1/chat/stream", "api_key": "k"},
    "bot-messages": {"url": "http://bench.invalid/v1/chat", "bot_slug": "b"},
    "openai": {"url": "http://bench.invalid/v1", "model": "m"},
}
PARSERS: dict[str, tuple[Callable[[], Any], Callable[[int], bytes]]] = {
    "SSEParser": (SSEParser, chatmount_body),
    "NDJSONParser": (NDJSONParser, ndjson_body),
    "DataLineParser": (DataLineParser, bot_messages_body),
}


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def bench_parser(make: Callable[[], Any], chunks: list[bytes]) -> tuple[float, int]:
    parser = make()
    count = 0
    start = time.perf_counter()
    for chunk in chunks:
        count += len(parser.feed(chunk))
    count += len(parser.close())
    return time.perf_counter() - start, count


class _Body(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def _run_dialect(kind: str, chunks: list[bytes]) -> tuple[float, int]:
    return asyncio.run(bench_dialect(kind, chunks))


async def bench_dialect(kind: str, chunks: list[bytes]) -> tuple[float, int]:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Body(chunks))

    cls = REGISTRY.dialects[kind]()
    options = cls.Options.model_validate({"kind": kind, **OPTIONS[kind]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        api = cls("bench", options, http)
        text = 0
        start = time.perf_counter()
        async for event in api.stream(ChatRequest(message="q", session="cb-bench")):
            if isinstance(event, Token):
                text += len(event.text)
        assert text, f"{kind}: no text"
        return time.perf_counter() - start, _token_events(kind, chunks)


def _token_events(kind: str, chunks: list[bytes]) -> int:
    """How many token events the answer's body holds."""
    marker = {
        "chatmount": b'"type":"token"',
        "ndjson": b'"type":"token"',
        "bot-messages": b'{"content"',
        "openai": b'"delta"',
    }[kind]
    return b"".join(chunks).count(marker)


class _NullTarget(ReplyTarget):
    """Formats like Slack, sends nowhere."""

    def __init__(self) -> None:
        self.address = Address("bench", "W", "C")
        self.limits = Limits(
            max_chars=4000,
            edit_bucket="e",
            edit_rate=Rate(10**9, 1.0),
            post_bucket="p",
            post_rate=Rate(10**9, 1.0),
        )
        self.updates = 0

    def format_markdown(self, markdown: str) -> str:
        return markdown_to_mrkdwn(markdown)

    def format_sources(self, sources: Sequence[Source]) -> str:
        return ""

    async def begin(self, text: str | None = None) -> str | None:
        return None

    async def post(self, text: str) -> str:
        self.updates += 1
        return f"m{self.updates}"

    async def edit(self, message_id: str, text: str) -> None:
        self.updates += 1

    async def end(self) -> None:
        return None

    async def notice(self, text: str) -> None:
        return None


class _Reads(httpx.AsyncByteStream):
    """One chunk per read, with a pause for the network between reads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk


async def bench_pipeline(answers: list[list[bytes]]) -> tuple[float, int, int]:
    """CPU seconds, token events and updates: chatmount -> live reply -> Slack formatting.

    Each answer (its reads) goes through its own live reply, as each question's does.
    """
    streams = iter(answers)

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Reads(next(streams)))

    cls = REGISTRY.dialects["chatmount"]()
    options = cls.Options.model_validate({"kind": "chatmount", **OPTIONS["chatmount"]})
    target = _NullTarget()
    count = 0
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        api = cls("bench", options, http)
        start = time.process_time()
        for reads in answers:
            reply = LiveReply(target, Budgets(), edit_interval=0.0)
            await reply.start()
            gate = READ_GATE.set(reply.pace)
            try:
                async for event in api.stream(ChatRequest(message="q", session="cb-bench")):
                    if isinstance(event, Token):
                        reply.feed(event.text)
            finally:
                READ_GATE.reset(gate)
            await reply.finish(None)
            count += _token_events("chatmount", reads)
        seconds = time.process_time() - start
    return seconds, count, target.updates


# Marks of every kind that never close, on one line: each opening mark looks for its
# closing one no further than the next opening mark of its kind, so the time grows
# with the line's length (it grew with its square).
UNCLOSED = "*a **b ~~c __d ***e "


def bench_unclosed(chars: int) -> tuple[float, int]:
    """Seconds to format one line of `chars` characters of UNCLOSED as Slack mrkdwn."""
    line = (UNCLOSED * (chars // len(UNCLOSED) + 1))[:chars]
    start = time.perf_counter()
    markdown_to_mrkdwn(line)
    return time.perf_counter() - start, chars


def _reads(body: bytes, per: int) -> list[bytes]:
    """An SSE body as network reads of `per` events each."""
    events = body.split(b"\n\n")
    return [
        b"".join(e + b"\n\n" for e in events[i : i + per] if e) for i in range(0, len(events), per)
    ]


def best_of(runs: int, fn: Callable[[], R]) -> R:
    """The fastest of `runs` runs of `fn` (its result's first item is the seconds)."""
    return min((fn() for _ in range(runs)), key=lambda r: r[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--tokens-per-read",
        type=int,
        default=25,
        help="pipeline: token events per network read (default 25: 20 tokens/s, "
        "one read per 1.25 s edit)",
    )
    ap.add_argument(
        "--answer-tokens",
        type=int,
        default=300,
        help="pipeline: tokens per answer, each through its own live reply "
        "(default 300, as in bench/streams; 0: one answer of --events "
        "tokens)",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "parsers.json"))
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    for name, (make, body) in PARSERS.items():
        data = body(args.events)
        chunks = chunks_of(data, args.chunk)
        seconds, count = best_of(args.runs, functools.partial(bench_parser, make, chunks))
        rows.append(
            {
                "what": f"parser {name}",
                "items": count,
                "seconds": seconds,
                "per_second": count / seconds,
                "mb_per_second": len(data) / seconds / 1e6,
            }
        )
    for kind, body in BODIES.items():
        data = body(args.events)
        chunks = chunks_of(data, args.chunk)
        seconds, count = best_of(args.runs, functools.partial(_run_dialect, kind, chunks))
        rows.append(
            {
                "what": f"dialect {kind}",
                "items": count,
                "seconds": seconds,
                "per_second": count / seconds,
                "mb_per_second": len(data) / seconds / 1e6,
            }
        )

    length = args.answer_tokens or args.events
    answers = [
        _reads(chatmount_body(min(length, args.events - i)), args.tokens_per_read)
        for i in range(0, args.events, length)
    ]
    size = sum(len(chunk) for reads in answers for chunk in reads)
    seconds, count, updates = best_of(args.runs, lambda: asyncio.run(bench_pipeline(answers)))
    rows.append(
        {
            "what": "pipeline (CPU)",
            "items": count,
            "seconds": seconds,
            "per_second": count / seconds,
            "mb_per_second": size / seconds / 1e6,
            "us_per_token": seconds / count * 1e6,
            "updates": updates,
            "answers": len(answers),
            "answer_tokens": length,
        }
    )

    for chars in (25_000, 100_000):
        took, _ = best_of(args.runs, functools.partial(bench_unclosed, chars))
        rows.append(
            {
                "what": f"mrkdwn unclosed {chars // 1000}k",
                "items": chars,
                "seconds": took,
                "per_second": chars / took,
                "mb_per_second": chars / took / 1e6,
            }
        )

    print(f"{args.events} events per stream, {args.chunk}-byte chunks, best of {args.runs}")
    print(f"{'what':<24}{'items':>10}{'seconds':>10}{'items/s':>14}{'MB/s':>9}")
    for row in rows:
        print(
            f"{row['what']:<24}{row['items']:>10}{row['seconds']:>10.3f}"
            f"{row['per_second']:>14,.0f}{row['mb_per_second']:>9.1f}"
        )

    pipe = next(r for r in rows if r["what"] == "pipeline (CPU)")
    print(
        f"pipeline: {pipe['us_per_token']:.1f} us CPU per token event (parse, coalesce, "
        f"render; {pipe['answers']:,} answers of {pipe['answer_tokens']:,} tokens, "
        f"{pipe['updates']:,} updates, one per {count / max(1, updates):.0f} tokens)"
    )

    parsers = ("parser SSEParser", "parser NDJSONParser")
    checks = [
        (f"{r['what']}: {r['per_second']:,.0f} events/s", r["per_second"] >= 300_000, ">= 300,000")
        for r in rows
        if r["what"] in parsers
    ]
    checks.append(
        (
            f"pipeline: {pipe['us_per_token']:.1f} us per token",
            pipe["us_per_token"] <= 20,
            "<= 20 us (parse, coalesce, render; the network stacks are in bench/streams)",
        )
    )
    short, long = (r["seconds"] for r in rows if r["what"].startswith("mrkdwn unclosed"))
    checks.append(
        (
            f"mrkdwn: a line of unclosed marks 4 times as long takes {long / short:.1f} "
            "times as long",
            long / short <= 8,
            "<= 8 (4: linear; 16: quadratic)",
        )
    )
    for text, ok, wanted in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text} (wanted {wanted})")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "events": args.events,
        "chunk": args.chunk,
        "runs": args.runs,
        "answer_tokens": length,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
