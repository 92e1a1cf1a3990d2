"""Slack calls whose answer was lost, came late or never came (a dropped connection, a
timeout): nothing shown twice, taken for another answer's message, or left covering
the final text."""

from __future__ import annotations

import asyncio

import pytest

from adapters.platforms.slack import SlackTarget
from adapters.platforms.slack import late as slack_late
from adapters.platforms.slack import target as slack_target
from bridge.budget import Budgets
from bridge.errors import (
    PlatformError,
    PlatformUnreachable,
)
from bridge.interfaces import Source
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import (
    CHANNEL,
    DM,
    Inbox,
    asked,
    begun,
    cut_while_slack_starts,
    deliver,
    running,
    stopped_text,
)


async def answered(target: SlackTarget, text: str = "Hello world") -> None:
    """`text`, a whole answer, shown in `target` by a live reply, as the relay shows one."""
    reply = LiveReply(target, Budgets(), edit_interval=0.05)
    await reply.start()
    reply.feed(text)
    await reply.finish(None)


async def two_in_one_thread(fake: FakeSlack, inbox: Inbox) -> tuple[SlackTarget, SlackTarget]:
    """Two askers' questions in one thread: the targets of the first and the second."""
    first = await asked(fake, inbox, text="q1")
    mention = f"<@{fake.bot_user_id}> q2"
    await deliver(
        fake, fake.user_message(CHANNEL, mention, thread_ts=first.address.thread, user="U0USER002")
    )
    await inbox.wait(2)
    return first, inbox.items[-1][1]


async def test_native_mode_an_append_slack_took_without_answering_is_not_shown_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The connection dropped after Slack took the append: sent again (slack-sdk's own
    # retry, or the renderer's), its text showed twice for good.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        fake_slack.lose_answer["chat.appendStream"] = 1
        with pytest.raises(PlatformError, match="could not be reached"):
            await target.edit(ts, "Hello world")
        await target.edit(ts, "Hello world, again")  # the renderer tries again, text so far
        await target.end()
        assert stopped_text(fake_slack, ts) == "Hello world, again"


async def test_native_mode_a_stream_slack_started_without_answering_is_not_started_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # slack-sdk sent chat.startStream again when its answer was lost: the answer went
    # to a second stream, and the first stayed empty and "being written" for good.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        fake_slack.lose_answer["chat.startStream"] = 1
        await answered(target)
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert stopped_text(fake_slack, message.ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 1
        assert fake_slack.count("conversations.replies") == 1


async def test_native_mode_a_continuation_started_without_answering_is_not_shown_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        await fake_slack.wait_for(lambda: fake_slack.count("chat.startStream") == 1)
        fake_slack.lose_answer["chat.startStream"] = 1  # the second message's
        paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
        answer = "\n\n".join(f"{i}. {paragraph}" for i in range(12))  # two messages
        reply.feed(answer)
        await reply.finish(None)
        first, second = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert not first.streaming and not second.streaming
        assert second.text.startswith("7. ") and second.text.endswith("11. " + paragraph)
        assert fake_slack.count("chat.startStream") == 2


async def test_native_mode_a_stream_slack_did_not_take_is_started_again(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The bot's message posted in the thread after the question (the answer before it
    # went on in a second message) is not taken for the lost one.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        earlier, first = await begun(fake_slack, inbox)
        root = earlier.address.thread
        mention = f"<@{fake_slack.bot_user_id}> and then?"
        await deliver(fake_slack, fake_slack.user_message(CHANNEL, mention, thread_ts=root))
        await inbox.wait(2)
        target = inbox.items[-1][1]
        second = await earlier.post("An earlier answer, part two")
        await earlier.end()
        fake_slack.drop["chat.startStream"] = 1
        await answered(target)
        assert stopped_text(fake_slack, second) == "An earlier answer, part two"
        replies = fake_slack.bot_replies(CHANNEL, root)
        assert [m.ts for m in replies[:2]] == [first, second] and len(replies) == 3
        assert stopped_text(fake_slack, replies[2].ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 4
        assert fake_slack.count("conversations.replies") == 1


@pytest.mark.parametrize("channel", [CHANNEL, DM])
async def test_update_mode_a_placeholder_posted_without_answering_is_not_posted_twice(
    fake_slack: FakeSlack, inbox: Inbox, channel: str
) -> None:
    # In a thread (conversations.replies), and at a DM's top level (.history).
    async with running(fake_slack, inbox, thinking="none"):
        target = await asked(fake_slack, inbox, channel)
        fake_slack.lose_answer["chat.postMessage"] = 1
        await answered(target)
        replies = fake_slack.bot_replies(channel)
        assert [m.text for m in replies] == ["Hello world"]
        assert fake_slack.count("chat.postMessage") == 1


async def test_update_mode_a_post_slack_did_not_take_is_not_taken_for_another_answer(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The bot's messages in the thread just now are another answer's (a replica's, to
    # another asker), tagged with its own nonce or not: the one this process did not
    # know was taken for the lost post, and this answer overwrote it.
    async with running(fake_slack, inbox, thinking="none"):
        target = await asked(fake_slack, inbox)
        root = target.address.thread
        fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root)
        tagged = {"event_type": "chat_bridge_reply", "event_payload": {"id": "another"}}
        fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root, metadata=tagged)
        fake_slack.set_rate("chat.postMessage", 100, 1.0)
        fake_slack.drop["chat.postMessage"] = 1  # the connection dropped: nothing posted
        await answered(target)
        texts = [m.text for m in fake_slack.bot_replies(CHANNEL, root)]
        assert texts == ["Another answer", "Another answer", "Hello world"]
        assert fake_slack.count("chat.postMessage") == 2


@pytest.mark.parametrize(
    ("mode", "method"),
    [
        ("update", "chat.postMessage"),
        ("native", "chat.startStream"),
    ],
)
async def test_a_message_is_not_taken_for_another_whose_answer_is_on_its_way(
    fake_slack: FakeSlack, inbox: Inbox, mode: str, method: str
) -> None:
    # Two askers in one thread: the first answer's post (or stream) is in Slack, its
    # answer slow to come back, when the second's is dropped. The second took the
    # first's message, which both answers then edited. (Natively, the only stream this
    # process does not know is the first answer's, on its way.)
    async with running(fake_slack, inbox, mode=mode, thinking="none"):
        first, second = await two_in_one_thread(fake_slack, inbox)
        root = first.address.thread
        fake_slack.set_rate("chat.postMessage", 100, 1.0)
        fake_slack.slow_answer[method] = [0.5]
        begun_first = asyncio.create_task(first.begin())
        await fake_slack.wait_for(lambda: fake_slack.bot_replies(CHANNEL, root))
        fake_slack.drop[method] = 1
        b = await second.begin()
        a = await begun_first
        assert a is not None and b is not None and a != b
        assert [m.ts for m in fake_slack.bot_replies(CHANNEL, root)] == [a, b]
        assert fake_slack.count(method) == 3


async def test_update_mode_a_post_slack_took_late_is_not_posted_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # No answer in time (the client's timeout), and Slack posts the message a moment
    # later: looked for at once, it was not there yet, and it was posted again.
    async with running(fake_slack, inbox, thinking="none", timeout=0.5):
        target = await asked(fake_slack, inbox)
        fake_slack.slow["chat.postMessage"] = [0.8]  # carried out after the timeout
        await answered(target)
        assert [m.text for m in fake_slack.bot_replies(CHANNEL)] == ["Hello world"]
        assert fake_slack.count("chat.postMessage") == 1
        assert fake_slack.count("conversations.replies") >= 2


async def test_update_mode_an_edit_slack_made_late_does_not_cover_the_final_text(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A progress edit got no answer in time, and Slack made it after the final text:
    # the answer showed its first words for good (its sources and footnote gone).
    monkeypatch.setattr(slack_late, "WINDOW", 1.5)  # (6 s: as long as a lost post's looks)
    final = "Hello world, and this is the whole final answer."
    async with running(fake_slack, inbox, thinking="none", timeout=0.5):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        [message] = await fake_slack.wait_for(lambda: fake_slack.bot_replies(CHANNEL))
        fake_slack.slow["chat.update"] = [0.8]  # made after the client's timeout
        reply.feed("Hello")
        await fake_slack.wait_for(lambda: fake_slack.count("chat.update") == 1)
        reply.feed(" world, and this is the whole final answer.")
        await reply.finish(None)
        await fake_slack.wait_for(lambda: message.versions[-2:] == [final, "Hello"])
        await fake_slack.wait_for(lambda: message.versions[-1] == final)
        assert message.versions[-3:] == [final, "Hello", final]
        assert fake_slack.count("chat.update") == 3


async def test_native_mode_an_edit_slack_made_late_does_not_cover_the_final_text(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream's text replaced (chat.update, after its stop) is edited as a posted one.
    monkeypatch.setattr(slack_late, "WINDOW", 1.5)
    async with running(fake_slack, inbox, mode="native", thinking="none", timeout=0.5):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "_Working… 3 s_")
        fake_slack.slow["chat.update"] = [0.8]
        with pytest.raises(PlatformUnreachable):
            await target.edit(ts, "_Working… 4 s_")  # stops the stream; no answer in time
        await target.edit(ts, "The real answer")
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        late = ["The real answer", "_Working… 4 s_"]
        await fake_slack.wait_for(lambda: message.versions[-2:] == late)
        await fake_slack.wait_for(lambda: message.versions[-1] == "The real answer")
        assert stopped_text(fake_slack, ts) == "The real answer"


async def test_an_edit_that_timed_out_with_the_final_text_is_not_sent_again(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Made late, it shows the final text all the same: nothing to cover.
    monkeypatch.setattr(slack_late, "WINDOW", 0.3)
    async with running(fake_slack, inbox, thinking="none", timeout=0.5) as platform:
        target, ts = await begun(fake_slack, inbox)
        fake_slack.slow["chat.update"] = [0.6]
        with pytest.raises(PlatformUnreachable):
            await target.edit(ts, "Hello world")
        await target.edit(ts, "Hello world")  # the final text, tried again
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        await fake_slack.wait_for(lambda: message.versions[-2:] == ["Hello world"] * 2)
        await wait_for(lambda: not platform.late)
        assert fake_slack.count("chat.update") == 2


async def test_update_mode_a_post_slack_did_not_take_in_time_is_posted_again(
    fake_slack: FakeSlack, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Looked for a few times over a few seconds, and then sent again: not waited for
    # while the asker sees nothing.
    monkeypatch.setattr(slack_target, "LOOK_AGAIN", (0.1, 0.1, 0.1))
    async with running(fake_slack, inbox, thinking="none", timeout=0.3):
        target = await asked(fake_slack, inbox)
        fake_slack.set_rate("chat.postMessage", 100, 1.0)
        fake_slack.slow["chat.postMessage"] = [0.35]  # no answer in time...
        fake_slack.drop["chat.postMessage"] = 1  # ...and then not taken
        ts = await target.begin()
        assert [m.ts for m in fake_slack.bot_replies(CHANNEL)] == [ts]
        assert fake_slack.count("chat.postMessage") == 2
        assert fake_slack.count("conversations.replies") == 4


async def test_native_mode_a_stream_not_surely_this_ones_is_not_taken(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # A stream carries no nonce: the bot's message in the thread that this process
    # does not know is the lost stream only if it is the only one. Here Slack started
    # it, and another answer's (a replica's) is there too: neither is taken, and the
    # answer goes to a new stream, the lost one left to Slack's time limit.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        root = target.address.thread
        other = fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root, streaming=True)
        fake_slack.lose_answer["chat.startStream"] = 1
        await answered(target)
        lost, answer = fake_slack.bot_replies(CHANNEL, root)[1:]
        # The lost one started with the answer's words, which had come already.
        assert other.text == "Another answer" and lost.text == "Hello world" and lost.streaming
        assert stopped_text(fake_slack, answer.ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 2


async def test_native_mode_a_stream_is_not_taken_for_another_answers_post(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Every message the bridge posts is tagged: a replica's answer posted (not
    # streamed) in the thread is no stream of this process's, lost.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        root = target.address.thread
        tagged = {"event_type": "chat_bridge_reply", "event_payload": {"id": "another"}}
        fake_slack.bot_message(CHANNEL, "Another answer", thread_ts=root, metadata=tagged)
        fake_slack.drop["chat.startStream"] = 1
        await answered(target)
        other, answer = fake_slack.bot_replies(CHANNEL, root)
        assert other.text == "Another answer"
        assert stopped_text(fake_slack, answer.ts) == "Hello world"


async def test_native_mode_a_stream_slack_started_late_is_not_started_twice(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none", timeout=0.5):
        target = await asked(fake_slack, inbox)
        fake_slack.slow["chat.startStream"] = [0.8]
        await answered(target)
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert stopped_text(fake_slack, message.ts) == "Hello world"
        assert fake_slack.count("chat.startStream") == 1


@pytest.mark.parametrize("lost", [1, 3])
async def test_native_mode_a_stop_whose_answer_was_lost_still_shows_the_whole_answer(
    fake_slack: FakeSlack, inbox: Inbox, lost: int
) -> None:
    # Sent again (slack-sdk's retry), the stop was refused: the stream had stopped.
    # The whole answer was then reported failed, its sources replaced by the error.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        sources = target.format_sources([Source("https://d.example", "Docs")])
        await target.edit(ts, "Hello world\n\n" + sources)
        fake_slack.lose_answer["chat.stopStream"] = lost  # once, or past every retry
        await target.end()
        assert stopped_text(fake_slack, ts) == "Hello world\n\n_Sources:_ [Docs](https://d.example)"


async def test_native_mode_a_stream_slack_starts_as_a_stop_comes_is_stopped(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Its ts never came back: nothing could stop it, and it showed "typing" for ever.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await cut_while_slack_starts(fake_slack, inbox, 0.3)
        await target.end()
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        assert not message.streaming
