"""A slash command: delivered as the core's reset, its envelope acknowledged empty; its
reply posted to the command's response_url, or where that fails, ephemerally to its asker."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.platforms.slack import SlackPlatform
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Inbox, running


class ResponseUrlSlack(FakeSlack):
    """A Slack whose response_urls answer their next posts as `answers` says, one each:
    an HTTP status, nothing taken, or None: no answer until the fake stops."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[int | None] = []
        self._stopping = asyncio.Event()

    async def _response_url(self, request: web.Request) -> web.Response:
        if not self.answers:
            return await super()._response_url(request)
        status = self.answers.pop(0)
        self._touch()
        if status is None:
            await self._stopping.wait()  # long past the client's timeout
            status = 503
        return web.Response(status=status, text="Slack is having trouble")

    async def stop(self) -> None:
        self._stopping.set()
        await super().stop()


@pytest.fixture
async def slack() -> AsyncIterator[ResponseUrlSlack]:
    fake = ResponseUrlSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def refused_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/commands/response/1"


@pytest.mark.parametrize(
    ("which", "warned"),
    [
        ("500", "slack: response_url answered 500"),
        ("refused", "slack: response_url unreachable"),
        # aiohttp's total timeout raises TimeoutError, not a ClientError.
        ("no answer", "slack: response_url did not answer in time"),
    ],
)
async def test_a_reset_reply_whose_response_url_fails_reaches_its_asker(
    slack: ResponseUrlSlack, caplog: pytest.LogCaptureFixture, which: str, warned: str
) -> None:
    inbox = Inbox()
    async with running(slack, inbox, timeout=0.5):
        fields = slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
        if which == "refused":
            fields["response_url"] = refused_url()
        else:
            slack.answers.append(500 if which == "500" else None)
        await slack.wait_ack(await slack.send_envelope("slash_commands", fields))
        await inbox.wait(1)
        _, target = inbox.items[0]
        await target.notice("Started a new conversation.")
    assert slack.responses == []
    assert [(m["user"], m["text"]) for m in slack.ephemerals] == [
        ("U0USER001", "Started a new conversation.")
    ]
    ours = [r for r in caplog.records if r.name.startswith("chat_bridge")]
    said = [r.getMessage() for r in ours]
    assert warned in said, said
    assert all(r.levelno <= logging.WARNING for r in ours), said
    # A response_url answers the command for half an hour, to whoever has it.
    assert not [s for s in said if "/commands/response/" in s], said


async def test_slash_command_delivers_reset_and_answers_ephemerally(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
    env = await fake_slack.send_envelope("slash_commands", fields)
    assert await fake_slack.wait_ack(env) is None  # empty ack: nothing shown in the channel
    [msg] = await inbox.wait(1)
    assert msg.command == "reset" and msg.channel == CHANNEL and msg.user == "U0USER001"
    assert msg.event_id == f"command:{fields['trigger_id']}"
    _, target = inbox.items[0]
    await target.notice("Started a new conversation.")
    assert fake_slack.responses == [
        {"response_type": "ephemeral", "text": "Started a new conversation."}
    ]
    assert fake_slack.bot_replies(CHANNEL) == []
