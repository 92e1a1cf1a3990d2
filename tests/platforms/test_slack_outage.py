"""Slack's Web API out of reach for a while (503s) while Socket Mode stays up: no answer
is lost for it. The real Bridge, the fake Slack, the fake chat API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from aiohttp import web

from adapters.registry import REGISTRY
from bridge import recovery, render
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.interruptions import SHOWN_LATE, SHOWN_LATE_RESTART
from tests.core.fakeplatform import wait_for
from tests.core.relay_support import failed_answers
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, Harness, config_text, open_harness
from tests.store.conftest import pg_schema_url


class OutageSlack(FakeSlack):
    """A Slack whose Web API answers 503 (with Slack's JSON error body) while `down`;
    Socket Mode's own method still answers, so questions keep coming."""

    down = False

    def __init__(self) -> None:
        super().__init__()
        self.outage_503s: Counter[str] = Counter()  # method -> 503s answered

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.down and method != "apps.connections.open":
            self.outage_503s[method] += 1
            self._touch()
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        return await super()._api(request)


class SocketOutageSlack(OutageSlack):
    """Also: apps.connections.open answers its next `json_503s` calls 503, with Slack's
    JSON error body; the socket's URL, its next `socket_503s` handshakes."""

    json_503s = 0
    socket_503s = 0

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["method"] == "apps.connections.open" and self.json_503s:
            self.json_503s -= 1
            self._touch()
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        return await super()._api(request)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self.socket_503s:
            self.socket_503s -= 1
            self._touch()
            return web.Response(status=503, text="Slack is having trouble")
        return await super()._socket(request)


@pytest.fixture
async def slack() -> AsyncIterator[SocketOutageSlack]:
    fake = SocketOutageSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def gives_up_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply's end is tried again for half a second, not minutes, before it is
    given up on."""
    monkeypatch.setattr(render, "FINAL_PATIENCE", 0.5)
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.1)


async def no_record_left(bridge: Bridge) -> None:
    """Wait (10 s at most) until no reply is recorded as in flight."""
    async with asyncio.timeout(10):
        while await bridge.store.inflight_orphans("nobody", float("inf")):
            await asyncio.sleep(0.05)


async def test_a_question_asked_while_slack_is_out_of_reach_is_answered_once_it_is_back(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was answered and paid for, then shown nowhere: the reply gave up within
    # 16 s, as if Slack had refused it, and its record went with it.
    monkeypatch.setattr(render, "FINAL_RETRIES", 0)  # what a refusal gets: not this
    monkeypatch.setattr(render, "FINAL_BACKOFF", 0.1)
    fake_chat_api.enqueue(tokens=["Answer ", "one."])
    h, bridge = await open_harness(slack, fake_chat_api, tmp_path, "socket")
    try:
        slack.down = True
        root = await h.ask(CHANNEL, "asked while Slack's Web API is down")
        await wait_for(lambda: len(fake_chat_api.requests) == 1)
        # More tries than a refused reply makes (its placeholder, its final text, and
        # the failure's notice in its place): one a second, as Slack's budget allows.
        await slack.wait_for(lambda: slack.outage_503s["chat.postMessage"] >= 5)
        assert bridge.relay.live == 1  # still trying
        slack.down = False
        [reply] = await h.answer(CHANNEL, root, "Answer one.")
        assert reply.text == "Answer one."
        await wait_for(lambda: bridge.relay.live == 0)
        assert len(fake_chat_api.requests) == 1  # asked once, shown once
        assert await bridge.store.inflight_orphans("nobody", float("inf")) == []
    finally:
        await bridge.aclose()


@pytest.mark.usefixtures("gives_up_soon")
async def test_a_reply_slack_stays_out_of_reach_for_is_marked_by_the_next_start(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its record was deleted as it gave up: it stayed frozen mid-answer, unmarked,
    # with nothing left to mark it.
    caplog.set_level(logging.INFO)
    fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(10)], token_delay=0.1)
    h, bridge = await open_harness(slack, fake_chat_api, tmp_path, "socket")
    try:
        root = await h.ask(CHANNEL, "first?")
        await slack.wait_for(lambda: any("w2" in m.text for m in slack.bot_replies(CHANNEL, root)))
        slack.down = True
        await wait_for(lambda: bridge.relay.live == 0, timeout=20)  # given up
        [kept] = await bridge.store.inflight_orphans("nobody", float("inf"))
        assert kept.message_ids and "w2" in kept.text
        # Its answer came whole: counted as one shown late, not as a failure.
        assert failed_answers(bridge, "shown_late") == 1
        assert failed_answers(bridge, "failed") == 0
    finally:
        await bridge.aclose()
    [frozen] = slack.bot_replies(CHANNEL, root)
    assert "⚠️" not in frozen.text
    slack.down = False  # Slack is back by the next start, which marks it
    h, bridge = await open_harness(slack, fake_chat_api, tmp_path, "socket")
    try:
        # Its answer had come whole: it shows whole, not as one to ask again.
        [reply] = slack.bot_replies(CHANNEL, root)
        assert reply.text == f"{ANSWER}\n\n{SHOWN_LATE_RESTART}"
        assert await bridge.store.inflight_orphans("nobody", float("inf")) == []
    finally:
        await bridge.aclose()
    said = [r.getMessage() for r in caplog.records if r.name == "chat_bridge.app"]
    assert "showed 1 answers that had come whole, late: a restart came as they were shown" in said
    assert not [line for line in said if line.startswith("marked ")]


GIVEN_UP_NOT_MARKED = "could not mark a reply given up on"
ANSWER = " ".join(f"w{i}" for i in range(10))  # what `give_up`'s answer says, whole


async def open_bridge(
    stack: contextlib.AsyncExitStack,
    slack: OutageSlack,
    chat: FakeChatAPI,
    tmp_path: Path,
    store: str = "sqlite",
    limits: str = "",
) -> tuple[Harness, Bridge]:
    """`open_harness` (over Socket Mode), on the store of kind `store`, with `limits`."""
    db = tmp_path / "bridge.db"
    text = config_text(slack, chat, db, "socket")
    if store == "postgres":
        text = text.replace(f"sqlite://{db}", await stack.enter_async_context(pg_schema_url()))
    text += f"limits: {{{limits}}}\n"
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "CHATMOUNT_API_KEY": chat.api_key,
    }
    bridge = Bridge(parse_config(text, env=env, registry=REGISTRY), REGISTRY)
    await bridge.__aenter__()
    stack.push_async_callback(bridge.aclose)
    await slack.wait_socket()
    return Harness(slack, chat, bridge, "socket"), bridge


async def give_up(h: Harness, slack: OutageSlack) -> str:
    """A reply shows its first words, then Slack's Web API goes out of reach until the
    reply is given up on; the reply's thread root."""
    h.chat.enqueue(tokens=[f"w{i} " for i in range(10)], token_delay=0.1)
    root = await h.ask(CHANNEL, "first?")
    await slack.wait_for(lambda: any("w2" in m.text for m in slack.bot_replies(CHANNEL, root)))
    slack.down = True
    await wait_for(lambda: h.bridge.relay.live == 0, timeout=20)
    return root


def marked(slack: OutageSlack, root: str, mark: str = SHOWN_LATE, answer: str = ANSWER) -> bool:
    """Whether the reply in `root`, given up on as its answer ended, shows that answer
    whole and `mark` (the heartbeat's; SHOWN_LATE_RESTART, a restart's), never a
    word of asking again."""
    [reply] = slack.bot_replies(CHANNEL, root)
    return reply.text == f"{answer}\n\n{mark}"


def unmarked(slack: OutageSlack, root: str) -> bool:
    [reply] = slack.bot_replies(CHANNEL, root)
    return reply.text.startswith("w0 w1 w2 ") and "⚠️" not in reply.text


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.usefixtures("gives_up_soon")
async def test_a_reply_given_up_on_is_marked_once_slack_is_back_without_a_restart(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store: str,
) -> None:
    # Nothing in the running process marked it: it stayed frozen mid-answer, unmarked,
    # until the daemon restarted, though Slack was back long before (and the progress
    # log kept an entry for it).
    async with contextlib.AsyncExitStack() as stack:
        h, bridge = await open_bridge(
            stack, slack, fake_chat_api, tmp_path, store, "heartbeat_interval: 0.3"
        )
        root = await give_up(h, slack)
        [kept] = await bridge.store.inflight_orphans("nobody", float("inf"))
        # Tried again at later heartbeats while Slack is out of reach; warned of once.
        tries = slack.outage_503s["chat.update"]
        await slack.wait_for(lambda: slack.outage_503s["chat.update"] >= tries + 3)
        assert sum(GIVEN_UP_NOT_MARKED in r.getMessage() for r in caplog.records) == 1

        slack.down = False
        # Its mark says what happened: nothing restarted.
        await slack.wait_for(lambda: marked(slack, root))
        await no_record_left(bridge)  # its record goes with it
        progress = bridge.relay.progress
        assert kept.id not in progress._ids and kept.id not in progress._pending
        assert not bridge.relay.given_up.records
        assert sum(GIVEN_UP_NOT_MARKED in r.getMessage() for r in caplog.records) == 1


@pytest.mark.usefixtures("gives_up_soon")
async def test_a_stop_leaves_a_reply_given_up_on_to_the_next_start_while_slack_is_out_of_reach(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
) -> None:
    # The stop marked it with the replies it cut, and ended its record when Slack
    # failed: nothing ever marked it.
    async with contextlib.AsyncExitStack() as stack:
        h, bridge = await open_bridge(
            stack, slack, fake_chat_api, tmp_path, limits="shutdown_grace: 0.1"
        )
        root = await give_up(h, slack)
        fake_chat_api.enqueue(tokens=[f"v{i} " for i in range(100)], token_delay=0.1)
        await h.ask(CHANNEL, "second?", user="U0USER002")
        await wait_for(lambda: bridge.relay.live == 1)  # cut by the stop
        await bridge.drain()
    assert unmarked(slack, root)
    slack.down = False  # Slack is back by the next start, which marks it
    async with contextlib.AsyncExitStack() as stack:
        h, bridge = await open_bridge(stack, slack, fake_chat_api, tmp_path)
        assert marked(slack, root, SHOWN_LATE_RESTART)


@pytest.mark.usefixtures("gives_up_soon")
async def test_a_reply_given_up_on_is_forgotten_once_slack_fails_its_mark_for_long(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recovery, "UNMARKED_KEPT", 0.0)  # a week, past already
    async with contextlib.AsyncExitStack() as stack:
        h, bridge = await open_bridge(
            stack, slack, fake_chat_api, tmp_path, limits="heartbeat_interval: 0.3"
        )
        root = await give_up(h, slack)
        await no_record_left(bridge)
        assert not bridge.relay.given_up.records
    assert unmarked(slack, root)


def shows(slack: OutageSlack, root: str, words: str) -> bool:
    return any(words in m.text for m in slack.bot_replies(CHANNEL, root))


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.usefixtures("gives_up_soon")
async def test_a_reply_given_up_on_whose_message_is_gone_is_forgotten_and_holds_nothing_up(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store: str,
) -> None:
    # Its mark failed (message_not_found) at every heartbeat for a week, and held up
    # the marks of the replies given up on after it; on PostgreSQL every question of
    # its thread waited behind its record, fresh all the while.
    async with contextlib.AsyncExitStack() as stack:
        h, bridge = await open_bridge(
            stack, slack, fake_chat_api, tmp_path, store, "heartbeat_interval: 0.3"
        )
        for user in ("U0USER001", "U0USER002"):
            fake_chat_api.enqueue(tokens=[f"w{i} " for i in range(60)], token_delay=0.1)
            root = await h.ask(CHANNEL, "first?", user=user)
            await slack.wait_for(partial(shows, slack, root, "w2"))
        slack.down = True
        await wait_for(lambda: bridge.relay.live == 0, timeout=30)
        gone, other = bridge.relay.given_up.records.values()  # in the order given up on
        # The first one's message was deleted meanwhile (by its asker, or an admin).
        slack.messages[CHANNEL] = [
            m for m in slack.messages[CHANNEL] if m.ts not in gone.message_ids
        ]
        slack.down = False
        assert other.address.thread is not None and gone.address.thread is not None
        whole = " ".join(f"w{i}" for i in range(60))
        await slack.wait_for(lambda: marked(slack, other.address.thread, answer=whole))
        await no_record_left(bridge)
        assert not bridge.relay.given_up.records
        # Its asker asks again in its thread: answered.
        fake_chat_api.enqueue(tokens=["Fresh ", "answer."])
        await h.ask(CHANNEL, "again?", thread_ts=gone.address.thread)
        [fresh] = await h.answer(CHANNEL, gone.address.thread, "Fresh answer.")
        assert fresh.text == "Fresh answer."
    [why] = [r.getMessage() for r in caplog.records if "it never will be" in r.getMessage()]
    assert "message_not_found" in why and "forgotten" in why


@pytest.mark.usefixtures("gives_up_soon")
async def test_a_reply_given_up_on_before_it_showed_anything_gives_way_to_the_next_answer(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
) -> None:
    # Its mark, a message of its own, was posted once Slack was back: below the answer
    # to the question its asker asked again meanwhile, saying a restart cut it.
    async with contextlib.AsyncExitStack() as stack:
        # No heartbeat in the test's time: its pass runs when the test says.
        h, bridge = await open_bridge(
            stack, slack, fake_chat_api, tmp_path, limits="heartbeat_interval: 600"
        )
        fake_chat_api.enqueue(tokens=["First ", "answer."])
        slack.down = True
        root = await h.ask(CHANNEL, "first?")
        await wait_for(lambda: bridge.relay.given_up.records, timeout=30)
        slack.down = False
        fake_chat_api.enqueue(tokens=["Second ", "answer."])
        await h.ask(CHANNEL, "asking again", thread_ts=root)
        await h.answer(CHANNEL, root, "Second answer.")
        assert not bridge.relay.given_up.records
        await bridge.recovery.mark_given_up()  # a heartbeat's
        assert [m.text for m in slack.bot_replies(CHANNEL, root)] == ["Second answer."]
        await no_record_left(bridge)


@pytest.mark.usefixtures("gives_up_soon")
async def test_a_reply_given_up_on_that_showed_words_is_marked_in_place_after_the_next_answer(
    slack: OutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        h, bridge = await open_bridge(
            stack, slack, fake_chat_api, tmp_path, limits="heartbeat_interval: 600"
        )
        root = await give_up(h, slack)
        slack.down = False
        fake_chat_api.enqueue(tokens=["Second ", "answer."])
        await h.ask(CHANNEL, "asking again", thread_ts=root)
        await h.answer(CHANNEL, root, "Second answer.", n=2)
        await bridge.recovery.mark_given_up()  # a heartbeat's
        first, second = slack.bot_replies(CHANNEL, root)
        assert first.text == f"{ANSWER}\n\n{SHOWN_LATE}"
        assert second.text == "Second answer."
        await no_record_left(bridge)


RECONNECT_FAILED = "slack: Socket Mode could not reconnect: "


async def test_a_new_connection_slack_asks_for_that_fails_to_open_is_one_warning(
    slack: SocketOutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Slack's `disconnect` message (refresh_requested, sent routinely) has slack-sdk open
    # a new connection from its message listener: an outage's page then was an ERROR
    # with a traceback ("Failed to run message listeners: 'str' object has no ...").
    h, bridge = await open_harness(
        slack, fake_chat_api, tmp_path, "socket", "ping_interval: 0.2\n  timeout: 0.5"
    )
    try:
        slack.unavailable["apps.connections.open"] = [503]
        await slack._sockets[-1].send_json({"type": "disconnect", "reason": "refresh_requested"})

        def warned() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith(RECONNECT_FAILED)]

        await wait_for(lambda: bool(warned()), timeout=10)
        [line] = warned()
        assert line.levelname == "WARNING" and not line.exc_info
        assert line.getMessage() == (
            f"{RECONNECT_FAILED}Slack answered with a page that is not JSON (HTTP 503); "
            "trying again"
        )
        bolt = [r for r in caplog.records if r.name == "chat_bridge.slack.bolt"]
        assert not [r.getMessage() for r in bolt if r.levelno >= logging.ERROR]
    finally:
        await bridge.aclose()


@pytest.mark.parametrize(
    "failure, cause",
    [
        ("json", "Slack answered HTTP 503"),
        ("handshake", "Slack answered HTTP 503"),
        ("page", "Slack answered with a page that is not JSON (HTTP 503)"),
        ("refused", "Slack could not be reached (ClientConnectorError)"),
        ("hang", "Slack did not answer in time"),
    ],
)
async def test_each_try_to_reopen_socket_mode_while_slack_is_out_of_reach_is_one_warning(
    slack: SocketOutageSlack,
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    cause: str,
) -> None:
    # slack-sdk logged each try at ERROR, twice for a 503 (with the URL asked), as
    # "AttributeError, 'str' object has no attribute 'get'" for an outage's page, or
    # with a traceback and the socket's URL, its ticket in it, for a failed handshake.
    h, bridge = await open_harness(
        slack, fake_chat_api, tmp_path, "socket", "ping_interval: 0.2\n  timeout: 0.5"
    )
    try:
        tries = 3
        if failure == "json":
            slack.json_503s = tries
        elif failure == "handshake":
            slack.socket_503s = tries
        elif failure == "page":
            slack.unavailable["apps.connections.open"] = [503] * tries
        elif failure == "hang":
            slack.slow["apps.connections.open"] = [5.0] * tries
        port = slack.port
        if failure == "refused":
            await slack.stop()
        for ws in list(slack._sockets):
            await ws.close()

        def warned() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith(RECONNECT_FAILED)]

        await wait_for(lambda: len(warned()) >= 2, timeout=30)
        if failure == "refused":
            await slack.start(port)
        await slack.wait_socket(30)
        if failure in ("json", "handshake", "page"):  # each failed answer, one line
            assert len(warned()) == tries
        assert all(r.levelname == "WARNING" and not r.exc_info for r in warned())
        assert {r.getMessage() for r in warned()} == {f"{RECONNECT_FAILED}{cause}; trying again"}
        bolt = [r for r in caplog.records if r.name == "chat_bridge.slack.bolt"]
        assert not [r.getMessage() for r in bolt if r.levelno >= logging.ERROR]
        assert not [r.getMessage() for r in bolt if "Failed" in r.getMessage()]
        assert not [r.getMessage() for r in bolt if "ticket" in r.getMessage()]
        # Back: answered.
        fake_chat_api.enqueue(tokens=["Back."])
        root = await h.ask(CHANNEL, "back?")
        await h.answer(CHANNEL, root, "Back.")
    finally:
        await bridge.aclose()
