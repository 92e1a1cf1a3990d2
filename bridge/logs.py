"""Logging set-up: plain or JSON lines, with every configured secret scrubbed."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Tokens no config holds but URLs carry, which libraries log (discord.py at DEBUG):
# a Discord interaction's or webhook's token, and a Slack response_url's path.
_URL_TOKENS = (
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s\"'<>?#]+"), r"\1***"),
    (re.compile(r"(hooks\.slack\.com/)[^\s\"'<>]+"), r"\1***"),
)
# A `token` field of a payload logged whole (discord.py logs every gateway event
# at DEBUG, an interaction's token with it), as a dict's repr or as JSON.
_TOKEN_FIELD = re.compile(r"""(['"][\w-]*token['"]\s*:\s*)(['"])(?:(?!\2).)+\2""")


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record's message and fields with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        if "hooks" in text or "/interactions/" in text:
            for pattern, keep in _URL_TOKENS:
                text = pattern.sub(keep, text)
        if "token" in text:
            text = _TOKEN_FIELD.sub(r"\1\2***\2", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _STANDARD or value is None or isinstance(value, bool | int | float):
                continue
            # Anything else is written as text: scrub that text.
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            setattr(record, key, self.scrub(text))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                data[key] = value
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


class PlainFormatter(logging.Formatter):
    """`time level logger: message key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD
        )
        return f"{base} {extras}" if extras else base


def setup_logging(level: str, json_format: bool, secrets: Iterable[str]) -> SecretFilter:
    """Configure the root logger once for the process; returns the scrubbing filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    scrub = SecretFilter(secrets)
    handler.addFilter(scrub)
    # The handler keeps to the level too: a library logger set lower on purpose
    # (so its records are made, and counted) prints nothing below it.
    handler.setLevel(level)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if level != "DEBUG":
        # httpx writes a line per request at INFO; the bridge logs what matters itself.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # While PostgreSQL is down asyncpg logs each failed reconnect with a long
        # traceback; the store's own errors say what matters in a line.
        logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    return scrub
