"""Bot messages in a row in a conversation: counted once each, reset by a person, and
never more conversations remembered than MAX_PLACES."""

from __future__ import annotations

from adapters.platforms.slack.loops import BOT_TURNS, MAX_PLACES, BotTurns


def test_bot_turns_are_counted_per_conversation_until_a_person_writes() -> None:
    turns = BotTurns()
    thread, other = ("T1", "C1", "1.1"), ("T1", "C1", "2.2")
    assert [turns.bot(thread, f"3.{n}") for n in range(BOT_TURNS + 1)] == list(
        range(1, BOT_TURNS + 2)
    )
    assert turns.bot(thread, f"3.{BOT_TURNS}") == BOT_TURNS + 1  # the same message again
    assert turns.bot(other, "4.1") == 1  # another thread's are its own
    turns.person(thread)
    assert turns.bot(thread, "5.1") == 1
    assert turns.bot(other, "4.2") == 2


def test_no_more_conversations_are_remembered_than_max_places() -> None:
    turns = BotTurns()
    for n in range(MAX_PLACES + 50):
        turns.bot(("T1", "C1", f"{n}.0"), "9.9")
    assert len(turns._turns) == MAX_PLACES
    assert turns.bot(("T1", "C1", "0.0"), "9.9") == 1  # forgotten
    assert turns.bot(("T1", "C1", f"{MAX_PLACES + 49}.0"), "9.9") == 1  # the same message
