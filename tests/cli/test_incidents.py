"""Incidents (``--incident``): real ``tickscope profile`` runs of subjects with slow ticks of known
length. What a test expects is read from the same run's own record (slowest.json, the subject's
truth file), never from how fast the host is: a normal tick preempted past the limit under load
is one more breach on both sides of the comparison."""

import json
import re
import sys
from pathlib import Path

from support import PROGRAMS, QUIET, SUBJECT
from support.cli import run_cli
from tickscope.collectors.session import Session

ERROR_LINE = re.compile(r"tickscope profile: (?!warning: )\S")
SLOW_NS = 120_000_000  # the injected slow ticks: far above a normal tick (a few µs), above the limit
LIMIT = "tick_to_trade>40ms"
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "session.schema.json").read_text())


def incidents(session_dir):
    root = session_dir / "incidents"
    return (
        [json.loads((d / "incident.json").read_text()) for d in sorted(root.iterdir())]
        if root.exists()
        else []
    )


def breaching(session_dir, limit_ns: int, stage: str | None = None) -> dict[int, dict]:
    """The run's own traces past the limit (slowest.json keeps every stamp of the 20 slowest)."""
    slowest = json.loads((session_dir / "slowest.json").read_text())
    if stage is None:
        over = {t["trace_id"]: t for t in slowest if t["tick_to_trade_ns"] > limit_ns}
    else:
        over = {t["trace_id"]: t for t in slowest if any(s.get("stage_ns", 0) > limit_ns for s in t["stamps"]
                                                         if s["point"] == "signal")}  # fmt: skip
    assert len(over) < len(slowest), "more breaches than slowest.json holds: the count would be a guess"
    return over


def test_an_injected_slow_tick_is_an_incident_holding_its_exact_trace_and_its_neighbours(tmp_path):
    s = tmp_path / "s"
    out = run_cli("profile", "--duration", "60s", "--out", str(s), "--no-perf", "--hiccup", "--no-live",
                  "--incident", LIMIT, "--", *SUBJECT, "3000", "--rate", "2000",
                  "--slow-tick", f"1500={SLOW_NS}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    over = breaching(s, 40_000_000)
    assert 1500 in over
    meta = json.loads((s / "meta.json").read_text())["incidents"]
    found = incidents(s)
    assert meta["breaches"] == len(over)
    assert (
        meta["failed"] == 0
        and meta["written"] == len(found)
        and meta["written"] + meta["suppressed"] + meta["joined"] == meta["breaches"]
    )
    doc = next(
        d for d in found if d["trace_id"] == 1500 or any(a["trace_id"] == 1500 for a in d["also_breached"])
    )
    if doc["trace_id"] == 1500:  # (joined only if a neighbour was itself preempted past the limit)
        truth = over[1500]
        assert doc["trigger"] == LIMIT and doc["value_ns"] == truth["tick_to_trade_ns"] >= SLOW_NS
        assert [x["ts_ns"] for x in doc["breaching"]["stamps"]] == [x["ts_ns"] for x in truth["stamps"]]
        assert [x.get("stage_ns") for x in doc["breaching"]["stamps"]] == [
            x.get("stage_ns") for x in truth["stamps"]
        ]
    around = {t["trace_id"] for t in doc["neighbours"] + doc["overlapping"]} | {doc["trace_id"]}
    assert {1499, 1500, 1501} <= around, "the ticks either side of the slow one are its neighbours"
    assert doc["window"]["history_complete"] and doc["buffer"]["overflow_rows"] == 0
    assert doc["hiccup"]["samples"] > 0, ("the hiccup meter's view of those milliseconds", doc["hiccup"])
    assert "context_switches" in doc["unavailable"] and "perf" in doc["unavailable"]["context_switches"]
    trace = json.loads(next((s / "incidents").iterdir()).joinpath("trace.perfetto.json").read_text())
    events = trace["traceEvents"]
    assert any(
        e["ph"] == "M" and e["name"] == "thread_name" and "tick-subject" in e["args"]["name"] for e in events
    )
    assert any(e["ph"] == "C" and e["name"] == "hiccup" for e in events), "a hiccup counter track"
    assert any(e["ph"] == "X" and e["args"]["trace_id"] == 1500 for e in events)
    # report lists it, the HTML page links it
    listed = run_cli("report", str(s))
    assert listed.returncode == 0, listed.stderr
    assert f"incidents: {meta['written']} written, {meta['suppressed']} suppressed" in listed.stdout
    assert LIMIT in listed.stdout and "trace 1500" in listed.stdout or doc["trace_id"] != 1500
    html = run_cli("report", str(s), "-o", str(tmp_path / "r.html"))
    assert html.returncode == 0, html.stderr
    page = (tmp_path / "r.html").read_text()
    assert 'id="incidents"' in page and "trace.perfetto.json" in page and "incident.json" in page


def test_the_rate_limit_writes_that_many_and_counts_the_suppressed_exactly(tmp_path):
    """Four slow ticks 500 ticks apart (250 ms at 2k/s: more than two windows of 100 ms), a stage
    trigger, two incidents an hour: two written, every other breach counted."""
    s = tmp_path / "s"
    slow = [a for seq in (500, 1000, 1500, 2000) for a in ("--slow-tick", f"{seq}={SLOW_NS}")]
    out = run_cli("profile", "--duration", "60s", "--out", str(s), *QUIET, "--incident", "strategy>40ms",
                  "--incident-max", "2/h", "--", *SUBJECT, "2500", "--rate", "2000", *slow)  # fmt: skip
    assert out.returncode == 0, out.stderr
    over = breaching(s, 40_000_000, stage="signal")
    assert {500, 1000, 1500, 2000} <= set(over)
    meta = json.loads((s / "meta.json").read_text())["incidents"]
    assert meta["breaches"] == len(over)
    assert meta["written"] == len(incidents(s)) == 2 and meta["failed"] == 0
    assert meta["suppressed"] == len(over) - 2 - meta["joined"]
    assert f"{meta['suppressed']} suppressed by --incident-max 2/h" in out.stderr
    for doc in incidents(s):
        assert doc["tag"] == "strategy" and doc["value_ns"] >= SLOW_NS
        stages = [x.get("stage_ns") for x in doc["breaching"]["stamps"] if x["point"] == "signal"]
        assert stages == [doc["value_ns"]], "the value is the breaching trace's own strategy span"


def test_a_trigger_on_a_dimension_value_counts_that_value_alone(tmp_path):
    """dims_subject: XNAS orders go out 2 ms after the signal, BATS ones a few µs after. Every
    XNAS order whose own tick-to-trade (the truth file's stamps) passed 1 ms is a breach."""
    s, truth = tmp_path / "s", tmp_path / "truth.txt"
    subject = [
        sys.executable,
        str(PROGRAMS / "dims_subject.py"),
        "400",
        "--truth",
        str(truth),
        "--slow",
        "XNAS=2000",
    ]
    out = run_cli("profile", "--duration", "60s", "--out", str(s), *QUIET, "--incident",
                  "tick_to_trade|venue=XNAS>1ms", "--incident-max", "3/h", "--incident-window", "5ms", "--", *subject)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in truth.read_text().splitlines()]
    xnas_over = sum(1 for _, leg, rx, _, tx, _, _ in rows if leg == "0" and int(tx) - int(rx) > 1_000_000)
    assert xnas_over >= 100
    meta = json.loads((s / "meta.json").read_text())["incidents"]
    assert meta["breaches"] == xnas_over
    assert meta["written"] == len(incidents(s)) == 3
    assert meta["written"] + meta["suppressed"] + meta["joined"] == xnas_over
    for doc in incidents(s):
        assert doc["dimensions"] == {"venue": "XNAS"} and doc["breaching"].get("leg") == 0


def test_bad_incident_options_are_one_line_errors_before_anything_starts(tmp_path):
    for args, needle in [
        (["--incident", "tick_to_trade"], "expected TAG>LATENCY"),
        (["--incident", "tick_to_trade>500"], "not a latency with its unit"),
        (["--incident", ">1ms"], "not a stage or tag name"),
        (["--incident", "tick_to_trade|venue>1ms"], "not DIMENSION=VALUE"),
        (["--incident", "tick_to_trade>1ms", "--incident-max", "ten"], "expected N/PERIOD"),
        (["--incident", "tick_to_trade>1ms", "--incident-max", "3/fortnight"], "not a period"),
        (["--incident", "tick_to_trade>1ms", "--incident-window", "20s"], "between 1ms and 10s"),
        (["--incident-window", "50ms"], "need a trigger"),
    ]:
        out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, *args, "--", *SUBJECT, "10")
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr
        lines = [line for line in out.stderr.splitlines() if ERROR_LINE.match(line)]
        assert len(lines) == 1 and needle in lines[0], (args, out.stderr)
        assert not (tmp_path / "s").exists(), "refused before the session was claimed"


def test_a_run_without_a_trigger_writes_no_incidents(tmp_path):
    s = tmp_path / "s"
    out = run_cli("profile", "--duration", "60s", "--out", str(s), *QUIET, "--", *SUBJECT, "300", "--rate", "2000",
                  "--slow-tick", f"100={SLOW_NS}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert not (s / "incidents").exists()
    assert "incidents" not in Session.load(s).meta and "incidents:" not in run_cli("report", str(s)).stdout
