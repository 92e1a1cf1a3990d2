"""SIGTERM: live replies finish within the grace period; the rest are marked interrupted."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import entry
from bridge import cli
from bridge.config import parse_config
from bridge.recovery import Recovery
from tests.core.fakeplatform import TEST_REGISTRY, LocalPlatform, wait_for
from tests.core.relay_support import make_config
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.faults.test_kill import ROOT, start


def write_config(path: Path, fake: FakeChatAPI, db: Path, grace: float) -> None:
    path.write_text(f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "{fake.endpoint("chatmount")}", api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs, session: user}}]
reply: {{edit_interval: 0.05}}
limits: {{shutdown_grace: {grace}}}
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("finishes", "sig"),
    # SIGHUP: the terminal or SSH session that started the daemon closed.
    [(True, signal.SIGTERM), (False, signal.SIGTERM), (True, signal.SIGHUP)],
)
async def test_sigterm_drains_live_replies(
    fake_chat_api: FakeChatAPI, tmp_path: Path, finishes: bool, sig: signal.Signals
) -> None:
    db = tmp_path / "bridge.db"
    config = tmp_path / "config.yaml"
    # A 1.2 s answer: within a 10 s grace it finishes; past a 0.3 s grace it is interrupted.
    write_config(config, fake_chat_api, db, grace=10 if finishes else 0.3)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(12)], token_delay=0.1)
    proc = await start(config, fake_chat_api.api_key)
    assert proc.stdin is not None
    proc.stdin.write(b"question\n")
    await proc.stdin.drain()
    await fake_chat_api.wait_requests(1, timeout=30)
    proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Warning" not in err.decode(), err.decode()[-2000:]
    text = out.decode()
    if finishes:
        assert "w11" in text and "interrupted" not in text
    else:
        assert "interrupted by a restart — please ask again" in text
        assert "w11" not in text
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM inflight").fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.timeout(60)
async def test_sighup_is_ignored_when_started_with_nohup(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    write_config(tmp_path / "config.yaml", fake_chat_api, tmp_path / "bridge.db", grace=10)
    fake_chat_api.enqueue(tokens=["First ", "answer."])
    fake_chat_api.enqueue(tokens=["Second ", "answer."])
    # What `nohup` does before it starts the daemon.
    proc = await start(
        tmp_path / "config.yaml",
        fake_chat_api.api_key,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"first?\n")
    await proc.stdin.drain()
    async with asyncio.timeout(30):
        while b"First answer." not in await proc.stdout.readline():
            pass
    proc.send_signal(signal.SIGHUP)  # the session that started it closed
    proc.stdin.write(b"second?\n")  # still read and answered
    await proc.stdin.drain()
    async with asyncio.timeout(30):
        while b"Second answer." not in await proc.stdout.readline():
            pass
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Warning" not in err.decode(), err.decode()[-2000:]
    assert "stopping at once" not in err.decode()
    assert err.decode().count("stopping: finishing live replies") == 1


@pytest.mark.timeout(60)
async def test_a_second_signal_stops_at_once(fake_chat_api: FakeChatAPI, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    write_config(config, fake_chat_api, tmp_path / "bridge.db", grace=600)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(600)], token_delay=0.1)  # a minute
    proc = await start(config, fake_chat_api.api_key)
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(b"question\n")
    await proc.stdin.drain()
    await fake_chat_api.wait_requests(1, timeout=30)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):  # the first signal is taken before the second is sent
        while b"stopping: finishing live replies" not in await proc.stderr.readline():
            pass
    proc.send_signal(signal.SIGINT)  # Ctrl-C after `docker stop`, or a second kill
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Warning" not in err.decode(), err.decode()[-2000:]
    assert "interrupted by a restart — please ask again" in out.decode()
    assert "stopping at once" in err.decode()


@pytest.mark.timeout(60)
async def test_a_stop_while_a_platform_is_slow_to_connect_ends_the_start(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_slack.slow["auth.test"] = [45.0]  # Slack takes its time to answer the sign-in
    config = tmp_path / "config.yaml"
    config.write_text(f"""
store: sqlite://{tmp_path / "bridge.db"}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "{fake_chat_api.endpoint("chatmount")}", api_key: "${{KEY}}"}}
slack: {{bot_token: "${{BOT}}", app_token: "${{APP}}", api_url: "{fake_slack.url}"}}
routes: [{{platform: slack, backend: docs, session: user}}]
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "adapters",
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "KEY": fake_chat_api.api_key,
            "BOT": fake_slack.bot_token,
            "APP": fake_slack.app_token,
        },
    )
    await wait_for(lambda: fake_slack.count("auth.test") == 1, timeout=30)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 10)  # not the 45 s of the sign-in
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Warning" not in err.decode(), err.decode()[-2000:]
    assert "stopped while starting" in err.decode()


@pytest.mark.timeout(60)
async def test_a_stop_while_the_start_marks_the_last_runs_replies_gives_live_ones_their_grace(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The platforms answer while the start marks what the last run left (minutes, on a
    # platform's edit limits): a stop then cut the live answers at once, unmarked, and
    # said only "stopped while starting".
    marking = asyncio.Event()

    async def slow_recovery(self: Recovery) -> int:
        marking.set()
        await asyncio.Event().wait()
        return 0

    monkeypatch.setattr(Recovery, "recover", slow_recovery)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(10)], token_delay=0.05)
    text = make_config(fake_chat_api, tmp_path / "b.db", extra="limits: {shutdown_grace: 30}")
    config = parse_config(text, env={"KEY": fake_chat_api.api_key}, registry=TEST_REGISTRY)
    serving = asyncio.ensure_future(cli._serve(config, TEST_REGISTRY))
    try:
        await asyncio.wait_for(marking.wait(), 10)
        target = await LocalPlatform.instances[-1].say("A question?")
        await fake_chat_api.wait_requests(1, timeout=10)
        os.kill(os.getpid(), signal.SIGTERM)  # the daemon's own handler takes it
        assert await asyncio.wait_for(serving, 30) == 0
    finally:
        serving.cancel()
    assert target.visible() == ["".join(f"w{i} " for i in range(10))]  # finished
    assert "the next start marks the rest" in caplog.text


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_stop_while_the_command_loads_ends_the_start(tmp_path: Path) -> None:
    # A handler that raised SystemExit while Python imported was now and then lost in
    # the import machinery's own callbacks: the daemon ran on until killed (`docker
    # stop` waiting its timeout), or ended with a traceback. The stop is held until the
    # event loop takes it, and ends the start as any stop during the start does.
    config = tmp_path / "config.yaml"
    config.write_text(f"""
store: sqlite://{tmp_path / "bridge.db"}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "http://127.0.0.1:9/v1/chat", api_key: "${{KEY}}"}}
console: {{}}
routes: [{{platform: console, backend: docs, session: user}}]
""")
    runs = 40
    # Not SIGINT: before the command runs, Python's own handler takes it (a Ctrl-C
    # while Python loads its `site` ends it with a fatal error).
    signals = (signal.SIGTERM, signal.SIGHUP)
    at_once = asyncio.Semaphore(4)
    failed: list[str] = []

    async def stopped_at(i: int) -> None:
        # Spread over the half second the command takes to load and start its loop.
        delay, sig = 0.4 * i / runs, signals[i % len(signals)]
        async with at_once:
            proc = await start(config, "k_12345")
            await asyncio.sleep(delay)
            proc.send_signal(sig)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 30)
            except TimeoutError:
                proc.kill()
                _, err = await proc.communicate()
            if proc.returncode == -sig:  # it came before Python ran the command
                return
            text = err.decode()
            if proc.returncode != 0 or any(
                word in text for word in ("Traceback", "Exception ignored", "Warning")
            ):
                failed.append(f"{sig.name} at {delay:.3f} s: exit {proc.returncode}\n{text}")

    await asyncio.gather(*(stopped_at(i) for i in range(runs)))
    assert not failed, f"{len(failed)} of {runs}:\n" + "\n".join(failed)[-4000:]


def test_the_other_commands_stop_on_a_signal_as_on_ctrl_c(tmp_path: Path) -> None:
    # With no handler, a command run as PID 1 in a container (`docker run IMAGE check
    # --probe`) ignored SIGTERM: `docker stop` waited for its kill timeout. As Ctrl-C
    # does, a stop signal interrupts them (no SystemExit raised inside an asyncio task).
    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert entry.main(["check", "-c", str(tmp_path / "missing.yaml")]) == 2
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_command_handles_stop_signals_before_its_heavy_imports() -> None:
    probe = (
        "import sys, adapters.entry\n"
        "print(sorted(m for m in ('bridge', 'pydantic', 'httpx', 'aiohttp') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
