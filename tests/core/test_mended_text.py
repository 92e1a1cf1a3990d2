"""Text a chat API sends broken (half an emoji, a NUL): shown and kept mended."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.core.relay_support import bridge_for, platform, stateless_bridge
from tests.fakes.chatapi import FakeChatAPI


async def test_a_source_holding_half_an_emoji_is_shown_mended(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # Sent as a JSON "\ud83d" escape by a server cutting UTF-16 pairs: encoding the
    # URL failed, and the finished answer ended "something went wrong".
    fake_chat_api.enqueue(
        tokens=["Bridges carry roads."], sources=[("https://a.example/\ud83d", "Roads \ud83d")]
    )
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Bridges?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == [
        "Bridges carry roads.\n\nSources: [Roads \ufffd](https://a.example/\ufffd)"
    ]


async def test_a_whole_answer_holding_half_an_emoji_is_shown_mended(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # The whole answer an API sends at its end wins over its tokens: mended as they are.
    fake_chat_api.enqueue(tokens=["Hi "], final="Hi \ud83d there")
    async with bridge_for(fake_chat_api, tmp_path / "b.db") as bridge:
        target = await platform(bridge).say("Hello?")
        await asyncio.wait_for(target.ended.wait(), 10)
    assert target.visible() == ["Hi \ufffd there"]


async def test_an_emoji_cut_in_halves_and_a_nul_are_kept_as_text(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A server cutting text by UTF-16 units sends an emoji's halves in two
    # tokens; no store keeps a half (or a NUL), and the turn was lost.
    fake_chat_api.enqueue(
        tokens=["Smile \ud83d", "\ude00 done", "\x00.", " \ud83d"], token_delay=0.01
    )
    fake_chat_api.enqueue(tokens=["Again."])
    async with stateless_bridge(fake_chat_api, tmp_path / "b.db") as bridge:
        first = await platform(bridge).say("Smile?", channel="C1")
        await asyncio.wait_for(first.ended.wait(), 10)
        second = await platform(bridge).say("And again?", channel="C1")
        await asyncio.wait_for(second.ended.wait(), 10)
    assert first.visible() == ["Smile \U0001f600 done. \ufffd"]
    sent = [m["content"] for m in fake_chat_api.requests[1].json["messages"]]
    assert sent == ["Smile?", "Smile \U0001f600 done. \ufffd", "And again?"]
