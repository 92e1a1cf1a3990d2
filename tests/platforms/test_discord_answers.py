"""Discord end to end: an answer as it shows, streamed into a message edited as it grows, cut
into messages Discord takes, pinging nobody, and ended when its place goes (the real Bridge
and discord.py client against the fakes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapters.platforms.discord.format import ZWSP
from tests.core.fakeplatform import wait_for
from tests.platforms.discord_support import SOURCE, SOURCES_BLOCK, Setup, assert_never_pinged


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
    setup.discord.drop = [
        ("POST", rf"/channels/{setup.general}/typing$"),
        ("PATCH", rf"/channels/{setup.general}/messages/"),
    ]
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


def _replied_to(msg: dict[str, Any]) -> str | None:
    return (msg.get("message_reference") or {}).get("message_id")


async def test_long_answer_arrives_as_three_messages_each_replying_to_the_one_before(
    setup: Setup,
) -> None:
    # Each part a reply to the one before it: in a busy channel, where another answer
    # comes between two parts, the later part is still tied to its question.
    lines = [f"Line {i:03d}: " + "x" * 39 for i in range(100)]
    answer = "\n".join(lines) + "!"
    assert len(answer) == 5000
    chunks = [answer[i : i + 250] for i in range(0, len(answer), 250)]
    setup.chat.enqueue(tokens=chunks, token_delay=0.01)
    async with setup.bridge():
        question = await setup.discord.mention(setup.general, setup.alice, "the long one")
        msgs = await setup.final(setup.general, lines[-1] + "!")
    assert len(msgs) == 3
    assert all(len(m["content"]) <= 2000 for m in msgs)
    shown = [line for m in msgs for line in m["content"].splitlines() if line.strip()]
    assert shown == answer.splitlines()
    assert [_replied_to(m) for m in msgs] == [question["id"], msgs[0]["id"], msgs[1]["id"]]
    for post in setup.discord.sent("POST", rf"/channels/{setup.general}/messages$"):
        assert post.body["message_reference"]["fail_if_not_exists"] is False
    assert_never_pinged(setup.discord)
    assert not setup.discord.rejected
    assert setup.discord.rate_limited == 0


async def test_a_cut_off_notice_posted_apart_replies_to_the_answer_it_ends(
    setup: Setup,
) -> None:
    # 1,980 characters: the notice does not fit under them, and goes in a message of
    # its own, which was tied to nothing.
    words = [f"word{i:05d} " for i in range(198)]
    setup.chat.enqueue(tokens=words, token_delay=0.005, drop_after=len(words))
    async with setup.bridge():
        question = await setup.discord.mention(setup.general, setup.alice, "a long one?")
        msgs = await setup.final(setup.general, "please ask again._")
    assert len(msgs) == 2 and "cut off" in msgs[1]["content"]
    assert [_replied_to(m) for m in msgs] == [question["id"], msgs[0]["id"]]
    assert_never_pinged(setup.discord)


async def test_a_long_table_leaves_its_completed_messages_as_they_are_at_the_end(
    setup: Setup,
) -> None:
    # Discord pads a table's columns: a message is longer than its Markdown, and the
    # end split the answer again, elsewhere, and rewrote messages already complete.
    rows = "".join(
        f"| item {i} | {'value ' * (i % 5 + 1)}| {i * 37 % 1000} |\n" for i in range(100)
    )
    answer = "The table:\n\n| Item | Value | Count |\n|---|---|---|\n" + rows + "\nThat is all."
    setup.chat.enqueue(
        tokens=[answer[i : i + 60] for i in range(0, len(answer), 60)], token_delay=0.01
    )
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
        assert not [
            r
            for r in requests
            if r.method == "PATCH" and r.path.endswith(earlier["id"]) and r.at > later
        ]


@pytest.mark.parametrize("mark", ["*", "_", "__", "||"])
async def test_emphasis_or_a_spoiler_across_a_cut_goes_whole_to_the_next_message(
    setup: Setup, mark: str
) -> None:
    # Cut in two, italics showed their marks raw in both messages, and a spoiler
    # showed what it hides.
    filler = ("The service keeps a copy of every file you upload. " * 40)[:1950]
    said = f"{mark}This applies only to the paid plans, not to the free tier.{mark}"
    answer = f"{filler} {said} More text follows here."
    setup.chat.enqueue(
        tokens=[answer[i : i + 25] for i in range(0, len(answer), 25)], token_delay=0.005
    )
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
    setup.chat.enqueue(
        tokens=[answer[i : i + 200] for i in range(0, len(answer), 200)], token_delay=0.01
    )
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


async def test_links_in_an_answer_get_no_preview_cards(setup: Setup) -> None:
    # A page named in an answer (from a document the bot read) chose the title, text
    # and picture of a card shown under the bot's message.
    setup.chat.enqueue(tokens=["Verify at ", "https://evil.example/verify now."])
    async with setup.bridge():
        await setup.discord.mention(setup.general, setup.alice, "How do I verify?")
        [answer] = await setup.final(setup.general, "now.")
    assert answer["flags"] & 4  # SUPPRESS_EMBEDS
