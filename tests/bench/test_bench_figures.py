"""The streams benchmark's figures, computed from small made-up runs.

Utilisation is the edits that showed new text against the edits the budgets
allowed while the bridge's text was pending; the peak RSS is the kernel's
high-water mark where the samples missed it.
"""

from __future__ import annotations

import random
from typing import Any

from bench.streams.analyse import _group
from bench.streams.params import Params

SLACK = {"edit": (50, 60.0), "post": (1, 1.0), "global": None, "first_reveal_is_post": False}
DISCORD = {"edit": (5, 5.0), "post": (5, 5.0), "global": (40, 1.05), "first_reveal_is_post": True}


def conv(
    platform: str,
    sent: list[float],
    reveals: list[tuple[float, int]],
    posts: int = 0,
    bucket: str = "B1",
) -> dict[str, Any]:
    """A conversation whose first `posts` reveals were new messages, the rest edits."""
    return {
        "platform": platform,
        "bucket": bucket,
        "asked": sent[0] - 0.5,
        "requested": sent[0] - 0.4,
        "sent": sent,
        "done": sent[-1] + 0.001,
        "reveals": reveals,
        "edits": [(t, True) for t, _ in reveals[posts:]],
        "posts": [t for t, _ in reveals[:posts]],
    }


def utilisation(p: Params, convs: list[dict[str, Any]], **limits: Any) -> float:
    figures = _group(p, convs, limits or {"slack": SLACK, "discord": DISCORD}, lambda c: True)
    return figures["utilisation"]


def test_a_bridge_that_shows_text_later_does_not_score_higher() -> None:
    # Same tokens, same limits: A shows the first at once and the rest as the answer
    # ends; B shows it all later, in dribs, one edit per interval. B scored 200 %.
    p = Params(conversations=1, platform="slack", tokens=20, edit_interval=1.25)
    sent = [i / 20 for i in range(20)]
    prompt = conv("slack", sent, [(0.01, 0), (0.96, 19)])
    late = conv("slack", sent, [(0.50, 9), (1.75, 12), (3.00, 15), (4.25, 19)])

    assert utilisation(p, [prompt]) == 1.0
    assert utilisation(p, [late]) <= utilisation(p, [prompt])


def test_discord_posts_are_not_edits() -> None:
    # A long answer: its first text and its continuation are new messages (the post
    # budget), the rest edits, one per interval. The posts once counted as edits: 133 %.
    p = Params(conversations=1, platform="discord", tokens=60, edit_interval=1.25)
    sent = [i / 20 for i in range(60)]
    long = conv("discord", sent, [(0.01, 0), (1.30, 25), (1.31, 26), (2.56, 51), (2.96, 59)])
    long["posts"] = [0.01, 1.31]  # the first text; the continuation, right after its edit
    long["edits"] = [(1.30, True), (2.56, True), (2.96, True)]

    figures = _group(p, [long], {"discord": DISCORD}, lambda c: True)
    assert (figures["edits"], figures["posts"]) == (3, 2)
    assert figures["utilisation"] == 1.0


def test_utilisation_is_at_most_everything_when_the_limits_hold() -> None:
    # A bridge that keeps every limit, editing at random moments: never over 100 %.
    p = Params(conversations=6, tokens=40, edit_interval=0.5)
    limits = {
        "slack": {**SLACK, "edit": (3, 2.0)},
        "discord": {**DISCORD, "edit": (2, 2.0), "global": (4, 1.0)},
    }
    for seed in range(20):
        convs = _keeping_the_limits(random.Random(seed), p, limits)
        for platform in ("slack", "discord"):
            mine = [c for c in convs if c["platform"] == platform]
            got = utilisation(p, mine, **limits)
            assert 0 < got <= 1.0, (seed, platform, got)


def _keeping_the_limits(
    rng: random.Random, p: Params, limits: dict[str, Any]
) -> list[dict[str, Any]]:
    """Six answers over two buckets a platform, shown by updates that break no limit."""
    convs = []
    for i in range(12):
        start, rate = rng.uniform(0, 2), rng.uniform(5, 30)
        n = rng.randint(5, p.tokens)
        sent = [start + k / rate for k in range(n)]
        platform = "slack" if i < 6 else "discord"
        convs.append(
            {
                "platform": platform,
                "bucket": f"{platform}{i % 2}",
                "asked": start - 1,
                "requested": start - 0.5,
                "sent": sent,
                "done": sent[-1] + 0.001,
                "reveals": [],
                "edits": [],
                "posts": [],
            }
        )
    stamps: dict[str, list[float]] = {}

    def room(key: str, rule: tuple[int, float], now: float) -> bool:
        count, per = rule
        return sum(1 for t in stamps.get(key, []) if t > now - per) < count

    last: dict[int, float] = {}
    for step in range(3000):
        now = step / 100
        for i in rng.sample(range(len(convs)), len(convs)):
            c = convs[i]
            lim = limits[c["platform"]]
            shown = c["reveals"][-1][1] if c["reveals"] else -1
            newest = sum(1 for t in c["sent"] if t <= now) - 1
            final = now >= c["done"]
            if newest <= shown or rng.random() > 0.3:
                continue
            if now < last.get(i, -1e9) + p.edit_interval and not final:
                continue
            post = lim["first_reveal_is_post"] and (not c["posts"] or rng.random() < 0.05)
            if not post and not room(c["bucket"], lim["edit"], now):
                continue
            if lim["global"] is not None and not room(c["platform"], lim["global"], now):
                continue
            if not post:
                stamps.setdefault(c["bucket"], []).append(now)
            stamps.setdefault(c["platform"], []).append(now)
            c["reveals"].append((now, newest))
            (c["posts"].append(now) if post else c["edits"].append((now, True)))
            last[i] = now
    return convs


def test_the_peak_is_the_high_water_mark_the_samples_missed() -> None:
    from bench.streams.bridge_side import peak_rss, reset_peak, rss_kb

    assert reset_peak()
    before = rss_kb()
    burst = b"x" * (64 << 20)  # written, so resident: 64 MiB between two samples
    del burst
    after = rss_kb()
    peak, source = peak_rss(max(before, after), rss_kb("VmHWM"))
    assert source == "VmHWM"
    assert peak >= max(before, after) + 60 * 1024
    # Where the samples saw more than the mark (or there is none), they count.
    assert peak_rss(peak + 1, peak) == (peak + 1, "samples")
    assert peak_rss(1234, None) == (1234, "samples")
