"""Chat platforms, one package or module each; registered in adapters.registry."""

from urllib.parse import quote

ZWSP = "\u200b"


def break_fences(text: str) -> str:
    """`text` with every ``` broken by zero-width spaces: inside a code block or a
    preformatted span, it cannot end it."""
    return text.replace("```", f"`{ZWSP}`{ZWSP}`")


def encoded_url(url: str) -> str:
    """`url` with everything but URL syntax percent-encoded (spaces, `<`, `>`, line
    breaks): an API's URL can neither end the link it is put in nor break its line."""
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~-._")
