"""The world process's entry point.

Apart from `world` so that the bridge's process, whose memory the benchmark
measures, never imports the fakes: they would count as the daemon's memory.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any


def run_world(conn: Connection, params: dict[str, Any]) -> None:
    from bench.streams import world

    world.run(conn, params)
