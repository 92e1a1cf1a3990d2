"""From the two processes' records to the figures, the target checks and the table.

Definitions (also written into the JSON as `method`):

- first visible text: from the question being sent to the first platform
  version showing answer text, minus the API's own time to first token (from
  its receiving the request to its sending the first token). What is left is
  the bridge's share: inbound event, routing, store, request, render, edit.
- token-to-visible: for every token, from the API sending it to the first
  accepted platform version (post or edit) showing it.
- utilisation: edits that showed new text, divided by the edits the budgets
  allowed while the bridge's text was pending (a token sent to the bridge and
  not yet visible): for each reply one edit per `edit_interval` from its last
  update, and the final one; for each budget bucket the platform's edit limit;
  on Discord the bridge's bot-wide budget less the posts it made (a reply's
  first text and a long answer's continuations are new messages, not edits).
  Each is an upper bound, so without 429s the figure is at most 100 %; a
  bridge that shows text later has it pending longer, and more edits allowed.
- CPU per token: the bridge process's user+system CPU (all threads) from the
  first question to the last reply finishing, divided by the tokens streamed.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import Counter
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
    "first token; a conversation the API answered that showed no text is counted in "
    "conversations_never_shown (and fails the first-visible target)",
    "token_to_visible": "API sent the token -> first platform version showing it; a token "
    "no version showed is counted in tokens_never_shown (and fails the p99 target)",
    "utilisation": "edits that showed new text / edits the budgets allowed while the "
    "bridge's text was pending (from a token's sending to the first version showing it), "
    "the least of: per reply, one per edit_interval from its last update (edit or post) "
    "plus the final one, or the edits it made if more landed; per bucket, the platform's "
    "edit limit as the fakes count it; on Discord, the bridge's bot-wide budget of 40 "
    "requests/s less the posts it made; posts (Discord's first text and continuations) are "
    "not edits and are reported apart",
    "limits": "fake Slack: chat.update and reactions.add 50/60 s, reactions.remove 20/60 s "
    "per workspace, "
    "chat.postMessage 1/s per channel; fake Discord: edits 5/5 s and posts 5/5 s per "
    "channel, 50 requests/s per bot in all; the adapters' budgets set to the same, but "
    "Discord's bot-wide one, 40/s (discord.global_rate, its default); 'budget allows one "
    "edit per interval' uses the bridge's budgets (with their 0.05 s margin), utilisation "
    "the platforms' edit limits and the bridge's bot-wide Discord budget (with it)",
    "cpu": "bridge process user+system CPU (all threads) from the first question to the "
    "last reply finishing, divided by tokens streamed; includes inbound events, store "
    "writes, the chat API's HTTP and SSE parsing, rendering, and the platforms' HTTP",
    "platform_requests": "every request the fake platforms received, by Slack method or "
    "Discord route, start-up included",
    "memory": "peak: the bridge process's RSS high-water mark (VmHWM, reset to the "
    "baseline after connecting) at the last reply's end (the fakes' records reach the "
    "bridge process only after that), or VmRSS sampled every 0.1 s where that saw more "
    "(peak_rss_source says which); per stream = (peak - baseline) / peak live streams; "
    "MB = 1024 KiB; the bridge process imports what the daemon does, not the fakes "
    "(test_modules_in_bridge_process)",
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


def pending_windows(
    sent: Sequence[float], reveals: Sequence[Sequence[float]], end: float
) -> list[tuple[float, float]]:
    """When some token sent to the bridge was not yet visible, as closed intervals in order.

    Token i is pending from its sending to the first version showing it (to
    `end` if none did); overlapping tokens' intervals are merged.
    """
    out: list[tuple[float, float]] = []
    j = 0
    for i, at in enumerate(sent):
        while j < len(reveals) and reveals[j][1] < i:
            j += 1
        until = max(at, reveals[j][0] if j < len(reveals) else end)
        if out and at <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], until))
        else:
            out.append((at, until))
    return out


def merge(windows: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The union of several lists of intervals, as one list in order."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(w for ws in windows for w in ws):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _from(windows: Sequence[tuple[float, float]], start: float) -> list[tuple[float, float]]:
    return [(max(a, start), b) for a, b in windows if b >= start]


def spaced_slots(
    windows: Sequence[tuple[float, float]],
    gap: float,
    done: float,
    posts: Sequence[float] = (),
) -> int:
    """Most times within `windows` at least `gap` apart and `gap` after any of `posts`.

    One reply's edits: one per edit interval, counted from its last update
    (an edit or a new message); and one more, which does not wait for the
    interval, if text was still pending when the answer ended (`done`) and no
    edit was due by then. Earliest first is the most there can be.
    """
    count, t, last = 0, -math.inf, -math.inf
    after = sorted(posts)
    for a, b in windows:
        t = max(t, a)
        while True:
            for post in after:  # an edit waits the interval after a post
                if post <= t < post + gap:
                    t = post + gap
            if t > b:
                break
            count, last = count + 1, t
            t += gap
    if windows and last < done <= windows[-1][1]:
        count += 1  # the final edit
    return count


def window_slots(
    windows: Sequence[tuple[float, float]], rule: tuple[int, float], taken: Sequence[float] = ()
) -> int:
    """Most requests within `windows` that a limit of `rule` = (count, per) allows.

    Counted as the fakes count: a request is refused while `count` others are
    less than `per` seconds before it. The requests at `taken` (made anyway, at
    those times) count against the limit. Earliest first is the most there can be.
    """
    count, per = rule
    points = sorted(taken)
    placed = 0
    for a, b in windows:
        t = a
        while t <= b:
            later = _refused_until(points, t, count, per)
            if later is None:
                insort(points, t)
                placed += 1
            else:
                t = later
    return placed


def _refused_until(points: list[float], t: float, count: int, per: float) -> float | None:
    """None if one more request at `t` keeps every window within the limit; else the
    earliest time that could."""
    i = bisect_right(points, t)
    near = [*points[max(0, i - count) : i], t, *points[i : i + count]]
    k = min(i, count)  # where `t` is in `near`
    for s in range(max(0, k - count), k + 1):
        e = s + count
        # Compared as the sum (not the difference): the time returned is past `t`.
        if e < len(near) and near[s] + per > near[e]:
            # `count` + 1 requests within `per`, `t` among them: `t` must move past
            # the first of the others by `per`.
            return (near[s] if s != k else near[s + 1]) + per
    return None


def _last_record(convs: Sequence[dict[str, Any]]) -> float:
    """When the last thing of `convs` was recorded (the end of the run, for them)."""
    times = [c["done"] for c in convs]
    for c in convs:
        for series in (c["reveals"], c["edits"]):
            times.extend(row[0] for row in series[-1:])
        times.extend(c["posts"][-1:])
    return max(times, default=0.0)


def edits_allowed(
    convs: Sequence[dict[str, Any]], limits: dict[str, Any], interval: float, end: float
) -> int:
    """The edits the budgets allowed while the bridge's text was pending.

    Text is pending from a token's sending to the first version showing it
    (`end` for tokens none showed); an edit can only show it meanwhile. The
    least of three upper bounds, each counted within those windows:

    - each reply: one edit per `interval`, once its message exists (on
      Discord, from its first post), plus its last, which does not wait for
      the interval; or the edits it made, if more landed (the bridge spaces
      them from when it sends them, and they reach the platform unevenly);
    - each budget bucket (a Slack workspace, a Discord channel): the
      platform's edit limit, as the fakes count it;
    - on Discord, the bridge's bot-wide budget, less the posts it made (a
      reply's first text and a long answer's continuations are new messages).
    """
    total = 0
    for platform in sorted({c["platform"] for c in convs}):
        lim = limits[platform]
        # Per bucket: each reply's pending windows and the edits it made that showed text.
        buckets: dict[str, list[tuple[list[tuple[float, float]], int]]] = {}
        posts: list[float] = []
        for c in convs:
            if c["platform"] != platform:
                continue
            windows = pending_windows(c["sent"], c["reveals"], end)
            if lim["first_reveal_is_post"]:
                windows = _from(windows, c["posts"][0] if c["posts"] else math.inf)
            made = sum(1 for _, revealed in c["edits"] if revealed)
            slots = max(spaced_slots(windows, interval, c["done"], c["posts"]), made)
            buckets.setdefault(c["bucket"], []).append((windows, slots))
            posts.extend(c["posts"])
        allowed = 0
        for replies in buckets.values():
            each = sum(slots for _, slots in replies)
            pending = merge([w for w, _ in replies])
            allowed += min(each, window_slots(pending, tuple(lim["edit"])))
        if lim["global"] is not None:
            everyone = merge([w for replies in buckets.values() for w, _ in replies])
            allowed = min(allowed, window_slots(everyone, tuple(lim["global"]), posts))
        total += allowed
    return total


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
        return (
            overall is None
            or overall[0] / overall[1] * p.edit_interval >= (per_platform[c["platform"]])
        )

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
        # Runs recorded before the high-water mark was read had only the samples.
        peak_rss_source=bridge.get("peak_rss_source", "samples"),
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
    tokens = complete = unshown = unshown_ok = silent = 0
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
        elif c["sent"]:
            silent += 1  # answered, and nothing shown: no first words to time
        lat = token_latencies(c["sent"], reveals)
        lat_all.extend(lat)
        # Tokens no version ever showed have no latency: counted apart, not left out.
        unshown += len(c["sent"]) - len(lat)
        if allows(c):
            lat_ok.extend(lat)
            unshown_ok += len(c["sent"]) - len(lat)
    edits = sum(len(c["edits"]) for c in convs)
    # Only edits: Discord's posts (its first text, a long answer's continuation) draw
    # on the post budget, and are taken off the bot-wide one in `edits_allowed`.
    made = sum(1 for c in convs for _, revealed in c["edits"] if revealed)
    allowed = edits_allowed(convs, limits, p.edit_interval, _last_record(convs))
    return {
        "conversations": len(convs),
        "completed": complete,
        "tokens": tokens,
        "first_visible_ms": {
            "p50": _ms(percentile(overhead, 50)),
            "p99": _ms(percentile(overhead, 99)),
        },
        "conversations_never_shown": silent,
        "first_visible_raw_ms": {
            "p50": _ms(percentile(first_raw, 50)),
            "p99": _ms(percentile(first_raw, 99)),
        },
        "api_ttft_ms": {"p50": _ms(percentile(api_ttft, 50))},
        "token_to_visible_ms": {
            "p50": _ms(percentile(lat_all, 50)),
            "p99": _ms(percentile(lat_all, 99)),
            "max": _ms(max(lat_all) if lat_all else None),
        },
        "token_to_visible_budget_allows_ms": {
            "p99": _ms(percentile(lat_ok, 99)),
            "tokens": len(lat_ok),
            "never_shown": unshown_ok,
        },
        "tokens_never_shown": unshown,
        "edits": edits,
        "posts": sum(len(c["posts"]) for c in convs),
        "edits_showing_new_text": made,
        "edits_allowed": allowed,
        "utilisation": round(made / allowed, 4) if allowed else None,
    }


def targets(p: Params, f: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets as PASS/FAIL (None: does not apply to this run)."""
    budget_p99 = f["token_to_visible_budget_allows_ms"]["p99"]
    never = f["token_to_visible_budget_allows_ms"]["never_shown"]
    first_p50, silent = f["first_visible_ms"]["p50"], f["conversations_never_shown"]
    interval_ms = p.edit_interval * 1000
    rss_limit = 60 * 1024 + 30 * f["peak_live_streams"]
    rows = [
        (
            "every answer completed",
            f"{f['conversations']}",
            f"{f['completed']}",
            f["completed"] == f["conversations"],
        ),
        ("platform 429s", "0", f"{f['platform_429']}", f["platform_429"] == 0),
        (
            "utilisation while text pending",
            ">= 90%",
            _pct(f["utilisation"]),
            None if f["utilisation"] is None else f["utilisation"] >= 0.9,
        ),
        (
            "token-to-visible p99 (budget allows 1 edit/interval)",
            f"<= {interval_ms + 100:.0f} ms, every token shown",
            "n/a"
            if budget_p99 is None
            else f"{budget_p99:.0f} ms" + (f", {never:,} never shown" if never else ""),
            None if budget_p99 is None else budget_p99 <= interval_ms + 100 and not never,
        ),
        (
            "first visible p50 beyond API TTFT",
            "<= 50 ms, every answer shown",
            _fmt_ms(first_p50) + (f", {silent:,} never shown" if silent else ""),
            False if silent else None if first_p50 is None else first_p50 <= 50,
        ),
        (
            "CPU per streamed token",
            "<= 20 us",
            "n/a" if f["cpu_us_per_token"] is None else f"{f['cpu_us_per_token']:.1f} us",
            None if f["cpu_us_per_token"] is None else f["cpu_us_per_token"] <= 20,
        ),
        (
            "peak RSS",
            f"<= {rss_limit / 1024:.1f} MB (60 MB + 30 KB x {f['peak_live_streams']})",
            f"{f['peak_rss_mb']:.1f} MB",
            f["peak_rss_mb"] * 1024 <= rss_limit,
        ),
    ]
    return [
        {"target": name, "wanted": want, "got": got, "pass": ok} for name, want, got, ok in rows
    ]


_SOURCES = {"VmHWM": "high-water mark", "samples": "0.1 s samples"}


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
    row("answers that showed nothing", lambda g: f"{g['conversations_never_shown']:,}")
    row("tokens never shown", lambda g: f"{g['tokens_never_shown']:,}")
    row("edits / posts", lambda g: f"{g['edits']:,} / {g['posts']:,}")
    row(
        "edits with new text / allowed",
        lambda g: f"{g['edits_showing_new_text']:,} / {g['edits_allowed']:,}",
    )
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
        f"memory: baseline {a['baseline_rss_mb']} MB, peak {a['peak_rss_mb']} MB "
        f"({_SOURCES.get(a['peak_rss_source'], a['peak_rss_source'])}), "
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
