"""False alarms of ``tickscope compare`` on the real pipeline: same build, same rate, repeated.

    python benchmarks/bench_compare.py [--pairs 20] [--duration 8] [--rate 10000]

Runs 2 x pairs profile sessions of the bundled pipeline back to back and compares each pair
(run 2k against run 2k+1) with the default thresholds. Target (issue 5): no regression in at
least 19 of 20 pairs. Then the same sessions as groups of 3 runs per side (``--vs``), the way
the README recommends gating on a shared machine. Prints the flagged rows, the tallies, and one
JSON line.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tickscope.collectors.session import Session
from tickscope.reports.analysis.compare import compare_sessions

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--hiccup", action="store_true", help="record the hiccup meter too (platform control)")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="tickscope-bench-compare-"))
    t0 = time.monotonic()
    runs = []
    for i in range(2 * args.pairs):
        out = d / f"run{i:02d}"
        cmd = [sys.executable, "-m", "tickscope.main", "profile", "--duration", f"{args.duration}s", "--warmup", "1s",
               "--rate", str(args.rate), "--no-live", "--no-perf", "--hiccup" if args.hiccup else "--no-hiccup",
               "--out", str(out)]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"run {i} failed: {r.stderr.strip().splitlines()[-1:]}")
        runs.append(Session.load(out))
        print(f"run {i + 1}/{2 * args.pairs} done ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
    clean, flagged = 0, []
    for k in range(args.pairs):
        c = compare_sessions([runs[2 * k]], [runs[2 * k + 1]])
        rows = [
            (r.tag, r.percentile, round(r.change * 100, 1), round(r.ci_low * 100, 1)) for r in c.regressions
        ]
        clean += not rows
        flagged.append(rows)
        print(f"pair {k + 1:2d}: {'no regression' if not rows else rows}")
    print(f"{clean}/{args.pairs} same-build pairs without a regression (target >= 19/20 at 20 pairs)")
    groups = clean3 = 0
    for i in range(0, len(runs) - 5, 6):
        c = compare_sessions(runs[i : i + 3], runs[i + 3 : i + 6])
        groups += 1
        clean3 += not c.regressions
        print(
            f"3 vs 3 runs #{groups}: {'no regression' if not c.regressions else [(r.tag, r.percentile) for r in c.regressions]}"
        )
    print(f"{clean3}/{groups} same-build comparisons of 3 runs per side without a regression")
    print(json.dumps({"pairs": args.pairs, "clean": clean, "flagged": flagged, "groups_3v3": groups,
                      "clean_3v3": clean3, "duration_s": args.duration, "rate": args.rate}))  # fmt: skip
