"""A Python subject whose acks come back late: 1.5 s to 3.1 s after order.tx, by design.

    python late_acks.py ORDERS
Each order stamps md.rx, signal and order.tx (the trade point) in a TickWriter ring; its ack is
stamped in a PointWriter ring at exactly order.tx + delay (delay = 1.5 s + (137 * i mod 1600) ms),
and written only once that moment has passed, so the collector sees it after the order's trace
closed: the 250 ms linger from its drain, which comes up to a 250 ms poll after its stamp, and
closed at the first poll after that (up to 250 ms later again): 750 ms at most, twice that on a
loaded host whose sleeps run long. Prints "orders=N acks=N delays_ns=d1,d2,...".
"""

import sys
import time
from time import perf_counter_ns

from tickscope.probe import Point, PointWriter, TickWriter

ORDER_POINTS = [
    Point("md.rx"),
    Point("signal", stage="strategy"),
    Point("order.tx", stage="send", trade=True),
]
# order.tx declared (never stamped here) to say ack.rx follows it: rings link by declaration
ACK_POINTS = [Point("order.tx"), Point("ack.rx", stage="order_rtt")]
ACK_RX = 1


def delay_ns(i: int) -> int:
    return 1_500_000_000 + (137 * i % 1600) * 1_000_000


def main() -> int:
    orders = int(sys.argv[1])
    ticks = TickWriter(ORDER_POINTS, name="late-orders")
    acks = PointWriter(ACK_POINTS, name="late-acks")
    due: list[tuple[int, int]] = []  # (ack stamp, order id), written once the stamp is in the past
    t = ticks.stamps
    for i in range(1, orders + 1):
        t[0] = perf_counter_ns()
        t[1] = perf_counter_ns()
        t[2] = tx = perf_counter_ns()
        t = ticks.commit(i)
        due.append((tx + delay_ns(i), i))
        time.sleep(0.02)
    due.sort()
    for stamp, i in due:
        while perf_counter_ns() < stamp:
            time.sleep(min(0.01, max(0.0, (stamp - perf_counter_ns()) / 1e9)))
        acks.record(ACK_RX, i, ts=stamp)
    ticks.close()
    acks.close()
    print(
        f"orders={orders} acks={len(due)} delays_ns={','.join(str(delay_ns(i)) for i in range(1, orders + 1))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
