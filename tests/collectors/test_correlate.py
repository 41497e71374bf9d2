"""Correlation rules: prefix-complete traces give stages; holes are counted, never guessed."""

import itertools
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from rich.text import Text

from support import PROGRAMS
from support.cli import run_cli
from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.collectors.rings.correlate import (
    TICK_TO_DECISION,
    TICK_TO_TRADE,
    Correlator,
    DeclarationConflict,
    TraceSchema,
)
from tickscope.collectors.session.hdr import new_histogram
from tickscope.probe import Point, PointWriter, TickWriter
from tickscope.reports.console import CountersLine


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


def test_rings_join_the_pipeline_order_by_declaration_whichever_ring_is_found_first(ring_dir):
    """The trader's layout: a tick ring, and a ring of later points that declares the tick ring's
    last point first (never stamping it). The orders ring is created first and sorts first."""
    orders = PointWriter([Point("signal"), Point("order.tx", stage="send", trade=True),
                          Point("ack.rx", stage="order_rtt")], name="trader-orders")  # fmt: skip
    tick = TickWriter([Point("md.rx"), Point("signal", stage="strategy")], name="trader")
    assert sorted(p.name for p in ring_dir.iterdir())[0].startswith("trader-orders")
    col = Collector(ring_dir)
    t = tick.stamps
    base = monotonic_ns()
    for seq in range(1, 51):
        t[0], t[1] = base + 1000 * seq, base + 1000 * seq + 100
        t = tick.commit(seq)
        if seq % 2:
            orders.record(1, seq, ts=base + 1000 * seq + 300)
            orders.record(2, seq, ts=base + 1000 * seq + 900)
    col.poll()
    col.finish()
    assert col.schema.order_names == ["md.rx", "signal", "order.tx", "ack.rx"]
    c = col.counter_dict()
    assert c["traces_complete"] == c["traces_seen"] == 50 and col.counters.drop_free
    assert (
        col.hists.total[TICK_TO_TRADE].total_count == 25
        and col.hists.total[TICK_TO_DECISION].total_count == 25
    )


RINGS = [  # a pipeline declared in pieces, as threads that each know their own points declare it
    [P("md.rx"), P("md.decoded", "feed")],
    [P("md.decoded"), P("book.updated", "book"), P("signal", "strategy")],
    [P("signal"), P("order.tx", "send", 1)],  # a reference to signal (never stamped) links the pieces
    [P("order.tx"), P("ack.rx", "order_rtt")],
    [P("md.rx"), P("signal")],  # an order already implied: adds no edge that matters
]


def test_every_discovery_order_gives_the_same_schema():
    expected = ["md.rx", "md.decoded", "book.updated", "signal", "order.tx", "ack.rx"]
    for perm in itertools.permutations(range(len(RINGS))):
        s = TraceSchema()
        for i in perm:
            s.merge(RINGS[i], ring=f"ring r{i} (pid {i})")
        assert s.order_names == expected, perm
        assert s.stages == ["feed", "book", "strategy", "send", "order_rtt"] and s.trade_index == 4
        assert s.unresolved is None


@pytest.mark.parametrize(
    "second, line",
    [
        ([P("md.decoded", "decode")],
         "ring b (pid 2) declares point md.decoded with stage 'decode', ring a (pid 1) with stage 'feed': a point's "
         "stage must be the same in every ring that declares it (or left empty)"),
        ([P("order.tx", "send", 0)],
         "ring b (pid 2) declares point order.tx without the trade flag, ring a (pid 1) with the trade flag: a point "
         "that has a stage or the flag must carry the same flag in every ring (or be declared bare)"),
        ([P("order.tx"), P("md.rx")],
         "ring b (pid 2) declares order.tx before md.rx, but ring a (pid 1) declares md.rx before md.decoded, "
         "ring a (pid 1) declares md.decoded before order.tx: the rings' point orders contradict each other "
         "(declare the points in one order in every writer)"),
    ],
)  # fmt: skip
def test_contradicting_declarations_are_one_line_naming_both_rings_and_the_points(second, line):
    s = TraceSchema()
    s.merge([P("md.rx"), P("md.decoded", "feed"), P("order.tx", "send", 1)], ring="ring a (pid 1)")
    with pytest.raises(DeclarationConflict) as e:
        s.merge(second, ring="ring b (pid 2)")
    assert str(e.value) == line and "\n" not in line
    assert s.order_names == ["md.rx", "md.decoded", "order.tx"] and s.stage_of["md.decoded"] == "feed"


def test_a_ring_contradicting_another_is_refused_before_any_of_its_records_is_read(ring_dir):
    good = TickWriter([Point("md.rx"), Point("md.decoded", stage="feed")], name="good")
    bad = PointWriter([Point("md.rx"), Point("md.decoded", stage="decode")], name="bad")
    for seq in range(1, 11):
        t = good.stamps
        t[0], t[1] = 1000 * seq, 1000 * seq + 100
        good.commit(seq)
        bad.record(1, seq, ts=1000 * seq + 50)
    col = Collector(ring_dir)
    col.poll()
    col.finish()
    assert col.ring_errors == [
        f"refused ring {bad.path}: ring bad (pid {os.getpid()}) declares point md.decoded with stage 'decode', "
        f"ring good (pid {os.getpid()}) with stage 'feed': a point's stage must be the same in every ring that "
        "declares it (or left empty); none of its records is read: fix the declarations so that every ring agrees"
    ]
    c = col.counter_dict()
    assert c["rings_refused"] == 1 and c["records_refused"] == 10 and c["produced"] == 20
    assert c["traces_complete"] == 10 and not col.counters.drop_free
    assert (
        "NOT drop-free: 1 ring refused" in Text.assemble(CountersLine(c, status="complete").__rich__()).plain
    )


def test_rings_no_declaration_links_hold_their_traces_then_set_them_aside_with_one_line(ring_dir):
    """Each ring declares only its own points: which comes first is not declared, so it is never
    taken from timing. Traces wait (the linking ring may open later), then are set aside."""
    feed = TickWriter([Point("md.rx"), Point("md.decoded", stage="feed")], name="feed")
    orders = PointWriter([Point("order.tx", stage="send", trade=True)], name="orders")
    for seq in range(1, 21):
        t = feed.stamps
        t[0], t[1] = 1000 * seq, 1000 * seq + 100
        feed.commit(seq)
        orders.record(0, seq, ts=1000 * seq + 300)
    col = Collector(ring_dir)
    now = monotonic_ns()
    col.poll(now)
    assert col.counters.traces_seen == 0 and col.correlator.pending == 20, "held: no order to measure them on"
    col.poll(now + col.ORDER_GRACE_NS // 2)
    assert col.counters.traces_seen == 0
    col.poll(now + col.ORDER_GRACE_NS)
    c = col.counter_dict()
    assert c["traces_seen"] == c["traces_unordered"] == 20 and c["traces_complete"] == 0
    pid = os.getpid()
    assert col.ring_errors == [
        f"traces set aside, unmeasured: no declaration orders the points md.rx..md.decoded of ring feed (pid {pid}) "
        f"and order.tx of ring orders (pid {pid}) relative to each other: declare in one ring the point that "
        "precedes another group's first point; e.g. if md.decoded comes before order.tx, declare md.decoded as "
        f"the first point of ring orders (pid {pid}) (declared, never stamped)"
    ]
    col.finish()
    assert not col.counters.drop_free and not col.hists.total


def test_every_trace_closed_is_recorded_or_set_aside_for_one_named_reason():
    """seen == recorded + set aside, exactly, with skew, holes, duplicates, values beyond the
    histogram range, late points (joined, beyond the horizon, skewed) and evictions in one run."""
    c = Correlator(schema("a", "b", "c", "d", trade="c"), max_value=10**9, late_horizon_ns=10**12)
    closed = []
    c.add_rows(*rows((1, [100, 200, 300, 400]), (2, [100, 50, 300, 400]), (3, [100, 0, 300, 400]),
                     (5, [100, 200, 2 * 10**9 + 300, 0]), (6, [100, 200, 300, 0]), (9, [100, 200, 300, 0])))  # fmt: skip
    c.add_points(np.array([4, 4, 4], np.uint64), np.array([0, 0, 1]), np.array([10, 20, 30]), src=0)
    closed.append(c.flush(10**12, force=True))
    assert (closed[0].seen, closed[0].complete, closed[0].clock_skew, closed[0].incomplete) == (7, 3, 1, 1)
    assert (closed[0].duplicate, closed[0].out_of_range) == (1, 1) and len(c.late) == 2
    c.add_rows(*rows((6, [0, 0, 0, 900]), (7, [0, 0, 0, 900]), (9, [0, 0, 0, 250])))
    closed.append(c.flush(10**12, force=True))
    assert (closed[1].seen, closed[1].late_points, closed[1].late_beyond_horizon, closed[1].clock_skew) == (
        2,
        1,
        1,
        1,
    )
    assert list(closed[1].values["d"]) == [600], "the joined ack is part of a trace already seen"
    c.max_pending, c.linger_ns = 2, 10**15
    c.add_rows(*rows(*[(20 + i, [i + 1, i + 2, 0, 0]) for i in range(5)]))
    closed.append(c.flush(now_ns=0))
    closed.append(c.flush(10**12, force=True))
    assert closed[2].evicted == closed[2].seen == 3 and closed[3].complete == 2
    seen = sum(x.seen for x in closed)
    recorded = sum(x.complete for x in closed)
    aside = {k: sum(x.set_aside()[k] for x in closed) for k in closed[0].set_aside()}
    assert seen == recorded + sum(aside.values()) == 14
    assert aside == {"incomplete": 1, "clock_skew": 2, "late_beyond_horizon": 1, "evicted": 3, "duplicate": 1,
                     "out_of_range": 1, "unordered": 0}  # fmt: skip


@pytest.mark.parametrize("linked", [True, False])
def test_an_order_thread_that_opens_its_ring_before_the_feed_thread(tmp_path, linked):
    """Issue 19's case: the order ring is found a poll before the feed ring. Linked by declaration
    (the order ring declares order.encoded first), every count and span is exact; unlinked, no
    trace is measured on a guessed order: each is set aside and one line says what to declare."""
    out = tmp_path / "s"
    r = run_cli("profile", "--no-live", "--no-perf", "--fail-on-drops", "--out", str(out), "--", sys.executable,
                str(PROGRAMS / "late_feed_ring.py"), "20000", "4", "linked" if linked else "unlinked")  # fmt: skip
    assert "ticks=20000 orders=5000" in r.stdout, r.stdout + r.stderr
    meta = json.loads((out / "meta.json").read_text())
    c = meta["counters"]
    assert c["produced"] == c["drained"] == 30_000 and c["traces_seen"] == 20_000
    if not linked:
        assert r.returncode == 1 and c["traces_unordered"] == 20_000 and c["traces_complete"] == 0
        assert "traces: 20,000 seen = 0 recorded + 20,000 set aside (unordered points 20,000)" in r.stdout
        assert "declare order.encoded as the first point of ring orders" in r.stderr
        return
    assert r.returncode == 0 and meta["drop_free"] is True, r.stdout + r.stderr
    assert meta["points"] == ["md.rx", "md.decoded", "order.encoded", "order.tx", "ack.rx"]
    summary = json.loads((out / "summary.json").read_text())
    exact = {"feed": (20_000, 1_000), "encode": (5_000, 2_000), "send": (5_000, 2_000),
             "order_rtt": (5_000, 4_000), TICK_TO_TRADE: (5_000, 5_000), TICK_TO_DECISION: (15_000, 1_000)}  # fmt: skip
    assert {t: (summary[t]["count"], summary[t]["min"]) for t in exact} == exact
    hdr = new_histogram()  # every value of a tag is one exact span: min and max in its HDR bucket
    assert all(v <= summary[t]["max"] <= hdr.get_highest_equivalent_value(v) for t, (_, v) in exact.items())
    assert (
        c["traces_complete"] == 20_000 and "traces: 20,000 seen = 20,000 recorded + 0 set aside" in r.stdout
    )
