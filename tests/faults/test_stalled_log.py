"""A real `chat-bridge run` whose standard error nobody reads: a log collector
stalled (Docker's blocking log mode with its driver down, a hung journald)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.fakes.chatapi import FakeChatAPI
from tests.faults.test_kill import ROOT, _hangup_as_default

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _healthz(port: int) -> int:
    async with httpx.AsyncClient(trust_env=False) as client:
        return (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=5)).status_code


def _fill(writer: int) -> None:
    """Fill the pipe `writer` writes to (not blocking), as a reader that stopped
    reading leaves it."""
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)  # the smallest it takes
    try:
        while True:
            os.write(writer, b"x" * 512)
    except BlockingIOError:
        pass


@asynccontextmanager
async def _daemon(
    fake_chat_api: FakeChatAPI, tmp_path: Path, port: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """A daemon answering questions on its standard input, healthy, its standard error
    a pipe left full: the process and the pipe's reading end (not blocking)."""
    config = tmp_path / "config.yaml"
    config.write_text(f"""
store: sqlite://{tmp_path / "bridge.db"}
http: {{listen: "127.0.0.1:{port}"}}
backends:
  docs: {{kind: chatmount, url: "{fake_chat_api.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs, session: user}}]
reply: {{edit_interval: 0.05}}
logging: {{level: DEBUG}}
limits: {{shutdown_grace: 3}}
""")
    read, write = os.pipe()
    # A description of the pipe's own, not blocking, to fill it with: the daemon's
    # stays blocking.
    filler = os.open(f"/proc/self/fd/{write}", os.O_WRONLY | os.O_NONBLOCK)
    os.set_blocking(read, False)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            "-m",
            "adapters",
            "run",
            "-c",
            str(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=write,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "KEY": fake_chat_api.api_key},
            preexec_fn=_hangup_as_default,
        )
    finally:
        os.close(write)
    try:
        # Read until it is healthy (its start logs more than a small pipe holds).
        async with asyncio.timeout(30):
            while True:
                _read_all(read)
                try:
                    if await _healthz(port) == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        _fill(filler)
        os.close(filler)
        filler = -1
        yield proc, read
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(read)
        if filler >= 0:
            os.close(filler)


def _read_all(read: int) -> bytes:
    """What the pipe holds; b"" also at its end."""
    got = b""
    try:
        while chunk := os.read(read, 1 << 16):
            got += chunk
    except BlockingIOError:
        pass
    return got


def _scripted(fake_chat_api: FakeChatAPI) -> list[str]:
    """Three answers for the chat API to give, streamed: their text."""
    answers = [f"Answer number {i}." for i in range(3)]
    for answer in answers:
        fake_chat_api.enqueue(tokens=["Answer ", answer.removeprefix("Answer ")])
    return answers


async def _answered(proc: asyncio.subprocess.Process, answers: list[str]) -> None:
    """Ask three questions and read their answers on standard output."""
    assert proc.stdin is not None and proc.stdout is not None
    for i in range(3):
        proc.stdin.write(f"question {i}\n".encode())
    await proc.stdin.drain()
    shown = ""
    async with asyncio.timeout(30):
        while not all(answer in shown for answer in answers):
            shown += (await proc.stdout.readline()).decode()


@pytest.mark.timeout(90)
async def test_a_stalled_log_reader_holds_back_no_answer_health_check_or_stop(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Lines were written on the event loop: the first one into the full pipe froze
    # the daemon. No question reached the chat API, /healthz timed out, and a SIGTERM
    # was not acted on until Docker's SIGKILL.
    answers = _scripted(fake_chat_api)
    port = _free_port()
    async with _daemon(fake_chat_api, tmp_path, port) as (proc, _):
        await _answered(proc, answers)
        assert len(fake_chat_api.requests) == 3
        assert await _healthz(port) == 200
        proc.send_signal(signal.SIGTERM)
        # The stop is made; the lines the reader never took are given up at the end.
        assert await asyncio.wait_for(proc.wait(), 30) == 0


@pytest.mark.timeout(90)
async def test_the_lines_queued_are_written_before_the_daemon_exits(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    answers = _scripted(fake_chat_api)
    port = _free_port()
    async with _daemon(fake_chat_api, tmp_path, port) as (proc, read):
        await _answered(proc, answers)
        proc.send_signal(signal.SIGTERM)
        # The collector catches up: every line queued meanwhile reaches it, to the
        # pipe's end (the daemon's exit: it holds the only writing end left).
        log = b""
        async with asyncio.timeout(30):
            while True:
                try:
                    chunk = os.read(read, 1 << 16)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                if not chunk:
                    break
                log += chunk
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
    lines = log.decode().splitlines()
    assert sum(" answered conversation=" in line for line in lines) == 3, lines[-20:]
    assert lines[-1].endswith("INFO chat_bridge.cli: stopped"), lines[-20:]
    assert "dropped" not in log.decode()
    assert fake_chat_api.api_key not in log.decode()
