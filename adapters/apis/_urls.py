"""Where a dialect's requests go: an endpoint under the backend's `url`, its query kept.

A `url` may carry a query the API or a gateway in front of it needs (Azure's
`?api-version=`, a gateway's `?tenant=`). An endpoint's path goes before it, not
after, and a request's own parameters are added to it: httpx's `params=` would
replace the whole query. The url is otherwise kept as written (its
percent-escapes, its query's own encoding): a gateway may check it as signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_plus, urlencode


def under(url: str, path: str) -> str:
    """The endpoint `path` ("/newMessage") under `url`'s path, `url`'s query after both."""
    base, mark, query = url.partition("#")[0].partition("?")  # a fragment is never sent
    return base.rstrip("/") + path + mark + query


def with_params(url: str, params: Mapping[str, str] | None) -> str:
    """`url` with `params` added to its query, each in place of one of the same name there."""
    if not params:
        return url
    base, _, query = url.partition("#")[0].partition("?")
    kept = [p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) not in params]
    return f"{base}?{'&'.join([*kept, urlencode(params)])}"
