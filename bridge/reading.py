"""Reading one answer: a chat API's events fed to the live reply that shows them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from bridge.errors import TooLong
from bridge.interfaces import (
    READ_GATE,
    ChatEvent,
    Done,
    Session,
    Source,
    Sources,
    Status,
    Token,
)
from bridge.render import LiveReply
from bridge.text import TokenText, valid_text


class _Pace:
    """What an answer's reading puts in `READ_GATE`: a reply's `pace`, until the
    answer is read.

    Connections and timers made while an answer streams keep a copy of the
    context they were made in, a pooled connection for as long as it stays
    open. Closed, this holds nothing, so such a copy no longer keeps the
    finished reply alive, with its text and its platform target.
    """

    __slots__ = ("_pace",)

    def __init__(self, pace: Callable[[], Awaitable[None]]) -> None:
        self._pace: Callable[[], Awaitable[None]] | None = pace

    async def __call__(self) -> None:
        pace = self._pace
        if pace is not None:
            await pace()

    def close(self) -> None:
        self._pace = None


async def read_answer(
    stream: AsyncGenerator[ChatEvent, None],
    reply: LiveReply,
    *,
    cap: int | None,
    on_first_token: Callable[[], None],
    keep_session: Callable[[str], Awaitable[None]],
) -> tuple[Done | None, list[Source]]:
    """Feed a chat API's events to the live reply; the Done event and the sources.

    Raises TooLong once the text passes `cap` characters (what fits is shown,
    and closing the stream stops the answer), and the reply's `gone` once
    nobody can see the rest.
    """
    sources: list[Source] = []
    done: Done | None = None
    first_token = True
    tokens = TokenText()
    # The stream's next tokens gather in the network while the reply could
    # not show them anyway: its reads wait for the reply's edits.
    pace = _Pace(reply.pace)
    gate = READ_GATE.set(pace)
    try:
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if reply.gone is not None:
                    raise reply.gone  # nobody can see the rest: stop asking for it
                if isinstance(event, Token):
                    if first_token:
                        first_token = False
                        on_first_token()
                    text = tokens.clean(event.text)
                    if cap is not None and len(reply.text) + len(text) > cap:
                        reply.feed(text[: cap - len(reply.text)])
                        raise TooLong(cap)
                    reply.feed(text)
                elif isinstance(event, Sources):
                    # Mended as the text is: a half of a UTF-16 pair in a URL
                    # would fail its encoding, and the answer's end with it.
                    sources.extend(
                        Source(valid_text(s.url), valid_text(s.title)) for s in event.items
                    )
                elif isinstance(event, Status):
                    reply.set_status(event.text)
                elif isinstance(event, Session):
                    await keep_session(event.session)
                elif isinstance(event, Done):
                    done = event
        if tail := tokens.rest():
            reply.feed(tail)
    finally:
        READ_GATE.reset(gate)
        pace.close()
    return done, sources
