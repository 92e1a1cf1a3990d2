"""Chat platforms, one package or module each; registered in adapters.registry."""

import re
import unicodedata
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


# What no reader sees: zero-width characters, the soft hyphen, the byte-order mark.
_UNSEEN = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
# A domain in a label (`bank.example`, `https://bank.example/x`, `me@bank.example`);
# not a name no host can have (`config_example.yaml`: hosts hold no `_`).
_DOMAIN = re.compile(r"(?<![\w.-])(?:[^\W_]+(?:-+[^\W_]+)*\.)+[^\W\d_]{2,}(?![\w-])")


def address_of(url: str) -> str | None:
    """The host a link leads to, as DNS knows it (an IDN in punycode): a mailto:
    link's domain; None when there is none."""
    if url[:7].lower() == "mailto:":
        domain = url[7:].split("?", 1)[0].rpartition("@")[2]
        url = f"http://{domain}"
    try:
        host = yarl.URL(url).raw_host
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def honest_label(label: str, url: str) -> bool:
    """Whether `label` may be shown for a link to `url`: it must show something, and
    every address it reads as (a URL, a domain, an e-mail) must be the link's own
    host or a parent of it. A link whose text names another place than where it
    leads is how phishing looks; the bot never makes one from what an API said."""
    seen = _UNSEEN.sub("", unicodedata.normalize("NFKC", label)).strip()
    if not seen:
        return False
    host = address_of(url.strip())
    for named in _DOMAIN.findall(seen.lower()):
        try:
            named = named.encode("idna").decode("ascii")
        except UnicodeError:
            return False
        if host is None or not (host == named or host.endswith("." + named)):
            return False
    return True
