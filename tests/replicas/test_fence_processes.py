"""One of two real `chat-bridge run` processes (Slack HTTP mode, one PostgreSQL
store) loses its connection to the store, the other does not: the one cut off
stops answering before the other takes its conversation over, and answers
again once the store is back."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from bridge.interruptions import INTERRUPTED
from tests.fakes.chatapi import FakeChatAPI, Script
from tests.fakes.cutter import Cutter
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

SLOW = [f"word{i} " for i in range(30)]


def answer(question: str) -> Script:
    if question == "slow one":
        return Script(tokens=SLOW, token_delay=0.5)
    return Script(tokens=["answer ", "to ", question])


@pytest.mark.timeout(120)
async def test_a_replica_cut_off_from_the_store_stops_before_another_takes_over(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # It answered on while the other replica, seeing its heartbeat stale, took the
    # conversation over: the next question was answered alongside, and the first
    # one's later edits undid the other replica's "interrupted" mark.
    fake_slack.set_rate("chat.update", 1000, 60.0)
    fake_chat_api.answer_for = answer
    async with pg_schema_url() as url:
        where = urllib.parse.urlsplit(url)
        assert where.hostname is not None and where.port is not None
        async with Cutter(where.hostname, where.port) as cutter:
            url_a = url.replace(where.netloc, f"{where.username}@127.0.0.1:{cutter.port}")
            env = replica_env(fake_slack, fake_chat_api)
            a = await start_replica(
                replica_config(tmp_path, url_a, fake_slack, fake_chat_api, "a"), env
            )
            b = await start_replica(
                replica_config(tmp_path, url, fake_slack, fake_chat_api, "b"), env
            )
            try:
                [first] = fake_slack.user_message(CHANNEL, "slow one")
                await fake_slack.post_event(a.events_url, first)
                await fake_slack.wait_for(
                    lambda: any("word1" in m.text for m in fake_slack.all_bot_messages())
                )
                cutter.cut()
                [second] = fake_slack.user_message(CHANNEL, "q2")
                await fake_slack.post_event(b.events_url, second)

                # The first answer stops before the other replica asks the next question.
                await fake_chat_api.wait_disconnects(1, timeout=15)
                assert asked(fake_chat_api) == ["slow one"]
                await fake_chat_api.wait_requests(2, timeout=15)
                assert asked(fake_chat_api) == ["slow one", "q2"]
                await fake_slack.wait_for(
                    lambda: any(m.text == "answer to q2" for m in fake_slack.all_bot_messages())
                )
                cut_reply = fake_slack.all_bot_messages()[0]
                await fake_slack.wait_for(lambda: INTERRUPTED in cut_reply.text)
                assert "word29" not in cut_reply.text
                # Marked (by either replica), never unmarked after.
                marked = [INTERRUPTED in text for text in cut_reply.versions]
                assert marked == sorted(marked), cut_reply.versions
                fenced = [line for line in a.log if "no heartbeat reached the store" in line]
                assert len(fenced) == 1 and "ERROR" in fenced[0]

                # Back once its heartbeat reaches the store: it answers in its turn.
                cutter.restore()
                await poll(
                    lambda: any("heartbeat again" in line for line in a.log),
                    "the replica to be back",
                )
                [third] = fake_slack.user_message(CHANNEL, "q3")
                await fake_slack.post_event(a.events_url, third)
                await fake_slack.wait_for(
                    lambda: any(m.text == "answer to q3" for m in fake_slack.all_bot_messages())
                )
                assert asked(fake_chat_api) == ["slow one", "q2", "q3"]
                await stop(a)
                await stop(b)
            finally:
                await kill(a, b)
