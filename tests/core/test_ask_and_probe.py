"""`chat-bridge ask` and `check --probe` against a chat API: what they print, what to check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli_support import run_command_async
from tests.core.relay_support import make_config
from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.proxy import FakeProxy


async def test_ask_prints_the_answer_and_sources(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    fake_chat_api.enqueue(tokens=["Open ", "9 to 5."], sources=[("https://x.example/h", "Hours")])
    config = tmp_path / "config.yaml"
    config.write_text(make_config(fake_chat_api, tmp_path / "b.db").replace("console: {}\n", ""))
    code, out, err = await run_command_async(
        "ask",
        "-c",
        str(config),
        "--backend",
        "docs",
        "When are you open?",
        env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin"},
    )
    assert code == 0, err
    assert "Warning" not in err, err
    assert out == "Open 9 to 5.\n\nSources:\n  1. Hours — https://x.example/h\n"
    assert fake_chat_api.api_key not in out + err


async def test_ask_prints_an_emoji_cut_in_halves_as_one(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A half of a UTF-16 pair cannot be written to a terminal: `ask` stopped with a
    # traceback, losing what it had shown.
    fake_chat_api.enqueue(tokens=["Smile \ud83d", "\ude00 ok", " \ud83d"], token_delay=0.01)
    config = tmp_path / "config.yaml"
    config.write_text(make_config(fake_chat_api, tmp_path / "b.db").replace("console: {}\n", ""))
    code, out, err = await run_command_async(
        "ask",
        "-c",
        str(config),
        "--backend",
        "docs",
        "Smile?",
        env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8"},
    )
    assert code == 0, err
    assert "Warning" not in err, err
    assert out == "Smile \U0001f600 ok \ufffd\n"


@pytest.mark.parametrize(
    ("case", "code", "verdict", "hint"),
    [
        ("ok", 0, "ok", None),
        # The admin is told which key to look at, not only what an asker would be.
        # With what the API said (no log line says it: the relay's names the setting).
        (
            "bad key",
            1,
            "auth failed",
            "\n  check backends.docs.api_key\n"
            "  HTTP 401 from the chat API: Invalid or missing API key\n",
        ),
        ("nobody listening", 1, "unreachable", "\n  check backends.docs.url (http://127.0.0.1:"),
        # Not "auth failed ... check backends.docs.api_key": the key never reached the API.
        ("proxy refused", 1, "proxy refused", "check the user:password in HTTP_PROXY"),
        # The proxy's deny page for a host not on its list: not the API refusing the key.
        (
            "proxy denies",
            1,
            "proxy refused",
            "answered HTTP 403 Forbidden to the request for "
            "chat.example.invalid:80: check that the proxy allows that host",
        ),
        # Not "check backends.docs.url": that is right, the proxy is down.
        (
            "proxy down",
            1,
            "unreachable",
            "could not be reached (connection refused): check "
            "HTTP_PROXY, and that the proxy is running",
        ),
    ],
)
async def test_check_probe_reports_each_backend(
    fake_chat_api: FakeChatAPI,
    tmp_path: Path,
    case: str,
    code: int,
    verdict: str,
    hint: str | None,
) -> None:
    text = make_config(fake_chat_api, tmp_path / "b.db").replace("console: {}\n", "")
    if case == "nobody listening":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        text = text.replace(fake_chat_api.url, f"http://127.0.0.1:{port}")
    through_proxy = case.startswith("proxy")
    if through_proxy:  # a host the proxy is asked for (loopback goes direct)
        text = text.replace(fake_chat_api.url, "http://chat.example.invalid")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    key = "wrong-key" if case == "bad key" else fake_chat_api.api_key
    env = {"KEY": key, "PATH": "/usr/bin:/bin"}
    refuses = 403 if case == "proxy denies" else None
    credentials = "corp:right-password" if case == "proxy refused" else None
    async with FakeProxy(credentials=credentials, refuses=refuses) as proxy:
        if through_proxy:
            where = proxy.url.removeprefix("http://")
            if case == "proxy down":
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    where = f"127.0.0.1:{sock.getsockname()[1]}"
            env["HTTP_PROXY"] = f"http://corp:expired-s3cret@{where}"
        returncode, out, err = await run_command_async(
            "check", "--probe", "-c", str(config), env=env
        )
    assert returncode == code
    assert "expired-s3cret" not in out + err
    assert "Warning" not in err, err
    if through_proxy:
        assert "api_key" not in out and "check backends" not in out
    if case in ("proxy refused", "proxy denies"):
        assert proxy.seen
    assert f"backend docs: {verdict}" in out
    assert (hint is None and "check backends" not in out) or (hint is not None and hint in out)


async def test_check_probe_gives_up_on_a_stuck_backend_and_probes_the_next(
    fake_chat_api: FakeChatAPI, tmp_path: Path
) -> None:
    # A backend that sent keep-alives and never an answer held the probe for good:
    # no verdict, and the backends after it were never probed.
    fake_chat_api.enqueue(first_delay=3600, keepalive_every=0.1)
    fine = FakeChatAPI(api_key=fake_chat_api.api_key)
    await fine.start()
    try:
        block = (
            "  stuck:\n    kind: chatmount\n"
            f"    url: {fake_chat_api.endpoint('chatmount')}\n"
            "    api_key: ${KEY}\n"
            "    timeouts: {connect: 0.5, first_byte: 1, idle: 0.5}\n"
        )
        text = make_config(fine, tmp_path / "b.db").replace("console: {}\n", "")
        config = tmp_path / "config.yaml"
        config.write_text(text.replace("backends:\n", "backends:\n" + block))
        code, out, err = await run_command_async(
            "check",
            "--probe",
            "-c",
            str(config),
            env={"KEY": fake_chat_api.api_key, "PATH": "/usr/bin:/bin"},
        )
        assert fine.requests  # probed too
    finally:
        await fine.close()
    assert code == 1, err
    lines = out.splitlines()
    verdicts = [line for line in lines if line.startswith("backend ")]
    assert verdicts == [  # in the config's order
        "backend stuck: unreachable (The assistant did not begin an answer within 2 s.)",
        "backend docs: ok",
    ]
    # It is running, and connected: the admin is told where to look all the same.
    hint = lines[lines.index(verdicts[0]) + 1]
    assert hint == (
        f"  check backends.stuck.url ({fake_chat_api.endpoint('chatmount')}) and that the "
        "server answers in time (backends.stuck.timeouts)"
    )
    await fake_chat_api.wait_disconnects(1)
