"""Legs, branching paths and dimensions from the C and Rust writers: known TSC spans, exact counts.

probe/examples/c_legs.c and the Rust ``rust_writer legs`` mode write the same subject: an even
trace is a quote on two legs (XNAS buy and sell), an odd one a trade message on one leg (a hedge
on BATS), the paths branching after md.decoded across two rings of one thread. Dimensions are
attached at known points: venue and side on each leg's order.tx, symbol (S<i % 3>) on md.decoded,
which the legs share: every per-value output is exact, per leg (the stages after the fan-out)
or per tick (the stages before it, under the tick's symbol only).
"""

import os
import subprocess

import numpy as np
import pytest

from support.clocks import KEYS, host_rate_ns_per_tick
from support.native import needs_cargo
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.run.bench import build_rust
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, summarize

FEED, QUOTE, TRADE, ACK = 15000, 40000, 90000, 100000
TRACES = 4000


def send_ticks(i, k):
    return 2000 + 500 * k + (i * 7919) % 1000


def expected_ticks(traces: int) -> dict:
    """Per tag, the exact span of every sample in ticks; per leg, (trace, leg, venue, side, t2t)."""
    legs = [(i, k) for i in range(1, traces + 1) for k in range(2 if i % 2 == 0 else 1)]
    handled = {i: QUOTE if i % 2 == 0 else TRADE for i in range(1, traces + 1)}
    ticks = {
        "feed": [FEED] * traces,
        "quote": [QUOTE] * (traces // 2),
        "trade_msg": [TRADE] * (traces - traces // 2),
        "send": [send_ticks(i, k) for i, k in legs],
        "order_rtt": [ACK + k for _, k in legs],
        "tick_to_trade": [FEED + handled[i] + send_ticks(i, k) for i, k in legs],
    }
    per_leg = [(i, k, "BATS" if i % 2 else "XNAS", "sell" if k else "buy", f"S{i % 3}",
                FEED + handled[i] + send_ticks(i, k)) for i, k in legs]  # fmt: skip
    return {t: np.array(v) for t, v in ticks.items()}, per_leg


@pytest.fixture(scope="module")
def rust_writer():
    return build_rust("rust_writer")


def collect(ring_dir) -> Collector:
    col = Collector(ring_dir)
    col.rows = []
    col.poll()
    col.finish()
    return col


def exact_ns(ticks, ns_per_tick: float) -> dict:
    truth = new_histogram()
    BulkRecorder(new_histogram()).record(truth, np.rint(np.asarray(ticks) * ns_per_tick).astype(np.int64))
    return summarize(truth)


def assert_legs_exact(col: Collector, traces: int) -> None:
    ticks, per_leg = expected_ticks(traces)
    meta = col.meta_update()
    counters = meta["counters"]
    assert counters["duplicate_stamps"] == 0 and counters["traces_duplicate"] == 0
    assert counters["traces_incomplete"] == 0 and counters["dimension_values_unknown"] == 0
    assert counters["traces_complete"] == counters["legs_recorded"] == len(per_leg)
    assert meta["dimensions"] == {
        "venue": ["XNAS", "BATS"],
        "side": ["buy", "sell"],
        "symbol": ["S0", "S1", "S2"],
    }
    assert counters["dimension_conflicts"] == 0
    ns = host_rate_ns_per_tick(meta)
    summary = col.summary()
    for tag, t in ticks.items():
        truth = new_histogram()
        BulkRecorder(new_histogram()).record(truth, np.rint(t * ns).astype(np.int64))
        exact = summarize(truth)
        assert {k: summary[tag][k] for k in KEYS} == {k: exact[k] for k in KEYS}, tag
    rows = {k: np.concatenate([r[k] for r in col.rows]) for k in col.rows[0]}
    names = [["", *meta["dimensions"][d]] for d in ("venue", "side", "symbol")]
    got = sorted((int(i), int(k), *(n[v] for n, v in zip(names, d, strict=False)), int(t))
                 for i, k, d, t in zip(rows["trace"], rows["leg"], rows["dims"], rows["tick_to_trade"], strict=True))  # fmt: skip
    want = sorted((i, k, v, s, y, int(np.rint(t * ns))) for i, k, v, s, y, t in per_leg)
    assert got == want
    by_venue = {v: sum(1 for g in got if g[2] == v) for v in ("XNAS", "BATS")}
    assert by_venue == {"XNAS": traces // 2 * 2, "BATS": traces - traces // 2}
    # every per-value output: each value's legs, their tick-to-trade and send exactly, per leg
    sliced = col.dimension_summary()
    for d, at in (("venue", 2), ("side", 3), ("symbol", 4)):
        for value in meta["dimensions"][d]:
            mine = [w for w in want if w[at] == value]
            assert sliced[d]["values"][value]["rows"] == len(mine), (d, value)
            tags = sliced[d]["values"][value]["tags"]
            t2t = exact_ns([w[5] for w in mine], 1.0)
            assert {k: tags["tick_to_trade"][k] for k in KEYS} == {k: t2t[k] for k in KEYS}, (d, value)
            sends = exact_ns([send_ticks(w[0], w[1]) for w in mine], ns)
            assert {k: tags["send"][k] for k in KEYS} == {k: sends[k] for k in KEYS}, (d, value)
    # the stages before the fan-out (feed, then quote or trade_msg on the path the tick took): once
    # per tick under the tick's own symbol, exactly; never under a leg's venue or side
    shared = {"feed": (FEED, lambda i: True), "quote": (QUOTE, lambda i: i % 2 == 0),
              "trade_msg": (TRADE, lambda i: i % 2 == 1)}  # fmt: skip
    for value in meta["dimensions"]["symbol"]:
        mine = [i for i in range(1, traces + 1) if f"S{i % 3}" == value]
        assert sliced["symbol"]["values"][value]["ticks"] == len(mine)
        tags = sliced["symbol"]["values"][value]["tags"]
        for tag, (span, taken) in shared.items():
            exact = exact_ns([span] * sum(map(taken, mine)), ns)
            assert {k: tags[tag][k] for k in KEYS} == {k: exact[k] for k in KEYS}, (tag, value)
    for d in ("venue", "side"):
        for value in meta["dimensions"][d]:
            assert not set(shared) & set(sliced[d]["values"][value]["tags"]), (d, value)
            assert "ticks" not in sliced[d]["values"][value]


def test_c_subject_fans_out_and_branches_with_exact_counts_per_leg_and_dimension(c_build, ring_dir):
    exe = c_build("c_legs.c")
    subprocess.run([str(exe), str(TRACES)], check=True, capture_output=True, timeout=120,
                   env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
    assert_legs_exact(collect(ring_dir), TRACES)


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_rust_subject_fans_out_and_branches_with_exact_counts_per_leg_and_dimension(rust_writer, ring_dir):
    subprocess.run([str(rust_writer), "legs", str(TRACES)], check=True, capture_output=True, timeout=120,
                   env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
    assert_legs_exact(collect(ring_dir), TRACES)
