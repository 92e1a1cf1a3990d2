from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from typing import Any

import pytest

from bridge import render
from bridge.budget import Budgets
from bridge.errors import PlatformError, PlatformRefused
from bridge.flag import Flag
from bridge.interfaces import Rate, Source
from bridge.render import LiveReply
from bridge.sources import dedupe_sources
from tests.core.fakeplatform import wait_for
from tests.core.recording import (
    Op,
    RecordingTarget,
    escape_heavy_code,
    max_in_window,
    shown_words,
    use_slot,
)


async def _settle() -> None:
    """Let the reply's flusher task take its next step."""
    for _ in range(3):
        await asyncio.sleep(0)


class RefusingPosts(RecordingTarget):
    """A place where no message can be posted (gone, or no permission)."""

    async def post(self, text: str) -> str:
        raise PlatformRefused("no_permission")


async def _stream(reply: LiveReply, tokens: list[str], gap: float) -> None:
    for token in tokens:
        reply.feed(token)
        await asyncio.sleep(gap)  # the pace of an API's token stream


class RefusingEdits(RecordingTarget):
    """A place whose edits are refused (not for good: no PlaceGone) while `refusing`."""

    refusing = True

    async def edit(self, message_id: str, text: str) -> None:
        if self.refusing:
            self.ops.append(Op("refused", message_id, text))
            raise PlatformError("Slack refused chat.update: cant_update_message")
        await super().edit(message_id, text)


async def test_a_refused_edit_is_tried_again_less_and_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It was tried again at every wake (every token), spending the budget the place
    # shares with other replies, and logging a warning a try.
    target = RefusingEdits()
    reply = LiveReply(target, Budgets(), edit_interval=0.05)
    await reply.start()
    await _stream(reply, [f"w{i} " for i in range(100)], 0.01)  # about a second
    refused = target.times(("refused",))
    # Tries at 0, 0.05, 0.15, 0.35, 0.75 s, ... (0.05 s more in between, or 100 tries)
    assert 1 <= len(refused) <= 6
    gaps = [b - a for a, b in zip(refused, refused[1:], strict=False)]
    assert all(gap >= 0.05 * 2**i * 0.9 for i, gap in enumerate(gaps))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    target.refusing = False
    await reply.finish(None)
    assert target.visible() == ["".join(f"w{i} " for i in range(100))]


async def test_every_request_the_platform_fails_is_told() -> None:
    # For the metrics: a platform failing every reply moved none.
    failed: list[Exception] = []
    target = RefusingEdits(placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.01, on_failure=failed.append)
    await reply.start()
    await _stream(reply, ["Hello ", "world."], 0.02)
    target.refusing = False
    await reply.finish(None)
    refused = [op for op in target.ops if op.kind == "refused"]
    assert refused and len(failed) == len(refused)
    assert all(isinstance(exc, PlatformError) for exc in failed)
    assert target.visible() == ["Hello world."]


async def test_tokens_are_coalesced_into_few_edits_within_budget() -> None:
    budgets = Budgets()
    target = RecordingTarget(edit_rate=Rate(4, 0.5))
    reply = LiveReply(target, budgets, edit_interval=0.05)
    await reply.start()
    tokens = [f"w{i} " for i in range(200)]
    await _stream(reply, tokens, 0.005)
    await reply.finish(None)
    assert target.visible() == ["".join(tokens)]
    edits = target.times(("edit",))
    assert 1 <= len(edits) < 60  # 200 tokens, far fewer edits
    assert max_in_window(edits, 0.5) <= 4


async def test_replies_sharing_a_bucket_share_its_budget() -> None:
    budgets = Budgets()
    targets = [RecordingTarget(edit_rate=Rate(5, 0.5), bucket="chan") for _ in range(6)]
    replies = [LiveReply(t, budgets, edit_interval=0.02) for t in targets]
    for reply in replies:
        await reply.start()
    tokens = [f"t{i} " for i in range(60)]
    await asyncio.gather(*(_stream(r, tokens, 0.005) for r in replies))
    await asyncio.gather(*(r.finish(None) for r in replies))
    stamps = [t for target in targets for t in target.times(("edit",))]
    assert max_in_window(stamps, 0.5) <= 5
    assert all(target.visible() == ["".join(tokens)] for target in targets)


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


async def test_final_text_wins_and_sources_are_appended_once_in_order() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("Helo wrld")
    sources = dedupe_sources(
        [Source("https://a.example/1", "One"), Source("https://b.example/2", "Two"),
         Source("https://a.example/1", "One again"), Source("https://c.example/3", "Three")],
        limit=2,
    )
    await reply.finish("Hello world", sources)
    assert target.visible() == [
        "Hello world\n\nSources: [One](https://a.example/1), [Two](https://b.example/2)"
    ]


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


def test_sources_that_are_no_web_link_do_not_take_the_place_of_one() -> None:
    junk = [Source(url, "x") for url in ("javascript:void(0)", "about:blank", "#", "/docs/a")]
    kept = dedupe_sources([*junk, Source("HTTPS://docs.example/real", "Real")], limit=2)
    assert kept == [Source("HTTPS://docs.example/real", "Real")]


def test_sources_max_zero_shows_none() -> None:
    sources = [Source("https://a.example/1", "One"), Source("https://b.example/2", "Two")]
    assert dedupe_sources(sources, limit=0) == []


async def test_placeholder_is_edited_into_the_answer() -> None:
    target = RecordingTarget(placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()  # the placeholder follows at once
    await wait_for(lambda: target.visible() == ["…"])
    reply.feed("Answer")
    await reply.finish(None)
    assert target.visible() == ["Answer"]


async def test_failure_keeps_partial_text_and_adds_a_notice() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("The first half of")
    await reply.fail("The answer was cut off.")
    assert target.visible() == ["The first half of\n\n_⚠️ The answer was cut off._"]


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


async def test_reader_is_held_until_the_next_edit_and_that_edit_takes_its_catch_up() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.3)
    await reply.start()
    reply.feed("first")
    await wait_for(lambda: target.visible() == ["first"])
    shown_at = target.ops[-1].at
    reply.feed(" second")
    await _settle()
    await reply.pace()  # the read after " second" waits for the next edit
    assert time.monotonic() >= shown_at + 0.3
    reply.feed(" third")  # what that read brought: everything that arrived meanwhile
    await reply.pace()
    await wait_for(lambda: len(target.times(("edit", "post"))) == 2)
    assert target.visible() == ["first second third"]  # one edit showed both
    await reply.finish(None)
    assert target.visible() == ["first second third"]


async def test_an_edit_that_waited_for_its_budget_shows_what_arrived_meanwhile() -> None:
    target = RecordingTarget(edit_rate=Rate(1, 0.4), placeholder=True)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await wait_for(lambda: target.visible() == ["…"])
    reply.feed("one")
    await wait_for(lambda: target.visible() == ["one"])  # an edit of the placeholder
    reply.feed(" two")  # its edit waits for the budget (one edit per 0.4 s)...
    await wait_for(lambda: reply._budget.edit.waiting == 1)
    reply.feed(" three")  # ...while more text arrives
    await wait_for(lambda: len(target.times(("edit",))) == 2)
    assert target.visible() == ["one two three"]
    await reply.finish(None)


async def test_pacing_never_stalls_on_a_failing_platform() -> None:
    target = RefusingPosts()
    reply = LiveReply(target, Budgets(), edit_interval=0.2)
    await reply.start()
    waits = []
    for word in "a b c d e".split():
        reply.feed(word)
        await _settle()
        started = time.monotonic()
        await reply.pace()
        waits.append(time.monotonic() - started)
    # Each read waits for the next attempt at most, never for a success.
    assert max(waits) < 0.2 + 0.15
    await reply.aclose()


async def test_a_library_error_from_the_platform_does_not_stop_the_reply() -> None:
    class Dropped(Exception):
        """Not a BridgeError: as a client library's own error reaches the renderer."""

    class Flaky(RecordingTarget):
        failures = 2

        async def begin(self, text: str | None = None) -> str | None:
            raise Dropped("connection closed")

        async def edit(self, message_id: str, text: str) -> None:
            if self.failures:
                self.failures -= 1
                raise Dropped("connection closed")
            await super().edit(message_id, text)

    target = Flaky(placeholder=False)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await _stream(reply, [f"w{i} " for i in range(20)], 0.005)
    await reply.finish(None)
    assert target.visible() == ["".join(f"w{i} " for i in range(20))]
    assert target.failures == 0 and target.ended.is_set()


async def test_a_final_update_the_platform_keeps_refusing_raises_and_the_reply_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "FINAL_RETRIES", 1)

    target = RefusingPosts()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer nobody will see")
    with pytest.raises(PlatformError, match="could not be completed"):
        await reply.finish(None)
    assert target.ended.is_set()  # the platform's indicators are cleaned up all the same


class OutOfReach(RecordingTarget):
    """A platform that cannot be reached (or fails on its side) for its next `failures` posts."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def post(self, text: str) -> str:
        if self.failures:
            self.failures -= 1
            raise PlatformError("Could not reach the platform to post a message.")
        return await super().post(text)


async def test_a_final_update_the_platform_cannot_take_yet_is_tried_for_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "FINAL_RETRIES", 1)  # a refusal's: not this
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.01)
    target = OutOfReach(failures=10)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer shown once the platform is back")
    await reply.finish(None)
    assert target.visible() == ["An answer shown once the platform is back"]
    assert not reply.gave_up


async def test_a_platform_out_of_reach_for_longer_than_the_patience_ends_the_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.1)
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.01)
    target = OutOfReach(failures=10**6)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer nobody will see")
    with pytest.raises(PlatformError, match="could not be completed"):
        await reply.finish(None)
    assert reply.gave_up and target.ended.is_set()


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
        "The corrected, short answer.", "_(continued above)_", "_(continued above)_",
    ]


async def test_sources_that_fit_only_without_the_blank_line_go_in_a_message_of_their_own(
) -> None:
    # The blank line between the answer and its sources counts too: without it, the
    # last message came out past the limit, and the platform refused it.
    sources = [Source("https://docs.example/a", "A")]
    tail = RecordingTarget().format_sources(sources)

    async def shown(answer: str) -> list[str]:
        target = RecordingTarget(max_chars=200)
        reply = LiveReply(target, Budgets(), edit_interval=0.01)
        await reply.start()
        reply.feed(answer)
        await reply.finish(None, sources)
        return target.visible()

    joined = "x" * (200 - len(tail) - 2)  # with the blank line: the limit exactly
    assert await shown(joined) == [f"{joined}\n\n{tail}"]
    apart = "x" * (200 - len(tail) - 1)  # one character more
    assert await shown(apart) == [apart, tail]


async def test_sources_too_long_for_the_last_message_are_cut_between_links() -> None:
    target = RecordingTarget(max_chars=120)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer.")
    sources = [Source(f"https://example.com/{'a' * 40}/{i}", f"Title {i}") for i in range(5)]
    await reply.finish(None, sources)
    shown = "\n".join(target.visible())
    assert all(f"[Title {i}](https://example.com/{'a' * 40}/{i})" in shown for i in range(5))


async def test_a_footnote_ends_the_reply_under_its_sources_or_in_a_message_of_its_own(
) -> None:
    note = "_Attached files are not read._"
    sources = [Source("https://docs.example/a", "A")]
    tail = RecordingTarget().format_sources(sources)

    async def shown(answer: str | None, failure: str | None = None) -> list[str]:
        target = RecordingTarget(max_chars=200)
        reply = LiveReply(target, Budgets(), edit_interval=0.01, footnote=note)
        await reply.start()
        if answer is not None:
            reply.feed(answer)
        if failure is None:
            await reply.finish(None, sources)
        else:
            await reply.fail(failure)
        return target.visible()

    assert await shown("An answer.") == [f"An answer.\n\n{tail}\n\n{note}"]
    full = "x" * (200 - len(tail) - 2)  # the sources fill the message
    assert await shown(full) == [f"{full}\n\n{tail}", note]
    assert await shown("") == [f"_(no answer)_\n\n{tail}\n\n{note}"]
    # An answer cut short keeps it, under the notice; with no answer shown, the
    # notice stands alone.
    assert await shown("Half an", "Cut off.") == [f"Half an\n\n_⚠️ Cut off._\n\n{note}"]
    assert await shown(None, "Cut off.") == ["_⚠️ Cut off._"]


async def test_a_source_whose_link_is_longer_than_a_message_is_left_out() -> None:
    # Its block was cut inside the link and still passed the limit: every post of it
    # was refused, the reply ended "could not be completed", and no source showed.
    target = RecordingTarget(max_chars=120)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer.")
    huge = Source("https://example.com/?q=" + "a" * 200, "Huge")
    await reply.finish(None, [huge, Source("https://example.com/b", "B"), huge])
    assert target.visible() == ["An answer.\n\nSources: [B](https://example.com/b)"]
    assert all(len(text) <= 120 for text in target.visible())


async def test_typing_is_skipped_when_the_answer_comes_before_a_free_request() -> None:
    budgets = Budgets()
    target = RecordingTarget()
    target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(1, 0.3))
    use_slot(budgets.get("bot", Rate(1, 0.3)))  # the bot is busy
    reply = LiveReply(target, budgets, edit_interval=0.01)
    await reply.start()
    reply.feed("Here it is.")
    await reply.finish(None)
    assert [op.kind for op in target.ops] == ["post", "end"]  # no "begin": text came first
    assert target.visible() == ["Here it is."]


async def test_typing_is_shown_while_the_bot_has_requests_to_spare() -> None:
    target = RecordingTarget()
    target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(5, 1.0))
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    await wait_for(lambda: bool(target.ops))
    reply.feed("Here it is.")
    await reply.finish(None)
    assert [op.kind for op in target.ops][:2] == ["begin", "post"]


async def test_first_words_go_before_typing_that_asked_earlier() -> None:
    budgets = Budgets()
    rate = Rate(1, 0.3)
    early, late = RecordingTarget(channel="C1"), RecordingTarget(channel="C2")
    for target in (early, late):
        target.limits = replace(target.limits, global_bucket="bot", global_rate=rate)
    use_slot(budgets.get("bot", rate))  # the bot is busy
    waiting = LiveReply(early, budgets, edit_interval=0.01)
    await waiting.start()  # its typing waits for the budget...
    await wait_for(lambda: budgets.get("bot", rate).waiting == 1)
    answering = LiveReply(late, budgets, edit_interval=0.01)
    await answering.start()
    answering.feed("Here it is.")  # ...and a later question's first words go first
    await wait_for(lambda: late.visible() == ["Here it is."])
    assert [op.kind for op in early.ops] == []
    await wait_for(lambda: [op.kind for op in early.ops] == ["begin"])
    await answering.finish(None)
    await waiting.aclose()


async def test_typing_leaves_half_of_the_bot_budget_to_firstshown_words() -> None:
    # The budgets' clock stands still: no slot frees during the test, so first words
    # shown were shown with a slot typing left them, not one that freed meanwhile.
    budgets = Budgets(clock=lambda: 100.0)
    rate = Rate(4, 5.0)
    targets = [RecordingTarget(channel=f"C{i}") for i in range(4)]
    for target in targets:
        target.limits = replace(target.limits, global_bucket="bot", global_rate=rate)
    replies = [LiveReply(target, budgets, edit_interval=0.01) for target in targets]
    for reply in replies:
        await reply.start()  # four questions at once, no words yet
    typing = budgets.get("bot:typing", Rate(2, 5.0))

    def typed() -> list[RecordingTarget]:
        return [t for t in targets if [op.kind for op in t.ops] == ["begin"]]

    # Settled: each reply shows typing, or waits for typing's share of the budget.
    # (Typing's waiters queue a few loop turns before the others' typing shows.)
    await wait_for(lambda: len(typed()) + typing.waiting == len(targets))
    assert len(typed()) == 2  # typing took half of the bot's requests, not all of them
    reply, target = next((r, t) for r, t in zip(replies, targets, strict=True) if not t.ops)
    reply.feed("Here it is.")  # so these first words are shown at once
    await wait_for(lambda: target.visible() == ["Here it is."])
    for reply in replies:
        await reply.aclose()


async def test_every_slot_is_given_back_whatever_the_requests_do() -> None:
    class Failing(RecordingTarget):
        """Refuses its first edit, and waits on its second until the reply is stopped."""

        edits = 0

        async def edit(self, message_id: str, text: str) -> None:
            self.edits += 1
            if self.edits == 1:
                raise PlatformError("refused")
            if self.edits == 2:
                await asyncio.Event().wait()
            await super().edit(message_id, text)

    budgets = Budgets()
    failing = Failing(channel="C2")
    targets = [RecordingTarget(channel="C1"), failing]
    for target in targets:  # typing, then posts and edits, all on a bot-wide budget too
        target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(50, 1.0))
    done, stopped = (LiveReply(t, budgets, edit_interval=0.01) for t in targets)
    for reply in (done, stopped):
        await reply.start()
        reply.feed("one")
    await wait_for(lambda: all(t.visible() == ["one"] for t in targets))
    for reply in (done, stopped):
        reply.feed(" two")
    await wait_for(lambda: failing.edits == 1)  # refused
    stopped.feed(" three")
    await wait_for(lambda: failing.edits == 2)  # on its way...
    await done.finish(None)
    await stopped.aclose()  # ...when the process stops
    assert [budget.in_flight for _, budget in budgets] == [0] * len(budgets)


async def test_a_slot_granted_as_the_reply_stops_is_given_back() -> None:
    budgets = Budgets()
    rate = Rate(1, 60.0)
    target = RecordingTarget()
    target.limits = replace(target.limits, global_bucket="bot", global_rate=rate)
    bot = budgets.get("bot", rate)
    held = bot.try_acquire()  # another request of the bot, on its way
    assert held is not None
    reply = LiveReply(target, budgets, edit_interval=0.01)
    await reply.start()
    await wait_for(lambda: bot.waiting == 1)  # its typing waits for the bot's budget
    bot.release(held)  # the slot goes to the typing...
    await asyncio.sleep(0)  # ...whose wait takes it
    await reply.aclose()  # ...just as the process stops
    assert [budget.in_flight for _, budget in budgets] == [0] * len(budgets)
    assert target.ops == []


class _SlowEditTarget(RecordingTarget):
    """Its first edit stays on its way until the test lets it land."""

    def __init__(self) -> None:
        super().__init__()
        self.editing = asyncio.Event()
        self.land = asyncio.Event()

    async def edit(self, message_id: str, text: str) -> None:
        self.editing.set()
        await self.land.wait()
        await super().edit(message_id, text)


async def test_the_edit_interval_runs_from_when_the_last_edit_was_sent() -> None:
    target = _SlowEditTarget()
    reply = LiveReply(target, Budgets(), edit_interval=1.0)
    await reply.start()
    reply.feed("one")
    await wait_for(lambda: target.visible() == ["one"])  # first words: posted at once
    reply.feed(" two")
    await asyncio.wait_for(target.editing.wait(), 5.0)  # an interval later, an edit goes
    reply.feed(" three")  # ...and more text comes while it is on its way
    await asyncio.sleep(1.0)  # a slow platform: the edit takes a whole interval to land
    landed = time.monotonic()
    target.land.set()
    await wait_for(lambda: target.visible() == ["one two three"])
    # The next edit was due an interval after the last one was sent, so it goes at
    # once; it does not wait another whole interval after the last one landed. That
    # wait would show here as at least edit_interval, whatever the machine's load;
    # the edit sent at once has all of it as room.
    assert time.monotonic() - landed < reply.edit_interval
    await reply.finish(None)


async def test_flag_wakes_every_waiter_as_asyncio_event_does() -> None:
    flag = Flag()
    flag.set()
    await asyncio.wait_for(flag.wait(), 1.0)  # already set: returns at once
    flag.clear()
    assert not flag.is_set()

    first = asyncio.create_task(flag.wait())
    second = asyncio.create_task(flag.wait())
    gone = asyncio.create_task(flag.wait())
    await _settle()
    assert not (first.done() or second.done())
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    flag.set()
    flag.clear()  # as with asyncio.Event, a waiter already woken still returns
    await asyncio.wait_for(asyncio.gather(first, second), 1.0)
    assert gone.cancelled()

    late = asyncio.create_task(flag.wait())
    await _settle()
    assert not late.done()  # cleared: a new waiter waits again
    flag.set()
    await asyncio.wait_for(late, 1.0)


# ------------------------------------------------------------------ sharing a busy budget


class SlowTarget(RecordingTarget):
    """Each request takes a network round trip; `posting` is set as a post starts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posting = asyncio.Event()

    async def post(self, text: str) -> str:
        self.posting.set()
        await asyncio.sleep(0.02)
        return await super().post(text)

    async def edit(self, message_id: str, text: str) -> None:
        await asyncio.sleep(0.02)
        await super().edit(message_id, text)


async def _read_like_the_relay(reply: LiveReply, tokens: list[str], gap: float) -> None:
    """Tokens reach the network every `gap` s; the reader paces itself on the reply
    (as READ_GATE makes it) and takes everything that arrived at each read."""
    arrived: list[str] = []
    more = Flag()

    async def network() -> None:
        for token in tokens:
            await asyncio.sleep(gap)
            arrived.append(token)
            more.set()

    sender = asyncio.create_task(network())
    first = True
    while not (sender.done() and not arrived):
        if not first:
            await reply.pace()
        first = False
        while not arrived and not sender.done():
            more.clear()
            await more.wait()
        reply.feed("".join(arrived))
        arrived.clear()
    await sender


async def test_a_reply_that_keeps_streaming_does_not_starve_a_later_one() -> None:
    budgets = Budgets(margin=0.0)
    shared = Rate(1, 0.25)  # one edit a quarter second for the whole channel
    a_target = SlowTarget(edit_rate=shared, bucket="chan")
    b_target = SlowTarget(edit_rate=shared, bucket="chan")
    a = LiveReply(a_target, budgets, edit_interval=0.05)
    b = LiveReply(b_target, budgets, edit_interval=0.05)
    await a.start()
    a_reads = asyncio.create_task(_read_like_the_relay(a, [f"a{i} " for i in range(300)], 0.01))
    await asyncio.sleep(0.3)
    await b.start()
    await _read_like_the_relay(b, [f"b{i} " for i in range(200)], 0.01)  # inside A's stream
    b_edits = len(b_target.times(("edit",)))
    await a_reads
    await asyncio.gather(a.finish(None), b.finish(None))
    # Text that waits is ranked from when it came, not from A's first token: B,
    # streaming the whole time, has its share of the ~8 edits the budget allowed.
    assert b_edits >= 2


async def test_a_status_on_screen_leaves_the_first_words_their_priority() -> None:
    budgets = Budgets(margin=0.0)
    target = SlowTarget(edit_rate=Rate(5, 1.0))
    reply = LiveReply(target, budgets, edit_interval=0.05)
    await reply.start()
    reply.set_status("Searching the docs")
    await asyncio.wait_for(target.posting.wait(), 5.0)
    reply.feed("Hello")  # the first words arrive while the status is being posted
    assert target.visible() == []  # (the status not yet landed)
    await wait_for(lambda: target.visible() == ["_Searching the docs_"])
    assert reply.stats.first_visible_at is None  # a status is not the answer's first words
    await wait_for(lambda: target.visible() == ["Hello"])
    assert reply.stats.first_visible_at is not None
    await reply.finish(None)


async def test_an_answer_that_arrives_whole_does_not_wait_for_typing() -> None:
    # The budgets' clock stands still: the typing slots taken never free, so an
    # answer that waited for one would never be posted.
    budgets = Budgets(margin=0.0, clock=lambda: 1000.0)
    typing = budgets.get("bot:typing", Rate(2, 1.0))
    use_slot(typing)
    use_slot(typing)  # other replies' typing took this second's share
    target = RecordingTarget(bucket="c1")
    target.limits = replace(target.limits, global_bucket="bot", global_rate=Rate(4, 1.0))
    reply = LiveReply(target, budgets, edit_interval=0.05)
    await reply.start()
    await wait_for(lambda: typing.waiting == 1)  # its typing waits for a slot
    async with asyncio.timeout(5):  # a deadline for a hang, not a speed target
        await reply.finish("The whole answer, from the API's last event.")
    assert [op.kind for op in target.ops] == ["post", "end"]  # posted; no typing after it
    assert typing.waiting == 0  # the typing gave up its wait


async def test_a_final_text_that_comes_while_an_update_waits_is_not_shown_half() -> None:
    target = RecordingTarget(max_chars=60, edit_rate=Rate(1, 0.3))
    reply = LiveReply(target, Budgets(margin=0.0), edit_interval=0.01)
    await reply.start()
    for k in range(30):
        reply.feed(f"word{k} ")
        await asyncio.sleep(0.01)
    await wait_for(lambda: "word29" in target.visible()[-1])
    reply.feed("more ")
    await asyncio.sleep(0.02)
    reply.feed("more ")  # this update now waits for the edit budget
    await asyncio.sleep(0.02)
    await reply.finish("Short.")
    # Nothing of the final text went to a message as a progress update first.
    assert all(op.text.strip() for op in target.ops if op.kind in ("edit", "post"))
    assert target.visible()[0] == "Short."


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


def test_one_page_is_one_source_however_its_url_is_written() -> None:
    # Case, a default port or a trailing slash made four sources of one page, and
    # pushed others out of the five shown.
    same = ["https://x.example/a", "https://X.example/a", "https://x.example/a/",
            "HTTPS://x.example:443/a#part"]
    kept = dedupe_sources(
        [*(Source(url, f"t{i}") for i, url in enumerate(same)), Source("https://y.example", "y")],
        limit=5,
    )
    assert [s.url for s in kept] == ["https://x.example/a", "https://y.example"]
    # The path and the query tell pages apart.
    other = dedupe_sources([Source("https://x.example/A"), Source("https://x.example/a?p=2"),
                            Source("https://x.example/a")], limit=5)
    assert len(other) == 3


def test_a_source_url_python_cannot_read_is_kept_and_breaks_nothing() -> None:
    # urlsplit raised: the finished answer lost its sources and ended "went wrong".
    odd = [Source("https://example.jp\uff0fguide", "Guide"), Source("https://[::1", "x")]
    assert dedupe_sources([*odd, Source("https://y.example", "y")], limit=5) == [
        *odd, Source("https://y.example", "y")
    ]


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
