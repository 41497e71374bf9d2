"""TSC stamps are converted exactly: known tick spans from a gcc-built subject, profiled for real.

``probe/examples/c_known_spans.c`` writes every stamp explicitly (ts0, ts0 + FEED, ...), splits
a trace around each of its heartbeats (the collector drains the first half, refits on the new
pair, then converts the rest) and writes one perturbed calibration pair. Whatever the fits say,
a stage between two stamps of the ring must be its tick span times the ring's rate: the
session's histograms must hold exactly those values, to HDR precision, with exact counts.
"""

import json
import math
import os
import struct
import subprocess
import time
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from support.cli import run_cli
from tickscope.collectors.rings.clocks import TscCalibration, fit_tsc
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.rings.correlate import TICK_TO_DECISION, TICK_TO_TRADE, Correlator, TraceSchema
from tickscope.collectors.rings.tsc_timeline import MAX_SLEW, PiecewiseLinear, TscTimeline
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, summarize

FEED, STRATEGY, SPIKE, SEND, SPIKE_EVERY = 15000, 60000, 600000, 6000, 50
HDR = new_histogram()
KEYS = ("count", "min", "p50", "p90", "p99", "p99_9", "max")


def profile(exe, tmp_path, *args):
    out = tmp_path / "session"
    r = run_cli("profile", "--no-live", "--no-perf", "--duration", "120s", "--out", str(out), "--", str(exe),
                *map(str, args), timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r, json.loads((out / "meta.json").read_text()), json.loads((out / "summary.json").read_text())


def expected_ticks(traces: int) -> dict[str, np.ndarray]:
    i = np.arange(1, traces + 1)
    strategy = np.where(i % SPIKE_EVERY == 0, SPIKE, STRATEGY)
    return {
        "md.decoded": np.full(traces, FEED),
        "signal": strategy,
        "order.tx": np.full(traces, SEND),
        "tick_to_trade": FEED + strategy + SEND,
    }


def assert_exact(summary: dict, ticks: np.ndarray, hz_choices: list[float]) -> None:
    """Count exact, and min, percentiles and max what HDR makes of the exact spans (ticks times
    the ring's rate, rounded once). Should a bad opening pair have changed the ring's rate mid-run
    (a line in the output), a value may come from either rate."""
    assert summary["count"] == ticks.size
    if len(hz_choices) == 1:
        truth = new_histogram()
        BulkRecorder(new_histogram()).record(truth, np.rint(ticks * (1e9 / hz_choices[0])).astype(np.int64))
        exact = summarize(truth)
        assert {k: summary[k] for k in KEYS} == {k: exact[k] for k in KEYS}
        return
    for key, pct in (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        rank = max(1, math.ceil(pct / 100 * ticks.size))
        span = np.sort(ticks)[rank - 1]
        exact = [span * 1e9 / hz for hz in hz_choices]
        lo = HDR.get_lowest_equivalent_value(math.floor(min(exact)))
        hi = HDR.get_highest_equivalent_value(math.ceil(max(exact)))
        assert lo <= summary[key] <= hi, (key, summary[key], exact)


def tsc_domain(meta, ring) -> dict:
    """The TSC domain a ring's stamps went through (meta.json clocks.tsc_domains)."""
    (domain,) = [d for d in meta["clocks"]["tsc_domains"] if d["domain"] == ring["tsc"]["domain"]]
    return domain


def check_session(meta, summary, traces):
    (ring,) = meta["rings"]
    domain = tsc_domain(meta, ring)
    hz = domain["local_hz"]  # the rate spans use (one, unless an early pair was bad)
    assert ring["tsc"]["local_hz"] == hz
    assert domain["local_rate_changes"] == len(hz) - 1
    for tag, ticks in expected_ticks(traces).items():
        assert_exact(summary[tag], ticks, hz)
    counters = meta["counters"]
    assert counters["traces_complete"] == traces
    assert counters["traces_incomplete"] == counters["traces_clock_skew"] == 0
    return ring


def test_known_tsc_spans_are_exact_across_refits_mid_trace(c_build, tmp_path):
    exe = c_build("c_known_spans.c")
    r, meta, summary = profile(exe, tmp_path, 2000, 40)
    ring = check_session(meta, summary, 2000)
    tsc, domain = ring["tsc"], tsc_domain(meta, ring)
    # 2 pairs at open + 40 heartbeats + 1 perturbed + 1 at close: past the 16 slots, all read.
    assert tsc["pairs_written"] == 44 and tsc["pairs_missed"] == 0
    assert tsc["calibration"] == "heartbeats"
    assert domain["domain"] == "host" and domain["pairs_received"]["rings"] == 44
    refits_mid_run = [f for f in domain["fits"] if f["from_tick"] is not None]
    assert len(refits_mid_run) >= 40, "every heartbeat came between the two halves of a trace"
    assert max(f["rejected"] for f in domain["fits"]) >= 1, "the perturbed pair is left out of the fit"
    assert abs(domain["fits"][-1]["hz"] / domain["local_hz"][0] - 1) < 1e-4
    assert "tsp_heartbeat" not in r.stderr and meta["clocks"]["notes"] == []


def test_a_writer_that_never_heartbeats_is_exact_on_the_host_clock(c_build, tmp_path):
    """On a host TSC domain the collector takes calibration pairs itself: a writer that never
    heartbeats gets the same long-baseline fit, and nothing to warn about."""
    exe = c_build("c_known_spans.c")
    r, meta, summary = profile(exe, tmp_path, 1000, 0)
    ring = check_session(meta, summary, 1000)
    assert ring["tsc"]["calibration"] == "open-close only" and ring["tsc"]["pairs_written"] == 3
    domain = tsc_domain(meta, ring)
    assert meta["clocks"]["collector_reads_tsc"] and domain["pairs_received"]["collector"] >= 2
    assert "tsp_heartbeat" not in r.stderr and meta["clocks"]["notes"] == []


def test_a_writer_that_never_heartbeats_on_an_untrusted_tsc_says_so(c_build, ring_dir):
    """Per-ring maps (a TSC the host does not keep one clock) rest on the writer's pairs alone."""
    exe = c_build("c_known_spans.c")
    subprocess.run([str(exe), "300", "0"], check=True, capture_output=True,
                   env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
    host = {"tsc": True, "constant_tsc": True, "nonstop_tsc": True, "invariant": True,
            "available_clocksources": ["hpet", "acpi_pm"]}  # fmt: skip
    c = Collector(ring_dir, host_tsc=host)
    c.poll()
    c.finish()
    clocks = c.meta_update()["clocks"]
    assert (
        clocks["tsc_domain"] == "per-ring"
        and "does not list tsc among its clocksources" in clocks["tsc_domain_why"]
    )
    assert not clocks["collector_reads_tsc"]
    assert any(
        "pairs at open-close only" in n and "cross-clock stages moved by up to" in n for n in c.clock_notes
    )
    assert any("not one clock for all rings" in n for n in c.clock_notes)
    assert c.counters.traces_complete == 300
    c.remove_finished_rings()


def test_a_writer_released_before_the_end_keeps_its_line(c_build, ring_dir):
    """A writer that exits well before the run ends is released, then folded into the aggregate
    (a loaded host, a long run): what must be said about its numbers is still said at the end."""
    exe = c_build("c_known_spans.c")
    subprocess.run([str(exe), "1000", "0", "bad-point"], check=True, capture_output=True,
                   env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
    c = Collector(ring_dir)
    deadline = time.monotonic() + 60  # a hang guard: the fold comes within a second of grid time
    while not c.released.writers:
        assert time.monotonic() < deadline
        c.poll()
        time.sleep(0.05)
    c.finish()
    assert c.released.sums["point_out_of_range"] == 100
    assert any("100 records name a point id beyond the 4 points of its table" in n for n in c.clock_notes)


def test_records_naming_points_the_table_lacks_are_a_line_not_a_silent_loss(c_build, tmp_path):
    exe = c_build("c_known_spans.c")
    r, meta, summary = profile(exe, tmp_path, 1000, 0, "bad-point")
    ring = check_session(meta, summary, 1000)  # the good records still measure exactly
    assert ring["point_out_of_range"] == 100 and ring["malformed"] == 100
    assert "100 records name a point id beyond the 4 points of its table" in r.stderr
    assert any("point id beyond" in n for n in meta["clocks"]["notes"])


def test_a_ring_of_an_unknown_layout_version_is_a_line(c_build, tmp_path):
    exe = c_build("c_known_spans.c")
    r, meta, _ = profile(exe, tmp_path, 100, 0, "bad-version")
    assert "layout version 99, this tickscope reads 2 (upgrade tickscope)" in r.stderr
    assert any("layout version 99" in e for e in meta["ring_errors"])
    assert meta["counters"]["traces_complete"] == 0


def test_tsc_on_a_host_without_invariant_tsc_is_flagged(c_build, ring_dir):
    exe = c_build("c_known_spans.c")
    subprocess.run([str(exe), "200", "0"], check=True, capture_output=True,
                   env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
    host = {"tsc": True, "constant_tsc": True, "nonstop_tsc": False, "invariant": False}
    c = Collector(ring_dir, host_tsc=host)
    c.poll()
    c.finish()
    assert c.meta_update()["clocks"]["tsc_trusted"] is False
    assert any("not invariant (nonstop_tsc missing" in n for n in c.clock_notes)
    c.remove_finished_rings()
    trusted = Collector(ring_dir, host_tsc={**host, "nonstop_tsc": True, "invariant": True})
    assert trusted.tsc_trusted() is None, "no TSC ring: nothing to trust or flag"


# -- the maps, as properties ---------------------------------------------------------------------

HZ = 3e9


def fit(hz, tsc0, mono0):
    return TscCalibration(hz=hz, tsc0=tsc0, mono0=mono0, residual_ns=0, pairs=2)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(-80e-6, 80e-6),  # rate error of the new fit (ppm-scale, under RATE_TOLERANCE)
            st.integers(-200_000, 200_000),  # its disagreement with the map, ns
            st.integers(1, 3 * 10**9),  # ticks converted since the previous fit
        ),
        min_size=1,
        max_size=12,
    ),
    older=st.integers(0, 3 * 10**8),  # ticks before the first fit's anchor (a ring seen after its heartbeats)
)
def test_slewed_map_is_continuous_monotonic_and_never_rewrites_the_past(steps, older):
    tl = TscTimeline()
    tick = 10**12
    tl.update(fit(HZ, tick + older, 5 * 10**12), 0)
    converted = []  # (ticks, local, common) as converted at the time
    for k, (rate_err, offset, advance) in enumerate(steps, 1):
        ticks = np.sort(np.random.default_rng(k).integers(tick, tick + advance, 64))
        local = tl.to_local(ticks)
        converted.append((ticks, local, tl.to_common(ticks)))
        tick += advance
        target = tl.common.at(tl.local.at(tl.max_tick)) + offset
        tl.update(fit(HZ * (1 + rate_err), tl.max_tick, target), k)
    for ticks, local, common in converted:  # the past stays as it was converted
        assert np.array_equal(tl.to_local(ticks), local)
        assert np.array_equal(tl.to_common(ticks), common)
    assert tl.rate_changes == 0
    lo, hi = int(tl.common.xs[0]) - 10**6, int(tl.common.xs[-1]) + 10**9
    xs = np.unique(np.concatenate([np.linspace(lo, hi, 20000).astype(np.int64),
                                   np.array(tl.common.xs, np.int64) - 1, np.array(tl.common.xs, np.int64)]))  # fmt: skip
    ys = tl.common(xs)
    assert np.all(np.diff(ys) >= 0), "monotonic"
    for x in tl.common.xs[1:]:  # continuous: one ns of input moves the output by about one ns
        assert abs(tl.common.at(x) - tl.common.at(x - 1) - 1) <= 1
    slopes = np.array(tl.common.slopes)
    assert np.all(np.abs(slopes - 1) <= 81e-6 + MAX_SLEW), "slews at most MAX_SLEW on top of the rate"


@given(st.integers(0, 10**13), st.integers(1, 10**10), st.integers(0, 10**10))
def test_in_ring_spans_are_ticks_times_the_rate_whatever_the_anchor(t0, span, later):
    tl = TscTimeline()
    tl.update(fit(2.5e9, 7 * 10**11, 3 * 10**12), 0)
    ticks = np.array([t0, t0 + span], np.int64)
    tl.observe(ticks)
    before = tl.span(ticks[:1], ticks[1:])
    tl.update(fit(2.5e9 * (1 + 5e-5), t0 + span, 3 * 10**12 + 10**7), 1)  # re-anchored 10 ms away
    assert before[0] == round(span / 2.5) and tl.span(ticks[:1], ticks[1:])[0] == before[0]
    more = np.array([t0 + span + later, t0 + span + later + span], np.int64)  # after the refit: same rate
    assert tl.span(more[:1], more[1:])[0] == before[0]


def test_piecewise_linear_rejects_a_backwards_slope():
    m = PiecewiseLinear(0, 0, 1.0)
    try:
        m.append(10, -1.0)
    except ValueError as e:
        assert "slope must be positive" in str(e)
    else:
        raise AssertionError("a negative slope was accepted")


def test_a_preempted_calibration_pair_is_left_out_of_the_fit():
    pairs = [(int(1e9 + i * 3e8), 10**9 + i * 10**8, 2 * 10**9 + i * 10**8, 0) for i in range(8)]
    bad = list(pairs)
    bad[-1] = (bad[-1][0], bad[-1][1] + 400_000, bad[-1][2] + 400_000, 0)  # the newest: most leverage
    good, robust = fit_tsc(pairs), fit_tsc(bad)
    assert robust.rejected == 1 and robust.pairs == 7
    assert abs(robust.hz / good.hz - 1) < 1e-9 and abs(good.hz - 3e9) < 1


def test_a_pair_preempted_before_its_monotonic_read_does_not_move_the_map():
    """Writers read MONOTONIC after the pair's RAW bracket: a preemption there leaves the bracket
    tight and the pair's MONOTONIC late. The newest pair 32 us late must not move mono0, and an
    offset NTP is slewing (here 500 ppm) is still followed to the newest pair."""
    for slew in (0.0, 500e-6):
        pairs = [(int(1e9 + i * 3e8), 10**9 + i * 10**8, 2 * 10**9 + i * 10**8 + round(i * 10**8 * slew), 0)
                 for i in range(8)]  # fmt: skip
        late = list(pairs)
        late[-1] = (*late[-1][:2], late[-1][2] + 32_000, 0)
        good, robust = fit_tsc(pairs), fit_tsc(late)
        assert good.mono0 == pairs[-1][2], slew
        assert robust.mono0 == good.mono0 and robust.tsc0 == good.tsc0, (slew, robust.mono0 - good.mono0)


# -- the correlator: in-ring spans from ticks, cross-clock spans through the slewed map ----------


@dataclass
class Pt:
    name: str
    stage: str = ""
    flags: int = 0


def test_spans_within_a_tsc_ring_use_ticks_and_spans_across_clocks_use_the_common_map():
    schema = TraceSchema()
    tsc_cols = schema.merge([Pt("md.rx"), Pt("md.decoded")])  # a C ring (TSC)
    mono_cols = schema.merge([Pt("md.decoded"), Pt("order.tx")])[1:]  # a Python ring (MONOTONIC), linked
    tl = TscTimeline()
    tl.update(fit(2.5e9, 10**12, 5 * 10**12), 0)
    c = Correlator(schema)
    c.declare_ring(0, tsc_cols, tick=False, tsc=np.array([True, True]), timeline=tl)
    c.declare_ring(1, mono_cols, tick=False)
    t0 = 10**12 + 2_500_000  # 1 ms after the fit's anchor
    ticks = np.array([[t0, t0 + 12_501]] * 3 + [[t0, t0 + 3]], np.int64)
    tl.observe(ticks.ravel())
    # Re-anchor 40 us away mid-run: in-ring spans must not notice, cross-clock ones slew.
    tl.update(fit(2.5e9, t0 + 12_501, tl.common.at(tl.local.at(t0 + 12_501)) + 40_000), 1)
    ids = np.arange(1, 5, dtype=np.uint64)
    c.add_points(np.repeat(ids, 2), np.tile(tsc_cols, 4), ticks.ravel(), 0, 0)
    tx = tl.to_common(ticks[:, 1]) + np.array([7_000, 8_000, 9_000, 0])
    c.add_points(ids[:3], np.array(mono_cols * 3), tx[:3], 1, 0)  # trace 4 never reached order.tx
    out = c.flush(10**15, force=True)
    assert list(out.values["md.decoded"]) == [5000, 5000, 5000, 1], "12,501 ticks at 2.5 GHz, rounded once"
    assert sorted(out.values["order.tx"]) == [7000, 8000, 9000]
    assert sorted(out.values[TICK_TO_TRADE]) == [12_000, 13_000, 14_000]
    assert list(out.values[TICK_TO_DECISION]) == [1]
    slow = out.slow_rows[np.argsort(out.slow_key)]
    assert np.array_equal(slow[:, 2], tx[:3]) and np.all(slow[:, 0] > 4 * 10**12), "slowest on one timeline"


def test_a_ring_whose_rate_changed_measures_each_span_piece_by_piece():
    schema = TraceSchema()
    cols = schema.merge([Pt("a"), Pt("b")])
    tl = TscTimeline()
    tl.update(TscCalibration(hz=2.5e9, tsc0=0, mono0=10**12, residual_ns=0, pairs=2, span_ns=20_000_000), 0)
    tl.observe(np.array([10**9]))
    # A screened fit over a long baseline disagrees by 1000 ppm: the local rate changes at tick 1e9.
    tl.update(TscCalibration(hz=2.5e9 * 1.001, tsc0=10**9, mono0=10**12 + 4 * 10**8, residual_ns=0, pairs=6,
                             span_ns=10**9), 1)  # fmt: skip
    assert tl.rate_changes == 1
    c = Correlator(schema)
    c.declare_ring(0, cols, tick=False, tsc=np.array([True, True]), timeline=tl)
    ticks = np.array([5 * 10**8, 5 * 10**8 + 2500, 10**9 - 1250, 10**9 + 1250, 2 * 10**9, 2 * 10**9 + 2500])
    tl.observe(ticks)
    c.add_points(np.repeat(np.arange(1, 4, dtype=np.uint64), 2), np.tile(cols, 3), ticks, 0, 0)
    out = c.flush(10**15, force=True)
    after = 2500 / 2.5 / 1.001
    assert list(out.values["b"]) == [1000, round(500 + after / 2), round(after)]


def test_calibration_pairs_are_read_by_sequence_number_past_the_sixteen_slots():
    from tickscope.collectors.rings.clocks import read_calibration
    from tickscope.probe import layout as L

    buf = bytearray(L.DATA_OFFSET)
    for seq in range(20):  # the writer's protocol: slot seq % 16 first, then the counter
        L.CALIB_ENTRY.pack_into(buf, L.OFF_CALIB_ENTRIES + (seq % L.CALIB_SLOTS) * L.CALIB_ENTRY.size,
                                1000 + seq, 2000 + seq, 3000 + seq, 4000 + seq)  # fmt: skip
        struct.pack_into("<I", buf, L.OFF_CALIB_COUNT, seq + 1)
    count, pairs = read_calibration(buf)
    # Slot 20 % 16 is the next one the writer rewrites: pair 4 there may be torn, so it is left out.
    assert count == 20 and [s for s, _ in pairs] == list(range(5, 20))
    assert all(p == (1000 + s, 2000 + s, 3000 + s, 4000 + s) for s, p in pairs)
    # a caller that has every pair reads none; one pair short, it reads them as before
    assert read_calibration(buf, seen=20) == (20, []) and read_calibration(buf, seen=19) == (count, pairs)
