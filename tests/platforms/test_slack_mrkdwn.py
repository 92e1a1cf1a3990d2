"""Markdown -> Slack mrkdwn, and mention neutralization."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.platforms.markup import SOURCE_TITLE_MAX, table_grid
from adapters.platforms.slack.mrkdwn import (
    WORD_JOINER,
    ZWSP,
    _convert_line,
    markdown_sources,
    markdown_to_mrkdwn,
    mrkdwn_sources,
    neutralize_markdown,
)
from adapters.platforms.slack.platform import plain_text
from bridge.interfaces import Source
from bridge.sources import source_blocks
from tests.fakes.slack import pings_in

J = WORD_JOINER
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
        ("[config_example.yaml](https://x.example/c) [the ~/.bashrc guide](https://y.example)",
         "<https://x.example/c|config_example.yaml> <https://y.example|the ~/.bashrc guide>"),
        (r"[**bold**, _it_, ~~gone~~ and \*star\*](https://x.example)",
         "<https://x.example|bold, it, gone and *star*>"),
        # Only an upper-case id is one: names, scopes, decorators and addresses stay whole.
        ("`@unittest.skip` @wordpress/scripts admissions@university.edu @WebServlet",
         "`@unittest.skip` @wordpress/scripts admissions@university.edu @WebServlet"),
        ("https://medium.com/@webdevsimplified/x", "https://medium.com/@webdevsimplified/x"),
        # Code with a backtick in it keeps it (Slack's inline code cannot: a block can).
        ("run `` echo `date` `` now", "run ``` echo `date` ``` now"),
        ("Use `` ` `` for one", "Use ``` ` ``` for one"),
        # A run of backticks pairs only with a run as long.
        ("Wrap the code in ``` fences.", "Wrap the code in ``` fences."),
        # Parentheses in a URL (Wikipedia, MSDN) belong to it.
        ("[Foo](https://en.wikipedia.org/wiki/Foo_(bar))",
         "<https://en.wikipedia.org/wiki/Foo_(bar)|Foo>"),
        ("[t](https://a.example/x?q=(1)&r=2) and (aside)",
         "<https://a.example/x?q=(1)&amp;r=2|t> and (aside)"),
        # Code inside a link's label or an emphasis does not hide them.
        ("See [`finish_reason()`](https://docs.example/api) here",
         "See <https://docs.example/api|finish_reason()> here"),
        ("**Run `npm install` first**", "*Run `npm install` first*"),
        ("`[not](https://a.link)` but [this](https://b.example)",
         "`[not](https://a.link)` but <https://b.example|this>"),
        # ...but a stray star before code does not pair with one after it.
        ("pass *args to `f(*a)`, then *b*", "pass *args to `f(*a)`, then _b_"),
        ("*Run `npm install` first*, then *go*", "_Run `npm install` first_, then _go_"),
        # A bare URL is kept whole: Slack links it as it is.
        ("Docs: https://docs.python.org/3/library/__main__.html",
         "Docs: https://docs.python.org/3/library/__main__.html"),
        ("See https://docs.example/model.html#object.__init__ for it.",
         "See https://docs.example/model.html#object.__init__ for it."),
        ("https://x.example/?q=*foo*&r=1", "https://x.example/?q=*foo*&amp;r=1"),
        (r"https://x.example/some\_path\_here", "https://x.example/some_path_here"),
        ("See the __guide at https://x.example/guide__ first.",
         "See the *guide at https://x.example/guide* first."),
        ("**https://x.example/a_b_c** (see https://y.example/z).",
         "*https://x.example/a_b_c* (see https://y.example/z)."),
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
        ("pass *args and **kwargs, then *this* and **that**",
         "pass *args and **kwargs, then _this_ and *that*"),
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
    rows = ["| e | n |", "|---|---|", "| 👨\u200d👩\u200d👧 | 1 |", "| 👍🏽 | 2 |",
            "| ❤️ | 3 |", "| ab | 4 |"]
    assert table_grid(rows)[2:] == [
        "| 👨\u200d👩\u200d👧 | 1 |", "| 👍🏽 | 2 |", "| ❤️ | 3 |", "| ab | 4 |"
    ]


def test_a_long_cell_runs_over_its_column_instead_of_widening_every_row() -> None:
    long = "word " * 30
    table = f"| k | v |\n|---|---|\n| a | {long.strip()} |\n| b | short |\n| c | mid |"
    assert markdown_to_mrkdwn(table).split("\n")[3:6] == [
        f"| a | {long.strip()} |", "| b | short |", "| c | mid   |"
    ]


def test_slack_mentions_from_the_api_are_neutralized() -> None:
    text = markdown_to_mrkdwn(
        "Hey <!channel> and <!here|here>, <@U0123ABCD> <!subteam^S1|@devs> @everyone"
    )
    assert pings_in(text) == []
    assert "<!" not in text and "<@" not in text
    assert f"@{J}channel" in text and f"@{J}here" in text and f"@{J}everyone" in text
    assert f"@{J}U0123ABCD" in text and "@devs" in text


def test_mentions_in_code_are_escaped_not_live() -> None:
    text = markdown_to_mrkdwn("`<!here>` and\n```\n<!channel> @here\n```")
    assert pings_in(text) == []


def test_mentions_in_link_labels_are_neutralized() -> None:
    text = markdown_to_mrkdwn("[@here](https://x.example) <https://y.example|@channel>")
    assert pings_in(text) == []
    assert f"|@{J}here>" in text and f"|@{J}channel>" in text


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[x](@here)", f"x (@{J}here)"),
        ("@[here](x)", f"@{J}here (x)"),
        ("@[channel](#install)", f"@{J}channel (#install)"),
        ("[](@)everyone", f"@{J}everyone"),
        ("# @**here**", f"*@{J}here*"),
        # A link's own address is kept as written.
        ("@[Everyone](https://social.example/@Everyone)",
         "@<https://social.example/@Everyone|Everyone>"),
    ],
)
def test_a_plain_ping_that_formatting_puts_together_is_text(markdown: str, mrkdwn: str) -> None:
    text = markdown_to_mrkdwn(markdown)
    assert text == mrkdwn
    assert pings_in(text) == []


def test_native_markdown_keeps_markdown_and_defuses_mentions() -> None:
    text = neutralize_markdown("**Hi** <!everyone> @here [a](https://a.example)")
    assert text == f"**Hi** @{J}everyone @{J}here [a](https://a.example)"
    assert pings_in(text) == []


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        ("go to [https://acme.dev/account](https://acme-login.example/steal) now",
         "go to <https://acme-login.example/steal> now"),
        ("[acme.dev](https://evil.example/)", "<https://evil.example/>"),
        ("[](https://evil.example/)", "<https://evil.example/>"),  # shows nothing
        # However the label is written, it is read as it is shown.
        ("[[acme.dev]](https://evil.example/)", "<https://evil.example/>"),
        ("[acme.**dev**](https://evil.example/)", "<https://evil.example/>"),
        ("[acme\\.dev](https://evil.example/)", "<https://evil.example/>"),
        ("[acme&#46;dev](https://evil.example/)", "<https://evil.example/>"),
        ("[acme.dev\nlogin](https://evil.example/)", "<https://evil.example/>"),
        ("[acme.dev `]` login](https://evil.example/)", "<https://evil.example/>"),
        ("[acme.dev <https://x.example/]>](https://evil.example/)", "<https://evil.example/>"),
        ("[![acme.dev](https://cdn.example/i.png)](https://evil.example/)",
         "<https://evil.example/>"),
        # ... and the address as a reader follows it.
        ("[acme.dev](https://acme.dev&#64;evil.example/)", "<https://acme.dev@evil.example/>"),
        ("[acme.dev](<https://evil.example/a b>)", "<https://evil.example/a%20b>"),
        ("[acme.dev](https://evil.example/((a)) \"Acme\")", "<https://evil.example/%28%28a%29%29>"),
        ("> [acme.dev](\n> https://evil.example/)", "> <https://evil.example/>"),
        # A code span that is none (its backtick escaped, or in a link's address)
        # hides no link.
        ("\\`[acme.dev](https://evil.example/)`", "\\`<https://evil.example/>`"),
        ("[a](https://a.example/`) [acme.dev](https://evil.example/) `",
         "[a](https://a.example/`) <https://evil.example/> `"),
        # An address without a scheme leads nowhere: shown as text.
        ("[acme.dev](/steal_it)", "/steal\\_it"),
        # A quote's code block ends with it.
        ("> ```\n> x\n\n[acme.dev](https://evil.example/)", "> ```\n> x\n\n<https://evil.example/>"),
    ],
)
def test_native_link_whose_label_names_another_place_is_its_bare_address(
    markdown: str, shown: str
) -> None:
    assert neutralize_markdown(markdown) == shown


@pytest.mark.parametrize(
    "markdown",
    [
        "[docs](https://acme.dev/x), [acme.dev](https://docs.acme.dev/a_(b)), [x](/y)",
        "[Acme](https://acme.dev) [acme.dev](https://acme.dev/x",
        # Code is kept as written, to be copied.
        "`[acme.dev](https://evil.example/)` and ``[x](https://evil.example/) ` ``",
        "Example:\n```md\n[acme.dev](https://evil.example/)\n```\nend",
        "~~~~\n[acme.dev](https://evil.example/)\n~~~\n[acme.dev](https://evil.example/)",
        "> File:\n> ~~~md\n> [acme.dev](https://evil.example/)\n> ~~~",
        # A link holds no link; a bracket escaped opens none.
        "[a [b](https://b.example/) acme.dev](https://evil.example/)",
        "\\[acme.dev](https://evil.example/)",
    ],
)
def test_native_links_shown_as_written(markdown: str) -> None:
    assert neutralize_markdown(markdown) == markdown


@pytest.mark.parametrize(
    "markdown",
    [
        "[" * 50_000 + "](",
        "[a](" * 25_000,
        "[[a]" * 25_000 + "](x)",
        "[" * 50_000 + "](x](y)" * 7_000,
        "[" * 50_000 + "](a" * 16_000 + " x",
        "[" * 50_000 + '](x "' * 10_000,
        "[" * 50_000 + "](<" * 16_000,
        "[" * 50_000 + '<a b="' * 16_000,
        "x " + "`" * 500 + "[a](x)",
        "> " * 25_000 + "x",
        "\\" * 50_000,
    ],
)
def test_native_links_are_read_in_one_pass_whatever_the_text(markdown: str) -> None:
    # Read again from each bracket, each of these would take minutes (the test's
    # timeout ends it); read once, a fraction of a second.
    tail = " [acme.dev](https://evil.example/)"
    assert neutralize_markdown(markdown + tail) == markdown + " <https://evil.example/>"


def test_native_sources_cannot_ping_through_their_urls() -> None:
    line = markdown_sources([
        Source("https://ex.com/a\n<!channel> <@U01ABCDEF> <!subteam^S0123|@eng>", "Doc"),
        Source("https://ex.com/<!here>", ""),
    ])
    assert pings_in(line) == [] and "\n" not in line
    assert "(https://ex.com/a%0A%3C!channel%3E" in line


def test_a_source_title_on_several_lines_is_one_line_in_its_link() -> None:
    title = "Deploying\n  to staging\r\n"
    assert mrkdwn_sources([Source("https://d.example/s", title)]) == (
        "_Sources:_ <https://d.example/s|Deploying to staging>"
    )
    assert markdown_sources([Source("https://d.example/s", title)]) == (
        "_Sources:_ [Deploying to staging](https://d.example/s)"
    )


def test_a_source_with_a_title_longer_than_a_message_is_listed_with_it_cut() -> None:
    # An API may give a page's first paragraph as its title: whole, its link was
    # longer than a message, and the source was left out of the list.
    title = "Release notes 4.2: " + "the scheduler now retries failed jobs; " * 120
    sources = [Source("https://d.example/a", "Install"), Source("https://d.example/r", title),
               Source("https://d.example/c", "FAQ")]
    shown = title[: SOURCE_TITLE_MAX - 1].rstrip() + "…"
    for line in (mrkdwn_sources(sources), markdown_sources(sources)):
        assert line.count("https://d.example/") == 3 and shown in line
        assert len(line) < 1000
    blocks = source_blocks(sources, mrkdwn_sources, 3900)
    assert len(blocks) == 1 and "https://d.example/r" in blocks[0]


def test_native_sources_with_parentheses_in_the_url_stay_links() -> None:
    line = markdown_sources([Source("https://en.wikipedia.org/wiki/Foo_(bar)", "Foo (bar)")])
    # An unbalanced "(" would end a CommonMark link's destination early.
    assert line == "_Sources:_ [Foo (bar)](https://en.wikipedia.org/wiki/Foo_%28bar%29)"


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


def test_sources_line() -> None:
    sources = [Source("https://a.example/1", "One & <Two>"), Source("https://b.example/x|y", "")]
    assert mrkdwn_sources(sources) == (
        "_Sources:_ <https://a.example/1|One &amp; &lt;Two&gt;> · "
        "<https://b.example/x%7Cy|b.example>"
    )
    assert markdown_sources(sources[:1]) == "_Sources:_ [One & \\<Two\\>](https://a.example/1)"
    assert mrkdwn_sources([]) == ""


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
        ("why does <https://d.example/setup#proxy|this step> fail?",
         "why does [this step](https://d.example/setup#proxy) fail?"),
        ("<https://x.example/a?b=1&amp;c=2|the &lt;docs&gt;>",
         "[the <docs>](https://x.example/a?b=1&c=2)"),
        ("<mailto:ops@d.example|the ops team>", "[the ops team](mailto:ops@d.example)"),
        # Labelled with its own address (Slack's auto-links): the address, once.
        ("<https://y.example>", "https://y.example"),
        ("<https://example.com|example.com>", "https://example.com"),
        ("<http://www.example.com/a?b=1&amp;c=2|www.example.com/a?b=1&amp;c=2>",
         "http://www.example.com/a?b=1&c=2"),
        ("<https://y.example/p|https://y.example/p>", "https://y.example/p"),
        ("<mailto:a@b.example|a@b.example>", "a@b.example"),
        # Another site's name is not its own address: both are kept.
        ("<https://evil.example|bank.example>", "[bank.example](https://evil.example)"),
    ],
)
def test_a_links_address_reaches_the_chat_api(text: str, plain: str) -> None:
    assert plain_text(text) == plain


ALPHABET = list("<>!@&*_~`[]()#|-\n hereUCchanl0123:/.")


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(ALPHABET), max_size=80))
def test_no_output_ever_pings(markdown: str) -> None:
    text = markdown_to_mrkdwn(markdown)
    assert pings_in(text) == []
    # Every < left in the output opens a link the converter made itself.
    assert not re.search(r"<(?!https?://|mailto:)", text)
    assert pings_in(neutralize_markdown(markdown)) == []


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        # A link whose text names another place than where it leads: its address shown.
        ("[https://bank.example/login](https://evil.example/phish)",
         "<https://evil.example/phish>"),
        ("[support@bank.example](mailto:attacker@evil.example)",
         "<mailto:attacker@evil.example>"),
        ("[bank.com/login](https://evil.example/x)", "<https://evil.example/x>"),
        ("[https:/\u200b/bank.example](https://evil.example/x)", "<https://evil.example/x>"),
        ("[\u200b](https://evil.example/x)", "<https://evil.example/x>"),
        # A host that merely ends in the letters of the one named is another.
        ("[bank.com](https://evilbank.com/login)", "<https://evilbank.com/login>"),
        # Full-width letters read as the same domain.
        ("[ｂａｎｋ．ｃｏｍ](https://evil.example/login)", "<https://evil.example/login>"),
        # Its own host, or a parent of it, or no address at all: kept.
        ("[docs.python.org](https://docs.python.org/3/)",
         "<https://docs.python.org/3/|docs.python.org>"),
        ("[python.org](https://docs.python.org/3/)", "<https://docs.python.org/3/|python.org>"),
        ("[the Python 3.11 docs](https://docs.python.org/3/)",
         "<https://docs.python.org/3/|the Python 3.11 docs>"),
        # Names of files, packages and methods are no addresses.
        ("[Node.js](https://nodejs.org/en/download)", "<https://nodejs.org/en/download|Node.js>"),
        ("[config.yaml](https://github.com/o/r)", "<https://github.com/o/r|config.yaml>"),
        ("[os.path.join](https://docs.python.org/3/)",
         "<https://docs.python.org/3/|os.path.join>"),
        # A dot a browser reads as one, in another script.
        ("[https://paypal\u3002com/signin](https://evil.example/login)",
         "<https://evil.example/login>"),
        ("[paypal\u3002com](https://evil.example/login)", "<https://evil.example/login>"),
        ("[PayPal.com](https://evil.example/login)", "<https://evil.example/login>"),
        # Laid out right to left (U+202E), `moc.lapyap//:sptth` reads as
        # https://paypal.com; an isolate or a mark no reader sees hides the dot's place.
        ("[\u202emoc.lapyap//:sptth](https://evil.example/x)", "<https://evil.example/x>"),
        ("[paypal\u2066.com](https://evil.example/x)", "<https://evil.example/x>"),
        ("[paypal\u034f.com](https://evil.example/x)", "<https://evil.example/x>"),
        ("[paypal\U000e0041.com](https://evil.example/x)", "<https://evil.example/x>"),
        # A top-level domain of look-alike letters (a Cyrillic о; small capitals).
        ("[paypal.c\u043em](https://evil.example/x)", "<https://evil.example/x>"),
        ("[paypal.\u1d04\u1d0f\u1d0d](https://evil.example/x)", "<https://evil.example/x>"),
        # ... but a sentence's full stop in Japanese is no dot of an address.
        ("[東京。大阪](https://example.jp/)", "<https://example.jp/|東京。大阪>"),
        ("[Руководство, т.е. справка](https://example.ru/)",
         "<https://example.ru/|Руководство, т.е. справка>"),
        # ... nor a word of another alphabet after a dot (a name, a sentence's end).
        ("[Яндекс.Маркет](https://market.yandex.ru/)",
         "<https://market.yandex.ru/|Яндекс.Маркет>"),
        ("[Müller.Ärzte](https://example.de/)", "<https://example.de/|Müller.Ärzte>"),
        ("[раураl.сом](https://evil.example/x)", "<https://evil.example/x>"),  # all look-alikes
        # Look-alikes of other alphabets among ASCII letters, and accents, are too.
        ("[paypal.c\u0585m](https://evil.example/x)", "<https://evil.example/x>"),  # Armenian
        ("[paypal.\u03f2om](https://evil.example/x)", "<https://evil.example/x>"),  # Greek
        ("[paypal.c\u00f3m](https://evil.example/x)", "<https://evil.example/x>"),
    ],
)
def test_the_bot_makes_no_link_whose_text_names_another_place(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_sources_name_no_other_place_than_theirs() -> None:
    lying = Source("https://evil.example/phish", "https://bank.example/login")
    homograph = Source("https://b\u0430nk.example/", "")  # a Cyrillic a
    userinfo = Source("https://bank.example\u2044login@evil.example/", "")
    assert mrkdwn_sources([lying, homograph, userinfo]) == (
        "_Sources:_ <https://evil.example/phish> · "
        "<https://xn--bnk-6cd.example/|xn--bnk-6cd.example> · "
        "<https://bank.example%E2%81%84login@evil.example/|evil.example>"
    )
    assert markdown_sources([lying]) == "_Sources:_ <https://evil.example/phish>"


def test_sources_whose_address_no_host_can_be_read_from_are_listed() -> None:
    # The URL library raised IndexError for this one, out of the formatter.
    odd = 'https://@channel]"\nhere[@'
    assert mrkdwn_sources([Source(odd, "")]).startswith("_Sources:_ <https://@channel")
    assert markdown_sources([Source(odd, "")]).startswith("_Sources:_ <")


def test_native_sources_titles_show_defused_mentions_without_backslashes() -> None:
    # `<!here>` in a title was listed as `@here\`: its `>` escaped before the mention
    # was defused, the backslash taken into it.
    line = markdown_sources([Source("https://docs.example/a", "Why <!here> pings everyone")])
    assert line == "_Sources:_ [Why @\u2060here pings everyone](https://docs.example/a)"


def test_native_sources_titles_cannot_open_code_spans_or_end_their_label() -> None:
    # Two titles with a backtick each made one code span across both links.
    line = markdown_sources([
        Source("https://docs.example/a", "Press ` to open the console"),
        Source("https://docs.example/b", "C:\\"),
    ])
    assert line == (
        "_Sources:_ [Press \\` to open the console](https://docs.example/a) · "
        "[C:\\\\](https://docs.example/b)"
    )


def test_native_mention_syntax_holding_a_bracket_pings_nobody() -> None:
    for text in ("Heads up <!here|<> now.", "<!channel|a<b>", "<@U0123456|<x>"):
        out = neutralize_markdown(text)
        assert re.search(r"<(?:@[UWB]|!(?:here|channel|everyone))", out) is None, out
    # Code that only looks like it is kept as written, to be copied.
    for code in ("<!DOCTYPE html>", "<!-- note -->", r"(?<!\w)x", "List<@NonNull T>",
                 "<# block comment #>"):
        assert neutralize_markdown(f"```\n{code}\n```") == f"```\n{code}\n```"


def test_a_link_opens_at_its_innermost_bracket() -> None:
    # As CommonMark reads it; and a failed try at a link stops at the next "[",
    # so a line of brackets that never make a link is read once, not once a bracket
    # (50,000 of them took 19 s, on the event loop).
    assert markdown_to_mrkdwn("[a [b](https://b.example) c") == "[a <https://b.example|b> c"
    brackets = "[" * 50_000 + "]("
    assert markdown_to_mrkdwn(brackets) == brackets


def test_a_link_to_a_page_in_another_script_reads_in_its_letters() -> None:
    # Shown as its URL, it was runs of %XX: `https://%E4%BE%8B%E3%81%88.jp/%E6%9D%B1...`.
    assert markdown_to_mrkdwn("詳しくは <https://例え.jp/東京> を参照。") == (
        "詳しくは <https://xn--r8jz45g.jp/%E6%9D%B1%E4%BA%AC|https://xn--r8jz45g.jp/東京> を参照。"
    )
    # A host of letters that pass for Latin ones shows as browsers show it.
    assert markdown_to_mrkdwn("<https://аpple.com/login>") == (
        "<https://xn--pple-43d.com/login|https://xn--pple-43d.com/login>"
    )
    assert markdown_to_mrkdwn("<https://example.com/a-page>") == "<https://example.com/a-page>"
    # Percent-encoded already, as a chat API mostly gives it: read the same.
    assert markdown_to_mrkdwn("<https://ja.example/%E6%9D%B1%E4%BA%AC%20x>") == (
        "<https://ja.example/%E6%9D%B1%E4%BA%AC%20x|https://ja.example/東京%20x>"
    )
    # Not its host: read by Python's older rules, `fa%C3%9F.de` (faß.de, where a
    # browser goes) would show as fass.de, another domain.
    for url in ("https://fa%C3%9F.de/login", "https://stra%C3%9Fe.de/%E6%9D%B1"):
        assert markdown_to_mrkdwn(f"<{url}>") == f"<{url}>"
        assert mrkdwn_sources([Source(url, "")]).count("fass.de") == 0
        assert "strasse" not in mrkdwn_sources([Source(url, "")])


def test_a_link_whose_address_could_read_as_another_keeps_it_encoded() -> None:
    # A right-to-left override (U+202E) lays `good.example<RLO>@evil.com/nigol/` out
    # as `good.example/login/moc.live@`: shown as its own label, it would pass for
    # the bank's address.
    lying = "[https://good.example/login](https://good.example\u202e@evil.com/nigol/)"
    assert markdown_to_mrkdwn(lying) == "<https://good.example%E2%80%AE@evil.com/nigol/>"
    assert markdown_to_mrkdwn("<https://good.example@例え.jp/x>") == (
        "<https://good.example@xn--r8jz45g.jp/x>"
    )
    # A full-width solidus no IDNA takes: `good.example／login.evil.com` would read
    # as the bank's login page.
    assert markdown_to_mrkdwn("<https://good.example\uff0flogin.evil.com/\u00e9>") == (
        "<https://good.example%EF%BC%8Flogin.evil.com/%C3%A9>"
    )
