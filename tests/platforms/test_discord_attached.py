"""Discord end to end: questions that come with files, and forwarded messages."""

from __future__ import annotations

from bridge.answering import FILES_NOT_READ
from bridge.intake import MENTION_HELP
from tests.platforms.discord_support import Setup, setup  # noqa: F401


async def test_a_question_with_a_file_is_asked_in_its_words_and_told_the_file_was_not_read(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(
        tokens=["It means ", "the disk is full."], sources=[("https://docs.example/disk", "Disk")]
    )
    setup.chat.enqueue(tokens=["Plain answer."])
    async with setup.bridge():
        await fake.mention(
            setup.general,
            setup.alice,
            "what does the error in this screenshot mean?",
            ("error.png",),
        )
        [answer] = await setup.final(setup.general, FILES_NOT_READ)
        # A file with no words: asked for them, as before (and nothing is asked).
        await fake.mention(setup.general, setup.alice, "", ("shot.png",))
        await setup.final(setup.general, MENTION_HELP)
        await fake.mention(setup.general, setup.alice, "and without a file?")
        msgs = await setup.final(setup.general, "Plain answer.")
    # The chat API gets the text, as it did.
    assert [r.json["message"] for r in setup.chat.requests] == [
        "what does the error in this screenshot mean?",
        "and without a file?",
    ]
    # The note ends the reply, under the answer and its sources.
    assert answer["content"] == (
        "It means the disk is full.\n\n**Sources**\n- [Disk](<https://docs.example/disk>)"
        f"\n\n{FILES_NOT_READ}"
    )
    assert msgs[-1]["content"] == "Plain answer."  # no file: no note


async def test_a_forwarded_message_is_answered_in_a_channel_that_answers_all(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Use the reset link."])
    setup.chat.enqueue(tokens=["It is a timeout."])
    async with setup.bridge():
        # Its text is in its snapshot, with mentions in words as a message's are.
        await fake.forward(
            setup.ask,
            setup.alice,
            f"how do I reset my password? <#{setup.general}> says nothing",
            source=setup.general,
        )
        await setup.final(setup.ask, "Use the reset link.")
        # A forwarded file counts as the question's own.
        await fake.forward(
            setup.ask, setup.alice, "what is this error?", ("log.txt",), source=setup.general
        )
        msgs = await setup.final(setup.ask, FILES_NOT_READ)
    assert [r.json["message"] for r in setup.chat.requests] == [
        "how do I reset my password? #general says nothing",
        "what is this error?",
    ]
    assert [m["content"] for m in msgs] == [
        "Use the reset link.",
        f"It is a timeout.\n\n{FILES_NOT_READ}",
    ]


async def test_a_message_forwarded_to_the_bot_in_a_dm_is_answered(
    setup: Setup,
) -> None:
    fake = setup.discord
    dm = fake.dm_channel(setup.bob)
    setup.chat.enqueue(tokens=["Use the reset link."])
    async with setup.bridge():
        await fake.forward(dm, setup.bob, "how do I reset my password?", source=setup.general)
        [reply] = await setup.final(dm, "Use the reset link.")
    assert reply["content"] == "Use the reset link."  # not HELP_TEXT, and no note
    assert [r.json["message"] for r in setup.chat.requests] == ["how do I reset my password?"]
