"""Helpers of the Slack tests: the adapter started against the fake Slack, and the whole
daemon (end to end) with the fake Slack reaching it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.platforms.slack import SlackOptions, SlackPlatform, SlackTarget
from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.flag import Flag
from bridge.interfaces import Inbound, PlatformContext, ReplyTarget
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeMessage, FakeSlack

CHANNEL = "C0GENERAL1"


CHANNEL_2 = "C0SUPPORT1"


GROUP_DM = "G0GROUPDM1"  # a group DM (mpim): routed like a channel


DM = "D0DIRECT01"


class Inbox:
    """A platform handler that records what it is given."""

    def __init__(self) -> None:
        self.items: list[tuple[Inbound, SlackTarget]] = []
        self._changed = asyncio.Event()

    async def __call__(self, inbound: Inbound, target: ReplyTarget) -> Flag:
        assert isinstance(target, SlackTarget)
        self.items.append((inbound, target))
        self._changed.set()
        taken = Flag()
        taken.set()
        return taken

    @property
    def inbound(self) -> list[Inbound]:
        return [i for i, _ in self.items]

    async def wait(self, n: int, timeout: float = 5.0) -> list[Inbound]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.items) < n:
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"expected {n} deliveries, got {len(self.items)}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.inbound


def options(fake: FakeSlack, http: bool = False, **kw: Any) -> SlackOptions:
    mode = {"signing_secret": fake.signing_secret} if http else {"app_token": fake.app_token}
    return SlackOptions(bot_token=fake.bot_token, api_url=fake.url, **mode, **kw)


async def started(
    fake: FakeSlack, inbox: Inbox, on_rate_limited: Callable[[], None] | None = None, **kw: Any
) -> SlackPlatform:
    context = PlatformContext(options=options(fake, **kw), on_rate_limited=on_rate_limited)
    platform = SlackPlatform(context)
    await platform.start(inbox)
    await fake.wait_socket()
    return platform


@asynccontextmanager
async def running(
    fake: FakeSlack, inbox: Inbox, on_rate_limited: Callable[[], None] | None = None, **kw: Any
) -> AsyncIterator[SlackPlatform]:
    """A started platform (Socket Mode), closed at the end."""
    platform = await started(fake, inbox, on_rate_limited, **kw)
    try:
        yield platform
    finally:
        await platform.aclose()


async def deliver(fake: FakeSlack, bodies: list[dict[str, Any]]) -> None:
    """Send event bodies over Socket Mode and wait until each is acknowledged."""
    for body in bodies:
        await fake.wait_ack(await fake.send_envelope("events_api", body))


def config_text(
    slack: FakeSlack, chat: FakeChatAPI, db: Path, mode: str, slack_extra: str = ""
) -> str:
    connection = (
        "app_token: ${SLACK_APP_TOKEN}"
        if mode == "socket"
        else ("signing_secret: ${SLACK_SIGNING_SECRET}")
    )
    channels = ", ".join([CHANNEL, CHANNEL_2, GROUP_DM, *[f"C0LOAD000{i}" for i in range(4)]])
    return f"""
store: sqlite://{db}
http: {{listen: "127.0.0.1:0"}}
backends:
  docs:
    kind: chatmount
    url: {chat.endpoint("chatmount")}
    api_key: ${{CHATMOUNT_API_KEY}}
slack:
  bot_token: ${{SLACK_BOT_TOKEN}}
  {connection}
  api_url: {slack.url}
  {slack_extra}
routes:
  - platform: slack
    channels: [{channels}]
    backend: docs
    trigger: mention
    session: thread
  - platform: slack
    dm: true
    backend: docs
    session: user
reply: {{edit_interval: 0.05}}
"""


@dataclass
class Harness:
    """The daemon under test and how Slack reaches it."""

    slack: FakeSlack
    chat: FakeChatAPI
    bridge: Bridge
    mode: str

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.bridge.http_port}/slack/events"

    async def send(self, body: dict[str, Any], retry: int = 0) -> None:
        if self.mode == "socket":
            envelope = await self.slack.send_envelope(
                "events_api", body, retry_attempt=retry, retry_reason="timeout" if retry else ""
            )
            await self.slack.wait_ack(envelope)
        else:
            status, _ = await self.slack.post_event(self.events_url, body, retry_num=retry or None)
            assert status == 200

    async def command(self, fields: dict[str, str]) -> None:
        if self.mode == "socket":
            await self.slack.wait_ack(await self.slack.send_envelope("slash_commands", fields))
        else:
            status, _ = await self.slack.post_command(self.events_url, fields)
            assert status == 200

    async def ask(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        mention: bool = True,
        user: str = "U0USER001",
    ) -> str:
        """Someone asks; returns the thread root the answer belongs in."""
        if mention and not channel.startswith("D"):
            text = f"<@{self.slack.bot_user_id}> {text}"
        bodies = self.slack.user_message(channel, text, thread_ts=thread_ts, user=user)
        for body in bodies:
            await self.send(body)
        return thread_ts or bodies[0]["event"]["ts"]

    async def answer(
        self, channel: str, root: str | None, final: str, n: int = 1
    ) -> list[FakeMessage]:
        """Wait until the reply in `root` ends with `final`; returns its messages."""

        def done() -> list[FakeMessage] | None:
            replies = [
                m
                for m in self.slack.bot_replies(channel, root)
                if root is not None or m.thread_ts is None
            ]
            if len(replies) >= n and replies[-1].text.endswith(final) and not replies[-1].streaming:
                return replies
            return None

        result: list[FakeMessage] = await self.slack.wait_for(done, timeout=30)
        return result

    async def follow_up_while_streaming(
        self, tokens: int, then: str | None = None
    ) -> tuple[str, tuple[str, str]]:
        """A question answered in `tokens` slow tokens, and a follow-up in its thread
        while it streams, shown as taken; the thread root and the follow-up's
        (channel, ts). `then` is the follow-up's answer, if it is to have one."""
        self.chat.enqueue(tokens=[f"w{i} " for i in range(tokens)], token_delay=0.05)
        if then is not None:
            self.chat.enqueue(tokens=[then])
        root = await self.ask(CHANNEL, "first?")
        slack = self.slack
        await slack.wait_for(lambda: any("w1" in m.text for m in slack.bot_replies(CHANNEL, root)))
        [body] = slack.user_message(CHANNEL, "and then?", thread_ts=root)
        await self.send(body)
        follow_up = (CHANNEL, body["event"]["ts"])
        await slack.wait_for(lambda: slack.reactions[follow_up])
        return root, follow_up

    async def sentinel(self) -> list[str]:
        """Ask in the DM and wait for its answer, so that every event sent before has
        been taken: the questions the chat API was asked, this one last."""
        self.chat.enqueue(tokens=["Sentinel."])
        n = len(self.slack.bot_replies(DM)) + 1
        await self.ask(DM, "sentinel")
        await self.answer(DM, None, "Sentinel.", n=n)
        return [r.json["message"] for r in self.chat.requests]


async def open_harness(
    slack: FakeSlack, chat: FakeChatAPI, tmp_path: Path, mode: str, slack_extra: str = ""
) -> tuple[Harness, Bridge]:
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "CHATMOUNT_API_KEY": chat.api_key,
    }
    text = config_text(slack, chat, tmp_path / "bridge.db", mode, slack_extra)
    config = parse_config(text, env=env, registry=REGISTRY)
    bridge = Bridge(config, REGISTRY)
    await bridge.__aenter__()
    if mode == "socket":
        await slack.wait_socket()
    return Harness(slack, chat, bridge, mode), bridge


def assert_clean(slack: FakeSlack) -> None:
    """Nothing Slack would have refused, rate limited, or pinged anyone with."""
    assert not slack.rejected, slack.rejected
    assert not slack.rate_limited, slack.rate_limited
    assert slack.pings == []


async def asked(
    fake: FakeSlack, inbox: Inbox, channel: str = CHANNEL, text: str = "q"
) -> SlackTarget:
    if not channel.startswith("D"):
        text = f"<@{fake.bot_user_id}> {text}"
    before = len(inbox.items)
    await deliver(fake, fake.user_message(channel, text))
    await inbox.wait(before + 1)
    return inbox.items[-1][1]


async def begun(fake: FakeSlack, inbox: Inbox) -> tuple[SlackTarget, str]:
    """A question asked and its reply begun: the target, and the ts of the reply's
    first message (a stream's, in native mode)."""
    target = await asked(fake, inbox)
    ts = await target.begin()
    assert ts is not None
    return target, ts


async def cut_while_slack_starts(fake: FakeSlack, inbox: Inbox, seconds: float) -> SlackTarget:
    """A question's reply, cut by a stop while Slack takes `seconds` to start its stream."""
    target = await asked(fake, inbox)
    fake.slow["chat.startStream"] = [seconds]
    begin = asyncio.create_task(target.begin())
    await fake.wait_for(lambda: fake.count("chat.startStream"))
    begin.cancel()  # the stop
    with pytest.raises(asyncio.CancelledError):
        await begin
    return target


def stopped_text(fake: FakeSlack, ts: str) -> str:
    """The text of the bot's message `ts`, which must be there and streaming no more."""
    message = fake.find(CHANNEL, ts)
    assert message is not None and not message.streaming
    return message.text
