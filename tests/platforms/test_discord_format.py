"""Discord's formatting of answers: mentions defused, links and sources shown for what they
are, and what Discord reads otherwise made what it reads."""

from __future__ import annotations

import re

import pytest

from adapters.platforms.discord.format import ZWSP, format_markdown
from adapters.platforms.markup import SOURCE_TITLE_MAX, encoded_url
from bridge.interfaces import Source
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


def test_a_blank_line_of_quoted_code_stays_in_the_quote() -> None:
    # A bare `>` in a quote's code block showed as code, and cut the quote: the code
    # after it showed out of the quote, and its closing fence opened another block.
    for marker in ("```", "~~~"):
        answer = f"Quote:\n\n> {marker}py\n> a = 1\n>\n> b = 2\n> {marker}\n\nEnd."
        assert format_markdown(answer) == (
            f"Quote:\n\n> ```py\n> a = 1\n> {ZWSP}\n> b = 2\n> ```\n\nEnd."
        )


def test_escaped_marks_are_kept_for_discord_to_show_as_written() -> None:
    # A note escapes an API's marks: Discord shows `\_` as `_`, and keeps the italics.
    note = "_⚠️ Use 'max\\_completion\\_tokens' \\*now\\*._"
    assert format_markdown(note) == note


async def test_formatting() -> None:
    from adapters.platforms.discord import format as fmt

    text = fmt.format_markdown("hi @everyone and <@&5> `@here` <@!7> in <#9>\n```\n@here\n```")
    expected = f"hi @{ZWSP}everyone and <@&{ZWSP}5> `@here` <@!{ZWSP}7> in <#9>"
    assert text == expected + "\n```\n@here\n```"  # code is left exactly as it was
    assert fmt.format_markdown(text) == text
    # In italics too; an address is left whole.
    assert fmt.format_markdown("_@everyone_ __@here__ ops@here.example") == (
        f"_@{ZWSP}everyone_ __@{ZWSP}here__ ops@here.example"
    )
    block = fmt.format_sources([Source("https://a.example/x", "A [draft]"), Source("https://b")])
    assert block == "**Sources**\n- [A (draft)](<https://a.example/x>)\n- <https://b>"
    # A backslash-escaped backtick opens no code span: the mention inside is defused.
    assert fmt.format_markdown("\\`<@123>\\`") == f"\\`<@{ZWSP}123>\\`"
    # A URL cannot end its link or break its line.
    odd = fmt.format_sources([Source("https://x.y/<@&12>\n@everyone x", "T")])
    assert odd == "**Sources**\n- [T](<https://x.y/%3C@&12%3E%0A@everyone%20x>)"
    # Addresses that hold @here or @everyone are left whole: they mention nobody.
    for address in (
        "https://mastodon.social/@here/1",
        "[g](https://x.example/@everyone)",
        "ops@here.example",
    ):
        assert fmt.format_markdown(address) == address
    # A title that is a URL would show as raw Markdown in a masked link.
    titled = fmt.format_sources([Source("https://a.example/x", "https://a.example/x")])
    assert titled == "**Sources**\n- <https://a.example/x>"


def test_a_sources_title_with_brackets_shows_no_backslashes() -> None:
    # Discord shows a backslash in a link's text rather than read it as an escape:
    # people saw `\[Solved\]`.
    from adapters.platforms.discord import format as fmt

    block = fmt.format_sources(
        [
            Source("https://docs.acme.dev/faq", "[Solved] Login loop on SSO"),
            Source("https://docs.acme.dev/rel", "Release notes [v2.1]"),
            Source("https://docs.acme.dev/win", "Paths like C:\\temp\\"),
            Source("https://docs.acme.dev/x", "a](https://evil.example) ["),
        ]
    )
    assert "\\" not in block
    assert block.splitlines()[1:] == [
        "- [(Solved) Login loop on SSO](<https://docs.acme.dev/faq>)",
        "- [Release notes (v2.1)](<https://docs.acme.dev/rel>)",
        "- [Paths like C:\u29f5temp\u29f5](<https://docs.acme.dev/win>)",
        "- <https://docs.acme.dev/x>",  # a title naming another place: no masked link
    ]


def test_an_answers_link_whose_text_is_a_url_or_another_place_is_a_bare_link() -> None:
    # Discord shows a masked link whose text holds a URL as raw Markdown, and a text
    # naming another place than the link leads would pass for it.
    from adapters.platforms.discord import format as fmt

    api = "https://docs.acme.dev/api"
    assert fmt.format_markdown(f"Full reference: [{api}]({api}).") == f"Full reference: <{api}>."
    wiki = "https://en.wikipedia.org/wiki/Foo_(bar)"
    assert fmt.format_markdown(f"See [{wiki}]({wiki}), [{wiki}](<{wiki}>).") == (
        f"See <{wiki}>, <{wiki}>."
    )
    odd = "[bank.com](https://evil.example/login) and [](https://x.example)"
    assert fmt.format_markdown(odd) == "<https://evil.example/login> and <https://x.example>"
    # The label's brackets, code in it, and a link inside it are the label's.
    assert fmt.format_markdown(f"[see [1] `{api}`]({api}) [a [b]({api}) c]({api}#c)") == (
        f"<{api}> <{api}#c>"
    )
    kept = (
        f"[the API]({api}) [docs.acme.dev]({api}) [Foo]({wiki}) array[i](x)"
        f" `[{api}]({api})`\n```\n[{api}]({api})\n```"
    )
    assert fmt.format_markdown(kept) == kept
    # An unclosed bracket or parenthesis hides no link from it.
    assert fmt.format_markdown(f"[ ( [{api}]({api}) )") == f"[ ( <{api}> )"


def test_a_label_whose_marks_hide_another_place_is_a_bare_link() -> None:
    # Discord shows `[**paypal**.com](…)` as paypal.com in bold: the check read the
    # marks as written, and no domain in them.
    from adapters.platforms.discord import format as fmt

    evil = "https://evil.example/"
    for label in ("**paypal**.com", "pay`pal`.com", "_paypal_.com", "||paypal||.com"):
        assert fmt.format_markdown(f"Log in at [{label}]({evil}).") == f"Log in at <{evil}>."
        assert fmt.format_sources([Source(evil, label)]) == f"**Sources**\n- <{evil}>"
    kept = "[the **new** docs](https://docs.acme.dev/)"
    assert fmt.format_markdown(kept) == kept


def test_what_discord_reads_otherwise_is_made_discord_markdown() -> None:
    from adapters.platforms.discord import format as fmt

    answer = (
        "#### Options compared\n\n| Option | Default |\n|---|:---:|\n| `timeout` | 30 |\n\n"
        "Restart. `__init__` stays.\n"
        "```\n| a | b |\n|---|---|\n#### in code\n```\n###### "
    )
    assert fmt.format_markdown(answer) == (
        # No tables on Discord: the grid is kept readable as preformatted text.
        "**Options compared**\n\n```\n| Option  | Default |\n|---------|---------|\n"
        "| timeout |   30    |\n```\n\nRestart. `__init__` stays.\n"
        "```\n| a | b |\n|---|---|\n#### in code\n```\n###### "
    )


def test_a_sources_title_naming_another_place_is_no_masked_link() -> None:
    # Only "://" was looked for: a title with no scheme, a zero-width space in it, or
    # nothing visible at all made a masked link to somewhere else.
    from adapters.platforms.discord import format as fmt

    block = fmt.format_sources(
        [
            Source("https://evil.example/1", "bank.com/login"),
            Source("https://evil.example/2", "https:/\u200b/bank.example/login"),
            Source("https://evil.example/3", "\u200b"),
            Source("https://docs.example/4", "The docs"),
        ]
    )
    assert block.splitlines()[1:] == [
        "- <https://evil.example/1>",
        "- <https://evil.example/2>",
        "- <https://evil.example/3>",
        "- [The docs](<https://docs.example/4>)",
    ]


def test_a_source_known_by_its_address_alone_reads_in_its_own_letters() -> None:
    # Discord shows a bare link percent-encoded: a page in Russian or Japanese with no
    # title, or its URL for one, read as runs of %XX.
    from adapters.platforms.discord import format as fmt

    moscow, tokyo = "https://ru.wikipedia.org/wiki/Москва", "https://ja.wikipedia.org/wiki/東京"
    block = fmt.format_sources(
        [
            Source(moscow, ""),
            Source(tokyo, tokyo),
            Source("https://例え.jp/東京_[1]", " "),
        ]
    )
    assert block.splitlines()[1:] == [
        "- [ru.wikipedia.org/wiki/Москва]"
        "(<https://ru.wikipedia.org/wiki/%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0>)",
        "- [ja.wikipedia.org/wiki/東京](<https://ja.wikipedia.org/wiki/%E6%9D%B1%E4%BA%AC>)",
        # An international host as DNS knows it (as everywhere), brackets as parentheses.
        "- [xn--r8jz45g.jp/東京_(1)](<https://xn--r8jz45g.jp/%E6%9D%B1%E4%BA%AC_[1]>)",
    ]
    # As chat APIs mostly give them, percent-encoded: the letters they encode; an
    # escape of ASCII, or of bytes that are not UTF-8, stays.
    encoded = "https://ru.wikipedia.org/wiki/%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0_%281%29%FF"
    assert fmt.format_sources([Source(encoded, "")]).splitlines()[1:] == [
        f"- [ru.wikipedia.org/wiki/Москва_%281%29%FF](<{encoded}>)",
    ]
    # Shown bare: an address Discord shows as it is, and one not safe to show as the
    # link's text (a right-to-left override, a user before the host, an unseen
    # character).
    for url in (
        "https://a.example/x",
        "https://例え.jp/",
        "https://a.example/%E2%80%AEx",
        "https://good.example\u202e@evil.com/Москва",
        "https://bank.example@evil.com/Москва",
        "https://a.example/\u200bМосква",
    ):
        assert fmt.format_sources([Source(url, "")]) == f"**Sources**\n- <{encoded_url(url)}>"


@pytest.mark.parametrize(
    "whole",
    [
        "\U0001f1ef\U0001f1f5",  # a flag: two regional indicators
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family joined by ZWJ
        "\U0001f44d\U0001f3fd",  # a thumbs up with its skin tone
    ],
)
def test_a_long_title_or_thread_name_is_cut_between_graphemes(whole: str) -> None:
    # Cut at a code point, a flag lost its second half (another flag, or none) before
    # the "…", a family its last members, a thumbs up its skin tone.
    from adapters.platforms.discord import format as fmt

    title = "x" * (SOURCE_TITLE_MAX - 2) + whole + " guide"
    [_, line] = fmt.format_sources([Source("https://a.example/p", title)]).splitlines()
    assert line == f"- [{'x' * (SOURCE_TITLE_MAX - 2)}…](<https://a.example/p>)"
    name = fmt.thread_name("y" * (fmt.THREAD_NAME_MAX - 2) + whole + " plans?")
    assert name == "y" * (fmt.THREAD_NAME_MAX - 2) + "…"
