"""What both platforms' markup needs: zero-width breaks, closed fences, safe URLs, and
link labels that name no other place than where the link leads."""

from __future__ import annotations

import html
import re
import unicodedata
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import yarl

from bridge.fences import FENCE_LINE, closes_fence, in_quotes, quotes_of
from bridge.split import TABLE_RULE, grapheme_start

ZWSP = "\u200b"
# Characters of a source's title shown at most: an API may give a page's first
# paragraph as its title, and a link longer than a message could not be shown.
SOURCE_TITLE_MAX = 200


def break_fences(text: str) -> str:
    """`text` with every ``` broken by zero-width spaces: inside a code block or a
    preformatted span, it cannot end it."""
    return text.replace("```", f"`{ZWSP}`{ZWSP}`")


def encoded_url(url: str) -> str:
    """`url` with everything but URL syntax percent-encoded (spaces, `<`, `>`, line
    breaks): an API's URL can neither end the link it is put in nor break its line. An
    international host is in its `xn--` form, which every client resolves."""
    return quote(ascii_host(url), safe="/:?#[]@!$&'()*+,;=%~-._")


def ascii_host(url: str) -> str:
    """`url` with an international host in its `xn--` form (the rest as it is); as it
    is where IDNA takes no such host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host.isascii():
            return url
        userinfo, at, _ = parts.netloc.rpartition("@")
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{userinfo}{at}{host.encode('idna').decode('ascii')}{port}"
    except (ValueError, UnicodeError):
        return url
    return urlunsplit(parts._replace(netloc=netloc))


def plain_address(url: str) -> bool:
    """Whether `url` may be shown as its own label: no character that changes how text
    around it is laid out or hides (a right-to-left override makes
    `good.example\u202e@evil.com/nigol` read `good.example/login`), and no user
    before its host (`good.example@evil.com` goes to evil.com), and a host that
    reads in its `xn--` form."""
    if any(unicodedata.category(char) in ("Cf", "Cc") for char in url):
        return False
    try:
        if not (urlsplit(ascii_host(url)).hostname or "").isascii():
            return False  # no host IDNA takes: shown encoded
    except ValueError:  # `good.example／login.evil.com`: no host at all
        return False
    return "@" not in url.partition("://")[2].split("/", 1)[0]


# A run of percent-escapes of bytes beyond ASCII: a character of another script, encoded.
_ESCAPED_LETTERS = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")


def unescaped_address(url: str) -> str:
    """`url` with the characters beyond ASCII that its path, query and fragment hold
    percent-encoded (as chat APIs give a page's address: `/wiki/%D0%9C%D0%BE…`) in
    their own letters (`/wiki/Мо…`); escapes of ASCII (`%20`, `%2F`) stay as they
    are, and so do bytes that are not UTF-8. Its host stays as given: read by other
    rules than a browser's, `fa%C3%9F.de` would show as fass.de, another domain."""

    def letters(found: re.Match[str]) -> str:
        try:
            return bytes.fromhex(found.group().replace("%", "")).decode()
        except UnicodeDecodeError:
            return found.group()

    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host_ends = min((at for at in map(rest.find, "/?#") if at != -1), default=len(rest))
    where = len(scheme) + len(sep) + host_ends
    return url[:where] + _ESCAPED_LETTERS.sub(letters, url[where:])


def readable_address(url: str) -> str:
    """`url` as a reader reads it: its path and query in their own letters, its host
    in the form browsers show where letters of several scripts could pass for
    another's (`xn--`), on one line. Shown only where `plain_address(url)`."""
    return ascii_host(" ".join(url.split()))


def in_own_letters(url: str) -> str | None:
    """`url` as a reader reads it (`readable_address`), where it holds letters beyond
    ASCII (as they are, or percent-encoded) and may be shown as its own label
    (`plain_address`): a platform would show it as runs of %XX. None where it is to be
    shown as it is."""
    shown = unescaped_address(url)
    if shown.isascii() or not plain_address(shown):
        return None
    return readable_address(shown)


# What no reader sees: zero-width characters and marks, the soft hyphen, the byte-order
# mark, fillers, variation selectors, tags (Unicode's default-ignorable characters).
_UNSEEN = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# What lays text out in another order than it is written: `\u202emoc.knab//:sptth`
# reads as https://bank.com. A label holding one is never shown for a link.
_REORDERS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Full stops that a browser (IDNA) or a reader takes for a domain's dot.
_DOTS = str.maketrans(dict.fromkeys("\u3002\uff0e\uff61\u06d4\u0589\u2024\ufe52", "."))
# Addresses a label may hold: a URL's host, an e-mail's domain, a `www.` name, or a
# name under a top-level domain people know (`bank.com`); not `Node.js`, `config.yaml`
# or `os.path`, which end in no such domain.
# (A scheme starts only where no scheme character precedes it: each start would
# otherwise scan a long run of letters again, in time that grows with its square.)
_URL_HOST = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:/+(?:[^\s/@]*@)?([^\s/?#:]+)")
_MAIL_DOMAIN = re.compile(r"[^\s@]@([^\s@/?#>]+)")
_NAME = r"(?:[^\W_]+(?:-+[^\W_]+)*\.)+"
_WWW = re.compile(rf"(?i)(?<![\w.-])(www\.{_NAME}[^\W\d_]{{2,}})(?![\w-])")
_KNOWN_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|io|co|ai|app|dev|me|us|uk|de|fr|jp|cn|ru|br|in|"
    "it|es|nl|eu|ca|au|ch|se|no|dk|fi|pl|be|at|cz|kr|tw|hk|sg|nz|ie|il|mx|ar|za|tr|gr|pt|"
    "hu|ro|ua|vn|th|id|my|ph|pk|sa|ae|ir|cc|tv|xyz|online|site|shop|store|tech|cloud|page|"
    "link|live|news|blog|club|top|icu|bank|email|support|help|login|security|finance|pay"
)
_DOMAIN = re.compile(rf"(?i)(?<![\w.-])({_NAME}(?:{_KNOWN_TLDS}))(?![\w-])")
# Any dotted name: one whose last label reads as a top-level domain people know in
# letters that only look like ASCII's is taken for an address too (`paypal.cоm`, a
# Cyrillic о, reads as paypal.com), as is one mixing such letters with ASCII's.
_DOTTED = re.compile(rf"(?<![\w.-])({_NAME}[^\W\d_]{{2,}})(?![\w-])")
_TLD_SET = frozenset(_KNOWN_TLDS.split("|"))
# Letters of other alphabets (Cyrillic, Greek, Latin small capitals) that read as
# ASCII ones.
_LOOK_ALIKES = str.maketrans(
    "аеорсухіјѕԁԛԝһӏкмтвнАВЕКМНОРСТХУІЈЅαοριυνκτχεΑΒΕΖΗΙΚΜΝΟΡΤΥΧᴀʙᴄᴅᴇɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢıɑɡօսցϲ",
    "aeopcyxijsdqwhlkmtbhABEKMHOPCTXYIJSaopiuvktxeABEZHIKMNOPTYXabcdeghijklmnoprstuvwyziagougc",
)


def address_of(url: str) -> str | None:
    """The host a link leads to, as DNS knows it (an IDN in punycode): a mailto:
    link's domain; None when there is none."""
    if url[:7].lower() == "mailto:":
        domain = url[7:].split("?", 1)[0].rpartition("@")[2]
        url = f"http://{domain}"
    try:
        host = yarl.URL(url).raw_host
    except (ValueError, IndexError):  # yarl's IndexError: `https://@a]"\nb[@`
        return None
    return host.lower().rstrip(".") if host else None


def honest_label(label: str, url: str) -> bool:
    """Whether `label` may be shown for a link to `url`: it must show something, and
    every address it reads as (a URL, a domain, an e-mail) must be the link's own
    host or a parent of it. A link whose text names another place than where it
    leads is how phishing looks; the bot never makes one from what an API said."""
    if _REORDERS.search(label):
        return False
    seen = _UNSEEN.sub("", unicodedata.normalize("NFKC", label)).translate(_DOTS).strip()
    if not seen:
        return False
    host = address_of(url.strip())
    urls = _URL_HOST.findall(seen) if ":/" in seen else []
    named = [
        *urls,
        *_MAIL_DOMAIN.findall(seen),
        *_WWW.findall(seen),
        *_DOMAIN.findall(seen),
        *(name for name in _DOTTED.findall(seen) if _looks_alike(name)),
    ]
    for name in named:
        try:
            name = name.lower().rstrip(".").encode("idna").decode("ascii")
        except UnicodeError:
            return False
        if host is None or not (host == name or host.endswith("." + name)):
            return False
    return True


def _looks_alike(name: str) -> bool:
    """Whether a dotted name's last label, not all ASCII, passes for an ASCII one: a
    known top-level domain in look-alike letters, or ASCII letters mixed with them.
    A word of another alphabet alone (`Яндекс.Маркет`, `Müller.Ärzte`) does not."""
    last = name.rpartition(".")[2]
    if last.isascii():
        return False
    # Accents off (`cóm`), look-alikes as the letters they pass for (`соm`, `ᴄᴏᴍ`).
    bare = "".join(c for c in unicodedata.normalize("NFKD", last) if not unicodedata.combining(c))
    seen = bare.translate(_LOOK_ALIKES)
    if seen.isascii() and seen.lower() in _TLD_SET:
        return True
    # ASCII letters with letters of another script among them (`cօm`, an Armenian o).
    return any(char.isascii() for char in last) and any(
        char.isalpha() and not char.isascii() and not unicodedata.name(char, "").startswith("LATIN")
        for char in last
    )


# What a Markdown label shows of its marks: `acme.**dev**` reads as acme.dev, and
# Discord's spoiler bars `||` hide nothing of the letters.
_MARKUP = re.compile(r"[`*_~|]|<[^<>]*>")
_LABEL_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def honest_markdown_label(label: str, url: str) -> bool:
    """`honest_label` for a Markdown link's label: as written, and as shown (escapes
    and character references decoded, emphasis marks and tags out)."""
    shown = html.unescape(_LABEL_ESCAPE.sub(r"\1", label))
    plain = _MARKUP.sub("", shown)
    return honest_label(label, url) and all(
        not text.strip() or honest_label(text, url) for text in (shown, plain)
    )


class MarkdownLink(NamedTuple):
    """A link or image in standard Markdown: where it starts and ends, its label as
    written, and its URL as a reader follows it (escapes and references decoded)."""

    start: int
    end: int
    label: str
    url: str


# What a paragraph's links are read by: an escape, a backtick run, an opening or
# closing bracket, and `<`, which may open an autolink or a tag (they hide brackets).
_INLINE = re.compile(r"\\[!-/:-@\[-`{-~]|`+|!?\[|\]|<")
_TICKS = re.compile(r"`+")
_LABEL_OR_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_AUTOLINK_OR_TAG = re.compile(
    r"<(?:[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\x00-\x20<>]*"  # <https://…>
    rf"|[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL_OR_NAME}(?:\.{_LABEL_OR_NAME})*"  # <a@b.c>
    r"|[A-Za-z][A-Za-z0-9-]*(?:\s+[A-Za-z_:][\w.:-]*"  # an opening tag, its attributes
    r"(?:\s*=\s*(?:[^\s\"'=<>`]+|'[^']*'|\"[^\"]*\"))?)*\s*/?"
    r"|/[A-Za-z][A-Za-z0-9-]*\s*)>"  # a closing tag
)
# Between `(` and a destination, or a destination and its title: spaces, and one
# line break (past a block quote's marks).
_GAP = re.compile(r"[ \t]*(?:\n[ \t]*(?:>[ \t]*)*)?")
_POINTY = re.compile(r"<((?:[^<>\n\\]|\\.)*)>")
_DESTINATION_STOP = re.compile(r"[\x00-\x20\x7f()\\]")
_TITLE = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)", re.DOTALL)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def markdown_links(markdown: str) -> list[MarkdownLink]:
    """The links and images of standard Markdown as CommonMark reads them, outside
    fenced code and code spans, in the order they start (an image in a link's label
    after the link). The text is read once: linear time, whatever it holds."""
    links: list[MarkdownLink] = []
    fence = ""  # the marker of the fenced block the line is in
    quotes = ""  # the block quotes that block stands in
    paragraph = -1  # where the paragraph being read began
    offset = 0
    for line in markdown.split("\n"):
        inner = in_quotes(line, quotes) if fence else None
        if inner is not None:
            if closes_fence(fence, inner):
                fence = ""
            offset += len(line) + 1
            continue
        fence = ""  # (a block in a quote ends with it)
        marker = FENCE_LINE.match(line)
        if marker or not line.strip():
            if paragraph >= 0:
                _paragraph_links(markdown, paragraph, offset, links)
                paragraph = -1
            fence, quotes = (marker.group(3), quotes_of(marker)) if marker else ("", "")
        elif paragraph < 0:
            paragraph = offset
        offset += len(line) + 1
    if paragraph >= 0:
        _paragraph_links(markdown, paragraph, len(markdown), links)
    links.sort(key=lambda link: link.start)
    return links


def _paragraph_links(text: str, start: int, end: int, links: list[MarkdownLink]) -> None:
    # The backtick runs of each length, for the one that closes a code span.
    runs: dict[int, list[int]] = {}
    if "`" in text[start:end]:
        for run in _TICKS.finditer(text, start, end):
            runs.setdefault(run.end() - run.start(), []).append(run.start())
    looked: dict[int, int] = {}  # run length -> how many of its runs lie behind
    openers: list[tuple[int, bool]] = []  # where a `[` or `![` opened; an image's?
    inert = start  # a link holds no link: no `[` before this opens one any more
    pos = start
    while token := _INLINE.search(text, pos, end):
        pos = token.end()
        kind = token.group()
        if kind[0] == "\\":
            continue  # an escaped mark is text
        if kind[0] == "`":
            # A code span closes at the next run of as many backticks, if any.
            length = len(kind)
            starts = runs.get(length, [])
            at = looked.get(length, 0)
            while at < len(starts) and starts[at] < pos:
                at += 1
            looked[length] = at
            if at < len(starts):
                pos = starts[at] + length
        elif kind == "<":
            tag = _AUTOLINK_OR_TAG.match(text, token.start(), end)
            if tag:
                pos = tag.end()
        elif kind[-1] == "[":
            openers.append((token.start(), kind[0] == "!"))
        elif kind == "]" and openers:
            opened, image = openers.pop()
            if (image or opened >= inert) and pos < end and text[pos] == "(":
                destination = _destination(text, pos, end)
                if destination is None:
                    continue
                pos, url = destination
                label = text[opened + (2 if image else 1) : token.start()]
                links.append(MarkdownLink(opened, pos, label, url))
                if not image:
                    inert = pos


def _destination(text: str, at: int, end: int) -> tuple[int, str] | None:
    """Where the destination `(url "title")` opening at `at` ends, and its URL."""
    gap = _GAP.match(text, at + 1, end)
    i = gap.end() if gap else at + 1
    if i < end and text[i] == "<":
        pointy = _POINTY.match(text, i, end)
        if pointy is None:
            return None
        url, i = pointy.group(1), pointy.end()
    else:
        # Up to a space or a `)` that closes no `(` of its own (32 deep at most).
        depth, j = 0, i
        while stop := _DESTINATION_STOP.search(text, j, end):
            j, char = stop.end(), stop.group()
            if char == "\\":
                j += j < end and text[j] in _PUNCTUATION
            elif char == "(":
                depth += 1
                if depth > 32:
                    return None
            elif char == ")" and depth:
                depth -= 1
            else:
                j = stop.start()
                break
        else:
            j = end
        if depth:
            return None
        url, i = text[i:j], j
    gap = _GAP.match(text, i, end)
    if gap and gap.end() > i:
        title = _TITLE.match(text, gap.end(), end)
        i = title.end() if title else gap.end()
        gap = _GAP.match(text, i, end)
        i = gap.end() if gap else i
    if i < end and text[i] == ")":
        return i + 1, html.unescape(_ESCAPE.sub(r"\1", url))
    return None


# The widest column a table is padded to (monospace columns).
GRID_COLUMN_MAX = 40
# A cell wholly bold, or wholly one code span: shown without its marks (they would
# be clutter in monospace text). Marks within a cell stay as written: stripped, they
# would take `__init__`'s underscores, or the `**` of `x**2` in code.
_WHOLE_BOLD = re.compile(r"(\*\*|__)(\S(?:.*\S)?)\1")
_WHOLE_CODE = re.compile(r"(`+)([^`](?:.*[^`])?)\1")


def _cells(row: str) -> list[str]:
    """A table row's cells: split at `|` outside code spans and not escaped (`\\|`
    stays as written: shown bare, it would read as a column's border)."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    if "`" not in row and "\\" not in row:
        return [_bare(cell) for cell in row.split("|")]
    cells: list[str] = []
    start = i = 0
    n = len(row)
    while i < n:
        c = row[i]
        if c == "\\":
            i += 2
        elif c == "`":  # a code span, `|` and all, up to its closing run
            run = _run_end(row, i)
            closing = row.find(row[i:run], run)
            i = closing + run - i if closing != -1 else run
        elif c == "|":
            cells.append(row[start:i])
            start = i = i + 1
        else:
            i += 1
    cells.append(row[start:])
    return [_bare(cell) for cell in cells]


def _bare(cell: str) -> str:
    cell = cell.strip()
    for pattern in (_WHOLE_BOLD, _WHOLE_CODE):
        whole = pattern.fullmatch(cell)
        if whole and whole.group(1) not in whole.group(2):
            return whole.group(2).strip() if pattern is _WHOLE_CODE else whole.group(2)
    return cell


def _run_end(text: str, at: int) -> int:
    end = at
    while end < len(text) and text[end] == text[at]:
        end += 1
    return end


def text_width(text: str) -> int:
    """Columns `text` takes in monospace: wide (East Asian, most emoji) characters two;
    marks, format characters (zero-width ones), variation selectors and skin tones
    none (a character made an emoji by its selector, ❤️, two); emoji joined by a
    zero-width joiner (a family) count as the first one."""
    if text.isascii():
        return len(text)
    width = last = 0
    joined = False
    for c in text:
        if c == "\u200d":
            joined = True
            continue
        if joined:
            joined = False
            continue
        if c == "\ufe0f" and last == 1:  # shown as an emoji (❤️): two columns
            width += 1
            last = 2
            continue
        if (
            unicodedata.category(c) in ("Mn", "Me", "Cf")
            or "\ufe00" <= c <= "\ufe0f"
            or "\U0001f3fb" <= c <= "\U0001f3ff"
        ):
            continue
        last = 2 if unicodedata.east_asian_width(c) in "WF" else 1
        width += last
    return width


def table_grid(rows: list[str]) -> list[str]:
    """A Markdown table's lines (its header, rule and rows) as aligned monospace lines.

    Platforms without tables show them as preformatted text: padded so that
    columns line up, right-aligned or centred as the rule's colons say. A cell
    wholly bold or wholly one code span is shown without its marks (they would
    be clutter); marks within a cell stay as written. A cell wider than
    `GRID_COLUMN_MAX` runs over its column rather than pad every other row of
    it (which would lengthen the answer by as much a row).
    """
    parsed: list[list[str] | None] = []
    aligns: list[str] = []
    for row in rows:
        if not aligns and parsed and TABLE_RULE.match(row):
            aligns = [_align(cell) for cell in _cells(row)]
            parsed.append(None)
        else:
            parsed.append(_cells(row))
    columns = max(len(cells) for cells in parsed if cells is not None) if any(parsed) else 0
    widths = [0] * columns
    for cells in parsed:
        for j, cell in enumerate(cells or ()):
            width = text_width(cell)
            if width <= GRID_COLUMN_MAX:  # a long cell overflows; it widens no other
                widths[j] = max(widths[j], width)
    out = []
    for cells in parsed:
        if cells is None:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
            continue
        cells = cells + [""] * (columns - len(cells))
        out.append(
            "|"
            + "|".join(
                f" {_pad(cell, widths[j], aligns[j] if j < len(aligns) else 'left')} "
                for j, cell in enumerate(cells)
            )
            + "|"
        )
    return out


def _align(rule_cell: str) -> str:
    if rule_cell.endswith(":"):
        return "center" if rule_cell.startswith(":") else "right"
    return "left"


def _pad(cell: str, width: int, align: str) -> str:
    room = width - text_width(cell)
    if align == "right":
        return " " * room + cell
    if align == "center":
        return " " * (room // 2) + cell + " " * (room - room // 2)
    return cell + " " * room


def source_title(title: str) -> str:
    """A source's title as its link shows it: on one line (a line break would break
    the link), cut between graphemes to `SOURCE_TITLE_MAX` characters."""
    title = " ".join(title.split())
    if len(title) > SOURCE_TITLE_MAX:
        title = title[: grapheme_start(title, SOURCE_TITLE_MAX - 1, 1)].rstrip() + "…"
    return title
