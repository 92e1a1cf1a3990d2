"""End to end: the real Bridge and discord.py client against the fake Discord and chat API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.platforms.discord import indicator
from adapters.platforms.discord import platform as discord_platform
from adapters.platforms.discord.commands import TOO_LATE_TEXT
from adapters.platforms.discord.format import ZWSP
from adapters.platforms.discord.platform import EDIT_WINDOW
from adapters.registry import REGISTRY
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import PlatformError
from bridge.intake import MENTION_HELP
from bridge.interruptions import INTERRUPTED
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.discord import (
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    FakeDiscord,
    RateRule,
)

SOURCE = ("https://docs.example/bridges", "Bridges 101")
SOURCES_BLOCK = "**Sources**\n- [Bridges 101](<https://docs.example/bridges>)"


@dataclass
class Setup:
    """A guild with a mention channel, an auto-reply channel and a thread channel."""

    discord: FakeDiscord
    chat: FakeChatAPI
    db: Path
    guild: str
    general: str  # mention; one conversation per channel
    ask: str  # auto-reply (trigger: all), one conversation per message/thread
    help: str  # mention; answers in a new thread
    alice: str
    bob: str
    role: str
    discord_extra: str = ""
    stateless: bool = False  # a backend that keeps no history: it is sent every time

    def config(self) -> str:
        kind = "openai" if self.stateless else "chatmount"
        model = "model: m" if self.stateless else ""
        return f"""
store: sqlite://{self.db}
http: {{listen: null}}
backends:
  docs:
    kind: {kind}
    url: {self.chat.endpoint(kind)}
    api_key: ${{CHAT_KEY}}
    {model}
discord:
  token: ${{DISCORD_BOT_TOKEN}}
  api_url: {self.discord.api_url}
  gateway_url: {self.discord.gateway_url}
  guild_ready_timeout: 0.05
  edit_rate: {{count: 5, per: 1.0}}
  post_rate: {{count: 5, per: 1.0}}
  {self.discord_extra}
routes:
  - platform: discord
    channels: ["{self.ask}"]
    trigger: all
    session: thread
    backend: docs
  - platform: discord
    channels: ["{self.help}"]
    trigger: mention
    session: thread
    reply_in_thread: true
    backend: docs
  - platform: discord
    channels: ["{self.general}"]
    trigger: mention
    session: channel
    backend: docs
  - platform: discord
    dm: true
    session: user
    backend: docs
reply: {{edit_interval: 0.05}}
limits: {{rate_limit: {{messages: 50, per: 60}}}}
"""

    @asynccontextmanager
    async def bridge(self) -> AsyncIterator[Bridge]:
        env = {"CHAT_KEY": self.chat.api_key, "DISCORD_BOT_TOKEN": self.discord.token}
        config = parse_config(self.config(), env=env, registry=REGISTRY)
        async with Bridge(config, REGISTRY) as bridge:
            yield bridge

    async def final(self, channel: str, text: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` bot messages in `channel` end with `text`; returns them all."""

        def done() -> list[dict[str, Any]] | None:
            msgs = self.discord.channel_messages(channel)
            finished = [m for m in msgs if m["content"].endswith(text)]
            return msgs if len(finished) >= count else None

        result: list[dict[str, Any]] = await self.discord.wait_until(done)
        return result

    async def command_answered(self, iid: str, ending: str = "") -> dict[str, Any]:
        """Wait until the command `iid`'s answer shows text ending with `ending`."""
        fake = self.discord

        def answered() -> dict[str, Any] | None:
            m = fake.messages.get(fake.interactions[iid]["original"] or "")
            return m if m and m["content"] and m["content"].endswith(ending) else None

        result: dict[str, Any] = await fake.wait_until(answered)
        return result

    async def slash_ask(self, question: str) -> None:
        """Alice runs /ask in #general; returns once its answer (ending ".") shows."""
        iid = await self.discord.invoke(self.general, self.alice, "ask", {"question": question})
        await self.command_answered(iid, ".")

    def sessions(self) -> list[str | None]:
        return [r.json.get("session_id") for r in self.chat.requests if r.path.endswith("/chat")]


@pytest.fixture
def setup(fake_discord: FakeDiscord, fake_chat_api: FakeChatAPI, tmp_path: Path) -> Setup:
    fake = fake_discord
    fake.rates = {"post": RateRule(5, 1.0), "edit": RateRule(5, 1.0)}
    guild = fake.add_guild("Community")
    general = fake.add_channel(guild, "general")
    ask = fake.add_channel(guild, "ask-ai")
    help_ = fake.add_channel(guild, "help")
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    role = fake.add_role(guild, "moderators")
    fake.add_member(guild, alice, [role])
    fake.add_member(guild, bob)
    return Setup(fake, fake_chat_api, tmp_path / "bridge.db", guild, general, ask, help_,
                 alice, bob, role)


def assert_never_pinged(fake: FakeDiscord) -> None:
    writes = fake.message_writes()
    assert writes
    for write in writes:
        assert write.body["allowed_mentions"]["parse"] == [], write
        assert not write.body["allowed_mentions"].get("replied_user"), write


async def test_mention_gets_a_progressively_edited_reply_with_sources(setup: Setup) -> None:
    tokens = ["Bridges ", "carry ", "roads ", "over ", "rivers ", "and ", "valleys."]
    setup.chat.enqueue(tokens=tokens, sources=[SOURCE], token_delay=0.08)
    answer = "".join(tokens)
    async with setup.bridge():
        question = await setup.discord.mention(setup.general, setup.alice, "What do bridges do?")
        [reply] = await setup.final(setup.general, SOURCES_BLOCK)
    assert reply["content"] == f"{answer}\n\n{SOURCES_BLOCK}"
    assert setup.chat.requests[0].json["message"] == "What do bridges do?"
    fake = setup.discord
    post = fake.sent("POST", rf"/channels/{setup.general}/messages$")[0]
    typing = fake.sent("POST", rf"/channels/{setup.general}/typing$")
    assert typing and typing[0].at <= post.at  # typing first, then the message
    assert post.body["message_reference"]["message_id"] == int(question["id"])
    shown = [post.body["content"], *fake.edits[reply["id"]]]
    partial = [s for s in shown if s and answer.startswith(s) and s != answer]
    assert partial, f"no partial text was ever shown: {shown}"
    assert len(fake.edits[reply["id"]]) >= 2
    assert_never_pinged(fake)
    assert fake.rate_limited == 0 and not fake.rejected


async def test_a_dropped_connection_does_not_lose_the_answer(setup: Setup) -> None:
    # The typing request's connection closes unanswered (aiohttp's ServerDisconnectedError
    # reaches the bridge as it is), and so does the first edit's.
    setup.discord.drop = [("POST", rf"/channels/{setup.general}/typing$"),
                          ("PATCH", rf"/channels/{setup.general}/messages/")]
    setup.chat.enqueue(tokens=["Still ", "here, ", "whole."], sources=[SOURCE], token_delay=0.05)
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "Are you there?")
        [reply] = await setup.final(setup.general, SOURCES_BLOCK)
    assert reply["content"] == f"Still here, whole.\n\n{SOURCES_BLOCK}"
    assert setup.discord.drop == []  # both were dropped
    assert not setup.discord.errors


def _delete_channel(setup: Setup) -> None:
    setup.discord.delete_channel(setup.general)


def _reset_token(setup: Setup) -> None:
    setup.discord.token = "reset-in-the-developer-portal"  # every request: 401


@pytest.mark.parametrize("gone", [_delete_channel, _reset_token])
async def test_a_deleted_channel_or_a_reset_bot_token_ends_the_answer(
    setup: Setup, gone: Callable[[Setup], None]
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["word "] * 100, token_delay=0.05)
    async with setup.bridge():
        await fake.mention(setup.general, setup.alice, "A slow one?")
        await fake.wait_until(lambda: fake.channel_messages(setup.general))
        sent = len(fake.requests)
        gone(setup)
        await setup.chat.wait_disconnects(1)  # the answer's stream is let go
    after = [r for r in fake.requests[sent:] if setup.general in r.path]
    assert len(after) <= 2  # an edit in flight, and the one refused: no retries


@pytest.mark.parametrize(("code", "problem"), [
    (4004, "bot token refused"), (4011, "shard settings refused"), (4014, "intent not enabled"),
])
async def test_a_gateway_ended_for_good_ends_the_answers_and_says_why_in_healthz(
    setup: Setup, code: int, problem: str
) -> None:
    # Discord ends the gateway for good (the token reset, the shards refused): the
    # answers streaming were retried for five minutes against the client discord.py
    # had closed, and /healthz said "disconnected" as for an outage it would ride out.
    fake = setup.discord
    setup.chat.enqueue(tokens=["word "] * 40, token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "A slow one?")
        await fake.wait_until(lambda: fake.channel_messages(setup.general))
        await fake.drop_gateways(code=code, forget=True)
        await wait_for(lambda: bridge.relay.live == 0)
        assert bridge.platforms["discord"].problem == problem
        assert await bridge._health() == {"discord": problem}
        assert await bridge._health(["console"]) == {"console": "not configured"}
    if code == 4014:  # discord.py leaves its client open: the answer is shown whole
        [reply] = fake.channel_messages(setup.general)
        assert reply["content"] == "word " * 40


async def test_where_a_moderator_took_the_bots_voice_nothing_is_asked_of_the_chat_api(
    setup: Setup,
) -> None:
    # Denying Send Messages is how a moderator mutes a bot in one channel: every
    # message there went to the (paid, outside) chat API, for answers nobody saw.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered ", "elsewhere."])
    async with setup.bridge():
        await fake.deny_bot(setup.ask, SEND_MESSAGES)
        await fake.say(setup.ask, setup.alice, "a plain message in the muted channel")
        await fake.mention(setup.ask, setup.bob, "and one that asks the bot")
        await fake.mention(setup.general, setup.alice, "Still there?")  # comes after them
        await setup.final(setup.general, "Answered elsewhere.")
    assert [r.json["message"] for r in setup.chat.requests] == ["Still there?"]
    assert fake.channel_messages(setup.ask) == []
    assert not fake.errors  # not even a refused typing request


async def test_without_read_message_history_the_answer_is_posted_as_no_reply(
    setup: Setup,
) -> None:
    # A reply (message reference) needs Read Message History: every answer there was
    # refused, after the chat API had been asked and paid.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Posted ", "plainly."])
    async with setup.bridge():
        await fake.deny_bot(setup.ask, READ_MESSAGE_HISTORY)
        await fake.mention(setup.ask, setup.bob, "How do I deploy?")
        await setup.final(setup.ask, "Posted plainly.")
    [answer] = fake.channel_messages(setup.ask)
    assert "message_reference" not in answer
    assert not fake.errors


async def test_a_channel_for_threads_only_is_answered_in_a_thread(setup: Setup) -> None:
    # Send Messages denied, threads allowed: a route that answers in a new thread
    # needs no more (it was left silent with the rest).
    fake = setup.discord
    setup.chat.enqueue(tokens=["In ", "a thread."])
    async with setup.bridge():
        await fake.deny_bot(setup.help, SEND_MESSAGES)
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await setup.final(question["id"], "In a thread.")
    assert fake.channels[question["id"]]["parent_id"] == setup.help
    assert fake.channel_messages(setup.help) == []


async def test_a_voice_channels_chat_is_answered_in_it_without_asking_for_a_thread(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # No thread opens there: asking for one every time spent the bot-wide budget
    # and logged a warning an admin would chase.
    fake = setup.discord
    fake.channels[setup.help].update(type=2, bitrate=64000, user_limit=0, rtc_region=None)
    setup.chat.enqueue(tokens=["In the channel."])
    async with setup.bridge():
        await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await setup.final(setup.help, "In the channel.")
    assert not [r for r in fake.requests if r.path.endswith("/threads")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_voice_channels_chat_where_the_bot_may_not_post_asks_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # A voice channel's chat has no threads to answer in, whatever the permissions say.
    fake = setup.discord
    fake.channels[setup.help].update(type=2, bitrate=64000, user_limit=0, rtc_region=None)
    async with setup.bridge():
        await fake.deny_bot(setup.help, SEND_MESSAGES)
        await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await wait_for(lambda: any("the bot lacks Send Messages there" in r.getMessage()
                                   for r in caplog.records))
    assert setup.chat.requests == []
    assert not [r for r in fake.requests if r.path.endswith("/threads")]


async def test_a_channel_for_threads_only_where_no_thread_opens_asks_and_says_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # The answer would have been posted where the bot may not post (403), and a
    # refusal the same: the chat API was paid for an answer nobody saw.
    fake = setup.discord
    async with setup.bridge():
        await fake.deny_bot(setup.help, SEND_MESSAGES)
        sent = len(fake.requests)
        fake.drop.append(("POST", r"/messages/\d+/threads$"))  # the thread does not open
        await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        await fake.mention(setup.help, setup.alice, "")  # a refusal: "ask me in words"
        await fake.wait_until(lambda: not fake.drop)
        await wait_for(lambda: sum(
            "no thread could be opened" in r.getMessage() or "not telling the asker" in
            r.getMessage() for r in caplog.records) == 2)
        posts = [r for r in fake.requests[sent:]
                 if r.method == "POST" and r.path.endswith(f"/channels/{setup.help}/messages")]
    assert setup.chat.requests == []
    assert posts == []  # neither the answer nor the refusal


@pytest.mark.parametrize("where", ["general", "help"])
async def test_a_question_deleted_while_it_is_answered_ends_the_answer(
    setup: Setup, where: str
) -> None:
    # A moderator removes the question: the answer, in the channel or in the thread
    # opened on the question, stops (the reply itself would still be accepted).
    fake = setup.discord
    setup.chat.enqueue(tokens=["word "] * 100, token_delay=0.05)
    channel = getattr(setup, where)
    async with setup.bridge():
        question = await fake.mention(channel, setup.alice, "Something a moderator removes")
        shown_in = question["id"] if where == "help" else channel
        await fake.wait_until(lambda: fake.channel_messages(shown_in))
        sent = len(fake.requests)
        await fake.delete_message(question["id"])
        await setup.chat.wait_disconnects(1)  # the answer's stream is let go
        writes = [r for r in fake.requests[sent:] if "/messages" in r.path]
    assert len(writes) <= 1  # an edit in flight at most
    assert "word " * 100 not in fake.channel_messages(shown_in)[0]["content"]


async def test_a_question_deleted_while_it_waits_its_turn_is_never_asked(setup: Setup) -> None:
    # Deleted (a password posted by mistake) while the answer before it streamed: it
    # was sent to the chat API all the same, and paid for.
    setup.chat.enqueue(tokens=["First ", "answer."], token_delay=0.5)
    setup.chat.enqueue(tokens=["After."])
    fake = setup.discord
    async with setup.bridge() as bridge:
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread_id = question["id"]
        await fake.wait_until(lambda: fake.channel_messages(thread_id))
        oops = await fake.say(thread_id, setup.bob, "my password is hunter2")
        await fake.delete_message(oops["id"])
        await setup.final(thread_id, "First answer.")
        await fake.say(thread_id, setup.bob, "And then?")
        await setup.final(thread_id, "After.")
        metrics = bridge.metrics.render().decode()
    assert [r.json["message"] for r in setup.chat.requests] == [
        "How long is the bridge?", "And then?"
    ]
    # Counted: every message taken ends in one outcome.
    assert 'outcome="withdrawn",platform="discord"} 1.0' in metrics


@pytest.mark.parametrize("window", [EDIT_WINDOW, 0.0])
async def test_a_question_edited_to_mention_the_bot_is_answered_once_if_recent(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, window: float
) -> None:
    # Someone forgot to mention the bot, and edits the message to add it.
    monkeypatch.setattr(discord_platform, "EDIT_WINDOW", window)
    fake, me = setup.discord, f"<@{setup.discord.app_id}>"
    if window:
        setup.chat.enqueue(tokens=["Now answered."])
    setup.chat.enqueue(tokens=["Next."])
    async with setup.bridge():
        question = await fake.say(setup.general, setup.alice, "how do bridges work?")
        await fake.edit(question["id"], f"{me} how do bridges work?")
        if window:
            await setup.final(setup.general, "Now answered.")
            # Edited again (a typo): it was answered already.
            await fake.edit(question["id"], f"{me} how do bridges work, then?")
        await fake.mention(setup.general, setup.bob, "and then?")
        msgs = await setup.final(setup.general, "Next.")
    asked = [r.json["message"] for r in setup.chat.requests]
    if window:
        assert asked == ["how do bridges work?", "and then?"]
        assert [m["content"] for m in msgs] == ["Now answered.", "Next."]
    else:  # an edit of an older message is not taken as a question
        assert asked == ["and then?"]


async def test_a_question_edited_while_it_is_answered_is_answered_once_and_still_withdrawn(
    setup: Setup,
) -> None:
    # A typo fixed while the answer streams: that answer goes on alone, and a
    # moderator deleting the question still stops it.
    fake = setup.discord
    setup.chat.enqueue(tokens=["word "] * 100, token_delay=0.05)
    async with setup.bridge():
        question = await fake.mention(setup.general, setup.alice, "Something with a tpyo")
        await fake.wait_until(lambda: fake.channel_messages(setup.general))
        await fake.edit(question["id"], f"<@{fake.app_id}> Something with a typo")
        await fake.delete_message(question["id"])
        await setup.chat.wait_disconnects(1)  # the answer's stream is let go
    assert len(setup.chat.requests) == 1
    [answer] = fake.channel_messages(setup.general)
    assert "word " * 100 not in answer["content"]


async def test_reply_in_thread_opens_a_thread_and_follow_ups_continue_it(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["First ", "answer."], sources=[SOURCE])
    setup.chat.enqueue(tokens=["Second ", "answer."])
    async with setup.bridge():
        question = await setup.discord.mention(setup.help, setup.bob, "How long is the bridge?")
        thread_id = question["id"]
        await setup.final(thread_id, SOURCES_BLOCK)
        thread = setup.discord.channels[thread_id]
        assert thread["type"] == 11 and thread["parent_id"] == setup.help
        assert thread["name"] == "How long is the bridge?"
        await setup.discord.say(thread_id, setup.bob, "And how wide?")  # no mention
        msgs = await setup.final(thread_id, "Second answer.")
    assert [m["content"] for m in msgs] == [f"First answer.\n\n{SOURCES_BLOCK}", "Second answer."]
    assert setup.discord.channel_messages(setup.help) == []  # nothing in the channel itself
    first, second = setup.sessions()
    assert first and first == second
    assert setup.chat.requests[1].json["message"] == "And how wide?"


async def test_a_long_questions_thread_name_is_cut_between_graphemes(setup: Setup) -> None:
    # Cut at a code point, a flag lost its second half before the "…", a family its
    # last members, a thumbs up its skin tone.
    wholes = [
        "\U0001F1EF\U0001F1F5",  # a flag: two regional indicators
        "\U0001F468\u200d\U0001F469\u200d\U0001F467",  # a family joined by ZWJ
        "\U0001F44D\U0001F3FD",  # a thumbs up with its skin tone
    ]
    for _ in wholes:
        setup.chat.enqueue(tokens=["Answered."])
    async with setup.bridge():
        for whole in wholes:
            question = await setup.discord.mention(
                setup.help, setup.bob, "x" * 96 + whole + " and what about it?"
            )
            await setup.final(question["id"], "Answered.")
            assert setup.discord.channels[question["id"]]["name"] == "x" * 96 + "…"


async def test_an_empty_mention_promises_an_answer_to_a_follow_up_only_in_a_thread(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered."])
    async with setup.bridge():
        # In the channel, only a mention would be answered (in a new thread).
        await fake.mention(setup.help, setup.bob, "")
        [told] = await setup.final(setup.help, "I will answer it.")
        # In a thread of the channel, the question then written there is answered.
        thread = await fake.add_thread(setup.help, "deploys")
        await fake.mention(thread, setup.bob, "")
        await setup.final(thread, "I will answer here.")
        await fake.say(thread, setup.bob, "how do I deploy?")  # no mention
        await setup.final(thread, "Answered.")
    assert told["content"] == MENTION_HELP
    assert [r.json["message"] for r in setup.chat.requests] == ["how do I deploy?"]


async def test_an_empty_mention_edited_to_hold_its_question_is_answered_once(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered."])
    setup.chat.enqueue(tokens=["Sentinel."])
    async with setup.bridge():
        empty = await fake.mention(setup.general, setup.bob, "")
        await setup.final(setup.general, "I will answer it.")
        await fake.redeliver(empty)  # delivered again: told once
        edited = await fake.edit(empty["id"], f"<@{fake.app_id}> how do I deploy?")
        await setup.final(setup.general, "Answered.")
        await fake.redeliver(edited)  # and again: answered once
        await fake.mention(setup.general, setup.bob, "sentinel")  # taken after it
        msgs = await setup.final(setup.general, "Sentinel.")
    assert [m["content"] for m in msgs] == [MENTION_HELP, "Answered.", "Sentinel."]
    assert [r.json["message"] for r in setup.chat.requests] == ["how do I deploy?", "sentinel"]


async def test_a_message_addressed_to_someone_else_in_a_followed_thread_is_not_answered(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First answer."])
    setup.chat.enqueue(tokens=["Second answer."])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = question["id"]
        await setup.final(thread, "First answer.")
        await fake.say(thread, setup.bob, f"<@{setup.alice}> can you check this?")
        await fake.say(thread, setup.bob, f"<@&{setup.role}> is this right?")
        await fake.say(thread, setup.bob, "And how wide?")
        await setup.final(thread, "Second answer.")
    assert [r.json["message"] for r in setup.chat.requests] == [
        "How long is the bridge?", "And how wide?"
    ]


async def test_a_questions_markup_reaches_the_chat_api_and_names_its_thread_in_words(
    setup: Setup,
) -> None:
    fake, setup.stateless = setup.discord, True
    carol = fake.add_user("carol", global_name="Carol Chen")
    fake.add_member(setup.guild, carol, nick="caz")
    for answer in ("First.", "Second.", "Third."):
        setup.chat.enqueue(tokens=[answer])
    async with setup.bridge():
        question = await fake.mention(
            setup.help, setup.bob,
            f"why did <@{carol}> say <a:blobwave:112233445566778899> in <#{setup.general}> "
            "on <t:1700000000:f>?",
        )
        await setup.final(question["id"], "First.")
        await fake.say(question["id"], setup.bob, f"and <@&{setup.role}>?")
        await setup.final(question["id"], "Second.")
        await setup.slash_ask(f"is <#{setup.help}> for <@{carol}>?")
    asked = "why did @caz say :blobwave: in #general on 2023-11-14 22:13 UTC?"
    assert fake.channels[question["id"]]["name"] == asked
    first, second, third = (
        [m["content"] for m in r.json["messages"] if m["role"] == "user"]
        for r in setup.chat.requests
    )
    # The history a stateless API is sent again holds the words too.
    assert (first, second) == ([asked], [asked, "and @moderators?"])
    assert third == ["is #help for @user?"]  # /ask: a typed option carries no users


async def test_a_thread_a_moderator_opens_in_public_does_not_name_a_hidden_channel(
    setup: Setup,
) -> None:
    fake = setup.discord
    hidden = fake.add_channel(setup.guild, "layoffs-q3")
    fake.channels[hidden]["permission_overwrites"] = [
        {"id": setup.guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},  # @everyone
        {"id": setup.role, "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},  # moderators
    ]
    setup.chat.enqueue(tokens=["Answer."])
    async with setup.bridge():
        # alice, a moderator, asks in #help, which bob reads too: he may not see the channel.
        question = await fake.mention(setup.help, setup.alice, f"what is <#{hidden}> for?")
        await setup.final(question["id"], "Answer.")
    assert fake.channels[question["id"]]["name"] == "what is #channel for?"
    assert setup.chat.requests[0].json["message"] == "what is #channel for?"


async def test_dm_is_answered(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["Privately ", "answered."])
    async with setup.bridge():
        sent = await setup.discord.dm(setup.alice, "a private question")
        [reply] = await setup.final(sent["channel_id"], "Privately answered.")
    assert reply["content"] == "Privately answered."
    assert setup.chat.requests[0].json["message"] == "a private question"


async def test_auto_reply_channel_answers_without_a_mention(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["Auto ", "reply."])
    async with setup.bridge():
        await setup.discord.say(setup.ask, setup.bob, "no mention needed?")
        [reply] = await setup.final(setup.ask, "Auto reply.")
        # A plain message in a mention-only channel is not answered.
        await setup.discord.say(setup.general, setup.bob, "just chatting")
        await setup.discord.mention(setup.general, setup.bob, "now answer")
        await setup.final(setup.general, "fake.")
    assert reply["content"] == "Auto reply."
    questions = [r.json["message"] for r in setup.chat.requests]
    assert questions == ["no mention needed?", "now answer"]


async def test_long_answer_arrives_as_three_messages(setup: Setup) -> None:
    lines = [f"Line {i:03d}: " + "x" * 39 for i in range(100)]
    answer = "\n".join(lines) + "!"
    assert len(answer) == 5000
    chunks = [answer[i : i + 250] for i in range(0, len(answer), 250)]
    setup.chat.enqueue(tokens=chunks, token_delay=0.01)
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "the long one")
        msgs = await setup.final(setup.general, lines[-1] + "!")
    assert len(msgs) == 3
    assert all(len(m["content"]) <= 2000 for m in msgs)
    shown = [line for m in msgs for line in m["content"].splitlines() if line.strip()]
    assert shown == answer.splitlines()
    assert not setup.discord.rejected
    assert setup.discord.rate_limited == 0


async def test_a_long_table_leaves_its_completed_messages_as_they_are_at_the_end(
    setup: Setup,
) -> None:
    # Discord pads a table's columns: a message is longer than its Markdown, and the
    # end split the answer again, elsewhere, and rewrote messages already complete.
    rows = "".join(f"| item {i} | {'value ' * (i % 5 + 1)}| {i * 37 % 1000} |\n"
                   for i in range(100))
    answer = "The table:\n\n| Item | Value | Count |\n|---|---|---|\n" + rows + "\nThat is all."
    setup.chat.enqueue(tokens=[answer[i : i + 60] for i in range(0, len(answer), 60)],
                       token_delay=0.01)
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "the table")
        msgs = await setup.final(setup.general, "That is all.")
    assert len(msgs) == 3 and all(len(m["content"]) <= 2000 for m in msgs)
    assert all(m["content"].count("| Item ") == 1 for m in msgs)  # the header in each
    shown = " ".join(m["content"] for m in msgs)
    assert all(f"| item {i} " in shown for i in range(100))
    requests = setup.discord.requests
    posted = [r.at for r in requests if r.method == "POST" and r.path.endswith("/messages")]
    for earlier, later in zip(msgs, posted[1:], strict=False):
        # Not edited once the next message was posted.
        assert not [r for r in requests
                    if r.method == "PATCH" and r.path.endswith(earlier["id"]) and r.at > later]


@pytest.mark.parametrize("mark", ["*", "_", "__", "||"])
async def test_emphasis_or_a_spoiler_across_a_cut_goes_whole_to_the_next_message(
    setup: Setup, mark: str
) -> None:
    # Cut in two, italics showed their marks raw in both messages, and a spoiler
    # showed what it hides.
    filler = ("The service keeps a copy of every file you upload. " * 40)[:1950]
    said = f"{mark}This applies only to the paid plans, not to the free tier.{mark}"
    answer = f"{filler} {said} More text follows here."
    setup.chat.enqueue(tokens=[answer[i : i + 25] for i in range(0, len(answer), 25)],
                       token_delay=0.005)
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "Which plans?")
        msgs = await setup.final(setup.general, "More text follows here.")
    assert len(msgs) == 2
    assert said in msgs[1]["content"]
    assert all(m["content"].count(mark) % 2 == 0 for m in msgs)


UNSPACED = "这是一个很长的中文段落，没有空格。" * 150  # 2,550 characters, one line


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("\n\n" + UNSPACED, id="leading-blank-lines"),
        pytest.param("```json\n" + "a" * 3000 + "!\n```", id="long-line-in-fence"),
    ],
)
async def test_a_long_line_after_blank_lines_or_a_fence_is_posted_whole(
    setup: Setup, answer: str
) -> None:
    # The first message was blank (or an empty code block); Discord refused the
    # blank one and the rest of the answer was never posted.
    setup.chat.enqueue(tokens=[answer[i : i + 200] for i in range(0, len(answer), 200)],
                       token_delay=0.01)
    async with setup.bridge() as bridge:
        await setup.discord.mention(setup.general, setup.alice, "one long line")
        # Answered, not only showing text that ends as the answer does (a sentence
        # repeated ends each repetition the same).
        await wait_for(lambda: bool(setup.chat.requests) and bridge.relay.live == 0, 20)
    msgs = setup.discord.channel_messages(setup.general)
    assert len(msgs) == 2
    assert all(len(m["content"]) <= 2000 for m in msgs)
    shown = "".join(m["content"] for m in msgs).replace("```json\n", "").replace("\n```", "")
    assert shown == answer.strip().removeprefix("```json\n").removesuffix("\n```")
    assert not setup.discord.rejected


async def test_a_whitespace_only_answer_shows_no_answer(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["\n", "  ", "\n"], token_delay=0.05)
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "blank?")
        [reply] = await setup.final(setup.general, "(no answer)_")
    assert reply["content"] == "_(no answer)_"
    assert not setup.discord.rejected


async def test_ten_replies_at_once_in_one_channel_cause_no_429(setup: Setup) -> None:
    fake = setup.discord
    fake.ratelimit_headers = False  # only the bridge's own budget keeps it in line
    users = [fake.add_user(f"user{i}") for i in range(10)]
    for i in range(10):
        setup.chat.enqueue(
            tokens=[f"Answer {i}: "] + ["more words "] * 15 + ["end."],
            sources=[SOURCE],
            token_delay=0.03,
        )
    async with setup.bridge():
        for i, user in enumerate(users):
            fake.add_member(setup.guild, user)
            await fake.say(setup.ask, user, f"question {i}")
        msgs = await setup.final(setup.ask, SOURCES_BLOCK, count=10)
    assert len(msgs) == 10
    assert sorted(m["content"].split(":")[0] for m in msgs) == [f"Answer {i}" for i in range(10)]
    assert fake.rate_limited == 0
    assert not fake.rejected
    writes = fake.message_writes()
    # Each reply was posted with its first words and edited after: not one post each.
    # (The channel's 5 edits in 5 s leave ten replies little more than that.)
    assert len(writes) >= 20
    assert_never_pinged(fake)


async def test_notices_among_answers_in_one_channel_cause_no_429(setup: Setup) -> None:
    fake = setup.discord
    fake.ratelimit_headers = False  # only the bridge's own budget keeps it in line
    users = [fake.add_user(f"user{i}") for i in range(6)]
    for i in range(5):
        setup.chat.enqueue(tokens=[f"Answer {i}."], token_delay=0.01)
    async with setup.bridge():
        for user in users:
            fake.add_member(setup.guild, user)
        for i, user in enumerate(users[:5]):
            await fake.say(setup.ask, user, f"question {i}")
        await fake.mention(setup.ask, users[5], "")  # no words: told to ask in words
        await fake.wait_until(lambda: len(fake.channel_messages(setup.ask)) >= 6, timeout=30)
    # A notice is a message in the channel: it keeps to the channel's 5 posts in 5 s.
    assert fake.rate_limited == 0
    assert not fake.rejected


async def test_replies_across_channels_stay_within_the_bots_global_limit(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = setup.discord
    fake.ratelimit_headers = False
    channels = [fake.add_channel(setup.guild, f"ask-{i}") for i in range(8)]
    for i in range(8):
        setup.chat.enqueue(tokens=[f"Answer {i}: "] + ["word "] * 30, token_delay=0.02)
    config = setup.config().replace(
        f'channels: ["{setup.ask}"]', "channels: [" + ", ".join(f'"{c}"' for c in channels) + "]"
    ).replace("post_rate: {count: 5, per: 1.0}", "post_rate: {count: 5, per: 1.0}\n"
              "  global_rate: {count: 8, per: 1.0}")
    monkeypatch.setattr(Setup, "config", lambda self: config)
    # A small limit on all the bot's requests, so these replies reach it, and the bridge
    # told of it: the replies keep 8 a second, typing renewals 1, and the rest stay
    # unbudgeted.
    # (Questions that wait for the replies' budget show typing by renewals meanwhile.)
    monkeypatch.setattr(indicator, "BOT_LIMIT", 12)
    async with setup.bridge():
        fake.global_rule = RateRule(12, 1.0)
        for i, channel in enumerate(channels):
            await fake.say(channel, setup.alice, f"question {i}")
        answers = [(await setup.final(channel, "word "))[0]["content"] for channel in channels]
    assert sorted(a.split(":")[0] for a in answers) == [f"Answer {i}" for i in range(8)]
    assert fake.global_limited == 0
    assert fake.rate_limited == 0
    # More requests than the fake's global limit allows in one second, and no 429.
    assert len([r for r in fake.requests if r.path.startswith("/api/v10/channels/")]) > 12


async def test_answer_with_mentions_pings_nobody(setup: Setup) -> None:
    fake = setup.discord
    text = f"Hey @everyone and @here: ask <@&{setup.role}> or <@{setup.alice}>."
    setup.chat.enqueue(tokens=[text[:20], text[20:]], token_delay=0.05)
    async with setup.bridge():
        await fake.mention(setup.general, setup.bob, "who do I ask?")
        [reply] = await setup.final(setup.general, f"<@{ZWSP}{setup.alice}>.")
    content = reply["content"]
    assert "@everyone" not in content and "@here" not in content
    assert f"<@&{setup.role}>" not in content and f"<@{setup.alice}>" not in content
    assert f"@{ZWSP}everyone" in content
    assert_never_pinged(fake)
    for write in fake.message_writes():
        assert "mentions" not in write.body  # nothing but the text and allowed_mentions


async def test_reset_command_starts_a_new_session(setup: Setup) -> None:
    fake = setup.discord
    for word in ("one", "two", "three"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    async with setup.bridge():
        await fake.mention(setup.general, setup.alice, "first")
        await setup.final(setup.general, "Answer one.")
        await fake.mention(setup.general, setup.alice, "second")
        await setup.final(setup.general, "Answer two.")
        iid = await fake.invoke(setup.general, setup.alice, "reset")
        await setup.command_answered(iid)
        await fake.mention(setup.general, setup.alice, "third")
        await setup.final(setup.general, "Answer three.")
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == "Started a new conversation."
    assert original["flags"] & 64  # only the asker sees it
    one, two, three = setup.sessions()
    assert one and one == two
    assert three and three != one


async def test_links_in_an_answer_get_no_preview_cards(setup: Setup) -> None:
    # A page named in an answer (from a document the bot read) chose the title, text
    # and picture of a card shown under the bot's message.
    setup.chat.enqueue(tokens=["Verify at ", "https://evil.example/verify now."])
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "How do I verify?")
        [answer] = await setup.final(setup.general, "now.")
    assert answer["flags"] & 4  # SUPPRESS_EMBEDS


async def test_links_in_a_commands_answer_get_no_preview_cards(setup: Setup) -> None:
    # `/ask`'s first message is its deferred response, edited to the answer: that
    # edit did not carry the flag channel answers are posted with.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Verify at ", "https://evil.example/verify now."])
    async with setup.bridge():
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "How?"})
        answer = await setup.command_answered(iid, "now.")
        assert answer["flags"] & 4  # SUPPRESS_EMBEDS


async def test_a_private_threads_conversation_is_not_its_channels(setup: Setup) -> None:
    # Under `session: channel`, a private thread's questions and answers went into its
    # public channel's conversation: the next public answer drew on them.
    fake = setup.discord
    for word in ("private", "public"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    async with setup.bridge():
        private = await fake.add_thread(setup.general, "hr", private=True)
        await fake.mention(private, setup.alice, "my salary is 95k, am I underpaid?")
        await setup.final(private, "Answer private.")
        await fake.mention(setup.general, setup.bob, "what was the previous question?")
        await setup.final(setup.general, "Answer public.")
    in_private, in_public = setup.sessions()
    assert in_private and in_public and in_private != in_public


async def test_a_private_ask_is_a_conversation_of_the_askers_own(setup: Setup) -> None:
    # With ask_ephemeral, an /ask answer only the asker saw went into the channel's
    # conversation, for the next public answer to draw on.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    for word in ("private", "public", "again"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])

    async with setup.bridge():
        await setup.slash_ask("how do I report my manager?")
        await fake.mention(setup.general, setup.bob, "what was asked before me?")
        await setup.final(setup.general, "Answer public.")
        await setup.slash_ask("and then?")
    private, public, again = setup.sessions()
    assert private and public and private != public
    assert again == private  # the asker's own conversation goes on


async def test_with_private_asks_a_reset_resets_the_places_and_the_askers_own(
    setup: Setup,
) -> None:
    # /reset reset only the asker's private /ask conversation: the channel's went on.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    for n in range(4):
        setup.chat.enqueue(tokens=[f"Answer {n}."])

    async with setup.bridge():
        await fake.mention(setup.general, setup.bob, "in public")
        await setup.final(setup.general, "Answer 0.")
        await setup.slash_ask("in private")
        iid = await fake.invoke(setup.general, setup.alice, "reset")
        await setup.command_answered(iid)
        await fake.mention(setup.general, setup.bob, "in public again")
        await setup.final(setup.general, "Answer 2.")
        await setup.slash_ask("in private again")
    public, private, public_again, private_again = setup.sessions()
    assert len({public, private, public_again, private_again}) == 4


async def test_a_reset_while_a_private_answer_streams_waits_for_it_and_holds(
    setup: Setup,
) -> None:
    # The reset went first, mid-answer; the answer's end then kept its session
    # again: the next /ask went on in the conversation "reset" had ended.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"w{n} " for n in range(30)] + ["end."], token_delay=0.03)
    setup.chat.enqueue(tokens=["Again."])
    async with setup.bridge():
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "in private"})
        await fake.wait_until(  # the answer is streaming
            lambda: "w2" in (fake.messages.get(fake.interactions[iid]["original"] or "")
                             or {}).get("content", "")
        )
        rid = await fake.invoke(setup.general, setup.alice, "reset")
        await setup.command_answered(rid)
        await setup.command_answered(iid, "end.")
        await setup.slash_ask("in private again")
    first, again = setup.sessions()
    assert first and again and first != again


async def test_with_private_asks_a_reset_in_a_dm_resets_the_dm(setup: Setup) -> None:
    # A DM's audience is the asker already: /reset there said it reset, and the DM's
    # conversation went on.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    for word in ("one", "two"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    dm = fake.dm_channel(setup.alice)
    async with setup.bridge():
        await fake.dm(setup.alice, "first")
        await setup.final(dm, "Answer one.")
        iid = await fake.invoke(dm, setup.alice, "reset")
        await setup.command_answered(iid)
        await fake.dm(setup.alice, "second")
        await setup.final(dm, "Answer two.")
    one, two = setup.sessions()
    assert one and two and one != two


async def test_reset_in_a_bot_opened_thread_keeps_answering_it_without_a_mention(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First ", "answer."], sources=[SOURCE])
    setup.chat.enqueue(tokens=["Second answer."])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread_id = question["id"]
        await setup.final(thread_id, SOURCES_BLOCK)
        iid = await fake.invoke(thread_id, setup.bob, "reset")
        await setup.command_answered(iid)
        await fake.say(thread_id, setup.bob, "And how wide?")  # no mention, as before
        await setup.final(thread_id, "Second answer.")
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == "Started a new conversation."
    first, second = setup.sessions()
    assert first and second and first != second
    assert setup.chat.requests[1].json["message"] == "And how wide?"


async def test_ask_command_answers_in_the_channel(setup: Setup) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Slash ", "answer."], sources=[SOURCE], token_delay=0.05)
    async with setup.bridge():
        iid = await fake.invoke(setup.ask, setup.bob, "ask", {"question": "via slash?"})
        await setup.command_answered(iid, SOURCES_BLOCK)
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == f"Slash answer.\n\n{SOURCES_BLOCK}"
    assert not original["flags"] & 64
    assert setup.chat.requests[0].json["message"] == "via slash?"
    assert_never_pinged(fake)


async def test_a_stop_marks_slash_command_answers_through_their_own_webhooks(
    setup: Setup,
) -> None:
    # A command's messages are the interaction's: the channel's endpoints cannot
    # edit them, and a mark posted in the channel replied to nothing, in public.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Partial answer", " never shown"], hang_after=1)
    async with setup.bridge() as bridge:
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (m := fake.messages.get(fake.interactions[first]["original"] or ""))
            and m["content"] == "Partial answer"
        )
        queued = await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        await wait_for(lambda: len(bridge.relay._jobs) == 2)  # taken, waiting its turn
        sent = len(fake.requests)
        bridge.relay.hurry()  # no grace: the answer hangs
        await bridge.drain()
        stop = fake.requests[sent:]
    original = fake.messages[fake.interactions[first]["original"]]
    assert original["content"] == f"Partial answer\n\n{INTERRUPTED}"
    told = [m for m in fake.messages.values() if m["content"] == INTERRUPTED]
    assert len(told) == 1 and told[0]["flags"] & 64  # the queued one's asker, alone
    assert fake.interactions[queued]["original"] not in fake.messages  # its public thinking…
    assert [r for r in stop if "/channels/" in r.path and "/messages" in r.path] == []


async def test_a_slash_command_whose_turn_comes_during_a_stop_is_marked_unasked(
    setup: Setup,
) -> None:
    # Asked during the grace, its answer would have been paid for and most likely cut.
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"w{i} " for i in range(20)], token_delay=0.05)
    async with setup.bridge() as bridge:
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (m := fake.messages.get(fake.interactions[first]["original"] or ""))
            and m["content"].startswith("w0")
        )
        await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        await wait_for(lambda: len(bridge.relay._jobs) == 2)  # taken, waiting its turn
        await bridge.drain()
    original = fake.messages[fake.interactions[first]["original"]]
    assert original["content"] == "".join(f"w{i} " for i in range(20))  # finished
    told = [m for m in fake.messages.values() if m["content"] == INTERRUPTED]
    assert len(told) == 1 and told[0]["flags"] & 64  # the queued one's asker, alone
    assert [r.json["message"] for r in setup.chat.requests] == ["slow one?"]


async def test_an_ask_still_queued_near_discords_15_minutes_is_dropped_and_its_asker_told(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # Sent on when its turn came, its answer could not have shown (the command's token
    # gone), its credit spent, and a stateful API's session kept a turn nobody saw.
    caplog.set_level(logging.INFO, logger="chat_bridge")
    fake = setup.discord
    setup.chat.enqueue(tokens=["First "] * 30 + ["answer."], token_delay=0.05)
    setup.chat.enqueue(tokens=["Later."])
    async with setup.bridge() as bridge:
        bridge.platforms["discord"].give_up_after = 0.5  # not 14 minutes
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (m := fake.messages.get(fake.interactions[first]["original"] or ""))
            and m["content"].startswith("First")
        )
        queued = await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        [told] = await fake.wait_until(
            lambda: [m for m in fake.messages.values() if m["content"] == TOO_LATE_TEXT]
        )
        await setup.command_answered(first, "answer.")
        later = await fake.invoke(setup.general, setup.bob, "ask", {"question": "later?"})
        await setup.command_answered(later, "Later.")
        metrics = bridge.metrics.render().decode()
    assert [r.json["message"] for r in setup.chat.requests] == ["slow one?", "later?"]
    assert setup.sessions()[0] == setup.sessions()[1]  # no turn in between nobody saw
    assert told["flags"] & 64  # to the asker alone; the public "thinking…" is gone
    assert fake.interactions[queued]["original"] not in fake.messages
    assert 'outcome="withdrawn",platform="discord"} 1.0' in metrics
    assert any("waited past Discord's 15 minutes" in r.getMessage() for r in caplog.records)


async def test_a_reset_discord_did_not_take_resets_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # Its asker sees "The application did not respond": the conversation goes on.
    fake = setup.discord
    for word in ("one", "two"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    async with setup.bridge():
        await fake.mention(setup.general, setup.alice, "first")
        await setup.final(setup.general, "Answer one.")
        fake.drop.append(("POST", r"/interactions/\d+/[^/]+/callback$"))
        await fake.invoke(setup.general, setup.alice, "reset")
        await wait_for(lambda: any("could not take /reset" in r.getMessage()
                                   for r in caplog.records))
        await fake.mention(setup.general, setup.alice, "second")
        await setup.final(setup.general, "Answer two.")
    one, two = setup.sessions()
    assert one == two


async def test_an_ask_discord_did_not_take_is_not_asked_when_its_turn_comes(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # Refused (or lost) there, it has nowhere to show an answer: it is not handed on.
    fake = setup.discord
    setup.chat.enqueue(tokens=["First "] * 20 + ["answer."], token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{setup.general}/typing$"))
        fake.drop.append(("POST", r"/interactions/\d+/[^/]+/callback$"))
        await fake.invoke(setup.general, setup.bob, "ask", {"question": "and me?"})
        await wait_for(lambda: any("could not take /ask" in r.getMessage()
                                   for r in caplog.records))
        await setup.final(setup.general, "answer.")
        await wait_for(lambda: not bridge.relay.records())
    assert [r.json["message"] for r in setup.chat.requests] == ["first question"]


async def test_a_lone_ask_discord_did_not_take_is_not_asked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # With nothing ahead of it, its turn came while the acknowledgement was on its
    # way: it was asked of the chat API (paid for) and could never show.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Nobody "] * 5 + ["sees this."], token_delay=0.02)
    async with setup.bridge() as bridge:
        # Lost after a while: its turn comes first.
        fake.slow.append(("POST", r"/interactions/\d+/[^/]+/callback$", 0.5))
        fake.drop.append(("POST", r"/interactions/\d+/[^/]+/callback$"))
        await fake.invoke(setup.general, setup.bob, "ask", {"question": "lonely?"})
        await wait_for(lambda: any("could not take /ask" in r.getMessage()
                                   for r in caplog.records))
        assert not bridge.relay.records() and bridge.relay.ahead == 0
    assert setup.chat.requests == []


async def test_an_ask_begun_in_time_is_answered_past_the_point_a_queued_one_is_dropped(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Word "] * 20 + ["end."], token_delay=0.05)  # 1 s
    async with setup.bridge() as bridge:
        bridge.platforms["discord"].give_up_after = 0.3
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "long?"})
        await setup.command_answered(iid, "end.")
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == "Word " * 20 + "end."
    assert [m for m in fake.messages.values() if m["content"] == TOO_LATE_TEXT] == []


async def test_an_ask_dropped_near_its_15_minutes_whose_asker_cannot_be_told_is_not_asked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First "] * 30 + ["answer."], token_delay=0.05)
    setup.chat.enqueue(tokens=["Later."])
    async with setup.bridge() as bridge:
        bridge.platforms["discord"].give_up_after = 0.5
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (m := fake.messages.get(fake.interactions[first]["original"] or ""))
            and m["content"].startswith("First")
        )
        queued = await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        # Its token already refused (this host's clock behind Discord's, say).
        fake.interactions[queued]["expired"] = True
        await wait_for(lambda: any(
            "could not be told" in r.getMessage() for r in caplog.records
        ), timeout=10)
        await setup.command_answered(first, "answer.")
        later = await fake.invoke(setup.general, setup.bob, "ask", {"question": "later?"})
        await setup.command_answered(later, "Later.")
    assert [r.json["message"] for r in setup.chat.requests] == ["slow one?", "later?"]


async def test_missing_message_content_intent_fails_start_clearly(setup: Setup) -> None:
    setup.discord.message_content_enabled = False
    with pytest.raises(PlatformError) as caught:
        async with setup.bridge():
            pass
    assert "Message Content Intent" in str(caught.value)
    assert setup.discord.token not in str(caught.value)


async def test_a_replayed_message_is_answered_once(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["Once."])
    setup.chat.enqueue(tokens=["Twice."])
    async with setup.bridge():
        question = await setup.discord.mention(setup.general, setup.alice, "only once")
        await setup.final(setup.general, "Once.")
        await setup.discord.redeliver(question)  # a gateway replay of the same event
        await setup.discord.mention(setup.general, setup.alice, "a new question")
        msgs = await setup.final(setup.general, "Twice.")
    assert [m["content"] for m in msgs] == ["Once.", "Twice."]
    assert [r.json["message"] for r in setup.chat.requests] == ["only once", "a new question"]


async def test_an_answered_question_edited_down_to_the_mention_is_told_nothing(
    setup: Setup,
) -> None:
    # A secret pasted by mistake and cut from the question after its answer: the edit
    # asks nothing, and the bot is not to post that it should be asked something.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered."])
    setup.chat.enqueue(tokens=["Sentinel."])
    async with setup.bridge():
        question = await fake.mention(
            setup.general, setup.bob, "why does login fail with password hunter2?"
        )
        await setup.final(setup.general, "Answered.")
        await fake.edit(question["id"], f"<@{fake.app_id}>")
        await fake.mention(setup.general, setup.bob, "sentinel")
        await setup.final(setup.general, "Sentinel.")
    shown = [m["content"] for m in fake.channel_messages(setup.general)]
    assert MENTION_HELP not in shown and "Answered." in shown


async def test_a_reply_to_someone_else_in_a_followed_thread_is_not_a_follow_up(
    setup: Setup,
) -> None:
    # Discord's way to address a person is its Reply: in a thread the bot follows, a
    # reply to another member is said to them, as "@alice ..." is.
    fake = setup.discord
    for answer in ("First answer.", "To Alice.", "To the bot.", "Sentinel."):
        setup.chat.enqueue(tokens=[answer])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = question["id"]
        first = await setup.final(thread, "First answer.")
        alice = await fake.say(thread, setup.alice, "I measured it last week, 2 km")
        await setup.final(thread, "To Alice.")  # the thread's follow-ups are answered
        await fake.reply(thread, setup.bob, alice["id"], "thanks, that is what I needed")
        await fake.reply(thread, setup.bob, first[-1]["id"], "and its height?")
        await setup.final(thread, "To the bot.")
        await fake.mention(setup.general, setup.bob, "sentinel")
        await setup.final(setup.general, "Sentinel.")
    asked = [r.json["message"] for r in setup.chat.requests]
    assert asked == [
        "How long is the bridge?", "I measured it last week, 2 km", "and its height?", "sentinel"
    ]
