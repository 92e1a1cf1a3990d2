"""Markdown (as the chat APIs write it) to Slack mrkdwn, with every mention made harmless.

Slack's mrkdwn is not Markdown: bold is `*x*`, italics `_x_`, strike `~x~`,
links `<url|label>`, no headings, no tables, and `&`, `<`, `>` must be escaped
or Slack reads them as markup (`<!channel>` pings a whole channel). The
converter works line by line: fenced code is copied (escaped) and the rest is
split into inline code spans, which are kept, and text, which is converted.

`neutralize_markdown` is for Slack's native streaming, which takes standard
Markdown: it keeps the Markdown and only defuses Slack's mention syntax.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from adapters.platforms import encoded_url
from bridge.interfaces import Source

WORD_JOINER = "\u2060"

# <@U123>, <@U123|name>, <!here>, <!subteam^S1|@team>, <#C1|general>: Slack's own syntax.
_SLACK_REF = re.compile(r"<([@#!])([^<>|\s]*)(?:\|([^<>]*))?>")
# Plain @here / @channel / @everyone (pings with link_names) and @U123-style ids.
_AT_WORD = re.compile(r"@(?=(here|channel|everyone|U[A-Z0-9]{6,}|W[A-Z0-9]{6,})\b)", re.IGNORECASE)

# A backtick fence's info string has no backtick: "```pip install x```" is inline code.
_FENCE = re.compile(r"^(\s*)(`{3,}(?=[^`]*$)|~{3,})(.*)$")
# Closing #s count only after a space: "## Using C#" keeps its #.
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(\[[ xX]\]\s+)?(.*)$")
_ORDERED = re.compile(r"^(\s*)(\d{1,9})[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")

_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_IMAGE_OR_LINK = re.compile(
    r"!?\[([^\]\n]*)\]"  # [label] or ![alt]
    r"\(\s*<?([^\s()<>]+(?:\([^\s()<>]*\)[^\s()<>]*)*)>?"  # (url), balanced parentheses in it
    r"(?:\s+\"[^\"]*\")?\s*\)"  # an optional "title"
)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s<>|]+)(?:\|([^<>]*))?>")
# A bare URL, which Slack links by itself: kept whole, or its `__init__` would be bold.
_BARE_URL = re.compile(r"(?i)\bhttps?://[^\s<>\ue000-\ue003]*[^\s<>\ue000-\ue003.,;:!?)\]'\"*~]")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~|>])")

_BOLD_ITALIC = re.compile(r"(?<![*\w])\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*(?![*\w])")
_BOLD_STARS = re.compile(r"(?<![*\w])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![*\w])")
_BOLD_UNDERSCORES = re.compile(r"(?<![_\w])__(?=\S)(.+?)(?<=\S)__(?![_\w])")
# Italics run across a code span only if no other star is inside: a stray `*args`
# before one does not pair with `*b*` after it, and `*run `x` first*` is italic.
_ITALIC_STAR = re.compile(
    r"(?<![*\w])\*(?=[^\s*])([^\ue003]+?|[^*]+?)(?<=[^\s*])\*(?![*\w])"
)
_STRIKE = re.compile(r"(?<!~)~~(?=\S)(.+?)(?<=\S)~~(?!~)")

# Private-use sentinels stand for markup while the rest of the text is rewritten.
_B = "\ue000"  # bold marker -> *
_I = "\ue001"  # italic marker -> _
_S = "\ue002"  # strike marker -> ~
_P = "\ue003"  # placeholder bracket: \ue003<index>\ue003
_SENTINELS = re.compile(f"[{_B}{_I}{_S}{_P}]")
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
    """Standard Markdown with Slack's mention syntax and @-pings made harmless."""
    return defuse_at(defuse_refs(markdown.replace(WORD_JOINER, "")))


def markdown_to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to Slack mrkdwn; the result pings nobody."""
    markdown = _SENTINELS.sub("", markdown.replace("\r\n", "\n"))
    out: list[str] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(2)
            out.append("```")
            i += 1
            while i < len(lines):
                closing = _FENCE.match(lines[i])
                if (  # closed by the same character, at least as many (CommonMark)
                    closing
                    and closing.group(2)[0] == marker[0]
                    and len(closing.group(2)) >= len(marker)
                    and not closing.group(3).strip()
                ):
                    break
                # Slack has no nested fences: a ``` line inside would end the block.
                out.append(escape(defuse_at(lines[i])).replace("```", "`\u200b`\u200b`"))
                i += 1
            out.append("```")
            i += 1
            continue
        if _TABLE_ROW.match(line) and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
            # Slack has no tables: keep the grid readable as preformatted text.
            out.append("```")
            while i < len(lines) and (_TABLE_ROW.match(lines[i]) or _TABLE_RULE.match(lines[i])):
                out.append(escape(defuse_at(lines[i].strip())))
                i += 1
            out.append("```")
            continue
        i += 1
        # The last line is the one still growing while a reply streams: a new
        # line at every edit, never asked for again. Kept out of the cache, it
        # does not push out the finished lines that are.
        out.append(_convert_line(line) if i < len(lines) else _convert_line.__wrapped__(line))
    return "\n".join(out)


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
        return "> " + _convert_line(quote.group(1)) if quote.group(1).strip() else ">"
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
    code: dict[int, str] = {}  # placeholder index -> the span's own text

    def keep(rendered: str) -> str:
        stash.append(rendered)
        return f"{_P}{len(stash) - 1}{_P}"

    def keep_code(match: re.Match[str]) -> str:
        raw = match.group(2).replace("`", "'")
        code[len(stash)] = raw
        return keep("`" + escape(defuse_at(raw)) + "`")

    def label(markdown: str) -> str:
        # A link's label shows as plain text: its code spans lose their backticks.
        plain = _label(markdown)
        return _PLACEHOLDER.sub(lambda m: code.get(int(m.group(1)), ""), plain) if code else plain

    if "`" in text:
        text = _CODE_SPAN.sub(keep_code, text)
    if "<" in text:
        text = _AUTOLINK.sub(lambda m: keep(link(m.group(1), label(m.group(2) or ""))), text)
        text = defuse_refs(text)
    if "](" in text:
        text = _IMAGE_OR_LINK.sub(lambda m: keep(link(m.group(2), label(m.group(1)))), text)
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
    text = _ESCAPED.sub(lambda m: keep(escape(m.group(1))), text)
    text = escape(defuse_at(text))
    text = _BOLD_ITALIC.sub(lambda m: f"{_B}{_I}{m.group(1)}{_I}{_B}", text)
    text = _BOLD_STARS.sub(lambda m: f"{_B}{m.group(1)}{_B}", text)
    text = _BOLD_UNDERSCORES.sub(lambda m: f"{_B}{m.group(1)}{_B}", text)
    text = _ITALIC_STAR.sub(lambda m: f"{_I}{m.group(1)}{_I}", text)
    text = _STRIKE.sub(lambda m: f"{_S}{m.group(1)}{_S}", text)
    text = text.replace(_B, "" if strip_bold else "*").replace(_I, "_").replace(_S, "~")
    return _PLACEHOLDER.sub(lambda m: stash[int(m.group(1))], text)


def _label(markdown_label: str) -> str:
    """Link text without Markdown emphasis (Slack shows labels plain)."""
    return re.sub(r"\\(?=\S)|[*_~`]+", "", markdown_label).strip()


def link(url: str, label: str = "") -> str:
    """A Slack link `<url|label>`; unsafe schemes are shown as plain text."""
    url = url.strip()
    if not re.match(r"(?i)^(https?://|mailto:)", url):
        shown = label or url
        return escape(defuse_at(shown)) + (f" ({escape(url)})" if label and url else "")
    safe_url = encoded_url(url).replace("&", "&amp;")
    if not label or label == url:
        return f"<{safe_url}>"
    clean = escape(defuse_at(defuse_refs(label))).replace("|", "¦")
    return f"<{safe_url}|{clean}>"


def mrkdwn_sources(sources: Sequence[Source]) -> str:
    """The sources line in mrkdwn: `Sources: <url|title> · <url|title>`."""
    # A title's line breaks would break its link: one line, as Discord shows them.
    links = [link(s.url, _one_line(s.title) or _host(s.url)) for s in sources if s.url.strip()]
    return f"_Sources:_ {' · '.join(links)}" if links else ""


def markdown_sources(sources: Sequence[Source]) -> str:
    """The sources line in standard Markdown, for native streaming."""
    links = []
    for s in sources:
        url = s.url.strip()
        if not url:
            continue
        title = (_one_line(s.title) or _host(url)).replace("[", "(").replace("]", ")")
        if re.match(r"(?i)^https?://", url):
            # Encoded: a `<!channel>` or a line break in an API's URL must not reach Slack.
            # Parentheses encoded: CommonMark ends the link at an unbalanced one.
            target = encoded_url(url).replace("(", "%28").replace(")", "%29")
            links.append(f"[{neutralize_markdown(title)}]({target})")
        else:
            links.append(neutralize_markdown(title))
    return f"_Sources:_ {' · '.join(links)}" if links else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _host(url: str) -> str:
    match = re.match(r"(?i)^[a-z]+://([^/?#]+)", url)
    return match.group(1) if match else url
