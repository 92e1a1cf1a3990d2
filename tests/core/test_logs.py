from __future__ import annotations

import io
import json
import logging

from bridge.logs import JsonFormatter, PlainFormatter, SecretFilter

SECRET = "xoxb-very-secret-token"


def _log(formatter: logging.Formatter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(SecretFilter([SECRET, "abc"]))  # too short to scrub safely: ignored
    logger = logging.getLogger("test.scrub")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s refused", SECRET, extra={"conversation": f"k-{SECRET}"})
        try:
            raise RuntimeError(f"bad header Bearer {SECRET}")
        except RuntimeError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_secrets_are_scrubbed_from_messages_fields_and_tracebacks() -> None:
    out = _log(PlainFormatter("%(levelname)s %(message)s"))
    assert SECRET not in out
    assert "token *** refused conversation=k-***" in out
    assert "Bearer ***" in out


def test_json_lines_carry_fields_and_no_secret() -> None:
    lines = _log(JsonFormatter()).strip().splitlines()
    first = json.loads(lines[0])
    assert first["message"] == "token *** refused"
    assert first["conversation"] == "k-***"
    assert first["level"] == "WARNING"
    assert SECRET not in "".join(lines)
