"""What a ``tickscope sweep`` costs beyond its steps, on the bundled pipeline.

    python benchmarks/bench_sweep.py [--rates 5k,10k,20k,40k,80k] [--duration 8s] [--warmup 2s] [--sla p99=20ms]

Runs the sweep as a user would, then reads ``sweep.json``: per step, the sweep's own work
(reading the session, judging the SLA, writing; target ≤ 1 s per step, issue 15) and the profile
process's time beyond its --duration (which includes the warmup) (starting and stopping venue and trader). Prints one
JSON line.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tickscope.collectors.run.sweep import parse_rates

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="5k,10k,20k,40k,80k")
    ap.add_argument("--duration", default="8s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--sla", default="p99=20ms")
    args = ap.parse_args()
    parse_rates(args.rates)
    out = Path(tempfile.mkdtemp(prefix="tickscope-bench-sweep-")) / "sweep"
    r = subprocess.run([sys.executable, "-m", "tickscope.main", "sweep", "--rates", args.rates, "--duration",
                        args.duration, "--warmup", args.warmup, "--sla", args.sla, "-o", str(out)])  # fmt: skip
    doc = json.loads((out / "sweep.json").read_text())
    measured = doc["duration_s"]  # profile's --duration includes its --warmup
    own = [s["sweep_overhead_s"] for s in doc["steps"]]
    beyond = [round(s["wall_s"] - measured, 3) for s in doc["steps"]]
    print(f"steps {len(own)}; sweep's own work per step: max {max(own) * 1e3:.1f} ms (target <= 1000 ms); "
          f"profile process beyond --duration: {min(beyond):.2f}..{max(beyond):.2f} s")  # fmt: skip
    print(json.dumps({"exit": r.returncode, "steps": len(own), "sweep_overhead_max_s": max(own),
                      "profile_beyond_measured_s": beyond, "sustainable": doc["sustainable_rate"],
                      "knee": doc["knee_rate"], "stopped": doc["stopped"], "dir": str(out)}))  # fmt: skip
