"""The sources an answer cites: which are shown, and in how many blocks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from bridge.interfaces import Source

log = logging.getLogger("chat_bridge.sources")


def dedupe_sources(sources: Sequence[Source], limit: int) -> list[Source]:
    """Web sources (http, https) in first-seen order, once per URL, at most `limit`.

    Anything else (`javascript:`, `about:blank`, `#`, a relative path) is no link a
    reader can follow, and would take the place of one that is.
    """
    seen: set[str] = set()
    out: list[Source] = []
    if limit <= 0:  # `reply.sources.max: 0`: no sources shown
        return out
    for source in sources:
        url = source.url.strip()
        if not url.lower().startswith(("http://", "https://")):
            continue
        same = _same_page(url)
        if same in seen:
            continue
        seen.add(same)
        out.append(source)
        if len(out) >= limit:
            break
    return out


def _same_page(url: str) -> str:
    """What two URLs of one page share: the scheme and host in any case, a default
    port or a trailing slash or not (`HTTPS://X.example:443/a/` is `https://x.example/a`)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # no URL Python can read (`https://[::1`): itself only
        return url
    scheme = parts.scheme.lower()
    host = parts.netloc.lower().removesuffix(":443" if scheme == "https" else ":80")
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def source_blocks(
    sources: Sequence[Source], fmt: Callable[[Sequence[Source]], str], limit: int
) -> list[str]:
    """The sources block as `fmt` writes it, as several where one would pass `limit`
    characters: split between sources, never inside a link. A source whose link alone
    passes the limit (a URL of thousands of characters) cannot be shown: it is left out."""
    shown = [source for source in sources if len(fmt([source])) <= limit]
    if len(shown) < len(sources):
        log.info(
            "left out %d source(s) whose link is longer than a message", len(sources) - len(shown)
        )
    blocks: list[str] = []
    group: list[Source] = []
    for source in shown:
        if group and len(fmt([*group, source])) > limit:
            blocks.append(fmt(group))
            group = []
        group.append(source)
    blocks.append(fmt(group) if group else "")
    return blocks
