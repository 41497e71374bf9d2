"""The Python and the Rust reference traders side by side, against the same bundled venue:

    python benchmarks/bench_traders.py [--duration 30] [--rate 20000] [--warmup 2]

Runs ``tickscope profile`` once per trader (same venue, rate, load and seed; one after the other,
so they never share the two cores), then prints one table: per stage p50/p99/p99.9 for Python
and Rust and the ratio Python/Rust. Bars (issue 13): the Rust trader has zero feed gaps, zero ring
drops and orders acked; its in-process stages (feed + book + strategy + risk + encode) total
p50 <= 2 us; the table says how much of tick-to-trade is the kernel (``wire_to_read`` + ``send``).
Also checks that ``tickscope compare PY --vs RUST`` reads the two sessions. Then one JSON line.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickscope.collectors.session import Session
from tickscope.collectors.session.units import fmt_ns

IN_PROCESS = ("feed", "book", "strategy", "risk", "encode")
KERNEL = ("wire_to_read", "send")


def profile(trader: str, args, out: Path) -> Session:
    cmd = [sys.executable, "-m", "tickscope.main", "profile", "--trader", trader,
           "--duration", f"{args.duration + args.warmup}s", "--warmup", f"{args.warmup}s", "--rate", str(args.rate),
           "--no-live", "--no-hiccup", "--no-perf", "--name", f"bench-{trader}", "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = run.communicate()
    except KeyboardInterrupt:
        # Ctrl-C reached tickscope too (one process group): let it stop the pipeline and save, never
        # kill it (subprocess.run would: its venue and trader die with it, its rings stay in /dev/shm).
        run.wait()
        print(f"interrupted: the {trader} trader's session so far is in {out}", file=sys.stderr)
        sys.exit(130)
    if run.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"profile --trader {trader} failed (exit {run.returncode}): {last}")
    return Session.load(out)


def ratio(a, b) -> str:
    return f"{a / b:.1f}x" if a and b else "-"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--warmup", type=float, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tickscope-bench-traders-"))
    sessions = {t: profile(t, args, root / t) for t in ("python", "rust")}
    summaries = {t: s.summary() for t, s in sessions.items()}
    tags = [t for t in sessions["python"].tags if t in summaries["rust"]]
    table = Table(title=f"Python vs Rust trader: bundled venue, {args.rate:,} msg/s for {args.duration:g}s "
                        f"(+{args.warmup:g}s warm-up), same seed")  # fmt: skip
    table.add_column("stage", justify="left")
    for q in ("p50", "p99", "p99.9"):
        for who in ("py", "rust", "py/rust"):
            table.add_column(f"{who} {q}" if who != "py/rust" else f"x {q}", justify="right")
    result = {"rate": args.rate, "duration_s": args.duration, "stages": {}}
    for tag in tags:
        py, rs = summaries["python"][tag], summaries["rust"][tag]
        row = [tag]
        for key in ("p50", "p99", "p99_9"):
            row += [fmt_ns(py[key]), fmt_ns(rs[key]), ratio(py[key], rs[key])]
        table.add_row(*row)
        result["stages"][tag] = {"python": {k: py[k] for k in ("count", "p50", "p99", "p99_9")},
                                 "rust": {k: rs[k] for k in ("count", "p50", "p99", "p99_9")}}  # fmt: skip
    Console(width=160).print(table)
    for who, s in sessions.items():
        summ, c = summaries[who], s.counters()
        stats = (s.meta.get("subject_stats") or {}).get("trader", {})
        in_proc = sum(summ[t]["p50"] for t in IN_PROCESS if t in summ)
        kernel = sum(summ[t]["p50"] for t in KERNEL if t in summ)
        stacked = sum(summ[t]["p50"] for t in ("wire_to_read", *IN_PROCESS, "send") if t in summ) or 1
        result[who] = {
            "in_process_p50_ns": in_proc,
            "kernel_p50_ns": kernel,
            "kernel_share_p50": round(kernel / stacked, 3),
            "tick_to_trade_p50_ns": summ.get("tick_to_trade", {}).get("p50"),
            "feed_gaps": c.get("feed_gaps", 0),
            "dropped_ring_full": c.get("dropped_ring_full", 0),
            "orders_sent": c.get("orders_sent", 0),
            "orders_acked": c.get("orders_acked", 0),
            "messages": (stats.get("feed") or {}).get("messages"),
        }
        r = result[who]
        print(f"{who:6}: in-process stages p50 sum {fmt_ns(in_proc)}; kernel (wire_to_read + send) p50 {fmt_ns(kernel)}"
              f" = {r['kernel_share_p50']:.0%} of the stacked p50; messages {r['messages']:,}, gaps {r['feed_gaps']},"
              f" ring drops {r['dropped_ring_full']}, orders sent/acked {r['orders_sent']}/{r['orders_acked']}")  # fmt: skip
    rust = result["rust"]
    bars = {
        "rust zero gaps, zero drops, orders acked": rust["feed_gaps"] == 0 and rust["dropped_ring_full"] == 0
        and rust["orders_acked"] > 0,
        "rust in-process p50 <= 2 us": rust["in_process_p50_ns"] <= 2_000,
    }  # fmt: skip
    for bar, ok in bars.items():
        print(f"bar: {bar}: {'met' if ok else 'MISSED'}")
    cmp = subprocess.run([sys.executable, "-m", "tickscope.main", "compare", str(root / "python"), "--vs",
                          str(root / "rust")], capture_output=True, text=True)  # fmt: skip
    result["compare_exit"] = cmp.returncode
    print(f"tickscope compare {root / 'python'} --vs {root / 'rust'}: exit {cmp.returncode}")
    print(cmp.stdout.rstrip())
    result["bars"] = bars
    print(json.dumps(result))
