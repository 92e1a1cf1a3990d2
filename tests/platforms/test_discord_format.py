"""Discord's formatting of answers: what Discord reads otherwise made what it reads."""

from __future__ import annotations

import re

from adapters.platforms.discord.format import ZWSP, format_markdown
from bridge.split import split_markdown

# Discord's code block: ``` and an optional language, ended by the first ``` after it.
DISCORD_CODE_BLOCK = re.compile(r"```(?:([a-z0-9_+\-.#]+?)\n+)?\n*([\s\S]+?)\n*```", re.I)
BROKEN = f"`{ZWSP}`{ZWSP}`"  # ``` that ends no code block


def code_blocks(message: str) -> list[tuple[str, str]]:
    """The code blocks Discord reads in `message`: language and code."""
    return [(m.group(1) or "", m.group(2)) for m in DISCORD_CODE_BLOCK.finditer(message)]


def outside_code(message: str) -> str:
    return DISCORD_CODE_BLOCK.sub("<code>", message)


def test_a_block_fenced_with_four_backticks_is_one_code_block_showing_its_fences() -> None:
    # Discord knows ``` only, and the first ``` ends a block: the snippet showed as
    # text between stray code blocks.
    answer = (
        "Fence it with triple backticks:\n\n````markdown\n## Usage\n\n```python\n"
        "client = Client()\n```\n````\n\nThe language turns on highlighting."
    )
    shown = format_markdown(answer)
    assert code_blocks(shown) == [
        ("markdown", f"## Usage\n\n{BROKEN}python\nclient = Client()\n{BROKEN}")
    ]
    assert outside_code(shown) == (
        "Fence it with triple backticks:\n\n<code>\n\nThe language turns on highlighting."
    )
    assert format_markdown(shown) == shown


def test_a_block_fenced_with_tildes_is_code_not_markdown() -> None:
    # Read as Markdown, `# apply` was a heading and ~~ struck text through.
    answer = "Run:\n\n~~~bash\n# apply ~~all~~ migrations\n./manage.py migrate\n~~~\n\nDone."
    shown = format_markdown(answer)
    assert shown == (
        "Run:\n\n```bash\n# apply ~~all~~ migrations\n./manage.py migrate\n```\n\nDone."
    )
    assert code_blocks(shown) == [("bash", "# apply ~~all~~ migrations\n./manage.py migrate")]
    # Closed by a longer fence of its kind, indented; not by backticks.
    nested = format_markdown("  ~~~\n```\nx @everyone\n  ~~~~\nafter @everyone")
    assert nested == f"  ```\n{BROKEN}\nx @everyone\n  ```\nafter @{ZWSP}everyone"


def test_a_quoted_block_fenced_with_tildes_is_a_code_block_in_its_quote() -> None:
    # Discord knows ``` only: a quoted file's ~~~ block showed as quoted text, `a*b*c`
    # in italics.
    answer = "File:\n\n> ~~~python\n> x = a*b*c  # ```\n> ~~~~\n\nSo *this*."
    shown = format_markdown(answer)
    assert shown == f"File:\n\n> ```python\n> x = a*b*c  # {BROKEN}\n> ```\n\nSo *this*."
    # A block ends with the quote it stands in (CommonMark): closed there, in it.
    shown = format_markdown("> ~~~\n> x = 1\n\nText.\n~~~\n> y\n~~~")
    assert shown == "> ```\n> x = 1\n> ```\n\nText.\n```\n> y\n```"


def test_a_three_backtick_block_is_left_as_discord_reads_it() -> None:
    # Discord ends it at the next ```, wherever it stands: what follows is text.
    answer = "```\n| a | b |\n|---|---|\n``` and\n| a | b |\n|---|---|"
    shown = format_markdown(answer)
    assert shown.startswith("```\n| a | b |\n|---|---|\n``` and\n```\n| a | b |")


def test_a_four_backtick_block_longer_than_a_message_is_a_code_block_in_each() -> None:
    # The splitter closes and reopens it with its own marker (````), which Discord
    # does not read either.
    lines = [f"Line {i}: ```x{i}``` and text" for i in range(200)]
    answer = "Example:\n\n````markdown\n" + "\n".join(lines) + "\n````\n\nThat is all."
    messages = split_markdown(answer, 2000, format_markdown)
    assert len(messages) > 2
    assert all(len(m) <= 2000 for m in messages)
    code: list[str] = []
    for i, message in enumerate(messages):
        blocks = code_blocks(message)
        assert [lang for lang, _ in blocks] == ["markdown"], message
        before = "Example:\n\n" if i == 0 else ""
        after = "\n\nThat is all." if i == len(messages) - 1 else ""
        assert outside_code(message) == f"{before}<code>{after}"
        code.extend(blocks[0][1].split("\n"))
    assert code == [line.replace("```", BROKEN) for line in lines]


def test_a_quotes_blank_lines_are_quoted() -> None:
    # Discord quotes `> ` and what follows: a bare `>` showed, and cut the quote.
    answer = (
        "The docs say:\n\n> Tokens expire.\n>\n> Refresh them.\n  >  \n> Or not.\n\n"
        "```\n>\n```\n~~~\n>\n~~~"
    )
    assert format_markdown(answer) == (
        f"The docs say:\n\n> Tokens expire.\n> {ZWSP}\n> Refresh them.\n> {ZWSP}\n"
        "> Or not.\n\n```\n>\n```\n```\n>\n```"
    )


def test_escaped_marks_are_kept_for_discord_to_show_as_written() -> None:
    # A note escapes an API's marks: Discord shows `\_` as `_`, and keeps the italics.
    note = "_⚠️ Use 'max\\_completion\\_tokens' \\*now\\*._"
    assert format_markdown(note) == note
