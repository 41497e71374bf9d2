"""A jHiccup-style platform jitter meter: how late does a sleeping thread wake up?

A separate *process* sleeps for a fixed resolution in a loop and records the overshoot
(actual - expected) into an HDR histogram, written every second as ``hiccup.hlog`` (tag
``hiccup``). A process rather than a thread: a thread would measure the collector's own GIL
holds, not the platform. Optionally pinned to a CPU (``os.sched_setaffinity``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

from .side import SideCollectorBase


def _meter(path: str, resolution_ns: int, cpu: int | None, stop, latest) -> None:
    from .hdr import new_histogram, summarize
    from .session import HistogramLogWriter

    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    log = HistogramLogWriter(Path(path), time.time())
    hist = new_histogram()
    start = time.monotonic_ns()
    interval_start = start
    sleep_s = resolution_ns / 1e9
    while not stop.is_set():
        t0 = time.monotonic_ns()
        time.sleep(sleep_s)
        t1 = time.monotonic_ns()
        hist.record_value(max(0, t1 - t0 - resolution_ns))
        if t1 - interval_start >= 1_000_000_000:
            log.write("hiccup", hist, (interval_start - start) / 1e9, (t1 - start) / 1e9)
            log.flush()
            s = summarize(hist)
            latest[:] = [s.get("p50", 0), s.get("p99", 0), s.get("max", 0)]
            hist.reset()
            interval_start = t1
    if hist.total_count:
        t1 = time.monotonic_ns()
        log.write("hiccup", hist, (interval_start - start) / 1e9, (t1 - start) / 1e9)
    log.close()


class HiccupCollector(SideCollectorBase):
    name = "hiccup"

    def __init__(self, resolution_ms: float = 1.0, cpu: int | None = None):
        super().__init__()
        self.resolution_ns = int(resolution_ms * 1e6)
        self.cpu = cpu
        self.proc = None

    def start(self, pid: int | None, session_dir: Path) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.shared = ctx.Array("q", 3)
        self.proc = ctx.Process(target=_meter, name="tickscope-hiccup", daemon=True,
                                args=(str(Path(session_dir) / "hiccup.hlog"), self.resolution_ns, self.cpu,
                                      self.stop_event, self.shared))  # fmt: skip
        self.proc.start()

    def latest(self) -> dict:
        if self.proc is None:
            return {}
        p50, p99, mx = list(self.shared)
        if not (p50 or p99 or mx):
            return {}
        return {"p50_us": p50 / 1e3, "p99_us": p99 / 1e3, "max_us": mx / 1e3,
                "summary": f"p99 {p99 / 1e3:.0f}us max {mx / 1e3:.0f}us"}  # fmt: skip

    def stop(self) -> list[str]:
        if self.proc is not None:
            self.stop_event.set()
            self.proc.join(3)
            if self.proc.is_alive():
                self.proc.kill()
                self.warn("hiccup meter did not stop in time (killed); its last interval may be missing")
        return self.warnings
