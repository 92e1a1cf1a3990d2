"""The bot's own mention in a question, as both platforms read it for the chat API.

A mention that only addresses the bot ("@bot, what is …", "… thanks @bot") says
nothing to the chat API and goes. One within the sentence is a word of it ("what
can @bot do for me?"): it becomes the bot's name, so the question stays whole.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s*")
# "@bot, what…", "@bot: what…", "@bot、これは…" (and the full-width forms).
_AFTER_LEADING = re.compile(r"\s*(?:[,:、，：；]\s*)?")
_BETWEEN_TRAILING = re.compile(r"\s*(?:[,、，]\s*)?")
_END = re.compile(r"[\s.?!。？！…]*")  # "… thanks @bot!", "谢谢，@bot。"


def without_mention(text: str, mention: str, name: str) -> str:
    """`text` without the bot's mentions (`mention`, a regular expression) at its start
    (with a "," or ":" after them) or at its end (before closing punctuation, with a
    "," before them), and with `name` in place of each of the others."""
    # Found once, then the text between them is looked at: a regular expression for
    # "mentions up to the end" would read a long run of them again from each one.
    spans = [m.span() for m in re.finditer(mention, text)]
    if not spans:
        return text
    lead, at = 0, 0
    while lead < len(spans) and (_SPACE if lead == 0 else _AFTER_LEADING).fullmatch(
        text, at, spans[lead][0]
    ):
        at = spans[lead][1]
        lead += 1
    gap = _AFTER_LEADING.match(text, at) if lead else None
    start = gap.end() if gap is not None else 0
    trail = len(spans)
    if lead < trail and _END.fullmatch(text, spans[-1][1]):
        trail -= 1
        while trail > lead and _BETWEEN_TRAILING.fullmatch(
            text, spans[trail - 1][1], spans[trail][0]
        ):
            trail -= 1
    end = spans[trail][0] if trail < len(spans) else len(text)
    out: list[str] = []
    for begin, finish in spans[lead:trail]:
        out.append(text[start:begin])
        out.append(name)
        start = finish
    out.append(text[start:end])
    kept = "".join(out)
    if trail < len(spans):  # the closing punctuation stays, the comma before them goes
        kept = kept.rstrip().rstrip(",、，").rstrip() + text[spans[-1][1] :].lstrip()
    return kept
