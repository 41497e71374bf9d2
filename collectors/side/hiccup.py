"""A jHiccup-style platform jitter meter: how late does a sleeping thread wake up?

A separate *process* sleeps for a fixed resolution in a loop and records the overshoot
(actual - expected) into an HDR histogram, written every second as ``hiccup.hlog`` (tag
``hiccup``). A process rather than a thread: a thread would measure the collector's own GIL
holds, not the platform. Optionally pinned to a CPU (``os.sched_setaffinity``).

The meter is a child like the others (``children``): its own process group (Ctrl-C reaches
tickscope only), dead with tickscope, stopped by SIGTERM. It prints its latest p50/p99/max as
one line per interval on stdout, which the collector reads for the live view, and every sample
(CLOCK_MONOTONIC ns of the wake-up, overshoot ns) in ``s`` lines every ``SAMPLE_BATCH_NS``: the
collector keeps the last ``SAMPLES_KEPT`` for incidents (what the platform did in those ms).

    python -m tickscope.collectors.side.hiccup HLOG [--resolution-ns N] [--cpu C]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from tickscope.collectors.rings.incidents import WindowView
from tickscope.collectors.run.children import spawn_child, stop_child
from tickscope.collectors.session.units import fmt_ns
from tickscope.collectors.side import SideCollectorBase

SAMPLE_BATCH_NS = 100_000_000  # samples reach the collector this often (10 short lines a second)
SAMPLES_KEPT = 16_384  # ~16 s at the default 1 ms resolution: an incident is written within ~1 s


def _print_samples(samples: list[tuple[int, int]], out) -> None:
    if samples:
        print("s", *(f"{t}:{v}" for t, v in samples), file=out, flush=True)
        samples.clear()


def meter(path: Path, resolution_ns: int, cpu: int | None, stopping: threading.Event, out) -> None:
    from tickscope.collectors.session import HistogramLogWriter
    from tickscope.collectors.session.hdr import new_histogram, summarize

    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    log = HistogramLogWriter(path, time.time())
    hist = new_histogram()
    start = time.monotonic_ns()
    interval_start = start
    sleep_s = resolution_ns / 1e9
    samples: list[tuple[int, int]] = []
    batch_start = start
    while not stopping.is_set():
        t0 = time.monotonic_ns()
        time.sleep(sleep_s)
        t1 = time.monotonic_ns()
        overshoot = max(0, t1 - t0 - resolution_ns)
        hist.record_value(overshoot)
        samples.append((t1, overshoot))
        if t1 - batch_start >= SAMPLE_BATCH_NS:
            _print_samples(samples, out)
            batch_start = t1
        if t1 - interval_start >= 1_000_000_000:
            log.write("hiccup", hist, (interval_start - start) / 1e9, (t1 - start) / 1e9)
            log.flush()
            s = summarize(hist)
            print(s.get("p50", 0), s.get("p99", 0), s.get("max", 0), file=out, flush=True)
            hist.reset()
            interval_start = t1
    _print_samples(samples, out)
    if hist.total_count:
        t1 = time.monotonic_ns()
        log.write("hiccup", hist, (interval_start - start) / 1e9, (t1 - start) / 1e9)
    log.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tickscope-hiccup", description="Platform jitter meter (hiccup.hlog).")
    ap.add_argument("hlog", type=Path)
    ap.add_argument("--resolution-ns", type=int, default=1_000_000)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args(argv)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        meter(args.hlog, args.resolution_ns, args.cpu, stopping, sys.stdout)
    except BrokenPipeError:  # the collector went away: nobody reads the figures, the log is written
        pass
    except OSError as e:
        print(f"hiccup meter: cannot write {args.hlog}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


class HiccupCollector(SideCollectorBase):
    name = "hiccup"

    def __init__(self, resolution_ms: float = 1.0, cpu: int | None = None):
        super().__init__()
        self.resolution_ns = int(resolution_ms * 1e6)
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.samples: deque[tuple[int, int]] = deque(maxlen=SAMPLES_KEPT)

    def start(self, pid: int | None, session_dir: Path) -> None:
        argv = [sys.executable, "-m", "tickscope.collectors.side.hiccup", str(Path(session_dir) / "hiccup.hlog"),
                "--resolution-ns", str(self.resolution_ns)]  # fmt: skip
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        self.proc = spawn_child(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read_figures, name="tickscope-hiccup-reader", daemon=True)
        self.reader.start()

    def _read_figures(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("s "):
                try:
                    batch = [tuple(int(x) for x in item.split(":")) for item in line.split()[1:]]
                except ValueError:
                    continue
                with self._lock:
                    self.samples.extend(batch)
                continue
            try:
                p50, p99, mx = (int(float(x)) for x in line.split())
            except ValueError:
                continue
            self.publish({"p50_us": p50 / 1e3, "p99_us": p99 / 1e3, "max_us": mx / 1e3,
                          "summary": f"p99 {fmt_ns(p99)} max {fmt_ns(mx)}"})  # fmt: skip

    def incident_view(self, start_ns: int, end_ns: int) -> WindowView:
        with self._lock:
            kept = list(self.samples)
        if not kept:
            return WindowView("hiccup", unavailable="the hiccup meter had sent no samples yet")
        inside = [(t, v) for t, v in kept if start_ns <= t <= end_ns]
        values = sorted(v for _, v in inside)
        figures = {"resolution_ns": self.resolution_ns, "samples": len(values),
                   "max_ns": values[-1] if values else None,
                   "p99_ns": values[min(len(values) - 1, int(len(values) * 0.99))] if values else None,
                   "stalled_ns": sum(values),  # the platform's own delay over the window, summed
                   "over_1ms": sum(v > 1_000_000 for v in values)}  # fmt: skip
        return WindowView("hiccup", figures, [(t, v) for t, v in inside], covered_until_ns=kept[-1][0])

    def stop(self) -> list[str]:
        if self.proc is not None:
            code = stop_child(self.proc, signal.SIGTERM, timeout_s=3.0)
            self.reader.join(2.0)
            err = self.proc.stderr.read().strip().splitlines()
            if code == -signal.SIGKILL:
                self.warn("hiccup meter did not stop in time (killed); its last interval may be missing")
            elif code:
                self.warn(err[-1] if err else f"hiccup meter exited with code {code}")
        return self.warnings


if __name__ == "__main__":
    sys.exit(main())
