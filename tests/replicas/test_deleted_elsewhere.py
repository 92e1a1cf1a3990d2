"""A Slack question deleted while it waits its turn, whose deletion reaches another
replica than the one holding the question, is not sent to the chat API either.

Two real `chat-bridge run` processes in Slack HTTP mode share one PostgreSQL
store; the load balancer sends each event to either.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.store import open_store
from tests.fakes.chatapi import FakeChatAPI, Script
from tests.fakes.slack import FakeSlack
from tests.replicas.test_two_replicas import Replica, start_replica, stop
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHANNEL = "C0DELETE1"


def replica_config(
    tmp: Path, store_url: str, slack: FakeSlack, chat: FakeChatAPI, name: str = "config"
) -> Path:
    """A replica's config: Slack HTTP mode, every message of CHANNEL one conversation,
    a heartbeat a second."""
    config = tmp / f"{name}.yaml"
    config.write_text(f"""
store: {store_url}
http: {{listen: "127.0.0.1:0"}}
backends:
  docs: {{kind: chatmount, url: "{chat.endpoint("chatmount")}", api_key: "${{KEY}}"}}
slack:
  bot_token: ${{SLACK_BOT_TOKEN}}
  signing_secret: ${{SLACK_SIGNING_SECRET}}
  api_url: {slack.url}
routes:
  - {{platform: slack, channels: [{CHANNEL}], backend: docs, session: channel, trigger: all}}
reply: {{edit_interval: 0.05}}
limits: {{heartbeat_interval: 1.0}}
""")
    return config


def replica_env(slack: FakeSlack, chat: FakeChatAPI) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "KEY": chat.api_key,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
    }


def asked(chat: FakeChatAPI) -> list[str]:
    return [r.json["message"] for r in chat.requests]


async def kill(*replicas: Replica) -> None:
    for replica in replicas:
        if replica.proc.returncode is None:
            replica.proc.kill()
        await replica.proc.wait()


async def poll(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate()` (its result awaited if it is a coroutine) until true, within
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if await found if inspect.isawaitable(found) else found:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def a_question_waiting(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> AsyncIterator[tuple[Replica, Replica, str]]:
    """Two replicas on one store: the first (the holder) answers "slow one" slowly,
    with "my password is hunter2" waiting its turn behind it. Yields the holder, the
    other and that question's ts; the replicas are stopped after."""
    fake_slack.set_rate("chat.update", 1000, 60.0)
    fake_chat_api.answer_for = lambda q: (
        Script(tokens=["a ", "slow ", "answer"], token_delay=1.5)
        if q == "slow one"
        else Script(tokens=["answer ", "to ", q])
    )
    async with pg_schema_url() as url:
        config = replica_config(tmp_path, url, fake_slack, fake_chat_api)
        env = replica_env(fake_slack, fake_chat_api)
        holder, other = await start_replica(config, env), await start_replica(config, env)
        store = open_store(url)
        await store.open()
        try:
            [first] = fake_slack.user_message(CHANNEL, "slow one")
            await fake_slack.post_event(holder.events_url, first)
            await fake_chat_api.wait_requests(1, timeout=20)
            [second] = fake_slack.user_message(CHANNEL, "my password is hunter2")
            await fake_slack.post_event(holder.events_url, second)

            async def waiting() -> bool:  # recorded behind the answer, in its turn
                return len(await store.inflight_orphans("nobody", math.inf)) == 2

            await poll(waiting, "the second question to wait its turn")
            yield holder, other, second["event"]["ts"]
            await stop(holder)
            await stop(other)
        finally:
            await store.aclose()
            await kill(holder, other)


async def the_conversation_goes_on(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, other: Replica
) -> None:
    [third] = fake_slack.user_message(CHANNEL, "and now?")
    await fake_slack.post_event(other.events_url, third)
    await fake_chat_api.wait_requests(2, timeout=20)
    assert asked(fake_chat_api) == ["slow one", "and now?"]


@pytest.mark.timeout(90)
async def test_a_deletion_told_to_another_replica_withdraws_the_question(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Only the replica that got the deletion knew: the other asked the chat API the
    # deleted question (a password posted by mistake) once its turn came.
    async with a_question_waiting(fake_slack, fake_chat_api, tmp_path) as (holder, other, ts):
        status, _ = await fake_slack.post_event(
            other.events_url, fake_slack.user_delete(CHANNEL, ts)
        )
        assert status == 200

        # Its turn comes once the first answer is done.
        await poll(
            lambda: (
                any("withdrawn" in line for line in holder.log) or len(fake_chat_api.requests) > 1
            ),
            "the holder to take up the deleted question",
        )
        assert asked(fake_chat_api) == ["slow one"]
        await fake_slack.wait_for(lambda: not fake_slack.reactions.get((CHANNEL, ts)))
        await fake_slack.wait_for(
            lambda: [m.text for m in fake_slack.all_bot_messages()] == ["a slow answer"]
        )
        await the_conversation_goes_on(fake_slack, fake_chat_api, other)
