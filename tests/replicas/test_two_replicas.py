"""Two real `chat-bridge run` processes in Slack HTTP mode sharing one PostgreSQL store.

Every event is delivered to both (as a retrying load balancer would), plus a
Slack retry: each question must be answered exactly once, in order within its
conversation. Killing the replica that is answering leaves the other one
answering, and the interrupted reply marked.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, Script
from tests.fakes.slack import FakeSlack
from tests.store.conftest import PG_URL, pg_schema_url

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ["C0REPLICA1", "C0REPLICA2", "C0REPLICA3"]


@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    port: int = 0
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def answering(self, key_part: str) -> bool:
        return any("answering" in line and key_part in line for line in self.log)


async def start_replica(config: Path, env: dict[str, str]) -> Replica:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "adapters",
        "run",
        "-c",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    replica = Replica(proc)
    ready = asyncio.get_running_loop().create_future()

    async def read() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace")
            replica.log.append(line)
            found = re.search(r"chat-bridge running on port (\d+)", line)
            if found and not ready.done():
                ready.set_result(int(found.group(1)))
        if not ready.done():
            ready.set_exception(RuntimeError("replica exited:\n" + "".join(replica.log)[-3000:]))

    replica.reader = asyncio.create_task(read())
    replica.port = await asyncio.wait_for(ready, 30)
    return replica


async def stop(replica: Replica) -> None:
    if replica.proc.returncode is None:
        replica.proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(replica.proc.wait(), 30)
    if replica.reader is not None:
        await replica.reader


@pytest.mark.timeout(120)
async def test_two_replicas_answer_each_event_once_in_order(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_slack.set_rate("chat.postMessage", 100, 1.0)
    fake_slack.set_rate("chat.update", 1000, 60.0)
    fake_chat_api.answer_for = lambda q: Script(
        tokens=["answer ", "to ", f"{q.split('> ', 1)[-1]}"], token_delay=0.1
    )
    async with pg_schema_url() as store_url:
        config = tmp_path / "config.yaml"
        config.write_text(f"""
store: {store_url}
http: {{listen: "127.0.0.1:0"}}
backends:
  docs: {{kind: chatmount, url: "{fake_chat_api.endpoint("chatmount")}", api_key: "${{KEY}}"}}
slack:
  bot_token: ${{SLACK_BOT_TOKEN}}
  signing_secret: ${{SLACK_SIGNING_SECRET}}
  api_url: {fake_slack.url}
routes:
  - {{platform: slack, channels: [{", ".join(CHANNELS)}], backend: docs, session: thread}}
reply: {{edit_interval: 0.05}}
limits: {{heartbeat_interval: 1.0}}
""")
        env = {
            "PATH": "/usr/bin:/bin",
            "KEY": fake_chat_api.api_key,
            "SLACK_BOT_TOKEN": fake_slack.bot_token,
            "SLACK_SIGNING_SECRET": fake_slack.signing_secret,
        }
        one, two = await start_replica(config, env), await start_replica(config, env)
        try:
            await _exactly_once_in_order(fake_slack, fake_chat_api, one, two)
            await _survivor_takes_over(fake_slack, fake_chat_api, one, two, store_url)
        finally:
            for replica in (one, two):
                if replica.proc.returncode is None:
                    replica.proc.kill()
                await replica.proc.wait()
        logs = "".join(one.log + two.log)
        for secret in (fake_slack.bot_token, fake_slack.signing_secret, fake_chat_api.api_key):
            assert secret not in logs
        assert "Warning" not in logs, logs[-3000:]


async def _deliver_everywhere(slack: FakeSlack, replicas: list[Replica], body: dict) -> None:
    """To every replica at once, then a Slack retry of the same event to the first."""
    results = await asyncio.gather(*(slack.post_event(r.events_url, body) for r in replicas))
    assert all(status == 200 for status, _ in results)
    status, _ = await slack.post_event(replicas[0].events_url, body, retry_num=1)
    assert status == 200


async def _ask(
    slack: FakeSlack, replicas: list[Replica], channel: str, text: str, thread: str | None = None
) -> str:
    bodies = slack.user_message(channel, f"<@{slack.bot_user_id}> {text}", thread_ts=thread)
    for body in bodies:
        await _deliver_everywhere(slack, replicas, body)
    return thread or bodies[0]["event"]["ts"]


def _replies(slack: FakeSlack, channel: str, root: str) -> list[str]:
    return [m.text for m in slack.bot_replies(channel, root)]


async def _exactly_once_in_order(
    slack: FakeSlack, chat: FakeChatAPI, one: Replica, two: Replica
) -> None:
    both = [one, two]
    root_a = await _ask(slack, both, CHANNELS[0], "a1")
    root_b = await _ask(slack, both, CHANNELS[1], "b1")
    await _ask(slack, both, CHANNELS[0], "a2", thread=root_a)
    await _ask(slack, both, CHANNELS[1], "b2", thread=root_b)
    await _ask(slack, both, CHANNELS[0], "a3", thread=root_a)

    def finished() -> bool:
        return _replies(slack, CHANNELS[0], root_a)[-1:] == ["answer to a3"] and _replies(
            slack, CHANNELS[1], root_b
        )[-1:] == ["answer to b2"]

    await slack.wait_for(finished, timeout=60)
    await wait_for(lambda: len(chat.requests) >= 5, timeout=10)
    assert _replies(slack, CHANNELS[0], root_a) == ["answer to a1", "answer to a2", "answer to a3"]
    assert _replies(slack, CHANNELS[1], root_b) == ["answer to b1", "answer to b2"]
    questions = sorted(r.json["message"].split("> ", 1)[-1] for r in chat.requests)
    assert questions == ["a1", "a2", "a3", "b1", "b2"]
    # Across both processes, exactly five answers were started.
    started = [line for r in (one, two) for line in r.log if "answering" in line]
    assert len(started) == 5


async def _survivor_takes_over(
    slack: FakeSlack, chat: FakeChatAPI, one: Replica, two: Replica, store_url: str
) -> None:
    slow = ["a ", "long ", "story ", "that ", "goes ", "on"]
    chat.answer_for = lambda q: (
        Script(tokens=slow, token_delay=0.3, hang_after=3)
        if q.endswith("story")
        else Script(tokens=["answer ", "to ", q.split("> ", 1)[-1]])
    )
    channel = CHANNELS[2]
    root = await _ask(slack, [one, two], channel, "tell a story")
    await slack.wait_for(
        lambda: any("long" in t for t in _replies(slack, channel, root)), timeout=30
    )
    key_part = f"{channel}:{root}"
    victim, survivor = (one, two) if one.answering(key_part) else (two, one)
    assert victim.answering(key_part)
    # What it showed is recorded a moment later (a busy machine's moment may be long).
    await _recorded(store_url, "a long")
    victim.proc.kill()
    await victim.proc.wait()

    # The survivor notices the dead replica's reply and marks it.
    def marked() -> bool:
        texts = _replies(slack, channel, root)
        return bool(texts) and "interrupted" in texts[0]

    await slack.wait_for(marked, timeout=30)
    # It keeps the text recorded before the kill (an edit in flight then may be missing).
    assert _replies(slack, channel, root)[0].startswith("a ")

    # And keeps answering, in the same conversation.
    await _ask(slack, [survivor], channel, "and then?", thread=root)
    await slack.wait_for(
        lambda: _replies(slack, channel, root)[-1:] == ["answer to and then?"], timeout=30
    )
    await stop(survivor)
    assert survivor.proc.returncode == 0


async def _recorded(store_url: str, text: str) -> None:
    """Wait until a reply's in-flight record holds `text`."""
    import asyncpg

    schema = store_url.rsplit("search_path=", 1)[1]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        async with asyncio.timeout(30):
            while not await conn.fetchval(
                "SELECT count(*) FROM inflight WHERE position($1 in text) > 0", text
            ):
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
