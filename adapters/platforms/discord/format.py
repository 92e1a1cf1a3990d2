"""Discord markup: answer text, sources block, thread names, mention stripping.

Discord speaks Markdown, so answers pass through almost unchanged, but for
what Discord does not read: a table becomes preformatted text, a heading
below `###` a bold line, a code block fenced with more than three backticks
or with tildes a ``` block (Discord ends a block at the first ```: one in its
code is broken up), a quote's blank line (a bare `>`) a quoted one, and a
masked link whose text is a URL (shown as raw Markdown) or names another
place than the link's own a bare `<url>`. Mention
syntax is broken up visually with a zero-width space (outside code, where it
would change what readers copy); the real protection against pings is
`allowed_mentions` none on every send and edit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from adapters.platforms.markup import (
    ZWSP,
    break_fences,
    encoded_url,
    honest_markdown_label,
    in_own_letters,
    source_title,
    table_grid,
)
from adapters.platforms.mentions import without_mention
from bridge.fences import FENCE_LINE, closes_fence, in_quotes, quotes_of
from bridge.interfaces import Source
from bridge.split import FENCE, TABLE_ROW, TABLE_RULE, grapheme_start

THREAD_NAME_MAX = 100
_TITLE_MARKS = str.maketrans({"[": "(", "]": ")", "\\": "\u29f5"})

# Fenced blocks, then inline code spans: left exactly as they are.
# A backslash-escaped backtick is shown as a backtick: it opens no code span.
CODE = re.compile(r"```.*?(?:```|\Z)|(?<!\\)`[^`\n]+(?<!\\)`", re.DOTALL)
# Not inside a word, a path or a host name: https://x.example/@here and ops@here.example
# are an address, not a mention (and the zero-width space would break them). Within
# `_` (italics: _@everyone_) it is a mention.
_EVERYONE = re.compile(r"(?<![^\W_]|[/.@-])@(everyone|here)(?![^\W_])")
_MENTION = re.compile(r"<(@[!&]?)(\d+)>")  # channel links (<#id>) ping nobody: kept
# What `_blocks` may change: a table, a deep heading, a fence (the code in any may hold
# ```), a quote's blank line.
_BLOCK_MARKS = re.compile(r"\||####|```|~~~|^ {0,3}>[ \t]*$", re.MULTILINE)
_BARE_QUOTE = re.compile(r" {0,3}>[ \t]*")
# Discord has headings #, ## and ### only.
_DEEP_HEADING = re.compile(r"^\s{0,3}#{4,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")


def _blocks(markdown: str) -> str:
    """Fenced code as Discord reads it, tables preformatted, deep headings bold and a
    quote's blank lines quoted, outside code blocks."""
    if not _BLOCK_MARKS.search(markdown):
        return markdown
    lines = markdown.split("\n")
    out: list[str] = []
    fence = ""  # the marker of the code block a line is in; FENCE for Discord's own
    quotes = ""  # the block quotes the code block a line is in stands in
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if fence and quotes == "> " and _BARE_QUOTE.fullmatch(line):
            # A blank line of a quote's code block: a bare `>` would end the quote (see
            # below), and the code would go on out of it.
            out.append(f"> {ZWSP}")
            continue
        if fence == FENCE:
            # Discord's code block ends at the next ```, wherever it stands.
            out.append(line)
            fence = "" if line.count(FENCE) % 2 else fence
            continue
        if fence:
            inner = in_quotes(line, quotes)
            if inner is not None:
                if closes_fence(fence, inner):
                    out.append(f"{line[: len(line) - len(inner.lstrip())]}{FENCE}")
                    fence = ""
                else:
                    out.append(break_fences(line))
                continue
            # Its quote ended, and the block with it (CommonMark): closed there, in the
            # quote, where Discord's would go on to the next ```.
            out.append(f"{quotes}{FENCE}")
            fence = ""
        opening = FENCE_LINE.match(line)
        if opening and opening.group(3) != FENCE:
            # Discord knows no longer fence (one that shows ``` in its code) nor ~~~:
            # the block is made ```, and a ``` in it broken up, so it cannot end it.
            quoted, indent, fence, info = opening.groups()
            quotes = quotes_of(opening)
            out.append(f"{quoted}{indent}{FENCE}{break_fences(info)}")
            continue
        if line.count(FENCE) % 2:
            fence = FENCE
            quotes = quotes_of(opening) if opening else ""
            out.append(line)
            continue
        if TABLE_ROW.match(line) and i < len(lines) and TABLE_RULE.match(lines[i]):
            rows = [line]
            while i < len(lines) and (TABLE_ROW.match(lines[i]) or TABLE_RULE.match(lines[i])):
                rows.append(lines[i])
                i += 1
            out.extend([FENCE, *(break_fences(row) for row in table_grid(rows)), FENCE])
            continue
        if _BARE_QUOTE.fullmatch(line):
            # Discord quotes `> ` and what follows: a bare `>` between a quote's
            # paragraphs would show, and end the quote.
            out.append(f"> {ZWSP}")
            continue
        heading = _DEEP_HEADING.match(line)
        out.append(f"**{heading.group(1)}**" if heading and heading.group(1) else line)
    return "\n".join(out)


def _neutralize(text: str) -> str:
    text = _EVERYONE.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    return _MENTION.sub(lambda m: f"<{m.group(1)}{ZWSP}{m.group(2)}>", text)


def _masked_links(text: str) -> list[tuple[int, int, str, str]]:
    """The `[label](url)` links outside code in `text`: start, end, label and url.

    Brackets and parentheses are paired with stacks in one pass (time linear in the
    text, whatever it holds): a label may hold brackets, a URL balanced parentheses
    (`wiki/Foo_(bar)`) but no space. A link inside another's label is left to it."""
    plain = list(text)
    for match in CODE.finditer(text):  # code is neither label nor URL syntax
        plain[match.start() : match.end()] = "\0" * (match.end() - match.start())
    opened: list[int] = []
    parens: list[int] = []
    closer: dict[int, int] = {}  # an opening parenthesis -> its closing one
    labels: list[tuple[int, int]] = []  # (`[`, `]`) with a `(` right after
    escaped = False
    for at, char in enumerate(plain):
        # Discord pairs a label's brackets escaped or not; in a URL, `\(` and `\)` are
        # characters of it.
        if char == "[":
            opened.append(at)
        elif char == "]" and opened:
            start = opened.pop()
            if at + 1 < len(plain) and plain[at + 1] == "(":
                labels.append((start, at))
        elif escaped:
            pass
        elif char == "(":
            parens.append(at)
        elif char == ")" and parens:
            closer[parens.pop()] = at
        elif char.isspace() or char == "\0":
            parens.clear()
        escaped = char == "\\" and not escaped
    links: list[tuple[int, int, str, str]] = []
    for start, end in sorted(labels):
        close = closer.get(end + 1)
        if close is not None and (not links or start >= links[-1][1]):
            links.append((start, close + 1, text[start + 1 : end], text[end + 2 : close]))
    return links


def _unmask(text: str) -> str:
    """`text` with a link whose label holds a URL, or names another place than the
    link leads, made a bare `<url>` link (as in the sources block)."""
    if "](" not in text:
        return text
    out: list[str] = []
    last = 0
    for start, end, label, url in _masked_links(text):
        url = url[1:-1] if url.startswith("<") and url.endswith(">") else url
        if url and ("://" in label or not honest_markdown_label(label, url)):
            out.append(text[last:start])
            out.append(f"<{encoded_url(url)}>")
            last = end
    out.append(text[last:])
    return "".join(out)


def format_markdown(markdown: str) -> str:
    """The answer as Discord markup: Markdown with mention syntax neutralized."""
    markdown = _unmask(_blocks(markdown))
    out: list[str] = []
    last = 0
    for match in CODE.finditer(markdown):
        out.append(_neutralize(markdown[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_neutralize(markdown[last:]))
    return "".join(out)


def _link_title(title: str) -> str:
    title = source_title(title)
    # A bracket would end the link's text early, and Discord shows a backslash there
    # rather than read it as an escape (one at the end might still hide the `]`):
    # look-alikes that Markdown does not read.
    return _neutralize(title.translate(_TITLE_MARKS))


def _address_label(url: str) -> str:
    """A source's address as the text of its link, where Discord would show it
    percent-encoded (a page in Russian or Japanese as runs of %XX): its host and
    path in their own letters, without the scheme (a text holding a URL shows as
    raw Markdown). Empty where the address is shown as it is: all ASCII, or not
    safe to show as a link's text (see `in_own_letters`)."""
    readable = in_own_letters(url)
    if readable is None or readable == encoded_url(url):
        return ""  # (the second: only its host is international, in its `xn--` form)
    _, scheme, rest = readable.partition("://")
    label = _link_title(rest) if scheme and "://" not in rest else ""
    return label if label and honest_markdown_label(label, url) else ""


def format_sources(sources: Sequence[Source]) -> str:
    """A "Sources" block of `[title](<url>)` links; the angle brackets stop previews."""
    lines = ["**Sources**"]
    for source in sources:
        url = encoded_url(source.url.strip())
        title = _link_title(source.title)
        # Discord shows a masked link whose text holds a URL as raw Markdown; and a
        # title naming another place than the link's own would pass for it.
        if not (title and "://" not in title and honest_markdown_label(source.title, source.url)):
            title = _address_label(source.url.strip())
        lines.append(f"- [{title}](<{url}>)" if title else f"- <{url}>")
    return "\n".join(lines) if len(lines) > 1 else ""


def thread_name(name: str) -> str:
    """A valid thread name (1..100 characters, one line) from a question."""
    name = " ".join(name.replace(ZWSP, "").split())
    if len(name) > THREAD_NAME_MAX:
        name = name[: grapheme_start(name, THREAD_NAME_MAX - 1, 1)].rstrip() + "…"
    return name or "Question"


def strip_mentions(text: str, user_id: int, role_ids: Iterable[int], name: str) -> str:
    """`text` without the bot's user mention (and its managed role's mention) where it
    only addresses the bot, and with the bot's `name` for it within a sentence."""
    ids = "|".join([f"@!?{user_id}", *(f"@&{r}" for r in role_ids)])
    return without_mention(text, rf"<(?:{ids})>", name).strip()
