"""Discord end to end: an /ask whose answer is still streaming near the end of the 15
minutes Discord gives a command is cut while its token works, its asker told why (the
real Bridge and discord.py client against the fakes)."""

from __future__ import annotations

import pytest

from adapters.platforms.discord import targets
from adapters.platforms.discord.targets import CUT_TEXT
from tests.core.fakeplatform import wait_for
from tests.fakes.chatapi import FakeChatAPI, fake_chat_api  # noqa: F401
from tests.fakes.discord import fake_discord  # noqa: F401
from tests.platforms.discord_support import Setup, setup  # noqa: F401

NOTE = f"_⚠️ {CUT_TEXT}_"


async def test_an_ask_still_streaming_near_discords_15_minutes_is_cut_with_a_note(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the token's life, the text would stop mid-answer with nothing saying why,
    # and the chat API's stream (a slow reasoning model's) run on, paid for, unseen.
    # Not 14 minutes; time enough for the first words to show on a loaded machine.
    monkeypatch.setattr(targets, "CUT_AFTER", 5.0)
    setup.stateless = True  # the history sent with each question shows what was kept
    fake = setup.discord
    setup.chat.enqueue(tokens=["The ", "first ", "part."], hang_after=3)
    setup.chat.enqueue(tokens=["Short."])
    async with setup.bridge() as bridge:
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "long one?"})
        cut = await setup.command_answered(iid, NOTE)
        await setup.chat.wait_disconnects(1)  # its stream is stopped, not left running
        await wait_for(lambda: bridge.relay.live == 0)
        token = fake.interactions[iid]["token"]
        made = len([r for r in fake.requests if token in r.path])
        fake.interactions[iid]["expired"] = True  # the 15 minutes are over
        later = await fake.invoke(setup.general, setup.alice, "ask", {"question": "short?"})
        await setup.command_answered(later, "Short.")
        metrics = bridge.metrics.render().decode()
    assert cut["content"] == f"The first part.\n\n{NOTE}"
    assert len([r for r in fake.requests if token in r.path]) == made
    # Counted as cut by its platform's time, not as an answer past max_answer_chars.
    assert 'outcome="out_of_time",platform="discord"} 1.0' in metrics
    assert 'outcome="too_long"' not in metrics
    # A cut answer is not kept in the conversation's history, as one too long is not.
    assert [m["content"] for m in setup.chat.requests[1].json["messages"]] == ["short?"]


def test_an_ask_whose_turn_comes_just_before_it_is_given_up_has_time_to_show() -> None:
    # Cut when it would have been given up, one whose turn came a moment before was
    # asked of the chat API (and paid for) and showed the note alone.
    from adapters.platforms.discord.commands import GIVE_UP_AFTER

    assert targets.CUT_AFTER - GIVE_UP_AFTER >= 30.0  # time for an answer to show
    assert targets.TOKEN_LIFE - targets.CUT_AFTER >= 10.0  # and for the note's edit
