"""The bridge's side of the benchmark: the real daemon (`bridge.app.Bridge`) in this process.

It is configured like a deployment (YAML through `parse_config`, SQLite store
in a temporary directory, INFO logging to a file) and pointed at the world's
fakes. CPU is this process's user+system time (all threads: the event loop and
the SQLite thread) from the first question to the last answer; memory is this
process's resident set.
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from adapters.registry import REGISTRY
from bench.streams.params import (
    DISCORD_BOT_BUDGET,
    DISCORD_EDIT,
    DISCORD_POST,
    SLACK_POST,
    SLACK_UPDATE,
    Params,
)
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.logs import setup_logging
from bridge.resources import settle_heap


def config_text(p: Params, info: dict[str, Any], db: Path) -> str:
    """The daemon's config for this run."""
    streams = max(64, p.conversations)
    text = f"""
store: sqlite://{db}
http: {{listen: null}}
backends:
  docs:
    kind: chatmount
    url: {info["chat_url"]}
    api_key: ${{BENCH_CHAT_KEY}}
    include_sources: false
routes:
  - platform: any
    backend: docs
    trigger: mention
    session: thread
reply: {{edit_interval: {p.edit_interval}, sources: {{show: false}}}}
limits:
  max_concurrent_streams: {streams}
  queue_size: {streams}
logging: {{level: INFO}}
"""
    if p.slack_count:
        text += f"""
slack:
  bot_token: ${{BENCH_SLACK_BOT}}
  app_token: ${{BENCH_SLACK_APP}}
  api_url: {info["slack_url"]}
  update_rate: {{count: {SLACK_UPDATE[0]}, per: {SLACK_UPDATE[1]}}}
  post_rate: {{count: {SLACK_POST[0]}, per: {SLACK_POST[1]}}}
"""
    if p.discord_count:
        text += f"""
discord:
  token: ${{BENCH_DISCORD_TOKEN}}
  api_url: {info["discord_api"]}
  gateway_url: {info["discord_gateway"]}
  guild_ready_timeout: 0.2
  edit_rate: {{count: {DISCORD_EDIT[0]}, per: {DISCORD_EDIT[1]}}}
  post_rate: {{count: {DISCORD_POST[0]}, per: {DISCORD_POST[1]}}}
  global_rate: {{count: {DISCORD_BOT_BUDGET[0]}, per: {DISCORD_BOT_BUDGET[1]}}}
"""
    return text


def rss_kb(field: str = "VmRSS") -> int:
    """This process's resident set size now (or another size of /proc/self/status, such
    as its high-water mark, VmHWM), in KiB; 0 where it is missing."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (VmHWM) to its RSS now.

    Samples every 0.1 s miss the peaks between them; the high-water mark does
    not. False where the kernel does not allow it (then only the samples count).
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def peak_rss(sampled: int, high_water: int | None) -> tuple[int, str]:
    """The peak RSS in KiB and where it came from: the high-water mark (`VmHWM`),
    or the samples where they saw more or there is no mark (`samples`).

    Not ru_maxrss: the reset need not lower it, so it can still hold start-up's peak.
    """
    if high_water is not None and high_water >= sampled:
        return high_water, "VmHWM"
    return sampled, "samples"


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user+system) of each of this process's threads, by native id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _thread_names() -> dict[int, str]:
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    return names


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sampler:
    """Samples memory, live streams and event-loop lag while the run goes on."""

    def __init__(self, bridge: Bridge, every: float = 0.1) -> None:
        self.bridge = bridge
        self.every = every
        self.peak_rss = 0
        self.peak_live = 0
        self.lag: list[float] = []
        self.rss: list[tuple[float, int, int]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.every)
            self.lag.append(loop.time() - before - self.every)
            rss, live = rss_kb(), self.bridge.relay.live
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_live = max(self.peak_live, live)
            self.rss.append((time.monotonic(), rss, live))


async def _recv(conn: Connection) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


async def _until(predicate: Any, timeout: float, what: str | None = None) -> bool:
    """Poll `predicate` until true (a benchmark may poll; it is not a test).

    At the deadline: raise naming `what`, or (without `what`) return False.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if what is None:
                return False
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return True


async def run(
    p: Params, conn: Connection, *, log_path: Path, profile_path: Path | None = None
) -> dict[str, Any]:
    """Run the bridge for one benchmark; returns the world's records and this side's figures."""
    kind, info = await _recv(conn)
    if kind != "ready":
        raise RuntimeError(f"the world process failed to start: {info}")
    env = {
        "BENCH_CHAT_KEY": info["chat_key"],
        "BENCH_SLACK_BOT": info.get("slack_bot_token", ""),
        "BENCH_SLACK_APP": info.get("slack_app_token", ""),
        "BENCH_DISCORD_TOKEN": info.get("discord_token", ""),
    }
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        config = parse_config(config_text(p, info, Path(tmp) / "bridge.db"), env, REGISTRY)
        setup_logging(config.logging.level, False, config.secrets())
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "w", encoding="utf-8")  # noqa: ASYNC230 - once, before the run
        handler.setStream(log_file)
        try:
            async with Bridge(config, REGISTRY) as bridge:
                return await _measure(p, conn, bridge, profile_path)
        finally:
            logging.getLogger().removeHandler(handler)
            log_file.close()


async def _measure(
    p: Params, conn: Connection, bridge: Bridge, profile_path: Path | None
) -> dict[str, Any]:
    await _until(lambda: all(pl.connected for pl in bridge.platforms.values()), 60, "platforms")
    settle_heap()  # as `chat-bridge run` does once the daemon is up
    baseline_rss = rss_kb()
    high_water = reset_peak()
    # Modules of the test suite in this process would count as the daemon's memory.
    test_modules = sorted(name for name in sys.modules if name.partition(".")[0] == "tests")
    sampler = Sampler(bridge)
    sampling = asyncio.create_task(sampler.run())
    profiler = cProfile.Profile() if profile_path is not None else None
    threads0 = thread_cpu()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    conn.send(("go",))
    kind, failure = await _recv(conn)
    if kind != "done":
        raise RuntimeError(f"the world process failed: {failure}")
    # The last text is visible; let the replies finish (final edit, store) before stopping.
    await _until(lambda: bridge.relay.live == 0, 30)
    unfinished = bridge.relay.live
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    names = _thread_names()
    by_thread: dict[str, float] = {}
    for tid, used in thread_cpu().items():
        name = (
            "main (event loop)"
            if tid == threading.main_thread().native_id
            else (_kind(names.get(tid, "ended")))
        )
        by_thread[name] = round(by_thread.get(name, 0.0) + used - threads0.get(tid, 0.0), 3)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile_path))
    sampling.cancel()
    sampled_rss = max(sampler.peak_rss, rss_kb())
    peak_kb, peak_source = peak_rss(sampled_rss, rss_kb("VmHWM") if high_water else None)
    conn.send(("records",))
    kind, world = await _recv(conn)
    if kind != "records":
        raise RuntimeError(f"the world process failed: {world}")
    return {
        "world": world,
        "bridge": {
            "cpu_seconds": cpu1 - cpu0,
            "wall_seconds": wall1 - wall0,
            "cpu_by_thread": by_thread,
            "baseline_rss_kb": baseline_rss,
            "test_modules_loaded": test_modules,
            "peak_rss_kb": peak_kb,
            "peak_rss_source": peak_source,
            "sampled_peak_rss_kb": sampled_rss,
            "peak_live_streams": sampler.peak_live,
            "unfinished_at_end": unfinished,
            "lag": sampler.lag,
            "platform_429_seen": _by_label(bridge.metrics.platform_429, "platform"),
            "outcomes": _by_label(bridge.metrics.answered, "outcome"),
        },
    }


def _kind(name: str) -> str:
    """A thread's name without its number ("Thread-12 (_run)" -> "Thread (_run)")."""
    head, _, tail = name.partition(" ")
    return (head.rstrip("-0123456789") + (" " + tail if tail else "")).strip()


def _by_label(counter: Any, label: str) -> dict[str, float]:
    """A labelled prometheus counter read back, summed by one label."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + float(sample.value)
    return out
