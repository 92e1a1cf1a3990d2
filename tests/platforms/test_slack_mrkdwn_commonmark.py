"""Markdown -> Slack mrkdwn where CommonMark decides what is code and what is a link:
code in a list item, indented code, escaped backticks, nested brackets; and code
kept as written in native streaming."""

from __future__ import annotations

import pytest

from adapters.platforms.slack.mrkdwn import (
    WORD_JOINER,
    ZWSP,
    markdown_to_mrkdwn,
    neutralize_markdown,
)
from tests.fakes.slack import pings_in

J = WORD_JOINER
Z = ZWSP


def test_code_in_a_list_item_is_shown_without_the_items_indent() -> None:
    # As CommonMark reads it: each line loses as much indent as its fence has. With
    # the item's, the copied code failed with an IndentationError.
    markdown = (
        '1. Save as app.py:\n\n   ```python\n   def main():\n       print("hi")\n\n   main()\n'
        "   ```\n2. Run it."
    )
    shown = markdown_to_mrkdwn(markdown)
    assert shown == (
        '1. Save as app.py:\n\n```\ndef main():\n    print("hi")\n\nmain()\n```\n2. Run it.'
    )
    compile(shown.split("```")[1].strip("\n"), "app.py", "exec")
    # A line indented less than its fence loses what it has; a tab counts to its stop.
    assert markdown_to_mrkdwn("  ```\n x\n\ty = 1\n  ```") == "```\nx\n  y = 1\n```"
    # In a quote too.
    assert markdown_to_mrkdwn("> - a\n>   ```\n>   b_c\n>   ```") == "> • a\n> ```\n> b_c\n> ```"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        # After a blank line, four spaces in: code, shown as written.
        (
            "Run this:\n\n    result = a*b*c\n    print(__name__)\n\nThen check.",
            "Run this:\n\n```\nresult = a*b*c\nprint(__name__)\n```\n\nThen check.",
        ),
        (
            "# Setup\n\n\tif a < b:\n\t    go()\n\n    done()\nAfter",
            "*Setup*\n\n```\nif a &lt; b:\n    go()\n\ndone()\n```\nAfter",
        ),
        # A list's paragraphs are indented too: they stay text, up to a paragraph
        # after the list.
        (
            "1. Step\n\n    More about **it**\n\n    And *more*",
            "1. Step\n\n    More about *it*\n\n    And _more_",
        ),
        ("- a\nlazy line\n\n    still **a**", "• a\nlazy line\n\n    still *a*"),
        ("- a\n\nText\n\n    x = a*b", "• a\n\nText\n\n```\nx = a*b\n```"),
        # Without a blank line it goes on with the paragraph.
        ("Text\n    **more**", "Text\n    *more*"),
        # A text that starts indented may be a later message's, cut from a list item.
        ("    continued **here**\n\n    and *here*", "    continued *here*\n\n    and _here_"),
    ],
)
def test_code_indented_four_spaces_is_code(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        # An escaped backtick opens no code span: it is a backtick.
        (
            r"Wrap it in backticks, like \`this\`, to get code.",
            f"Wrap it in backticks, like {Z}`{Z}this{Z}`{Z}, to get code.",
        ),
        # An escaped backslash is one, and the backtick after it opens a span.
        (r"a \\`b_c_` d", r"a \`b_c_` d"),
        # In a code span a backslash is text, also before its closing backtick.
        (r"Use `C:\dir\` then `x`", r"Use `C:\dir\` then `x`"),
    ],
)
def test_an_escaped_backtick_is_text(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        # A linked image (a badge) links to the link's address, labelled with its alt.
        (
            "[![build](https://img.shields.io/b.svg)](https://github.com/o/r)",
            "<https://github.com/o/r|build>",
        ),
        (
            "[![**CI** `status`](https://img.shields.io/b.svg) now](https://github.com/o/r)",
            "<https://github.com/o/r|CI status now>",
        ),
        # Brackets that make no link are the label's.
        (
            "[the [draft] spec](https://example.com/spec)",
            "<https://example.com/spec|the [draft] spec>",
        ),
        # A link holds no link: the innermost one is it.
        (
            "[[a](https://a.example)](https://b.example)",
            "[<https://a.example|a>](https://b.example)",
        ),
        # The label is still held to where the link leads.
        (
            "[![https://bank.example](https://img.example/i.png)](https://evil.example)",
            "<https://evil.example>",
        ),
        ("[see [bank.com]](https://evil.example)", "<https://evil.example>"),
        # Code or an image is no part of an address: the text is kept, with it.
        (
            "[x](https://a.example/`b`) [y](:![i](https://i.example))",
            "[x](https://a.example/`b`) [y](:<https://i.example|i>)",
        ),
    ],
)
def test_a_links_label_may_hold_an_image_or_brackets(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_native_code_keeps_slack_syntax_as_written_and_pings_nobody() -> None:
    code = 'client.chat_postMessage(channel=ch, text=f"<@{user_id}> done, <!here> <@U0123ABCD>")'
    markdown = f"```python\n{code}\n```\nOr `<!channel> @here`, not <!here>.\n\n> ```\n> <!here>"
    text = neutralize_markdown(markdown)
    assert pings_in(text) == []
    # Only word joiners, which show as nothing, are added to the code.
    assert text == (
        f'```python\nclient.chat_postMessage(channel=ch, text=f"<@{{user_id}}> done, <{J}!here>'
        f' <{J}@{J}U0123ABCD>")\n```\nOr `<{J}!channel> @{J}here`, not @{J}here.\n\n'
        f"> ```\n> <{J}!here>"
    )
    # Outside code, an escaped backtick opens no span; a span never closed is text.
    assert neutralize_markdown(r"\`<!here>\` and `<!channel>") == (
        rf"\`@{J}here\` and `@{J}channel"
    )
