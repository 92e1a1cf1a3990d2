"""The demo's stand-in chat API."""

from __future__ import annotations

import logging

import httpx
import pytest

from bridge.demo import StandInChatAPI


async def test_a_reader_leaving_mid_answer_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As when the demo is stopped with Ctrl-C while an answer streams.
    async with StandInChatAPI(token_delay=0.01) as api:
        async with httpx.AsyncClient() as client:
            body = {"message": "hi", "stream": True}
            headers = {"Authorization": f"Bearer {api.api_key}"}
            async with client.stream("POST", api.url, json=body, headers=headers) as response:
                async for chunk in response.aiter_bytes():
                    assert b'"type": "token"' in chunk
                    break  # leave with the answer half sent
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
