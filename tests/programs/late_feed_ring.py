"""A two-thread subject whose order thread opens its ring before the feed thread (issue 19).

    python late_feed_ring.py TICKS EVERY linked|unlinked
The order thread opens its PointWriter ring (order.tx, ack.rx) first; the feed thread opens its
TickWriter ring (md.rx, md.decoded, order.encoded) 0.6 s later, so a collector finds the order
ring in an earlier poll. Every EVERY-th tick becomes an order handed to the order thread. Stamps
are exact by construction: md.decoded = md.rx + 1 us, order.encoded = md.rx + 3 us, order.tx =
md.rx + 5 us, ack.rx = md.rx + 9 us. ``linked``: the order ring declares order.encoded first
(never stamped), which orders its points after the feed ring's; ``unlinked``: each thread
declares only its own points, so no declaration says which ring's points come first.
Prints "ticks=N orders=M".
"""

import queue
import sys
import threading
import time
from time import perf_counter_ns

from tickscope.probe import Point, PointWriter, TickWriter

FEED_POINTS = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("order.encoded", stage="encode")]
ORDER_POINTS = [Point("order.tx", stage="send", trade=True), Point("ack.rx", stage="order_rtt")]


def main() -> int:
    ticks, every, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    linked = mode == "linked"
    handoff: queue.Queue = queue.Queue()
    opened = threading.Event()

    def order_thread() -> None:
        ring = PointWriter(([Point("order.encoded")] if linked else []) + ORDER_POINTS, name="orders")
        tx, ack = (1, 2) if linked else (0, 1)
        opened.set()
        while (item := handoff.get()) is not None:
            trace, base = item
            ring.record(tx, trace, ts=base + 5_000)
            ring.record(ack, trace, ts=base + 9_000)
        ring.close()

    orders = threading.Thread(target=order_thread)
    orders.start()
    opened.wait()
    time.sleep(0.6)  # the feed thread opens its ring late: after a collector's poll found the order ring
    feed = TickWriter(FEED_POINTS, name="feed", capacity=1 << 16)
    t = feed.stamps
    sent = 0
    for trace in range(1, ticks + 1):
        base = perf_counter_ns()
        t[0], t[1] = base, base + 1_000
        if trace % every == 0:
            t[2] = base + 3_000
        t = feed.commit(trace)
        if trace % every == 0:
            handoff.put((trace, base))
            sent += 1
        if trace % 1000 == 0:
            time.sleep(0.001)
    handoff.put(None)
    orders.join()
    feed.close()
    print(f"ticks={ticks} orders={sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
