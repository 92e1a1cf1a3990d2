"""What both platforms' markup needs: zero-width breaks, closed fences, safe URLs, and
link labels that name no other place than where the link leads."""

from __future__ import annotations

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
    seen = _UNSEEN.sub("", unicodedata.normalize("NFKC", label)).translate(_DOTS).strip()
    if not seen:
        return False
    host = address_of(url.strip())
    urls = _URL_HOST.findall(seen) if ":/" in seen else []
    named = [*urls, *_MAIL_DOMAIN.findall(seen), *_WWW.findall(seen), *_DOMAIN.findall(seen)]
    for name in named:
        try:
            name = name.lower().rstrip(".").encode("idna").decode("ascii")
        except UnicodeError:
            return False
        if host is None or not (host == name or host.endswith("." + name)):
            return False
    return True
