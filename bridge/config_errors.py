"""What a config's validation errors say: each as a ConfigError naming its key path, and
what the file's value was read as where a choice or a string was wanted. A value the
environment gave is never quoted, nor one written in a secret's key."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from bridge.config_yaml import odd_space
from bridge.env import SHORT, FromEnv, given_by_env, join_path
from bridge.errors import ConfigError, together


def _loc_path(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = join_path(path, str(part))
    return path


def explain(prefix: str, exc: ValidationError, used: list[FromEnv]) -> ConfigError:
    """The validation errors as one ConfigError. A value is quoted only where a choice
    or a string was wanted and the file wrote it (`read_at`): never one the
    environment gave, which may be a secret."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = _loc_path(prefix, loc)
        problem = _message(err)
        if err["type"] in ("literal_error", "enum", "string_type") or problem.startswith(
            "must be one of"
        ):
            problem += read_at(path, err["input"], used)
        errors.append(ConfigError(path, problem))
    return together(errors)


# Past this a written value is not quoted: the words these keys take are short, and a
# key pasted into the wrong one is not to be printed.
_QUOTED_AT_MOST = 24
# The keys that hold secrets (api_key, user_id_key, bot_token, app_token, token,
# signing_secret, a password): what is written there is never quoted.
_SECRET_KEY = re.compile(r"(key|token|secret|password)(\[\d+\])?$")


def read_at(path: str, value: Any, used: list[FromEnv]) -> str:
    """What the file's value at key path `path` was read as (`_read_as`); nothing for
    one the environment gave, nor for a number in a secret's key (a key written as
    digits, which YAML read as a number)."""
    if given_by_env(path, used):
        return ""
    return _read_as(value, numbers=not _SECRET_KEY.search(path))


def _read_as(value: Any, numbers: bool = True) -> str:
    """What YAML read a value as, to follow a "must be one of" or a string wanted: a
    curly quote pasted from a chat, `off` read as false. Nothing for a long value, a
    list or a mapping."""
    if isinstance(value, bool):
        return f" (read as {str(value).lower()}; YAML reads yes/no/on/off as true/false: quote it)"
    if value is None:
        return " (read as null)"
    if numbers and isinstance(value, int | float) and len(repr(value)) < SHORT:  # `12:30`: 750
        return f" (read as {value!r})"
    if isinstance(value, str) and len(value) <= _QUOTED_AT_MOST:
        odd = odd_space(value)
        if odd:
            return f" (read as {value!r}, with {odd}: retype it as a normal space)"
        return f" (read as {value!r})"
    return ""


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind == "missing":
        return "is required"
    if kind == "finite_number":  # `.inf` meant as "no limit", most often
        return (
            "must be a finite number (not .inf or .nan; where the key takes null, null is no limit)"
        )
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return f"must be one of {', '.join(choices)}" if choices else err["msg"]
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
