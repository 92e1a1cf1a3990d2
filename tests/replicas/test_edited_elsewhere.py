"""A Slack question edited while it waits its turn, whose edit reaches another replica
than the one holding the question, is not sent to the chat API as it came.

Two real `chat-bridge run` processes in Slack HTTP mode share one PostgreSQL
store; the load balancer sends each event to either.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.answering import EDITED_ELSEWHERE
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.replicas.test_deleted_elsewhere import (
    CHANNEL,
    a_question_waiting,
    asked,
    poll,
    the_conversation_goes_on,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.timeout(90)
async def test_an_edit_told_to_another_replica_withdraws_the_waiting_question(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Only the replica that got the edit knew: the other asked the chat API the
    # question as it came (the password the edit cut) once its turn came.
    async with a_question_waiting(fake_slack, fake_chat_api, tmp_path) as (holder, other, ts):
        for edit in fake_slack.user_edit(CHANNEL, ts, "my password is wrong"):
            status, _ = await fake_slack.post_event(other.events_url, edit)
            assert status == 200

        # Its turn comes once the first answer is done: not asked, its asker told.
        await poll(
            lambda: (
                any("edited on another replica" in line for line in holder.log)
                or len(fake_chat_api.requests) > 1
            ),
            "the holder to take up the edited question",
        )
        assert asked(fake_chat_api) == ["slow one"]
        await fake_slack.wait_for(
            lambda: any(
                EDITED_ELSEWHERE in str(m)
                for m in [*fake_slack.ephemerals, *(m.text for m in fake_slack.all_bot_messages())]
            )
        )
        await the_conversation_goes_on(fake_slack, fake_chat_api, other)
