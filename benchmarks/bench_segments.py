"""A long run's disk and memory budget: bytes per hour at 1 s and at 1 min, and the collector's RSS.

    python benchmarks/bench_segments.py [--rate 20k] [--seconds 120] [--accelerated 60]

1. Disk: ``tickscope profile`` of the bundled pipeline at ``--rate`` for ``--seconds`` with
   ``--segment`` as long as the run, so the one segment holds both its 1 s log (latency.hlog) and
   the same data merged into 1-minute intervals (coarse.hlog, what it keeps once decayed). Bytes
   per hour are each file's size scaled to 3,600 s of its span; a week's budget is then the newest
   day at 1 s and six days at 1 min (``--decay 1d:1m``, the default).
2. Memory: an accelerated run (``--interval 10ms --segment 1s``, a Python subject at 2,000 ticks/s)
   of ``--accelerated`` seconds, thousands of intervals; the collector's RSS (VmRSS) sampled every
   0.2 s, printed at 10 %, 25 %, 50 %, 75 % and 100 % of the run.

Numbers only: nothing is asserted (the host's speed is not ours to judge here). One JSON line last.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The RSS sampler is test support (tests/support/__init__.py), shared with the long-run test.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import rss_kb  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SUBJECT = [sys.executable, str(ROOT / "tests" / "programs" / "tick_subject.py")]
QUIET = ["--no-perf", "--no-hiccup", "--no-live"]


def tickscope(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("TICKSCOPE_RING_DIR", "TICKSCOPE_COLLECTOR_PID")}
    return subprocess.Popen([sys.executable, "-m", "tickscope.main", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def span_s(log: Path) -> float:
    starts, ends = [], []
    for line in log.read_text().splitlines():
        if line.startswith("Tag="):
            _, start, length, *_ = line.split(",")
            starts.append(float(start))
            ends.append(float(start) + float(length))
    return max(ends) - min(starts) if starts else 0.0


def disk(rate: str, seconds: int, tmp: Path) -> dict:
    out = tmp / "disk"
    proc = tickscope("profile", *QUIET, "--rate", rate, "--duration", f"{seconds}s", "--segment",
                     f"{seconds + 60}s", "--decay", "1d:1m", "--out", str(out))  # fmt: skip
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"profile failed: {err.strip()}")
    (seg,) = [d for d in (out / "segments").iterdir() if d.is_dir()]
    fine, coarse = seg / "latency.hlog", seg / "coarse.hlog"
    # The run's last interval ends at the final drain; the span of the 1 s lines is what scales.
    span = span_s(fine)
    per_h_fine = fine.stat().st_size * 3600 / span
    per_h_coarse = coarse.stat().st_size * 3600 / span
    week = 24 * per_h_fine + 6 * 24 * per_h_coarse
    return {"rate": rate, "span_s": round(span, 1), "bytes_1s": fine.stat().st_size,
            "bytes_1min": coarse.stat().st_size, "bytes_per_hour_1s": round(per_h_fine),
            "bytes_per_hour_1min": round(per_h_coarse), "week_bytes": round(week)}  # fmt: skip


def memory(seconds: int, tmp: Path) -> dict:
    out = tmp / "memory"
    proc = tickscope("profile", *QUIET, "--interval", "10ms", "--segment", "1s", "--decay", "5s:200ms",
                     "--max-disk", "2MB", "--duration", f"{seconds}s", "--out", str(out),
                     "--", *SUBJECT, "0", "--forever", "--rate", "2000")  # fmt: skip
    samples = []
    while proc.poll() is None:
        kb = rss_kb(proc.pid)
        if kb:
            samples.append(kb)
        time.sleep(0.2)
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"profile failed: {err.strip()}")
    index = json.loads((out / "segments.json").read_text())
    intervals = sum(1 for d in (out / "segments").iterdir() for line in (d / "latency.hlog").read_text().splitlines()
                    if line.startswith("Tag=tick_to_trade"))  # fmt: skip
    at = {
        f"rss_kb_{p}pct": samples[min(len(samples) - 1, len(samples) * p // 100)]
        for p in (10, 25, 50, 75, 100)
    }
    return {"seconds": seconds, "interval_ms": 10, "segments_closed": index["removed"]["segments"] + len(index["segments"]),
            "segments_removed": index["removed"]["segments"], "intervals_kept_tick_to_trade": intervals,
            "rss_kb_max": max(samples), **at}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="20k")
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--accelerated", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = disk(args.rate, args.seconds, Path(tmp))
        m = memory(args.accelerated, Path(tmp))
    print(f"disk at {d['rate']} msgs/s over {d['span_s']} s of 1 s intervals:")
    print(f"  1 s intervals   {d['bytes_per_hour_1s'] / 1e6:8.1f} MB/hour")
    print(f"  1 min intervals {d['bytes_per_hour_1min'] / 1e6:8.2f} MB/hour")
    print(f"  a week (1 day at 1 s, 6 days at 1 min): {d['week_bytes'] / 1e9:.2f} GB")
    print(f"memory over {m['seconds']} s at 10 ms intervals ({m['segments_closed']} segments, "
          f"{m['segments_removed']} removed): RSS " + ", ".join(f"{k[7:]} {v / 1024:.1f} MB" for k, v in m.items()
                                                                 if k.startswith("rss_kb_") and "pct" in k))  # fmt: skip
    print(json.dumps({"disk": d, "memory": m}))


if __name__ == "__main__":
    main()
