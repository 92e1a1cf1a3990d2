"""A code block in a list item, indented as deep as the item's text (four spaces or a
tab under `1. `): code on every platform, in every message an answer is cut into,
as the splitter and each platform's formatting read the same fence lines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.platforms.discord.format import format_markdown
from adapters.platforms.slack.mrkdwn import markdown_to_mrkdwn, neutralize_markdown
from bridge.split import split_markdown

PLATFORMS: dict[str, tuple[Callable[[str], str], int, tuple[str, ...]]] = {
    # Formatting, message limit, and the fence markers the platform reads.
    "discord": (format_markdown, 2000, ("```",)),
    "slack": (markdown_to_mrkdwn, 3900, ("```",)),
    "slack-native": (neutralize_markdown, 3900, ("```", "~~~")),
}


def _answer(indent: str, marker: str) -> str:
    code = "".join(f"{indent}x_{i} = a*b*c  # step {i}\n" for i in range(250))
    return (
        f"Steps:\n\n1. Save it as `steps.py`:\n\n{indent}{marker}python\n{code}{indent}{marker}"
        "\n\n2. Run it *now*."
    )


def _code_lines_in_code(message: str, markers: tuple[str, ...]) -> None:
    """Every line of the answer's code in `message` stands in a code block, and each
    block opened in it is closed in it."""
    inside = False
    for line in message.split("\n"):
        if line.lstrip().startswith(markers):
            inside = not inside
        elif "x_" in line:
            assert inside and "a*b*c" in line, line
    assert not inside, message


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("indent", ["    ", "\t"], ids=["four-spaces", "tab"])
@pytest.mark.parametrize("marker", ["```", "~~~"])
def test_code_in_a_list_item_cut_in_two_stays_code_in_each_message(
    platform: str, indent: str, marker: str
) -> None:
    # On Discord a ~~~ block so indented showed as text up to the cut, which the
    # splitter closed with a ``` that opened a stray block; the next message's block
    # never closed.
    fmt, limit, markers = PLATFORMS[platform]
    messages = split_markdown(_answer(indent, marker), limit, fmt)
    assert len(messages) > 1
    for message in messages:
        _code_lines_in_code(message, markers)
    shown = "\n".join(messages)
    assert all(f"x_{i} = a*b*c" in shown for i in range(250))
    assert messages[-1].rstrip().endswith(fmt("2. Run it *now*."))


@pytest.mark.parametrize("platform", ["discord", "slack-native"])
@pytest.mark.parametrize("indent", ["    ", "\t"], ids=["four-spaces", "tab"])
def test_a_link_in_a_list_items_code_is_kept_as_written(platform: str, indent: str) -> None:
    # The Markdown example in the code was taken for a link naming another place and
    # made a bare `<https://evil.example>`: the code copied was not the code given.
    fmt, _, markers = PLATFORMS[platform]
    example = "See [docs.python.org](https://evil.example)"
    shown = fmt(f"1. Link it like this:\n\n{indent}~~~md\n{indent}{example}\n{indent}~~~\n2. Done")
    assert f"{indent}{example}\n" in shown
    _code_lines_in_code(shown.replace(example, "x_ a*b*c"), markers)
