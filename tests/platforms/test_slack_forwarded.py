"""Slack end to end: forwarded (shared) messages, and link previews that are not read."""

from __future__ import annotations

from bridge.answering import FILES_NOT_READ
from tests.platforms.slack_support import (
    CHANNEL,
    CHANNEL_2,
    DM,
    Harness,
)

ALICE = "U0ALICE01"


async def test_a_message_forwarded_alone_to_the_bot_in_a_dm_is_asked(
    harness: Harness,
) -> None:
    slack = harness.slack
    # A forward's own text is empty: what it forwards is in its attachment.
    [said] = slack.user_message(
        CHANNEL_2, "the build fails with exit 137 on <#C0SUPPORT1|support>", user=ALICE
    )
    [logged] = slack.user_message(
        CHANNEL_2, "and here is the log", user=ALICE, files=("build.log",)
    )
    harness.chat.enqueue(tokens=["It ran out of memory."])
    harness.chat.enqueue(tokens=["It was killed."])
    for body in slack.user_message(
        DM, "", attachments=(slack.forwarded(CHANNEL_2, said["event"]["ts"]),)
    ):
        await harness.send(body)
    [reply] = await harness.answer(DM, None, "It ran out of memory.")
    # The forwarded message's files are the question's: its answer says they were not read.
    for body in slack.user_message(
        DM,
        "",
        attachments=(slack.forwarded(CHANNEL_2, logged["event"]["ts"], files=("build.log",)),),
    ):
        await harness.send(body)
    [_, noted] = await harness.answer(DM, None, FILES_NOT_READ, n=2)
    asked = await harness.sentinel()
    # Its markup in words, as a message's is; not asked for words.
    assert asked == ["the build fails with exit 137 on #support", "and here is the log", "sentinel"]
    assert reply.text == "It ran out of memory."
    assert noted.text == f"It was killed.\n\n{FILES_NOT_READ}"
    assert slack.ephemerals == []


async def test_a_forward_with_a_comment_asks_the_comment_then_what_it_forwards(
    harness: Harness,
) -> None:
    slack = harness.slack
    said, _ = slack.user_message(  # its message and app_mention: not sent here
        CHANNEL_2,
        f"<@{slack.bot_user_id}> the build fails with exit 137 &amp; no log",
        user=ALICE,
    )
    harness.chat.enqueue(tokens=["It ran out of memory."])
    harness.chat.enqueue(tokens=["Raise its memory limit."])
    shared = slack.forwarded(CHANNEL_2, said["event"]["ts"])
    # In a channel, with the mention in the comment: its app_mention carries the forward.
    bodies = slack.user_message(
        CHANNEL, f"<@{slack.bot_user_id}> why does this happen?", attachments=(shared,)
    )
    for body in bodies:
        await harness.send(body)
    root = bodies[0]["event"]["ts"]
    await harness.answer(CHANNEL, root, "It ran out of memory.")
    for body in slack.user_message(DM, "how do I fix this?", attachments=(shared,)):
        await harness.send(body)
    await harness.answer(DM, None, "Raise its memory limit.")
    asked = await harness.sentinel()
    # The bot's mention only addressing it is left out of the forwarded text too.
    assert asked == [
        "why does this happen?\n\nthe build fails with exit 137 & no log",
        "how do I fix this?\n\nthe build fails with exit 137 & no log",
        "sentinel",
    ]


async def test_a_link_preview_is_not_read_as_the_question(
    harness: Harness,
) -> None:
    slack = harness.slack
    [said] = slack.user_message(CHANNEL_2, "the runbook says to restart it", user=ALICE)
    link = f"https://fake.slack.com/archives/{CHANNEL_2}/p{said['event']['ts'].replace('.', '')}"
    harness.chat.enqueue(tokens=["Restart it."])
    harness.chat.enqueue(tokens=["No."])
    # A web page's preview, and a pasted message link's (a preview, not a forward):
    # what was written is the question, as it is on Discord.
    page = slack.unfurl(
        "https://docs.example/oom", "Out of memory", "Why a process is killed with exit 137"
    )
    for body in slack.user_message(
        DM, "what about <https://docs.example/oom>?", attachments=(page,)
    ):
        await harness.send(body)
    await harness.answer(DM, None, "Restart it.")
    pasted = slack.forwarded(CHANNEL_2, said["event"]["ts"], files=("shot.png",), pasted=True)
    for body in slack.user_message(DM, f"is <{link}> right?", attachments=(pasted,)):
        await harness.send(body)
    [_, reply] = await harness.answer(DM, None, "No.", n=2)
    asked = await harness.sentinel()
    assert asked == ["what about https://docs.example/oom?", f"is {link} right?", "sentinel"]
    assert reply.text == "No."  # a preview's files are not the question's
