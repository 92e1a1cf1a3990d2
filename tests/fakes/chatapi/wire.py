"""Encoding the fake chat API's events: SSE and NDJSON lines, ids, reasons."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any


def _sse(event: Any) -> bytes:
    return b"data: " + _compact(event) + b"\n\n"


def _line(event: Any) -> bytes:
    return _compact(event) + b"\n"


def _compact(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # half a UTF-16 pair: sent escaped, as a JSON server would
        return json.dumps(value, separators=(",", ":")).encode()


_counter = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_counter):06d}{uuid.uuid4().hex[:8]}"


def _reason(status: int) -> str:
    return {
        400: "Bad request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not found",
        422: "Unprocessable entity",
        429: "Too many requests",
    }.get(status, "Internal server error")
