"""`${VAR}` in the config: expanded from the environment before validation, and each
value it gave shown again as its `${VAR}` in an error (any of them may hold a token,
and the admin knows them by the name they wrote)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.errors import ConfigError, together

# `$${` (a `${` itself), `${VAR}` / `${VAR:-default}`, or `$VAR`: a variable without
# braces, which is not expanded (a shell's habit: the name would be sent as written).
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")

_CR_END = re.compile(r"\r\n?\Z")

# A value the environment gave: the key path it was given to, the variable, its value.
FromEnv = tuple[str, str, str]


def expand_env(
    node: Any, env: Mapping[str, str], path: str = "", used: list[FromEnv] | None = None
) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a YAML tree; `$${` is a
    `${` itself. `$VAR` is a config error where it can only mean the variable (the
    whole value, or a variable that is set): elsewhere a `$` is as written (a price,
    a formula, a password). Every such error is told at once (a new deployment's
    unset variables, say), one line each. Each value a variable gave is added to
    `used` (a default is not: it is written in the file)."""
    errors: list[ConfigError] = []
    expanded = _expand(node, env, path, errors, [] if used is None else used)
    if errors:
        raise together(errors)
    return expanded


def _expand(
    node: Any, env: Mapping[str, str], path: str, errors: list[ConfigError], used: list[FromEnv]
) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v, env, join_path(path, str(k)), errors, used) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, env, f"{path}[{i}]", errors, used) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            bare = match.group(3)
            if bare is not None:
                if bare not in env and node.strip() != match.group(0):
                    return match.group(0)
                # The name is shown only when it is a variable: else the value may be
                # a password written in the file.
                write = f"${{{bare}}}" if bare in env else "${VAR}"
                raise ConfigError(path, f"write {write}: the braces are needed")
            name, default = match.group(1), match.group(2)
            if default is not None and "${" in default:
                raise ConfigError(path, f"${{{name}:-...}}: a default cannot hold another ${{...}}")
            value = env.get(name)
            if value is not None:
                # A file of variables saved with Windows line endings and read by a shell
                # (`set -a; . ./prod.env`) leaves a "\r" on each: it would name a new
                # SQLite file, a model no server has. Docker's --env-file and systemd's
                # EnvironmentFile= drop it too.
                value = _CR_END.sub("", value)
            if value is None or value == "" and default is not None:
                if default is None:
                    raise ConfigError(
                        path,
                        f"environment variable {name} is not set; export it or "
                        f"write ${{{name}:-default}} to give a default",
                    )
                return default
            used.append((path, name, value))
            return value

        if "${" in _VAR.sub("", node):
            errors.append(
                ConfigError(
                    path,
                    "has a ${ that is not ${VAR} or ${VAR:-default} (names are letters, "
                    "digits and _)",
                )
            )
            return node
        try:
            return _VAR.sub(sub, node)
        except ConfigError as exc:
            errors.append(exc)
            return node
    return node


def join_path(path: str, key: str) -> str:
    """A key's path within `path` (`routes[0]` and `session`: `routes[0].session`)."""
    return f"{path}.{key}" if path else key


# A value this short (no token is) is hidden where it is a word of its own, not within
# another: within the bound a message states (`0` of `0.05`), it would garble it.
SHORT = 8


def env_hidden(error: ConfigError, used: list[FromEnv]) -> ConfigError:
    """`error` with each value the environment gave shown as the `${VAR}` that names it.

    Any of them may be a secret (a token's variable written in `channels` by mistake,
    a key in a URL's query), and the admin knows them by the name they wrote. A value
    is hidden in the lines of its own key and of the keys around it, which are the
    ones a message may quote: elsewhere a short value ("user", "1") would be hidden
    in words it happens to spell (and within them, a value shorter than SHORT is
    hidden only where it is a word of its own). Also hidden: the value stripped, escaped as a
    quote shows it (`'xoxb-…\\n'`), and cut short to be quoted (`'sk-…...'`)."""
    parts = []
    for part in error.parts:
        forms: dict[str, str] = {}
        for where, name, value in used:
            if _related(where, part.path):
                for form in (value, value.strip()):
                    forms.setdefault(form, f"${{{name}}}")
                    forms.setdefault(repr(form)[1:-1], f"${{{name}}}")
        problem = part.problem
        for form in sorted(forms, key=len, reverse=True):
            if len(form) >= SHORT:
                problem = _cut_short(problem.replace(form, forms[form]), form, forms[form])
            elif form:  # as a whole word only: `0` of `0.05`, the bound the message says
                problem = re.sub(
                    rf"(?<![\w.]){re.escape(form)}(?![\w.])",
                    forms[form].replace("\\", "\\\\"),
                    problem,
                )
        parts.append(ConfigError(part.path, problem))
    return together(parts)


def given_by_env(path: str, used: list[FromEnv]) -> bool:
    """Whether the value at key path `path` is, holds or is within one the environment
    gave, so a message may not quote it."""
    return any(_related(where, path) for where, _, _ in used)


def _related(one: str, other: str) -> bool:
    """Whether one key path is the other, or holds it (`routes[0]` holds
    `routes[0].channels[1]`; the whole file's, "", holds every one)."""
    high, low = sorted((one, other), key=len)
    return not high or low == high or low.startswith((f"{high}.", f"{high}["))


def _cut_short(text: str, value: str, shown: str) -> str:
    """`text` with a start of `value` cut short to be quoted (followed by ... or …), of
    8 characters or more, as `shown`."""
    for mark in ("...", "…"):
        start = 0
        while (at := text.find(mark, start)) != -1:
            cut = next(
                (
                    n
                    for n in range(min(at, len(value) - 1), 7, -1)
                    if text[at - n : at] == value[:n]
                ),
                0,
            )
            if cut:
                text = text[: at - cut] + shown + text[at + len(mark) :]
                start = at - cut + len(shown)
            else:
                start = at + len(mark)
    return text
