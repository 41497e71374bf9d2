"""The C header and the Python reader agree on every byte: a gcc-built writer, read from Python."""

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import need_tool
from support import PROGRAMS, QUIET
from support.cli import run_cli
from tickscope.collectors.rings.clocks import fit_tsc
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.rings.reader import RingReader, find_rings
from tickscope.collectors.session import Session
from tickscope.probe import layout as L


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
    assert set(rec["dims"][rec["point"] == 6]) == {42} and set(rec["dims"][rec["point"] != 6]) == {0}
    assert set(rec["leg"]) == {0}
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


def test_tsp_open_returns_before_its_second_calibration_pair_which_a_thread_stores_later(tmp_path, ring_dir):
    """Opening never waits the 20 ms between the two opening pairs (the thread that opens may be
    an event loop's): the header holds one pair when tsp_open returns, the second appears later
    (stored by the ring's calibrator thread), and the close adds a third."""
    exe = build_like_a_user("gcc", PROGRAMS / "c_second_pair.c", tmp_path / "c_second_pair")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["at_open=1", "later=2"], out.stdout
    r = RingReader(find_rings(ring_dir)[0])
    pairs = r.calibration_pairs()
    assert len(pairs) == 3 and r.drain().size == 2 and r.writer_closed
    # The calibrator waits 20 ms of MONOTONIC before its pair: a rate from the two opening pairs.
    assert pairs[1][2] - pairs[0][2] >= 20_000_000
    cal = fit_tsc(pairs)
    assert cal is not None and 1e8 < cal.hz < 1e10


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


# -- the C API says what the Python API says -----------------------------------------------------

HEADER = Path(L.__file__).parent / "include" / "tickscope_probe.h"
EXAMPLES = Path(L.__file__).parent / "examples"
# The header's name for a layout constant, where it is not TSP_ + the layout's own name.
RENAMED = {"TSP_RECORD_SIZE": "POINT_RECORD_SIZE", "TSP_CALIB_ENTRY_SIZE": None}


def build_like_a_user(compiler, source, exe, *flags):
    """Compile the way the README says: the include flag comes from ``python -m tickscope.probe --cflags``."""
    need_tool(compiler, install="apt-get install gcc g++")
    cmd = f"{compiler} -O2 -Wall -Wextra -Werror {' '.join(flags)} $({sys.executable} -m tickscope.probe --cflags) -o {exe} {source}"
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return exe


def test_every_header_constant_equals_its_layout_twin(tmp_path):
    """What the compiler sees for each TSP_ constant, against probe/layout.py."""
    names = re.findall(r"^#define (TSP_[A-Z_0-9]+) \S", HEADER.read_text(), re.M)
    assert len(names) > 30
    src = tmp_path / "consts.c"
    src.write_text('#include "tickscope_probe.h"\nint main(void) {\n'
                   + "".join(f'    printf("{n}=%llu\\n", (unsigned long long)({n}));\n' for n in names)
                   + "    return 0;\n}\n")  # fmt: skip
    exe = build_like_a_user("gcc", src, tmp_path / "consts")
    values = dict(line.split("=") for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                             check=True).stdout.split())  # fmt: skip
    expected = {n: getattr(L, RENAMED.get(n) or n.removeprefix("TSP_"), None) for n in names}
    expected["TSP_CALIB_ENTRY_SIZE"] = L.CALIB_ENTRY.size
    expected["TSP_DIM_ENTRY_SIZE"] = L.DIM_VALUE_ENTRY.size
    unmirrored = [n for n, v in expected.items() if v is None]
    assert not unmirrored, f"header constants with no twin in layout.py: {unmirrored}"
    assert {n: int(v) for n, v in values.items()} == expected


def test_c_stages_subject_profiled_with_its_declared_stages_and_trade_point(tmp_path):
    exe = build_like_a_user("gcc", EXAMPLES / "c_stages.c", tmp_path / "c_stages", "-std=c11", "-pedantic")
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--",
                  str(exe), "3000", "20000")  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    assert s.meta["points"] == ["md.rx", "md.decoded", "signal", "order.tx", "ack.rx"]
    assert s.stages == ["feed", "strategy", "send", "order_rtt"]
    assert s.meta["trade_point"] == "order.tx" and s.trade_stages == ["feed", "strategy", "send"]
    summary = s.summary()
    for tag in ("feed", "strategy", "send", "order_rtt", "tick_to_trade"):
        assert summary[tag]["count"] == 3000, (tag, summary[tag])
    assert "tick_to_decision" not in summary
    c = s.meta["counters"]
    assert c["produced"] == c["drained"] == 15000 and c["dropped_ring_full"] == 0
    # tick-to-trade ends at order.tx, not at the ack that follows it after 2,000 dependent
    # multiply-adds (a gap that only grows on a slower host).
    assert s.slowest
    for trace in s.slowest:
        ts = {st["point"]: st["ts_ns"] for st in trace["stamps"]}
        to_trade, ack_gap = ts["order.tx"] - ts["md.rx"], ts["ack.rx"] - ts["order.tx"]
        assert ack_gap > 0 and abs(trace["tick_to_trade_ns"] - to_trade) < ack_gap / 2, trace


def test_the_header_compiles_as_cpp17_and_its_ring_reads_the_same(tmp_path, ring_dir):
    exe = build_like_a_user("g++", f"-x c++ {EXAMPLES / 'c_stages.c'}", tmp_path / "c_stages_cpp", "-std=c++17",
                            "-pedantic")  # fmt: skip
    out = subprocess.run([str(exe), "100", "0"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["produced=500", "dropped=0"]
    r = RingReader(find_rings(ring_dir)[0])
    assert [(p.name, p.stage, p.clock, p.flags) for p in r.points] == [
        ("md.rx", "", L.CLOCK_TSC, 0),
        ("md.decoded", "feed", L.CLOCK_TSC, 0),
        ("signal", "strategy", L.CLOCK_TSC, 0),
        ("order.tx", "send", L.CLOCK_TSC, L.POINT_TRADE),
        ("ack.rx", "order_rtt", L.CLOCK_TSC, 0),
    ]
    rec = r.drain()
    assert rec.size == 500 and r.writer_closed
    assert set(rec["leg"][rec["point"] == 3]) == {0}, "one order per tick: leg 0"


@pytest.mark.parametrize(
    "case",
    ["capacity0", "capacity1000", "capacity_huge", "no_points", "too_many_points", "long_point_name", "long_stage",
     "duplicate_point", "unknown_clock", "unknown_flag", "empty_writer_name"],
)  # fmt: skip
def test_tsp_open_rejects_bad_declarations_with_einval_and_leaves_nothing(case, tmp_path, ring_dir):
    exe = _errors_program(tmp_path)
    out = subprocess.run([str(exe), case], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [f"rc={-errno.EINVAL}", f"errno={errno.EINVAL}", "closed=1"]
    assert list(ring_dir.iterdir()) == []


def test_tsp_open_reports_an_unusable_ring_directory(tmp_path):
    exe = _errors_program(tmp_path)
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    for ring_dir, code in ((not_a_dir / "rings", errno.ENOTDIR), ("/" + "d" * 600, errno.ENAMETOOLONG)):
        out = subprocess.run([str(exe), "ok"], capture_output=True, text=True, check=True,
                             env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
        assert out.stdout.split() == [f"rc={-code}", f"errno={code}", "closed=1"], ring_dir


def test_tsp_open_reports_a_directory_it_may_not_write():
    """EACCES needs a user the directory refuses: root runs the program as nobody (setpriv)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the writer as an unprivileged user")
    need_tool("setpriv", install="apt-get install util-linux")
    shared = Path(tempfile.mkdtemp(prefix="tickscope-eacces-"))
    try:
        shared.chmod(0o755)  # nobody may enter and run the program, not create files
        exe = build_like_a_user("gcc", PROGRAMS / "c_open_errors.c", shared / "c_open_errors")
        (shared / "rings").mkdir(mode=0o755)
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(exe), "ok"],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, TICKSCOPE_RING_DIR=str(shared / "rings")))  # fmt: skip
        assert out.stdout.split() == [f"rc={-errno.EACCES}", f"errno={errno.EACCES}", "closed=1"]
        assert list((shared / "rings").iterdir()) == []
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_tsp_open_creates_missing_parent_directories(tmp_path):
    exe = _errors_program(tmp_path)
    ring_dir = tmp_path / "not" / "yet" / "there"
    for case in ("ok", "names"):
        out = subprocess.run([str(exe), case], capture_output=True, text=True, check=True,
                             env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)))  # fmt: skip
        assert out.stdout.split()[0] == "rc=0" and out.stdout.split()[2] == "closed=0"
    a, b = (RingReader(p) for p in find_rings(ring_dir))
    assert {(p.name, p.stage, p.flags) for p in a.points + b.points} == {
        ("md.rx", "", 0),
        ("order.tx", "send", L.POINT_TRADE),
        ("order.tx", "", 0),
    }, "tsp_open (bare names): no stages, no trade flag"
    assert a.writer_closed and b.writer_closed


def _errors_program(tmp_path):
    return build_like_a_user("gcc", PROGRAMS / "c_open_errors.c", tmp_path / "c_open_errors")


def test_cflags_command_needs_only_the_standard_library():
    """A subject's build may have no numpy, rich or typer: block them and ask for the flags."""
    blocked = "import sys; [sys.modules.__setitem__(m, None) for m in ('numpy', 'rich', 'typer', 'hdrh')]; "
    run = (
        "import runpy; sys.argv = ['x', '--cflags']; runpy.run_module('tickscope.probe', run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", blocked + run], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    flag = out.stdout.strip()
    assert flag.startswith("-I") and (Path(flag[2:]) / "tickscope_probe.h").is_file()
    cli = run_cli("include-dir")
    assert cli.returncode == 0 and cli.stdout.strip() == flag[2:]
    bad = subprocess.run(
        [sys.executable, "-m", "tickscope.probe", "--nonsense"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
