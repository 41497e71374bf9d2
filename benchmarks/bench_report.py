"""HTML report and compare on a 1-hour session (3,600 one-second intervals x 9 tags), synthesised.

    python benchmarks/bench_report.py
Target: the report in <= 5 s. Prints seconds per step and one JSON line.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from tickscope.collectors.session import Session
from tickscope.reports.analysis.compare import compare_sessions
from tickscope.reports.html import render

# The synthetic sessions are test support (tests/support/synth.py), not product code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.synth import STAGES, synth_session  # noqa: E402

if __name__ == "__main__":
    d = Path(tempfile.mkdtemp(prefix="tickscope-bench-report-"))
    t = time.perf_counter()
    synth_session(d / "hour", intervals=3600, per_interval=200, stages=[*STAGES, "order_rtt"])
    synth_session(d / "hour2", intervals=3600, per_interval=200, stages=[*STAGES, "order_rtt"], seed=2)
    made = time.perf_counter() - t
    t = time.perf_counter()
    s = Session.load(d / "hour")
    load = time.perf_counter() - t
    t = time.perf_counter()
    (d / "hour.html").write_text(render(s), encoding="utf-8")
    html = time.perf_counter() - t
    t = time.perf_counter()
    compare_sessions([Session.load(d / "hour")], [Session.load(d / "hour2")])
    cmp = time.perf_counter() - t
    tags = len(s.intervals)
    result = {"intervals": 3600, "tags": tags, "load_s": round(load, 2), "render_s": round(html, 2),
              "report_total_s": round(load + html, 2), "compare_s": round(cmp, 2), "synth_s": round(made, 1)}  # fmt: skip
    print(f"1-hour session ({tags} tags x 3600 intervals): load {load:.2f}s + render {html:.2f}s = {load + html:.2f}s "
          f"(target <= 5s); compare of two such sessions {cmp:.2f}s")  # fmt: skip
    print(json.dumps(result))
