"""A reply over several messages, and a final text that replaces what was streamed."""

from __future__ import annotations

import asyncio
import re

import pytest

from bridge.budget import Budgets
from bridge.interfaces import Rate
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget, escape_heavy_code, shown_words
from tests.core.render_support import _read_like_the_relay, _settle


async def test_long_answer_continues_in_follow_up_messages() -> None:
    budgets = Budgets()
    target = RecordingTarget(max_chars=2000)
    reply = LiveReply(target, budgets, edit_interval=0.01)
    await reply.start()
    line = "A line of the answer that goes on for a while, like answers do.\n"
    text = (line * 80)[:5000]
    for i in range(0, len(text), 50):
        reply.feed(text[i : i + 50])
        await asyncio.sleep(0)
    await reply.finish(None)
    messages = target.visible()
    assert len(messages) == 3
    assert all(len(m) <= 2000 for m in messages)
    assert all(m.endswith("like answers do.") for m in messages[:-1])
    assert "".join(m + "\n" for m in messages).replace("\n", "") == text.replace("\n", "")


async def test_an_empty_final_text_keeps_the_answer_shown() -> None:
    # An API's last event may carry the whole answer empty ("message": ""): the
    # answer streamed is the answer, not "(no answer)".
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("The answer ")
    reply.feed("is 42.")
    await wait_for(lambda: target.visible() == ["The answer is 42."])
    await reply.finish("")
    assert target.visible() == ["The answer is 42."]


async def test_a_shorter_final_text_leaves_no_stale_message_behind_a_post_in_flight() -> None:
    class Slow(RecordingTarget):
        posting = asyncio.Event()
        go_on = asyncio.Event()

        async def post(self, text: str) -> str:
            self.posting.set()
            await self.go_on.wait()  # a platform round trip, still on its way
            return await super().post(text)

    target = Slow(max_chars=100)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed(("word " * 19 + "\n\n") * 3)  # about three messages' worth
    await asyncio.wait_for(target.posting.wait(), 5)
    finishing = asyncio.create_task(reply.finish("Short final answer."))
    await _settle()  # the reply is closing while its first post is on its way
    target.go_on.set()
    await asyncio.wait_for(finishing, 10)
    first, *rest = target.visible()
    assert first == "Short final answer."
    assert all(text == "_(continued above)_" for text in rest)


async def test_a_final_text_shorter_by_two_messages_leaves_neither_of_them_stale() -> None:
    target = RecordingTarget(max_chars=100)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("".join(f"word{i:03d} " for i in range(30)))  # three messages' worth
    await wait_for(lambda: len(target.visible()) == 3)
    await reply.finish("The corrected, short answer.")
    assert target.visible() == [
        "The corrected, short answer.",
        "_(continued above)_",
        "_(continued above)_",
    ]


async def test_a_streamed_table_past_the_limit_shows_its_header_in_every_message() -> None:
    rows = "".join(f"| item number {i} | some value {i} |\n" for i in range(150))
    text = "| Item | Value |\n|---|---|\n" + rows
    from adapters.platforms.slack.mrkdwn import markdown_to_mrkdwn

    class SlackLike(RecordingTarget):
        def format_markdown(self, markdown: str) -> str:
            return markdown_to_mrkdwn(markdown)

    target = SlackLike(max_chars=2000, edit_rate=Rate(100_000, 1.0), post_rate=Rate(100_000, 1.0))
    reply = LiveReply(target, Budgets(), edit_interval=0.0)
    await reply.start()
    # Small deltas: a message is cut while the next row is still arriving.
    await _read_like_the_relay(reply, [text[i : i + 7] for i in range(0, len(text), 7)], 0.001)
    live = [op.text for op in target.ops if op.kind in ("post", "edit") and op.message_id == "m2"]
    await reply.finish(None)
    final = target.visible()
    assert len(final) > 1 and live
    # On Slack, each message's rows are one grid under the header (a row still
    # arriving joins it when its closing pipe comes).
    grid = re.compile(r"```\n\| Item +\| Value +\|\n\|-+\|-+\|\n")
    assert all(grid.match(t) for t in live)
    assert re.match(grid.pattern + r"\| item number", final[1])


async def test_the_placeholder_is_recorded_before_any_text() -> None:
    # A crash before the first words left the next process nothing to mark: it
    # posted its note apart, and "Thinking…" stayed for ever.
    recorded: list[tuple[list[str], str]] = []

    async def progress(message_ids: list[str], text: str) -> None:
        recorded.append((message_ids, text))

    target = RecordingTarget(placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.05, on_progress=progress)
    await reply.start()
    await wait_for(lambda: bool(reply.message_ids))
    assert recorded == [(reply.message_ids, "")]
    await reply.finish(None)


class Escaping(RecordingTarget):
    """A platform whose markup is longer than the Markdown (Slack escapes `&`, `<`, `>`)."""

    def format_markdown(self, markdown: str) -> str:
        return markdown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.mark.parametrize("closing", ["finish", "fail"])
async def test_messages_completed_while_streaming_are_not_rewritten_at_the_end(
    closing: str,
) -> None:
    # The final pass split the whole text again: a message's window held more text
    # than while it filled up, so its cut fell elsewhere, and messages already read
    # were rewritten (an edit each) and one more posted.
    text = escape_heavy_code(60)
    target = Escaping(max_chars=1000, edit_rate=Rate(100_000, 1.0), post_rate=Rate(100_000, 1.0))
    reply = LiveReply(target, Budgets(), edit_interval=0.0)
    await reply.start()
    for end in range(40, len(text) + 40, 40):
        reply.feed(text[end - 40 : end])
        fed = shown_words(text[:end])
        await wait_for(lambda: shown_words("\n".join(target.visible())) == fed)  # noqa: B023
    streamed, before = target.visible(), len(target.ops)
    assert len(streamed) > 2
    if closing == "finish":
        await reply.finish(None)
    else:
        await reply.fail("The answer was cut off.")
    assert target.visible()[:-1] == streamed[:-1]
    last = list(target.messages)[-1]  # the only message the end changes, and no new one
    assert all(op.message_id == last for op in target.ops[before:] if op.kind in ("post", "edit"))


async def test_a_final_text_other_than_the_one_streamed_is_split_from_its_start() -> None:
    target = RecordingTarget(max_chars=100)
    reply = LiveReply(target, Budgets(), edit_interval=0.0)
    await reply.start()
    reply.feed("".join(f"word{i:03d} " for i in range(30)))  # three messages' worth
    await wait_for(lambda: len(target.visible()) == 3)
    final = "".join(f"WORD{i:03d} " for i in range(30))
    await reply.finish(final)
    assert " ".join(target.visible()).split() == final.split()
