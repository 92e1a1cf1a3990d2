from __future__ import annotations

import asyncio
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.platforms.discord.format import format_markdown
from adapters.platforms.slack.mrkdwn import markdown_to_mrkdwn, neutralize_markdown
from bridge.budget import Budgets
from bridge.interfaces import Rate
from bridge.render import LiveReply
from bridge.split import ROW_AT_MOST, closing_fence, row_arriving, split_markdown, split_pieces
from tests.core.recording import RecordingTarget


def _answer(length: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    i = 0
    while sum(len(p) + 2 for p in parts) < length:
        if i % 5 == 2:
            body = "\n".join(f"print({rng.randint(0, 999)})  # step {j}" for j in range(25))
            parts.append(f"```python\n{body}\n```")
        else:
            parts.append(" ".join(f"word{rng.randint(0, 99)}" for _ in range(rng.randint(8, 60))))
        i += 1
    return "\n\n".join(parts)[:length]


def test_short_text_is_one_message() -> None:
    assert split_markdown("hello\n\nworld", 2000) == ["hello\n\nworld"]


def test_5000_chars_on_2000_limit_is_three_messages_on_line_boundaries() -> None:
    text = _answer(5000)
    messages = split_markdown(text, 2000)
    assert len(messages) == 3
    for message in messages:
        assert len(message) <= 2000
        assert message.count("```") % 2 == 0  # fences balanced in every message
    # Cuts fall on line boundaries: every message's last line is a whole line of the source.
    lines = set(text.split("\n")) | {"```"}
    for message in messages[:-1]:
        assert message.split("\n")[-1] in lines


def test_fence_cut_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"x = {i}" for i in range(400))
    text = f"Intro\n\n```python\n{code}\n```\n\nOutro"
    messages = split_markdown(text, 1000)
    assert len(messages) > 2
    assert messages[0].endswith("```")
    for message in messages[1:-1]:
        assert message.startswith("```python\n")
        assert message.endswith("```")
    assert messages[-1].endswith("Outro")


def test_a_tilde_fence_is_closed_and_reopened_with_tildes() -> None:
    code = "".join(f"# step {i}\nx_{i} = a * b\n" for i in range(200))
    text = f"Script:\n\n~~~python\n{code}~~~\n\nAfter the code, **this** is prose."
    first, second = split_markdown(text, 3900)
    assert first.endswith("\n~~~") and second.startswith("~~~python\n")
    assert second.endswith("~~~\n\nAfter the code, **this** is prose.")


def test_a_fence_line_with_a_language_inside_a_code_block_closes_nothing() -> None:
    # A closing fence has no language (CommonMark): an answer showing a README holds
    # "```bash" in its ```markdown block. The cut after it must close and reopen the
    # block, and the text after the block is not code.
    readme = "# Tool\n```bash\npip install tool\n" + "".join(
        f"line {i} of the readme\n" for i in range(60)
    )
    text = f"The README:\n\n```markdown\n{readme}```\n\nThat is all."
    first, second = split_markdown(text, 1000)
    assert first.endswith("\n```") and second.startswith("```markdown\n")
    assert second.endswith("```\n\nThat is all.")


def test_a_four_backtick_fence_is_not_closed_by_three() -> None:
    # An answer showing Markdown in a ```` block holds ``` lines that close nothing.
    example = "".join(f"line {i} of the example\n" for i in range(60))
    text = f"Example:\n\n````markdown\n```python\nprint(1)\n```\n{example}````\n\nDone."
    first, second = split_markdown(text, 1000)
    assert first.endswith("\n````") and second.startswith("````markdown\n")
    assert second.endswith("````\n\nDone.")


def test_inline_code_written_with_three_backticks_opens_no_fence() -> None:
    text = "Install it:\n\n```pip install chat-bridge```\n\n" + "word " * 1200
    messages = split_markdown(text, 2000)
    assert [m.count("pip install") for m in messages] == [1] + [0] * (len(messages) - 1)
    assert all(closing_fence(m) is None for m in messages)


def test_text_without_boundaries_is_cut_hard() -> None:
    messages = split_markdown("x" * 4500, 2000)
    assert [len(m) for m in messages] == [1995, 1995, 510]


UNSPACED = "这是一个很长的中文段落，没有空格。" * 150  # 2,550 characters, one line


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\n\n" + UNSPACED, id="leading-blank-lines"),
        pytest.param("```json\n" + '{"k":"' + "a" * 3000 + '"}\n```', id="long-line-in-fence"),
        pytest.param("y" * 300 + "\n\n\r\n" + "x" * 600, id="stray-carriage-return"),
    ],
)
def test_no_message_is_blank_or_an_empty_code_block(text: str) -> None:
    # A platform refuses a blank message (Discord: 50006), and the rest of the answer
    # was never posted.
    messages = split_markdown(text, 500)
    shown = [m.replace("```json", "").replace("```", "").strip() for m in messages]
    assert all(shown), messages


def test_leading_blank_lines_are_not_a_message() -> None:
    messages = split_markdown("\n\n" + UNSPACED, 2000)
    assert [len(m) for m in messages] == [1995, 555]
    assert "".join(messages) == UNSPACED


def test_a_fence_opened_before_a_long_line_opens_the_next_message() -> None:
    messages = split_markdown("Intro\n\n```json\n" + "a" * 3000 + "\n```", 2000)
    assert messages[0] == "Intro"
    assert all(m.startswith("```json\na") and m.endswith("a\n```") for m in messages[1:])


def test_formatter_growth_is_accounted_for() -> None:
    grow = lambda s: s.replace("&", "&amp;")  # noqa: E731
    messages = split_markdown("a & b\n" * 800, 1000, grow)
    assert all(len(m) <= 1000 for m in messages)
    assert "".join(messages).count("&amp;") == 800


def test_formatting_that_more_than_doubles_the_text_still_fills_each_message() -> None:
    # Slack shows `&` as `&amp;`: "a&b " is 8 characters there. 24,000 characters
    # need 6 messages of 4,000; taking off only the excess cut ~1,000 tiny ones.
    grow = lambda s: s.replace("&", "&amp;")  # noqa: E731
    messages = split_markdown("a&b " * 3000, 4000, grow)
    assert all(len(m) <= 4000 for m in messages)
    assert len(messages) <= 7
    assert "".join(messages).replace(" ", "") == "a&amp;b" * 3000


@settings(max_examples=200)
@given(
    st.text(alphabet=st.sampled_from(list("ab \n`x#*")), max_size=3000),
    st.integers(min_value=20, max_value=500),
)
def test_every_piece_fits_and_nothing_is_lost(text: str, limit: int) -> None:
    messages = split_markdown(text, limit)
    assert all(len(m) <= limit for m in messages)
    assert all(closing_fence(m) is None for m in messages)
    kept = "".join(messages).replace("```", "").replace("\n", "").replace(" ", "")
    assert kept.count("a") == text.replace("```", "").count("a")


def test_a_table_cut_between_rows_goes_on_under_its_header() -> None:
    rows = "".join(f"| row{i} | value {i} * 2 |\n" for i in range(300))
    text = f"Intro.\n\n| name | value |\n|---|---|\n{rows}\nAfter."
    plain = split_markdown(text, 2000)
    assert len(plain) > 2
    for piece in plain[1:]:
        assert piece.startswith("| name | value |\n|---|---|\n| row")
    # On Slack every message shows its part of the table as one preformatted grid.
    slack = split_markdown(text, 3000, markdown_to_mrkdwn)
    assert len(slack) > 1
    for piece in slack[1:]:
        assert re.match(r"```\n\| name +\| value +\|\n\|-+\|-+\|\n\| row", piece), piece[:80]
    assert "* 2" in slack[-1] and slack[-1].endswith("```\n\nAfter.")
    # Every row is shown once.
    shown = "".join(slack)
    assert all(len(re.findall(rf"\| row{i} +\|", shown)) == 1 for i in range(300))


def test_a_long_paragraph_after_a_table_is_not_given_its_header() -> None:
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n\n" + "word " * 800
    pieces = split_markdown(text, 2000)
    assert len(pieces) > 1 and all("| a | b |" not in p for p in pieces[1:])


def test_a_second_table_after_a_blank_line_keeps_its_own_header() -> None:
    def table(name: str) -> str:
        rows = "\n".join(f"| {name} row {i} | value {i} |" for i in range(60))
        return f"| {name}1 | {name}2 |\n|---|---|\n{rows}"

    first, second = table("A"), table("B")
    pieces = split_markdown(f"Two tables.\n\n{first}\n\n{second}", len(first) + 40)
    assert len(pieces) == 2 and pieces[1] == second


def test_blank_space_at_the_end_is_not_a_message_of_its_own() -> None:
    text = ("word " * 396).rstrip() + "\n\n" + " " * 30
    pieces = split_markdown(text, 2000)
    assert pieces == [text.rstrip()]


PROSE = "This sentence is ordinary prose that keeps going without a line break. "


@pytest.mark.parametrize(
    "inline",
    [
        "[the official installation guide](https://example.com/install)",
        "![a diagram of the parts](https://example.com/parts.png)",
        "`pip install --upgrade my-package`",
        "<https://example.com/a|the guide to it>",
    ],
)
def test_a_long_paragraph_is_not_cut_inside_a_code_span_or_a_link(inline: str) -> None:
    # The construct ends at the cut (its spaces are the last in the message), or
    # goes on past it: the cut comes before it, from what the message holds alone
    # (a streamed message, once full, must not change as more text arrives).
    for pad in range(1995 - len(" See ") - len(inline), 1995 - len(" See ")):
        text = (PROSE * 40)[:pad] + f" See {inline} for details. " + PROSE * 5
        messages = split_markdown(text, 2000)
        assert len(messages) == 2
        assert sum(inline in m for m in messages) == 1, (pad, messages[0][-60:])


def test_a_stray_backtick_early_in_a_long_paragraph_leaves_the_message_full() -> None:
    # Nothing closes it: it is no code span to keep whole.
    messages = split_markdown("Press the ` key to open the console. " + PROSE * 60, 2000)
    assert len(messages[0]) > 1900


@pytest.mark.parametrize(
    "unit",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # a family, joined by ZWJ
        "\U0001f1fa\U0001f1f8",  # a flag: two regional indicators
        "\U0001f44d\U0001f3fd",  # a thumb with a skin tone
        "e\u0301",  # an accented letter made of two code points
        "\u0938\u094d\u0924\u0947",  # a Devanagari conjunct, joined by a virama
        "\u2764\ufe0f",  # a heart with its emoji presentation selector
        "\u1100\u1161\u11a8",  # a Hangul syllable written as its three jamo (NFD)
        "\u0e19\u0e49\u0e33",  # Thai "water": a consonant, a tone mark, the vowel AM
        "\u0e99\u0ec9\u0eb3",  # Lao "water", written alike
        # A subdivision flag (Scotland): a black flag, its tag letters, a cancel tag.
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ],
)
@pytest.mark.parametrize("limit", [2000, 1999, 1998, 1997])
def test_a_run_with_no_space_is_cut_between_characters_a_reader_sees_as_one(
    unit: str, limit: int
) -> None:
    text = unit * (2 * limit // len(unit) + 3)
    messages = split_markdown(text, limit)
    assert len(messages) >= 2 and "".join(messages) == text
    assert all(len(m) <= limit for m in messages)
    assert all(m.startswith(unit) for m in messages), [m[:8] for m in messages]


@pytest.mark.parametrize(
    "tail",
    [
        "run `git commit --amend --no-edit` to fix it, then push again. ",
        "see [the guide to all of it](https://example.com/guide) for more. ",
        "e\u0301\U0001f44d\U0001f3fd\U0001f1fa\U0001f1f8" * 30,
    ],
)
def test_a_message_cut_while_the_answer_streams_stays_as_it_was_cut(tail: str) -> None:
    # The renderer freezes a message once the text runs past it: the same cut
    # must come out of every longer text, or a message already shown would change.
    text = ("lorem ipsum dolor sit amet " * 100)[:1985] + tail * 3
    final = split_pieces(text, 2000, lambda s: s)[0]
    for n in range(1990, len(text) + 1):
        pieces = split_pieces(text[:n], 2000, lambda s: s)
        if len(pieces) > 1:
            assert pieces[0] == final, n


FORMATS = {
    "plain": lambda s: s,
    "discord": format_markdown,
    "slack": markdown_to_mrkdwn,
    "slack-native": neutralize_markdown,
}
LIMITS = {"plain": 2000, "discord": 2000, "slack": 3900, "slack-native": 3900}


@pytest.mark.parametrize("platform", sorted(FORMATS))
@pytest.mark.parametrize(
    "opening",
    [
        pytest.param("```" + "word " * 1000, id="long-info-string"),
        pytest.param('```json{"k": "' + "v" * 5000 + '"}', id="code-on-the-opening-line"),
    ],
)
def test_a_fence_opening_line_longer_than_a_message_is_not_repeated_in_each(
    platform: str, opening: str
) -> None:
    # It was reopened whole in the next message: each came out one character over
    # the limit (refused), and one source character long (hundreds of messages).
    fmt, limit = FORMATS[platform], LIMITS[platform]
    text = f"Here is the data:\n{opening}\nprint(1)\n```\n\nDone."
    messages = split_markdown(text, limit, fmt)
    assert all(len(m) <= limit for m in messages), [len(m) for m in messages]
    assert len(messages) <= len(text) // (limit // 2) + 2
    assert all(closing_fence(m) is None for m in messages)
    assert "print(1)" in messages[-1] and messages[-1].endswith("Done.")
    if fmt is not markdown_to_mrkdwn:  # Slack's formatting shows no info string
        shown = "".join(messages)
        assert shown.count("v") >= 5000 or shown.count("word") >= 1000


def test_a_fence_reopens_with_its_language_only() -> None:
    code = "\n".join(f"x = {i}" for i in range(400))
    messages = split_markdown(f"```python title=example.py\n{code}\n```", 1000)
    assert messages[0].startswith("```python title=example.py\n")
    assert all(m.startswith("```python\nx = ") for m in messages[1:])


@pytest.mark.parametrize(
    ("text", "limit", "platform"),
    [
        ("word " * 9 + "then run ~~~ and see", 60, "plain"),
        ("word " * 9 + "then > > ```py and see", 60, "plain"),  # in a quote
        ("a ```" + "x" * 50, 40, "plain"),
        ("Long paragraph " * 132 + "and so ```triple backticks open a code block", 2000, "discord"),
        ("Long paragraph " * 259 + "and ~~~tildes~~~ are fences too", 3900, "slack"),
        ("x" * 1995 + "```" + "y" * 100, 2000, "plain"),  # cut hard, before the marker
    ],
)
def test_a_fence_marker_in_the_middle_of_a_line_opens_no_code_block_when_cut_near_it(
    text: str, limit: int, platform: str
) -> None:
    # The cut fell at the space before it: the rest, taken for a fence's opening
    # line, showed nothing and was dropped.
    fmt = FORMATS[platform]
    messages = split_markdown(text, limit, fmt)
    assert len(messages) == 2
    assert all(closing_fence(m) is None for m in messages), messages
    assert "".join(messages).replace(" ", "") == fmt(text).replace(" ", "")


def test_the_rest_of_a_line_cut_before_a_fence_marker_is_no_code_block() -> None:
    # It went on as a code block the answer never had, to its end.
    text = "Long paragraph " * 132 + "and so ```triple backticks open a block\n\nMore.\n\nEnd."
    first, second = split_markdown(text, 2000, format_markdown)
    assert second.startswith("so ```triple") and second.endswith("block\n\nMore.\n\nEnd.")
    assert closing_fence(first) is None and closing_fence(second) is None


def test_a_code_block_whose_opening_line_holds_the_code_is_kept_at_the_end() -> None:
    # Discord shows ```json{...} as code; it was taken for a fence line that shows nothing.
    text = "word " * 397 + 'end.\n\n```json{"answer": 42}\n```'
    messages = split_markdown(text, 2000, format_markdown)
    assert messages[0].endswith("word end.")
    assert messages[1:] == ['```json{"answer": 42}\n```']


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("## ", []),
        ("## \n" + "x" * 5000, ["x" * 3895, "x" * 1105]),
        ("\n\n```\n\n```\n", []),
    ],
)
def test_a_piece_that_formats_to_nothing_is_no_message(text: str, expected: list[str]) -> None:
    # Slack shows an empty heading as nothing: the message was refused (no_text).
    assert split_markdown(text, 3900, markdown_to_mrkdwn) == expected


MARKUP = [
    "a",
    "b",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\n```",
    "\n```py",
    "\n~~~",
    "```",
    "~~~",
    " ```",
    " ~~~",
    "`",
    "``",
    "~",
    "|",
    "| a | b |\n",
    "|---|---|\n",
    "## ",
    "#",
    "&",
    "&&&&&&&&",
    "\r\n",
    "\t",
    "e\u0301",
    "\U0001f44d\U0001f3fd",
    "x" * 50,
    "word " * 10,
    '```json{"k":"' + "v" * 80,
    "```" + "w " * 60,
    "\n" + "~" * 12,
    "`" * 8,
    "- ",
    "> ",
    "*",
    "_",
    "[a](https://x.example/a)",
    "\n> ```py",
    "\n> ```",
    "\n> ~~~",
    "\n>",
    "\n> > ",
    "\n> " + "w " * 60,
]
# A line that shows nothing: blank, or a fence's marker and at most a language.
SILENT = re.compile(r"\s*(?:(?:`{3,}|~{3,})[\w+#.-]*\s*)?")
BARE = re.compile(r"^\s*(`{3,}|~{3,})\s*$", re.MULTILINE)


def _short_runs(text: str) -> str:
    """`text` with no run of ` or ~ (and spaces) longer than a third of the smallest
    message: one that long can start the next message whatever the cut."""
    return re.sub(r"[`~ ]{13}", lambda run: run[0][:-1] + "a", text)


def _text(markdown: str, source: bool = False) -> str:
    """What a reader sees of `markdown`, but for spaces and fence markers."""
    if source:
        markdown = "\n".join(line for line in markdown.split("\n") if not SILENT.fullmatch(line))
    return re.sub(r"[\s`~]", "", markdown)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(MARKUP), max_size=300).map("".join).map(_short_runs),
    st.integers(min_value=40, max_value=400),
    st.sampled_from(sorted(FORMATS)),
)
def test_every_piece_fits_shows_something_and_keeps_its_fences_balanced(
    text: str, limit: int, platform: str
) -> None:
    messages = split_markdown(text, limit, FORMATS[platform])
    assert all(len(m) <= limit for m in messages), [len(m) for m in messages]
    # No message is blank, nor an empty code block.
    assert all(BARE.sub("", m).strip() for m in messages), messages
    assert len(messages) <= 3 * len(text) // limit + 3
    if platform == "plain":
        assert all(closing_fence(m) is None for m in messages), messages
        # Every character a reader sees comes out, in order.
        shown = iter(_text("\n".join(messages)))
        assert all(char in shown for char in _text(text, source=True)), messages


@pytest.mark.parametrize("mark", ["**", "~~", "*", "_", "__", "||"])
@pytest.mark.parametrize("words", range(236, 246))
def test_a_cut_in_a_long_paragraph_keeps_emphasis_and_spoilers_whole(mark: str, words: int) -> None:
    # Cut at the space inside them, both messages showed the marks raw (and a
    # Discord spoiler cut in two hides nothing).
    text = "x " * words + f"{mark}dead letter queue{mark} after three attempts, and more."
    pieces = split_markdown(text, 500)
    assert len(pieces) == 2
    assert all(piece.count(mark) % 2 == 0 for piece in pieces)
    assert "".join(pieces).split() == text.split()


@pytest.mark.parametrize("mark", ["*", "_"])
@pytest.mark.parametrize("words", range(236, 246, 3))
def test_italics_at_a_cut_show_as_italics_on_slack(mark: str, words: int) -> None:
    text = "x " * words + f"{mark}Note that this applies to the paid plans only.{mark} More text."
    pieces = split_markdown(text, 500, markdown_to_mrkdwn)
    assert len(pieces) == 2
    # Slack's italics are `_x_`: a star left is one shown raw.
    assert all("*" not in piece and piece.count("_") % 2 == 0 for piece in pieces), pieces


def test_marks_no_formatter_reads_as_emphasis_leave_the_message_full() -> None:
    # Underscores within a word (a name) and a star between spaces emphasise nothing.
    text = "Set my_config_value and other_value to 2 * 3 before you start. " * 40
    assert len(split_markdown(text, 500)[0]) > 480
    assert len(split_markdown(text, 500, markdown_to_mrkdwn)[0]) > 480


def test_a_stray_star_early_in_a_long_paragraph_hides_no_code_span_at_the_cut() -> None:
    # `*args` opens nothing, yet taken for the italics left open at the cut, it hid
    # the code span opened after it.
    inline = "`pip install --upgrade my-package`"
    for pad in range(1995 - len(" See ") - len(inline), 1995 - len(" See ")):
        text = "Call f(*args) first. " + (PROSE * 40)[: pad - 21] + f" See {inline} now. "
        messages = split_markdown(text + PROSE * 5, 2000)
        assert sum(inline in m for m in messages) == 1, (pad, messages[0][-60:])


@pytest.mark.parametrize("quote", ["> ", ">", "  > ", "> > "])
def test_a_quoted_code_block_cut_is_closed_and_reopened_in_its_quote(quote: str) -> None:
    # A fence was read only at a line's start: a quoted file's code block was never
    # closed at a cut, the next messages went on as quoted text, and its closing
    # fence opened a stray block.
    code = "".join(f"{quote}x_{i} = a*b*c  # step {i}\n" for i in range(200))
    text = f"The file:\n\n{quote}```python\n{code}{quote}```\n\nDone."
    messages = split_markdown(text, 2000)
    assert len(messages) > 2
    closing = "> " * quote.count(">") + "```"
    assert all(m.endswith(f"\n{closing}") for m in messages[:-1]), messages
    assert all(m.startswith(f"{closing}python\n{quote}x_") for m in messages[1:]), messages
    assert messages[-1].endswith(f"\n{quote}```\n\nDone.")
    assert all(closing_fence(m) is None for m in messages)


def test_a_long_line_of_quoted_code_goes_on_in_its_quote() -> None:
    # The rest of a line cut in two is no quote of itself: it would end the quote,
    # and the code block in it.
    text = "> ~~~json\n> " + '{"k": "' + "v " * 1500 + '"}\n> ~~~\n\nDone.'
    first, *rest = split_markdown(text, 2000)
    assert first.startswith("> ~~~json\n> {") and first.endswith("\n> ~~~")
    assert rest and all(m.startswith("> ~~~json\n> v") for m in rest), rest
    assert rest[-1].endswith('"}\n> ~~~\n\nDone.')


@pytest.mark.parametrize("after", ["\n\n", "\n"])
def test_a_code_block_ends_with_the_quote_it_stands_in(after: str) -> None:
    # CommonMark: a blank line or a line out of the quote ends it, and its code block;
    # a cut there reopens no block.
    text = "> ```\n" + "> x = 1\n" * 30 + f"{after}Prose " + "word " * 400
    messages = split_markdown(text, 300)
    assert messages[0].endswith("> x = 1\n> ```") and messages[1].startswith("Prose word")
    assert not any("```" in m for m in messages[1:]), messages


QUOTED_CODE = (
    "Here is the quoted snippet:\n\n> ```python\n"
    + "".join(f"> x_{i} = a*b*c  # step {i}\n" for i in range(200))
    + "> ```\n\nDone."
)


def _stays_quoted_code(messages: list[str]) -> None:
    assert len(messages) > 1
    for message in messages:
        code = [line for line in message.split("\n") if "x_" in line]
        # Code shows its stars (as text, Slack made them italics: `a_b_c`), each
        # message's block is closed in it, and none is an empty block.
        assert code and all(line.startswith("> x_") and "a*b*c" in line for line in code)
        assert message.count("```") % 2 == 0, [m.count("```") for m in messages]
        assert message.startswith(("Here", "> ```")) and "> ```\n> ```" not in message
    assert messages[-1].endswith("> ```\n\nDone.")


@pytest.mark.parametrize("platform", ["discord", "slack"])
def test_a_quoted_code_block_stays_code_in_every_message(platform: str) -> None:
    _stays_quoted_code(split_markdown(QUOTED_CODE, LIMITS[platform], FORMATS[platform]))


class _Formatting(RecordingTarget):
    def __init__(self, platform: str) -> None:
        fast = Rate(100_000, 1.0)
        super().__init__(max_chars=LIMITS[platform], edit_rate=fast, post_rate=fast)
        self.fmt = FORMATS[platform]

    def format_markdown(self, markdown: str) -> str:
        return self.fmt(markdown)


@pytest.mark.parametrize("platform", ["discord", "slack"])
async def test_a_streamed_quoted_code_block_stays_code_in_every_message(platform: str) -> None:
    # Discord's three messages held ``` once, not at all, and once: the first block
    # never closed, the second showed no code, the third opened a stray one.
    target = _Formatting(platform)
    reply = LiveReply(target, Budgets(), edit_interval=0.0)
    await reply.start()
    for at in range(0, len(QUOTED_CODE), 9):
        reply.feed(QUOTED_CODE[at : at + 9])
        await asyncio.sleep(0)  # the reply shows what arrived, and freezes full messages
    await reply.finish(None)
    _stays_quoted_code(target.visible())


def test_a_table_row_still_arriving_is_the_last_line_begun_with_a_pipe() -> None:
    table = "| a | b |\n|---|---|\n"
    assert row_arriving(f"{table}| 1 | 2") == len(table)
    assert row_arriving(f"{table}  | 1 | 2 |") == len(table)  # its line break not there yet
    assert row_arriving(f"{table}| 1", start=len(table)) == len(table)
    for text in (
        f"{table}| 1 | 2 |\n",  # whole
        "||a spoiler",
        f"```\n{table}| 1",  # code
        "| " + "x" * ROW_AT_MOST,  # too long for a row: shown as it comes
        "Real numbers:\n|x| is never negative",  # prose, going on a paragraph
    ):
        assert row_arriving(text) == len(text)
    # Opening a block: a table's header, most likely, while it streams.
    assert row_arriving("Cities:\n\n| City | Pop") == len("Cities:\n\n")
    assert row_arriving("| City | Pop") == 0
    # Cut for good: a whole row is kept, half of one under a table is not, and a line
    # opening a block is kept (it may be prose).
    assert row_arriving(f"{table}| 1 | 2 |", cut=True) == len(table) + 9
    assert row_arriving(f"{table}| 1 | 2", cut=True) == len(table)
    for text in ("|x| is never negative", "Real numbers:\n\n|x| is never negative"):
        assert row_arriving(text, cut=True) == len(text)
    # Begun before `start` (a message ended inside it): shown as it comes.
    assert row_arriving(f"{table}| 1", start=len(table) + 1) == len(table) + 3


@pytest.mark.parametrize("platform", ["discord", "slack"])
async def test_a_streamed_table_shows_whole_rows_in_every_message(platform: str) -> None:
    # A message ended with half a row under its table, as raw Markdown, until the
    # next edit.
    rows = "".join(f"| City {i} | {i * 1.5:.1f} million |\n" for i in range(200))
    text = f"Cities:\n\n| City | Population |\n|---|---:|\n{rows}\nThat is all."
    target = _Formatting(platform)
    reply = LiveReply(target, Budgets(), edit_interval=0.0)
    await reply.start()
    for at in range(0, len(text), 7):
        reply.feed(text[at : at + 7])
        await asyncio.sleep(0)  # the reply shows what arrived, and freezes full messages
    await reply.finish(None)
    written = [op.text for op in target.ops if op.kind in ("post", "edit")]
    for shown in written:
        assert all(line.endswith("|") for line in shown.split("\n") if line.startswith("|")), shown
    shown = "".join(target.visible())
    assert len(target.visible()) > 1
    assert all(len(re.findall(rf"\| City {i} +\|", shown)) == 1 for i in range(200))
