"""The `chat-bridge` command run in a process of its own, as a shell runs it: from the
project's root, warnings as errors, with the environment it is given and no other."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = (sys.executable, "-W", "error", "-m", "adapters")


def run_command(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`chat-bridge *args`, waited for."""
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )


async def run_command_async(
    *args: str, env: dict[str, str], stdout: int = subprocess.PIPE, timeout: float = 30
) -> tuple[int, str, str]:
    """`chat-bridge *args` awaited, for a command that speaks to fakes served by the test's
    own event loop: its exit code, and what it wrote out (when `stdout` is the pipe) and
    to its errors."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *args, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, (out or b"").decode(), err.decode()
