"""A real `chat-bridge run` process killed with SIGKILL mid-answer, then restarted."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI

ROOT = Path(__file__).resolve().parents[2]


def inflight_rows(db: Path) -> list[tuple[str, str, str]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT key, message_ids, text FROM inflight").fetchall()
    except sqlite3.OperationalError:
        return []  # not migrated yet
    finally:
        conn.close()


def _hangup_as_default() -> None:
    """The daemon leaves SIGHUP alone where it is ignored (started under nohup): the
    tests' own run under nohup must not hand that on to the daemons they start."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


async def start(config: Path, key: str, **options: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
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
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "KEY": key},
        **{"preexec_fn": _hangup_as_default, **options},
    )


@pytest.mark.timeout(90)
async def test_kill_9_mid_stream_then_restart(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    db = tmp_path / "data" / "bridge.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "{fake_chat_api.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs, session: user}}]
reply: {{edit_interval: 0.05}}
logging: {{level: DEBUG}}
""")
    fake_chat_api.enqueue(tokens=["The ", "first ", "half ", "and never more"], hang_after=3)
    fake_chat_api.enqueue(tokens=["A ", "fresh ", "answer."])

    first = await start(config, fake_chat_api.api_key)
    assert first.stdin is not None
    first.stdin.write(b"Tell me a long story\n")
    await first.stdin.drain()
    # Mid-stream: the reply's message is recorded as in flight with its id.
    await wait_for(
        lambda: any(json.loads(ids) and "half" in text for _, ids, text in inflight_rows(db)),
        timeout=30,
    )
    first.kill()
    await first.wait()
    assert first.returncode == -signal.SIGKILL
    assert len(inflight_rows(db)) == 1

    second = await start(config, fake_chat_api.api_key)
    assert second.stdin is not None and second.stdout is not None
    # At start-up the interrupted reply is marked, keeping its text.
    shown = ""
    while "interrupted" not in shown:
        shown += (await asyncio.wait_for(second.stdout.readline(), 30)).decode()
    assert shown.startswith("bot › The first half")
    assert shown.rstrip().endswith("_⚠️ interrupted by a restart — please ask again_")
    await wait_for(lambda: inflight_rows(db) == [], timeout=30)

    # The conversation kept its session: the next question continues it.
    second.stdin.write(b"And then?\n")
    await second.stdin.drain()
    await fake_chat_api.wait_requests(2, timeout=30)
    await wait_for(lambda: inflight_rows(db) == [], timeout=30)
    second.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()[-2000:]
    assert "Warning" not in err.decode(), err.decode()[-2000:]
    assert "A fresh answer." in out.decode()
    first_req, second_req = fake_chat_api.requests
    assert second_req.json["session_id"] == first_req.json["session_id"]
    assert fake_chat_api.api_key not in err.decode()  # DEBUG logs of the daemon
