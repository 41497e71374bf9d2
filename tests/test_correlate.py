"""Correlation rules: prefix-complete traces give stages; holes are counted, never guessed."""

from dataclasses import dataclass

import numpy as np
import pytest

from tickscope.collectors.collector import Collector, monotonic_ns
from tickscope.collectors.correlate import TICK_TO_DECISION, TICK_TO_TRADE, Correlator, TraceSchema
from tickscope.probe import Point, PointWriter, TickWriter


@dataclass
class P:
    name: str
    stage: str = ""
    flags: int = 0


def schema(*names, trade=None):
    s = TraceSchema()
    s.merge([P(n, flags=1 if n == trade else 0) for n in names])
    return s


def rows(*traces):
    ids = np.array([t[0] for t in traces], dtype=np.uint64)
    ts = np.array([t[1] for t in traces], dtype=np.int64)
    return ids, ts, np.where(ts != 0, 1, 0).astype(np.int16)


def test_complete_traces_give_stages_that_sum_to_tick_to_trade():
    c = Correlator(schema("a", "b", "c", "d", trade="c"))
    c.add_rows(*rows((1, [100, 150, 400, 900]), (2, [1000, 1001, 1011, 0])))
    out = c.flush(now_ns=10**12, force=True)
    assert (
        list(out.values["b"]) == [50, 1]
        and list(out.values["c"]) == [250, 10]
        and list(out.values["d"]) == [500]
    )
    assert list(out.values[TICK_TO_TRADE]) == [300, 11]
    assert out.values["b"].sum() + out.values["c"].sum() == out.values[TICK_TO_TRADE].sum()
    assert out.complete == 2 and out.incomplete == 0


def test_traces_that_stop_before_the_trade_point_are_tick_to_decision():
    c = Correlator(schema("a", "b", "c", "d", trade="d"))
    c.add_rows(*rows((1, [100, 130, 0, 0]), (2, [100, 110, 170, 0])))
    out = c.flush(10**12, force=True)
    assert sorted(out.values[TICK_TO_DECISION]) == [30, 70] and out.values[TICK_TO_TRADE].size == 0


def test_holes_and_missing_first_points_are_incomplete_not_interpolated():
    c = Correlator(schema("a", "b", "c"))
    c.add_rows(*rows((1, [100, 0, 300]), (2, [0, 200, 300]), (3, [1, 2, 3])))
    out = c.flush(10**12, force=True)
    assert out.incomplete == 2 and out.complete == 1
    assert list(out.values["b"]) == [1] and list(out.values[TICK_TO_TRADE]) == [2]


def test_a_trace_split_across_batches_and_out_of_order_is_joined():
    c = Correlator(schema("a", "b", "c"), linger_ns=10**9)
    c.advance()
    c.add_points(np.array([7], np.uint64), np.array([2]), np.array([900]), src=0)  # last point first
    assert c.flush(now_ns=1000).complete == 0, "the round that brought the final point may bring more"
    c.add_points(np.array([7, 7], np.uint64), np.array([1, 0]), np.array([500, 100]), src=1)
    c.advance()
    out = c.flush(now_ns=5000)
    assert out.complete == 1 and list(out.values[TICK_TO_TRADE]) == [800] and list(out.values["c"]) == [400]


def test_open_traces_wait_for_late_points_then_close_after_linger():
    c = Correlator(schema("a", "b", "c"), linger_ns=1000)
    c.add_rows(*rows((1, [100, 200, 0])))
    assert c.flush(now_ns=500).complete == 0 and c.pending == 1
    out = c.flush(now_ns=5000)
    assert c.pending == 0 and list(out.values[TICK_TO_DECISION]) == [100]


def test_a_tick_record_that_left_a_point_out_closes_without_waiting_out_the_linger():
    """Ring 0 (tick) declares a..c, ring 1 (points) declares d. A tick record missing c can never
    gain it: the trace is decided after the next drain round. One with a..c waits for d."""
    c = Correlator(schema("a", "b", "c", "d", trade="d"), linger_ns=10**12)
    c.declare_ring(0, [0, 1, 2], tick=True)
    c.declare_ring(1, [3], tick=False)
    c.advance()
    c.add_rows(*rows((1, [100, 130, 0, 0]), (2, [100, 110, 170, 0])))
    assert c.flush(now_ns=1000).complete == 0, "not before another drain round"
    c.advance()
    out = c.flush(now_ns=1000)
    assert list(out.values[TICK_TO_DECISION]) == [30] and c.pending == 1
    # A point ring may still declare c: then nothing is decided early.
    c2 = Correlator(schema("a", "b", "c", "d", trade="d"), linger_ns=10**12)
    c2.declare_ring(0, [0, 1, 2], tick=True)
    c2.declare_ring(1, [2, 3], tick=False)
    c2.advance()
    c2.add_rows(*rows((1, [100, 130, 0, 0])))
    c2.advance()
    assert c2.flush(now_ns=1000).complete == 0 and c2.pending == 1


def test_negative_stages_are_counted_as_clock_skew():
    c = Correlator(schema("a", "b", "c"))
    c.add_rows(*rows((1, [100, 90, 300])))
    out = c.flush(10**12, force=True)
    assert out.clock_skew == 1 and out.values[TICK_TO_TRADE].size == 0


def test_duplicate_stamps_are_counted():
    c = Correlator(schema("a", "b"))
    c.add_points(np.array([1, 1, 1], np.uint64), np.array([0, 1, 1]), np.array([10, 20, 25]), src=0)
    c.flush(10**12, force=True)
    assert c.duplicate_stamps == 1


def test_pending_traces_are_bounded():
    c = Correlator(schema("a", "b"), max_pending=10, linger_ns=10**15)
    c.add_rows(*rows(*[(i, [i + 1, 0]) for i in range(1, 31)]))
    c.flush(now_ns=100)
    assert c.pending == 10 and c.evicted == 20


def test_schema_merges_point_tables_of_several_rings_in_pipeline_order():
    s = TraceSchema()
    s.merge([P("md.rx"), P("md.decoded", "feed"), P("order.tx", "send", 1)])
    s.merge([P("md.decoded"), P("signal", "strategy"), P("order.tx")])
    assert s.order_names == ["md.rx", "md.decoded", "signal", "order.tx"]
    assert s.stages == ["feed", "strategy", "send"] and s.trade_index == 3


def test_collector_joins_a_tick_ring_and_a_point_ring_of_one_pipeline(ring_dir):
    tick = TickWriter(
        [Point("md.rx"), Point("signal", stage="strategy"), Point("order.tx", stage="send", trade=True)]
    )
    acks = PointWriter(["order.tx", Point("ack.rx", stage="order_rtt")], name="acks")
    col = Collector(ring_dir)
    t = tick.stamps
    base = monotonic_ns()  # realistic stamps: traces stay open while their ack may still come
    for seq in range(1, 101):
        t[0], t[1], t[2] = base + 1000 * seq, base + 1000 * seq + 100, base + 1000 * seq + 300
        t = tick.commit(seq)
        acks.record(1, seq, ts=base + 1000 * seq + 800)
    col.poll()
    col.finish()
    assert col.schema.order_names == ["md.rx", "signal", "order.tx", "ack.rx"]
    totals = col.hists.total
    assert totals["order_rtt"].total_count == 100 and totals["order_rtt"].get_max_value() == pytest.approx(
        500, abs=1
    )
    assert totals[TICK_TO_TRADE].get_value_at_percentile(50) == 300
    counters = col.counter_dict()
    assert counters["traces_complete"] == 100 and counters["produced"] == counters["drained"] == 200


def test_rings_join_the_pipeline_order_in_creation_order_not_file_name_order(ring_dir):
    """The trader's layout: a tick ring, then a point ring of later points with no point in common.
    'trader-orders.*.ring' sorts before 'trader.*.ring'; found in one pass, creation order decides."""
    tick = TickWriter([Point("md.rx"), Point("signal", stage="strategy")], name="trader")
    orders = PointWriter([Point("order.tx", stage="send", trade=True), Point("ack.rx", stage="order_rtt")],
                         name="trader-orders")  # fmt: skip
    assert sorted(p.name for p in ring_dir.iterdir())[0].startswith("trader-orders")
    col = Collector(ring_dir)
    t = tick.stamps
    base = monotonic_ns()
    for seq in range(1, 51):
        t[0], t[1] = base + 1000 * seq, base + 1000 * seq + 100
        t = tick.commit(seq)
        if seq % 2:
            orders.record(0, seq, ts=base + 1000 * seq + 300)
            orders.record(1, seq, ts=base + 1000 * seq + 900)
    col.poll()
    col.finish()
    assert col.schema.order_names == ["md.rx", "signal", "order.tx", "ack.rx"]
    c = col.counter_dict()
    assert c["traces_complete"] == 50 and c["traces_incomplete"] == 0 and c["traces_clock_skew"] == 0
    assert (
        col.hists.total[TICK_TO_TRADE].total_count == 25
        and col.hists.total[TICK_TO_DECISION].total_count == 25
    )


def test_the_collector_polls_rarely_when_rings_fill_slowly_and_at_once_when_they_fill_fast():
    c = Collector.__new__(Collector)
    c.fill = 0.0
    assert c.next_sleep(0.005) == 0.01 and c.next_sleep(0.02) == 0.02, "backs off to the ceiling"
    c.fill = 0.1
    assert c.next_sleep(0.02) == 0.01
    c.fill = 0.3
    assert c.next_sleep(0.02) == 0.0, "a ring a quarter full: poll again at once"
