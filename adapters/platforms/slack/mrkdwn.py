"""Markdown (as the chat APIs write it) to Slack mrkdwn, with every mention made harmless.

Slack's mrkdwn is not Markdown: bold is `*x*`, italics `_x_`, strike `~x~`,
links `<url|label>`, no headings, no tables, and `&`, `<`, `>` must be escaped
or Slack reads them as markup (`<!channel>` pings a whole channel). The
converter works line by line: code blocks (fenced, or indented four spaces) are
copied (escaped) and the rest is split into inline code spans, which are kept,
and text, which is converted.

`neutralize_markdown` is for Slack's native streaming, which takes standard
Markdown: it keeps the Markdown, defuses Slack's mention syntax (in code, only
with characters that show as nothing), and shows a link whose label names
another place as its bare address.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Sequence

from adapters.platforms.markup import (
    ZWSP,
    address_of,
    break_fences,
    encoded_url,
    honest_label,
    honest_markdown_label,
    in_own_letters,
    markdown_links,
    source_title,
    table_grid,
)
from bridge.fences import FENCE_LINE, closes_fence
from bridge.interfaces import Source
from bridge.split import TABLE_ROW, TABLE_RULE

WORD_JOINER = "\u2060"
# The start of what Slack reads as a mention (`<!here`, `<@U…`, `<#C…`, `<!subteam^…`):
# not `<!DOCTYPE`, `<!--`, `(?<!x)` or `List<@NonNull T>` in code.
_REF_START = re.compile(r"<(?=(?i:!(?:here|channel|everyone|subteam))|@[UWB][A-Z0-9]|#C[A-Z0-9])")
# Marks that mean something in a Markdown link's label.
_MARKS = re.compile(r"[\\`*_~\[\]<>]")
# A scheme, which `<…>` needs to be a link (CommonMark's autolink).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,31}:")

# <@U123>, <@U123|name>, <!here>, <!subteam^S1|@team>, <#C1|general>: Slack's own syntax.
_SLACK_REF = re.compile(r"<([@#!])([^<>|\s]*)(?:\|([^<>]*))?>")
# Plain @here / @channel / @everyone (pings with link_names) and @U123-style ids, which
# are upper case: `@unittest`, `@WebServlet` and `me@university.edu` are left alone.
_AT_WORD = re.compile(r"@(?=(?i:here|channel|everyone)\b|[UW][A-Z0-9]{6,}\b)")
# The same outside the links the converter made (`<url|label>`), whose labels are
# defused already and whose addresses must stay as they are.
_AT_WORD_OR_LINK = re.compile(rf"(<[^<>]*>)|{_AT_WORD.pattern}")

# Closing #s count only after a space: "## Using C#" keeps its #.
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(\[[ xX]\]\s+)?(.*)$")
_ORDERED = re.compile(r"^(\s*)(\d{1,9})[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
# A line of an indented code block: four spaces in, or a tab within the first four.
_INDENTED_CODE = re.compile(r"^(?: {4}| {0,3}\t)(?=.*\S)")

# Runs of backticks, and what a code span is read by: a run, or an escape (read
# first, as an escaped backtick opens no span).
_TICKS = re.compile(r"`+")
_ESCAPE_OR_TICKS = re.compile(r"\\.|`+", re.DOTALL)
# A link's [label] or an image's [alt] holds no link (as CommonMark, the innermost
# bracket opens it), but may hold brackets that make none (`[the [draft] spec]`), and
# an image, which is read first; a failed try stops at the next "[" that makes no pair.
_LABEL = r"\[((?:[^\[\]\n]|\[[^\[\]\n]*\](?!\())*)\]"
# (url), balanced parentheses in it, and no code span or image (a placeholder's mark).
_URL_CHAR = r"[^\s()<>\ue003]"
_DESTINATION = (
    rf"\(\s*<?({_URL_CHAR}+(?:\({_URL_CHAR}*\){_URL_CHAR}*)*)>?"
    r"(?:\s+\"[^\"]*\")?\s*\)"  # an optional "title"
)
_IMAGE = re.compile(f"!{_LABEL}{_DESTINATION}")
_LINK = re.compile(f"{_LABEL}{_DESTINATION}")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s<>|]+)(?:\|([^<>]*))?>")
# A bare URL, which Slack links by itself: kept whole, or its `__init__` would be bold.
_BARE_URL = re.compile(r"(?i)\bhttps?://[^\s<>\ue000-\ue003]*[^\s<>\ue000-\ue003.,;:!?)\]'\"*~]")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~|>])")


def _emphasis(opener: str, closer: str) -> re.Pattern[str]:
    """An emphasis from `opener` to the nearest `closer`, holding no other opener of
    its kind: in `*args and *kwargs*` the second star opens (as in CommonMark). An
    opener without a closer is given up at the next one, so a long line of them
    (`*a *a *a …`) is read once, not once from each."""
    return re.compile(f"{opener}((?:(?!{opener}).)+?){closer}")


# Stars emphasise inside a word too (CommonMark): `这是**重要**的`, `the **API**s`.
# Underscores do not: snake_case_name is a name.
_BOLD_ITALIC = _emphasis(r"(?<!\*)\*\*\*(?=[^\s*])", r"(?<=[^\s*])\*\*\*(?!\*)")
_BOLD_STARS = _emphasis(r"(?<!\*)\*\*(?=[^\s*])", r"(?<=[^\s*])\*\*(?!\*)")
_BOLD_UNDERSCORES = _emphasis(r"(?<![_\w])__(?=\S)", r"(?<=\S)__(?![_\w])")
# Italics run across a code span (`*run `x` first*`), and a stray `*args` before
# one does not pair with `*b*` after it.
_ITALIC_STAR = _emphasis(r"(?<!\*)\*(?=[^\s*])", r"(?<=[^\s*])\*(?!\*)")
_ITALIC_UNDERSCORE = _emphasis(r"(?<![_\w])_(?=\S)", r"(?<=\S)_(?![_\w])")
_STRIKE = _emphasis(r"(?<!~)~~(?=\S)", r"(?<=\S)~~(?!~)")
_EMPHASIS = (
    _BOLD_ITALIC,
    _BOLD_STARS,
    _BOLD_UNDERSCORES,
    _ITALIC_STAR,
    _ITALIC_UNDERSCORE,
    _STRIKE,
)
# Where a mark must stand next to a letter, a zero-width space (ZWSP): Slack reads
# `*`, `_` and `~` as markup only at a word's edge, and takes one for an edge.
_WORD_CHAR = re.compile(r"\w")

# Private-use sentinels stand for markup while the rest of the text is rewritten.
_B = "\ue000"  # bold marker -> *
_I = "\ue001"  # italic marker -> _
_S = "\ue002"  # strike marker -> ~
_P = "\ue003"  # placeholder bracket: \ue003<index>\ue003
_SENTINELS = re.compile("[\ue000-\ue007]")  # these, and _LABEL_KEPT's
_PLACEHOLDER = re.compile(f"{_P}(\\d+){_P}")


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def defuse_refs(text: str) -> str:
    """Turn Slack mention/link syntax into plain readable text: `<!here>` -> `@here`."""

    def plain(match: re.Match[str]) -> str:
        sigil, target, label = match.group(1), match.group(2), match.group(3)
        if sigil == "#":
            return "#" + (label or target)
        if label:
            return label if label.startswith("@") else "@" + label
        if sigil == "!":
            name = target.split("^", 1)[-1]
            return "@" + name
        return "@" + target

    return _SLACK_REF.sub(plain, text)


def defuse_at(text: str) -> str:
    """Put a word joiner after `@` in @here/@channel/@everyone and @U… ids."""
    return _AT_WORD.sub("@" + WORD_JOINER, text)


def neutralize_markdown(markdown: str) -> str:
    """Standard Markdown with Slack's mention syntax and @-pings made harmless; a `<`
    before `@`, `#` or `!` left (a label holding `<`: `<!here|<>`) is broken too. A
    link whose label names another place than where it leads is its bare address."""
    text = _honest_links(markdown.replace(WORD_JOINER, ""))
    out: list[str] = []
    last = 0
    for start, end in _code_parts(text):
        out.append(_REF_START.sub("<" + WORD_JOINER, defuse_at(defuse_refs(text[last:start]))))
        # Code is kept as written, to be copied: only a word joiner, which shows as
        # nothing, keeps Slack from reading a mention in it.
        out.append(defuse_at(_REF_START.sub("<" + WORD_JOINER, text[start:end])))
        last = end
    out.append(_REF_START.sub("<" + WORD_JOINER, defuse_at(defuse_refs(text[last:]))))
    return "".join(out)


def _code_parts(markdown: str) -> list[tuple[int, int]]:
    """Where `markdown`'s fenced code blocks and code spans start and end, in order.
    A code span is looked for within its paragraph: one that opens and never closes
    is given up at the paragraph's end, not at the text's."""
    parts: list[tuple[int, int]] = []
    lines = markdown.split("\n")
    offset = paragraph = 0  # where the line, and the paragraph it is in, start
    i = 0
    while i < len(lines):
        block = _code_block(lines, i)
        if block is None and lines[i].strip():
            offset += len(lines[i]) + 1
            i += 1
            continue
        # A blank line or a fenced code block ends the paragraph.
        parts += [span[:2] for span in _code_spans(markdown, paragraph, offset)]
        end = i + 1 if block is None else block[2]
        size = sum(len(line) + 1 for line in lines[i:end])
        if block is not None:
            parts.append((offset, offset + size - 1))
        offset, i = offset + size, end
        paragraph = offset
    return parts + [span[:2] for span in _code_spans(markdown, paragraph, len(markdown))]


def _code_spans(text: str, start: int, end: int) -> list[tuple[int, int, int]]:
    """The code spans in `text[start:end]`: where each starts and ends, and how many
    backticks it has each side. As CommonMark reads them: a run of backticks opens
    one, which the next run of as many closes (a run is all the backticks in a row:
    "``" in "```" is none); an escaped backtick opens none (`\\`not code\\``), and
    within a span a backslash is text (`C:\\`). Read once, whatever the text holds:
    a run that nothing closes is not read to the end again for each."""
    runs: dict[int, list[int]] = {}  # run length -> where the runs that long start
    for run in _TICKS.finditer(text, start, end):
        runs.setdefault(run.end() - run.start(), []).append(run.start())
    spans = []
    pos = start
    while token := _ESCAPE_OR_TICKS.search(text, pos, end):
        pos = token.end()
        ticks = len(token.group())
        if token.group()[0] == "`" and ticks in runs:
            closing = bisect.bisect_left(runs[ticks], pos)
            if closing < len(runs[ticks]):
                pos = runs[ticks][closing] + ticks
                spans.append((token.start(), pos, ticks))
    return spans


def _honest_links(markdown: str) -> str:
    """`markdown` with each link (or image) whose label is not honest as its bare
    address, outside code; code is kept as written."""
    if "](" not in markdown:
        return markdown
    out: list[str] = []
    last = 0
    for found in markdown_links(markdown):
        if found.start < last or honest_markdown_label(found.label, found.url):
            continue  # in a label already replaced, or shown as written
        out += (markdown[last : found.start], _bare_link(found.url))
        last = found.end
    return "".join(out) + markdown[last:] if out else markdown


def _markdown_target(url: str) -> str:
    """`url` for a Markdown link: encoded, so a `<!channel>` or a line break in it
    cannot reach Slack, parentheses too, as CommonMark ends a link at an unbalanced
    one."""
    return encoded_url(url).replace("(", "%28").replace(")", "%29")


def _bare_link(url: str) -> str:
    """`url` as native Markdown shows it as a link: `<url>`; one without a scheme
    leads nowhere, and is shown as text."""
    url = url.strip()
    if _SCHEME.match(url):
        return f"<{_markdown_target(url)}>"
    return _MARKS.sub(r"\\\g<0>", url)


def markdown_to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to Slack mrkdwn; the result pings nobody."""
    markdown = _SENTINELS.sub("", markdown.replace("\r\n", "\n"))
    out: list[str] = []
    lines = markdown.split("\n")
    # Whether the block last read is a list's, whose paragraphs are indented too. A
    # text that starts indented is read as one: it may be a later message's, cut
    # from a list item's paragraphs.
    in_list = bool(markdown[:1].isspace() and markdown.strip())
    i = 0
    while i < len(lines):
        line = lines[i]
        after_blank = i > 0 and not lines[i - 1].strip()
        indented = after_blank and not in_list and _INDENTED_CODE.match(line)
        block = _code_block(lines, i)
        if not indented and (_BULLET.match(line) or _ORDERED.match(line)):
            in_list = True
        elif line[:1].strip() and (after_blank or block):
            in_list = False  # a paragraph or a code block after the list
        if block:
            # A block quote's code block is quoted line by line, and ends with the quote.
            prefix, code, i = block
            # Slack has no nested fences: a ``` line inside would end the block.
            code = [prefix + break_fences(escape(defuse_at(held))) for held in code]
            out.extend([prefix + "```", *code, prefix + "```"])
            continue
        if TABLE_ROW.match(line) and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
            # Slack has no tables: keep the grid readable as preformatted text.
            rows = []
            while i < len(lines) and (TABLE_ROW.match(lines[i]) or TABLE_RULE.match(lines[i])):
                rows.append(lines[i])
                i += 1
            out.extend(["```", *(escape(defuse_at(row)) for row in table_grid(rows)), "```"])
            continue
        if indented:
            # Code indented four spaces (CommonMark): up to a line indented less, less
            # the blank lines that end it.
            end = i
            while end < len(lines) and (_INDENTED_CODE.match(lines[end]) or not lines[end].strip()):
                end += 1
            while not lines[end - 1].strip():
                end -= 1
            code = [break_fences(escape(defuse_at(_dedent(held, 4)))) for held in lines[i:end]]
            out.extend(["```", *code, "```"])
            i = end
            continue
        i += 1
        # The last line is the one still growing while a reply streams: a new
        # line at every edit, never asked for again. Kept out of the cache, it
        # does not push out the finished lines that are.
        out.append(_convert_line(line) if i < len(lines) else _convert_line.__wrapped__(line))
    return "\n".join(out)


def _code_block(lines: Sequence[str], i: int) -> tuple[str, list[str], int] | None:
    """The fenced code block that opens at line `i`, if one does: "> " if it is in a
    block quote (it ends with the quote), its lines as written, and the line after it.
    Each line loses up to as much indent as the opening fence has (CommonMark): code
    in a list item does not keep the item's."""
    quoted = _QUOTE.match(lines[i])
    fence = FENCE_LINE.match(quoted.group(1) if quoted else lines[i])
    if fence is None or fence.group(1):
        return None  # (one in a quote in a quote is not read: it shows as quoted text)
    indent, marker = len(fence.group(2).expandtabs(4)), fence.group(3)
    code = []
    i += 1
    while i < len(lines):
        held = _QUOTE.match(lines[i]) if quoted else None
        if quoted and held is None:
            break  # the quote ended, and its code block with it
        inner = held.group(1) if held else lines[i]
        i += 1
        if closes_fence(marker, inner):
            break
        code.append(_dedent(inner, indent))
    return ("> " if quoted else ""), code, i


def _dedent(line: str, columns: int) -> str:
    """`line` less up to `columns` columns of its indent (a tab reaching the next
    multiple of 4)."""
    if not columns or not line[:1].isspace():
        return line
    lead = len(line) - len(line.lstrip(" \t"))
    spaces = line[:lead].expandtabs(4)
    return spaces[min(columns, len(spaces)) :] + line[lead:]


@functools.lru_cache(maxsize=8192)
def _convert_line(line: str) -> str:
    # Cached: a reply's finished lines are converted again at every edit while it grows.
    if not line.strip():
        return ""
    if _RULE.match(line):
        return "──────────"
    heading = _HEADING.match(line)
    if heading:
        title = heading.group(2)
        # `# #` is an empty heading: what follows the opening #s is its closing ones.
        inner = "" if not title.strip("#") else _inline(title, strip_bold=True)
        return f"*{inner}*" if inner else ""
    quote = _QUOTE.match(line)
    if quote:
        # Each level's marker in a loop, not a call: `>` a thousand times over is a
        # line an answer may hold, and as many nested calls would overflow the stack.
        levels = 0
        while quote is not None and quote.group(1).strip():
            levels += 1
            line = quote.group(1)
            quote = _QUOTE.match(line)
        return "> " * levels + (">" if quote is not None else _convert_line(line))
    bullet = _BULLET.match(line)
    if bullet:
        indent, task, rest = bullet.groups()
        mark = "•" if len(indent.expandtabs(4)) < 2 else "◦"
        box = ""
        if task:
            box = "☑ " if task[1] in "xX" else "☐ "
        return f"{indent}{mark} {box}{_inline(rest)}"
    ordered = _ORDERED.match(line)
    if ordered:
        indent, number, rest = ordered.groups()
        return f"{indent}{number}. {_inline(rest)}"
    return _inline(line)


def _inline(text: str, strip_bold: bool = False) -> str:
    """Convert one line of inline Markdown; code spans are kept verbatim (escaped).

    Code spans stand aside as placeholders while the rest is converted, so a
    link or an emphasis around one (`[`f()`](url)`, `**run `x` first**`) is
    still seen whole.
    """
    if not text:
        return ""
    stash: list[str] = []
    shown_in_label: dict[int, str] = {}  # placeholder index -> what a label shows of it

    def keep(rendered: str) -> str:
        stash.append(rendered)
        return f"{_P}{len(stash) - 1}{_P}"

    def keep_code(raw: str) -> str:
        shown_in_label[len(stash)] = raw
        shown = escape(defuse_at(raw))
        if "`" not in raw:
            return keep(f"`{shown}`")
        # Slack's inline code cannot hold a backtick; its preformatted text can
        # (shown as a block): the code stays as written, to be copied.
        shown = break_fences(shown)
        return keep(f"```{shown}```" if shown.strip("`") == shown else f"``` {shown} ```")

    def escaped(match: re.Match[str]) -> str:
        char, line, start = match.group(1), match.string, match.start()
        within_word = (
            start > 0
            and _WORD_CHAR.match(line, start - 1)
            and (_WORD_CHAR.match(line, match.end()))
        )
        if char in "*_~`" and not within_word:
            # Bare, Slack would pair it with another: `\*not bold\*` stays as written.
            return keep(f"{ZWSP}{char}{ZWSP}")
        return keep(escape(char))

    def label(markdown: str) -> str:
        # A link's label shows as plain text: its code spans lose their backticks, and
        # an image in it is its alt text.
        plain = _label(markdown)
        return _PLACEHOLDER.sub(lambda m: shown_in_label.get(int(m.group(1)), ""), plain)

    def keep_image(match: re.Match[str]) -> str:
        alt = label(match.group(1))
        shown_in_label[len(stash)] = alt
        return keep(link(match.group(2), alt))

    if "`" in text:
        pieces: list[str] = []
        last = 0
        for start, end, ticks in _code_spans(text, 0, len(text)):
            pieces += (text[last:start], keep_code(text[start + ticks : end - ticks]))
            last = end
        text = "".join(pieces) + text[last:]
    if "<" in text:
        text = _AUTOLINK.sub(lambda m: keep(link(m.group(1), label(m.group(2) or ""))), text)
        text = defuse_refs(text)
    if "](" in text:
        text = _IMAGE.sub(keep_image, text)
        text = _LINK.sub(lambda m: keep(link(m.group(2), label(m.group(1)))), text)
    if "://" in text:

        def bare(match: re.Match[str]) -> str:
            url = _ESCAPED.sub(r"\1", match.group(0))  # `some\_path` is `some_path`
            closing = ""
            if url.endswith("_") and "_" in text[: match.start()]:
                # `__see https://x/y__`: the underscores close an emphasis.
                stripped = url.rstrip("_")
                url, closing = stripped, url[len(stripped) :]
            return keep(escape(defuse_at(url))) + closing

        text = _BARE_URL.sub(bare, text)
    text = _ESCAPED.sub(escaped, text)
    text = escape(defuse_at(text))
    text = _BOLD_ITALIC.sub(_marked(_B + _I, _I + _B, strip_bold), text)
    text = _BOLD_STARS.sub(_marked(_B, _B, strip_bold), text)
    text = _BOLD_UNDERSCORES.sub(_marked(_B, _B, strip_bold), text)
    text = _ITALIC_STAR.sub(_marked(_I, _I), text)
    text = _STRIKE.sub(_marked(_S, _S), text)
    text = text.replace(_B, "" if strip_bold else "*").replace(_I, "_").replace(_S, "~")
    text = _PLACEHOLDER.sub(lambda m: stash[int(m.group(1))], text)
    # An `@` meets the name after it only now: `@[here](x)` is `@here (x)`, and a
    # heading's `@**here**` is `@here`.
    return _AT_WORD_OR_LINK.sub(lambda m: m.group(1) or "@" + WORD_JOINER, text)


def _marked(opening: str, closing: str, plain: bool = False) -> Callable[[re.Match[str]], str]:
    """An emphasis made Slack's: its marks, and a zero-width space between a mark
    and a letter it touches (`这是**重要**的`), which Slack needs to see the mark."""

    def mark(match: re.Match[str]) -> str:
        text, start, end = match.string, match.start(), match.end()
        before = ZWSP if not plain and start and _WORD_CHAR.match(text, start - 1) else ""
        after = ZWSP if not plain and _WORD_CHAR.match(text, end) else ""
        return f"{before}{opening}{match.group(1)}{closing}{after}"

    return mark


# A Markdown escape in a link's label, and the mark it keeps there meanwhile.
_LABEL_KEPT = {"*": "\ue004", "_": "\ue005", "~": "\ue006", "`": "\ue007"}


def _label(markdown_label: str) -> str:
    """Link text without its Markdown emphasis (Slack shows labels plain); a lone or
    escaped `_`, `~` or `*` is text (`config_example.yaml`, `the ~/.bashrc guide`)."""
    text = _ESCAPED.sub(lambda m: _LABEL_KEPT.get(m.group(1), m.group(1)), markdown_label)
    for emphasis in _EMPHASIS:
        text = emphasis.sub(r"\1", text)
    for char, kept in _LABEL_KEPT.items():
        text = text.replace(kept, char)
    return text.strip()


def link(url: str, label: str = "") -> str:
    """A Slack link `<url|label>`; unsafe schemes are shown as plain text."""
    url = url.strip()
    if not re.match(r"(?i)^(https?://|mailto:)", url):
        shown = label or url
        return escape(defuse_at(shown)) + (f" ({escape(defuse_at(url))})" if label and url else "")
    safe_url = encoded_url(url).replace("&", "&amp;")
    if not label or label == url or not honest_label(label, url):
        # Slack shows a link without a label as its URL, here percent-encoded: a page
        # in Japanese or Russian would read as runs of %XX.
        readable = in_own_letters(url)
        if readable is None or not honest_label(readable, url):
            return f"<{safe_url}>"
        label = readable
    clean = escape(defuse_at(defuse_refs(label))).replace("|", "¦")
    return f"<{safe_url}|{clean}>"


def mrkdwn_sources(sources: Sequence[Source]) -> str:
    """The sources line in mrkdwn: `Sources: <url|title> · <url|title>`."""
    links = [link(s.url, source_title(s.title) or _host(s.url)) for s in sources]
    return f"_Sources:_ {' · '.join(links)}" if links else ""


def markdown_sources(sources: Sequence[Source]) -> str:
    """The sources line in standard Markdown, for native streaming."""
    links = []
    for s in sources:
        url = s.url.strip()
        title = source_title(s.title) or _host(url)
        target = _markdown_target(url)
        if not honest_label(title, url):
            links.append(f"<{target}>")
            continue
        # Mentions defused first (`<!here>` is @here, not `\<!here\>`), then marks
        # escaped: a backtick would open a code span over the next link, a backslash
        # end the label early.
        title = _MARKS.sub(r"\\\g<0>", neutralize_markdown(title))
        links.append(f"[{title}]({target})")
    return f"_Sources:_ {' · '.join(links)}" if links else ""


def _host(url: str) -> str:
    """The host a link leads to, as shown for a source without a title: as DNS
    knows it (an IDN in punycode: `bаnk.example`, with a Cyrillic a, would pass
    for another)."""
    return address_of(url) or url
