"""The bot's mention in a question: gone where it only addresses the bot, its name
within a sentence (both platforms)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.platforms.mentions import without_mention

ME = r"<@U1(?:\|[^>]*)?>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@U1> what is a bridge?", "what is a bridge?"),
        ("<@U1>, what is a bridge?", "what is a bridge?"),
        ("<@U1>: what is a bridge?", "what is a bridge?"),
        ("<@U1>\n\nwhat is a bridge?", "what is a bridge?"),
        ("<@U1> <@U1|bot> what is a bridge?", "what is a bridge?"),
        ("what is a bridge? <@U1>", "what is a bridge?"),
        ("what is a bridge, <@U1>?", "what is a bridge?"),
        ("thanks <@U1> !", "thanks!"),
        ("<@U1>", ""),
        # Within the sentence it is a word of it: the bot's name.
        ("what can <@U1> do for me?", "what can Bridge Bot do for me?"),
        ("hey <@U1>, what is a bridge?", "hey Bridge Bot, what is a bridge?"),
        ("<@U1> does <@U1> know <@U1>?", "does Bridge Bot know?"),
        # Someone else's mention is not the bot's.
        ("<@U2> <@U1> what is it?", "<@U2> Bridge Bot what is it?"),
        ("what is a bridge?", "what is a bridge?"),
        # Chinese and Japanese punctuation addresses the bot as a comma does.
        ("<@U1>、これは何ですか？", "これは何ですか？"),
        ("<@U1>：这是什么？", "这是什么？"),
        ("谢谢，<@U1>。", "谢谢。"),
    ],
)
def test_a_mention_that_addresses_the_bot_goes_and_one_within_is_its_name(
    text: str, expected: str
) -> None:
    assert without_mention(text, ME, "Bridge Bot") == expected


def test_a_name_is_put_in_as_it_is() -> None:
    assert without_mention(r"ask <@U1> now", ME, r"a\1 \g<0>") == r"ask a\1 \g<0> now"


@given(st.lists(st.sampled_from(["<@U1>", "<@U2>", " ", ",", ":", "?", "\n", "word"])))
def test_the_bots_mention_never_reaches_the_chat_api(parts: list[str]) -> None:
    text = without_mention("".join(parts), ME, "Bridge Bot")
    assert not re.search(ME, text)
    assert text.count("<@U2>") == parts.count("<@U2>")
