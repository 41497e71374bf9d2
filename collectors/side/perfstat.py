"""``perf stat`` interval counters of the subject, into ``perf.csv`` and the live view.

Runs ``perf stat -x, -I <ms> -p PID`` (or ``-a``, every CPU, for ``live`` without ``--perf-pid``)
with software events always (task-clock, context-switches, cpu-migrations, page-faults) and hardware events when this host supports them
(cycles, instructions, cache-misses, branch-misses: VMs without a virtual PMU say
``<not supported>``, which is reported once as a warning, not as an error).

perf.csv columns: ``time_s,event,value,unit,run_pct`` (time since perf started; value empty when
the event was not counted in that interval).

In a segmented session (a long run) there is no run-long perf.csv: each row goes into the
perf.csv of the segment its interval started in (one that arrives after that segment closed goes
into the next), so retention removes the counters with the latency they sat beside and a segment
read alone has its own. ``time_s`` stays perf's own, so the segments' rows, header aside, are the
run's rows: ``Session.side_bytes`` reads their union.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from tickscope.collectors.rings.incidents import WindowView
from tickscope.collectors.run.children import spawn_child
from tickscope.collectors.session import PERF_CSV
from tickscope.collectors.session.segments import SegmentedLog
from tickscope.collectors.side import Conclusion, SideCollectorBase

INTERVALS_KEPT = 64  # the last intervals' software counts, for incidents (context switches in a window)
HEADER = "time_s,event,value,unit,run_pct\n"
SOFTWARE_EVENTS = ["task-clock", "context-switches", "cpu-migrations", "page-faults"]
HARDWARE_EVENTS = ["cycles", "instructions", "cache-misses", "branch-misses"]


def parse_line(line: str) -> dict | None:
    """One ``perf stat -x, -I`` line -> {time_s, event, value (float|None), unit, run_pct}; None if not a sample."""
    parts = line.strip().split(",")
    if len(parts) < 4 or line.lstrip().startswith("#"):
        return None
    try:
        time_s = float(parts[0])
    except ValueError:
        return None
    raw, unit, event = parts[1], parts[2], parts[3]
    value = None if raw.startswith("<") else _float(raw)
    run_pct = _float(parts[5]) if len(parts) > 5 else None
    return {"time_s": time_s, "event": event, "value": value, "unit": unit, "run_pct": run_pct,
            "status": raw if raw.startswith("<") else "ok"}  # fmt: skip


def _float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def perf_advice(is_root: bool) -> str:
    """What to do about a refused perf stat: root is not told to become root (a VM without a
    virtual PMU, or a container without CAP_PERFMON, refuses root too)."""
    if is_root:
        return "refused even as root: a VM without a virtual PMU or a container without CAP_PERFMON; see tickscope doctor"
    return "try: sysctl kernel.perf_event_paranoid=1, or run as root"


class PerfStatCollector(SideCollectorBase):
    name = "perf"

    def __init__(self, interval_ms: int = 1000, events: list[str] | None = None, *, pid: int | None = None,
                 system_wide: bool = False):  # fmt: skip
        super().__init__()
        self.pid = pid  # a process named by the user (``live --perf-pid``) rather than the subject
        self.system_wide = system_wide  # ``perf stat -a``: every CPU (``live`` without a pid)
        self.interval_ms = interval_ms
        self.events = events
        self.proc: subprocess.Popen | None = None
        self.unsupported: set[str] = set()
        self.rows = 0
        self.why_not: str | None = "perf stat was not started"
        self.started_ns = 0
        # (start, end) CLOCK_MONOTONIC ns of each interval ended (perf's clock started at its spawn,
        # within the ms exec takes) -> software event counts
        self.intervals: deque[tuple[int, int, dict[str, float]]] = deque(maxlen=INTERVALS_KEPT)
        self.out = None  # the run's perf.csv (unsegmented), or the open segment's
        self.segments: SegmentedLog | None = None  # a segmented session: rows go to its open segment
        self.run_offset_s = 0.0  # perf's time_s + this = seconds after the session's start
        self.pending: deque[tuple[float, str]] = deque()  # (interval start, run-relative s; the row)
        self.out_dir: Path | None = None
        self.stopped = False

    def bind(self, subject, collector) -> None:
        session = collector.session
        if session is not None and session.segments is not None:
            self.segments = session.segments

    def start(self, pid: int | None, session_dir: Path) -> None:
        perf = shutil.which("perf")
        if perf is None:
            self.warn("perf not found (apt-get install linux-perf; counters skipped, session goes on)")
            self.why_not = "perf is not installed (apt-get install linux-perf)"
            return
        pid = self.pid or pid
        if pid is None and not self.system_wide:
            self.why_not = "no subject pid to count (perf stat follows the subject profile starts)"
            return
        self.why_not = None
        self.started_ns = time.monotonic_ns()
        target = ["-a"] if pid is None else ["-p", str(pid)]
        events = self.events or SOFTWARE_EVENTS + HARDWARE_EVENTS
        if self.segments is None:
            self.out = open(Path(session_dir) / PERF_CSV, "w", encoding="utf-8")  # noqa: SIM115
            self.out.write(HEADER)
            self.out.flush()
        else:
            self.run_offset_s = time.time() - self.segments.start_epoch_s
        self.proc = spawn_child([perf, "stat", "-x,", "-I", str(self.interval_ms), *target, "-e", ",".join(events)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True, name="perf-stat")
        self.thread.start()

    def _read(self) -> None:
        latest: dict = {}
        counts: dict[str, float] = {}
        last_time = None
        for line in self.proc.stderr:
            row = parse_line(line)
            if row is None:
                text = line.strip()
                if text and (
                    "not permitted" in text.lower() or "permission" in text.lower() or "error" in text.lower()
                ):
                    self.warn(f"{text[:120]} ({perf_advice(os.geteuid() == 0)})")
                continue
            if row["value"] is None and row["status"] == "<not supported>":
                self.unsupported.add(row["event"])
            if last_time is not None and row["time_s"] != last_time and latest:
                self.publish(latest)
                latest = {}
            if last_time is not None and row["time_s"] != last_time:
                self._interval_ended(last_time, counts)
            if last_time is None or row["time_s"] != last_time:
                counts = {}
            last_time = row["time_s"]
            if row["value"] is not None and row["event"] in SOFTWARE_EVENTS:
                counts[row["event"]] = row["value"]
            v = "" if row["value"] is None else row["value"]
            text = f"{row['time_s']:.3f},{row['event']},{v},{row['unit']},{row['run_pct'] or ''}\n"
            if self.segments is None:
                self.out.write(text)
                self.out.flush()
            else:  # written on the drain thread, which cuts the segments: see after_poll
                self.pending.append((self.run_offset_s + row["time_s"] - self.interval_ms / 1000, text))
            self.rows += 1
            if row["value"] is not None:
                per_s = row["value"] / (self.interval_ms / 1000)
                latest[row["event"] + ("_ms_per_s" if row["unit"] == "msec" else "_per_s")] = round(per_s, 1)
        if latest:
            self.publish(latest)
        if last_time is not None:
            self._interval_ended(last_time, counts)
        with self._lock:
            self.done = True

    done = False  # perf stat has exited: no interval will come

    def _interval_ended(self, time_s: float, counts: dict[str, float]) -> None:
        end = self.started_ns + round(time_s * 1e9)
        prev_end = self.intervals[-1][1] if self.intervals else self.started_ns
        with self._lock:
            self.intervals.append((prev_end, end, counts))

    def after_poll(self, collector) -> None:
        if self.pending:
            self._write_pending(self.segments.path, None)

    def segment_closing(self, segment_dir: Path, start_s: float, end_s: float) -> None:
        if self.segments is None or (not self.pending and self.out_dir != segment_dir):
            return
        # Once perf stopped nothing more comes: this segment (the last, or one cut by the final
        # drain) takes every row left.
        self._write_pending(segment_dir, None if self.stopped else end_s)
        self.out.close()
        self.out, self.out_dir = None, None

    def _write_pending(self, segment_dir: Path, until_s: float | None) -> None:
        """The rows received, into ``segment_dir``'s perf.csv: all of them, or those whose interval
        started before ``until_s`` (the rest belong to the next segment)."""
        if self.out_dir != segment_dir:
            if self.out is not None:
                self.out.close()
            self.out = open(segment_dir / PERF_CSV, "w", encoding="utf-8")  # noqa: SIM115
            self.out.write(HEADER)
            self.out_dir = segment_dir
        while self.pending and (until_s is None or self.pending[0][0] < until_s):
            self.out.write(self.pending.popleft()[1])
        self.out.flush()

    def conclude(self, collector) -> Conclusion:
        if self.why_not is not None:
            return Conclusion()
        meta = {"rows": self.rows, "interval_ms": self.interval_ms, "written_to": PERF_CSV}
        if self.segments is not None:
            # time_s + run_offset_s: seconds after the session's start (how rows were given to segments)
            meta.update(written_to=f"{PERF_CSV} of each segment", run_offset_s=round(self.run_offset_s, 6))
        return Conclusion(meta=meta)

    def incident_view(self, start_ns: int, end_ns: int) -> WindowView:
        name = "context_switches"
        if self.why_not is not None:
            return WindowView(name, unavailable=self.why_not)
        if "context-switches" in self.unsupported:
            return WindowView(
                name, unavailable="perf stat says context-switches <not supported> on this host"
            )
        with self._lock:
            kept, done = list(self.intervals), self.done
        if done and not kept:
            return WindowView(
                name, unavailable="perf stat produced no samples (refused? see the run's warnings)"
            )
        inside = [(a, b, c) for a, b, c in kept if b >= start_ns and a <= end_ns]
        covered = kept[-1][1] if kept else self.started_ns
        figures = {
            "note": f"perf stat -I {self.interval_ms} counts of the subject over the intervals overlapping the "
                    "window (the window is shorter than an interval: these bound it, they do not isolate it)",
            "context_switches": sum(c.get("context-switches", 0) for *_, c in inside),
            "cpu_migrations": sum(c.get("cpu-migrations", 0) for *_, c in inside),
            "intervals": [{"start_monotonic_ns": a, "end_monotonic_ns": b, **c} for a, b, c in inside],
        }  # fmt: skip
        counter = [(a, c.get("context-switches", 0)) for a, _, c in inside]
        return WindowView(name, figures, counter, covered_until_ns=end_ns if done else covered)

    def latest(self) -> dict:
        figures = super().latest()
        if figures:
            cs = figures.get("context-switches_per_s")
            tc = figures.get("task-clock_ms_per_s")
            parts = [
                f"cpu {tc / 10:.0f}%" if tc is not None else "",
                f"ctx-sw {cs:,.0f}/s" if cs is not None else "",
            ]
            figures["summary"] = " ".join(p for p in parts if p)
        return figures

    def stop(self) -> list[str]:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self.thread.join(3)
            self.stopped = True
            if self.segments is None:
                self.out.close()
            if self.unsupported:
                self.warn(f"events not supported on this host (VM without a PMU?): {', '.join(sorted(self.unsupported))}; "
                          "software counters recorded")  # fmt: skip
            if self.rows == 0:
                self.warn("perf stat produced no samples (the target exited before the first interval?)")
        return self.warnings
