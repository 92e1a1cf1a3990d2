"""Suite-wide checks: every test runs with DEBUG logging, and no secret may appear in a log line.

Hypothesis runs with no per-example deadline: its default (200 ms) is a timed
assertion, and a loaded machine fails it with code that is right. Speed is
measured in bench/, never asserted here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterator

import pytest
from hypothesis import settings

settings.register_profile("bridge", deadline=None)
settings.load_profile("bridge")

# CI runs every test: there a skip (a tool or a server missing, a skip left in)
# fails, rather than passing unseen. CI is Linux, where no test skips.
IN_CI = bool(os.environ.get("CI"))


def _failed_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test runs: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    _failed_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None]:
    outcome = yield
    _failed_in_ci(outcome.get_result())


# The fake servers' fixtures (fake_chat_api, fake_slack, fake_discord), for every test.
pytest_plugins = ["tests.fakes.chatapi", "tests.fakes.slack", "tests.fakes.discord"]

# Every secret the fakes and tests configure. A log line (message, fields or
# traceback) containing one fails the test that wrote it.
KNOWN_SECRETS = (
    "cm_test_key_5ecret",  # the fake chat APIs' key
    "xoxb-fake-bot-token",  # fake Slack
    "xapp-fake-app-token",
    "fake-signing-secret",
    "fake.discord-bot.token",  # fake Discord
    "cm_live_SUPERSECRET_value_123",  # config tests
    "expired-s3cret",  # the password of a proxy variable (tests of a proxy's 407)
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        extras = " ".join(str(v) for k, v in vars(record).items() if k not in _STANDARD)
        trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.lines.append(f"{record.name}: {text} {extras} {trace}")


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable set, in either case (the test sets those it wants)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    leaks = [line for line in handler.lines for s in KNOWN_SECRETS if s in line]
    assert not leaks, f"a secret was logged: {leaks[0][:200]}"
