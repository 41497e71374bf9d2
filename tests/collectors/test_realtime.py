"""REALTIME set mid-run (collectors/rings/realtime.py): kernel stamps (CLOCK_REALTIME) placed on
the MONOTONIC timeline with the offset of their time, not the run's first.

The host's clock cannot be set by a test, so the samples the collector takes of REALTIME -
MONOTONIC are the test's (``sample_realtime_offset`` replaced), and the writers stamp REALTIME
as that clock would read. Stage lengths are known: every span is exact.
"""

import numpy as np
import pytest

from tickscope.collectors.rings import intake_kernels as K
from tickscope.collectors.rings import realtime as R
from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.collectors.rings.correlate import TICK_TO_TRADE
from tickscope.collectors.rings.realtime import CHANGE_FLOOR_NS, RealtimeOffset
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, summarize
from tickscope.probe import Point, PointWriter, TickWriter


def reference_offset(stamp, knots):
    """The rule, by scanning: the newest knot whose REALTIME is at or before the stamp, then the
    point of its segment whose REALTIME is the stamp (same float steps as the kernel)."""
    at = [k for k, (m, o) in enumerate(knots) if m + o <= stamp]
    if not at:
        return knots[0][1]
    k = at[-1]
    if k == len(knots) - 1:
        return knots[-1][1]
    (m0, o0), (m1, o1) = knots[k], knots[k + 1]
    if m1 - m0 == 1:  # a set the kernel signalled: a value it skipped carries the new offset
        return o1
    return stamp - (m0 + int((stamp - m0 - o0) * ((m1 - m0) / (m1 - m0 + o1 - o0))))


def hdr_summary(values):
    h = new_histogram()
    BulkRecorder(new_histogram()).record(h, np.asarray(values, np.int64))
    return summarize(h)


@pytest.mark.parametrize("seed", range(20))
def test_a_stamps_offset_is_read_off_the_knots_as_the_rule_says(seed):
    rng = np.random.default_rng(seed)
    knots, m, o = [], int(rng.integers(10**9, 10**12)), int(rng.integers(-(10**15), 10**15))
    for _ in range(int(rng.integers(1, 7))):
        knots.append((m, o))
        m += 1 if rng.random() < 0.3 else int(rng.integers(2, 10**8))  # 1: a set the kernel signalled
        o += int(rng.choice([0, 1, -1])) * int(
            rng.integers(0, 3 * 10**8)
        )  # set forward, back (beyond a window)
    clock = RealtimeOffset(knots[0][1], 0, knots[0][0])
    clock._mono, clock._off = [k[0] for k in knots], [k[1] for k in knots]
    clock._arrays = clock._build()
    lo, hi = knots[0][0] + min(k[1] for k in knots) - 10**8, knots[-1][0] + max(k[1] for k in knots) + 10**8
    stamps = np.concatenate([rng.integers(lo, hi, 500), [m + o for m, o in knots]]).astype(np.int64)
    got = [s - K.realtime_offset_at(s, *clock.knots) for s in stamps.tolist()]
    assert got == [s - reference_offset(int(s), knots) for s in stamps.tolist()]
    none = np.array([R.placed_after(-(2**61))[0]])
    assert K.realtime_to_monotonic(np.zeros(3, np.int64), *clock.knots, none).tolist() == [0, 0, 0]


def test_the_history_follows_moves_beyond_the_floor_and_keeps_a_steady_drift_in_two_knots():
    r = RealtimeOffset(1_000_000, 100, 0)
    assert not r.observe(1_000_000 + CHANGE_FLOOR_NS - 1, 100, 10**6), "within the floor: a sample's noise"
    assert r.current == 1_000_000 and r.knots[0].tolist() == [0]
    assert r.observe(
        1_000_000 + 5_000, 100, 2 * 10**6
    )  # set: a knot where it was last seen unchanged, one now
    assert r.knots[0].tolist() == [0, 10**6, 2 * 10**6] and r.knots[1].tolist() == [
        1_000_000,
        1_000_000,
        1_005_000,
    ]
    # a stamp between the two polls: on the line between them; after: the new offset
    assert K.realtime_offset_at(1_500_000 + 1_002_500, *r.knots) == 1_002_500
    assert K.realtime_offset_at(3 * 10**6 + 1_005_000, *r.knots) == 1_005_000
    for k in range(3, 1000):  # then a drift of 5 µs a ms (ci28's host): two knots for all of it
        r.observe(1_000_000 + 5_000 * (k - 1), 100, k * 10**6)
    assert r.knots[0].tolist() == [0, 10**6, 999 * 10**6] and r.changes == 998
    assert K.realtime_offset_at(500 * 10**6 + 1_000_000 + 5_000 * 499, *r.knots) == 1_000_000 + 5_000 * 499
    assert r.moved_ns == 5_000 * 998 and r.largest_ns == 5_000
    assert "REALTIME was set during the run: it moved +4.990 ms" in r.note()


def test_a_noisy_sample_moves_nothing_until_a_tight_one_confirms():
    r = RealtimeOffset(0, 100, 0)
    assert not r.observe(40_000, 30_000, 10**6), "a preempted bracket: its own error covers the move"
    assert r.observe(40_000, 100, 2 * 10**6) and r.current == 40_000


def test_knots_beyond_the_cap_drop_the_oldest_and_count_them(monkeypatch):
    monkeypatch.setattr(R, "MAX_KNOTS", 8)
    r = RealtimeOffset(0, 0, 0)
    for k in range(1, 40):
        r.observe(k % 2 * 1_000_000, 0, k * 10**6)  # set back and forth at every poll
    assert r.knots[0].size == 8 and r.dropped > 0 and r.to_meta()["knots_dropped"] == r.dropped


def test_stamps_of_a_clock_set_mid_run_are_placed_exactly_both_ways(ring_dir, monkeypatch):
    """A tick ring stamping md.rx in REALTIME and a point ring stamping order.tx in REALTIME (as a
    socket's kernel stamps do), REALTIME set +437 ms and then -1.2 s mid-run: every wire_to_read
    and send exact, none set aside. With one offset for the run, the second phase's wire_to_read
    would be 5,000 - 437,000,000 ns."""
    ticks = TickWriter([Point("md.rx", clock="realtime"), Point("md.read", stage="wire_to_read"),
                        Point("signal", stage="strategy")], name="feed")  # fmt: skip
    orders = PointWriter([Point("signal"), Point("order.start", stage="leg_wait", leg=True),
                          Point("order.tx", clock="realtime", stage="send", trade=True)], name="orders")  # fmt: skip
    col = Collector(ring_dir)
    col.rows = []  # every closed row kept, to compare with the exact values
    start = col.realtime.start
    offset = [start]
    monkeypatch.setattr(R, "sample_realtime_offset", lambda samples: (offset[0], 50))
    seq, expected = 0, []

    def write(n):
        nonlocal seq
        t = ticks.stamps
        for _ in range(n):
            seq += 1
            a = monotonic_ns()
            t[0], t[1], t[2] = a + offset[0], a + 5_000, a + 5_700
            t = ticks.commit(seq)
            for leg in range(2):
                orders.record(1, seq, ts=a + 6_000 + 100 * leg, leg=leg)
                orders.record(2, seq, ts=a + 9_000 + 100 * leg + offset[0], leg=leg)
                expected.append(9_000 + 100 * leg)
        col.poll()

    write(100)
    for moved in (437_000_000, 437_000_000 - 1_200_000_000):
        offset[0] = start + moved
        col.poll()  # the poll that sees the clock set (no stamp between it and the last: none on the ramp)
        write(100)
    col.finish()
    counters = col.counter_dict()
    assert counters["traces_clock_skew"] == 0 and counters["traces_incomplete"] == 0
    assert counters["traces_complete"] == len(expected) == 600
    assert sorted(np.concatenate([r["tick_to_trade"] for r in col.rows]).tolist()) == sorted(expected)
    summary = col.summary()
    for stage, exact in (("wire_to_read", [5_000] * 300), ("send", [3_000] * 600), (TICK_TO_TRADE, expected)):
        want = hdr_summary(exact)
        assert {k: summary[stage][k] for k in ("count", "min", "max")} == {
            k: want[k] for k in ("count", "min", "max")
        }
    clocks = col.meta_update()["clocks"]
    assert clocks["realtime_minus_monotonic_ns"] == start
    assert clocks["realtime"]["moved_ns"] == -763_000_000 and clocks["realtime"]["changes"] == 2
    assert clocks["realtime"]["largest_change_ns"] == -1_200_000_000
    assert any("moved -763.000 ms against MONOTONIC in 2 change(s)" in n for n in col.notes())


def test_a_set_the_kernel_signals_is_a_step_at_that_instant_not_a_line(monkeypatch):
    """SetWatch's report (the kernel failed the timerfd's read: REALTIME was set): the offset held
    until just before it and the new one holds from it, so stamps either side are exact however
    long the polls are apart."""
    monkeypatch.setattr(R, "sample_realtime_offset", lambda samples: (2_437_000, 50))
    r = RealtimeOffset(2_000_000, 50, 0)
    assert r.set_at(10**8)
    assert r.knots[0].tolist() == [0, 10**8 - 1, 10**8] and r.knots[1].tolist() == [
        2_000_000,
        2_000_000,
        2_437_000,
    ]
    before, after = 10**8 - 1_000, 10**8 + 1_000
    stamps = np.array([before + 2_000_000, after + 2_437_000], np.int64)
    assert K.realtime_to_monotonic(stamps, *r.knots, R.placed_after(0)).tolist() == [before, after]
    assert r.ramps == 0 and r.signalled == 1 and "each at the instant the kernel said it was set" in r.note()
    assert not r.set_at(2 * 10**8), "a set that moved nothing (set to the time it was) adds no knot"
    assert r.knots[0].size == 3 and r.to_meta()["sets_signalled"] == 2


def test_the_kernel_is_asked_to_say_when_realtime_is_set():
    """One thread per process asleep on a CLOCK_REALTIME timerfd armed years ahead with
    TFD_TIMER_CANCEL_ON_SET (a set fails its read); every collector's offset is told."""
    import threading

    watch = R.set_watch()
    assert watch is not None and R.set_watch() is watch
    assert watch.armed_s() > 10**7
    assert [t for t in threading.enumerate() if t.name == "tickscope-realtime-set" and t.daemon]
    r = RealtimeOffset(0, 0, 0, watch=True)
    assert r in watch.offsets and r.to_meta()["kernel_signals_sets"] is True


@pytest.mark.parametrize("moved", [-1_200_000_000, -30_000_000, 437_000_000])
def test_stamps_either_side_of_a_set_drained_together_are_each_placed_exactly(ring_dir, monkeypatch, moved):
    """The kernel reports a set (SetWatch: ``set_at``) between two groups of ticks, and one poll
    drains both after it. Set back, the first group's REALTIME values come again in the second's:
    each stamp goes to the first place not before its ring's newest stamp (less the slack), so
    the first group keeps the old offset and the second takes the new one, tick and point rings
    alike. Every wire_to_read and send exact, none set aside."""
    ticks = TickWriter(
        [Point("md.rx", clock="realtime"), Point("md.read", stage="wire_to_read")], name="feed"
    )
    orders = PointWriter([Point("md.read"), Point("order.tx", clock="realtime", stage="send", trade=True)],
                         name="orders")  # fmt: skip
    col = Collector(ring_dir)
    col.rows = []
    offset = [col.realtime.start]
    monkeypatch.setattr(R, "sample_realtime_offset", lambda samples: (offset[0], 50))
    seq = 0

    def write(n):
        nonlocal seq
        t = ticks.stamps
        for _ in range(n):
            seq += 1
            a = monotonic_ns() - 10_000  # every stamp taken before the set that follows (as a clock's are)
            t[0], t[1] = a + offset[0], a + 5_000
            t = ticks.commit(seq)
            orders.record(1, seq, ts=a + 8_000 + offset[0])

    write(200)
    offset[0] += moved
    assert col.realtime.set_at(monotonic_ns())
    write(200)
    col.poll()
    col.finish()
    counters = col.counter_dict()
    assert counters["traces_clock_skew"] == 0 and counters["traces_complete"] == 400
    assert sorted(set(np.concatenate([r["tick_to_trade"] for r in col.rows]).tolist())) == [8_000]
    summary = col.summary()
    for stage, exact in (("wire_to_read", 5_000), ("send", 3_000)):
        assert (summary[stage]["count"], summary[stage]["min"], summary[stage]["max"]) == (
            400,
            hdr_summary([exact])["min"],
            hdr_summary([exact])["max"],
        )


@pytest.mark.parametrize("moved", [437_000_000, -437_000_000])
def test_a_stamp_taken_between_a_set_and_its_signal_takes_the_new_offset(monkeypatch, moved):
    """The signal reaches the collector after the set (the watch thread's wake-up: 50 µs to 15 ms
    measured here). A stamp taken in between carries the new offset: set forward, its REALTIME is
    one the set skipped; set back, one that came before too, but its ring's newest stamp rules the
    old place out. Both are placed exactly; a stamp late by more than the slack keeps its place."""
    old, at = 10**18, 5 * 10**9
    monkeypatch.setattr(R, "sample_realtime_offset", lambda samples: (old + moved, 50))
    r = RealtimeOffset(old, 50, 0)
    assert r.set_at(at)
    before_set, between = at - 2_000_000, at - 1_000_000  # the set came 1.5 ms before its signal
    stamps = np.array([before_set + old, between + old + moved], np.int64)
    assert K.realtime_to_monotonic(stamps, *r.knots, R.placed_after(before_set - 10**6)).tolist() == [
        before_set,
        between,
    ]
    late = at + 10**9  # a stamp of a ring whose newest is 1 s later: only its own segment's place
    got = K.realtime_to_monotonic(
        np.array([late + old + moved], np.int64), *r.knots, R.placed_after(late + 10**9)
    )
    assert got.tolist() == [late]
