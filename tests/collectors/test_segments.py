"""Long runs cut into segments: an accelerated run (10 ms intervals, 1 s segments) read back exactly,
whatever retention removed and decay coarsened; a kill -9 mid-segment loses at most the interval
being written; windows (--from/--to) exact across segments."""

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import needs_tool
from support import QUIET, SUBJECT, rss_kb
from support.cli import CLI, run_cli
from tickscope.collectors.run.claim import RING_DIR_PREFIX
from tickscope.collectors.session import Session, read_hlog
from tickscope.collectors.session.hdr import add_any, new_histogram
from tickscope.collectors.session.segments import (
    INDEX,
    REMOVED_LOG,
    TOTAL_LOG,
    SegmentPolicy,
    Window,
    WindowError,
    parse_decay,
    segment_dirs,
    segment_policy,
)
from tickscope.collectors.session.units import parse_run_duration_s, parse_size

HANG_GUARD_S = 120  # a guard against hanging only: every wait is for a condition
# Decay at 1.5 s: the segment closed two cuts ago ended ~2 s back, half a second past the age
# whatever the host's speed (a late cut only makes it older), and decay runs before --max-disk.
ACCELERATED = ["--interval", "10ms", "--segment", "1s", "--decay", "1500ms:200ms"]


def cli_env():
    env = dict(os.environ)
    env.pop("TICKSCOPE_RING_DIR", None)
    env.pop("TICKSCOPE_COLLECTOR_PID", None)
    return env


def start_profile(out: Path, *args: str) -> subprocess.Popen:
    cmd = [*CLI, "profile", *QUIET, *ACCELERATED, "--out", str(out), *args,
           "--", *SUBJECT, "0", "--forever", "--rate", "2000"]  # fmt: skip
    return subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def per_tag(path: Path) -> dict:
    """A one-line-per-tag log (total.hlog, removed.hlog) -> {tag: histogram}."""
    return {tag: ivs[0].hist for tag, ivs in read_hlog(path)[0].items()} if path.is_file() else {}


def summed(*parts: dict) -> dict:
    out = {}
    for part in parts:
        for tag, h in part.items():
            add_any(out.setdefault(tag, new_histogram()), h)
    return out


def union_of(session: Session) -> dict:
    return summed({tag: session.total(tag) for tag in session.tags})


def same(a: dict, b: dict) -> bool:
    """Bucket for bucket (the V2 encoding holds every count)."""
    return a.keys() == b.keys() and all(a[t].encode() == b[t].encode() for t in a)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """20 s at 10 ms intervals: 2,000 intervals, ~20 segments, --max-disk removing the oldest (by
    bytes, not age: how long the host takes to stop the subject cannot change what is kept)."""
    out = tmp_path_factory.mktemp("long") / "s"
    # 500 kB holds the last three full segments (~80 kB each) and a few decayed ones, so the
    # segment that ended two cuts before the final one is still there, decayed, when the run ends.
    proc = start_profile(out, "--duration", "20s", "--max-disk", "500kB")
    rss = []
    try:
        while proc.poll() is None:
            kb = rss_kb(proc.pid)
            if kb:
                rss.append(kb)
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    return out, stderr, rss


def test_the_union_of_the_segments_and_what_retention_removed_is_the_run_bucket_for_bucket(long_run):
    out, stderr, _ = long_run
    index = json.loads((out / INDEX).read_text())
    removed = index["removed"]["segments"]
    assert removed >= 2 and len(index["segments"]) >= 2, index
    lines = [x for x in stderr.splitlines() if "retention: removed segment" in x]
    assert len(lines) == removed and all("over --max-disk 500 kB" in x for x in lines), stderr
    s = Session.load(out)
    run = per_tag(out / TOTAL_LOG)  # the collector's own running totals
    assert same(summed(union_of(s), per_tag(out / REMOVED_LOG)), run)
    meta = json.loads((out / "meta.json").read_text())
    assert run["tick_to_trade"].total_count == meta["counters"]["traces_complete"]
    assert any(f"retention removed the {removed} oldest segment(s)" in w for w in s.warnings)


def test_every_closed_segment_is_a_session_of_its_own_and_old_ones_decayed_exactly(long_run):
    out, _, _ = long_run
    segs = [(n, d) for n, d, is_open in segment_dirs(out) if not is_open]
    assert [n for n, _, _ in segment_dirs(out)] == [n for n, _ in segs], (
        "a finished run leaves no open segment"
    )
    decayed, coarse = 0, set()
    # the run's last interval lasts until its final drain (however long stopping the subject took)
    run_end = max(iv.end_s for ivs in Session.load(out).intervals.values() for iv in ivs)
    for _, d in segs:
        seg = Session.load(d)
        assert seg.meta["status"] == "complete" and not seg.warnings
        assert same(union_of(seg), per_tag(d / TOTAL_LOG)), d
        assert seg.summary()["tick_to_trade"]["count"] == json.loads((d / "summary.json").read_text())[
            "tick_to_trade"]["count"]  # fmt: skip
        # each segment keeps its own slowest, however slow the run's were before it
        assert len(seg.slowest) == min(20, seg.summary()["tick_to_trade"]["count"]), d
        lengths = {
            round(iv.length_s, 3) for ivs in seg.intervals.values() for iv in ivs if iv.end_s != run_end
        }
        if seg.meta["segment"]["decayed"]:
            decayed += 1
            coarse |= lengths
            assert all(x <= 0.2 for x in lengths), lengths
            assert not (d / "coarse.hlog").exists()
        else:
            assert lengths <= {0.01}, lengths
    assert decayed >= 1 and max(coarse) > 0.01, "segments older than 1.5s keep 200ms intervals"


def test_windows_are_exact_across_segments(long_run):
    out, _, _ = long_run
    index = json.loads((out / INDEX).read_text())["segments"]
    first, second = index[0], index[1]
    both = summed(per_tag(out / first["dir"] / TOTAL_LOG), per_tag(out / second["dir"] / TOTAL_LOG))
    relative = Session.load(out, Window(f"+{first['start_s']:.3f}s", f"+{second['end_s']:.3f}s"))
    assert same(union_of(relative), both), "a window of two segments is their two totals, bucket for bucket"
    wall = Session.load(out, Window(datetime.fromtimestamp(first["start_epoch_s"]).isoformat(),
                                    datetime.fromtimestamp(second["end_epoch_s"]).isoformat()))  # fmt: skip
    assert same(union_of(wall), both), "a wall-clock window is the same window"
    last = index[-1]
    tail = Session.load(out, Window(f"-{last['end_s'] - last['start_s']:.3f}s"))
    assert same(union_of(tail), per_tag(out / last["dir"] / TOTAL_LOG)), "-DUR counts back from the end"
    assert all(t["stamps"][0]["t_rel_ns"] >= first["start_s"] * 1e9 for t in relative.slowest)


def test_window_options_of_report_compare_and_merge(long_run, tmp_path):
    out, _, _ = long_run
    index = json.loads((out / INDEX).read_text())["segments"]
    seg = index[0]
    span = ["--from", f"+{seg['start_s']:.3f}s", "--to", f"+{seg['end_s']:.3f}s"]
    count = per_tag(out / seg["dir"] / TOTAL_LOG)["tick_to_trade"].total_count
    shown = run_cli("report", str(out), *span)
    assert shown.returncode == 0 and f"{count:,}" in shown.stdout, shown.stdout + shown.stderr
    html = run_cli("report", str(out), *span, "-o", str(tmp_path / "r.html"))
    assert html.returncode == 0, html.stderr
    merged = run_cli("merge", str(tmp_path / "m"), str(out), *span)
    assert merged.returncode == 0, merged.stderr
    assert Session.load(tmp_path / "m").total("tick_to_trade").total_count == count
    compared = run_cli("compare", str(out), str(out), *span)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    bad = run_cli("report", str(out), "--from", "yesterday")
    assert (
        bad.returncode == 2
        and bad.stderr.count("\n") == 1
        and "--from 'yesterday' is not a time" in bad.stderr
    )
    empty = run_cli("report", str(out), "--from", "+1000s")
    assert empty.returncode == 2 and "no interval lies within" in empty.stderr, empty.stderr


def test_collector_memory_stays_flat_over_thousands_of_intervals(long_run):
    _, _, rss = long_run
    assert len(rss) >= 20, "sampled over the run"
    settled, end = max(rss[len(rss) // 4 : len(rss) // 2]), max(rss[len(rss) // 2 :])
    # generous: a leak of one decoded histogram per interval would add ~450 MB over 2,000 intervals
    assert end - settled < 40_000, f"RSS grew from {settled} kB to {end} kB"


def test_kill_9_mid_segment_loses_at_most_the_interval_being_written(tmp_path):
    out = tmp_path / "s"
    proc = start_profile(out, "--duration", "forever")
    try:

        def open_segment_with_lines():
            if not (out / "segments").is_dir():
                return None
            segs = segment_dirs(out)
            closed = [d for _, d, o in segs if not o]
            opened = [d for _, d, o in segs if o]
            if len(closed) >= 2 and opened and (opened[0] / "latency.hlog").stat().st_size > 2000:
                return opened[0]
            return None

        deadline = time.monotonic() + HANG_GUARD_S
        while (opened := open_segment_with_lines()) is None:
            assert time.monotonic() < deadline and proc.poll() is None, "a run with two closed segments"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)  # what is on disk now is what kill -9 leaves
        time.sleep(0.2)
        text = (opened / "latency.hlog").read_text()
        closed = {d.name: (d / "latency.hlog").read_text() for _, d, o in segment_dirs(out) if not o}
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
        for d in Path("/dev/shm").glob(f"{RING_DIR_PREFIX}{proc.pid}-*"):  # kill -9 runs no cleanup
            shutil.rmtree(d, ignore_errors=True)
    s = Session.load(out)
    assert any("did not finish" in w for w in s.warnings)
    whole = [x for x in text.split("\n")[:-1] if x.startswith("Tag=")]  # a cut last line is the one lost
    expected = sum(sum(1 for x in t.splitlines() if x.startswith("Tag=")) for t in closed.values()) + len(
        whole
    )
    assert sum(len(ivs) for ivs in s.intervals.values()) == expected
    # no interval missing before the one being written: every closed segment and the open one's flushed lines
    starts = sorted({round(iv.start_s, 3) for ivs in s.intervals.values() for iv in ivs})
    segs = json.loads((out / INDEX).read_text())["segments"]
    assert segs[0]["start_s"] <= starts[0] and starts[-1] >= segs[-1]["end_s"], (
        "the open segment was read too"
    )


def test_the_option_grammar():
    assert parse_run_duration_s("forever") is None and parse_run_duration_s("7d") == 7 * 86400
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 << 30
    assert parse_decay("1d:1m") == (86400.0, 60.0) and parse_decay("off")[0] is None
    assert segment_policy(30.0, 1.0, None, None, None, None) is None, "a short run stays one session"
    forever = segment_policy(None, 1.0, None, "7d", "5GB", None)
    assert forever.segment_s == 3600 and forever.retain_s == 7 * 86400 and forever.max_disk_bytes == 5 * 10**9
    with pytest.raises(WindowError, match="--to .12 o.clock. is not a time"):
        Window(None, "12 o'clock").check()
    for args, says in ((["--segment", "5ms"], "shorter than one interval"), (["--max-disk", "lots"], "not a positive size"),
                       (["--decay", "1d"], "is not AGE:INTERVAL"), (["--duration", "always"], "not a duration")):  # fmt: skip
        r = run_cli("profile", *QUIET, *args, "--", *SUBJECT, "10")
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_retain_removes_the_segments_older_than_it(tmp_path):
    out = tmp_path / "s"
    r = run_cli("profile", *QUIET, *ACCELERATED, "--retain", "2s", "--duration", "6s", "--out", str(out),
                "--", *SUBJECT, "0", "--forever", "--rate", "2000", timeout=HANG_GUARD_S)  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = json.loads((out / INDEX).read_text())
    lines = [x for x in r.stderr.splitlines() if "retention: removed segment" in x]
    assert lines and len(lines) == index["removed"]["segments"] and "older than --retain 2s" in lines[0]
    end = json.loads((out / "meta.json").read_text())["end_epoch_s"]
    assert all(s["end_epoch_s"] >= end - 2 - 1 for s in index["segments"]), (
        "kept: ended within --retain of the end"
    )
    s = Session.load(out)
    assert same(summed(union_of(s), per_tag(out / REMOVED_LOG)), per_tag(out / TOTAL_LOG))


def test_the_hiccup_log_is_cut_with_the_segments_and_the_report_reads_their_union(tmp_path):
    """A segmented run's hiccup meter writes no run-long file: each interval goes into the segment
    open when it arrived, so retention and decay take the hiccups with the latency they sat beside,
    and a closed segment read alone has its own. The session reads the union."""
    from tickscope.reports.analysis.views import hiccup_series

    out = tmp_path / "s"
    r = run_cli("profile", "--no-perf", "--no-live", "--interval", "100ms", "--segment", "1s", "--duration", "4s",
                "--out", str(out), "--", *SUBJECT, "0", "--forever", "--rate", "2000", timeout=HANG_GUARD_S)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not (out / "hiccup.hlog").exists()
    index = json.loads((out / INDEX).read_text())
    per_segment = {}
    for seg in index["segments"]:
        log = out / seg["dir"] / "hiccup.hlog"
        ivs = read_hlog(log)[0].get("hiccup", []) if log.is_file() else []
        assert all(iv.start_s < seg["end_s"] for iv in ivs), (seg, [iv.start_s for iv in ivs])
        per_segment[seg["n"]] = len(ivs)
        if ivs:
            assert hiccup_series(Session.load(out / seg["dir"])) is not None  # a segment alone shows its own
    series = hiccup_series(Session.load(out))
    assert series is not None and len(series["t"]) == sum(per_segment.values()) >= 2, per_segment
    assert list(series["t"]) == sorted(series["t"])


def csv_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]] if path.is_file() else []


@needs_tool("perf", install="apt-get install linux-perf")
def test_perf_rows_are_cut_with_the_segments_and_their_union_is_the_runs(tmp_path):
    """Like the hiccups: no run-long perf.csv; each row goes into the segment its interval started
    in (or, arriving after that one closed, the next), a segment read alone has its own counters,
    and the segments' rows are every row perf gave, each once (the report reads their union)."""
    from tickscope.reports.analysis.views import perf_series

    out = tmp_path / "s"
    r = run_cli("profile", "--no-hiccup", "--no-live", "--interval", "100ms", "--segment", "2s", "--duration", "6s",
                "--out", str(out), "--", *SUBJECT, "0", "--forever", "--rate", "2000", timeout=HANG_GUARD_S)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not (out / "perf.csv").exists()
    perf = json.loads((out / "meta.json").read_text())["perf"]
    index = json.loads((out / INDEX).read_text())
    union, with_rows = [], 0
    for seg in index["segments"]:
        rows = csv_rows(out / seg["dir"] / "perf.csv")
        interval_s = perf["interval_ms"] / 1000
        assert all(float(t) + perf["run_offset_s"] - interval_s < seg["end_s"] for t, *_ in rows), (seg, rows)
        if rows:
            with_rows += 1
            assert perf_series(Session.load(out / seg["dir"])), seg  # a segment alone shows its own
        union += rows
    assert with_rows >= 2 and len(union) == perf["rows"] > 0, (with_rows, len(union), perf)
    assert len({(t, event) for t, event, *_ in union}) == len(union), "no row twice"
    times = [float(t) for t, *_ in union]
    assert times == sorted(times), "segments in time order"
    read = Session.load(out).side_bytes("perf.csv").decode().splitlines()
    assert read[0] == "time_s,event,value,unit,run_pct" and [x.split(",") for x in read[1:]] == union


def test_a_segment_whose_hiccups_have_not_come_yet_gets_no_empty_hiccup_log(tmp_path):
    """A loaded host delays the meter: at a cut, the intervals received may all belong to the next
    segment. The closing one then gets no hiccup.hlog (an empty one kept it for nothing, and read
    alone it had no hiccups); the next takes them."""
    from types import SimpleNamespace

    from tickscope.collectors.side.hiccup import HiccupCollector

    h = new_histogram()
    h.record_value(1_000)
    meter = HiccupCollector()
    meter.segments, meter.base_epoch_s = SimpleNamespace(path=None), 1000.0
    meter.pending.append((1001.5, 1001.6, h.encode().decode()))  # began 1.5 s into the run
    first, second = tmp_path / "000000", tmp_path / "000001"
    first.mkdir(), second.mkdir()
    meter.segment_closing(first, 0.0, 1.0)
    assert not (first / "hiccup.hlog").exists() and len(meter.pending) == 1
    meter.segment_closing(second, 1.0, 2.0)
    ivs = read_hlog(second / "hiccup.hlog")[0]["hiccup"]
    assert [(iv.start_s, iv.end_s) for iv in ivs] == [(1.5, 1.6)] and not meter.pending


def test_a_segment_of_an_idle_pipeline_keeps_what_the_side_collectors_saw(tmp_path):
    """A pipeline that writes no probe for seconds gives segments with no latency interval: kept
    when a side collector wrote into them (hiccups here), readable alone, so the run's hiccup
    intervals have no hole: each starts where the one before it ended."""
    from tickscope.reports.analysis.views import hiccup_series

    out = tmp_path / "s"
    r = run_cli("profile", "--no-perf", "--no-live", "--interval", "100ms", "--segment", "1s", "--duration", "4s",
                "--out", str(out), "--", *SUBJECT, "0", "--forever", "--rate", "0.001", timeout=HANG_GUARD_S)  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = json.loads((out / INDEX).read_text())
    kept = [seg for seg in index["segments"] if (out / seg["dir"] / "hiccup.hlog").is_file()]
    assert len(kept) >= 2 and kept == index["segments"], index["segments"]
    for seg in kept:
        alone = Session.load(out / seg["dir"])
        assert alone.tags == [] and hiccup_series(alone) is not None
    ivs = sorted((iv for log in [Session.load(out).side_hlog("hiccup.hlog")[0]] for iv in log["hiccup"]),
                 key=lambda iv: iv.start_s)  # fmt: skip
    assert len(ivs) >= 3
    assert all(abs(b.start_s - a.end_s) < 2e-3 for a, b in zip(ivs, ivs[1:], strict=False)), [
        (iv.start_s, iv.end_s) for iv in ivs
    ]


def test_the_end_a_window_counts_back_from_is_the_runs_even_after_intervals_that_held_no_value(tmp_path):
    """A run's last intervals may hold no value (the subject stopped; the final drain found
    nothing): they leave no line, but the run ends at its last roll, which the segment index
    records. Found under load: ``-DUR`` of the last segment's length counted back from the last
    line instead and reached into the segment before."""
    from tickscope.collectors.session.files import SessionWriter

    writer = SessionWriter(tmp_path / "s", {"name": "s"}, SegmentPolicy(1.0, None, None, None, 0.2))
    t, step = 0.0, 0.1
    for k in range(20):  # two segments of 1 s; the second's last half holds nothing
        h = new_histogram()
        if t < 1.5 - 1e-9:
            h.record_value(1000 + k)
        writer.write_interval({"tick_to_trade": h}, t, t + step, False)
        t = round(t + step, 9)
        if writer.segment_due(t):
            writer.cut_segment([], {}, {}, final=k == 19)
    index = json.loads((tmp_path / "s" / INDEX).read_text())["segments"]
    assert index[-1]["end_s"] == pytest.approx(2.0)
    tail = Session.load(tmp_path / "s", Window("-1.000s"))
    assert tail.total("tick_to_trade").total_count == 5, (
        "the second segment's five values, none of the first's"
    )
