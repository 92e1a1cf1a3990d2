"""Run the streams benchmark: `python3 -m bench.streams [--quick] [options]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.streams.params import Params, quick  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def parse_args(argv: list[str] | None) -> tuple[Params, argparse.Namespace]:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.streams",
        description="Many concurrent answers streamed through the real bridge to the fake "
        "Slack and Discord; prints figures and PASS/FAIL lines, writes JSON.",
    )
    d = Params()
    ap.add_argument(
        "--quick", action="store_true", help="50 conversations, 60-token answers (under 30 s)"
    )
    ap.add_argument(
        "--conversations",
        type=int,
        default=None,
        help=f"concurrent conversations, 1 to 2000 (default {d.conversations}; quick 50)",
    )
    ap.add_argument(
        "--platform",
        choices=["slack", "discord", "both"],
        default=d.platform,
        help="where they are asked; both: half each (default %(default)s)",
    )
    ap.add_argument(
        "--slack-workspaces",
        type=int,
        default=None,
        help="Slack workspaces (chat.update budget buckets); default one per Slack conversation",
    )
    ap.add_argument(
        "--slack-channels",
        type=int,
        default=d.slack_channels,
        help="channels per Slack workspace (default %(default)s)",
    )
    ap.add_argument(
        "--discord-channels",
        type=int,
        default=None,
        help="Discord channels (edit budget buckets); default one per Discord conversation",
    )
    ap.add_argument(
        "--discord-guilds", type=int, default=None, help="Discord guilds; default 50 channels each"
    )
    ap.add_argument(
        "--tokens", type=int, default=None, help=f"tokens per answer (default {d.tokens}; quick 60)"
    )
    ap.add_argument(
        "--tps",
        type=float,
        default=d.tps,
        help="tokens per second of each answer (default %(default)s)",
    )
    ap.add_argument(
        "--tokens-per-write",
        type=int,
        default=d.tokens_per_write,
        help="token events the API sends together in one write (default "
        "%(default)s: each token its own write)",
    )
    ap.add_argument(
        "--ttft",
        type=float,
        default=None,
        help=f"the API's time to first token, s (default {d.ttft}; quick 0.3)",
    )
    ap.add_argument(
        "--edit-interval",
        type=float,
        default=d.edit_interval,
        help="reply.edit_interval, s (default %(default)s)",
    )
    ap.add_argument(
        "--ramp",
        type=float,
        default=None,
        help=f"questions are asked evenly over this many seconds (default {d.ramp}; quick 1)",
    )
    ap.add_argument(
        "--no-discord-global",
        action="store_true",
        help="do not enforce Discord's global limit (50 requests/s per bot)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "streams.json")
    ap.add_argument(
        "--raw",
        action="store_true",
        help="also write every conversation's timings (streams-raw.json)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the bridge process (slower; writes streams.prof)",
    )
    args = ap.parse_args(argv)
    p = quick(Params()) if args.quick else Params()
    p.platform = args.platform
    p.slack_workspaces = args.slack_workspaces
    p.slack_channels = args.slack_channels
    p.discord_channels = args.discord_channels
    p.discord_guilds = args.discord_guilds
    p.tps, p.edit_interval = args.tps, args.edit_interval
    p.tokens_per_write = args.tokens_per_write
    p.discord_global = not args.no_discord_global
    for name in ("conversations", "tokens", "ttft", "ramp"):
        if getattr(args, name) is not None:
            setattr(p, name, getattr(args, name))
    if not 1 <= p.conversations <= 2000:
        ap.error("--conversations must be from 1 to 2000")
    if p.tokens < 1 or p.tokens_per_write < 1 or p.tps <= 0 or p.ttft < 0 or p.ramp < 0:
        ap.error("--tokens, --tps, --ttft and --ramp must be positive")
    return p, args


def describe(p: Params) -> str:
    """One line saying what was run."""
    where = []
    if p.slack_count:
        where.append(f"{p.slack_count} Slack over {p.workspaces} workspaces")
    if p.discord_count:
        where.append(f"{p.discord_count} Discord over {p.channels} channels")
    return (
        f"{p.conversations} conversations ({', '.join(where)}); {p.tokens} tokens at "
        f"{p.tps:g}/s ({p.tokens_per_write} per write) after {p.ttft:g} s; "
        f"edit_interval {p.edit_interval:g} s; asked over {p.ramp:g} s"
    )


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    p, args = parse_args(argv)
    # This process is the bridge's, and its memory is measured: it imports only
    # what the daemon would (and the benchmark's own small modules), never the fakes.
    from bench.streams import bridge_side
    from bench.streams.entry import run_world

    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=run_world, args=(theirs, p.__dict__), name="bench-world")
    proc.start()
    started = time.monotonic()
    out: Path = args.out
    profile = out.with_suffix(".prof") if args.profile else None
    try:
        run = asyncio.run(
            bridge_side.run(p, mine, log_path=out.with_suffix(".log"), profile_path=profile)
        )
        mine.send(("stop",))
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    from bench.streams.analyse import analyse, profile_by_package, table

    if args.raw:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_name(out.stem + "-raw.json").write_text(json.dumps(run))
    result = analyse(p, run)
    if profile is not None:
        result["profile_self_seconds_by_package"] = dict(profile_by_package(str(profile)))
    result = {
        "machine": machine(),
        "parameters": p.as_dict(),
        **result,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(describe(p))
    print(table(p, result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}" + (f" and {profile}" if profile else ""))
    if profile is not None:
        print(
            "\nbridge process under cProfile (main thread; slower than unprofiled), "
            "self seconds by package:"
        )
        for name, seconds in result["profile_self_seconds_by_package"].items():
            print(f"{seconds:9.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
