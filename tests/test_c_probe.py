"""The C header and the Python reader agree on every byte: a gcc-built writer, read from Python."""

import os
import subprocess

import numpy as np

from tickscope.collectors.collector import Collector
from tickscope.collectors.ring_reader import RingReader, find_rings
from tickscope.probe import layout as L
from tickscope.probe.clock import fit_tsc


def run_writer(exe, ring_dir, traces, capacity=1 << 16, base=1):
    out = subprocess.run([str(exe), str(traces), "0", str(capacity), str(base)], capture_output=True, text=True,
                         env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)), check=True)  # fmt: skip
    return dict(kv.split("=") for kv in out.stdout.split())


def test_c_writer_records_read_exactly_from_python(c_build, ring_dir):
    exe = c_build("c_writer.c")
    stats = run_writer(exe, ring_dir, 1000)
    assert stats == {"produced": "8000", "dropped": "0"}
    (path,) = find_rings(ring_dir)
    r = RingReader(path)
    assert (r.kind, r.record_size, r.n_points, r.writer_name) == (L.KIND_POINT, 32, 8, "cwriter")
    assert [p.name for p in r.points][:3] == ["md.rx", "md.decoded", "book.updated"]
    assert all(p.clock == L.CLOCK_TSC for p in r.points)
    assert r.writer_closed and not r.writer_alive()
    rec = r.drain()
    assert rec.size == 8000 and r.produced == 8000
    assert np.array_equal(rec["trace"], np.repeat(np.arange(1, 1001), 8))
    assert np.array_equal(rec["point"], np.tile(np.arange(8), 1000))
    assert np.all(np.diff(rec["ts"].astype(np.int64)) > 0), "TSC stamps of one thread increase"
    assert set(rec["aux"][rec["point"] == 6]) == {42} and set(rec["aux"][rec["point"] != 6]) == {0}
    assert len(set(rec["thread"])) == 1 and rec["thread"][0] == r.writer_tid


def test_c_writer_drops_are_counted_when_nobody_drains(c_build, ring_dir):
    exe = c_build("c_writer.c")
    stats = run_writer(exe, ring_dir, 100, capacity=256)
    assert stats == {"produced": "800", "dropped": "544"}
    r = RingReader(find_rings(ring_dir)[0])
    assert r.dropped_full == 544 and r.drain().size == 256 and r.produced == 800


def test_tsc_calibration_from_c_pairs_is_sane(c_build, ring_dir):
    run_writer(c_build("c_writer.c"), ring_dir, 10)
    r = RingReader(find_rings(ring_dir)[0])
    cal = fit_tsc(r.calibration_pairs())
    assert cal is not None and cal.pairs >= 2
    assert 1e8 < cal.hz < 1e10  # 100 MHz .. 10 GHz
    assert cal.residual_ns < 10_000


def test_c_traces_become_stage_latencies_on_the_monotonic_timeline(c_build, ring_dir):
    run_writer(c_build("c_writer.c"), ring_dir, 2000)
    c = Collector(ring_dir)
    c.poll()
    c.finish()
    counters = c.counter_dict()
    assert counters["traces_complete"] == 2000 and counters["traces_incomplete"] == 0
    assert counters["produced"] == counters["drained"] == 16000
    t2t = c.hists.total["ack.rx"]  # no stage names declared in C: stages are named by their end point
    assert t2t.total_count == 2000
    # The work between points is ~20 adds: nanoseconds to a few microseconds, never hours.
    assert 0 < c.hists.total["tick_to_trade"].get_value_at_percentile(50) < 1_000_000
