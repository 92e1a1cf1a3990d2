"""The garbage collector's settings once the daemon is up (`settle_heap`)."""

from __future__ import annotations

import asyncio
import gc
import signal
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.registry import REGISTRY
from bridge import cli
from bridge.config import parse_config
from bridge.resources import GC_YOUNG_THRESHOLD, settle_heap


class Node:
    """Something that can sit in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def garbage_cycle() -> weakref.ref[Node]:
    """A cycle nothing else refers to: only the collector can free it."""
    return weakref.ref(cycle())


@pytest.fixture
def restored() -> Iterator[None]:
    """Put the collector back as it was: the rest of the suite runs in this process."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_start_up_garbage_is_collected_not_kept_for_good(restored: None) -> None:
    dead = garbage_cycle()
    settle_heap()
    assert dead() is None


def test_what_lives_at_start_up_is_left_out_of_later_collections(restored: None) -> None:
    kept = cycle()
    alive = weakref.ref(kept)
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())  # tracked objects not frozen
    assert alive() is kept


def test_cycles_made_later_are_still_collected(restored: None) -> None:
    settle_heap()
    later = garbage_cycle()
    gc.collect()
    assert later() is None


def test_young_objects_are_collected_less_often(restored: None) -> None:
    _, middle, old = gc.get_threshold()
    settle_heap()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, middle, old)
    assert GC_YOUNG_THRESHOLD > 700  # CPython's default


async def test_chat_bridge_run_settles_the_heap_once_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = parse_config(
        f"""
store: sqlite://{tmp_path / "b.db"}
http: {{listen: null}}
backends:
  docs: {{kind: chatmount, url: "http://127.0.0.1:9/chat", api_key: "${{KEY}}"}}
console: {{read_stdin: false}}
routes: [{{platform: console, backend: docs}}]
""",
        env={"KEY": "never-used-key"},
        registry=REGISTRY,
    )
    up: list[bool] = []

    def settle() -> None:  # records the call instead of changing this process's collector
        up.append(True)
        signal.raise_signal(signal.SIGTERM)  # then stop, as `docker stop` would

    monkeypatch.setattr(cli, "settle_heap", settle)
    assert await asyncio.wait_for(cli._serve(config, REGISTRY), 20) == 0
    assert up == [True]
