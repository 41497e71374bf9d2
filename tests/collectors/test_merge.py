"""tickscope merge: an exact union of interval histograms across sessions, hosts and layouts."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import missing_tool, need_tool
from support import PROGRAMS, QUIET, SUBJECT
from support.cli import CLI, run_cli
from tickscope.collectors.session import HistogramLogWriter, Session
from tickscope.collectors.session.hdr import (
    PERCENTILES,
    BulkRecorder,
    counts_view,
    new_histogram,
    percentiles,
)


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("merge") / "whole"
    res = run_cli("profile", "--duration", "4.5s", "--out", str(out), *QUIET, "--", *SUBJECT, "0", "--forever",
                  "--rate", "3000", "--no-order-every", "4")  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out


def split_copy(src, dst, keep) -> None:
    """A copy of session ``src`` whose latency.hlog keeps only the intervals ``keep(start_s)`` accepts."""
    shutil.copytree(src, dst)
    (dst / "summary.json").unlink()
    lines = (src / "latency.hlog").read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.startswith("Tag=") or keep(float(ln.split(",")[1]))]
    (dst / "latency.hlog").write_text("".join(kept))


def assert_one_line_error(out, *needles):
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert len([ln for ln in out.stderr.splitlines() if ln.startswith("tickscope merge: ")]) == 1, out.stderr
    for n in needles:
        assert n in out.stderr, out.stderr


def test_merge_of_two_halves_is_the_whole_bucket_for_bucket(session_dir, tmp_path):
    whole = Session.load(session_dir)
    starts = sorted({iv.start_s for ivs in whole.intervals.values() for iv in ivs})
    assert len(starts) >= 4, starts
    cut = starts[len(starts) // 2]
    split_copy(session_dir, tmp_path / "first", lambda s: s < cut)
    split_copy(session_dir, tmp_path / "second", lambda s: s >= cut)
    out = run_cli("merge", str(tmp_path / "m"), str(tmp_path / "first"), str(tmp_path / "second"))
    assert out.returncode == 0, out.stderr
    merged = Session.load(tmp_path / "m")
    host = whole.meta["host"]["hostname"]
    assert set(whole.intervals) <= set(merged.intervals)
    for tag, ivs in whole.intervals.items():
        for view in (tag, f"{host}/{tag}"):
            got = merged.intervals[view]
            assert [round(iv.start_s, 3) for iv in got] == [round(iv.start_s, 3) for iv in ivs], view
            for a, b in zip(got, ivs, strict=True):
                assert np.array_equal(counts_view(a.hist), counts_view(b.hist)), (view, a.start_s)
        assert np.array_equal(counts_view(merged.total(tag)), counts_view(whole.total(tag)))
        assert merged.summary()[tag] == whole.summary()[tag]
    # the result is an ordinary session: report and compare read it unchanged
    assert run_cli("report", str(tmp_path / "m")).returncode == 0
    cmp = run_cli("compare", str(session_dir), str(tmp_path / "m"))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def write_hlog(path, start_epoch, digits, values_per_interval):
    rec = None
    log = HistogramLogWriter(path, start_epoch)
    for i, values in enumerate(values_per_interval):
        h = new_histogram(digits=digits)
        rec = BulkRecorder(h)
        rec.record(h, np.asarray(values, np.int64))
        log.write("tick_to_trade", h, float(i), float(i + 1))
    log.close()


def test_different_layouts_merge_exactly_into_the_coarsest_and_finer_is_refused(tmp_path):
    rng = np.random.default_rng(7)
    a = [rng.lognormal(9, 1.5, 5000).astype(np.int64) + 1 for _ in range(3)]
    b = [rng.lognormal(10, 1.0, 4000).astype(np.int64) + 1 for _ in range(3)]
    write_hlog(tmp_path / "a.hlog", 1_700_000_000.0, 3, a)
    write_hlog(tmp_path / "b.hlog", 1_700_000_000.5, 2, b)
    out = run_cli("merge", str(tmp_path / "m"), str(tmp_path / "a.hlog"), str(tmp_path / "b.hlog"))
    assert out.returncode == 0, out.stderr
    assert "different layouts" in out.stderr and "digits=2" in out.stderr
    merged = Session.load(tmp_path / "m")
    expect = new_histogram(digits=2)
    BulkRecorder(expect).record(expect, np.concatenate(a + b))
    total = new_histogram(digits=2)  # (Session.total() would re-bin into its 3-digit default)
    for iv in merged.intervals["tick_to_trade"]:
        assert iv.hist.significant_figures == 2
        total.add(iv.hist)
    assert np.array_equal(counts_view(total), counts_view(expect))
    assert sum(iv.hist.total_count for iv in merged.intervals["a/tick_to_trade"]) == sum(len(x) for x in a)
    # a host's intervals keep their own times (b started 0.5 s later), the fleet total uses the grid
    assert [iv.start_s for iv in merged.intervals["b/tick_to_trade"]] == [0.5, 1.5, 2.5]
    assert [iv.start_s for iv in merged.intervals["tick_to_trade"]] == [0.0, 1.0, 2.0]
    finer = run_cli(
        "merge", "--digits", "3", str(tmp_path / "m3"), str(tmp_path / "a.hlog"), str(tmp_path / "b.hlog")
    )
    assert_one_line_error(finer, "b.hlog", "digits=2", "straddle")


def test_inputs_that_are_not_histogram_logs_are_refused(tmp_path, session_dir):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello,world\n1,2,3,4\n")
    assert_one_line_error(run_cli("merge", str(tmp_path / "m"), str(session_dir), str(junk)), "notes.txt",
                          "not an HdrHistogram interval log")  # fmt: skip
    assert_one_line_error(run_cli("merge", str(tmp_path / "m2"), str(tmp_path / "missing")), "no such input")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m2").exists()


def test_overlapping_intervals_of_one_host_are_refused_unless_labelled(tmp_path, session_dir):
    shutil.copytree(session_dir, tmp_path / "copy")
    out = run_cli("merge", str(tmp_path / "m"), str(session_dir), str(tmp_path / "copy"))
    assert_one_line_error(out, "overlapping", "NAME=PATH")
    ok = run_cli("merge", str(tmp_path / "m2"), f"a={session_dir}", f"b={tmp_path / 'copy'}")
    assert ok.returncode == 0, ok.stderr
    merged = Session.load(tmp_path / "m2")
    whole = Session.load(session_dir)
    assert merged.total("tick_to_trade").total_count == 2 * whole.total("tick_to_trade").total_count


def test_clocks_that_disagree_are_reported_with_the_measured_offset(tmp_path, session_dir):
    shutil.copytree(session_dir, tmp_path / "other")
    meta = json.loads((tmp_path / "other" / "meta.json").read_text())
    assert meta["host"]["boot_id"], "sessions record the boot they were taken in"
    meta["host"]["hostname"] = "other-host"
    meta["clocks"]["realtime_minus_monotonic_ns"] += 50_000_000  # REALTIME stepped by 50 ms
    (tmp_path / "other" / "meta.json").write_text(json.dumps(meta))
    out = run_cli("merge", str(tmp_path / "m"), str(session_dir), str(tmp_path / "other"))
    assert out.returncode == 0, out.stderr
    warn = [ln for ln in out.stderr.splitlines() if "clocks disagree" in ln]
    assert len(warn) == 1 and "+50.000 ms" in warn[0], out.stderr


def test_hosts_on_different_machines_warn_when_their_clocks_are_not_disciplined(tmp_path, session_dir):
    shutil.copytree(session_dir, tmp_path / "remote")
    meta = json.loads((tmp_path / "remote" / "meta.json").read_text())
    meta["host"].update(hostname="ld4-trader", boot_id="another-machine")
    meta["host"]["clock_sync"] = {
        "synchronised": True,
        "offset_ns": 3_000_000,
        "esterror_ns": 0,
        "maxerror_ns": 0,
    }
    (tmp_path / "remote" / "meta.json").write_text(json.dumps(meta))
    local = json.loads((session_dir / "meta.json").read_text())["host"]["clock_sync"]
    out = run_cli("merge", str(tmp_path / "m"), str(session_dir), str(tmp_path / "remote"))
    assert out.returncode == 0, out.stderr
    clock = [ln for ln in out.stderr.splitlines() if "clock" in ln]
    assert len(clock) == 1, out.stderr
    if local["synchronised"]:  # this host's own discipline decides which line it is
        assert "ld4-trader" in clock[0] and "adjtimex" in clock[0], clock
    else:
        assert "not synchronised" in clock[0] and "max error" in clock[0], clock
    again = run_cli("merge", str(tmp_path / "m"), str(session_dir))
    assert_one_line_error(again, "not empty")


def test_warmup_intervals_are_merged_apart_from_the_headline_ones(tmp_path):
    from tickscope.collectors.session import SessionWriter

    rng = np.random.default_rng(11)
    for name in ("a", "b"):
        w = SessionWriter(
            tmp_path / name, {"name": name, "start_epoch_s": 1_700_000_000.0, "interval_s": 1.0}
        )
        for i, warm in ((0, True), (1, False), (2, False)):
            h = new_histogram()
            BulkRecorder(h).record(h, rng.integers(1_000, 50_000, 1000 * (i + 1)))
            w.write_interval({"tick_to_trade": h}, float(i), float(i + 1), warmup=warm)
        w.close()
    out = run_cli("merge", str(tmp_path / "m"), f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}")
    assert out.returncode == 0, out.stderr
    merged = Session.load(tmp_path / "m")
    assert [iv.hist.total_count for iv in merged.warmup_intervals["tick_to_trade"]] == [2000]
    assert merged.total("tick_to_trade").total_count == 2 * (2000 + 3000)


def test_two_wire_sessions_of_one_capture_are_one_source_and_not_counted_twice(tmp_path):
    """A ``tickscope wire`` session has no host: its capture is what it measured. Two sessions read
    from one capture overlap like two copies of one host's session and are refused the same way."""
    from support import wire_synth as S
    from support.wire_frames import FIX_PORT, MD_PORT, md_frame, order, tcp_frame

    packets, seq = [], 100
    for i in range(30):  # 3 s of market data and orders, a tick-to-trade of 40 us each
        at = 1_700_000_000_000_000_000 + i * 100_000_000
        packets += [(at, md_frame(10 + i)), (at + 40_000, tcp_frame(seq, order(b"TS%d-1" % (10 + i), i + 1)))]
        seq += len(order(b"TS%d-1" % (10 + i), i + 1))
    cap = tmp_path / "day.pcap"
    cap.write_bytes(S.pcap(packets))
    for name in ("a", "b"):
        r = run_cli(
            "wire",
            str(cap),
            "--md",
            f"udp:{MD_PORT}",
            "--orders",
            f"tcp:{FIX_PORT}",
            "-o",
            str(tmp_path / name),
        )
        assert r.returncode == 0 and "30 matched" in r.stdout, r.stdout + r.stderr
    assert_one_line_error(run_cli("merge", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")),
                          "overlapping", "capture-")  # fmt: skip
    other = tmp_path / "other.pcap"  # another capture of the same time (another tap): two sources
    other.write_bytes(S.pcap([(t + 1, p) for t, p in packets]))
    r = run_cli(
        "wire", str(other), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(tmp_path / "c")
    )
    assert r.returncode == 0, r.stderr
    ok = run_cli("merge", str(tmp_path / "m2"), str(tmp_path / "a"), str(tmp_path / "c"))
    assert ok.returncode == 0, ok.stderr
    assert Session.load(tmp_path / "m2").total("wire_to_wire").total_count == 60


def tiny_session(
    path, host: str, boot: str, start_epoch: float, payload: str, clock_sync: dict | None
) -> None:
    """A session directory as a profile run writes it, with one interval: cheap to make by the hundred."""
    path.mkdir()
    meta = {"name": path.name, "status": "complete", "start_epoch_s": start_epoch, "interval_s": 1.0,
            "host": {"hostname": host, "boot_id": boot, **({"clock_sync": clock_sync} if clock_sync else {})},
            "clocks": {"realtime_minus_monotonic_ns": 1_000_000_000, "realtime_offset_uncertainty_ns": 5_000}}  # fmt: skip
    (path / "meta.json").write_text(json.dumps(meta))
    log = HistogramLogWriter(path / "latency.hlog", start_epoch)
    log.f.write(f"Tag=tick_to_trade,0.000,1.000,0.050,{payload}\n")
    log.close()


@pytest.mark.parametrize("clock_sync", ["unsynchronised", "unknown"])
def test_a_merge_of_many_machines_says_so_in_one_line_with_a_table_in_meta(tmp_path, clock_sync):
    """150 sessions from separate boots printed one clock warning per pair: 11,175 lines (and 1,000
    sessions 499,500 lines and a 60 MB meta.json). Now one line per kind, and one row per input."""
    h = new_histogram()
    BulkRecorder(h).record(h, np.array([20_000, 30_000, 50_000], np.int64))
    payload = h.encode().decode()
    n = 150
    for i in range(n):
        sync = {"synchronised": False, "offset_ns": 1_000 * i, "esterror_ns": 16_000_000,
                "maxerror_ns": 16_000_000} if clock_sync == "unsynchronised" else None  # fmt: skip
        tiny_session(
            tmp_path / f"s{i:03d}", f"host{i:03d}", f"boot-{i}", 1_700_000_000.0 + i % 3, payload, sync
        )
    out = run_cli("merge", str(tmp_path / "m"), *(str(tmp_path / f"s{i:03d}") for i in range(n)), timeout=600)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.splitlines()
    assert len(lines) == 1, lines[:5]
    want = "not synchronised" if clock_sync == "unsynchronised" else "unknown (sessions without clock_sync)"
    assert want in lines[0] and "150 hosts (host000, host001" in lines[0] and "and 145 more" in lines[0], (
        lines
    )
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert len(meta["clock_offsets"]) == n and len(meta["merge_warnings"]) == 1
    row = meta["clock_offsets"][7]
    assert row["host"] == "host007" and row["boot_id"] == "boot-7" and row["realtime_step_ns"] == 0
    if clock_sync == "unsynchronised":
        assert row["clock_sync"]["offset_ns"] == 7_000 and row["clock_sync"]["synchronised"] is False
    assert Session.load(tmp_path / "m").total("tick_to_trade").total_count == 3 * n


def wide_log(path, tags: int = 10, intervals: int = 4) -> None:
    """A few KB of log whose layout (5 digits, 1 ns .. 2**30 ns) decodes to 16 MB per histogram, just
    within what tickscope decodes: a merge of it peaked at 2.3 GB, a report at 0.9 GB."""
    from hdrh.histogram import HdrHistogram

    lines = [
        "#[StartTime: 1700000000.000 (seconds since epoch)]",
        "#[BaseTime: 1700000000.000 (seconds since epoch)]",
    ]
    for i in range(intervals):
        for t in range(tags):
            h = HdrHistogram(1, 2**30, 5)
            h.record_value(1_000 + t)
            h.record_value(2**29)
            lines.append(f"Tag=t{t},{i}.000,1.000,{h.get_max_value() / 1e6:.3f},{h.encode().decode()}")
    path.write_text("\n".join(lines) + "\n")


def run_limited(limit_mb: int, *args):
    """The CLI under an address-space limit (as ``prlimit --as``): what it holds is bounded, on any host."""
    import os
    import resource
    import subprocess

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "120"}  # a BLAS thread's stack counts too
    env.pop("TICKSCOPE_RING_DIR", None)
    return subprocess.run([*CLI, *args], capture_output=True, text=True,
                          timeout=600, env=env, preexec_fn=limit)  # fmt: skip


def test_wide_layouts_merge_and_report_in_bounded_memory(tmp_path):
    """Each decoded histogram was freed only by the cyclic garbage collector (hdrh's histogram and
    encoder refer to each other), and merge held a dense total per tag and host: 2.3 GB for a
    3.9 KB log. Within 600 MB of address space (Python and numpy take ~150) merge and report work;
    with far less, they refuse in one line."""
    log = tmp_path / "wide.hlog"
    wide_log(log)
    assert log.stat().st_size < 4_500
    for args in (["merge", str(tmp_path / "m"), str(log)], ["report", str(log)],
                 ["report", str(log), "-o", str(tmp_path / "r.html")]):  # fmt: skip
        r = run_limited(600, *args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stderr[-1500:])
    merged = Session.load(tmp_path / "m")
    assert merged.total("t3").total_count == 8 and merged.summary()["t3"]["max"] >= 2**29
    for args in (["merge", str(tmp_path / "m2"), str(log)], ["report", str(log)]):
        r = run_limited(200, *args)
        assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr, (args, r.stderr[-1500:])
        assert r.returncode == 0 or (
            r.returncode == 2 and r.stderr.count("\n") == 1 and "out of memory" in r.stderr
        )
    assert not (tmp_path / "m2").exists() or Session.load(tmp_path / "m2")  # never half a session


def test_an_out_under_a_file_is_one_line(tmp_path, session_dir):
    (tmp_path / "f").write_text("")
    out = run_cli("merge", str(tmp_path / "f" / "m"), str(session_dir))
    assert_one_line_error(out, "cannot write merged session", "Not a directory")


HDR_JS = "hdr-histogram-js@3.0.1"


@pytest.fixture(scope="module")
def hdr_js(tmp_path_factory):
    """HdrHistogram's JavaScript port from the npm registry, in a temporary directory: NODE_PATH."""
    need_tool("node", install="apt-get install nodejs")
    npm = need_tool("npm", install="apt-get install npm")
    d = tmp_path_factory.mktemp("hdr-js")
    out = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(d), HDR_JS],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        missing_tool(f"{HDR_JS} (npm install failed: {last})", install=f"npm install {HDR_JS}")
    return d / "node_modules"


def test_merged_percentiles_equal_hdr_histogram_js_get_value_at_percentile(tmp_path, hdr_js):
    """Three hosts' logs merged; HdrHistogram's JavaScript port reads the merged log, adds the fleet
    intervals and takes getValueAtPercentile (rank ceil(q*N)): the summary says the same, p0 and
    p100 included. N = 20,559: q*N has a fraction below 0.5 at p90, p99 and p99.9, where hdrh rounds down."""
    rng = np.random.default_rng(19)
    for host, per_interval in (("a", 1237), ("b", 2011), ("c", 3605)):
        write_hlog(tmp_path / f"{host}.hlog", 1_700_000_000.0, 3,
                   [rng.lognormal(10, 1.2, per_interval).astype(np.int64) + 1 for _ in range(3)])  # fmt: skip
    out = run_cli("merge", str(tmp_path / "m"), *(str(tmp_path / f"{h}.hlog") for h in "abc"))
    assert out.returncode == 0, out.stderr
    pcts = (0.0, *PERCENTILES, 100.0)
    js = subprocess.run(["node", str(PROGRAMS / "hdr_js_percentiles.js"), str(tmp_path / "m" / "latency.hlog"),
                         "tick_to_trade", *map(str, pcts)], capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, NODE_PATH=str(hdr_js)))  # fmt: skip
    assert js.returncode == 0, js.stderr
    ref = json.loads(js.stdout)
    ref_at = {p: ref["percentiles"][str(p)] for p in pcts}
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())["tick_to_trade"]
    assert summary["count"] == ref["count"] == 3 * (1237 + 2011 + 3605)
    keys = ("min", "p50", "p90", "p99", "p99_9", "p99_99", "max")
    assert [summary[k] for k in keys] == [ref_at[p] for p in pcts]
    total = Session.load(tmp_path / "m").total("tick_to_trade")
    assert percentiles(total, pcts) == ref_at
    assert any(total.get_value_at_percentile(p) != ref_at[p] for p in PERCENTILES), (
        "hdrh's rounding agrees here"
    )


@pytest.mark.parametrize("compact_at", [1, 7, 1 << 16])
def test_a_running_total_folded_in_batches_is_the_exact_sum(compact_at):
    """``SparseTotal`` keeps the histograms added apart until ``COMPACT_AT`` buckets wait, then
    folds them: folded after every one, every few, or only when read, the total is the same
    bucket for bucket, as is its count and its extremes (a fold that dropped or doubled one
    histogram's buckets would show here)."""
    from tickscope.collectors.session.hdr import counts_view, new_histogram
    from tickscope.collectors.session.merge import SparseTotal

    rng = np.random.default_rng(compact_at)
    total, exact = SparseTotal(), new_histogram()
    total.COMPACT_AT = compact_at
    for _ in range(40):
        h = new_histogram()
        for v in rng.lognormal(np.log(20_000), 1.5, int(rng.integers(0, 30))).astype(np.int64):
            h.record_value(int(v))
            exact.record_value(int(v))
        total.add(h)
    dense = total.dense(
        (exact.lowest_trackable_value, exact.highest_trackable_value, exact.significant_figures)
    )
    assert (counts_view(dense) == counts_view(exact)).all()
    assert (dense.total_count, dense.min_value, dense.max_value) == (
        exact.total_count,
        exact.min_value,
        exact.max_value,
    )
