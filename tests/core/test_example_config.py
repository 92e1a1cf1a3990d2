"""config.example.yaml documents every key: each option of each model appears in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from adapters.registry import REGISTRY
from bridge.config import Config, RouteConfig

ROOT = Path(__file__).resolve().parents[2]


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _missing(model: type[BaseModel], block: Any, path: str) -> list[str]:
    """Keys of `model` (recursively) that `block` does not show."""
    if not isinstance(block, dict):
        return []
    missing = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in block:
            missing.append(f"{path}.{key}")
            continue
        for sub in _models(field.annotation):
            missing += _missing(sub, block[key], f"{path}.{key}")
    return missing


def example() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_every_core_key_is_in_the_example() -> None:
    data = example()
    missing = []
    for name, field in Config.model_fields.items():
        if name in ("backends", "platforms", "routes"):
            continue
        key = field.alias or name
        if key not in data:
            missing.append(key)
        for sub in _models(field.annotation):
            missing += _missing(sub, data.get(key), key)
    missing += _missing(RouteConfig, data["routes"][0], "routes[0]")
    assert missing == []


def test_every_platform_key_is_in_the_example() -> None:
    data = example()
    missing = []
    for name, load in REGISTRY.platforms.items():
        missing += _missing(load().Options, data.get(name), name)
    assert missing == []


def test_every_dialect_is_shown() -> None:
    kinds = {block["kind"] for block in example()["backends"].values()}
    assert kinds == set(REGISTRY.dialects)
