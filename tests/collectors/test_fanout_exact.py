"""The correlator's fan-out path against a plain reference: random fan-outs (any number of legs per
tick, acks that may never come), records arriving in any order and cut into batches from two
rings, dimension values on the tick and on each leg. Counts and values must be exact: the fast
path (no sort of rows already in order, reductions over groups of several rows only, dimensions
joined over the records that carry one) may change the cost, never the answer."""

from collections import Counter
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import needs_tool
from tickscope.collectors.rings.correlate import TICK_TO_DECISION, TICK_TO_TRADE, Correlator, TraceSchema
from tickscope.collectors.run.bench import FANOUT_RECORDS, bench_collect
from tickscope.collectors.run.bench import POINTS as PLAIN_RECORDS
from tickscope.probe import layout as L


@dataclass
class P:
    name: str
    stage: str = ""
    flags: int = 0


# symbol on signal (the tick's, sometimes on md.rx too), venue and side on order.encoded (each
# leg's; the venue sometimes on order.tx too)
POINTS = [P("md.rx"), P("signal", "strategy"), P("order.encoded", "encode", L.POINT_LEG),
          P("order.tx", "send", L.POINT_TRADE), P("ack.rx", "order_rtt")]  # fmt: skip

tick = st.tuples(
    st.integers(1, 5_000),  # signal - md.rx
    st.integers(1, 3),  # symbol id
    st.lists(  # legs: encode, send, rtt (None: no ack yet), venue, side
        st.tuples(
            st.integers(1, 900),
            st.integers(1, 900),
            st.none() | st.integers(1, 9_000),
            st.integers(0, 3),
            st.integers(0, 2),
        ),  # fmt: skip
        max_size=5,
    ),
)


def records(ticks):
    """(trace, column, ts, leg, dims) per record, and the reference: every value and row expected."""
    rec, want, rows = [], {t: [] for t in ("strategy", "encode", "send", "order_rtt", TICK_TO_TRADE,
                                              TICK_TO_DECISION)}, Counter()  # fmt: skip
    for i, (sig, symbol, legs) in enumerate(ticks):
        trace, rx = 7 + 3 * i, 1_000_000 * (i + 1)
        # a value may be attached again at a later point (once is one value, not a conflict)
        rec += [(trace, 0, rx, 0, (symbol * (sig % 2), 0, 0)), (trace, 1, rx + sig, 0, (symbol, 0, 0))]
        want["strategy"].append(sig)
        if not legs:
            want[TICK_TO_DECISION].append(sig)
            rows[(trace, -1, (symbol, 0, 0))] += 1
        for k, (enc, send, rtt, venue, side) in enumerate(legs):
            e = rx + sig + enc
            rec += [(trace, 2, e, k, (0, venue, side)), (trace, 3, e + send, k, (0, venue * (send % 2), 0))]
            if rtt is not None:
                rec.append((trace, 4, e + send + rtt, k, (0, 0, 0)))
                want["order_rtt"].append(rtt)
            want["encode"].append(enc)
            want["send"].append(send)
            want[TICK_TO_TRADE].append(sig + enc + send)
            rows[(trace, k, (symbol, venue, side))] += 1
    return rec, want, rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=st.lists(tick, min_size=1, max_size=40), data=st.data())
def test_fanned_out_traces_in_any_arrival_order_measure_exactly_as_the_reference(ticks, data):
    rec, want, rows = records(ticks)
    order = data.draw(st.permutations(range(len(rec))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rec)), max_size=6)))
    schema = TraceSchema()
    schema.merge(POINTS)
    c = Correlator(schema)
    c.declare_dims(3)
    shuffled = [rec[i] for i in order]
    for a, b in zip([0, *cuts], [*cuts, len(rec)], strict=True):
        if a == b:
            continue
        trace, col, ts, leg, dims = zip(*shuffled[a:b], strict=True)
        ring = data.draw(st.integers(0, 1))  # which ring the batch came from: the answer must not care
        if data.draw(st.booleans()):
            c.add_points(np.array(trace, np.uint64), np.array(col), np.array(ts, np.int64), ring, 0,
                         legs=np.array(leg), dims=np.array(dims, np.int32))  # fmt: skip
        else:  # as a tick ring hands them on: one row per record
            T = np.zeros((b - a, len(POINTS)), np.int64)
            T[np.arange(b - a), col] = ts
            c.add_rows(np.array(trace, np.uint64), T, np.where(T != 0, ring + 1, 0).astype(np.int16), 0,
                       legs=np.array(leg, np.int32), dims=np.array(dims, np.int32))  # fmt: skip
    out = c.flush(10**15, force=True)
    assert c.duplicate_stamps == 0 and c.dimension_conflicts == 0
    assert out.set_aside() == dict.fromkeys(out.set_aside(), 0)
    assert out.complete == sum(rows.values()) == out.seen
    for tag, values in want.items():
        assert sorted(out.values[tag].tolist()) == sorted(values), tag
    got = Counter(
        (int(t), int(k), tuple(int(x) for x in d))
        for t, k, d in zip(out.rows["trace"], out.rows["leg"], out.rows["dims"], strict=True)
    )
    assert got == rows


@needs_tool("gcc", install="apt-get install gcc")
def test_bench_measures_the_collector_with_fan_out_beside_without(tmp_path):
    """``tickscope bench``'s end-to-end row with 3 legs and 3 dimensions per tick: every record of
    both runs collected, every leg one complete trace, nothing incomplete or dropped."""
    r = bench_collect(tmp_path, traces_per_writer=2_000)
    ticks = 2 * (2_000 * PLAIN_RECORDS // FANOUT_RECORDS)
    assert r["collect_records"] == 2 * 2_000 * PLAIN_RECORDS and r["collect_traces_complete"] == 2 * 2_000
    assert r["collect_fanout_records"] == ticks * FANOUT_RECORDS
    assert r["collect_fanout_traces_complete"] == 3 * ticks, (
        "each of the 3 legs is its own tick-to-trade sample"
    )
    assert r["collect_fanout_traces_incomplete"] == r["collect_fanout_dropped"] == 0
    assert r["collect_fanout_records_per_s"] > 0 and r["collect_fanout_cpu_ns_per_record"] > 0
    assert r["collect_fanout_ratio"] == round(
        r["collect_fanout_records_per_s"] / r["collect_records_per_s"], 2
    )
