"""A Slack reply in a native stream (`mode: native`): started, appended and stopped, and
gone on by chat.update or posts where Slack ends, refuses or cannot take a stream."""

from __future__ import annotations

import asyncio

import pytest

from bridge.budget import Budgets
from bridge.errors import (
    PlaceGone,
    PlatformError,
)
from bridge.interfaces import Source
from bridge.render import LiveReply
from bridge.split import close_fences
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import (
    CHANNEL,
    DM,
    Inbox,
    asked,
    begun,
    deliver,
    running,
    stopped_text,
)


async def test_native_mode_streams_appends_and_stops(fake_slack: FakeSlack, inbox: Inbox) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        assert target.limits.post_bucket == f"slack:stream:{fake_slack.team_id}"
        ts = await target.begin()
        assert ts is not None
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None and message.streaming
        assert message.recipient_user_id == "U0USER001"
        await target.edit(ts, target.format_markdown("Hello"))
        await target.edit(ts, target.format_markdown("Hello **world**\n```py\nx = 1\n```"))
        await target.edit(ts, target.format_markdown("Hello **world**\n```py\nx = 1\ny = 2\n```"))
        sources = target.format_sources([Source("https://d.example", "Docs")])
        await target.edit(ts, "Hello **world**\n```py\nx = 1\ny = 2\n```\n\n" + sources)
        await target.end()
        assert not message.streaming
        assert message.text == (
            "Hello **world**\n```py\nx = 1\ny = 2\n```\n\n_Sources:_ [Docs](https://d.example)"
        )
        assert fake_slack.count("chat.appendStream") == 4
        assert fake_slack.count("chat.update") == 0 and not fake_slack.rejected


async def test_native_mode_streams_for_the_askers_own_team(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack Connect: chat.startStream names the team of the person the stream is for
    # (`recipient_team_id`); one of another organisation's was named as this
    # workspace's. An Enterprise Grid organisation's id (E…), which Slack may give
    # instead of its workspace's, is not a team: the install's is named then.
    fake_slack.shared.add(CHANNEL)
    askers = [("U0EXTERN01", "T0PARTNER1"), ("U0USER001", None), ("W0EXTERN02", "E0PARTNER2")]
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        for user, team in askers:
            bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> q", user=user)
            for body in bodies:
                if team is not None:
                    body["event"].update(team=team, user_team=team, source_team=team)
            before = len(inbox.items)
            await deliver(fake_slack, bodies)
            await inbox.wait(before + 1)
            assert await inbox.items[-1][1].begin() is not None
    assert [
        (args["recipient_user_id"], args["recipient_team_id"])
        for method, args in fake_slack.calls
        if method == "chat.startStream"
    ] == [
        ("U0EXTERN01", "T0PARTNER1"),
        ("U0USER001", fake_slack.team_id),
        ("W0EXTERN02", fake_slack.team_id),
    ]


async def test_native_mode_posts_that_are_no_streams_keep_to_the_channels_post_rate(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox, DM)  # a top-level DM: no thread to stream in
        assert target.limits.post_bucket == f"slack:post:{fake_slack.team_id}:{DM}"
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
        reply.feed("\n\n".join(f"{i}. {paragraph}" for i in range(18)))  # three messages
        await reply.finish(None)
        assert len(fake_slack.bot_replies(DM)) == 3
        assert not fake_slack.rate_limited  # chat.postMessage: 1 a second in a channel


async def test_native_mode_where_streaming_is_refused_posts_keep_to_the_channels_post_rate(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The messages posted instead drew on the streams' budget (20 a minute, in bursts):
    # Slack refused most of them with 429 and each waited out its Retry-After.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        fake_slack.stream_error = "not_allowed"  # this channel only: the app may stream
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05)
        await reply.start()
        paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
        reply.feed("\n\n".join(f"{i}. {paragraph}" for i in range(30)))  # five messages
        await reply.finish(None)
        assert len(fake_slack.bot_replies(CHANNEL, target.address.thread)) == 5
        assert not fake_slack.rate_limited
        assert target.limits.post_bucket == f"slack:post:{fake_slack.team_id}:{CHANNEL}"


async def test_native_mode_where_streaming_is_refused_questions_at_once_draw_no_429(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Each refused stream's placeholder was posted within the streams' budget: four
    # questions at once in one channel drew 429s from chat.postMessage.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        fake_slack.stream_error = "not_allowed"
        budgets = Budgets()
        replies = []
        for _ in range(4):
            target = await asked(fake_slack, inbox)
            replies.append(LiveReply(target, budgets, edit_interval=0.05))
        await asyncio.gather(*(reply.start() for reply in replies))
        for reply in replies:
            reply.feed("An answer.")
        await asyncio.gather(*(reply.finish(None) for reply in replies))
        assert not fake_slack.rate_limited


async def test_a_tilde_fence_closed_for_display_does_not_end_the_stream(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        for markdown in (
            "Code:\n~~~py\nx = 1",
            "Code:\n~~~py\nx = 1\ny = 2",
            "Code:\n~~~py\nx = 1\ny = 2\n~~~\nDone.",
        ):
            # As the renderer shows text so far: an open fence closed for display.
            await target.edit(ts, target.format_markdown(close_fences(markdown)))
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None and message.text == "Code:\n~~~py\nx = 1\ny = 2\n~~~\nDone."
        assert fake_slack.count("chat.appendStream") == 3  # grown by appends alone
        assert fake_slack.count("chat.update") == 0


async def test_thinking_goes_even_when_stopping_the_stream_fails(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="reaction"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, target.format_markdown("Hello"))
        await target.edit(ts, target.format_markdown("Hello, and the end\n```\nx\n```"))
        fake_slack.fail["chat.stopStream"] = ["internal_error"]
        fake_slack.fail["chat.update"] = ["internal_error"]
        with pytest.raises(PlatformError, match="chat.update"):
            await target.end()
        await fake_slack.wait_for(lambda: fake_slack.count("reactions.remove") == 1)
        assert fake_slack.count("reactions.add") == 1
        assert not fake_slack.reactions[(CHANNEL, target.address.thread or "")]


async def test_native_mode_a_stop_slack_refused_shows_the_whole_answer_by_chat_update(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The held-back end of the answer (its closing fence) went with the stop: refused,
    # the message was left streaming and unfinished, or the answer reported failed.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Run this:\n\n```python\nprint('hi')\n```")
        fake_slack.fail["chat.stopStream"] = ["internal_error"]
        await target.end()
        assert stopped_text(fake_slack, ts) == "Run this:\n\n```python\nprint('hi')\n```"


async def test_native_mode_a_stream_slack_ended_goes_on_by_chat_update(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack ended the stream (its own time limit): every later edit was an append
    # refused, drawing on the workspace's budget, and the end a false failure.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        message.streaming = False
        await target.edit(ts, "Hello world")
        await target.edit(ts, "Hello world, and more")
        await target.end()
        assert message.text == "Hello world, and more"
        assert fake_slack.rejected["chat.appendStream:message_not_in_streaming_state"] == 1
        assert fake_slack.count("chat.appendStream") == 2
        assert fake_slack.count("chat.stopStream") == 0


async def test_native_mode_a_stream_the_person_stopped_ends_the_answer(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "Hello")
        fake_slack.fail["chat.appendStream"] = ["stopped_by_user"]
        with pytest.raises(PlaceGone):  # the relay lets the answer go
            await target.edit(ts, "Hello world")
        await target.end()
        assert fake_slack.count("chat.stopStream") == 0 and fake_slack.count("chat.update") == 0


async def test_native_mode_rewrite_and_follow_up(fake_slack: FakeSlack, inbox: Inbox) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "_Working… 3 s_")
        await target.edit(ts, "The real answer")  # diverges: stop the stream, then chat.update
        second = await target.post("Part two")
        await target.edit(second, "Part two, longer")
        await target.end()
        first = fake_slack.find(CHANNEL, ts)
        follow = fake_slack.find(CHANNEL, second)
        assert first is not None and follow is not None
        assert (first.text, first.streaming) == ("The real answer", False)
        assert (follow.text, follow.streaming) == ("Part two, longer", False)
        assert not fake_slack.rejected


@pytest.mark.parametrize("ended", ["by_slack", "stop_answer_lost", "stop_never_answered"])
async def test_native_mode_a_text_replaced_after_its_stream_ended_goes_on_by_chat_update(
    fake_slack: FakeSlack, inbox: Inbox, ended: str
) -> None:
    # A status shown ("Working… 3 s"), then replaced by the answer once Slack had ended
    # the stream (its own time limit), or once the stop's answer was lost: the stop,
    # refused message_not_in_streaming_state (or unanswered), failed the edit.
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "_Working… 3 s_")
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None
        if ended == "by_slack":
            message.streaming = False
        else:  # once (its retry refused), or past every retry
            fake_slack.lose_answer["chat.stopStream"] = 1 if ended == "stop_answer_lost" else 3
        await target.edit(ts, "The real answer")
        await target.end()
        assert stopped_text(fake_slack, ts) == "The real answer"


async def test_native_mode_a_status_replaced_after_slack_ended_its_stream_is_no_failure(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    failures: list[Exception] = []
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.05, on_failure=failures.append)
        await reply.start()
        reply.set_status("Working… 3 s")
        await fake_slack.wait_for(lambda: fake_slack.count("chat.appendStream") == 1)
        [message] = fake_slack.bot_replies(CHANNEL, target.address.thread)
        message.streaming = False  # Slack's own time limit
        reply.feed("The real answer")
        await reply.finish(None)
        assert stopped_text(fake_slack, message.ts) == "The real answer"
        assert not failures


async def test_native_mode_shows_a_link_whose_label_names_another_place_bare(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none"):
        target, ts = await begun(fake_slack, inbox)
        answer = "Sign in at [acme.dev](https://evil.example/login) or [Acme](https://acme.dev)."
        for end in (24, 40, len(answer)):  # streamed as it comes, the link whole at last
            await target.edit(ts, target.format_markdown(answer[:end]))
        await target.end()
        message = fake_slack.find(CHANNEL, ts)
        assert message is not None and not message.streaming
        assert message.text == (
            "Sign in at <https://evil.example/login> or [Acme](https://acme.dev)."
        )
        assert not fake_slack.rejected


async def test_native_mode_falls_back_to_update_when_refused(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    fake_slack.stream_error = "unknown_method"
    async with running(fake_slack, inbox, mode="native", thinking="none") as platform:
        target = await asked(fake_slack, inbox)
        assert await target.begin() is None  # refused: the first words are posted
        ts = await target.post("**Markdown** answer")
        await target.end()
        reply = fake_slack.find(CHANNEL, ts)
        assert reply is not None and reply.markdown and reply.text == "**Markdown** answer"
        assert not platform.native_ok  # the whole app cannot stream: stop trying
        assert fake_slack.count("chat.startStream") == 1
        later = await asked(fake_slack, inbox)
        assert await later.begin() is not None
        assert fake_slack.count("chat.startStream") == 1


async def test_restarted_target_closes_a_leftover_stream(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, mode="native", thinking="none") as platform:
        target, ts = await begun(fake_slack, inbox)
        await target.edit(ts, "half an answ")
        # A new process fixes the reply up through `target(address)`.
        later = platform.target(target.address)
        await later.edit(ts, "half an answ\n\n_interrupted_")
        assert stopped_text(fake_slack, ts) == "half an answ\n\n_interrupted_"
