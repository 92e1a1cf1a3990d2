"""A burst of questions in one Slack channel: its replies' first messages wait their
turn to be posted (one a second), and one whose answer came meanwhile shows it, not
a placeholder that a chat.update (a workspace's budget the burst spends) would
replace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.budget import Budgets
from bridge.interfaces import Source
from bridge.render import LiveReply
from tests.core.recording import use_slot
from tests.fakes.chatapi import FakeChatAPI, Script
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Inbox, asked, assert_clean, open_harness, running

PLACEHOLDER = "_Thinking…_"


def answer(question: str) -> Script:
    """An answer that names its question, whole within a moment."""
    return Script(tokens=["Answer ", "to ", f"{question.split()[-1]}."])


async def test_answers_that_came_before_their_turn_to_post_are_posted_whole(
    fake_slack: FakeSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # When each reply's answer was whole, as the count of Slack's calls then: a post
    # after the channel's next one was decided after it (one post a second there).
    done: dict[str, int] = {}
    finish = LiveReply.finish

    async def finishing(
        reply: LiveReply, final_text: str | None, sources: Any = (), show_sources: bool = True
    ) -> None:
        assert reply.target.address.thread is not None
        done[reply.target.address.thread] = len(fake_slack.calls)
        await finish(reply, final_text, sources, show_sources)

    monkeypatch.setattr(LiveReply, "finish", finishing)
    fake_chat_api.answer_for = answer
    fake_slack.set_rate("chat.postMessage", 1, 0.5, "channel")
    h, bridge = await open_harness(
        fake_slack, fake_chat_api, tmp_path, "socket", "post_rate: {count: 1, per: 0.6}"
    )
    try:
        roots = {}
        for i in range(20):
            roots[await h.ask(CHANNEL, f"question q{i}", user=f"U0PERSON{i:02d}")] = i
        replies = {
            root: await h.answer(CHANNEL, root, f"Answer to q{i}.") for root, i in roots.items()
        }
    finally:
        await bridge.aclose()
    posts = [
        n
        for n, (method, args) in enumerate(fake_slack.calls)
        if method == "chat.postMessage" and args.get("channel") == CHANNEL
    ]
    late = []
    for root, i in roots.items():
        [message] = replies[root]
        assert message.text == f"Answer to q{i}."
        first = next(n for n in posts if fake_slack.calls[n][1].get("thread_ts") == root)
        before = [n for n in posts if n < first]
        if before and done[root] <= before[-1]:
            late.append(root)
            # Shown whole at once: no placeholder, and no chat.update to replace it.
            assert message.versions == [f"Answer to q{i}."], (i, message.versions)
    assert len(late) >= 10, len(late)  # most came well before their turn
    assert_clean(fake_slack)


@pytest.mark.parametrize("mode", ["update", "native"])
async def test_text_that_came_while_the_first_post_waited_is_what_it_shows(
    fake_slack: FakeSlack, mode: str
) -> None:
    inbox = Inbox()
    fast = {"count": 1, "per": 0.3}
    async with running(fake_slack, inbox, mode=mode, post_rate=fast, stream_rate=fast):
        target = await asked(fake_slack, inbox)
        budgets = Budgets()
        use_slot(budgets.get(target.limits.post_bucket, target.limits.post_rate))  # busy
        reply = LiveReply(target, budgets, edit_interval=0.05)
        await reply.start()
        reply.feed("Here ")
        reply.feed("it is.")
        await reply.finish(None, [Source("https://docs.example/a", "Guide")])
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert message.text == message.versions[0]
        assert message.text.startswith("Here it is.") and "Guide" in message.text
        assert PLACEHOLDER not in message.versions
        assert fake_slack.count("chat.update") == fake_slack.count("chat.appendStream") == 0
        # The question shows its "thinking" reaction until the answer is whole.
        assert fake_slack.count("reactions.add") == 1
        await fake_slack.wait_for(lambda: fake_slack.count("reactions.remove") == 1)
        assert_clean(fake_slack)
