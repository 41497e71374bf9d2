"""The bundled pipeline under load, as ``tickscope profile`` runs it:

    python benchmarks/bench_pipeline.py [--duration 30] [--rate 20000] [--feed itch] [--loop busy]

Target (issue 3): the busy-poll ITCH variant sustains 20 k messages/s for 30 s with zero feed
gaps and zero ring drops. Prints tick-to-trade p50/p99/p99.9, every stage's p50/p99 and its share
of the stacked tick-to-trade at that percentile, the drop and gap counters, orders sent/acked and
the collector's own CPU cost (per record, and per second of run as a share of a core, beside
the same run of the previous code: ``--previous REV``, a git revision of this repository, default
the one before the hlog encoder and the interval snapshot; ``--pairs N`` interleaves N runs of
each; ``--no-side-by-side`` skips them), then one JSON line.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickscope.collectors.session import Session
from tickscope.collectors.session.units import fmt_ns

REPO = Path(__file__).resolve().parents[1]
# The collector before the hlog encoder of its own and the progress lines' interval snapshot
# (5d98206: before pooled interval histograms and state files every 5 s).
PREVIOUS_REV = "75005c3"


def previous_code(rev: str, into: Path) -> Path:
    """``rev``'s files as an importable ``tickscope`` (put first on PYTHONPATH: it wins over this
    checkout's editable install), from ``git archive``: nothing of the repository is touched."""
    tree = into / "tickscope"  # the repository's top level is the package (pyproject's package-dir)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"bench_pipeline: cannot read revision {rev!r} ({archive.stderr.decode().strip()}; "
                 f"give --previous a revision of this repository)")  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return into


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--feed", default="itch")
    ap.add_argument("--loop", default="busy")
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--previous", default=PREVIOUS_REV, help="the revision measured side by side")
    ap.add_argument("--pairs", type=int, default=1, help="runs of each, interleaved (previous first)")
    ap.add_argument("--no-side-by-side", action="store_true", help="skip the runs of the previous code")
    args = ap.parse_args()

    def profile(code: Path | None) -> Session:
        out = Path(tempfile.mkdtemp(prefix="tickscope-bench-pipeline-")) / "session"
        cmd = [sys.executable, "-m", "tickscope.main", "profile", "--duration", f"{args.duration + args.warmup}s",
               "--warmup", f"{args.warmup}s", "--rate", str(args.rate), "--feed", args.feed, "--loop", args.loop,
               "--no-live", "--no-hiccup", "--out", str(out)]  # fmt: skip
        env = dict(os.environ)
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if run.returncode != 0:
            sys.exit(f"profile failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
        return Session.load(out)

    def cpu_share(s: Session) -> float | None:
        """The collector's CPU seconds per second of run: the fraction of a core it took."""
        cpu, m = (s.meta.get("collector_cpu") or {}).get("seconds"), s.meta
        if cpu is None or not m.get("end_monotonic_ns"):
            return None
        return cpu / ((m["end_monotonic_ns"] - m["start_monotonic_ns"]) / 1e9)

    # Side by side in one run of the benchmark, interleaved: the previous code, then this one.
    befores, afters = [], []
    previous = None if args.no_side_by_side else previous_code(args.previous, Path(tempfile.mkdtemp()))
    try:
        for _ in range(1 if previous is None else max(args.pairs, 1)):
            if previous is not None:
                befores.append(profile(previous))
            afters.append(profile(None))
    finally:
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    s = afters[-1]
    summary, c = s.summary(), s.counters()
    trader = (s.meta.get("subject_stats") or {}).get("trader", {})
    # each trade stage's share of the tail traces' own tick-to-trade (summary.json's attribution)
    tails = (s.attribution or {}).get("tails", {})
    shares = {k: {st: v["mean_ns"] / (tails[k]["mean_tick_to_trade_ns"] or 1) for st, v in tails[k]["stages"].items()}
              for k in ("p50", "p99") if k in tails}  # fmt: skip
    t = Table(title=f"bundled pipeline: {args.feed}/{args.loop}, {args.rate:,} msg/s for {args.duration:g}s "
                    f"(+{args.warmup:g}s warm-up)")  # fmt: skip
    for col in ("stage", "count", "p50", "share@p50", "p99", "share@p99", "p99.9", "max"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    result = {
        "feed": args.feed,
        "loop": args.loop,
        "rate": args.rate,
        "duration_s": args.duration,
        "stages": {},
    }
    for tag in s.tags:
        row = summary[tag]
        share50 = shares.get("p50", {}).get(tag)
        share99 = shares.get("p99", {}).get(tag)
        t.add_row(tag, f"{row['count']:,}", fmt_ns(row["p50"]), f"{share50:.0%}" if share50 is not None else "",
                  fmt_ns(row["p99"]), f"{share99:.0%}" if share99 is not None else "", fmt_ns(row["p99_9"]),
                  fmt_ns(row["max"]))  # fmt: skip
        result["stages"][tag] = {k: row[k] for k in ("count", "p50", "p99", "p99_9", "max")}
        if share50 is not None:
            result["stages"][tag]["share_p50"] = round(share50, 3)
            result["stages"][tag]["share_p99"] = round(share99, 3)
    Console(width=120).print(t)
    feed = trader.get("feed", {})
    result.update(
        messages=feed.get("messages"), feed_gaps=c.get("feed_gaps", 0), dropped_ring_full=c.get("dropped_ring_full", 0),
        malformed=c.get("malformed", 0), orders_sent=c.get("orders_sent", 0), orders_acked=c.get("orders_acked", 0),
        traces_incomplete=c.get("traces_incomplete", 0), collector_cpu_ns_per_record=(s.meta.get("collector_cpu") or {}).get("ns_per_record"),
    )  # fmt: skip
    shares = [cpu_share(a) for a in afters]
    result["collector_cpu_share"] = [round(x, 4) if x is not None else None for x in shares]
    if befores:
        was = [cpu_share(b) for b in befores]
        result["previous"] = args.previous
        result["collector_cpu_share_previous"] = [round(x, 4) if x is not None else None for x in was]
        result["previous_dropped_ring_full"] = [b.counters().get("dropped_ring_full", 0) for b in befores]
        result["dropped_ring_full_each"] = [a.counters().get("dropped_ring_full", 0) for a in afters]
        for i, (now, then) in enumerate(zip(shares, was, strict=True)):
            if now is not None and then is not None:
                print(f"pair {i + 1}: collector CPU per second of run {now:.2%} of a core (this code) vs "
                      f"{then:.2%} (previous code, {args.previous}): ratio {now / then:.2f}; target <= 1%")  # fmt: skip
    verdict = "met" if result["feed_gaps"] == 0 and result["dropped_ring_full"] == 0 else "MISSED"
    print(f"messages {result['messages']:,}  feed gaps {result['feed_gaps']}  ring drops {result['dropped_ring_full']}  "
          f"malformed {result['malformed']}  incomplete traces {result['traces_incomplete']}  orders sent/acked "
          f"{result['orders_sent']}/{result['orders_acked']}  collector CPU/record "
          f"{result['collector_cpu_ns_per_record']} ns  -> zero gaps and drops: {verdict}")  # fmt: skip
    print(json.dumps(result))
