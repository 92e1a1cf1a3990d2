"""Streams benchmark: many concurrent answers through the real bridge, seen where people see them.

    python3 -m bench.streams            # 1,000 conversations, half Slack, half Discord
    python3 -m bench.streams --quick    # 50 conversations, well under 30 s
    python3 -m bench.streams --help     # every parameter

The bridge (`bridge.app.Bridge` with its relay, renderer, budgets, the Slack
and Discord adapters, the chatmount dialect and a SQLite store) runs in this
process; the fake chat API, Slack and Discord (tests/fakes, enforcing their
real limits) and the askers run in a second process (`world`). It prints a
table and PASS/FAIL lines for the targets, and writes bench/results/streams.json
(`analyse` defines every figure). Figures, never test assertions.
"""
