"""Slack end to end: questions that come with files."""

from __future__ import annotations

from bridge.answering import FILES_NOT_READ
from bridge.intake import HELP_TEXT
from tests.platforms.slack_support import (
    CHANNEL,
    DM,
    Harness,
)


async def test_a_question_with_a_file_is_asked_in_its_words_and_told_the_file_was_not_read(
    harness: Harness,
) -> None:
    slack = harness.slack
    harness.chat.enqueue(tokens=["It is ", "a timeout."])
    harness.chat.enqueue(tokens=["It means the disk is full."])
    for body in slack.user_message(DM, "what is in this log?", files=("log.txt",)):
        await harness.send(body)
    [in_dm] = await harness.answer(DM, None, FILES_NOT_READ)
    # In a channel, a mention with a file comes as its message event alone.
    bodies = slack.user_message(
        CHANNEL, f"<@{slack.bot_user_id}> what does this error mean?", files=("error.png",)
    )
    for body in bodies:
        await harness.send(body)
    root = bodies[0]["event"]["ts"]
    [in_thread] = await harness.answer(CHANNEL, root, FILES_NOT_READ)
    # A file with no words: asked for them, as before (and nothing is asked).
    for body in slack.user_message(DM, "", files=("shot.png",)):
        await harness.send(body)
    await slack.wait_for(lambda: [e["text"] for e in slack.ephemerals] == [HELP_TEXT])
    asked = await harness.sentinel()
    # The chat API gets the text, as it did.
    assert asked == ["what is in this log?", "what does this error mean?", "sentinel"]
    assert in_dm.text == f"It is a timeout.\n\n{FILES_NOT_READ}"
    assert in_thread.text == f"It means the disk is full.\n\n{FILES_NOT_READ}"
    assert slack.bot_replies(DM)[-1].text == "Sentinel."  # no file: no note
