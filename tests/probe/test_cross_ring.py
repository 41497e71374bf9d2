"""Stages whose stamps sit in different rings are exact: one TSC domain per host.

Known-delay subjects stamp explicit TSC ticks in two rings (two threads of one C program, two
threads of one Rust program, a Rust and a Python process); a stage that crosses rings must be its
tick span times the host's one rate, rounded once, exactly as a stage within one ring: with
heartbeats, without, and with either ring opened late. The old per-ring maps drifted apart by
microseconds within a second and set traces aside as "clock skew" while the run said drop-free.
"""

import json

import numpy as np
import pytest

from conftest import needs_tool
from support import QUIET
from support.cli import run_cli
from support.clocks import KEYS, host_rate_ns_per_tick
from support.native import rust_example
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, summarize

# probe/examples/c_two_rings.c
FEED, STRATEGY, SPIKE, SPIKE_EVERY, SEND_BASE, SEND_SPREAD = 15000, 60000, 600000, 50, 2600, 1000


def c_two_rings_ticks(traces: int) -> dict[str, np.ndarray]:
    i = np.arange(1, traces + 1)
    strategy = np.where(i % SPIKE_EVERY == 0, SPIKE, STRATEGY)
    send = SEND_BASE + (i * 7919) % SEND_SPREAD
    return {"feed": np.full(traces, FEED), "strategy": strategy, "send": send,
            "tick_to_trade": FEED + strategy + send}  # fmt: skip


def profile(tmp_path, *cmd, duration="120s"):
    out = tmp_path / "session"
    r = run_cli("profile", *QUIET, "--duration", duration, "--out", str(out),
                "--fail-on-drops", "--", *map(str, cmd), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    load = lambda name: json.loads((out / name).read_text())  # noqa: E731
    return r, load("meta.json"), load("summary.json"), load("slowest.json")


def assert_exact(summary: dict, ticks: dict[str, np.ndarray], ns_per_tick: float) -> None:
    """Each tag: the count exact, min/percentiles/max what HDR makes of the exact spans."""
    for tag, t in ticks.items():
        truth = new_histogram()
        BulkRecorder(new_histogram()).record(truth, np.rint(t * ns_per_tick).astype(np.int64))
        exact = summarize(truth)
        assert {k: summary[tag][k] for k in KEYS} == {k: exact[k] for k in KEYS}, tag


def assert_nothing_set_aside(meta, traces: int) -> None:
    c = meta["counters"]
    assert c["traces_complete"] == traces
    assert c["traces_incomplete"] == c["traces_clock_skew"] == c["duplicate_stamps"] == 0
    assert meta["drop_free"] is True


def assert_slowest_spans_exact(slowest, ticks_of_trace, ns_per_tick: float) -> None:
    """slowest.json's stage_ns: each stamp's exact span from the previous point."""
    assert slowest
    for trace in slowest:
        want = ticks_of_trace(trace["trace_id"])
        got = {s["point"]: s["stage_ns"] for s in trace["stamps"] if "stage_ns" in s}
        assert got == {p: round(t * ns_per_tick) for p, t in want.items()}, trace["trace_id"]
        assert trace["tick_to_trade_ns"] == round(sum(want.values()) * ns_per_tick)


@pytest.mark.parametrize(
    "heartbeat_every,late",
    [(0, "none"), (1000, "none"), (0, "feed")],
    ids=["no-heartbeats", "heartbeats", "feed-ring-opens-late"],
)
def test_c_two_threads_a_stage_across_rings_is_exact(c_build, tmp_path, heartbeat_every, late):
    exe = c_build("c_two_rings.c")
    traces = 20000
    r, meta, summary, slowest = profile(tmp_path, exe, traces, heartbeat_every, late)
    ns = host_rate_ns_per_tick(meta)
    assert meta["points"] == ["md.rx", "md.decoded", "signal", "order.tx"]
    ticks = c_two_rings_ticks(traces)
    assert_exact(summary, ticks, ns)
    assert_nothing_set_aside(meta, traces)
    points = {"feed": "md.decoded", "strategy": "signal", "send": "order.tx"}  # the point each stage ends at
    row = lambda i: {points[s]: int(ticks[s][i - 1]) for s in points}  # noqa: E731
    assert_slowest_spans_exact(slowest, row, ns)
    assert "drop-free" in r.stdout + r.stderr


def rust_ticks(traces: int) -> dict[str, np.ndarray]:
    """Stage k of trace index i spans ``span(i, k)`` ticks (probe/rust/examples/rust_writer.rs)."""
    i = np.arange(traces)
    spans = {
        stage: 1000 * k + (i * 7919 % 1000) * 23 * k
        for k, stage in ((1, "feed"), (2, "strategy"), (3, "send"))
    }
    return {**spans, "tick_to_trade": sum(spans.values())}


@pytest.mark.slow  # a cargo build
@needs_tool("cargo", install="apt-get install cargo")
@pytest.mark.parametrize(
    "shape,heartbeat_every",
    [("threads", 0), ("threads", 500), ("processes", 0)],
    ids=["two-threads", "two-threads-heartbeats", "two-processes"],
)
def test_rust_a_stage_across_rings_is_exact(tmp_path, shape, heartbeat_every):
    """A TickWriter feed thread hands each trace to a PointWriter order thread (or process, through
    a pipe): ``send`` spans the two rings."""
    exe, traces = rust_example("rust_writer"), 20000
    if shape == "threads":
        cmd = [exe, "threads", traces, heartbeat_every]
    else:
        cmd = ["sh", "-c", f"'{exe}' feed {traces} {heartbeat_every} | '{exe}' orders {heartbeat_every}"]
    r, meta, summary, slowest = profile(tmp_path, *cmd)
    ns = host_rate_ns_per_tick(meta)
    assert meta["points"] == ["md.rx", "md.decoded", "signal", "order.tx"]
    ticks = rust_ticks(traces)
    assert_exact(summary, ticks, ns)
    assert_nothing_set_aside(meta, traces)
    points = {"feed": "md.decoded", "strategy": "signal", "send": "order.tx"}
    row = lambda trace: {points[s]: int(ticks[s][trace - 1]) for s in points}  # noqa: E731
    assert_slowest_spans_exact(slowest, row, ns)
