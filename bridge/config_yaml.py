"""The config file's YAML read into a tree: a key given twice and text YAML cannot read
are each a ConfigError saying where, with the likely mistake (PyYAML's own words are
left out: they can quote a value, `*alias`, `!tag`)."""

from __future__ import annotations

from typing import Any

import yaml

from bridge.errors import ConfigError


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
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    line = (lines[mark.line : mark.line + 1] or [""])[0] if mark else ""
    if "${" in line and any(c in line[: line.index("${")] for c in "{["):
        hint = ' (inside { } or [ ], write a ${VAR} in quotes: "${VAR}")'
    else:
        hint = (
            " (check the indentation: spaces, not tabs, the keys of one block lined "
            'up; and quote a value that holds ": " or starts with * & ! @ or `)'
        )
    return f"the file is not valid YAML{where}{hint}"


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, path: str, first: int, second: int) -> None:
        super().__init__(path)
        self.path, self.first, self.second = path, first, second


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep
    the last and drop the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *shared`: merged below, and a key given here overrides it
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(str(key), seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep)
