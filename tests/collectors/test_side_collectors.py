"""Side collectors against the real tools on this host: perf, py-spy, the hiccup meter, /proc."""

import json
import os
import subprocess
import sys
import time

import pytest
from hdrh.log import HistogramLogReader

from conftest import needs_tool
from tickscope.collectors.run.doctor import run_checks
from tickscope.collectors.run.host import host_facts, thread_context_switches
from tickscope.collectors.session.hdr import new_histogram
from tickscope.collectors.side.hiccup import HiccupCollector
from tickscope.collectors.side.perfstat import PerfStatCollector, parse_line
from tickscope.collectors.side.pyspy import PySpyCollector
from tickscope.reports import doctor as doctor_render

CPU_SECOND = "import sys, time\nsys.stdin.read()\nwhile time.process_time() < 1.0: pass\n"
BUSY = "import time\ndef hot_loop_of_the_test():\n    t = time.time()\n    while time.time() - t < {s}: pass\nhot_loop_of_the_test()\n"


def busy(seconds):
    return subprocess.Popen([sys.executable, "-c", BUSY.format(s=seconds)])


def test_perf_csv_lines_parse_including_not_supported():
    assert (
        parse_line("     1.000,472.55,msec,task-clock,472545943,100.00,0.945,CPUs utilized")["value"]
        == 472.55
    )
    row = parse_line("     1.000,<not supported>,,cycles,0,100.00,,")
    assert row["value"] is None and row["status"] == "<not supported>" and row["event"] == "cycles"
    assert parse_line("# started on Wed") is None and parse_line("") is None


@needs_tool("perf", install="apt-get install linux-perf")
def test_perf_collector_records_software_events_of_a_real_process(tmp_path):
    """A process spends one second of CPU once perf counts it (however long the host makes that
    take): perf.csv's task-clock adds up to that second, never more than the process used."""
    proc = subprocess.Popen([sys.executable, "-c", CPU_SECOND], stdin=subprocess.PIPE)
    c = PerfStatCollector(interval_ms=500)
    c.start(proc.pid, tmp_path)
    csv, deadline = tmp_path / "perf.csv", time.monotonic() + 60  # a hang guard
    while not (csv.exists() and ",task-clock," in csv.read_text()):  # perf counts the process
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.stdin.close()  # go
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    proc.returncode = 0
    warnings = c.stop()
    lines = csv.read_text().splitlines()
    assert lines[0] == "time_s,event,value,unit,run_pct"
    events = {line.split(",")[1] for line in lines[1:]}
    assert {"task-clock", "context-switches", "page-faults"} <= events
    task_ms = sum(
        float(line.split(",")[2]) for line in lines[1:] if ",task-clock," in line and line.split(",")[2]
    )
    used_ms = (usage.ru_utime + usage.ru_stime) * 1000
    # the interpreter's start (~30 ms of CPU) came before perf counted: the rest is the second
    assert 900 < task_ms <= used_ms + 10, (task_ms, used_ms)
    assert all("Traceback" not in w for w in warnings)


@needs_tool("perf", install="apt-get install linux-perf")
def test_perf_gives_an_incident_the_context_switches_of_the_intervals_around_its_window(tmp_path):
    c = PerfStatCollector(interval_ms=500)
    proc = busy(1.5)
    c.start(proc.pid, tmp_path)
    proc.wait()
    c.stop()
    start, end = c.started_ns, time.monotonic_ns()
    view = c.incident_view(start + 100_000_000, start + 200_000_000)
    assert view.unavailable is None and view.covered_until_ns >= start + 200_000_000, "perf ended: all in"
    assert len(view.figures["intervals"]) == 1, "the one 500 ms interval holding those 100 ms"
    assert view.figures["context_switches"] >= 0 and "bound it" in view.figures["note"]
    assert [t for t, _ in view.counter] == [view.figures["intervals"][0]["start_monotonic_ns"]]
    assert len(c.incident_view(start, end).figures["intervals"]) >= 3


def test_the_hiccup_meter_gives_an_incident_its_samples_of_the_window(tmp_path):
    c = HiccupCollector(resolution_ms=1.0)
    before = time.monotonic_ns()
    c.start(None, tmp_path)
    deadline = time.monotonic() + 60  # a hang guard: samples come every 100 ms of the meter's time
    while c.incident_view(before, time.monotonic_ns()).figures.get("samples", 0) < 50:
        assert time.monotonic() < deadline and c.proc.poll() is None
        time.sleep(0.05)
    c.stop()
    kept = list(c.samples)
    view = c.incident_view(kept[10][0], kept[40][0])
    assert view.unavailable is None and view.figures["samples"] == 31
    assert view.figures["max_ns"] == max(v for _, v in kept[10:41]) and view.counter == kept[10:41]
    assert view.covered_until_ns == kept[-1][0]


def test_the_hiccup_meter_samples_once_started_so_the_subjects_first_ticks_have_a_view(tmp_path):
    """``start`` returns once the meter samples (the run starts it before the subject): its first
    sleep began before ``start`` returned, on a host of any speed."""
    c = HiccupCollector(resolution_ms=1.0)
    c.start(None, tmp_path)
    returned = time.monotonic_ns()
    deadline = time.monotonic() + 60  # a hang guard
    while not c.samples:
        assert time.monotonic() < deadline and c.proc.poll() is None
        time.sleep(0.02)
    assert c.stop() == [] and HiccupCollector.before_subject
    first_end, first_overshoot = c.samples[0]
    assert first_end - first_overshoot - c.resolution_ns <= returned


def test_a_hiccup_longer_than_the_incident_window_is_in_its_view():
    """Samples (end, overshoot) of 1 ms sleeps: the meter starved from 149 to 400 ms saw the whole
    200-300 ms window, though its sleep ended after it; sleeps that ended before the window, or
    began after it, did not."""
    c = HiccupCollector(resolution_ms=1.0)
    ms = 1_000_000
    c.samples.extend([(149 * ms, 1 * ms), (150 * ms, 1 * ms), (400 * ms, 250 * ms), (401 * ms, ms // 5)])
    view = c.incident_view(200 * ms, 300 * ms)
    assert view.counter == [(400 * ms, 250 * ms)]
    # a sleep is its resolution and its overshoot: the last began 0.3 ms before the window's end, 0.8 ms before its overshoot
    assert c.incident_view(200 * ms, 400 * ms + ms // 2).counter == [
        (400 * ms, 250 * ms),
        (401 * ms, ms // 5),
    ]
    assert view.figures["samples"] == 1 and view.figures["max_ns"] == view.figures["stalled_ns"] == 250 * ms
    assert c.incident_view(150 * ms, 150 * ms).counter == [(150 * ms, 1 * ms), (400 * ms, 250 * ms)]


def test_missing_perf_and_pyspy_are_warnings_not_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    p, s = PerfStatCollector(), PySpyCollector()
    p.start(os.getpid(), tmp_path)
    s.start(os.getpid(), tmp_path)
    assert "apt-get install linux-perf" in " ".join(p.stop())
    assert "not installed" in p.incident_view(0, 1).unavailable, "an incident says why it has no perf view"
    assert "pip install py-spy" in " ".join(s.stop())


@needs_tool("py-spy", install="pip install py-spy")
def test_pyspy_writes_a_valid_speedscope_profile_with_the_hot_function(tmp_path):
    proc = busy(4)
    time.sleep(0.3)
    c = PySpyCollector(rate=200)
    c.start(proc.pid, tmp_path)
    time.sleep(2)
    warnings = c.stop()
    proc.kill()
    path = tmp_path / "profile.speedscope.json"
    if not path.exists() and any("ptrace" in w for w in warnings):
        pytest.skip(f"ptrace not permitted here: {warnings}")
    doc = json.loads(path.read_text())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    names = [f["name"] for f in frames]
    sampled = [p for p in doc["profiles"] if p["type"] == "sampled"]
    assert sampled
    hot = names.index("hot_loop_of_the_test")
    hits = 0
    for p in sampled:
        assert len(p["samples"]) == len(p["weights"])
        for stack in p["samples"]:
            assert all(0 <= i < len(frames) for i in stack)
            hits += hot in stack
    assert hits > 10


def test_hiccup_meter_writes_a_readable_interval_log(tmp_path):
    c = HiccupCollector(resolution_ms=1)
    c.start(None, tmp_path)
    log, deadline = tmp_path / "hiccup.hlog", time.monotonic() + 60  # a hang guard
    while not (log.exists() and log.read_text().count("hiccup") >= 2):  # two one-second intervals
        assert time.monotonic() < deadline and c.proc.poll() is None
        time.sleep(0.05)
    latest = c.latest()
    assert c.stop() == []
    reader = HistogramLogReader(str(log), new_histogram())
    intervals = []
    while (h := reader.get_next_interval_histogram()) is not None:
        assert h.get_tag() == "hiccup"
        intervals.append(h)
    assert len(intervals) >= 2
    for h in intervals[:2]:
        # a sample per 1 ms sleep (its overshoot): at most one per millisecond the interval spans
        span_ms = h.get_end_time_stamp() - h.get_start_time_stamp()
        assert 0 < h.total_count <= span_ms + 1, (h.total_count, span_ms)
    assert latest and latest["max_us"] >= latest["p50_us"]


def test_host_facts_and_thread_context_switches():
    facts = host_facts()
    for key in ("hostname", "kernel", "cpu_model", "cpus", "clocksource", "tsc", "load_avg", "python"):
        assert key in facts
    threads = thread_context_switches(os.getpid())
    assert str(os.getpid()) in threads and threads[str(os.getpid())]["voluntary"] >= 0


def test_doctor_gives_a_fix_for_every_warning():
    findings = run_checks(quick=True)
    names = {f.name for f in findings}
    assert {"clocksource", "invariant TSC", "CPU governor", "isolated CPUs", "timer cost", "py-spy"} <= names
    assert all(f.fix for f in findings if f.status != "ok")
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(doctor_render.render([f.as_dict() for f in findings]))
    assert "timer cost" in console.export_text()


def test_perf_advice_never_tells_root_to_run_as_root():
    from tickscope.collectors.side.perfstat import perf_advice

    assert "run as root" in perf_advice(False) and "root" in perf_advice(True)
    assert "run as root" not in perf_advice(True)
