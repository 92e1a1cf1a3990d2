"""The chaturdata (thread + polling) dialect against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from adapters.apis.chaturdata import LOST_THREAD, NEW_THREAD, ChatUrData
from bridge.errors import (
    APIReportedError,
    BadRequest,
    CutOff,
    ProtocolError,
    RateLimited,
    TimedOut,
    Unauthorized,
    Unavailable,
)
from bridge.interfaces import ChatRequest, Session, Source, Sources, Status, Token
from tests.apis.helpers import (
    collect,
    collect_until_error,
    done_of,
    make,
    text_of,
)


async def test_new_thread_polls_until_completed(fake_chat_api, http):
    fake_chat_api.enqueue(
        final="Our refund window is 30 days.",
        sources=[("https://docs.example.com/refunds", "Refunds")],
        polls=3,
    )
    api = make("chaturdata", fake_chat_api, http)
    events = await collect(api, ChatRequest(message="What is the refund window?"))

    statuses = [e for e in events if isinstance(e, Status)]
    assert len(statuses) == 2 and all(s.text.startswith("Working… ") for s in statuses)
    assert statuses[0].text.endswith(" s")
    assert [e for e in events if isinstance(e, Token)] == [Token("Our refund window is 30 days.")]
    assert Sources((Source("https://docs.example.com/refunds", "Refunds"),)) in events
    done = done_of(events)
    assert done.text == "Our refund window is 30 days."  # the 【0:0†source】 marker is gone
    assert done.session is not None and done.session in fake_chat_api.threads

    post, *polls = fake_chat_api.requests
    assert post.path == "/chaturdata/api/newMessage"
    assert post.json == {"message": "What is the refund window?"}
    assert post.headers["authorization"] == f"Bearer {fake_chat_api.api_key}"
    assert len(polls) == 3
    assert all(p.method == "GET" and p.query == {"threadId": done.session} for p in polls)


async def test_second_message_reuses_the_thread_and_reads_only_the_new_answer(fake_chat_api, http):
    fake_chat_api.enqueue(final="First answer.")
    fake_chat_api.enqueue(final="Second answer.", polls=2)
    api = make("chaturdata", fake_chat_api, http)
    first = await collect(api, ChatRequest(message="one"))
    thread = done_of(first).session
    second = await collect(api, ChatRequest(message="two", session=thread))
    assert done_of(second).text == "Second answer."
    assert done_of(second).session == thread
    posts = [r for r in fake_chat_api.requests if r.method == "POST"]
    assert posts[1].json == {"message": "two", "thread_id": thread}
    assert len(fake_chat_api.threads[thread].messages) == 4


async def test_a_follow_up_whose_post_does_not_name_the_thread_keeps_it(fake_chat_api, http):
    fake_chat_api.enqueue(final="First answer.")
    fake_chat_api.enqueue(final="Second answer.")
    api = make("chaturdata", fake_chat_api, http)
    thread = done_of(await collect(api, ChatRequest(message="one"))).session
    fake_chat_api.chaturdata_echo_thread = False
    second = done_of(await collect(api, ChatRequest(message="two", session=thread)))
    assert (second.text, second.session) == ("Second answer.", thread)


async def test_a_thread_the_api_no_longer_knows_is_replaced_by_a_new_one(fake_chat_api, http):
    fake_chat_api.enqueue(final="First answer.")
    fake_chat_api.enqueue(final="Fresh answer.")
    api = make("chaturdata", fake_chat_api, http)
    thread = done_of(await collect(api, ChatRequest(message="one"))).session
    del fake_chat_api.threads[thread]  # deleted, or expired at the API
    done = done_of(await collect(api, ChatRequest(message="two", session=thread)))
    assert done.text == f"{NEW_THREAD}\n\nFresh answer."
    assert done.session in fake_chat_api.threads and done.session != thread
    posts = [r.json for r in fake_chat_api.requests if r.method == "POST"]
    assert posts[1:] == [{"message": "two", "thread_id": thread}, {"message": "two"}]


@pytest.mark.parametrize("first_run", ["failed", "timed out", "thread gone"])
async def test_a_lost_thread_is_told_when_the_new_ones_first_run_gives_no_answer(
    fake_chat_api, http, first_run
):
    # The new thread is kept (the next question goes on in it, with no note): the
    # failure was the asker's only chance to learn their conversation was gone.
    fake_chat_api.enqueue(final="First answer.")
    if first_run == "failed":
        fake_chat_api.enqueue(run_status="failed", error="Vector store unavailable")
    else:
        fake_chat_api.enqueue(polls=10_000)
    api = make("chaturdata", fake_chat_api, http, timeouts={"total": 1.5})
    thread = done_of(await collect(api, ChatRequest(message="one"))).session
    del fake_chat_api.threads[thread]
    if first_run == "thread gone":

        def polled_the_new_thread() -> bool:
            return any(
                r.path.endswith("/getThread") and r.query["threadId"] != thread
                for r in fake_chat_api.requests
            )

        async def forget_the_new_thread() -> None:
            while not polled_the_new_thread():
                await fake_chat_api.wait_requests(len(fake_chat_api.requests) + 1)
            fake_chat_api.threads.clear()

        forgetting = asyncio.create_task(forget_the_new_thread())
    seen, exc = await collect_until_error(api, ChatRequest(message="two", session=thread))
    if first_run == "thread gone":
        await forgetting
    assert isinstance(seen[0], Session) and seen[0].session != thread  # kept
    assert exc.user_message.startswith(f"{LOST_THREAD} The assistant ")
    told = {
        "failed": "reported an error: Vector store unavailable.",
        "timed out": "did not finish within 1.5 s",
        "thread gone": "lost this conversation while answering",
    }[first_run]
    assert told in exc.user_message
    assert LOST_THREAD not in str(exc)  # the log says what failed, as before


async def test_a_failure_in_a_thread_that_was_there_says_nothing_of_a_lost_one(fake_chat_api, http):
    fake_chat_api.enqueue(final="First answer.")
    fake_chat_api.enqueue(run_status="failed", error="Vector store unavailable")
    api = make("chaturdata", fake_chat_api, http)
    thread = done_of(await collect(api, ChatRequest(message="one"))).session
    _, exc = await collect_until_error(api, ChatRequest(message="two", session=thread))
    assert exc.user_message == "The assistant reported an error: Vector store unavailable."


async def test_brackets_of_the_answer_are_kept_and_citation_markers_removed(fake_chat_api, http):
    fake_chat_api.enqueue(final="【重要】営業時間は【平日】9時〜17時です。")
    api = make("chaturdata", fake_chat_api, http)
    done = done_of(await collect(api, ChatRequest(message="営業時間は？")))
    assert done.text == "【重要】営業時間は【平日】9時〜17時です。"


async def test_file_citations_become_sources_with_a_file_url(fake_chat_api, http):
    fake_chat_api.enqueue(final="See the guide.", file_citations=[("file-abc", "a quote")])
    api = make("chaturdata", fake_chat_api, http, file_url="https://files.example.com/{file_id}")
    events = await collect(api, ChatRequest(message="guide?"))
    assert done_of(events).text == "See the guide."
    assert Sources((Source("https://files.example.com/file-abc", "file-abc.md"),)) in events

    fake_chat_api.enqueue(final="See the guide.", file_citations=[("file-abc", "a quote")])
    plain = make("chaturdata", fake_chat_api, http)
    events = await collect(plain, ChatRequest(message="guide?"))
    assert done_of(events).text == "See the guide."
    assert not any(isinstance(e, Sources) for e in events)


@pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
async def test_failed_runs_show_the_error(fake_chat_api, http, status):
    fake_chat_api.enqueue(run_status=status, error="Vector store unavailable", polls=2)
    api = make("chaturdata", fake_chat_api, http)
    seen, exc = await collect_until_error(api, ChatRequest(message="q"))
    assert any(isinstance(e, Status) for e in seen)
    # The thread the question opened is told before the run fails: it is kept.
    [thread] = fake_chat_api.threads
    assert seen[0] == Session(thread)
    assert isinstance(exc, APIReportedError)
    assert exc.message == "Vector store unavailable"


async def test_a_rate_limited_poll_waits_as_told_and_goes_on(fake_chat_api, http):
    # The question is asked and its run goes on: polling too often is no reason
    # to give the answer up (and ask again, paying twice).
    fake_chat_api.enqueue(final="Done at last.", polls=2, limited_after=0, retry_after=1)
    api = make("chaturdata", fake_chat_api, http)
    started = time.monotonic()
    events = await collect(api, ChatRequest(message="q"))
    assert done_of(events).text == "Done at last."
    assert time.monotonic() - started >= 0.9  # the Retry-After, not the poll interval
    posts = [r for r in fake_chat_api.requests if r.path.endswith("/newMessage")]
    polls = [r for r in fake_chat_api.requests if r.path.endswith("/getThread")]
    assert len(posts) == 1 and len(polls) == 3


async def test_overall_timeout_ends_polling(fake_chat_api, http):
    fake_chat_api.enqueue(polls=10_000)
    # Long enough for the question and a poll on a busy machine (polls: 0.02 s apart).
    api = make("chaturdata", fake_chat_api, http, timeouts={"total": 1.5})
    seen, exc = await collect_until_error(api, ChatRequest(message="q"))
    session, *statuses = seen
    assert isinstance(session, Session)  # the run goes on in it: kept for the next question
    assert statuses and all(isinstance(e, Status) for e in statuses)
    assert isinstance(exc, TimedOut)
    assert "did not finish within 1.5 s" in exc.user_message


async def test_a_probe_waits_for_the_run_as_long_as_an_answer_may_take(fake_chat_api, http):
    # Its answer comes whole when the run ends, up to `total` after the question: a
    # probe bounded as a stream's (connect + first_byte + idle) would fail a slow one.
    fake_chat_api.enqueue(final="Pong.", polls=60)
    api = make(
        "chaturdata",
        fake_chat_api,
        http,
        timeouts={"connect": 0.2, "first_byte": 0.4, "idle": 0.2, "total": 30},
    )
    assert api.probe_timeout == 30
    async with asyncio.timeout(10):
        await api.probe()
    assert len(fake_chat_api.requests) == 61  # the question, and its 60 polls


async def test_a_hanging_poll_is_bounded_by_the_overall_timeout(fake_chat_api, http, caplog):
    fake_chat_api.enqueue(polls=5, hang_after=1)
    api = make("chaturdata", fake_chat_api, http, timeouts={"total": 0.8, "first_byte": 0.2})
    _, exc = await collect_until_error(api, ChatRequest(message="q"))
    assert isinstance(exc, TimedOut)
    await fake_chat_api.wait_disconnects(1)
    # Told once, by the setting that decided it (it was also "poll failed (TimedOut)").
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "adapters.apis" and r.levelno == logging.WARNING
    ]
    assert len(warned) == 1 and "timeouts.total" in warned[0], warned


async def test_a_poll_that_hangs_is_given_up_and_the_next_one_answers(fake_chat_api, http, caplog):
    # A poll is a small read: one that hangs (a connection lost without a word) once
    # waited for the whole answer's time, and the answer was lost with it.
    fake_chat_api.enqueue(final="Still here.", polls=3, hang_after=1)
    api = make(
        "chaturdata",
        fake_chat_api,
        http,
        poll_interval=1,
        timeouts={"connect": 0.1, "idle": 0.2, "total": 30},
    )
    events = await collect(api, ChatRequest(message="q"))
    assert done_of(events).text == "Still here."
    await fake_chat_api.wait_disconnects(1)
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "adapters.apis" and r.levelno == logging.WARNING
    ]
    assert warned == ["poll failed (no answer within 0.3 s); polling on"]


async def test_an_unreadable_poll_is_skipped(fake_chat_api, http, caplog):
    fake_chat_api.enqueue(final="Still fine.", polls=3, malformed_after=1)
    api = make("chaturdata", fake_chat_api, http)
    events = await collect(api, ChatRequest(message="q"))
    assert done_of(events).text == "Still fine."
    assert "poll failed (ProtocolError)" in caplog.text


async def test_a_failed_poll_is_one_warning_naming_what_failed(fake_chat_api, http, caplog):
    # It was two: the status where it was read, then "poll failed (Unavailable)".
    fake_chat_api.enqueue(final="Still fine.", polls=3, failed_after=1, error="upstream busy")
    api = make("chaturdata", fake_chat_api, http)
    events = await collect(api, ChatRequest(message="q"))
    assert done_of(events).text == "Still fine."
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "adapters.apis" and r.levelno == logging.WARNING
    ]
    assert warned == ["poll failed (HTTP 502 from the chat API: upstream busy); polling on"]


async def test_polls_failing_in_a_row_are_one_warning_and_their_end_one_line(
    fake_chat_api, http, caplog
):
    # A WARNING every poll_interval for each answer polled through an outage.
    caplog.set_level(logging.DEBUG)
    fake_chat_api.enqueue(
        final="Back.", polls=2, failed_after=1, failed_polls=3, error="upstream busy"
    )
    api = make("chaturdata", fake_chat_api, http, poll_interval=1)
    events = await collect(api, ChatRequest(message="q"))
    assert done_of(events).text == "Back."
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "adapters.apis"]
    assert [said for level, said in lines if level >= logging.WARNING] == [
        "poll failed (HTTP 502 from the chat API: upstream busy); polling on"
    ]
    assert sum(said.startswith("poll failed") for _, said in lines) == 3
    assert (logging.INFO, "polls answer again, after 3 failed") in lines


async def test_completed_without_an_answer_is_a_protocol_error(fake_chat_api, http):
    fake_chat_api.enqueue(final="")
    api = make("chaturdata", fake_chat_api, http)
    _, exc = await collect_until_error(api, ChatRequest(message="q"))
    assert isinstance(exc, ProtocolError)


async def test_cancellation_while_polling_closes_the_connection(fake_chat_api, http):
    fake_chat_api.enqueue(polls=5, hang_after=1)
    api = make("chaturdata", fake_chat_api, http)
    task = asyncio.create_task(collect(api, ChatRequest(message="q")))
    hanging = await fake_chat_api.wait_requests(3)  # the post, one poll, the hanging poll
    assert hanging.method == "GET"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_chat_api.wait_disconnects(1)
    assert fake_chat_api.disconnects == 1


async def test_statuses(fake_chat_api, http):
    api = make("chaturdata", fake_chat_api, http)
    fake_chat_api.enqueue(status=400, body={"error": "message is too long"})
    _, exc = await collect_until_error(api, ChatRequest(message="q"))
    assert isinstance(exc, BadRequest) and exc.message == "message is too long"

    fake_chat_api.enqueue(status=429, retry_after=9)
    _, exc = await collect_until_error(api, ChatRequest(message="q"))
    assert isinstance(exc, RateLimited) and exc.retry_at is not None

    for _ in range(3):
        fake_chat_api.enqueue(status=500)
    _, exc = await collect_until_error(api, ChatRequest(message="q"))
    assert type(exc) is Unavailable and exc.status == 500

    wrong = make("chaturdata", fake_chat_api, http, api_key="wrong-key")
    _, exc = await collect_until_error(wrong, ChatRequest(message="q"))
    assert isinstance(exc, Unauthorized)


async def test_5xx_on_post_is_retried(fake_chat_api, http):
    fake_chat_api.enqueue(status=502)
    fake_chat_api.enqueue(final="ok")
    api = make("chaturdata", fake_chat_api, http)
    events = await collect(api, ChatRequest(message="q"))
    assert text_of(events) == "ok"
    assert [r.method for r in fake_chat_api.requests] == ["POST", "POST", "GET"]


def test_poll_interval_is_validated_and_defaults():
    base = {"kind": "chaturdata", "api_key": "k"}
    options = ChatUrData.Options.model_validate(base)
    assert options.poll_interval == 3.0
    assert options.timeouts.total == 120
    assert options.url == "https://www.chaturdata.com/api"
    for bad in (0.5, 11):
        with pytest.raises(ValueError, match="poll_interval"):
            ChatUrData.Options.model_validate({**base, "poll_interval": bad})
    fast = ChatUrData.Options.model_validate({**base, "poll_interval": 1.5})
    assert fast.poll_interval == 1.5
    # Loaded, but `check` and `run` point out what the API's docs advise against.
    [warning] = fast.warnings()
    assert warning.startswith("poll_interval 1.5 s is shorter than the 3-5 s")
    assert options.warnings() == []
    with pytest.raises(ValueError, match="bounds the polling"):
        ChatUrData.Options.model_validate({**base, "timeouts": {"total": None}})
    idle_only = ChatUrData.Options.model_validate({**base, "timeouts": {"idle": 5}})
    assert idle_only.timeouts.total == 120


async def test_polling_after_a_retried_post_keeps_to_the_answers_total(
    fake_chat_api, http, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    # The retried attempt polled until its own start + total, each poll past the
    # answer's end failing at once ("poll failed" at every interval).
    monkeypatch.setattr("adapters.apis._http.random.uniform", lambda low, high: high)
    fake_chat_api.enqueue(status=503)
    fake_chat_api.enqueue(final="Too late.", polls=30)
    api = make(
        "chaturdata",
        fake_chat_api,
        http,
        timeouts={"total": 1.0},
        retries={"attempts": 3, "backoff": 0.6, "max_backoff": 0.6},
    )
    api.options = api.options.model_copy(update={"poll_interval": 0.05})
    _, exc = await collect_until_error(api, ChatRequest(message="Anything?"))
    assert isinstance(exc, TimedOut) and "did not finish" in exc.user_message
    # The retried attempt did poll; none was tried past the answer's end (each
    # would fail at once, logged as "poll failed"), which is what polling to the
    # retried POST's own start + total did, a backoff (0.6 s) long.
    _, retried = [r for r in fake_chat_api.requests if r.method == "POST"]
    polls = [r.at for r in fake_chat_api.requests if r.method == "GET"]
    assert polls and retried.at < min(polls)
    assert not [r for r in caplog.records if "poll failed" in r.getMessage()]


async def test_a_thread_gone_while_its_answer_is_polled_is_a_lost_answer(fake_chat_api, http):
    # It was said to be a misconfiguration ("HTTP 404 from its URL. Tell an admin.").
    fake_chat_api.enqueue(final="Never read.", polls=3)
    api = make("chaturdata", fake_chat_api, http)
    with pytest.raises(CutOff) as caught:
        async with contextlib.aclosing(api.stream(ChatRequest(message="q"))) as events:
            async for event in events:
                if isinstance(event, Session):
                    del fake_chat_api.threads[event.session]  # expired at the API
    assert "lost this conversation" in caught.value.user_message


async def test_a_query_in_the_url_is_kept_after_each_endpoint(fake_chat_api, http):
    # An API gateway's `?tenant=`: the endpoint went after the query
    # (POST /chaturdata/api?tenant=acme/newMessage), and every question was a 404.
    fake_chat_api.enqueue(final="First answer.", polls=2)
    fake_chat_api.enqueue(final="Fresh answer.")
    url = fake_chat_api.endpoint("chaturdata") + "/?tenant=acme"
    api = make("chaturdata", fake_chat_api, http, url=url)
    thread = done_of(await collect(api, ChatRequest(message="one"))).session
    del fake_chat_api.threads[thread]  # the second question's post is a 404, then a new one
    fresh = done_of(await collect(api, ChatRequest(message="two", session=thread))).session
    post = ("POST", "/chaturdata/api/newMessage", {"tenant": "acme"})

    def poll(thread: str | None) -> tuple[str, str, dict[str, str | None]]:
        return ("GET", "/chaturdata/api/getThread", {"tenant": "acme", "threadId": thread})

    sent = [(r.method, r.path, r.query) for r in fake_chat_api.requests]
    assert sent == [post, poll(thread), poll(thread), post, post, poll(fresh)]
