"""A reply's sources: which are kept, and where under the answer they go."""

from __future__ import annotations

from bridge.budget import Budgets
from bridge.interfaces import Source
from bridge.render import LiveReply
from bridge.sources import dedupe_sources
from tests.core.recording import RecordingTarget


async def test_final_text_wins_and_sources_are_appended_once_in_order() -> None:
    target = RecordingTarget()
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("Helo wrld")
    sources = dedupe_sources(
        [
            Source("https://a.example/1", "One"),
            Source("https://b.example/2", "Two"),
            Source("https://a.example/1", "One again"),
            Source("https://c.example/3", "Three"),
        ],
        limit=2,
    )
    await reply.finish("Hello world", sources)
    assert target.visible() == [
        "Hello world\n\nSources: [One](https://a.example/1), [Two](https://b.example/2)"
    ]


def test_sources_that_are_no_web_link_do_not_take_the_place_of_one() -> None:
    junk = [Source(url, "x") for url in ("javascript:void(0)", "about:blank", "#", "/docs/a")]
    kept = dedupe_sources([*junk, Source("HTTPS://docs.example/real", "Real")], limit=2)
    assert kept == [Source("HTTPS://docs.example/real", "Real")]


def test_sources_max_zero_shows_none() -> None:
    sources = [Source("https://a.example/1", "One"), Source("https://b.example/2", "Two")]
    assert dedupe_sources(sources, limit=0) == []


async def test_sources_that_fit_only_without_the_blank_line_go_in_a_message_of_their_own() -> None:
    # The blank line between the answer and its sources counts too: without it, the
    # last message came out past the limit, and the platform refused it.
    sources = [Source("https://docs.example/a", "A")]
    tail = RecordingTarget().format_sources(sources)

    async def shown(answer: str) -> list[str]:
        target = RecordingTarget(max_chars=200)
        reply = LiveReply(target, Budgets(), edit_interval=0.01)
        await reply.start()
        reply.feed(answer)
        await reply.finish(None, sources)
        return target.visible()

    joined = "x" * (200 - len(tail) - 2)  # with the blank line: the limit exactly
    assert await shown(joined) == [f"{joined}\n\n{tail}"]
    apart = "x" * (200 - len(tail) - 1)  # one character more
    assert await shown(apart) == [apart, tail]


async def test_sources_too_long_for_the_last_message_are_cut_between_links() -> None:
    target = RecordingTarget(max_chars=120)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer.")
    sources = [Source(f"https://example.com/{'a' * 40}/{i}", f"Title {i}") for i in range(5)]
    await reply.finish(None, sources)
    shown = "\n".join(target.visible())
    assert all(f"[Title {i}](https://example.com/{'a' * 40}/{i})" in shown for i in range(5))


async def test_a_footnote_ends_the_reply_under_its_sources_or_in_a_message_of_its_own() -> None:
    note = "_Attached files are not read._"
    sources = [Source("https://docs.example/a", "A")]
    tail = RecordingTarget().format_sources(sources)

    async def shown(answer: str | None, failure: str | None = None) -> list[str]:
        target = RecordingTarget(max_chars=200)
        reply = LiveReply(target, Budgets(), edit_interval=0.01, footnote=note)
        await reply.start()
        if answer is not None:
            reply.feed(answer)
        if failure is None:
            await reply.finish(None, sources)
        else:
            await reply.fail(failure)
        return target.visible()

    assert await shown("An answer.") == [f"An answer.\n\n{tail}\n\n{note}"]
    full = "x" * (200 - len(tail) - 2)  # the sources fill the message
    assert await shown(full) == [f"{full}\n\n{tail}", note]
    assert await shown("") == [f"_(no answer)_\n\n{tail}\n\n{note}"]
    # An answer cut short keeps it, under the notice; with no answer shown, the
    # notice stands alone.
    assert await shown("Half an", "Cut off.") == [f"Half an\n\n_⚠️ Cut off._\n\n{note}"]
    assert await shown(None, "Cut off.") == ["_⚠️ Cut off._"]


async def test_a_source_whose_link_is_longer_than_a_message_is_left_out() -> None:
    # Its block was cut inside the link and still passed the limit: every post of it
    # was refused, the reply ended "could not be completed", and no source showed.
    target = RecordingTarget(max_chars=120)
    reply = LiveReply(target, Budgets(), edit_interval=0.01)
    await reply.start()
    reply.feed("An answer.")
    huge = Source("https://example.com/?q=" + "a" * 200, "Huge")
    await reply.finish(None, [huge, Source("https://example.com/b", "B"), huge])
    assert target.visible() == ["An answer.\n\nSources: [B](https://example.com/b)"]
    assert all(len(text) <= 120 for text in target.visible())


def test_one_page_is_one_source_however_its_url_is_written() -> None:
    # Case, a default port or a trailing slash made four sources of one page, and
    # pushed others out of the five shown.
    same = [
        "https://x.example/a",
        "https://X.example/a",
        "https://x.example/a/",
        "HTTPS://x.example:443/a#part",
    ]
    kept = dedupe_sources(
        [*(Source(url, f"t{i}") for i, url in enumerate(same)), Source("https://y.example", "y")],
        limit=5,
    )
    assert [s.url for s in kept] == ["https://x.example/a", "https://y.example"]
    # The path and the query tell pages apart.
    other = dedupe_sources(
        [
            Source("https://x.example/A"),
            Source("https://x.example/a?p=2"),
            Source("https://x.example/a"),
        ],
        limit=5,
    )
    assert len(other) == 3


def test_a_source_url_python_cannot_read_is_kept_and_breaks_nothing() -> None:
    # urlsplit raised: the finished answer lost its sources and ended "went wrong".
    odd = [Source("https://example.jp\uff0fguide", "Guide"), Source("https://[::1", "x")]
    assert dedupe_sources([*odd, Source("https://y.example", "y")], limit=5) == [
        *odd,
        Source("https://y.example", "y"),
    ]
