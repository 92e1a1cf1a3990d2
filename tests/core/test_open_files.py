"""Out of open files: said as the bridge's own limit, at start and by the listener."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from pathlib import Path
from typing import Any

import aiohappyeyeballs
import pytest

from bridge import resources
from tests.core.relay_support import bridge_for, platform
from tests.fakes.chatapi import FakeChatAPI


async def test_a_bridge_out_of_open_files_does_not_blame_the_backend(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # EMFILE as the connection's socket is made: the API was never asked. It was
    # logged as a transport error, the asker told the assistant could not be
    # reached, and the healthy backend's circuit opened for everyone after.
    full = True
    start_connection = aiohappyeyeballs.start_connection

    async def out_of_files(*args: Any, **kwargs: Any) -> socket.socket:
        if full:
            raise OSError(errno.EMFILE, "Too many open files")
        return await start_connection(*args, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", out_of_files)
    fake_chat_api.enqueue(tokens=["Back."])
    extra = "limits: {circuit: {failures: 1, cooldown: 60}}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra) as bridge:
        told = []
        for n in range(2):
            target = await platform(bridge).say(f"q{n}?", thread=f"T{n}")
            await asyncio.wait_for(target.ended.wait(), 10)
            told.append(target.visible()[-1] if target.visible() else target.notices[-1])
        assert bridge.relay.circuits["docs"].state == "closed"
        full = False
        target = await platform(bridge).say("q2?", thread="T2")
        await asyncio.wait_for(target.ended.wait(), 10)
    overloaded = "The bridge is overloaded right now; please try again shortly."
    assert [overloaded in said for said in told] == [True, True], told
    assert target.visible() == ["Back."]
    said = [r.getMessage() for r in caplog.records if r.name == "adapters.apis"]
    assert len(said) == 4, said  # two tries each
    assert said[0].startswith("attempt 1 of 2: the bridge is out of open files (its limit")
    assert "`ulimit -n`" in said[0] and "limits.max_concurrent_streams" in said[0]


async def test_a_start_with_too_few_open_files_for_the_streams_warns(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources.resource, "getrlimit", lambda _: (256, 256))
    extra = "limits: {max_concurrent_streams: 400}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra):
        pass
    warned = [r for r in caplog.records if r.getMessage().startswith("open files:")]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert warned[0].getMessage() == (
        "open files: the limit is 256, and 400 answers streaming at once "
        "(limits.max_concurrent_streams) need about 900; raise it (`ulimit -n`, "
        "docker's --ulimit nofile=) or lower limits.max_concurrent_streams"
    )


async def test_a_start_with_enough_open_files_says_nothing_of_them(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources.resource, "getrlimit", lambda _: (900, 900))
    extra = "limits: {max_concurrent_streams: 400}"
    async with bridge_for(fake_chat_api, tmp_path / "b.db", extra=extra):
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_listener_out_of_open_files_warns_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Loop:
        now = 0.0
        passed: list[dict[str, Any]] = []

        def time(self) -> float:
            return self.now

        def default_exception_handler(self, context: dict[str, Any]) -> None:
            self.passed.append(context)

    loop, handler = Loop(), resources.LoopExceptions()
    failed = {
        "message": resources.ACCEPT_OUT_OF_RESOURCE,
        "exception": OSError(errno.EMFILE, "Too many open files"),
    }
    for at in (0.0, 1.0, 2.0, 59.0, 61.0):
        loop.now = at
        handler(loop, failed)  # type: ignore[arg-type]
    other = {"message": "Task exception was never retrieved"}
    handler(loop, other)  # type: ignore[arg-type]
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("listener:")]
    assert [w.split(" (")[0] for w in warned] == [
        "listener: accept() failed 1 time(s)",
        "listener: accept() failed 4 time(s)",
    ]
    assert "(EMFILE)" in warned[0] and "`ulimit -n`" in warned[0]
    assert loop.passed == [other]
