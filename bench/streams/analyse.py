"""From the two processes' records to the figures, the target checks and the table.

Definitions (also written into the JSON as `method`):

- first visible text: from the question being sent to the first platform
  version showing answer text, minus the API's own time to first token (from
  its receiving the request to its sending the first token). What is left is
  the bridge's share: inbound event, routing, store, request, render, edit.
- token-to-visible: for every token, from the API sending it to the first
  accepted platform version (post or edit) showing it.
- utilisation: updates that showed new text (edits, and the posts that continue
  a long answer in a new message), divided by the edits an ideal
  scheduler could have made under the same limits (at most one edit per reply
  per `edit_interval`, except the final one; the platform's edit window per
  budget bucket; Discord's global 50 requests/s; the first text on Discord is a
  new message, on the post budget) given the same token times, with requests
  taking no time at all.
- CPU per token: the bridge process's user+system CPU (all threads) from the
  first question to the last reply finishing, divided by the tokens streamed.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from bench.streams.params import BUDGET_MARGIN, Params

METHOD = {
    "processes": "the bridge (bridge.app.Bridge, real relay, renderer, budgets, adapters, "
    "SQLite store) runs alone in one process; the fake chat API, fake Slack, fake Discord "
    "and the askers run in a second process, so their CPU is not counted",
    "clock": "time.monotonic() in both processes (one clock for the machine)",
    "visible": "measured on the platform side: the fakes record each accepted message "
    "version and the newest token it shows (every token carries a marker)",
    "first_visible": "question sent -> first visible answer text, minus the API's time to "
    "first token",
    "token_to_visible": "API sent the token -> first platform version showing it; a token "
    "no version showed is counted in tokens_never_shown (and fails the p99 target)",
    "utilisation": "updates that showed new text (edits, and posts continuing a long answer) / "
    "edits an ideal scheduler could make under the same limits (one edit per reply per "
    "edit_interval except the final one; the platform's edit window per bucket; the "
    "bridge's own Discord budget of 40 requests/s) from the same token times, with "
    "instant requests",
    "limits": "fake Slack: chat.update and reactions.add 50/60 s, reactions.remove 20/60 s "
    "per workspace, "
    "chat.postMessage 1/s per channel; fake Discord: edits 5/5 s and posts 5/5 s per "
    "channel, 50 requests/s per bot in all; the adapters' budgets set to the same, but "
    "Discord's bot-wide one, 40/s (discord.global_rate, its default); 'budget allows one "
    "edit per interval' uses the bridge's budgets (with their 0.05 s margin), the ideal "
    "the platforms' edit windows and the bridge's bot-wide Discord budget (with it)",
    "cpu": "bridge process user+system CPU (all threads) from the first question to the "
    "last reply finishing, divided by tokens streamed; includes inbound events, store "
    "writes, the chat API's HTTP and SSE parsing, rendering, and the platforms' HTTP",
    "platform_requests": "every request the fake platforms received, by Slack method or "
    "Discord route, start-up included",
    "memory": "bridge process VmRSS sampled every 0.1 s until the last reply finishes "
    "(the fakes' records reach the bridge process only after that); per stream = (peak - "
    "baseline after connecting) / peak live streams; MB = 1024 KiB; the bridge process "
    "imports what the daemon does, not the fakes (test_modules_in_bridge_process)",
}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def token_latencies(sent: Sequence[float], reveals: Sequence[Sequence[float]]) -> list[float]:
    """Seconds from each token's sending to the first version showing it."""
    out: list[float] = []
    j = 0
    for i, at in enumerate(sent):
        while j < len(reveals) and reveals[j][1] < i:
            j += 1
        if j == len(reveals):
            break
        out.append(reveals[j][0] - at)
    return out


def _slot(stamps: deque[float], count: int, per: float, at: float) -> float:
    """The earliest time from `at` when a window of `count` per `per` has room."""
    if len(stamps) >= count and stamps[-count] > at - per:
        return stamps[-count] + per
    return at


def ideal_edits(
    replies: Sequence[tuple[Sequence[float], float, str]],
    interval: float,
    rule: tuple[int, float],
    first_is_post: bool,
    global_rule: tuple[int, float] | None = None,
) -> int:
    """Updates showing new text that an ideal scheduler could make.

    `replies` are (token send times, done time, budget bucket). Each bucket
    allows `rule` = (count, per) edits; `global_rule`, if any, limits every
    request of all `replies` together. Greedy and instantaneous: the reply that
    can go soonest goes, and each update shows every token sent by then.
    """
    n = len(replies)
    shown = [-1] * n
    last = [-math.inf] * n
    count, per = rule
    buckets: dict[str, deque[float]] = {key: deque() for _, _, key in replies}
    everyone: deque[float] = deque()
    updates = 0
    while True:
        best, best_at = -1, math.inf
        for r, (sent, done, key) in enumerate(replies):
            nxt = shown[r] + 1
            if nxt >= len(sent):
                continue
            ready = last[r] + interval
            if done and done < ready:
                ready = done  # the final edit does not wait for the interval
            at = max(sent[nxt], ready)
            if not (first_is_post and shown[r] < 0):
                at = _slot(buckets[key], count, per, at)
            if global_rule is not None:
                at = _slot(everyone, global_rule[0], global_rule[1], at)
            if at < best_at:
                best, best_at = r, at
        if best < 0:
            return updates
        at = best_at
        if not (first_is_post and shown[best] < 0):
            buckets[replies[best][2]].append(at)
            updates += 1
        if global_rule is not None:
            everyone.append(at)
            while everyone and everyone[0] <= at - global_rule[1]:
                everyone.popleft()
        shown[best] = bisect_right(replies[best][0], at) - 1
        last[best] = at


def analyse(p: Params, run: dict[str, Any]) -> dict[str, Any]:
    """Every figure of a run, overall and per platform, with the target checks."""
    world, bridge = run["world"], run["bridge"]
    convs: list[dict[str, Any]] = world["conversations"]
    limits = world["limits"]
    per_bucket = Counter((c["platform"], c["bucket"]) for c in convs)
    per_platform = Counter(c["platform"] for c in convs)

    def allows_one_per_interval(c: dict[str, Any]) -> bool:
        count, per = limits[c["platform"]]["edit"]
        rate = count / (per + BUDGET_MARGIN)
        if rate * p.edit_interval < per_bucket[(c["platform"], c["bucket"])]:
            return False
        overall = limits[c["platform"]]["global"]
        return overall is None or overall[0] / overall[1] * p.edit_interval >= (
            per_platform[c["platform"]])

    groups: dict[str, list[dict[str, Any]]] = {"all": convs}
    for name in ("slack", "discord"):
        mine = [c for c in convs if c["platform"] == name]
        if mine:
            groups[name] = mine
    figures: dict[str, Any] = {}
    for name, members in groups.items():
        figures[name] = _group(p, members, limits, allows_one_per_interval)

    total = figures["all"]
    tokens = total["tokens"]
    cpu = bridge["cpu_seconds"]
    slack_429 = sum(world["platform_429"]["slack"].values())
    discord_429 = world["platform_429"]["discord"] + world["platform_429"]["discord_global"]
    live = bridge["peak_live_streams"]
    peak_kb, base_kb = bridge["peak_rss_kb"], bridge["baseline_rss_kb"]
    total.update(
        platform_429=slack_429 + discord_429,
        platform_429_by_method={
            **{f"slack {k}": v for k, v in world["platform_429"]["slack"].items()},
            "discord per channel": world["platform_429"]["discord"],
            "discord global": world["platform_429"]["discord_global"],
        },
        platform_429_in_metrics=sum(bridge["platform_429_seen"].values()),
        platform_refusals=world["rejected"],
        platform_requests=world["platform_requests"],
        cpu_seconds=round(cpu, 3),
        cpu_us_per_token=round(cpu / tokens * 1e6, 2) if tokens else None,
        cpu_seconds_per_1000_tokens=round(cpu / tokens * 1000, 4) if tokens else None,
        cpu_by_thread=bridge["cpu_by_thread"],
        wall_seconds=round(bridge["wall_seconds"], 2),
        world_cpu_seconds=round(world["world_cpu_seconds"], 2),
        peak_rss_mb=round(peak_kb / 1024, 1),
        baseline_rss_mb=round(base_kb / 1024, 1),
        test_modules_in_bridge_process=bridge["test_modules_loaded"],
        peak_live_streams=live,
        rss_per_stream_kb=round((peak_kb - base_kb) / live, 1) if live else None,
        loop_lag_ms={
            "bridge_p50": _ms(percentile(bridge["lag"], 50)),
            "bridge_p99": _ms(percentile(bridge["lag"], 99)),
            "world_p99": _ms(percentile(world["world_lag"], 99)),
        },
        outcomes=bridge["outcomes"],
        unfinished_at_end=bridge["unfinished_at_end"],
        finished=world["finished"],
    )
    return {"figures": figures, "targets": targets(p, total), "method": METHOD}


def _group(
    p: Params, convs: list[dict[str, Any]], limits: dict[str, Any], allows: Any
) -> dict[str, Any]:
    overhead, first_raw, api_ttft, lat_all, lat_ok = [], [], [], [], []
    made = ideal = 0
    tokens = complete = unshown = unshown_ok = 0
    for c in convs:
        tokens += len(c["sent"])
        reveals = c["reveals"]
        if reveals and reveals[-1][1] == p.tokens - 1:
            complete += 1
        if reveals and c["sent"]:
            ttft = c["sent"][0] - c["requested"]
            api_ttft.append(ttft)
            first_raw.append(reveals[0][0] - c["asked"])
            overhead.append(reveals[0][0] - c["asked"] - ttft)
        lat = token_latencies(c["sent"], reveals)
        lat_all.extend(lat)
        # Tokens no version ever showed have no latency: counted apart, not left out.
        unshown += len(c["sent"]) - len(lat)
        if allows(c):
            lat_ok.extend(lat)
            unshown_ok += len(c["sent"]) - len(lat)
        # Operations that showed new text; Discord's first is a new message (post budget).
        made += max(0, len(reveals) - (1 if limits[c["platform"]]["first_reveal_is_post"] else 0))
    for platform in {c["platform"] for c in convs}:
        lim = limits[platform]
        mine = [(m["sent"], m["done"], m["bucket"]) for m in convs if m["platform"] == platform]
        if lim["global"] is not None:
            ideal += ideal_edits(mine, p.edit_interval, lim["edit"], lim["first_reveal_is_post"],
                                 lim["global"])
            continue
        for key in {b for _, _, b in mine}:
            ideal += ideal_edits([m for m in mine if m[2] == key], p.edit_interval,
                                 lim["edit"], lim["first_reveal_is_post"])
    edits = sum(len(c["edits"]) for c in convs)
    return {
        "conversations": len(convs),
        "completed": complete,
        "tokens": tokens,
        "first_visible_ms": {"p50": _ms(percentile(overhead, 50)),
                             "p99": _ms(percentile(overhead, 99))},
        "first_visible_raw_ms": {"p50": _ms(percentile(first_raw, 50)),
                                 "p99": _ms(percentile(first_raw, 99))},
        "api_ttft_ms": {"p50": _ms(percentile(api_ttft, 50))},
        "token_to_visible_ms": {"p50": _ms(percentile(lat_all, 50)),
                                "p99": _ms(percentile(lat_all, 99)),
                                "max": _ms(max(lat_all) if lat_all else None)},
        "token_to_visible_budget_allows_ms": {"p99": _ms(percentile(lat_ok, 99)),
                                              "tokens": len(lat_ok),
                                              "never_shown": unshown_ok},
        "tokens_never_shown": unshown,
        "edits": edits,
        "posts": sum(len(c["posts"]) for c in convs),
        "updates_showing_new_text": made,
        "edits_allowed": ideal,
        "utilisation": round(made / ideal, 4) if ideal else None,
    }


def targets(p: Params, f: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets as PASS/FAIL (None: does not apply to this run)."""
    budget_p99 = f["token_to_visible_budget_allows_ms"]["p99"]
    never = f["token_to_visible_budget_allows_ms"]["never_shown"]
    interval_ms = p.edit_interval * 1000
    rss_limit = 60 * 1024 + 30 * f["peak_live_streams"]
    rows = [
        ("every answer completed", f"{f['conversations']}",
         f"{f['completed']}", f["completed"] == f["conversations"]),
        ("platform 429s", "0", f"{f['platform_429']}", f["platform_429"] == 0),
        ("utilisation while text pending", ">= 90%", _pct(f["utilisation"]),
         None if f["utilisation"] is None else f["utilisation"] >= 0.9),
        ("token-to-visible p99 (budget allows 1 edit/interval)",
         f"<= {interval_ms + 100:.0f} ms, every token shown",
         "n/a" if budget_p99 is None else f"{budget_p99:.0f} ms"
         + (f", {never:,} never shown" if never else ""),
         None if budget_p99 is None else budget_p99 <= interval_ms + 100 and not never),
        ("first visible p50 beyond API TTFT", "<= 50 ms",
         _fmt_ms(f["first_visible_ms"]["p50"]),
         None if f["first_visible_ms"]["p50"] is None else f["first_visible_ms"]["p50"] <= 50),
        ("CPU per streamed token", "<= 20 us",
         "n/a" if f["cpu_us_per_token"] is None else f"{f['cpu_us_per_token']:.1f} us",
         None if f["cpu_us_per_token"] is None else f["cpu_us_per_token"] <= 20),
        ("peak RSS", f"<= {rss_limit / 1024:.1f} MB (60 MB + 30 KB x {f['peak_live_streams']})",
         f"{f['peak_rss_mb']:.1f} MB", f["peak_rss_mb"] * 1024 <= rss_limit),
    ]
    return [{"target": name, "wanted": want, "got": got, "pass": ok}
            for name, want, got, ok in rows]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def table(p: Params, result: dict[str, Any]) -> str:
    """The figures and checks as text."""
    figs = result["figures"]
    cols = [name for name in ("all", "slack", "discord") if name in figs]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn: Any) -> None:
        rows.append((label, [fn(figs[c]) for c in cols]))

    row("conversations (completed)", lambda g: f"{g['conversations']} ({g['completed']})")
    row("tokens streamed", lambda g: f"{g['tokens']:,}")
    row("API time to first token p50", lambda g: _fmt_ms(g["api_ttft_ms"]["p50"]))
    row("first visible - API TTFT p50", lambda g: _fmt_ms(g["first_visible_ms"]["p50"]))
    row("first visible - API TTFT p99", lambda g: _fmt_ms(g["first_visible_ms"]["p99"]))
    row("token-to-visible p50", lambda g: _fmt_ms(g["token_to_visible_ms"]["p50"]))
    row("token-to-visible p99", lambda g: _fmt_ms(g["token_to_visible_ms"]["p99"]))
    row("token-to-visible max", lambda g: _fmt_ms(g["token_to_visible_ms"]["max"]))
    row("tokens never shown", lambda g: f"{g['tokens_never_shown']:,}")
    row("edits / posts", lambda g: f"{g['edits']:,} / {g['posts']:,}")
    row("updates with new text / allowed", lambda g: f"{g['updates_showing_new_text']:,} / "
        f"{g['edits_allowed']:,}")
    row("utilisation", lambda g: _pct(g["utilisation"]))
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{'':<{width}}" + "".join(f"{c:>16}" for c in cols)]
    lines += [f"{label:<{width}}" + "".join(f"{v:>16}" for v in vals) for label, vals in rows]
    a = figs["all"]
    lines += [
        "",
        f"platform 429s: {a['platform_429']}  refusals: {sum(a['platform_refusals'].values())}"
        f"  outcomes: {_outcomes(a['outcomes'])}",
        f"bridge CPU: {a['cpu_seconds']:.2f} s over {a['wall_seconds']:.1f} s = "
        f"{a['cpu_us_per_token']} us per token, {a['cpu_seconds_per_1000_tokens']} s per 1,000 "
        f"(world process: {a['world_cpu_seconds']:.1f} s)",
        f"memory: baseline {a['baseline_rss_mb']} MB, peak {a['peak_rss_mb']} MB, "
        f"{a['peak_live_streams']} live streams at most, {a['rss_per_stream_kb']} KB per stream",
        f"event-loop lag: bridge p50 {a['loop_lag_ms']['bridge_p50']} ms, p99 "
        f"{a['loop_lag_ms']['bridge_p99']} ms; world p99 {a['loop_lag_ms']['world_p99']} ms",
        "",
    ]
    if p.quick:
        lines.append("(quick run: the targets are stated for 1,000 concurrent conversations)")
    for t in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        lines.append(f"{verdict}  {t['target']}: {t['got']} (wanted {t['wanted']})")
    return "\n".join(lines)


def profile_by_package(path: str, top: int = 20) -> list[tuple[str, float]]:
    """Self time of a cProfile dump summed by package (site-packages name, project module,
    stdlib module), largest first; the event loop's idle wait is its own row."""
    import pstats
    import re

    package = re.compile(r"site-packages/([A-Za-z0-9_]+)")
    project = re.compile(r"/((?:bridge|adapters|bench)/[A-Za-z0-9_]+)")
    stdlib = re.compile(r"python3\.\d+/([A-Za-z0-9_]+)")
    totals: Counter[str] = Counter()
    for (filename, _, name), row in pstats.Stats(path).stats.items():  # type: ignore[attr-defined]
        if "select.epoll" in name:
            key = "(idle: waiting in epoll)"
        elif found := package.search(filename):
            key = found[1]
        elif found := project.search(filename):
            key = found[1]
        elif found := stdlib.search(filename):
            key = f"stdlib {found[1]}"
        else:
            key = "(C functions)"
        totals[key] += row[2]
    return [(k, round(v, 3)) for k, v in totals.most_common(top)]


def _outcomes(outcomes: dict[str, float]) -> str:
    return ", ".join(f"{k} {int(v)}" for k, v in sorted(outcomes.items())) or "none"
