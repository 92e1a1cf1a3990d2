"""Throughput of the chat-API stream parsers, and of each streaming dialect end to end.

    python3 bench/parsers.py [--events 200000] [--chunk 4096]

Parsers: a generated stream of N events is fed in chunks of `--chunk` bytes
(like reads from a socket) and the events per second counted. Dialects: the
same size of answer in each dialect's wire format is served by an in-memory
httpx transport and read through the dialect's `stream()`, counting tokens per
second (parsing, JSON decoding and event building, without the network).
chaturdata polls for whole answers and has no stream parser, so it has no row.

Prints a table and writes bench/results/parsers.json. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.apis._wire import DataLineParser, NDJSONParser, SSEParser  # noqa: E402
from adapters.registry import REGISTRY  # noqa: E402
from bridge.interfaces import ChatRequest, Token  # noqa: E402

WORDS = ["The", " answer", " is", " forty", "-two", ",", " as", " the", " docs", " say", "."]


def _word(i: int) -> str:
    return WORDS[i % len(WORDS)]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# Each dialect's stream body for n tokens, as its API sends it.
def chatmount_body(n: int) -> bytes:
    tokens = b"".join(b"data: " + _json({"type": "token", "content": _word(i)}) + b"\n\n"
                      for i in range(n))
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
        body = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
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


async def bench_dialect(kind: str, chunks: list[bytes]) -> tuple[float, int]:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Body(chunks))

    cls = REGISTRY.dialects[kind]()
    options = cls.Options.model_validate({"kind": kind, **OPTIONS[kind]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        api = cls("bench", options, http)
        tokens = 0
        start = time.perf_counter()
        async for event in api.stream(ChatRequest(message="q", session="cb-bench")):
            if isinstance(event, Token):
                tokens += 1
        return time.perf_counter() - start, tokens


def best_of(runs: int, fn: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    return min((fn() for _ in range(runs)), key=lambda r: r[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "parsers.json"))
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    for name, (make, body) in PARSERS.items():
        data = body(args.events)
        chunks = chunks_of(data, args.chunk)
        seconds, count = best_of(args.runs, lambda m=make, c=chunks: bench_parser(m, c))
        rows.append({"what": f"parser {name}", "items": count, "seconds": seconds,
                     "per_second": count / seconds, "mb_per_second": len(data) / seconds / 1e6})
    for kind, body in BODIES.items():
        data = body(args.events)
        chunks = chunks_of(data, args.chunk)
        seconds, count = best_of(
            args.runs, lambda k=kind, c=chunks: asyncio.run(bench_dialect(k, c))
        )
        rows.append({"what": f"dialect {kind}", "items": count, "seconds": seconds,
                     "per_second": count / seconds, "mb_per_second": len(data) / seconds / 1e6})

    print(f"{args.events} events per stream, {args.chunk}-byte chunks, best of {args.runs}")
    print(f"{'what':<24}{'items':>10}{'seconds':>10}{'items/s':>14}{'MB/s':>9}")
    for row in rows:
        print(f"{row['what']:<24}{row['items']:>10}{row['seconds']:>10.3f}"
              f"{row['per_second']:>14,.0f}{row['mb_per_second']:>9.1f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "events": args.events, "chunk": args.chunk,
            "runs": args.runs}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
