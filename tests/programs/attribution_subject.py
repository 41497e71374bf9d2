"""A subject of known stage lengths for tail attribution and coordinated omission.

    python attribution_subject.py TICKS --truth FILE [--rate R] [--order-every K] [--slow-every S]
Every tick stamps md.rx, md.decoded (feed, ~2 us), signal (strategy, ~3 us); every K-th tick also
risk.checked (risk, ~1 us) and order.tx (send, ~1 us), the trade point; every S-th of those spends
~200 us more in risk. The stamps of every traded tick go to FILE (one line per tick: the five
stamps), the ground truth a test computes exact shares from.
"""

import argparse
import sys
import time
from time import perf_counter_ns

from tickscope.probe import Point, TickWriter

POINTS = [
    Point("md.rx"),
    Point("md.decoded", stage="feed"),
    Point("signal", stage="strategy"),
    Point("risk.checked", stage="risk"),
    Point("order.tx", stage="send", trade=True),
]


def spin(ns: int) -> None:
    end = perf_counter_ns() + ns
    while perf_counter_ns() < end:
        pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ticks", type=int)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--order-every", type=int, default=1)
    ap.add_argument("--slow-every", type=int, default=0)
    args = ap.parse_args()
    probe = TickWriter(POINTS, name="attribution-subject")
    t, traded, start = probe.stamps, [], time.monotonic()
    for seq in range(1, args.ticks + 1):
        if args.rate:
            while time.monotonic() < start + seq / args.rate:
                pass
        t[0] = perf_counter_ns()
        spin(2_000)
        t[1] = perf_counter_ns()
        spin(3_000)
        t[2] = perf_counter_ns()
        if seq % args.order_every == 0:
            orders = len(traded) + 1
            spin(1_000 + (200_000 if args.slow_every and orders % args.slow_every == 0 else 0))
            t[3] = perf_counter_ns()
            spin(1_000)
            t[4] = perf_counter_ns()
            traded.append(" ".join(str(t[i]) for i in range(5)))
        t = probe.commit(seq)
    probe.close()
    with open(args.truth, "w") as f:
        f.write("\n".join(traded) + "\n")
    print(f"ticks={probe.written} dropped={probe.dropped} traded={len(traded)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
