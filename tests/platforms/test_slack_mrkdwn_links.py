"""Mentions, links and sources in Slack's text (mrkdwn and native Markdown): nobody is
pinged, and no link's text names another place than the one it leads to."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.platforms.markup import SOURCE_TITLE_MAX
from adapters.platforms.slack.mrkdwn import (
    WORD_JOINER,
    markdown_sources,
    markdown_to_mrkdwn,
    mrkdwn_sources,
    neutralize_markdown,
)
from bridge.interfaces import Source
from bridge.sources import source_blocks
from tests.fakes.slack import pings_in

J = WORD_JOINER


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
        (
            "@[Everyone](https://social.example/@Everyone)",
            "@<https://social.example/@Everyone|Everyone>",
        ),
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
        (
            "go to [https://acme.dev/account](https://acme-login.example/steal) now",
            "go to <https://acme-login.example/steal> now",
        ),
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
        (
            "[![acme.dev](https://cdn.example/i.png)](https://evil.example/)",
            "<https://evil.example/>",
        ),
        # ... and the address as a reader follows it.
        ("[acme.dev](https://acme.dev&#64;evil.example/)", "<https://acme.dev@evil.example/>"),
        ("[acme.dev](<https://evil.example/a b>)", "<https://evil.example/a%20b>"),
        ('[acme.dev](https://evil.example/((a)) "Acme")', "<https://evil.example/%28%28a%29%29>"),
        ("> [acme.dev](\n> https://evil.example/)", "> <https://evil.example/>"),
        # A code span that is none (its backtick escaped, or in a link's address)
        # hides no link.
        ("\\`[acme.dev](https://evil.example/)`", "\\`<https://evil.example/>`"),
        (
            "[a](https://a.example/`) [acme.dev](https://evil.example/) `",
            "[a](https://a.example/`) <https://evil.example/> `",
        ),
        # An address without a scheme leads nowhere: shown as text.
        ("[acme.dev](/steal_it)", "/steal\\_it"),
        # A quote's code block ends with it.
        (
            "> ```\n> x\n\n[acme.dev](https://evil.example/)",
            "> ```\n> x\n\n<https://evil.example/>",
        ),
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
    line = markdown_sources(
        [
            Source("https://ex.com/a\n<!channel> <@U01ABCDEF> <!subteam^S0123|@eng>", "Doc"),
            Source("https://ex.com/<!here>", ""),
        ]
    )
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
    sources = [
        Source("https://d.example/a", "Install"),
        Source("https://d.example/r", title),
        Source("https://d.example/c", "FAQ"),
    ]
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


def test_sources_line() -> None:
    sources = [Source("https://a.example/1", "One & <Two>"), Source("https://b.example/x|y", "")]
    assert mrkdwn_sources(sources) == (
        "_Sources:_ <https://a.example/1|One &amp; &lt;Two&gt;> · "
        "<https://b.example/x%7Cy|b.example>"
    )
    assert markdown_sources(sources[:1]) == "_Sources:_ [One & \\<Two\\>](https://a.example/1)"
    assert mrkdwn_sources([]) == ""


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
        (
            "[https://bank.example/login](https://evil.example/phish)",
            "<https://evil.example/phish>",
        ),
        ("[support@bank.example](mailto:attacker@evil.example)", "<mailto:attacker@evil.example>"),
        ("[bank.com/login](https://evil.example/x)", "<https://evil.example/x>"),
        ("[https:/\u200b/bank.example](https://evil.example/x)", "<https://evil.example/x>"),
        ("[\u200b](https://evil.example/x)", "<https://evil.example/x>"),
        # A host that merely ends in the letters of the one named is another.
        ("[bank.com](https://evilbank.com/login)", "<https://evilbank.com/login>"),
        # Full-width letters read as the same domain.
        ("[ｂａｎｋ．ｃｏｍ](https://evil.example/login)", "<https://evil.example/login>"),
        # Its own host, or a parent of it, or no address at all: kept.
        (
            "[docs.python.org](https://docs.python.org/3/)",
            "<https://docs.python.org/3/|docs.python.org>",
        ),
        ("[python.org](https://docs.python.org/3/)", "<https://docs.python.org/3/|python.org>"),
        (
            "[the Python 3.11 docs](https://docs.python.org/3/)",
            "<https://docs.python.org/3/|the Python 3.11 docs>",
        ),
        # Names of files, packages and methods are no addresses.
        ("[Node.js](https://nodejs.org/en/download)", "<https://nodejs.org/en/download|Node.js>"),
        ("[config.yaml](https://github.com/o/r)", "<https://github.com/o/r|config.yaml>"),
        ("[os.path.join](https://docs.python.org/3/)", "<https://docs.python.org/3/|os.path.join>"),
        # A dot a browser reads as one, in another script.
        (
            "[https://paypal\u3002com/signin](https://evil.example/login)",
            "<https://evil.example/login>",
        ),
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
        (
            "[Руководство, т.е. справка](https://example.ru/)",
            "<https://example.ru/|Руководство, т.е. справка>",
        ),
        # ... nor a word of another alphabet after a dot (a name, a sentence's end).
        ("[Яндекс.Маркет](https://market.yandex.ru/)", "<https://market.yandex.ru/|Яндекс.Маркет>"),
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
    line = markdown_sources(
        [
            Source("https://docs.example/a", "Press ` to open the console"),
            Source("https://docs.example/b", "C:\\"),
        ]
    )
    assert line == (
        "_Sources:_ [Press \\` to open the console](https://docs.example/a) · "
        "[C:\\\\](https://docs.example/b)"
    )


def test_native_mention_syntax_holding_a_bracket_pings_nobody() -> None:
    for text in ("Heads up <!here|<> now.", "<!channel|a<b>", "<@U0123456|<x>"):
        out = neutralize_markdown(text)
        assert re.search(r"<(?:@[UWB]|!(?:here|channel|everyone))", out) is None, out
    # Code that only looks like it is kept as written, to be copied.
    for code in (
        "<!DOCTYPE html>",
        "<!-- note -->",
        r"(?<!\w)x",
        "List<@NonNull T>",
        "<# block comment #>",
    ):
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
