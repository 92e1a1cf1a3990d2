"""The config file's YAML read into a tree: a key given twice, a key that is no name
and text YAML cannot read are each a ConfigError saying where, with the likely
mistake (PyYAML's own words are left out: they can quote a value, `*alias`, `!tag`)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from bridge.errors import ConfigError

# Spaces a copy from a web page or a chat brings, which YAML does not take for spaces.
_ODD_SPACES = {
    "\xa0": "a non-breaking space",
    "\u2007": "a figure space",
    "\u202f": "a narrow non-breaking space",
    "\u3000": "a full-width space",
}
_ODD_SPACE = re.compile(f"[{''.join(_ODD_SPACES)}]")


def odd_space(text: str) -> str | None:
    """The name of the first odd space in `text` (`_ODD_SPACES`), if any."""
    found = _ODD_SPACE.search(text)
    return _ODD_SPACES[found.group()] if found else None


def read_yaml(text: str) -> Any:
    """The YAML tree of a config text."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError(
            "", f"the key {exc.path!r} is given twice (lines {exc.first} and {exc.second})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError("", _not_yaml(text, exc)) from None


def _not_yaml(text: str, exc: yaml.YAMLError) -> str:
    """What to say of a text YAML cannot read: where, and the mistake that fits."""
    mark = getattr(exc, "problem_mark", None)
    lines = text.splitlines()
    odd = _odd_space(text, lines, mark.line if mark else len(lines))
    if odd:
        # YAML stumbles on the line below one, with a word of tabs: the wrong line.
        return f"the file is not valid YAML: {odd}: retype it as a normal space"
    placeholder = _placeholder(lines, mark.line, mark.column) if mark else None
    if placeholder:
        return placeholder
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    line = (lines[mark.line : mark.line + 1] or [""])[0] if mark else ""
    if isinstance(exc, _KeyNotName):
        hint = " (a key in [ ] or { } is a list or a mapping, not a name: quote it)"
    elif "${" in line and any(c in line[: line.index("${")] for c in "{["):
        hint = ' (inside { } or [ ], write a ${VAR} in quotes: "${VAR}")'
    else:
        hint = (
            " (check the indentation: spaces, not tabs, the keys of one block lined "
            'up; and quote a value that holds ": " or starts with * & ! @ or `)'
        )
    return f"the file is not valid YAML{where}{hint}"


def _placeholder(lines: list[str], number: int, column: int) -> str | None:
    """What to say of a template's `{{ NAME }}` (Jinja's, Helm's, Ansible's), which YAML
    reads as a mapping in a mapping or fails on: on the line of YAML's error (0-based
    `number`), or the line above where the error is at the start of its line (YAML
    tells the end of what it read); else None."""
    above = [number - 1] if column == 0 and number > 0 else []
    for at in [number, *above]:
        line = (lines[at : at + 1] or [""])[0]
        if "{{" in line:
            name = re.search(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", line)
            variable = f"${{{name.group(1)}}}" if name else "${VAR}"
            return (
                f"the file is not valid YAML at line {at + 1}, column {line.index('{{') + 1} "
                f"({{{{ }}}} is not substituted: write {variable}, a variable of the environment)"
            )
    return None


def _odd_space(text: str, lines: list[str], last: int) -> str | None:
    """Which odd space (`_ODD_SPACES`) YAML failed on, and where: the last one on line
    `last` (0-based, YAML's error) or above, where the file with each one retyped as
    a space is read; else None."""
    # Read whole with every one retyped (a key given twice is told once they are).
    if not _ODD_SPACE.search(text) or not _read_past(_ODD_SPACE.sub(" ", text), len(lines)):
        return None
    # The one to blame: the last, on YAML's line or above, whose retyping alone gets the
    # file read past that line; a valid one in a quoted value (French puts one before
    # "!") is not, where another on the line above is what YAML stumbled on.
    found = [
        (number, at.start(), at.group())
        for number in range(min(last, len(lines) - 1), -1, -1)
        for at in reversed(list(_ODD_SPACE.finditer(lines[number])))
    ]
    starts = [0]  # where each line begins in `text`, its line break whichever it is
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    blamed = next(
        (f for f in found if _read_past(_retyped(text, starts[f[0]] + f[1]), last)),
        found[0] if found else None,
    )
    if blamed is None:
        return None
    number, column, space = blamed
    return (
        f"{_ODD_SPACES[space]} (copied from a web page or chat) at line {number + 1}, "
        f"column {column + 1}"
    )


def _retyped(text: str, at: int) -> str:
    return f"{text[:at]} {text[at + 1 :]}"


def _read_past(text: str, line: int) -> bool:
    """Whether YAML reads `text` past line `line` (0-based): whole, or failing further on
    (a key given twice counts as read: it is a mistake of its own)."""
    try:
        yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506
    except _DuplicateKey:
        return True
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return mark is not None and mark.line > line
    return True


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, path: str, first: int, second: int) -> None:
        super().__init__(path)
        self.path, self.first, self.second = path, first, second


class _KeyNotName(yaml.YAMLError):
    """A key YAML read as a list or a mapping (`[a, b]: 1`, `{{ NAME }}`), which no
    mapping can hold."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("a key that is a list or a mapping")
        self.problem_mark = mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep
    the last and drop the first without a word), and a key that is no name."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *shared`: merged below, and a key given here overrides it
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise _KeyNotName(key_node.start_mark) from None
            if key in seen:
                raise _DuplicateKey(str(key), seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep)
