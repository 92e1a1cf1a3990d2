"""Markdown -> Slack mrkdwn: inline and block markup, code, quotes and tables; and a
question's Slack text made plain for the chat API."""

from __future__ import annotations

import pytest

from adapters.platforms.markup import table_grid
from adapters.platforms.slack.events import plain_text
from adapters.platforms.slack.mrkdwn import (
    ZWSP,
    _convert_line,
    markdown_to_mrkdwn,
)

Z = ZWSP


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also__", "*bold* and *also*"),
        ("*italic* and _this_", "_italic_ and _this_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("[docs](https://example.com/a?b=1&c=2)", "<https://example.com/a?b=1&amp;c=2|docs>"),
        ("![diagram](https://example.com/d.png)", "<https://example.com/d.png|diagram>"),
        ("<https://example.com>", "<https://example.com>"),
        ("[**bold** label](https://x.example)", "<https://x.example|bold label>"),
        ("[local](/relative/path)", "local (/relative/path)"),
        ("[x](javascript:alert(1))", "x (javascript:alert(1))"),
        ("# Title", "*Title*"),
        ("### A **strong** heading", "*A strong heading*"),
        ("- one\n- two", "• one\n• two"),
        ("* one\n  * nested", "• one\n  ◦ nested"),
        ("- [x] done\n- [ ] todo", "• ☑ done\n• ☐ todo"),
        ("1. first\n2) second", "1. first\n2. second"),
        ("> quoted **text**", "> quoted *text*"),
        ("---", "──────────"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("`a <b> **c**`", "`a &lt;b&gt; **c**`"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        # An escaped mark is the character, which Slack would pair as a bare one does.
        (r"\*not italic\*", f"{Z}*{Z}not italic{Z}*{Z}"),
        (r"Price \_not italic\_ here", f"Price {Z}_{Z}not italic{Z}_{Z} here"),
        (r"snake\_case", "snake_case"),
        # Stars emphasise inside a word, which Slack sees with a zero-width space there.
        ("这是**重要**的设置", f"这是{Z}*重要*{Z}的设置"),
        ("使用*斜体*文字 and the **API**s", f"使用{Z}_斜体_{Z}文字 and the *API*{Z}s"),
        ("### The **API**s", "*The APIs*"),
        # A link's label keeps its lone and escaped marks.
        (
            "[config_example.yaml](https://x.example/c) [the ~/.bashrc guide](https://y.example)",
            "<https://x.example/c|config_example.yaml> <https://y.example|the ~/.bashrc guide>",
        ),
        (
            r"[**bold**, _it_, ~~gone~~ and \*star\*](https://x.example)",
            "<https://x.example|bold, it, gone and *star*>",
        ),
        # Only an upper-case id is one: names, scopes, decorators and addresses stay whole.
        (
            "`@unittest.skip` @wordpress/scripts admissions@university.edu @WebServlet",
            "`@unittest.skip` @wordpress/scripts admissions@university.edu @WebServlet",
        ),
        ("https://medium.com/@webdevsimplified/x", "https://medium.com/@webdevsimplified/x"),
        # Code with a backtick in it keeps it (Slack's inline code cannot: a block can).
        ("run `` echo `date` `` now", "run ``` echo `date` ``` now"),
        ("Use `` ` `` for one", "Use ``` ` ``` for one"),
        # A run of backticks pairs only with a run as long.
        ("Wrap the code in ``` fences.", "Wrap the code in ``` fences."),
        # Parentheses in a URL (Wikipedia, MSDN) belong to it.
        (
            "[Foo](https://en.wikipedia.org/wiki/Foo_(bar))",
            "<https://en.wikipedia.org/wiki/Foo_(bar)|Foo>",
        ),
        (
            "[t](https://a.example/x?q=(1)&r=2) and (aside)",
            "<https://a.example/x?q=(1)&amp;r=2|t> and (aside)",
        ),
        # Code inside a link's label or an emphasis does not hide them.
        (
            "See [`finish_reason()`](https://docs.example/api) here",
            "See <https://docs.example/api|finish_reason()> here",
        ),
        ("**Run `npm install` first**", "*Run `npm install` first*"),
        (
            "`[not](https://a.link)` but [this](https://b.example)",
            "`[not](https://a.link)` but <https://b.example|this>",
        ),
        # ...but a stray star before code does not pair with one after it.
        ("pass *args to `f(*a)`, then *b*", "pass *args to `f(*a)`, then _b_"),
        ("*Run `npm install` first*, then *go*", "_Run `npm install` first_, then _go_"),
        # A bare URL is kept whole: Slack links it as it is.
        (
            "Docs: https://docs.python.org/3/library/__main__.html",
            "Docs: https://docs.python.org/3/library/__main__.html",
        ),
        (
            "See https://docs.example/model.html#object.__init__ for it.",
            "See https://docs.example/model.html#object.__init__ for it.",
        ),
        ("https://x.example/?q=*foo*&r=1", "https://x.example/?q=*foo*&amp;r=1"),
        (r"https://x.example/some\_path\_here", "https://x.example/some_path_here"),
        (
            "See the __guide at https://x.example/guide__ first.",
            "See the *guide at https://x.example/guide* first.",
        ),
        (
            "**https://x.example/a_b_c** (see https://y.example/z).",
            "*https://x.example/a_b_c* (see https://y.example/z).",
        ),
        # A heading's closing #s come after a space; C# keeps its #.
        ("## Getting started with C#", "*Getting started with C#*"),
        ("# Title ##", "*Title*"),
        ("# #", ""),
        ("## ###", ""),
        ("# #hashtag", "*#hashtag*"),
    ],
)
def test_inline_and_block_markup(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        # A mark that opens pairs with the nearest that closes, unless another that
        # opens comes first (as in CommonMark): stray stars stay as written.
        (
            "pass *args and **kwargs, then *this* and **that**",
            "pass *args and **kwargs, then _this_ and *that*",
        ),
        ("***a ***b*** c", "***a *_b_* c"),
        ("__a __b__ c", "__a *b* c"),
        ("~~a ~~b~~ c", "~~a ~b~ c"),
        ("[_a _b_](https://x.example)", "<https://x.example|_a b>"),
        # The kinds still nest.
        ("**a *b* c** and *d **e** f*", "*a _b_ c* and _d *e* f_"),
        ("**a*b*c**", f"*a{Z}_b_{Z}c*"),
    ],
)
def test_an_emphasis_holds_no_other_opening_mark_of_its_kind(markdown: str, mrkdwn: str) -> None:
    # Also what keeps a long line of marks that never close (`*a *a *a …`) from
    # taking time that grows with its square: each one's search for its closing
    # mark ends at the next; `python3 bench/parsers.py` prints the figures.
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_code_block_is_kept_escaped_without_language() -> None:
    markdown = "Run:\n```python\nif a < b and c:\n    print('**x**')\n```\nDone."
    assert markdown_to_mrkdwn(markdown) == (
        "Run:\n```\nif a &lt; b and c:\n    print('**x**')\n```\nDone."
    )


def test_a_longer_fence_is_closed_only_by_one_as_long() -> None:
    markdown = "````markdown\n```python\nprint(1)\n```\n````\n\nAfter **this** text."
    assert markdown_to_mrkdwn(markdown) == (
        # Slack has no nested fences: the inner ones are kept from closing the block.
        "```\n`\u200b`\u200b`python\nprint(1)\n`\u200b`\u200b`\n```\n\nAfter *this* text."
    )


def test_code_block_in_a_quote_stays_code() -> None:
    markdown = "> Output:\n> ```\n> ERROR: **boom** <x>\n> ```\nAfter"
    assert markdown_to_mrkdwn(markdown) == (
        "> Output:\n> ```\n> ERROR: **boom** &lt;x&gt;\n> ```\nAfter"
    )
    # The quote ending ends its code block.
    assert markdown_to_mrkdwn("> ```\n> a_b\nplain **b**") == "> ```\n> a_b\n> ```\nplain *b*"


def test_quotes_nested_a_thousand_deep_are_converted() -> None:
    # One call a level: a line of 1,000 `>` raised RecursionError, and the answer
    # holding it stayed at its placeholder, its failure notice failing the same way.
    assert markdown_to_mrkdwn(">" * 1000 + " deep") == "> " * 1000 + "deep"
    assert markdown_to_mrkdwn("> > nested\n>\n> > ") == "> > nested\n>\n> >"


def test_unclosed_code_block_is_closed() -> None:
    assert markdown_to_mrkdwn("```\nhalf") == "```\nhalf\n```"


def test_table_becomes_preformatted() -> None:
    table = "| a | b |\n|---|---|\n| 1 | 2 |"
    assert markdown_to_mrkdwn(table) == "```\n| a | b |\n|---|---|\n| 1 | 2 |\n```"


def test_a_tables_columns_line_up() -> None:
    """Padded to the widest cell (a wide character takes two columns), aligned as the
    rule says; a cell wholly bold or wholly code shows without its marks, marks within
    a cell stay (`__init__`, `x**2`); `|` escaped or in code stays in its cell (an
    escaped one as written: bare, it would read as a border); a short row gets empty
    cells."""
    table = (
        "| Plan | Price | Notes |\n"
        "|:-----|------:|:-----:|\n"
        "| **Free** | $0 | `a|b` |\n"
        "| Team | $12.50 | 日本語 |\n"
        "| `__init__` | x**2 | a **b** c |\n"
        "| Pro \\| Max | ask |"
    )
    assert markdown_to_mrkdwn(table) == (
        "```\n"
        "| Plan       |  Price |   Notes   |\n"
        "|------------|--------|-----------|\n"
        "| Free       |     $0 |    a|b    |\n"
        "| Team       | $12.50 |  日本語   |\n"
        "| __init__   |   x**2 | a **b** c |\n"
        "| Pro \\| Max |    ask |           |\n"
        "```"
    )


def test_emoji_take_the_columns_they_are_shown_in() -> None:
    # A family (joined emoji), a skin tone and a heart made emoji by its selector
    # each show as one emoji, two columns: counted by code point, their rows were
    # padded short.
    rows = [
        "| e | n |",
        "|---|---|",
        "| 👨\u200d👩\u200d👧 | 1 |",
        "| 👍🏽 | 2 |",
        "| ❤️ | 3 |",
        "| ab | 4 |",
    ]
    assert table_grid(rows)[2:] == [
        "| 👨\u200d👩\u200d👧 | 1 |",
        "| 👍🏽 | 2 |",
        "| ❤️ | 3 |",
        "| ab | 4 |",
    ]


def test_a_long_cell_runs_over_its_column_instead_of_widening_every_row() -> None:
    long = "word " * 30
    table = f"| k | v |\n|---|---|\n| a | {long.strip()} |\n| b | short |\n| c | mid |"
    assert markdown_to_mrkdwn(table).split("\n")[3:6] == [
        f"| a | {long.strip()} |",
        "| b | short |",
        "| c | mid   |",
    ]


def test_inline_code_written_with_three_backticks_stays_inline() -> None:
    text = markdown_to_mrkdwn("Run:\n```pip install x```\nThen **enjoy** & relax.")
    assert text == "Run:\n`pip install x`\nThen *enjoy* &amp; relax."


def test_only_finished_lines_are_cached() -> None:
    # While a reply streams its last line grows: a new one at every edit. Cached,
    # those lines would push out the finished ones, which every edit asks for again.
    text = "A **finished** line, cached\nand the growing one, with **bold**"
    growing = [text[:n] for n in range(text.index("\n") + 2, len(text) + 1)]
    _convert_line.cache_clear()
    for partial in growing:
        assert markdown_to_mrkdwn(partial).startswith("A *finished* line, cached\n")
    assert markdown_to_mrkdwn(text).endswith("and the growing one, with *bold*")
    info = _convert_line.cache_info()
    assert (info.currsize, info.hits) == (1, len(growing))


def test_question_text_is_made_plain() -> None:
    assert plain_text("see <https://a.example|the page> &amp; <#C1|general> cc <@U1>") == (
        "see [the page](https://a.example) & #general cc @U1"
    )
    # A date a workflow wrote is its text, not someone to mention.
    assert plain_text("due <!date^1392734382^{date_short}|Feb 18, 2014> <!here>") == (
        "due Feb 18, 2014 @here"
    )


def test_markup_never_reaches_across_a_bracket_never_closed() -> None:
    # Text posted through the API may hold `<` unescaped. Read to the next `>` from
    # each one, a run of them took seconds a message (the daemon held meanwhile), and
    # one such `<` swallowed the mention after it.
    assert plain_text("<!a <@U1> and <http://x <https://a.example|A>") == (
        "<!a @U1 and <http://x [A](https://a.example)"
    )
    assert plain_text("<!" * 20_000) == "<!" * 20_000


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        # A link's text and where it leads: the question may be about either.
        (
            "why does <https://d.example/setup#proxy|this step> fail?",
            "why does [this step](https://d.example/setup#proxy) fail?",
        ),
        (
            "<https://x.example/a?b=1&amp;c=2|the &lt;docs&gt;>",
            "[the <docs>](https://x.example/a?b=1&c=2)",
        ),
        ("<mailto:ops@d.example|the ops team>", "[the ops team](mailto:ops@d.example)"),
        # Labelled with its own address (Slack's auto-links): the address, once.
        ("<https://y.example>", "https://y.example"),
        ("<https://example.com|example.com>", "https://example.com"),
        (
            "<http://www.example.com/a?b=1&amp;c=2|www.example.com/a?b=1&amp;c=2>",
            "http://www.example.com/a?b=1&c=2",
        ),
        ("<https://y.example/p|https://y.example/p>", "https://y.example/p"),
        ("<mailto:a@b.example|a@b.example>", "a@b.example"),
        # Another site's name is not its own address: both are kept.
        ("<https://evil.example|bank.example>", "[bank.example](https://evil.example)"),
    ],
)
def test_a_links_address_reaches_the_chat_api(text: str, plain: str) -> None:
    assert plain_text(text) == plain
