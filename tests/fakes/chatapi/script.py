"""The fake chat API's scripted answers, and its record of requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOKENS = ("Hello", " from", " the", " fake", ".")


@dataclass
class Script:
    """One scripted answer. Counters (`*_after`) count tokens already sent.

    `cut_after` ends the body cleanly without the terminal event; `drop_after`
    closes the connection mid-body; `hang_after` stops sending until the client
    hangs up; `malformed_after` inserts one unparsable line; `error_after`
    sends the API's error event; `unended_after` sends 2 MiB of token lines
    with no blank line between them (SSE: one event that never ends) and ends
    the body. `status`/`body`/`headers` answer with an error (429:
    `retry_after` sets Retry-After, `reset_in` X-RateLimit-Reset).
    chaturdata: the run completes on poll number `polls` with `run_status`;
    `hang_after`/`malformed_after` count polls instead of tokens (each hits one
    poll: the next answers), the poll
    after `limited_after` polls is answered 429 (Retry-After: `retry_after`),
    and the one after `failed_after` polls 502 (`error` its message; `failed_polls`
    of them in a row).
    """

    tokens: list[str] | None = None
    sources: list[tuple[str, str]] = field(default_factory=list)
    final: str | None = None
    first_delay: float = 0.0  # before the first token (a stream's opening event comes at once)
    gate: asyncio.Event | None = None  # set by the test: the first token waits for it too
    token_delay: float = 0.0
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    malformed_after: int | None = None
    hang_after: int | None = None
    drop_after: int | None = None
    error_after: int | None = None
    unended_after: int | None = None
    error: str = "Internal server error"
    usage: dict[str, Any] | None = None
    session_id: str | None = None
    retry_after: float | None = None
    reset_in: float | None = None
    conversation_id: str | None = None
    bare: bool = False
    polls: int = 1
    limited_after: int | None = None
    failed_after: int | None = None
    failed_polls: int = 1  # polls answered 502 in a row from `failed_after` on
    run_status: str = "completed"
    file_citations: list[tuple[str, str]] = field(default_factory=list)
    finish_reason: str = "stop"  # openai: "length" (max_tokens reached), "content_filter"
    # openai: how `error_after` says its error, as servers do: "data" (OpenAI's
    # `data: {"error": ...}`), "event" (`event: error`, a bare message object) or
    # "field" (llama.cpp's `error: {...}` line, then `data: [DONE]`).
    error_form: str = "data"
    ignore_stream: bool = False  # openai: the whole answer as JSON, though a stream was asked
    # openai: how `sources` are cited: "annotations" (url_citation, OpenAI's and
    # OpenRouter's) or "citations" (Perplexity's URL list in every chunk, titled by
    # its search_results).
    cite_form: str = "annotations"
    # SSE comments (": keep-alive") during first_delay: one at once, then this often.
    keepalive_every: float = 0.0
    one_newline: bool = False  # chatmount: events end at one newline, not SSE's blank line

    @property
    def token_list(self) -> list[str]:
        return list(DEFAULT_TOKENS if self.tokens is None else self.tokens)

    @property
    def answer(self) -> str:
        return self.final if self.final is not None else "".join(self.token_list)


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    query: dict[str, str]
    at: float = 0.0  # time.monotonic() as it came
