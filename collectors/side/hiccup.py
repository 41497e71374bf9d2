"""A jHiccup-style platform jitter meter: how late does a sleeping thread wake up?

A separate *process* sleeps for a fixed resolution in a loop and records the overshoot
(actual - expected) into an HDR histogram, written every second as ``hiccup.hlog`` (tag
``hiccup``). A process rather than a thread: a thread would measure the collector's own GIL
holds, not the platform. Optionally pinned to a CPU (``os.sched_setaffinity``).

The meter is a child like the others (``children``): its own process group (Ctrl-C reaches
tickscope only), dead with tickscope, stopped by SIGTERM. It prints ``ready`` once it samples
(the run starts it before the subject and waits for that), then its latest p50/p99/max as
one line per interval on stdout, which the collector reads for the live view, and every sample
(CLOCK_MONOTONIC ns of the wake-up, overshoot ns) in ``s`` lines every ``SAMPLE_BATCH_NS``: the
collector keeps the last ``SAMPLES_KEPT`` for incidents (what the platform did in those ms).

    python -m tickscope.collectors.side.hiccup HLOG|- [--resolution-ns N] [--cpu C]

In a segmented session (a long run) the meter writes no file (``-``): the collector writes each
interval it prints into the open segment's ``hiccup.hlog``, so the hiccups are cut, kept and
removed with the segments (``segment_closing``).
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

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.rings.incidents import WindowView
from tickscope.collectors.run.children import spawn_child, stop_child
from tickscope.collectors.session import HICCUP_LOG, HistogramLogWriter
from tickscope.collectors.session.segments import SegmentedLog
from tickscope.collectors.session.units import fmt_ns
from tickscope.collectors.side import SideCollectorBase

SAMPLE_BATCH_NS = 100_000_000  # samples reach the collector this often (10 short lines a second)
READY = "ready"  # the meter's first line: it samples from now on
READY_WAIT_S = 10.0  # at most this long for the meter to start before the subject does
SAMPLES_KEPT = 16_384  # ~16 s at the default 1 ms resolution: an incident is written within ~1 s


class SampleBatch:
    """The overshoots since the last batch, recorded into the interval's histogram and printed
    together (every SAMPLE_BATCH_NS, and before an interval closes). Recording each overshoot as it
    came (``record_value``, pure Python) and keeping it as a tuple was half the meter's own CPU
    beyond its wake-ups; recorded in bulk, the histogram holds the same counts
    (``BulkRecorder``, bit-identical to ``record_value``)."""

    def __init__(self, hist: HdrHistogram, resolution_ns: int):
        from tickscope.collectors.session.hdr import BulkRecorder

        self.hist, self.resolution_ns = hist, resolution_ns
        self.recorder = BulkRecorder(hist, compiled=False)  # a hundred values a batch: no LLVM to load
        self.ends: list[int] = []  # each sleep's end (monotonic ns)
        self.lengths: list[int] = []  # each sleep's length (ns)

    def flush(self, out) -> None:
        if not self.ends:
            return
        overshoot = np.maximum(np.array(self.lengths, np.int64) - self.resolution_ns, 0)
        self.recorder.record(self.hist, overshoot)
        print(
            "s",
            *(f"{t}:{v}" for t, v in zip(self.ends, overshoot.tolist(), strict=True)),
            file=out,
            flush=True,
        )
        self.ends.clear()
        self.lengths.clear()


def meter(path: Path | None, resolution_ns: int, cpu: int | None, stopping: threading.Event, out) -> None:
    """Record until ``stopping``; each interval goes into the log at ``path`` (None: no file) and,
    as one line, to ``out``: p50 p99 max (ns), start and end (epoch s), the encoded histogram."""
    from tickscope.collectors.session import HistogramLogWriter
    from tickscope.collectors.session.hdr import new_histogram, summarize

    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    epoch = time.time()
    log = HistogramLogWriter(path, epoch) if path is not None else None
    hist = new_histogram()
    start = time.monotonic_ns()
    interval_start = start
    sleep_s = resolution_ns / 1e9
    batch = SampleBatch(hist, resolution_ns)
    batch_start = start

    def emit(t1: int, last: bool) -> None:
        lo, hi = (interval_start - start) / 1e9, (t1 - start) / 1e9
        if log is not None:
            log.write("hiccup", hist, lo, hi)
            log.flush()
        s = summarize(hist)
        try:
            print(s.get("p50", 0), s.get("p99", 0), s.get("max", 0), f"{epoch + lo:.6f}", f"{epoch + hi:.6f}",
                  hist.encode().decode("ascii"), file=out, flush=True)  # fmt: skip
        except BrokenPipeError:
            if not last:
                raise

    # the loop runs a thousand times a second: its names are bound once
    monotonic_ns, sleep, stopped = time.monotonic_ns, time.sleep, stopping.is_set
    ends, lengths = batch.ends, batch.lengths
    t0 = monotonic_ns()
    print(READY, file=out, flush=True)  # sampling from t0: the first sleep holds this line's write
    while not stopped():
        sleep(sleep_s)
        t1 = monotonic_ns()
        ends.append(t1)
        lengths.append(t1 - t0)
        if t1 - batch_start >= SAMPLE_BATCH_NS:
            batch.flush(out)
            batch_start = t1
        if t1 - interval_start >= 1_000_000_000:
            batch.flush(out)  # the interval's last samples are in its histogram
            emit(t1, False)
            hist.reset()
            interval_start = t1
        t0 = monotonic_ns()
    batch.flush(out)
    if hist.total_count:
        emit(time.monotonic_ns(), True)
    if log is not None:
        log.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tickscope-hiccup", description="Platform jitter meter (hiccup.hlog).")
    ap.add_argument("hlog", help="the interval log to write, or - for none (lines on stdout only)")
    ap.add_argument("--resolution-ns", type=int, default=1_000_000)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args(argv)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        meter(
            None if args.hlog == "-" else Path(args.hlog), args.resolution_ns, args.cpu, stopping, sys.stdout
        )
    except BrokenPipeError:  # the collector went away: nobody reads the figures, the log is written
        pass
    except OSError as e:
        print(f"hiccup meter: cannot write {args.hlog}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


class HiccupCollector(SideCollectorBase):
    name = "hiccup"
    before_subject = True  # ready before the subject starts: its first ticks have a platform view too

    def __init__(self, resolution_ms: float = 1.0, cpu: int | None = None):
        super().__init__()
        self.resolution_ns = int(resolution_ms * 1e6)
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.samples: deque[tuple[int, int]] = deque(maxlen=SAMPLES_KEPT)
        self.segments: SegmentedLog | None = None  # a segmented session: intervals go to its open segment
        self.base_epoch_s = 0.0  # the session's start: segment logs are run-relative
        self.pending: deque[tuple[float, float, str]] = (
            deque()
        )  # (start, end epoch s, encoded), not yet written
        self.log: HistogramLogWriter | None = None  # the open segment's hiccup.hlog
        self.log_dir: Path | None = None
        self.stopped = False

    def bind(self, subject, collector) -> None:
        session = collector.session
        if session is not None and session.segments is not None:
            self.segments, self.base_epoch_s = session.segments, session.segments.start_epoch_s

    def start(self, pid: int | None, session_dir: Path) -> None:
        target = "-" if self.segments is not None else str(Path(session_dir) / HICCUP_LOG)
        argv = [sys.executable, "-m", "tickscope.collectors.side.hiccup", target,
                "--resolution-ns", str(self.resolution_ns)]  # fmt: skip
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        self.proc = spawn_child(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read_figures, name="tickscope-hiccup-reader", daemon=True)
        self.reader.start()
        deadline = time.monotonic() + READY_WAIT_S
        while not self.ready.wait(0.02) and self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.warn(f"not sampling {READY_WAIT_S:.0f} s after it was started: the run goes on, its first "
                          "seconds without a platform view")  # fmt: skip
                break

    def _read_figures(self) -> None:
        for line in self.proc.stdout:
            if line.rstrip("\n") == READY:
                self.ready.set()
                continue
            if line.startswith("s "):
                try:
                    batch = [tuple(int(x) for x in item.split(":")) for item in line.split()[1:]]
                except ValueError:
                    continue
                with self._lock:
                    self.samples.extend(batch)
                continue
            try:
                p50, p99, mx, lo, hi, encoded = line.split()
                p50, p99, mx = (int(float(x)) for x in (p50, p99, mx))
                lo, hi = float(lo), float(hi)
            except ValueError:
                continue
            if self.segments is not None:
                self.pending.append((lo, hi, encoded))  # written on the drain thread: see after_poll
            self.publish({"p50_us": p50 / 1e3, "p99_us": p99 / 1e3, "max_us": mx / 1e3,
                          "summary": f"p99 {fmt_ns(p99)} max {fmt_ns(mx)}"})  # fmt: skip

    def incident_view(self, start_ns: int, end_ns: int) -> WindowView:
        with self._lock:
            kept = list(self.samples)
        # None sent yet (the meter still starting on a busy host) is a view lagging behind the
        # window, which the incident waits for like any other, not a meter that is missing.
        # A sample is the sleep that ended at t, v past its resolution: it saw [t - resolution - v, t].
        # One that overlaps the window is in its view, so a stall longer than the window (the meter
        # starved throughout: the very hiccup an incident is about) is not left out for ending after it.
        res = self.resolution_ns
        inside = [(t, v) for t, v in kept if t >= start_ns and t - v - res <= end_ns]
        values = sorted(v for _, v in inside)
        figures = {"resolution_ns": self.resolution_ns, "samples": len(values),
                   "max_ns": values[-1] if values else None,
                   "p99_ns": values[min(len(values) - 1, int(len(values) * 0.99))] if values else None,
                   "stalled_ns": sum(values),  # the platform's own delay over the window, summed
                   "over_1ms": sum(v > 1_000_000 for v in values)}  # fmt: skip
        return WindowView("hiccup", figures, inside, covered_until_ns=kept[-1][0] if kept else 0)

    def after_poll(self, collector) -> None:
        # The drain thread is the one that cuts segments: writing here never races a cut.
        if self.pending:
            self._write_pending(self.segments.path, None)

    def segment_closing(self, segment_dir: Path, start_s: float, end_s: float) -> None:
        if self.segments is None or (not self.pending and self.log_dir != segment_dir):
            return  # nothing for it: no empty log (a segment holding one would be kept for nothing)
        # once the meter stopped nothing more comes: this segment takes every interval left
        self._write_pending(segment_dir, None if self.stopped else self.base_epoch_s + end_s)
        if self.log is not None:
            self.log.close()
            self.log, self.log_dir = None, None

    def _write_pending(self, segment_dir: Path, until_epoch_s: float | None) -> None:
        """The intervals received, into ``segment_dir``'s hiccup.hlog: all of them, or those that
        started before ``until_epoch_s`` (the rest belong to the next segment). The log is opened
        by its first interval: a segment none of whose intervals has come yet (a loaded host delays
        the meter) gets no empty log, which would keep it for nothing."""
        while self.pending and (until_epoch_s is None or self.pending[0][0] < until_epoch_s):
            if self.log_dir != segment_dir:
                if self.log is not None:
                    self.log.close()
                self.log, self.log_dir = (
                    HistogramLogWriter(segment_dir / HICCUP_LOG, self.base_epoch_s),
                    segment_dir,
                )
            lo, hi, encoded = self.pending.popleft()
            self.log.write(
                "hiccup", HdrHistogram.decode(encoded), lo - self.base_epoch_s, hi - self.base_epoch_s
            )
        if self.log is not None:
            self.log.flush()

    def stop(self) -> list[str]:
        if self.proc is not None:
            code = stop_child(self.proc, signal.SIGTERM, timeout_s=3.0)
            self.reader.join(2.0)
            self.stopped = True
            err = self.proc.stderr.read().strip().splitlines()
            if code == -signal.SIGKILL:
                self.warn("hiccup meter did not stop in time (killed); its last interval may be missing")
            elif code:
                self.warn(err[-1] if err else f"hiccup meter exited with code {code}")
        return self.warnings


if __name__ == "__main__":
    sys.exit(main())
