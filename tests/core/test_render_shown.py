"""What a streaming reply shows: its status, its formatting, and Markdown still arriving."""

from __future__ import annotations

import asyncio
import re

from bridge.budget import Budgets
from bridge.interfaces import Rate, Source
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget
from tests.core.render_support import _read_like_the_relay, _stream


async def test_placeholder_is_edited_into_the_answer() -> None:
    target = RecordingTarget(placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()  # the placeholder follows at once
    await wait_for(lambda: target.visible() == ["…"])
    reply.feed("Answer")
    await reply.finish(None)
    assert target.visible() == ["Answer"]


class DiscordFormatting(RecordingTarget):
    def format_markdown(self, markdown: str) -> str:
        from adapters.platforms.discord.format import format_markdown

        return format_markdown(markdown)


# Discord's code block: ``` and an optional language, ended by the first ``` after it.
DISCORD_CODE_BLOCK = re.compile(r"```(?:([a-z0-9_+\-.#]+?)\n+)?\n*([\s\S]+?)\n*```", re.I)


# Discord's `_` italics (its clients' rule): no bare `_` inside.
DISCORD_ITALICS = re.compile(r"\b_((?:__|\\[\s\S]|[^\\_])+?)_\b")


async def test_a_failure_notice_holding_markdown_marks_stays_one_note_in_italics() -> None:
    # An API's reason naming `max_completion_tokens` ended the italics on Discord:
    # the note showed with raw underscores.
    target = DiscordFormatting()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("Partial")
    reply.set_status("Calling web_search")
    await reply.fail(
        "The assistant could not take that question: Use 'max_completion_tokens' "
        "(or *max_tokens* ~ [1]). Send `reset_all` to start over."
    )
    note = target.visible()[0].split("\n\n")[1]
    assert note == (
        "_⚠️ The assistant could not take that question: Use 'max\\_completion\\_tokens' "
        "(or \\*max\\_tokens\\* \\~ \\[1\\]). Send `reset_all` to start over._"
    )
    assert DISCORD_ITALICS.fullmatch(note.split(" `")[0] + "_")
    # Slack's mrkdwn shows the marks as written, without the backslashes.
    slack = SlackFormatting()
    reply = LiveReply(slack, Budgets(), edit_interval=0.01)
    await reply.start()
    await reply.fail("Use 'max_completion_tokens' instead.")
    assert slack.visible() == ["_⚠️ Use 'max_completion_tokens' instead._"]


async def test_a_status_holding_markdown_marks_shows_as_written() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.set_status("Calling web_search")
    await wait_for(lambda: target.visible() == ["_Calling web\\_search_"])
    await reply.finish("Done.")
    assert target.visible() == ["Done."]


async def test_a_streamed_four_backtick_block_is_a_discord_code_block_in_every_edit() -> None:
    # Discord knows ``` only: a ```` block (one showing ``` in its code), closed for
    # display mid-stream and reopened past the limit with ````, showed garbled.
    code = "".join(f"Line {i}: ```x{i}``` and text\n" for i in range(150))
    text = f"An example:\n\n````markdown\n```python\nprint(1)\n```\n{code}````\n\nThat is all."
    target = DiscordFormatting(edit_rate=Rate(100_000, 1.0), post_rate=Rate(100_000, 1.0))
    reply = LiveReply(target, Budgets(), edit_interval=0.0)
    await reply.start()
    await _read_like_the_relay(reply, [text[i : i + 7] for i in range(0, len(text), 7)], 0.001)
    await reply.finish(None)
    written = [op.text for op in target.ops if op.kind in ("post", "edit")]
    final = target.visible()
    assert len(final) > 1
    for shown in [*written, *final]:
        # Discord's fences only, each block closed: ``` inside the code is broken up.
        assert "````" not in shown and "~~~" not in shown
        assert shown.count("```") % 2 == 0, shown
        blocks = DISCORD_CODE_BLOCK.findall(shown)
        assert all("markdown".startswith(lang) for lang, _ in blocks), shown  # or arriving
        assert "```" not in DISCORD_CODE_BLOCK.sub("", shown), shown
    assert final[-1].endswith("```\n\nThat is all.")


async def test_a_whitespace_only_answer_shows_no_answer_not_a_blank_message() -> None:
    # A platform refuses a blank message (Discord: 50006): the reply ended refused.
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.set_status("Working… 1 s")
    await _stream(reply, ["\n", "  ", "\n"], 0.03)
    await reply.finish(None)
    assert target.visible() == ["_(no answer)_"]
    written = [op.text for op in target.ops if op.kind in ("post", "edit")]
    assert all(text.strip() for text in written), written
    assert reply.stats.first_visible_at is None  # a status, never words, was shown


async def test_a_failure_after_whitespace_only_text_shows_just_the_notice() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await _stream(reply, ["\n", "  "], 0.03)
    await reply.fail("The answer was cut off.")
    assert target.visible() == ["_⚠️ The answer was cut off._"]
    assert all(op.text.strip() for op in target.ops if op.kind in ("post", "edit"))


class SlackFormatting(RecordingTarget):
    """Formats like Slack's mrkdwn, which shows an empty heading as nothing."""

    def format_markdown(self, markdown: str) -> str:
        from adapters.platforms.slack.mrkdwn import markdown_to_mrkdwn

        return markdown_to_mrkdwn(markdown)


async def test_an_answer_that_formats_to_nothing_shows_no_answer_not_a_blank_message() -> None:
    # Slack refuses a message with no text (no_text): the reply ended failed.
    target = SlackFormatting()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await _stream(reply, ["#", "# "], 0.03)
    await reply.finish(None, [Source(url="https://docs.example/a", title="A")])
    assert target.visible()[0].startswith("_(no answer)_\n\n")
    written = [op.text for op in target.ops if op.kind in ("post", "edit")]
    assert written and all(text.strip() for text in written), written


async def test_a_heading_still_arriving_shows_the_status_until_it_hasshown_words() -> None:
    target = SlackFormatting()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.set_status("Working… 1 s")
    reply.feed("#")
    await wait_for(lambda: target.visible() == ["#"])
    reply.feed("# ")  # an empty heading so far: Slack would show nothing
    await wait_for(lambda: target.visible() == ["_Working… 1 s_"])
    reply.feed("Title")
    await reply.finish(None)
    assert target.visible() == ["*Title*"]
    written = [op.text for op in target.ops if op.kind in ("post", "edit")]
    assert all(text.strip() for text in written), written


async def test_a_link_still_arriving_is_shown_once_whole() -> None:
    # Half a link showed as raw Markdown for an edit interval, its address cut short.
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("See the [guide](https://do")
    await wait_for(lambda: target.visible() == ["See the "])
    reply.feed("cs.example/install) and [")
    await wait_for(
        lambda: target.visible() == ["See the [guide](https://docs.example/install) and "]
    )
    reply.feed("arr[i")  # a "[" that makes no link is shown with what follows it
    await reply.finish(None)
    assert target.visible() == ["See the [guide](https://docs.example/install) and [arr[i"]
    shown = [op.text for op in target.ops if op.kind in ("post", "edit")]
    assert not any("(https://do" in text and "install" not in text for text in shown)


async def test_status_shows_until_text_arrives() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.set_status("Working… 3 s")
    while not target.messages:
        await asyncio.sleep(0.01)
    assert target.visible() == ["_Working… 3 s_"]
    reply.feed("Done thinking.")
    await reply.finish(None)
    assert target.visible() == ["Done thinking."]


TABLE = "Cities:\n\n| City | Pop |\n|---|---:|\n| Rome | 2.8 |\n"


async def _stream_a_table(target: RecordingTarget) -> None:
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed(f"{TABLE}| Paris | 2.1")
    await wait_for(lambda: "Rome" in "".join(target.visible()))
    reply.feed(" |\n| Berlin | 3")
    await wait_for(lambda: "Paris" in "".join(target.visible()))
    reply.feed(".7 |")
    await reply.finish(None)


async def test_a_table_row_still_arriving_is_shown_once_whole() -> None:
    # Half a row showed under the table as raw Markdown (`| Paris | 2.1`), until the
    # edit after its line ended.
    for target in (DiscordFormatting(), SlackFormatting()):
        await _stream_a_table(target)
        written = [op.text for op in target.ops if op.kind in ("post", "edit")]
        for shown in written:
            rows = [line for line in shown.split("\n") if line.startswith("|")]
            assert rows and all(row.endswith("|") for row in rows), shown
            assert "Berlin" not in shown or "3.7" in shown, shown
        assert len(written) >= 3, written  # Rome's row, then Paris's, then Berlin's
        assert target.visible() == [
            "Cities:\n\n```\n| City   | Pop |\n|--------|-----|\n| Rome   | 2.8 |\n"
            "| Paris  | 2.1 |\n| Berlin | 3.7 |\n```"
        ]


async def test_an_answer_cut_inside_a_table_row_leaves_the_half_row_out() -> None:
    # The cut answer ended with half a row under its table, as raw Markdown.
    target = DiscordFormatting()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed(f"{TABLE}| Paris | 2.1")
    await reply.fail("The answer was cut off.")
    assert target.visible() == [
        "Cities:\n\n```\n| City | Pop |\n|------|-----|\n| Rome | 2.8 |\n```\n\n"
        "_⚠️ The answer was cut off._"
    ]
    # A row in a code block is code, shown as it came.
    target = DiscordFormatting()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("Run:\n```sh\nls\n| grep x")
    await reply.fail("The answer was cut off.")
    assert target.visible() == ["Run:\n```sh\nls\n| grep x\n```\n\n_⚠️ The answer was cut off._"]
    # A whole row, its line break not there yet, and a line of prose begun with `|`
    # (under no table) are kept: the cut lost what had come of the answer.
    for text, kept in (
        (f"{TABLE}| Paris | 2.1 |", "| Paris | 2.1 |"),
        ("For real numbers:\n|x| is never negative", "|x| is never negative"),
    ):
        target = DiscordFormatting()
        reply = LiveReply(target, Budgets(), edit_interval=0.01)
        await reply.start()
        reply.feed(text)
        await reply.fail("The answer was cut off.")
        assert kept in target.visible()[0] and target.visible()[0].endswith("cut off._")
