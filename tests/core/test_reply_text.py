"""What is left of a message cut short: its note under it, within the platform's limit."""

from __future__ import annotations

from bridge.reply_text import with_note

NOTE = "_⚠️ cut short_"


def test_a_note_that_fits_goes_under_the_whole_message() -> None:
    assert with_note("Line one.\nLine two.\n", NOTE, 100) == f"Line one.\nLine two.\n\n{NOTE}"


def test_a_full_message_gives_the_note_room_from_its_last_lines() -> None:
    shown = "\n".join(f"Line {i:02d}: " + "x" * 20 for i in range(10))  # 309 characters
    marked = with_note(shown, NOTE, 310)
    assert len(marked) <= 310 and marked.endswith(f"\n\n{NOTE}")
    body = marked[: -len(NOTE) - 2]
    assert shown.startswith(body) and body.endswith("x" * 20)  # whole lines only


def test_a_code_block_left_open_by_the_cut_is_closed_above_the_note() -> None:
    shown = "Run this:\n```\n" + "\n".join(f"step {i:02d}" for i in range(30)) + "\n```"
    marked = with_note(shown, NOTE, 200)
    assert len(marked) <= 200
    body = marked[: -len(NOTE) - 2]
    assert body.startswith("Run this:\n```\nstep 00") and body.endswith("\n```")
    assert body.count("```") == 2


def test_a_message_with_no_room_at_all_shows_the_note() -> None:
    assert with_note("x" * 50, NOTE, len(NOTE)) == NOTE
