"""The bundled pipeline under load, as ``tickscope profile`` runs it:

    python benchmarks/bench_pipeline.py [--duration 30] [--rate 20000] [--feed itch] [--loop busy]

Target (issue 3): the busy-poll ITCH variant sustains 20 k messages/s for 30 s with zero feed
gaps and zero ring drops. Prints tick-to-trade p50/p99/p99.9, every stage's p50/p99 and its share
of the stacked tick-to-trade at that percentile, the drop and gap counters, orders sent/acked and
the collector's own CPU cost, then one JSON line.
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
from tickscope.reports.analysis.views import stage_shares

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--feed", default="itch")
    ap.add_argument("--loop", default="busy")
    ap.add_argument("--warmup", type=float, default=2)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="tickscope-bench-pipeline-")) / "session"
    cmd = [sys.executable, "-m", "tickscope.main", "profile", "--duration", f"{args.duration + args.warmup}s",
           "--warmup", f"{args.warmup}s", "--rate", str(args.rate), "--feed", args.feed, "--loop", args.loop,
           "--no-live", "--no-hiccup", "--out", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"profile failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
    s = Session.load(out)
    summary, c = s.summary(), s.counters()
    trader = (s.meta.get("subject_stats") or {}).get("trader", {})
    shares = stage_shares(s)
    t = Table(title=f"bundled pipeline: {args.feed}/{args.loop}, {args.rate:,} msg/s for {args.duration:g}s "
                    f"(+{args.warmup:g}s warm-up)")  # fmt: skip
    for col in ("stage", "count", "p50", "share@p50", "p99", "share@p99", "p99.9", "max"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    tot50 = sum(shares["p50"].values()) or 1
    tot99 = sum(shares["p99"].values()) or 1
    result = {
        "feed": args.feed,
        "loop": args.loop,
        "rate": args.rate,
        "duration_s": args.duration,
        "stages": {},
    }
    for tag in s.tags:
        row = summary[tag]
        share50 = shares["p50"].get(tag)
        share99 = shares["p99"].get(tag)
        t.add_row(tag, f"{row['count']:,}", fmt_ns(row["p50"]), f"{share50 / tot50:.0%}" if share50 is not None else "",
                  fmt_ns(row["p99"]), f"{share99 / tot99:.0%}" if share99 is not None else "", fmt_ns(row["p99_9"]),
                  fmt_ns(row["max"]))  # fmt: skip
        result["stages"][tag] = {k: row[k] for k in ("count", "p50", "p99", "p99_9", "max")}
        if share50 is not None:
            result["stages"][tag]["share_p50"] = round(share50 / tot50, 3)
            result["stages"][tag]["share_p99"] = round(share99 / tot99, 3)
    Console(width=120).print(t)
    feed = trader.get("feed", {})
    result.update(
        messages=feed.get("messages"), feed_gaps=c.get("feed_gaps", 0), dropped_ring_full=c.get("dropped_ring_full", 0),
        malformed=c.get("malformed", 0), orders_sent=c.get("orders_sent", 0), orders_acked=c.get("orders_acked", 0),
        traces_incomplete=c.get("traces_incomplete", 0), collector_cpu_ns_per_record=(s.meta.get("collector_cpu") or {}).get("ns_per_record"),
    )  # fmt: skip
    verdict = "met" if result["feed_gaps"] == 0 and result["dropped_ring_full"] == 0 else "MISSED"
    print(f"messages {result['messages']:,}  feed gaps {result['feed_gaps']}  ring drops {result['dropped_ring_full']}  "
          f"malformed {result['malformed']}  incomplete traces {result['traces_incomplete']}  orders sent/acked "
          f"{result['orders_sent']}/{result['orders_acked']}  collector CPU/record "
          f"{result['collector_cpu_ns_per_record']} ns  -> zero gaps and drops: {verdict}")  # fmt: skip
    print(json.dumps(result))
