"""The `chat-bridge` command as a shell runs it: encodings, signals, closed output."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from adapters import entry

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(90)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path), **extra}


def test_the_demo_runs_where_the_terminal_cannot_show_every_character(tmp_path: Path) -> None:
    # The first "›" raised in the console's task: the demo hung, silent, for good.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "adapters", "demo", "--no-input"],
        capture_output=True,
        env=_env(tmp_path, PYTHONIOENCODING="latin-1"),
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert b"Warning" not in result.stderr, result.stderr
    assert b"you ? " in result.stdout  # the prompt's mark, as the terminal can show it


def test_a_stop_signal_ends_the_demo_as_ctrl_c_does(tmp_path: Path) -> None:
    # SIGTERM or SIGHUP (a closed terminal) left the demo's store behind each time.
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "adapters", "demo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("chat-bridge-demo-*/demo.db")):
            assert time.monotonic() < deadline, "the demo never started"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdin:
            proc.stdin.close()
        if proc.stderr:
            proc.stderr.close()
    assert list(tmp_path.glob("chat-bridge-demo-*")) == []


def test_the_demo_runs_with_its_output_closed(tmp_path: Path) -> None:
    # `>&-` left sys.stdout None: an AttributeError and its traceback.
    result = subprocess.run(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -W error -m adapters demo --no-input >&-'],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr


def test_the_demo_answers_behind_a_proxy_the_environment_names(tmp_path: Path) -> None:
    # Its stand-in chat API is on loopback, which the proxy cannot reach: the demo's
    # question went to the proxy, and the answer blamed the API key.
    with socket.socket() as closed:  # a proxy that refuses every connection
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "adapters", "demo", "--no-input"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=_env(tmp_path, http_proxy=proxy, HTTPS_PROXY=proxy, ALL_PROXY=proxy),
    )
    assert result.returncode == 0, result.stderr
    assert "puts a hosted chatbot into Slack and Discord" in result.stdout, result.stderr
    assert "misconfigured" not in result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_ctrl_c_while_the_command_still_imports_exits_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(argv: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "adapters.registry", types.SimpleNamespace(main=interrupted))
    monkeypatch.setattr(entry, "interrupt_on_stop_signals", lambda: None)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert entry.main(["demo"]) == 130


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_the_demo_whose_output_cannot_be_written_exits_1(tmp_path: Path) -> None:
    # `demo > /dev/full` (a full disk): "the console stopped: OSError", and exit 0.
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-W", "error", "-m", "adapters", "demo", "--no-input"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
            cwd=ROOT,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "ERROR:chat_bridge.console:the console's output could not be written: "
        "No space left on device"
    ]
