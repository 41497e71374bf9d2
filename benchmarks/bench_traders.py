"""The Python trader, the Rust trader's busy-poll loop and its tokio loop side by side, against
the same bundled venue:

    python benchmarks/bench_traders.py [--duration 30] [--rate 20000] [--warmup 2]

Runs ``tickscope profile`` once per trader (same venue, rate, load and seed; one after the other,
so they never share the two cores), then prints one table: per stage p50/p99/p99.9 for Python,
Rust busy-poll and Rust tokio. Then per trader: CPU per tick and voluntary context switches (the
loop's wake-ups) per tick, read from the trader's /proc while it runs (its whole life: start-up
and warm-up included, over every message it read). Bars (issue 13): the Rust trader has zero feed
gaps, zero ring drops and orders acked; its in-process stages (feed + book + strategy + risk +
encode) total p50 <= 2 us; the table says how much of tick-to-trade is the kernel
(``wire_to_read`` + ``send``). Also checks that ``tickscope compare PY --vs RUST`` reads the two
sessions. Then one JSON line.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickscope.collectors.session import Session
from tickscope.collectors.session.units import fmt_ns

IN_PROCESS = ("feed", "book", "strategy", "risk", "encode")
KERNEL = ("wire_to_read", "send")
# Each run: its label and profile's options for it.
TRADERS = {"python": ["--trader", "python"], "rust": ["--trader", "rust"],
           "rust-tokio": ["--trader", "rust", "--loop", "tokio"]}  # fmt: skip
TRADER_CMDLINE = (b"tickscope.pipeline.trader", b"tickscope-trader")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parents[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        todo += kids
    return found


def _trader_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, voluntary context switches) of the trader among ``pid``'s descendants."""
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmdline = f.read()
            if not any(name in cmdline for name in TRADER_CMDLINE):
                continue
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{p}/status") as f:
                switches = next(
                    int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches")
                )
        except (OSError, StopIteration):
            continue
        return (int(fields[11]) + int(fields[12])) / CLK_TCK, switches  # utime + stime
    return None


def profile(trader: str, args, out: Path) -> tuple[Session, tuple[float, int] | None]:
    cmd = [sys.executable, "-m", "tickscope.main", "profile", *TRADERS[trader],
           "--duration", f"{args.duration + args.warmup}s", "--warmup", f"{args.warmup}s", "--rate", str(args.rate),
           "--no-live", "--no-hiccup", "--no-perf", "--name", f"bench-{trader}", "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    usage = None
    try:
        # The trader's /proc, sampled until it ends: the last sample misses at most one period.
        while run.poll() is None:
            usage = _trader_usage(run.pid) or usage
            time.sleep(0.1)
        _, stderr = run.communicate()
    except KeyboardInterrupt:
        # Ctrl-C reached tickscope too (one process group): let it stop the pipeline and save, never
        # kill it (subprocess.run would: its venue and trader die with it, its rings stay in /dev/shm).
        run.wait()
        print(f"interrupted: the {trader} trader's session so far is in {out}", file=sys.stderr)
        sys.exit(130)
    if run.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"profile {' '.join(TRADERS[trader])} failed (exit {run.returncode}): {last}")
    return Session.load(out), usage


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--warmup", type=float, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tickscope-bench-traders-"))
    runs = {t: profile(t, args, root / t) for t in TRADERS}
    sessions = {t: s for t, (s, _) in runs.items()}
    summaries = {t: s.summary() for t, s in sessions.items()}
    tags = [t for t in sessions["python"].tags if all(t in summaries[w] for w in TRADERS)]
    table = Table(title=f"Python, Rust busy-poll and Rust tokio traders: bundled venue, {args.rate:,} msg/s for "
                        f"{args.duration:g}s (+{args.warmup:g}s warm-up), same seed")  # fmt: skip
    table.add_column("stage", justify="left")
    for q in ("p50", "p99", "p99.9"):
        for who in ("py", "busy", "tokio"):
            table.add_column(f"{who} {q}", justify="right")
    result = {"rate": args.rate, "duration_s": args.duration, "stages": {}}
    for tag in tags:
        row = [tag]
        for key in ("p50", "p99", "p99_9"):
            row += [fmt_ns(summaries[w][tag][key]) for w in TRADERS]
        table.add_row(*row)
        result["stages"][tag] = {w: {k: summaries[w][tag][k] for k in ("count", "p50", "p99", "p99_9")}
                                 for w in TRADERS}  # fmt: skip
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
        usage, ticks = runs[who][1], r["messages"]
        if usage and ticks:
            r["cpu_ns_per_tick"] = round(usage[0] * 1e9 / ticks)
            r["voluntary_switches_per_tick"] = round(usage[1] / ticks, 3)
            print(f"{who:10}: CPU per tick {fmt_ns(r['cpu_ns_per_tick'])} ({usage[0]:.2f} s over {ticks:,} "
                  f"messages), voluntary context switches per tick {r['voluntary_switches_per_tick']}")  # fmt: skip
        print(f"{who:10}: in-process stages p50 sum {fmt_ns(in_proc)}; kernel (wire_to_read + send) p50 {fmt_ns(kernel)}"
              f" = {r['kernel_share_p50']:.0%} of the stacked p50; messages {r['messages']:,}, gaps {r['feed_gaps']},"
              f" ring drops {r['dropped_ring_full']}, orders sent/acked {r['orders_sent']}/{r['orders_acked']}")  # fmt: skip
    rust = result["rust"]
    bars = {
        "rust zero gaps, zero drops, orders acked": rust["feed_gaps"] == 0 and rust["dropped_ring_full"] == 0
        and rust["orders_acked"] > 0,
        "rust in-process p50 <= 2 us": rust["in_process_p50_ns"] <= 2_000,
        "rust tokio zero gaps, zero drops, every order acked": result["rust-tokio"]["feed_gaps"] == 0
        and result["rust-tokio"]["dropped_ring_full"] == 0
        and 0 < result["rust-tokio"]["orders_acked"] == result["rust-tokio"]["orders_sent"],
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
