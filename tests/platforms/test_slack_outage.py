"""Slack's Web API out of reach for a while (503s) while Socket Mode stays up: no answer
is lost for it. The real Bridge, the fake Slack, the fake chat API."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bridge import render
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.test_slack_e2e import CHANNEL, open_harness


class OutageSlack(FakeSlack):
    """A Slack whose Web API answers 503 (with Slack's JSON error body) while `down`;
    Socket Mode's own method still answers, so questions keep coming."""

    down = False

    def __init__(self) -> None:
        super().__init__()
        self.outage_503s: Counter[str] = Counter()  # method -> 503s answered

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.down and method != "apps.connections.open":
            self.outage_503s[method] += 1
            self._touch()
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        return await super()._api(request)


@pytest.fixture
async def slack() -> AsyncIterator[OutageSlack]:
    fake = OutageSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_a_question_asked_while_slack_is_out_of_reach_is_answered_once_it_is_back(
    slack: OutageSlack, fake_chat_api: FakeChatAPI, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was answered and paid for, then shown nowhere: the reply gave up within
    # 16 s, as if Slack had refused it, and its record went with it.
    monkeypatch.setattr(render, "FINAL_RETRIES", 0)  # what a refusal gets: not this
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.1)
    fake_chat_api.enqueue(tokens=["Answer ", "one."])
    h, bridge = await open_harness(slack, fake_chat_api, tmp_path, "socket")
    try:
        slack.down = True
        root = await h.ask(CHANNEL, "asked while Slack's Web API is down")
        await wait_for(lambda: len(fake_chat_api.requests) == 1)
        # More tries than a refused reply makes (its placeholder, its final text, and
        # the failure's notice in its place): one a second, as Slack's budget allows.
        await slack.wait_for(lambda: slack.outage_503s["chat.postMessage"] >= 5)
        assert bridge.relay.live == 1  # still trying
        slack.down = False
        [reply] = await h.answer(CHANNEL, root, "Answer one.")
        assert reply.text == "Answer one."
        await wait_for(lambda: bridge.relay.live == 0)
        assert len(fake_chat_api.requests) == 1  # asked once, shown once
        assert await bridge.store.inflight_orphans("nobody", float("inf")) == []
    finally:
        await bridge.aclose()


async def test_a_reply_slack_stays_out_of_reach_for_is_marked_by_the_next_start(
    slack: OutageSlack, fake_chat_api: FakeChatAPI, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its record was deleted as it gave up: it stayed frozen mid-answer, unmarked,
    # with nothing left to mark it.
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.5)
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.1)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(10)], token_delay=0.1)
    h, bridge = await open_harness(slack, fake_chat_api, tmp_path, "socket")
    try:
        root = await h.ask(CHANNEL, "first?")
        await slack.wait_for(lambda: any("w2" in m.text for m in slack.bot_replies(CHANNEL, root)))
        slack.down = True
        await wait_for(lambda: bridge.relay.live == 0, timeout=20)  # given up
        [kept] = await bridge.store.inflight_orphans("nobody", float("inf"))
        assert kept.message_ids and "w2" in kept.text
    finally:
        await bridge.aclose()
    [frozen] = slack.bot_replies(CHANNEL, root)
    assert "interrupted" not in frozen.text
    slack.down = False  # Slack is back by the next start, which marks it
    h, bridge = await open_harness(slack, fake_chat_api, tmp_path, "socket")
    try:
        [reply] = slack.bot_replies(CHANNEL, root)
        assert reply.text.startswith("w0 w1 w2 ")
        assert reply.text.endswith("_⚠️ interrupted by a restart — please ask again_")
        assert await bridge.store.inflight_orphans("nobody", float("inf")) == []
    finally:
        await bridge.aclose()
