"""Helpers of the LiveReply tests: a step of its flusher, tokens fed as the relay feeds them."""

from __future__ import annotations

import asyncio

from bridge.flag import Flag
from bridge.render import LiveReply


async def _settle() -> None:
    """Let the reply's flusher task take its next step."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _stream(reply: LiveReply, tokens: list[str], gap: float) -> None:
    for token in tokens:
        reply.feed(token)
        await asyncio.sleep(gap)  # the pace of an API's token stream


async def _read_like_the_relay(reply: LiveReply, tokens: list[str], gap: float) -> None:
    """Tokens reach the network every `gap` s; the reader paces itself on the reply
    (as READ_GATE makes it) and takes everything that arrived at each read."""
    arrived: list[str] = []
    more = Flag()

    async def network() -> None:
        for token in tokens:
            await asyncio.sleep(gap)
            arrived.append(token)
            more.set()

    sender = asyncio.create_task(network())
    first = True
    while not (sender.done() and not arrived):
        if not first:
            await reply.pace()
        first = False
        while not arrived and not sender.done():
            more.clear()
            await more.wait()
        reply.feed("".join(arrived))
        arrived.clear()
    await sender
