"""Synthetic sessions with known properties: for statistical tests and the 1-hour report benchmark.

Each interval draws log-normal stage latencies; each interval also gets its own multiplicative
jitter (a noisy neighbour, a GC pause), so that intervals are the honest unit of replication.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tickscope.collectors.session import SessionWriter
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram

STAGES = ["wire_to_read", "feed", "book", "strategy", "risk", "encode", "send"]
MEDIANS_NS = {
    "order_rtt": 150_000,
    "wire_to_read": 8_000,
    "feed": 900,
    "book": 1_100,
    "strategy": 700,
    "risk": 4_000,
    "encode": 9_000,
    "send": 5_000,
}


def synth_session(path: str | Path, *, intervals: int = 30, per_interval: int = 2_000, seed: int = 1,
                  slowdown: dict[str, float] | None = None, jitter: float = 0.04, hostname: str = "synth-host",
                  stages: list[str] | None = None) -> Path:  # fmt: skip
    stages = stages or STAGES
    rng = np.random.default_rng(seed)
    slowdown = slowdown or {}
    points = ["md.rx"] + [f"p.{s}" for s in stages]
    meta = {"name": Path(path).name, "host": {"hostname": hostname}, "points": points, "trade_point": points[-1],
            "stages": [{"name": s, "from": a, "to": b} for s, a, b in zip(stages, points[:-1], points[1:], strict=True)],
            "counters": {"produced": intervals * per_interval, "drained": intervals * per_interval}}  # fmt: skip
    w = SessionWriter(path, meta)
    rec = BulkRecorder(new_histogram())
    for i in range(intervals):
        hists = {}
        total = np.zeros(per_interval)
        for s in stages:
            scale = MEDIANS_NS.get(s, 1000) * (1 + slowdown.get(s, 0.0)) * np.exp(rng.normal(0, jitter))
            v = rng.lognormal(np.log(scale), 0.5, per_interval)
            total += v
            h = new_histogram()
            rec.record(h, v.astype(np.int64))
            hists[s] = h
        h = new_histogram()
        rec.record(h, total.astype(np.int64))
        hists["tick_to_trade"] = h
        w.write_interval(hists, float(i), float(i + 1), warmup=False)
    w.close()
    return Path(path)
