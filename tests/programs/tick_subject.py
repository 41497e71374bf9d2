"""A small instrumented Python program for tests: a fake 5-point pipeline.

    python tick_subject.py TICKS [--rate R] [--exit-code N] [--no-order-every K] [--skew-every K] [--forever]
                                 [--spin STAGE=NS] [--slow-tick SEQ=NS]
Every tick stamps md.rx..order.tx; every K-th tick stops at "signal" (no order); with
--skew-every, every K-th tick stamps md.decoded before md.rx (clocks that disagree). Each stage
spins a known time (feed 500 ns, strategy 1000 ns, encode 300 ns); ``--spin strategy=3000000``
makes that stage 3 ms long (a known slow stage); ``--slow-tick 500=20000000`` sleeps 20 ms more in
tick 500's strategy stage (one known slow tick among normal ones; repeatable).
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
    Point("order.encoded", stage="encode"),
    Point("order.tx", stage="send", trade=True),
]
RX, DECODED, SIGNAL, ENCODED, TX = range(5)


def spin(ns: int) -> None:
    end = perf_counter_ns() + ns
    while perf_counter_ns() < end:
        pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ticks", type=int)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--exit-code", type=int, default=0)
    ap.add_argument("--no-order-every", type=int, default=0)
    ap.add_argument("--skew-every", type=int, default=0)
    ap.add_argument("--forever", action="store_true")
    ap.add_argument("--spin", action="append", default=[], metavar="STAGE=NS")
    ap.add_argument("--slow-tick", action="append", default=[], metavar="SEQ=NS")
    args = ap.parse_args()
    args.slow = {}
    for item in args.slow_tick:
        seq, _, ns = item.partition("=")
        if not seq.isdigit() or not ns.isdigit():
            ap.error(f"--slow-tick {item!r}: expected SEQ=NS")
        args.slow[int(seq)] = int(ns)
    args.spins = {"feed": 500, "strategy": 1000, "encode": 300}
    for item in args.spin:
        stage, _, ns = item.partition("=")
        if stage not in args.spins or not ns.isdigit():
            ap.error(f"--spin {item!r}: expected STAGE=NS with STAGE one of {', '.join(args.spins)}")
        args.spins[stage] = int(ns)
    probe = TickWriter(POINTS, name="tick-subject")
    seq = 0
    try:
        seq = run(args, probe, seq)
    except KeyboardInterrupt:  # profile stops its target with SIGINT: leave the ring closed cleanly
        pass
    probe.close()
    print(f"ticks={probe.written} dropped={probe.dropped}", flush=True)
    return args.exit_code


def run(args, probe, seq):
    t = probe.stamps
    feed_ns, strategy_ns, encode_ns = args.spins["feed"], args.spins["strategy"], args.spins["encode"]
    start = time.monotonic()
    while args.forever or seq < args.ticks:
        seq += 1
        if args.rate:
            due = start + seq / args.rate
            while time.monotonic() < due:
                pass
        t[RX] = perf_counter_ns()
        spin(feed_ns)
        t[DECODED] = perf_counter_ns()
        if args.skew_every and seq % args.skew_every == 0:
            t[RX], t[DECODED] = t[DECODED], t[RX]
        spin(strategy_ns)
        if seq in args.slow:
            time.sleep(args.slow[seq] / 1e9)
        t[SIGNAL] = perf_counter_ns()
        if not (args.no_order_every and seq % args.no_order_every == 0):
            spin(encode_ns)
            t[ENCODED] = perf_counter_ns()
            t[TX] = perf_counter_ns()
        t = probe.commit(seq)
    return seq


if __name__ == "__main__":
    sys.exit(main())
