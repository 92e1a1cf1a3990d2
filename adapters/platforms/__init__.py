"""Chat platforms, one package or module each; registered in adapters.registry."""

from urllib.parse import quote

import yarl

ZWSP = "\u200b"


def break_fences(text: str) -> str:
    """`text` with every ``` broken by zero-width spaces: inside a code block or a
    preformatted span, it cannot end it."""
    return text.replace("```", f"`{ZWSP}`{ZWSP}`")


def encoded_url(url: str) -> str:
    """`url` with everything but URL syntax percent-encoded (spaces, `<`, `>`, line
    breaks): an API's URL can neither end the link it is put in nor break its line."""
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~-._")


def plain_url(value: str) -> str:
    """`value`, a URL without a user or password and with a valid host and port;
    else ValueError, which never echoes it (what precedes an @ is a password)."""
    if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError("must not carry a user or password (user:password@host)")
    try:
        host = yarl.URL(value).host
    except ValueError:
        host = None
    if not host or any(c.isspace() for c in value):
        raise ValueError("is not a valid URL (check its host and port)")
    return value
