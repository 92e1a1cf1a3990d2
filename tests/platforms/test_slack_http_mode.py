"""Slack's HTTP mode: events and commands on the daemon's listener, verified, and what
is refused there before it is read."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Collection

import aiohttp
import pytest
from aiohttp import web

from adapters.platforms.slack import SlackPlatform
from bridge.errors import (
    PlatformError,
)
from bridge.http import HttpServer
from bridge.interfaces import PlatformContext
from tests.core.fakeplatform import wait_for
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, DM, Inbox, options


async def test_http_mode_needs_the_listener(fake_slack: FakeSlack) -> None:
    with pytest.raises(PlatformError, match="http.listen"):
        SlackPlatform(PlatformContext(options=options(fake_slack, http=True)))


@pytest.fixture
async def http_platform(
    fake_slack: FakeSlack, inbox: Inbox
) -> AsyncIterator[tuple[SlackPlatform, str]]:
    async def health(only: Collection[str] | None = None) -> dict[str, str]:
        return {}

    server = HttpServer("127.0.0.1:0", health, _no_metrics)
    platform = SlackPlatform(PlatformContext(options=options(fake_slack, http=True), http=server))
    await server.start()
    url = f"http://127.0.0.1:{server.port}/slack/events"
    # Before start(), events are refused so Slack retries them later.
    status, _ = await fake_slack.post_event(url, fake_slack.user_message(DM, "early")[0])
    assert status == 503
    await platform.start(inbox)
    try:
        yield platform, url
    finally:
        await platform.aclose()
        await server.aclose()


async def test_http_events_are_verified_and_delivered(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> over http")
    for body in bodies:
        status, _ = await fake_slack.post_event(url, body)
        assert status == 200
    [msg] = await inbox.wait(1)
    assert msg.text == "over http" and msg.mentioned
    assert msg.event_id == f"{CHANNEL}:{bodies[0]['event']['ts']}"


async def test_http_bad_signature_and_stale_timestamp_get_401(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    [body] = fake_slack.user_message(DM, "forged")
    assert (await fake_slack.post_event(url, body, secret="not-the-secret"))[0] == 401
    assert (await fake_slack.post_event(url, body, timestamp=int(time.time()) - 600))[0] == 401
    assert (await fake_slack.post_event(url, body, signature="v0=deadbeef"))[0] == 401
    status, _ = await fake_slack.post_event(url, fake_slack.user_message(DM, "genuine")[0])
    assert status == 200
    [msg] = await inbox.wait(1)
    assert msg.text == "genuine"


async def test_http_refused_signatures_are_warned_of_once_a_minute_by_cause(
    fake_slack: FakeSlack,
    http_platform: tuple[SlackPlatform, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every refusal was one DEBUG line, the same for every cause: a wrong secret or a
    # proxy re-encoding bodies left Slack's requests refused and the log silent.
    caplog.set_level(logging.DEBUG, "chat_bridge.slack")
    _, url = http_platform
    [body] = fake_slack.user_message(DM, "refused")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    assert (await fake_slack.post_event(url, body, secret="not-the-secret"))[0] == 401
    [wrong] = warnings()
    assert "signature does not match the body (a wrong slack.signing_secret" in wrong
    # Within the minute: counted, not said again.
    assert (await fake_slack.post_event(url, body, timestamp=int(time.time()) - 360))[0] == 401
    raw = json.dumps(body)
    changed = fake_slack.sign(raw, int(time.time()))
    assert (await fake_slack.post_http(url, raw + "\n", "application/json", signature=changed))[
        0
    ] == 401
    assert warnings() == [wrong]
    # Requests not claiming to be Slack's are the internet's noise: never a warning.
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as resp:
        assert resp.status == 401
    monkeypatch.setattr("adapters.platforms.slack.http_mode.WARN_EVERY", 0.0)
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as resp:
        assert resp.status == 401
    assert warnings() == [wrong]
    assert (await fake_slack.post_event(url, body, timestamp=int(time.time()) + 360))[0] == 401
    [skew] = warnings()[1:]
    assert re.fullmatch(
        r"slack: refused a request to the events endpoint: timestamp 3[56]\d s off this "
        r"machine's clock \(clock skew, or a replayed request\); 2 more refused since the "
        r"last such warning",
        skew,
    ), skew
    assert fake_slack.signing_secret not in caplog.text
    assert changed.removeprefix("v0=") not in caplog.text


async def test_http_garbage_is_refused_in_a_word(
    fake_slack: FakeSlack,
    http_platform: tuple[SlackPlatform, str],
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = http_platform
    json_type = "application/json"
    # Signed by Slack's secret but not a body Slack sends: 400.
    assert (await fake_slack.post_http(url, "{not json", json_type))[0] == 400
    assert (await fake_slack.post_http(url, "[1]", json_type))[0] == 400
    # Not signed, or not even text: 401, before anything is read.
    assert (await fake_slack.post_http(url, "{}", json_type, signature="v0=00"))[0] == 401
    async with aiohttp.ClientSession() as session:
        for headers in ({"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, {}):
            async with session.post(url, data=b"\xff\xfe", headers=headers) as resp:
                assert resp.status == 401
        # A signature that is not even ASCII (the digest comparison refuses it).
        stamp = str(int(time.time()))
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=\u00e9"}
        async with session.post(url, data=b"{}", headers=headers) as resp:
            assert resp.status == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    status, _ = await fake_slack.post_event(url, fake_slack.user_message(DM, "genuine")[0])
    assert status == 200
    [msg] = await inbox.wait(1)
    assert msg.text == "genuine"


async def test_http_slash_commands_that_say_payload_are_answered(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    # Bolt takes a form body holding the word "payload" anywhere for an interactivity
    # form: these were refused as unhandled requests (404) and the user told it failed.
    _, url = http_platform
    in_channel = fake_slack.slash_command("/chat-reset", CHANNEL)
    in_channel["channel_name"] = "payload-x"
    by_user = fake_slack.slash_command("/chat-reset", CHANNEL)
    by_user["user_name"] = "payloadops"
    with_text = fake_slack.slash_command("/chat-reset", CHANNEL, text="the payload question")
    for fields in (in_channel, by_user, with_text):
        assert (await fake_slack.post_command(url, fields))[0] == 200
    delivered = await inbox.wait(3)
    assert [m.command for m in delivered] == ["reset"] * 3
    assert all(m.channel == CHANNEL and m.user == "U0USER001" for m in delivered)
    assert [m.text for m in delivered] == ["", "", "the payload question"]


async def _send_part(
    url: str, headers: dict[str, str], declared: int, sent: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a POST declaring a body of `declared` bytes and send only `sent` of it."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [
        "POST /slack/events HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {declared}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
    await writer.drain()
    return reader, writer


async def _status_of(reader: asyncio.StreamReader) -> int:
    async with asyncio.timeout(5):  # a deadline for a hang, not a speed target
        return int((await reader.readline()).split()[1])


async def test_http_an_unsigned_request_is_refused_before_its_body_is_read(
    http_platform: tuple[SlackPlatform, str],
) -> None:
    # Its whole body was read first: anyone could make the daemon hold a megabyte a
    # connection, for as long as they kept the body from ending.
    _, url = http_platform
    stale = {"X-Slack-Request-Timestamp": str(int(time.time()) - 3600), "X-Slack-Signature": "v0=1"}
    for headers in ({}, stale):
        reader, writer = await _send_part(url, headers, 1_000_000, b"{")
        try:
            assert await _status_of(reader) == 401
        finally:
            writer.close()


async def test_http_a_timestamp_of_digits_no_number_is_refused_in_a_word(
    http_platform: tuple[SlackPlatform, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Digits Python's int() refuses ("²"), or thousands of them: a 500 and a traceback.
    _, url = http_platform
    for stamp in ("²", "9" * 5000):
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=1"}
        reader, writer = await _send_part(url, headers, 2, b"{}")
        try:
            assert await _status_of(reader) == 401
        finally:
            writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_http_a_body_that_does_not_arrive_in_time_is_refused(
    http_platform: tuple[SlackPlatform, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("adapters.platforms.slack.http_mode.BODY_SECONDS", 0.2)
    _, url = http_platform
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    reader, writer = await _send_part(url, fresh, 1000, b'{"type": ')
    try:
        assert await _status_of(reader) == 408
    finally:
        writer.close()
    # A client that leaves mid-body: a word at DEBUG, not an ERROR and a traceback.
    caplog.set_level(logging.DEBUG, "chat_bridge.slack")
    reader, writer = await _send_part(url, fresh, 1000, b'{"type": ')
    writer.close()
    await wait_for(lambda: any("left before" in r.getMessage() for r in caplog.records))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_http_a_body_cut_short_is_let_go_at_once(
    http_platform: tuple[SlackPlatform, str],
) -> None:
    # The request's stream kept the exception that ended its body, and the exception
    # the frame reading it, body and all: each body cut short (its client gone, or its
    # connection closed to make room) was held until the collector's next full pass,
    # and a flood of connections each sending 64 KiB of a body, closed to make room
    # for the next, made the daemon hold 300-400 MiB.
    _, url = http_platform
    fresh = {
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=1",
        "X-Cut-Short": "1",
    }
    gc.collect()  # what earlier tests left
    gc.disable()  # what only the collector would free stays
    try:
        _, writer = await _send_part(url, fresh, 100_000, b" " * 50_000)
        try:
            await wait_for(_requests)  # the endpoint has it
        finally:
            writer.close()
        await wait_for(lambda: not _requests(), timeout=5)
    finally:
        gc.enable()


def _requests() -> list[web.Request]:
    """The requests cut short still held (other connections' kept ones aside)."""
    return [
        o for o in gc.get_objects() if isinstance(o, web.Request) and "X-Cut-Short" in o.headers
    ]


async def test_http_a_body_over_a_mebibyte_is_refused_before_it_is_read(
    http_platform: tuple[SlackPlatform, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read before its signature can be checked, by anyone with a fresh timestamp: the
    # daemon held it until its deadline, a megabyte a connection.
    _, url = http_platform
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    reader, writer = await _send_part(url, fresh, 2_000_000, b"{")
    try:
        assert await _status_of(reader) == 413
    finally:
        writer.close()
    # No size told (chunked): refused once it passes the bound.
    monkeypatch.setattr("adapters.platforms.slack.http_mode.MAX_BODY", 1000)
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: v0=1\r\n\r\n400\r\n%s\r\n"
        % (int(time.time()), b" " * 0x400)
    )
    try:
        assert await _status_of(reader) == 413
    finally:
        writer.close()


async def test_http_large_bodies_arriving_at_once_are_bounded_and_slack_still_answered(
    fake_slack: FakeSlack,
    http_platform: tuple[SlackPlatform, str],
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 512 connections each sending a body of just under a megabyte, never ending,
    # made the daemon hold 700 MiB.
    monkeypatch.setattr("adapters.platforms.slack.http_mode.SMALL_BODY", 100)
    monkeypatch.setattr("adapters.platforms.slack.http_mode.LARGE_BODIES", 2000)
    platform, url = http_platform
    endpoint = platform._http_events.__self__  # type: ignore[attr-defined]
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    stalled = await _send_part(url, fresh, 1000, b"{")
    await wait_for(lambda: endpoint._large == 1000)
    second = await _send_part(url, fresh, 1500, b"{")
    try:
        assert await _status_of(second[0]) == 503  # at once, not when its body ends
        # A body within what is left is read: Slack's event (620 bytes, past SMALL_BODY).
        assert (await fake_slack.post_event(url, fake_slack.user_message(DM, "hi")[0]))[0] == 200
        [msg] = await inbox.wait(1)
        assert msg.text == "hi"
    finally:
        second[1].close()
        stalled[1].close()
    await wait_for(lambda: endpoint._large == 0)  # given back, its client gone
    assert (await fake_slack.post_event(url, fake_slack.user_message(DM, "again")[0]))[0] == 200
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "large bodies arriving at once" in warning


@pytest.mark.parametrize(
    "how",
    [
        b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde",
        b"Content-Encoding: deflate\r\nContent-Length: 5\r\n\r\nabcde",
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n",
    ],
    ids=["gzip", "deflate", "chunked"],
)
async def test_http_a_body_that_does_not_decode_is_refused_in_a_word(
    http_platform: tuple[SlackPlatform, str],
    caplog: pytest.LogCaptureFixture,
    how: bytes,
) -> None:
    # A fresh timestamp and any signature, and a body that is not what its compression
    # or chunking says: a 500 and two tracebacks, from anyone.
    _, url = http_platform
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: v0=00\r\n%s" % (int(time.time()), how)
    )
    try:
        assert await _status_of(reader) == 400
    finally:
        writer.close()
    # One DEBUG line (the endpoint's, or the listener's for broken chunking).
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_stop_waits_briefly_for_a_request_still_arriving(fake_slack: FakeSlack) -> None:
    # aiohttp waits a minute by default for requests still open: one client trickling
    # a body held every stop that long, a second signal notwithstanding.
    async def health(only: Collection[str] | None = None) -> dict[str, str]:
        return {}

    server = HttpServer("127.0.0.1:0", health, _no_metrics)
    platform = SlackPlatform(PlatformContext(options=options(fake_slack, http=True), http=server))
    await server.start()
    await platform.start(lambda msg, target: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
    url = f"http://127.0.0.1:{server.port}/slack/events"
    fresh = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=1"}
    reader, writer = await _send_part(url, fresh, 1000, b"{")
    try:
        await platform.aclose()
        async with asyncio.timeout(5):  # BODY_SECONDS is 10: the stop's own limit ends it
            await server.aclose()
            rest = await reader.read()
        # Refused, for Slack to send again, and the trickling connection closed.
        assert rest.startswith(b"HTTP/1.1 503 ") and reader.at_eof()
    finally:
        writer.close()


async def test_http_slacks_notice_that_it_drops_events_is_acknowledged_and_logged(
    fake_slack: FakeSlack,
    http_platform: tuple[SlackPlatform, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = http_platform
    notice = {
        "token": "t",
        "team_id": "T0TEAM0001",
        "minute_rate_limited": 1518467820,
        "api_app_id": "A0APP00001",
        "type": "app_rate_limited",
    }
    status, _ = await fake_slack.post_event(url, notice)
    assert status == 200  # not "unhandled request" (404), which Slack counts as a failure
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "Slack is dropping this app's events" in warning


async def test_http_an_event_arriving_as_the_stop_begins_is_refused_for_slack_to_retry(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    platform, _ = http_platform
    [body] = fake_slack.user_message(DM, "asked as the daemon stops")
    raw = json.dumps(body)
    stamp = int(time.time())

    class Body:
        """A body still arriving when the daemon begins to stop."""

        parts = [raw.encode(), b""]

        async def readany(self) -> bytes:
            if self.parts[0]:
                await platform.stop_receiving()
            return self.parts.pop(0)

    class Arriving:
        query_string = ""
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": fake_slack.sign(raw, stamp),
        }
        content_length = len(raw)
        content = Body()

    response = await platform._http_events(Arriving())  # type: ignore[arg-type]
    assert isinstance(response, web.Response)
    assert response.status == 503  # acked, it would be lost: Slack retries a 503
    assert inbox.items == []


async def test_http_url_verification_and_retries(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    status, text = await fake_slack.post_event(
        url, {"token": "t", "challenge": "c-123", "type": "url_verification"}
    )
    assert status == 200 and "c-123" in text
    [body] = fake_slack.user_message(DM, "retry me")
    assert (await fake_slack.post_event(url, body))[0] == 200
    assert (await fake_slack.post_event(url, body, retry_num=1))[0] == 200
    first, second = await inbox.wait(2)
    assert first.event_id == second.event_id  # the core drops the second by event id


async def test_http_slash_command(
    fake_slack: FakeSlack, http_platform: tuple[SlackPlatform, str], inbox: Inbox
) -> None:
    _, url = http_platform
    status, text = await fake_slack.post_command(url, fake_slack.slash_command("/chat-reset", DM))
    assert status == 200 and text == ""
    [msg] = await inbox.wait(1)
    assert msg.command == "reset" and msg.is_dm


async def _no_metrics() -> bytes:
    return b""
