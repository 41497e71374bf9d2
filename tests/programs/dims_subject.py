"""A subject labelling known dimension values with known stage lengths, two legs on some ticks.

    python dims_subject.py TICKS --truth FILE [--tick-truth FILE] [--symbols N] [--slow VENUE=US] [--gap-us US]
    python dims_subject.py 0 --forever --rate 100 [--slow VENUE=US]   (until stopped; no truth kept)
Every span is exact (each stamp is the time waited for, not the time the wait ended): tick ``seq``:
symbol ``S<seq % N>`` on the tick ring; md.rx, then signal (1 + seq % 3) us later (strategy). Every second tick trades: leg 0 on venue XNAS (buy), and on every fourth tick also
leg 1 on venue BATS (sell), each order.tx (2 + 3 * leg) us after the signal (send). The stamps
of every order go to FILE (one line per order: trace, leg, md.rx, signal, order.tx, symbol index,
venue index), the ground truth a test computes exact per-value figures from; ``--tick-truth``
writes every tick, traded or not (trace, md.rx, signal, symbol index). ``--slow XNAS=20``
sends that venue's orders 20 us later (the other venue's legs keep their times: legs go out in
the order of their send times); ``--gap-us`` spaces the ticks, so a run spans many intervals;
``--rate`` paces them by sleeping instead (a long run beside other processes).
"""

import argparse
import itertools
from time import perf_counter_ns, sleep

from tickscope.probe import Point, PointWriter, TickWriter

VENUES = ("XNAS", "BATS")


def spin(ns: int) -> int:
    end = perf_counter_ns() + ns
    while (now := perf_counter_ns()) < end:
        pass
    return now


def at(t: int) -> int:
    """Wait until ``t``, and stamp ``t`` itself: each span is its known length whatever the host
    did meanwhile (a preempted spin would stretch it), and no stamp is ever in the future."""
    while perf_counter_ns() < t:
        pass
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ticks", type=int)
    ap.add_argument("--truth")
    ap.add_argument("--tick-truth")
    ap.add_argument("--forever", action="store_true")
    ap.add_argument("--rate", type=float, default=0.0, help="ticks per second, paced by sleeping")
    ap.add_argument("--symbols", type=int, default=3)
    ap.add_argument("--slow", default="", help="VENUE=US: that venue's sends this much later")
    ap.add_argument("--gap-us", type=int, default=0)
    args = ap.parse_args()
    ticks = TickWriter([Point("md.rx"), Point("signal", stage="strategy")], name="dims-feed", dims=["symbol"])
    orders = PointWriter([Point("signal"), Point("order.tx", stage="send", trade=True, leg=True)], name="dims-orders",
                         dims=["venue", "side"])  # fmt: skip
    symbols = [ticks.dims(symbol=f"S{i}") for i in range(args.symbols)]
    legs = [orders.dims(venue="XNAS", side="buy"), orders.dims(venue="BATS", side="sell")]
    slow_venue, _, slow_us = args.slow.partition("=")
    delay = [1_000 * (2 + 3 * leg + (int(slow_us) if VENUES[leg] == slow_venue else 0)) for leg in range(2)]
    truth, tick_truth, t = [], [], ticks.stamps
    try:
        for seq in itertools.count(1) if args.forever else range(1, args.ticks + 1):
            t[0] = perf_counter_ns()
            t[1] = at(t[0] + 1_000 * (1 + seq % 3))
            signal, rx = t[1], t[0]
            t = ticks.commit(seq, dims=symbols[seq % args.symbols])
            if args.tick_truth:
                tick_truth.append(f"{seq} {rx} {signal} {seq % args.symbols}")
            for leg in sorted(range((seq % 2 == 0) + (seq % 4 == 0)), key=delay.__getitem__):
                tx = at(signal + delay[leg])
                orders.record(1, seq, ts=tx, dims=legs[leg], leg=leg)
                if args.truth:
                    truth.append(f"{seq} {leg} {rx} {signal} {tx} {seq % args.symbols} {leg}")
            spin(1_000 * args.gap_us)
            if args.rate:
                sleep(1 / args.rate)
    except KeyboardInterrupt:  # profile stops a --forever run with SIGINT: close the rings cleanly
        pass
    ticks.close()
    orders.close()
    if args.truth:
        with open(args.truth, "w") as f:
            f.write("\n".join(truth) + "\n")
    if args.tick_truth:
        with open(args.tick_truth, "w") as f:
            f.write("\n".join(tick_truth) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
