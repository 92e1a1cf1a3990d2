"""Slack's native streams (`mode: native`): the budget their appends draw on, and the
streams a stopped process leaves open."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms.slack import SlackPlatform, SlackTarget
from adapters.platforms.slack.streams import stable_prefix
from bridge.budget import Budgets
from bridge.interfaces import Address
from bridge.interruptions import INTERRUPTED, mark_interrupted
from bridge.render import LiveReply
from bridge.split import close_fences
from bridge.store.base import InFlight
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import (
    CHANNEL,
    Inbox,
    asked,
    begun,
    cut_while_slack_starts,
    open_harness,
    running,
)

# --------------------------------------------------------------------------- the budgets


async def test_a_streams_appends_draw_on_their_own_budget_its_other_edits_on_chat_updates(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    team = fake_slack.team_id
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        limits = target.limits
        assert (limits.append_bucket, limits.edit_bucket) == (
            f"slack:append:{team}",
            f"slack:update:{team}",
        )
        assert limits.append_rate is not None
        assert (limits.append_rate.count, limits.append_rate.per) == (100, 60)
        assert target.appends(ts, "half an answ")
        await target.edit(ts, "half an answ")
        assert target.appends(ts, "half an answer")
        # Text replaced (a status by the next one, or by the answer): a chat.update.
        assert not target.appends(ts, "another text")
        await target.end()  # the stream ended: a later edit is a chat.update
        assert not target.appends(ts, "half an answer, and more")
        # Refused a stream, a reply is posted and updated.
        fake_slack.stream_error = "invalid_arguments"
        refused = await asked(fake_slack, inbox)
        assert await refused.begin() is None
        assert refused.limits.append_bucket is None
        assert refused.limits.edit_bucket == f"slack:update:{team}"


async def test_update_modes_edits_draw_on_chat_updates_budget(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="update", thinking="none"):
        target, _ = await begun(fake_slack, inbox)
        assert target.limits.edit_bucket == f"slack:update:{fake_slack.team_id}"
        assert target.limits.settle_bucket is None  # nothing to settle: no request


async def test_native_replies_append_faster_than_chat_update_allows_and_within_slacks_limit(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack's tiers on a one-second window: chat.update 5, chat.appendStream 10.
    fake_slack.set_rate("chat.update", 5, 1.0)
    fake_slack.set_rate("chat.appendStream", 10, 1.0)
    update, append = {"count": 5, "per": 1.0}, {"count": 10, "per": 1.0}
    async with running(
        fake_slack, inbox, mode="native", thinking="none", update_rate=update, append_rate=append
    ):
        budgets = Budgets()
        targets = [await asked(fake_slack, inbox, text=f"q{i}") for i in range(6)]
        replies = [LiveReply(t, budgets, edit_interval=0.05) for t in targets]
        for reply in replies:
            await reply.start()
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            for i, reply in enumerate(replies):
                reply.feed(f"w{i} ")
            await asyncio.sleep(0.02)
        appended = fake_slack.count("chat.appendStream")
        for reply in replies:
            await reply.finish(None)
    # chat.update's budget would have allowed 5 + 5 a second for 3 s at most.
    assert appended > 20, appended
    assert not fake_slack.rate_limited, fake_slack.rate_limited


async def test_native_replies_whose_status_gives_way_to_another_or_to_text_stay_within_chat_update(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # A status replaced by the next ("Working… 1 s", "Working… 2 s") or by the answer
    # stops the stream and updates the message: chat.update's budget, not the appends'.
    # Slack's tiers in their ratios (update 50, append 100, start and stop 20 a minute),
    # on a one-second window.
    rates = {
        "update": (10, "chat.update"),
        "append": (20, "chat.appendStream"),
        "stream": (4, "chat.startStream"),
    }
    options = {f"{name}_rate": {"count": count, "per": 1.0} for name, (count, _) in rates.items()}
    for count, method in rates.values():
        fake_slack.set_rate(method, count, 1.0)
    fake_slack.set_rate("chat.stopStream", 4, 1.0)
    async with running(fake_slack, inbox, mode="native", thinking="none", **options):
        budgets = Budgets()
        targets = [await asked(fake_slack, inbox, text=f"q{i}") for i in range(8)]
        replies = [LiveReply(t, budgets, edit_interval=0.05) for t in targets]
        for reply in replies:
            await reply.start()
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < 4.0:
            # Every reply shows a status counting tenths of seconds; one more reply's
            # answer begins every quarter of a second, and the others' go on growing.
            texting = min(len(replies), int(elapsed / 0.25))
            for i, reply in enumerate(replies):
                if i < texting:
                    reply.feed(f"w{i} ")
                else:
                    reply.set_status(f"Working… {int(elapsed * 10)} s")
            await asyncio.sleep(0.02)
        for reply in replies:
            await reply.finish(None)
    assert fake_slack.count("chat.update") > 10  # statuses and texts replaced
    assert fake_slack.count("chat.appendStream") > 0
    assert not fake_slack.rate_limited, fake_slack.rate_limited


async def test_stops_of_answers_ending_together_stay_within_slacks_limit(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # chat.stopStream (Tier 2, as chat.startStream) drew on no budget: long answers
    # started in one window and short ones started in the next ended together, and
    # their stops drew 429s.
    fake_slack.set_rate("chat.startStream", 2, 2.0)
    fake_slack.set_rate("chat.stopStream", 2, 2.0)
    async with running(
        fake_slack, inbox, mode="native", thinking="none", stream_rate={"count": 2, "per": 2.0}
    ):
        budgets = Budgets()
        targets = [await asked(fake_slack, inbox, text=f"q{i}") for i in range(4)]
        replies = [LiveReply(t, budgets, edit_interval=0.05) for t in targets]
        for reply in replies[:2]:
            await reply.start()
            reply.feed("A long answer begins")
        await fake_slack.wait_for(lambda: fake_slack.count("chat.startStream") == 2)
        for reply in replies[2:]:
            await reply.start()  # within the streams' budget: in the next window
            reply.feed("A short answer")
        await fake_slack.wait_for(lambda: fake_slack.count("chat.startStream") == 4)
        await asyncio.gather(*(reply.finish(None) for reply in replies))
    messages = fake_slack.bot_replies(CHANNEL)
    assert len(messages) == 4 and not any(m.streaming for m in messages)
    assert fake_slack.count("chat.stopStream") == 4
    assert not fake_slack.rate_limited, fake_slack.rate_limited


# --------------------------------------------------------------------------- left open


async def test_a_restart_stops_the_stream_a_dead_process_left_in_a_replys_second_message(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # It showed as still being written until Slack's own time limit, under the mark.
    _, bridge = await open_harness(
        fake_slack,
        fake_chat_api,
        tmp_path,
        "socket",
        "mode: native\n  thinking: none\n  max_chars: 500",
    )
    try:
        root = fake_slack.user_message(CHANNEL, "a long question")[0]["event"]["ts"]
        address = Address("slack", fake_slack.team_id, CHANNEL, root)
        platform = bridge.platforms["slack"]
        assert isinstance(platform, SlackPlatform)
        # The dead process's reply: its first message done, its second streaming.
        dead = SlackTarget(platform, address, question_ts=root, user="U0USER001")
        first = await dead.begin()
        assert first is not None
        await dead.edit(first, "a" * 400)
        second = await dead.post("b" * 100)
        await dead.edit(second, "b" * 300)
        assert [m.streaming for m in fake_slack.bot_replies(CHANNEL, root)] == [False, True]
        then = time.time() - 600
        record = InFlight(
            id="dead-reply",
            key="slack:conversation",
            address=address,
            owner="dead-process",
            started_at=then,
            message_ids=[first, second],
            text="a" * 400 + "\n\n" + "b" * 300,
            heartbeat_at=then,
        )
        await bridge.store.inflight_begin(record)
        assert await bridge.recovery.recover() == 1
    finally:
        await bridge.aclose()
    replies = fake_slack.bot_replies(CHANNEL, root)
    assert [m.streaming for m in replies] == [False, False, False]
    assert [m.text for m in replies] == ["a" * 400, "b" * 300, INTERRUPTED]


async def test_a_stops_mark_ends_the_stream_its_reply_left_open(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The reply's end did not come in time: its mark went as a notice of its own.
    async with running(fake_slack, inbox, mode="native", thinking="none", max_chars=500):
        target, first = await begun(fake_slack, inbox)
        await target.edit(first, "a" * 400)
        # Its code block closed for display only: the closer is not sent while it streams.
        second = await target.post("```\n" + "b" * 100 + "\n```")
        code = "```\n" + "b" * 300 + "\n```"
        await target.edit(second, code)
        assert fake_slack.find(CHANNEL, second).text == code[:-4]  # type: ignore[union-attr]
        reply = SimpleNamespace(message_ids=[first, second], recorded="a" * 400 + code)
        await mark_interrupted(SimpleNamespace(target=target, reply=reply))  # type: ignore[arg-type]
    root = target.address.thread
    replies = fake_slack.bot_replies(CHANNEL, root)
    assert [m.streaming for m in replies] == [False, False]
    assert replies[1].text == code  # what was held back is shown too
    assert [e["text"] for e in fake_slack.ephemerals] == [INTERRUPTED]


def test_a_quoted_code_block_closed_for_display_is_not_sent_while_it_streams() -> None:
    # Sent, its closing line would stand in the middle of the code once more arrived.
    code = "The file:\n\n> ```python\n> x = 1"
    assert stable_prefix(code + "\n> ```") == code
    assert stable_prefix("> > ~~~~\n> > x = 1\n> > ~~~~") == "> > ~~~~\n> > x = 1"
    assert stable_prefix("> ```\n> x = 1\n\n```") == "> ```\n> x = 1\n\n```"


@pytest.mark.parametrize("quote", ["> ", "> > "])
def test_a_quoted_code_block_streamed_a_token_at_a_time_is_never_taken_back(quote: str) -> None:
    # Its closing line came in pieces ("\n> ", then "```"): the quote marker, sent
    # as a line of the code, stood in the middle of it once the closer came, and the
    # stream was stopped, the rest of the answer sent by chat.update.
    answer = (
        f"The file:\n\n{quote}```python\n{quote}x = 1\n{quote}print(x)\n{quote}```\n\nThat is all."
    )
    sent = ""
    for end in range(1, len(answer) + 1):
        stable = stable_prefix(close_fences(answer[:end]))
        assert stable.startswith(sent), (answer[:end], sent)
        sent = stable
    assert sent == answer


# --------------------------------------------------------------------------- slow starts


async def test_a_stream_slack_starts_slowly_as_a_stop_comes_is_stopped_by_the_close(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The stop waited 2 s for its ts: a slower start was never stopped, and its empty
    # message showed as being written until Slack's own time limit.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await cut_while_slack_starts(fake_slack, inbox, 3.0)
        await target.end()
    # Slack starts it all the same, even once the request is given up on.
    [message] = await fake_slack.wait_for(
        lambda: fake_slack.bot_replies(CHANNEL, target.address.thread)
    )
    assert not message.streaming
    assert fake_slack.count("chat.stopStream") == 1


async def test_a_stream_slack_has_not_started_when_the_close_gives_up_is_named_in_a_warning(
    fake_slack: FakeSlack,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("adapters.platforms.slack.stops.STARTS_ON_CLOSE", 0.2)
    async with running(fake_slack, inbox, mode="native", thinking="none") as platform:
        await cut_while_slack_starts(fake_slack, inbox, 3.0)
        start = time.monotonic()
    assert time.monotonic() - start < 2.0  # the close is bounded
    assert platform.stops.starting == {}
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert CHANNEL in warning.getMessage()
    assert fake_slack.bot_token not in warning.getMessage()


# --------------------------------------------------------------------------- lengths


async def test_the_fake_refuses_a_markdown_text_past_slacks_limit_in_each_stream_method(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # markdown_text takes 12,000 characters in chat.startStream, chat.appendStream and
    # chat.stopStream, as in chat.postMessage and chat.update.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.url)
        thread = target.address.thread
        assert thread is not None
        whom = {"recipient_team_id": fake_slack.team_id, "recipient_user_id": "U0USER001"}
        for size, ok in ((12_001, False), (12_000, True)):
            try:
                started = await client.chat_startStream(
                    channel=CHANNEL, thread_ts=thread, markdown_text="s" * size, **whom
                )
            except SlackApiError as exc:
                assert not ok and exc.response["error"] == "msg_too_long"
            else:
                assert ok
        ts = started["ts"]
        for method in (client.chat_appendStream, client.chat_stopStream):
            with pytest.raises(SlackApiError, match="msg_too_long"):
                await method(channel=CHANNEL, ts=ts, markdown_text="a" * 12_001)
            await method(channel=CHANNEL, ts=ts, markdown_text="a" * 12_000)
    message = fake_slack.find(CHANNEL, ts)
    assert message is not None and len(message.text) == 36_000 and not message.streaming


@pytest.mark.parametrize("whole", [False, True])
async def test_a_long_native_answer_keeps_each_stream_call_within_slacks_limit(
    fake_slack: FakeSlack, inbox: Inbox, whole: bool
) -> None:
    # An answer of 30,000 characters, streamed in tokens or come whole at its end:
    # each message, and so each call's markdown_text, stays within max_chars.
    words = [f"w{i:05d} " for i in range(5000)]
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        if whole:
            await reply.finish("".join(words))
        else:
            for start in range(0, len(words), 250):
                reply.feed("".join(words[start : start + 250]))
                await reply.pace()
            await reply.finish(None)
    assert not fake_slack.rejected, fake_slack.rejected
    messages = fake_slack.bot_replies(CHANNEL)
    assert len(messages) > 1 and not any(m.streaming for m in messages)
    assert "".join(m.text for m in messages).split() == "".join(words).split()
