"""A subject whose dimension values are all the tick's own (no fan-out, no leg values), with known spans.

    python tick_dims_subject.py TICKS --truth FILE
Tick ``seq``: symbol ``S<seq % 2>`` and msg_type ``T`` when ``seq % 3 == 0`` else ``Q``, both on the
tick ring; md.rx, then signal (1 + seq % 3) us later (strategy). Even ticks (every ``S0`` tick,
no ``S1`` tick) trade: one order, order.tx (2 + 4 * (seq % 4 == 0)) us after the signal (send).
FILE gets one line per tick: seq, strategy ns, send ns (-1: no order), symbol, msg_type. Every
span is exact: each stamp is the time waited for (dims_subject.py's ``at``).
"""

import argparse
from time import perf_counter_ns

from dims_subject import at  # this script's directory is on sys.path when it runs

from tickscope.probe import Point, PointWriter, TickWriter


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ticks", type=int)
    ap.add_argument("--truth", required=True)
    args = ap.parse_args()
    ticks = TickWriter([Point("md.rx"), Point("signal", stage="strategy")], name="tick-dims-feed",
                       dims=["symbol", "msg_type"])  # fmt: skip
    orders = PointWriter(
        [Point("signal"), Point("order.tx", stage="send", trade=True)], name="tick-dims-orders"
    )
    labels = {(s, m): ticks.dims(symbol=s, msg_type=m) for s in ("S0", "S1") for m in ("T", "Q")}
    truth, t = [], ticks.stamps
    for seq in range(1, args.ticks + 1):
        symbol, msg_type = f"S{seq % 2}", "T" if seq % 3 == 0 else "Q"
        t[0] = perf_counter_ns()
        t[1] = at(t[0] + 1_000 * (1 + seq % 3))
        rx, signal = t[0], t[1]
        t = ticks.commit(seq, dims=labels[symbol, msg_type])
        send = -1
        if seq % 2 == 0:
            send = 1_000 * (2 + 4 * (seq % 4 == 0))
            orders.record(1, seq, ts=at(signal + send))
        truth.append(f"{seq} {signal - rx} {send} {symbol} {msg_type}")
    ticks.close()
    orders.close()
    with open(args.truth, "w") as f:
        f.write("\n".join(truth) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
