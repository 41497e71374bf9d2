"""A stalled collector never gives a trace up: linger counts from the last drain that found
every ring empty, not from the clock at the end of a poll.

Found under load (stress-ng on both cores, the tokio subject): the collector's thread, preempted
for ~300 ms between draining the feed ring and closing traces, closed 63 traces at their signal
(tick-to-decision) while their `order.tx`, stamped a few ms after the signal, sat in a ring
already drained that round; the orders then came as 63 incomplete pieces. Both stalls here are
real (a sleep inside the poll, a drain held to a small batch), and each test fails on the old
rule whatever the host's speed: a longer stall only makes the old rule surer to close early."""

import time

import pytest

from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.collectors.rings.correlate import TICK_TO_DECISION, TICK_TO_TRADE
from tickscope.probe import Point, PointWriter

LINGER_S = 0.02
STALL_S = 5 * LINGER_S
TRACES = 10


def feed_and_orders():
    # The orders ring is created first, so every poll drains it before the feed ring (rings are
    # drained in creation order): what the orders thread publishes while the collector is held
    # after the feed drain waits for the next round.
    orders = PointWriter([Point("signal"), Point("order.tx", stage="send", trade=True)], name="orders")
    feed = PointWriter([Point("md.rx"), Point("signal", stage="strategy")], name="feed")
    return feed, orders


def tick(feed: PointWriter, seq: int) -> int:
    now = monotonic_ns()
    feed.record(0, seq, ts=now)
    feed.record(1, seq, ts=now + 100)
    return now


class StalledAfterFeed(Collector):
    """A collector whose thread loses the CPU right after draining the feed ring, while the
    orders thread publishes the orders of the ticks just drained."""

    def __init__(self, *a, on_stall, **kw):
        super().__init__(*a, **kw)
        self.on_stall = on_stall

    def _drain(self, src):
        n = super()._drain(src)
        if n and src.reader.writer_name == "feed":
            time.sleep(STALL_S)
            self.on_stall()
        return n


def assert_every_order_a_trade(col: Collector) -> None:
    c = col.counter_dict()
    assert (c["traces_seen"], c["traces_complete"], c["traces_incomplete"]) == (TRACES, TRACES, 0), c
    assert col.hists.total[TICK_TO_TRADE].total_count == TRACES
    assert TICK_TO_DECISION not in col.hists.total, "no order was cut off its tick"
    assert col.hists.total[TICK_TO_TRADE].get_max_value() == pytest.approx(300, abs=1)


def test_a_collector_held_between_its_drain_and_its_close_closes_nothing_early(ring_dir):
    feed, orders = feed_and_orders()
    sent = []

    def send_orders():  # stamped 300 ns after each tick, published while the collector is held
        for seq, t0 in sent:
            orders.record(1, seq, ts=t0 + 300)
        sent.clear()

    col = StalledAfterFeed(ring_dir, interval_s=3600, linger_s=LINGER_S, on_stall=send_orders)
    for seq in range(1, TRACES + 1):
        sent.append((seq, tick(feed, seq)))
    col.poll()  # drains orders (empty), then feed, is held, and closes: the old rule closed here
    assert col.correlator.pending == TRACES, "linger counts from the round's start, not its end"
    col.poll()  # the orders
    col.finish()
    assert_every_order_a_trade(col)


@pytest.mark.parametrize("held", ["batch", "ring_end"])
def test_a_ring_drained_in_pieces_holds_linger_until_its_backlog_is_drained(ring_dir, held):
    """A ring with more records than one poll takes (``BATCH``), or whose records wrap past the
    ring's end (a point ring is read in place, up to its end), has not been read up to the time
    the round began: a trace whose missing point may be in that backlog does not linger out."""
    orders = PointWriter([Point("signal"), Point("order.tx", stage="send", trade=True)], name="orders",
                         capacity=8)  # fmt: skip
    feed = PointWriter([Point("md.rx"), Point("signal", stage="strategy")], name="feed")
    col = Collector(ring_dir, interval_s=3600, linger_s=LINGER_S)
    first = 4  # traces sent before: the orders ring's tail sits mid-ring, so the next 6 wrap
    for seq in range(1, first + 1):
        orders.record(1, seq, ts=tick(feed, seq) + 300)
    col.poll()
    stamps = {seq: tick(feed, seq) for seq in range(first + 1, TRACES + 1)}
    col.poll()  # the ticks, their orders not published yet
    if held == "batch":
        col.BATCH = 4
    for seq, t0 in stamps.items():
        orders.record(1, seq, ts=t0 + 300)  # slots 4..7, then 0..1 past the ring's end
    polls = 0
    while col.correlator.pending:
        time.sleep(2 * LINGER_S)  # every open trace is older than linger by the collector's clock
        col.poll()
        polls += 1
        assert polls <= 4
    col.finish()
    assert_every_order_a_trade(col)
