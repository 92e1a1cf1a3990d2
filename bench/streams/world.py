"""Everything the bridge talks to, in a process of its own.

The fake chat API, the fake Slack and the fake Discord (from tests/fakes, with
their real limits), and the people asking. This process records:

- when the chat API received each question and sent each token (it knows);
- when each text became visible: every message version the fake platforms
  accept, with the newest token it shows (tokens carry markers, see
  `params.token_text`);
- the platforms' 429s and refusals, and every request they received.

It runs in a separate process so that its CPU is not counted as the bridge's.
Both processes read `time.monotonic()`, one clock for the whole machine.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from bench.streams.params import (
    BUDGET_MARGIN,
    DISCORD_BOT_BUDGET,
    DISCORD_EDIT,
    DISCORD_GLOBAL,
    DISCORD_POST,
    SLACK_POST,
    SLACK_REACTION_ADD,
    SLACK_REACTION_REMOVE,
    SLACK_UPDATE,
    Params,
    token_text,
)
from tests.fakes.chatapi import FakeChatAPI, Recorded, Script
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord import RateRule as DiscordRule
from tests.fakes.slack import FakeMessage, FakeSlack, RateRule

_MARK = re.compile(r"k(\d+)x(\d+)")
_QUESTION = re.compile(r"\bq(\d+)\b")
_SEP = "\x1f"
_request: contextvars.ContextVar[Recorded | None] = contextvars.ContextVar("request", default=None)


def last_mark(text: str) -> tuple[int, int] | None:
    """(conversation, token index) of the last marker in `text`."""
    marks = list(_MARK.finditer(text, max(0, len(text) - 400))) or list(_MARK.finditer(text))
    last = marks[-1] if marks else None
    return (int(last[1]), int(last[2])) if last is not None else None


@dataclass
class Conv:
    """One conversation, as the world saw it."""

    index: int
    platform: str
    bucket: str  # the edit budget it shares: a Slack workspace or a Discord channel
    team: str
    channel: str
    user: str
    asked: float = 0.0
    requested: float = 0.0
    sent: list[float] = field(default_factory=list)
    done: float = 0.0
    shown: int = -1
    reveals: list[tuple[float, int]] = field(default_factory=list)
    edits: list[tuple[float, bool]] = field(default_factory=list)
    posts: list[float] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "bucket": self.bucket,
            "asked": self.asked,
            "requested": self.requested,
            "sent": self.sent,
            "done": self.done,
            "reveals": self.reveals,
            "edits": self.edits,
            "posts": self.posts,
        }


class World:
    """The three fakes and the askers."""

    def __init__(self, params: Params) -> None:
        self.p = params
        self.convs: list[Conv] = []
        self.complete = 0
        self.changed = asyncio.Event()
        self.chat = BenchChatAPI(self)
        self.slack = BenchSlack(self) if params.slack_count else None
        self.discord = BenchDiscord(self) if params.discord_count else None
        self.lag: list[float] = []
        self.cpu_at_go = 0.0

    # ------------------------------------------------------------------ set-up

    async def start(self) -> dict[str, Any]:
        await self.chat.start()
        info: dict[str, Any] = {
            "chat_url": self.chat.endpoint("chatmount"),
            "chat_key": self.chat.api_key,
        }
        layout = self.p.layout()
        if self.slack is not None:
            await self.slack.start()
            info.update(
                slack_url=self.slack.url,
                slack_bot_token=self.slack.bot_token,
                slack_app_token=self.slack.app_token,
            )
        if self.discord is not None:
            await self.discord.start()
            info.update(
                discord_api=self.discord.api_url,
                discord_gateway=self.discord.gateway_url,
                discord_token=self.discord.token,
            )
            guilds = [self.discord.add_guild(f"guild {g}") for g in range(self.p.guilds)]
            channels = [
                self.discord.add_channel(guilds[c % len(guilds)], f"ask-{c}")
                for c in range(self.p.channels)
            ]
        for i, (platform, ws, ch) in enumerate(layout):
            if platform == "slack":
                team = f"T{ws:06d}"
                channel = f"C{ws:06d}X{ch:03d}"
                assert self.slack is not None
                self.slack.team_of[channel] = team
                self.convs.append(Conv(i, "slack", team, team, channel, f"U{i:07d}"))
            else:
                assert self.discord is not None
                channel = channels[ch]
                guild = guilds[ws]
                user = self.discord.add_user(f"asker{i}")
                self.discord.add_member(guild, user)
                self.convs.append(Conv(i, "discord", channel, guild, channel, user))
        return info

    async def close(self) -> None:
        if self.slack is not None:
            await self.slack.stop()
        if self.discord is not None:
            await self.discord.aclose()
        await self.chat.close()

    # ------------------------------------------------------------------ the run

    async def connected(self, timeout: float = 60.0) -> None:
        """Wait until the bridge is connected to every platform."""
        if self.slack is not None:
            await self.slack.wait_socket(timeout)
        if self.discord is not None:
            await self.discord.wait_until(lambda: self.discord and self.discord.gateways, timeout)

    async def ask_all(self) -> None:
        """Ask every conversation's question, evenly spread over `ramp` seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = len(self.convs)
        for k, conv in enumerate(self.convs_in_asking_order()):
            delay = start + self.p.ramp * k / n - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.ask(conv)

    def convs_in_asking_order(self) -> list[Conv]:
        """Alternate platforms so both are loaded from the start."""
        slack = [c for c in self.convs if c.platform == "slack"]
        discord = [c for c in self.convs if c.platform == "discord"]
        out: list[Conv] = []
        for i in range(max(len(slack), len(discord))):
            out.extend(x[i] for x in (slack, discord) if i < len(x))
        return out

    async def ask(self, conv: Conv) -> None:
        text = f"q{conv.index} how do I configure the widget?"
        if conv.platform == "slack":
            assert self.slack is not None
            bodies = self.slack.question(conv, text)
            conv.asked = time.monotonic()
            for body in bodies:
                await self.slack.send_envelope("events_api", body)
        else:
            assert self.discord is not None
            conv.asked = time.monotonic()
            await self.discord.mention(conv.channel, conv.user, text)

    async def wait_complete(self, timeout: float) -> bool:
        """Wait until every answer is wholly visible; False at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.complete < len(self.convs):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ what was seen

    def saw(self, text: str, kind: str) -> None:
        """A platform accepted a message version (`post` or `edit`) showing `text`."""
        now = time.monotonic()
        mark = last_mark(text)
        if mark is None:
            return  # a placeholder or a notice: no answer text in it
        index, token = mark
        if not 0 <= index < len(self.convs):
            return
        conv = self.convs[index]
        revealed = token > conv.shown
        if revealed:
            conv.shown = token
            conv.reveals.append((now, token))
            if token == self.p.tokens - 1:
                self.complete += 1
                self.changed.set()
        if kind == "edit":
            conv.edits.append((now, revealed))
        else:
            conv.posts.append(now)

    async def watch_lag(self, every: float = 0.1) -> None:
        """How late this process's event loop wakes up (is the world keeping up?)."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(every)
            self.lag.append(loop.time() - before - every)

    def results(self, finished: bool) -> dict[str, Any]:
        slack_429 = dict(self.slack.rate_limited) if self.slack else {}
        discord_429 = self.discord.rate_limited if self.discord else 0
        discord_global_429 = self.discord.global_limited if self.discord else 0
        rejected: dict[str, int] = dict(self.slack.rejected) if self.slack else {}
        if self.discord is not None:
            for rec in self.discord.rejected:
                key = f"discord {rec.method} {rec.path.split('/')[-2]}"
                rejected[key] = rejected.get(key, 0) + 1
        cpu = time.process_time()
        requests: Counter[str] = Counter()
        if self.slack is not None:
            requests.update(f"slack {name}" for name, _ in self.slack.calls)
        if self.discord is not None:
            requests.update(
                f"discord {rec.method} {re.sub(r'/[0-9]+', '/{id}', rec.path)}"
                for rec in self.discord.requests
            )
        return {
            "finished": finished,
            "conversations": [c.record() for c in self.convs],
            "platform_429": {
                "slack": slack_429,
                "discord": discord_429,
                "discord_global": discord_global_429,
            },
            "rejected": rejected,
            "platform_requests": dict(requests.most_common()),
            "chat_disconnects": self.chat.disconnects,
            "world_cpu_seconds": cpu - self.cpu_at_go,
            "world_lag": self.lag,
            "limits": {
                "slack": {
                    "edit": SLACK_UPDATE,
                    "post": SLACK_POST,
                    "global": None,
                    "first_reveal_is_post": False,
                },
                "discord": {
                    "edit": DISCORD_EDIT,
                    "post": DISCORD_POST,
                    # The bridge's own bot-wide budget, not Discord's: what it may
                    # spend, enforced or not by the fake.
                    "global": (DISCORD_BOT_BUDGET[0], DISCORD_BOT_BUDGET[1] + BUDGET_MARGIN),
                    "first_reveal_is_post": True,
                },
            },
        }


# ---------------------------------------------------------------------- the fakes


class BenchChatAPI(FakeChatAPI):
    """The fake chat API, answering each question with its conversation's tokens."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.answer_for = self._script_for

    def _conv(self) -> Conv | None:
        rec = _request.get()
        body = rec.json if rec is not None else None
        message = body.get("message") if isinstance(body, dict) else None
        found = _QUESTION.search(message) if isinstance(message, str) else None
        return self.world.convs[int(found[1])] if found else None

    async def _record(self, request: web.Request) -> Recorded:
        arrived = time.monotonic()
        rec = await super()._record(request)
        _request.set(rec)  # the handler's own context: read back by _next and _stream
        conv = self._conv()
        if conv is not None:
            conv.requested = arrived
        return rec

    def _script_for(self, question: str) -> Script:
        """The answer to a question (`answer_for`): its conversation's marked tokens.

        With `tokens_per_write` > 1, each write carries that many token events
        (joined here by a separator that `_stream` splits on).
        """
        found = _QUESTION.search(question)
        if found is None:
            return Script()
        p, index = self.world.p, int(found[1])
        tokens = [token_text(index, i) for i in range(p.tokens)]
        n = max(1, p.tokens_per_write)
        writes = [_SEP.join(tokens[i : i + n]) for i in range(0, len(tokens), n)]
        return Script(tokens=writes, first_delay=p.ttft, token_delay=n / p.tps)

    async def _stream(  # type: ignore[override]
        self,
        request: web.Request,
        script: Script,
        content_type: str,
        token: Callable[[str], bytes],
        **kw: Any,
    ) -> web.StreamResponse:
        conv = self._conv()
        if conv is None:
            return await super()._stream(request, script, content_type, token, **kw)
        sent = conv.sent
        tail = kw.pop("tail")

        def timed(text: str) -> bytes:
            parts = text.split(_SEP)
            sent.extend([time.monotonic()] * len(parts))
            return b"".join(token(part) for part in parts)

        def done() -> bytes:
            conv.done = time.monotonic()
            return bytes(tail())

        return await super()._stream(request, script, content_type, timed, tail=done, **kw)


@dataclass
class WorkspaceRule(RateRule):
    """A Slack limit counted per workspace, the workspace known from the channel."""

    team_of: dict[str, str] = field(default_factory=dict)

    def check(self, key: str, now: float) -> float:
        channel = key.partition(":")[2]
        return super().check(self.team_of.get(channel, key), now)


class BenchSlack(FakeSlack):
    """The fake Slack serving many workspaces: limits counted per workspace, versions seen."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.team_of: dict[str, str] = {}
        for method, (count, per) in (
            ("chat.update", SLACK_UPDATE),
            ("reactions.add", SLACK_REACTION_ADD),
            ("reactions.remove", SLACK_REACTION_REMOVE),
        ):
            self.set_rate(method, count, per, "team")
        # The fake's other workspace limits (the stream methods') too, per workspace.
        for method, rule in list(self.rates.items()):
            if rule.scope == "team":
                self.rates[method] = WorkspaceRule(
                    rule.count, rule.per, "channel", team_of=self.team_of
                )
        self.set_rate("chat.postMessage", SLACK_POST[0], SLACK_POST[1], "channel")

    def question(self, conv: Conv, text: str) -> list[dict[str, Any]]:
        """The event bodies of `conv`'s asker mentioning the bot (app_mention first)."""
        bodies = self.user_message(conv.channel, f"<@{self.bot_user_id}> {text}", user=conv.user)
        for body in bodies:
            body["team_id"] = body["context_team_id"] = conv.team
            body["event"]["team"] = conv.team
            for auth in body["authorizations"]:
                auth["team_id"] = conv.team
        return bodies[::-1]

    def _record_pings(self, message: FakeMessage, args: dict[str, Any]) -> None:
        # Called on every accepted post and update, right after the text changed.
        super()._record_pings(message, args)
        self.world.saw(message.text, "post" if len(message.versions) == 1 else "edit")


class BenchDiscord(FakeDiscord):
    """The fake Discord, with every accepted message version seen, and the global limit.

    Discord allows a bot 50 REST requests per second in all (interaction
    callbacks aside); past that it answers 429 with `"global": true`, which
    discord.py honours by pausing every request. Counted in `global_limited`.
    """

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.rates = {"post": DiscordRule(*DISCORD_POST), "edit": DiscordRule(*DISCORD_EDIT)}
        if world.p.discord_global:  # the fake counts these in `global_limited`
            self.global_rule = DiscordRule(*DISCORD_GLOBAL)

    def _new_message(
        self, channel_id: str, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        msg = super()._new_message(channel_id, author, content, **extra)
        if author.get("id") == self.app_id:
            self.world.saw(content, "post")
        return msg

    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        super()._apply_edit(msg, body)
        if "content" in body:
            self.world.saw(msg["content"], "edit")


# ---------------------------------------------------------------------- the process


def run(conn: Connection, params: dict[str, Any]) -> None:
    """Process entry point: serve the world, talking to the bridge's process over `conn`."""
    asyncio.run(_serve(conn, Params(**params)))


async def _serve(conn: Connection, params: Params) -> None:
    loop = asyncio.get_running_loop()
    world = World(params)
    lag = asyncio.create_task(world.watch_lag())
    try:
        conn.send(("ready", await world.start()))
        command = await loop.run_in_executor(None, conn.recv)
        if command[0] == "go":
            await world.connected()
            world.cpu_at_go = time.process_time()
            asking = asyncio.create_task(world.ask_all())
            limit = 2 * (params.ramp + params.stream_seconds) + 60
            finished = await world.wait_complete(limit)
            await asking
            results = world.results(finished)
            conn.send(("done", None))
            # The records follow when asked for, once the bridge has taken its
            # last readings: loaded earlier, they would count in its memory.
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "records":
                conn.send(("records", results))
                await loop.run_in_executor(None, conn.recv)  # "stop": the bridge has closed
    except Exception as exc:  # report it to the other process, which is waiting
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        lag.cancel()
        await world.close()
