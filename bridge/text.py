"""A chat API's text made Unicode text: what no store keeps, and no platform shows, mended."""

from __future__ import annotations

import re

# What a chat API's text may hold that is no Unicode text: halves of UTF-16 pairs
# (a JSON "\ud83d" that a server cut from its "\ude00") and NUL. No store keeps them.
_ODD = re.compile("[\ud800-\udfff\x00]")


def valid_text(text: str) -> str:
    """`text` as Unicode: UTF-16 halves side by side paired, any other one U+FFFD, NUL gone."""
    if _ODD.search(text) is None:
        return text
    paired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return paired.replace("\x00", "")


class TokenText:
    """A stream's tokens made `valid_text`, a pair's halves in two tokens joined."""

    __slots__ = ("_high",)

    def __init__(self) -> None:
        self._high = ""  # the first half of a pair, waiting for the next token

    def clean(self, text: str) -> str:
        if self._high:
            text, self._high = self._high + text, ""
        if _ODD.search(text) is None:
            return text
        if "\ud800" <= text[-1] <= "\udbff":
            text, self._high = text[:-1], text[-1]
        return valid_text(text)

    def rest(self) -> str:
        """What is left at the stream's end: a half that never found its pair."""
        return "\ufffd" if self._high else ""
