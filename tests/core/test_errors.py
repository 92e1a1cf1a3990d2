"""The exception family and its drawing in bridge/errors.py's docstring."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import bridge.errors
from bridge.errors import BridgeError

ROOT = Path(__file__).resolve().parents[2]


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_bridge_error_is_drawn_in_the_tree() -> None:
    # Seven errors, four of them an adapter's, were missing from the drawing.
    for package in ("bridge", "adapters"):
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    assert bridge.errors.__doc__ is not None
    drawn = set(re.findall(r"[─└├]── (\w+)", bridge.errors.__doc__))
    defined = {cls.__name__: cls.__module__ for cls in _subclasses(BridgeError)}
    assert "SlackRefused" in defined and "LineTooLong" in defined  # the adapters were walked
    assert {name: module for name, module in defined.items() if name not in drawn} == {}
    assert drawn - set(defined) == set()
