"""The session directory: written as it goes, readable by HdrHistogram's tools, loadable after a kill."""

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.session import Session, SessionError, SessionWriter
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram
from tickscope.probe import Point, TickWriter


def record_session(ring_dir, out, ticks=500, intervals=3):
    w = TickWriter(
        [Point("md.rx"), Point("signal", stage="strategy"), Point("order.tx", stage="send", trade=True)]
    )
    writer = SessionWriter(out, {"name": "unit"})
    col = Collector(ring_dir, writer, interval_s=0.05)
    t = w.stamps
    seq = 0
    for k in range(intervals):
        for _ in range(ticks):
            seq += 1
            base = 10_000 * seq
            t[0], t[1] = base, base + 1_000 + (seq % 7)
            if seq % 5:
                t[2] = base + 3_000 + k * 100
            t = w.commit(seq)
        col.poll()
        import time

        time.sleep(0.06)
        col.poll()
    return w, writer, col


def test_session_roundtrip_has_every_file_and_count(ring_dir, tmp_path):
    _, _, col = record_session(ring_dir, tmp_path / "s")
    col.finish()
    s = Session.load(tmp_path / "s")
    assert s.stages == ["strategy", "send"] and s.trade_stages == ["strategy", "send"]
    assert s.tags == ["strategy", "send", "tick_to_trade", "tick_to_decision"]
    summary = s.summary()
    assert summary["strategy"]["count"] == 1500 and summary["tick_to_trade"]["count"] == 1200
    assert summary["tick_to_decision"]["count"] == 300
    assert s.meta["status"] == "complete" and s.meta["drop_free"] is True
    assert s.meta["counters"]["produced"] == s.meta["counters"]["drained"] == 1500
    assert s.total("strategy").total_count == 1500
    assert len(s.slowest) == 20 and s.slowest[0]["tick_to_trade_ns"] >= s.slowest[-1]["tick_to_trade_ns"]
    assert [st["point"] for st in s.slowest[0]["stamps"]] == ["md.rx", "signal", "order.tx"]


def test_latency_log_opens_in_hdrh_log_reader(ring_dir, tmp_path):
    _, _, col = record_session(ring_dir, tmp_path / "s")
    col.finish()
    reader = HistogramLogReader(str(tmp_path / "s" / "latency.hlog"), new_histogram())
    tags, total = set(), 0
    while (h := reader.get_next_interval_histogram()) is not None:
        tags.add(h.get_tag())
        if h.get_tag() == "strategy":
            total += h.total_count
    assert tags == {"strategy", "send", "tick_to_trade", "tick_to_decision"} and total == 1500


def test_a_killed_collector_leaves_a_loadable_session(ring_dir, tmp_path):
    _, writer, col = record_session(ring_dir, tmp_path / "s")
    # No finish(): the collector "died". Its last line is also cut mid-write.
    writer.latency.f.write("Tag=strategy,9.000,1.000,0.1,HISTFAAAA")
    writer.latency.f.flush()
    s = Session.load(tmp_path / "s")
    assert s.summary()["strategy"]["count"] > 0
    assert any("did not finish" in w for w in s.warnings)
    assert any("truncated" in w for w in s.warnings)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
        (lambda d: (d / "meta.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "latency.hlog").write_text(""), "holds no intervals"),
        (lambda d: (d / "latency.hlog").unlink(), "latency.hlog is missing"),
        (lambda d: (d / "latency.hlog").write_text("Tag=a,0,1,2,garbage\nTag=a,1,1,2,garbage\n"), "line 1"),
    ],
)
def test_damaged_sessions_fail_with_one_line(ring_dir, tmp_path, damage, message):
    _, _, col = record_session(ring_dir, tmp_path / "s", intervals=1)
    col.finish()
    damage(tmp_path / "s")
    with pytest.raises(SessionError) as e:
        Session.load(tmp_path / "s")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_session_is_a_clear_error(tmp_path):
    with pytest.raises(SessionError, match="no session at"):
        Session.load(tmp_path / "nope")


def test_unwritable_session_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SessionError, match="cannot write session directory"):
        SessionWriter(blocker / "s", {})


def test_a_bare_hlog_from_another_tool_loads_as_a_session(tmp_path):
    # An untagged log with absolute timestamps, as HdrHistogram's Java HistogramLogWriter writes.
    h = HdrHistogram(1, 3_600_000_000, 3)
    BulkRecorder(h).record(h, np.array([1000, 2000, 3000]))
    start = 1_700_000_000.0
    (tmp_path / "wrk2.hlog").write_text(
        f"#[StartTime: {start:.3f} (seconds since epoch), whenever]\n"
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
        f"{start + 1:.3f},1.000,0.003,{h.encode().decode()}\n"
    )
    s = Session.load(tmp_path / "wrk2.hlog")
    assert s.tags == ["default"] and s.summary()["default"]["count"] == 3
    assert s.intervals["default"][0].start_s == pytest.approx(1.0)


def test_summary_json_matches_the_log(ring_dir, tmp_path):
    _, _, col = record_session(ring_dir, tmp_path / "s")
    col.finish()
    saved = json.loads((tmp_path / "s" / "summary.json").read_text())
    s = Session.load(tmp_path / "s")
    s._summary = None
    assert saved.pop("attribution") == s.attribution  # the one key that is not a tag
    assert s.summary() == saved


def test_tags_joined_after_the_run_go_in_before_the_close_and_nothing_after_it(tmp_path):
    """``add_tags``: more intervals into the open latency.hlog and their totals into summary.json
    (beside the collector's rows, which later summaries keep); once closed, every write is refused
    with one line instead of reopening a file of a finished session."""
    writer = SessionWriter(tmp_path / "s", {"name": "unit"})
    writer.write_summary({"feed": {"count": 1}}, [])

    def intervals():
        for i in range(3):
            h = new_histogram()
            h.record_value(1000 * (i + 1))
            yield float(i), float(i + 1), {"wire_to_wire": h}

    rows = writer.add_tags(intervals())
    assert rows["wire_to_wire"]["count"] == 3 and rows["wire_to_wire"]["max"] >= 3000
    writer.write_summary({"feed": {"count": 2}}, [])  # the collector's last state keeps the joined rows
    writer.close()
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["feed"] == {"count": 2} and summary["wire_to_wire"] == json.loads(
        json.dumps(rows["wire_to_wire"])
    )
    assert len(Session.load(tmp_path / "s").intervals["wire_to_wire"]) == 3
    for late in (writer.save_meta, lambda: writer.add_tags(intervals()), lambda: writer.close()):
        with pytest.raises(SessionError, match="is closed"):
            late()


def one_interval(value: int) -> dict:
    h = new_histogram()
    h.record_value(value)
    return {"tick_to_trade": h}


def test_a_killed_session_s_summary_is_its_log_s_not_a_stale_summary_json(tmp_path):
    """summary.json is rewritten every few seconds while running, the log flushed every interval:
    a session left "running" (killed) takes its figures from the log, up to its last interval."""
    writer = SessionWriter(tmp_path / "s", {"name": "unit"})
    writer.write_interval(one_interval(1_000), 0.0, 1.0, False)
    writer.write_summary({"tick_to_trade": {"count": 1, "min": 1000, "mean": 1000.0, "p50": 1000, "p90": 1000,
                                            "p99": 1000, "p99_9": 1000, "p99_99": 1000, "max": 1000}}, [])  # fmt: skip
    for i in (1, 2):  # intervals after the last state save, then the kill (no close)
        writer.write_interval(one_interval(5_000), float(i), i + 1.0, False)
    writer.latency.flush()
    s = Session.load(tmp_path / "s")
    row = s.summary()["tick_to_trade"]
    assert row["count"] == 3 and row["max"] == s.total("tick_to_trade").get_max_value() >= 5_000
    assert any("did not finish" in w for w in s.warnings)


def test_state_files_are_compact_while_running_and_indented_once_closed(tmp_path):
    writer = SessionWriter(tmp_path / "s", {"name": "unit"})
    writer.write_interval(one_interval(1_000), 0.0, 1.0, False)
    writer.write_summary({"tick_to_trade": {"count": 1}}, [{"trace_id": 7}])
    files = [tmp_path / "s" / name for name in ("meta.json", "summary.json", "slowest.json")]
    running = [f.read_text() for f in files]
    assert all(text.count("\n") == 1 for text in running), running  # one line each
    writer.close()
    closed = [f.read_text() for f in files]
    assert all(text.count("\n") > 1 for text in closed), closed  # indented
    assert [json.loads(t) for t in closed[1:]] == [json.loads(t) for t in running[1:]]
    assert json.loads(closed[0])["status"] == "complete"


def test_the_collectors_intervals_start_when_the_session_does_on_the_epoch_the_side_collectors_use(tmp_path):
    """A session's logs are anchored at its start (epoch seconds) and the hiccup meter and perf
    stamp epoch time, so the collector's interval grid must start at that same instant: it started
    when the collector was made, after its kernels loaded, and every latency interval was written
    that long before its time (0.1 s here; 12 s on a fresh host), beside the wrong hiccups."""
    import time

    (tmp_path / "rings").mkdir()
    writer = SessionWriter(tmp_path / "s", {"name": "s"})
    time.sleep(0.2)  # what happens between the two: the collector's kernels loading
    c = Collector(tmp_path / "rings", writer)
    start_epoch_ns = round(writer.meta["start_epoch_s"] * 1e9)
    assert abs(c.start_ns + c.realtime_offset - start_epoch_ns) <= c.realtime_uncertainty + 1_000
    assert Collector(tmp_path / "rings").start_ns > c.start_ns  # without a session: its own start


@pytest.mark.parametrize("seed", range(4))
def test_the_slowest_kept_are_the_exact_slowest_over_many_flushes(ring_dir, tmp_path, seed):
    """A flush looks for its slowest only above what the kept ones already beat: across 60 flushes
    of random tick-to-trade (ties included, the slowest early and late) the session's
    20 slowest are exactly the 20 largest values offered, each with its own trace's stamps."""
    rng = np.random.default_rng(seed)
    w = TickWriter([Point("md.rx"), Point("order.tx", stage="send", trade=True)])
    col = Collector(ring_dir, SessionWriter(tmp_path / "s", {"name": "unit"}), interval_s=3600)
    t, seq, offered = w.stamps, 0, {}
    for _ in range(60):
        for t2t in rng.integers(1_000, 21_000, 200):  # ties, and values just above the kept ones
            seq += 1
            t2t = int(t2t) + (5_000_000 if seq in (700, 901) else 0)  # two far slower early on
            t[0], t[1] = 100_000_000 * seq, 100_000_000 * seq + t2t
            offered[seq] = t2t
            t = w.commit(seq)
        col.poll()
        col.poll()  # closes the round drained by the poll before
    col.finish()
    slowest = Session.load(tmp_path / "s").slowest
    assert [s["tick_to_trade_ns"] for s in slowest] == sorted(offered.values(), reverse=True)[:20]
    assert all(offered[s["trace_id"]] == s["tick_to_trade_ns"] for s in slowest)
