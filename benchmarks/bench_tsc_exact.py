"""Known-length stages, profiled for real, held against the subject's own exact stamps.

    python benchmarks/bench_tsc_exact.py [--runs 3] [--before GIT_REV_TREE_ON_PYTHONPATH]

* C subject (probe/examples/c_known_spans.c): stamps written as ts0, ts0 + 15000 ticks, ... with
  40 heartbeats splitting traces (a refit between the halves of a trace) and one perturbed pair;
  then the same without heartbeats. Expected ns = ticks / Hz, Hz from the session's final fit.
* Python subject (this file with --subject): busy-spins 5 us, 20 us (200 us every 50th), 2 us
  between TickWriter stamps and saves its own stamps; expected = exact percentiles of those.

Per stage: expected vs reported at min/p50/p99/max and the error in ppm (HDR's 3 significant
digits allow up to 977 ppm: a bucket is at most 1/1024 of its values). With ``--before DIR`` (a package tree of an older revision, see the
README), also the collector's end-to-end figure (``tickscope bench``'s collect) before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FEED, STRATEGY, SPIKE, SEND, SPIKE_EVERY = 15000, 60000, 600000, 6000, 50
KEYS = (("min", 0), ("p50", 50), ("p99", 99), ("max", 100))


def subject(out_path: str, ticks: int) -> None:
    from time import perf_counter_ns

    from tickscope.probe import Point, TickWriter

    points = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("signal", stage="strategy"),
              Point("order.tx", stage="send")]  # fmt: skip
    w = TickWriter(points, name="py-known", capacity=1 << 14)
    own = np.zeros((ticks, 4), np.int64)

    def spin(ns):
        end = perf_counter_ns() + ns
        while perf_counter_ns() < end:
            pass

    t = w.stamps
    for i in range(1, ticks + 1):
        t[0] = a = perf_counter_ns()
        spin(5_000)
        t[1] = b = perf_counter_ns()
        spin(200_000 if i % SPIKE_EVERY == 0 else 20_000)
        t[2] = c = perf_counter_ns()
        spin(2_000)
        t[3] = d = perf_counter_ns()
        own[i - 1] = (a, b, c, d)
        t = w.commit(i)
    w.close()
    np.save(out_path, own)


def profile(argv: list[str], out: Path) -> tuple[dict, dict]:
    r = subprocess.run([sys.executable, "-m", "tickscope.main", "profile", "--no-live", "--no-perf", "--no-hiccup",
                        "--duration", "300s", "--out", str(out), "--", *argv], capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        sys.exit(f"profile failed: {r.stderr.strip()}")
    return json.loads((out / "summary.json").read_text()), json.loads((out / "meta.json").read_text())


def rank_value(values: np.ndarray, pct: float) -> float:
    s = np.sort(values)
    return float(s[max(1, math.ceil(pct / 100 * s.size)) - 1])


def table(title: str, expected: dict[str, np.ndarray], summary: dict) -> tuple[float, int]:
    """Print expected (exact rank values) vs reported; return the worst |ppm| and how many cells
    differ from what HDR itself makes of the exact values (0: the collector lost nothing)."""
    from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, summarize

    print(f"\n{title}")
    print(
        f"  {'stage':<14}{'count':>7}  "
        + "  ".join(f"{k + ' exp/rep':>24}{'ppm':>7}" for k, _ in KEYS)
        + "  =HDR(exact)"
    )
    worst, differ = 0.0, 0
    for tag, values in expected.items():
        s = summary.get(tag, {"count": 0})
        h = new_histogram()
        BulkRecorder(new_histogram()).record(h, np.rint(values).astype(np.int64))
        truth = summarize(h)
        cells, same = [], True
        for key, pct in KEYS:
            exp = rank_value(values, pct)
            rep = s.get(key, 0)
            ppm = (rep - exp) / exp * 1e6
            worst = max(worst, abs(ppm))
            same &= rep == truth[key]
            cells.append(f"{exp:>11.0f}/{rep:<12}{ppm:>7.0f}")
        differ += not same or s["count"] != values.size
        ok = "" if s["count"] == values.size else f"  COUNT {s['count']} != {values.size}"
        print(f"  {tag:<14}{s['count']:>7}  " + "  ".join(cells) + f"  {'yes' if same else 'NO'}{ok}")
    return worst, differ


def c_runs(work: Path, runs: int) -> tuple[float, int]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tickscope.collectors.run.bench import build_c

    exe = build_c("c_known_spans.c", work)
    worst, differ = 0.0, 0
    traces = 2000
    i = np.arange(1, traces + 1)
    strategy = np.where(i % SPIKE_EVERY == 0, SPIKE, STRATEGY)
    ticks = {"md.decoded": np.full(traces, FEED), "signal": strategy, "order.tx": np.full(traces, SEND),
             "tick_to_trade": FEED + strategy + SEND}  # fmt: skip
    for run in range(runs):
        for beats in (40, 0):
            summary, meta = profile([str(exe), str(traces), str(beats)], work / f"c-{beats}-{run}")
            tsc = meta["rings"][0]["tsc"]
            hz = tsc["fits"][-1]["hz"]
            expected = {tag: t * 1e9 / hz for tag, t in ticks.items()}
            title = (f"C subject, run {run + 1}, {beats} heartbeats: {tsc['fits_total']} fits, "
                     f"{tsc['pairs_written']} pairs, largest step slewed {tsc['largest_step_ns']} ns, "
                     f"in-ring rate {tsc['local_hz'][0]:.0f} Hz vs final fit {hz:.0f} Hz "
                     f"({(tsc['local_hz'][0] / hz - 1) * 1e6:+.1f} ppm)")  # fmt: skip
            w, d = table(title, expected, summary)
            worst, differ = max(worst, w), differ + d
    return worst, differ


def py_runs(work: Path, runs: int) -> tuple[float, int]:
    worst, differ = 0.0, 0
    for run in range(runs):
        own = work / f"own-{run}.npy"
        summary, _ = profile(
            [sys.executable, __file__, "--subject", str(own), "--ticks", "3000"], work / f"py-{run}"
        )
        stamps = np.load(own)
        d = np.diff(stamps, axis=1)
        expected = {
            "feed": d[:, 0],
            "strategy": d[:, 1],
            "send": d[:, 2],
            "tick_to_trade": stamps[:, 3] - stamps[:, 0],
        }
        w, dd = table(f"Python subject, run {run + 1} (against its own stamps)", expected, summary)
        worst, differ = max(worst, w), differ + dd
    return worst, differ


def collect_figure(pythonpath: str | None, rounds: int) -> list[tuple[int, float]]:
    """(records/s, CPU ns per record) of ``bench_collect`` per round. The host is shared: CPU time
    is the steadier of the two."""
    code = ("import json,tempfile,pathlib,shutil; from tickscope.collectors.run.bench import bench_collect; "
            "d=tempfile.mkdtemp(prefix='tickscope-bench-',dir='/dev/shm'); "
            "r=bench_collect(pathlib.Path(d), 400_000); shutil.rmtree(d); print(json.dumps(r))")  # fmt: skip
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = []
    for _ in range(rounds):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        out.append((d["collect_records_per_s"], d["collect_cpu_ns_per_record"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subject")
    ap.add_argument("--ticks", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", help="PYTHONPATH holding the older revision's tickscope package")
    args = ap.parse_args()
    if args.subject:
        subject(args.subject, args.ticks)
        return
    with tempfile.TemporaryDirectory(prefix="tickscope-bench-tsc-") as d:
        work = Path(d)
        worst_c, differ_c = c_runs(work, args.runs)
        worst_py, differ_py = py_runs(work, args.runs)
    print(
        f"\nworst error: C {worst_c:.0f} ppm, Python {worst_py:.0f} ppm (HDR's 3 significant digits: up to "
        f"977 ppm); stages whose reported min/p50/p99/max differ from HDR of the exact values: "
        f"C {differ_c}, Python {differ_py}"
    )
    if args.before:
        before, after = [], []
        for _ in range(3):  # interleaved: the host's load drifts
            before += collect_figure(args.before, 1)
            after += collect_figure(None, 1)
        rate_b, rate_a = max(r for r, _ in before), max(r for r, _ in after)
        cpu_b, cpu_a = min(c for _, c in before), min(c for _, c in after)
        print(f"collector end to end, best of 3: before {rate_b:,} records/s ({cpu_b} CPU ns/record), "
              f"after {rate_a:,} records/s ({cpu_a} CPU ns/record): {rate_a / rate_b:.2f}x rate, "
              f"{cpu_a / cpu_b:.2f}x CPU per record")  # fmt: skip


if __name__ == "__main__":
    main()
