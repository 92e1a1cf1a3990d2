"""A Slack question edited while it waits its turn, whose edit reaches another replica
than the one holding the question, is not sent to the chat API as it came.

Two real `chat-bridge run` processes in Slack HTTP mode share one PostgreSQL
store; the load balancer sends each event to either.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bridge.answering import EDITED_ELSEWHERE
from bridge.store import open_store
from tests.fakes.chatapi import FakeChatAPI, Script
from tests.fakes.slack import FakeSlack
from tests.replicas.test_deleted_elsewhere import (
    CHANNEL,
    asked,
    kill,
    poll,
    replica_config,
    replica_env,
)
from tests.replicas.test_two_replicas import start_replica, stop
from tests.store.conftest import pg_schema_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.timeout(90)
async def test_an_edit_told_to_another_replica_withdraws_the_waiting_question(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Only the replica that got the edit knew: the other asked the chat API the
    # question as it came (the password the edit cut) once its turn came.
    fake_slack.set_rate("chat.update", 1000, 60.0)
    fake_chat_api.answer_for = lambda q: (
        Script(tokens=["a ", "slow ", "answer"], token_delay=1.5) if q == "slow one"
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
            ts = second["event"]["ts"]
            await fake_slack.post_event(holder.events_url, second)

            async def waiting() -> bool:  # recorded behind the answer, in its turn
                return len(await store.inflight_orphans("nobody", math.inf)) == 2

            await poll(waiting, "the second question to wait its turn")
            for edit in fake_slack.user_edit(CHANNEL, ts, "my password is wrong"):
                status, _ = await fake_slack.post_event(other.events_url, edit)
                assert status == 200

            # Its turn comes once the first answer is done: not asked, its asker told.
            await poll(
                lambda: any("edited on another replica" in line for line in holder.log)
                or len(fake_chat_api.requests) > 1,
                "the holder to take up the edited question",
            )
            assert asked(fake_chat_api) == ["slow one"]
            await fake_slack.wait_for(lambda: any(
                EDITED_ELSEWHERE in str(m) for m in
                [*fake_slack.ephemerals, *(m.text for m in fake_slack.all_bot_messages())]
            ))

            # The conversation goes on.
            [third] = fake_slack.user_message(CHANNEL, "and now?")
            await fake_slack.post_event(other.events_url, third)
            await fake_chat_api.wait_requests(2, timeout=20)
            assert asked(fake_chat_api) == ["slow one", "and now?"]
            await stop(holder)
            await stop(other)
        finally:
            await store.aclose()
            await kill(holder, other)
