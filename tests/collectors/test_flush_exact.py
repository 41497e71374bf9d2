"""The correlator's flush (collectors/rings/measure.py kernels) held to a plain-Python reference.

Random rows of a chain and of a branching pipeline, stamped by two TSC rings (two domains of
different rates, one of them possibly re-fitted mid-run so its spans go piece by piece) and a
MONOTONIC ring, a point declared by two rings stamped by either: rows of one domain, of two, of
mixed clocks; holes, missing starts, points of two paths, stamped twice, negative spans (clock
skew), spans beyond the histogram's range. Every outcome count and every value (each stage, tick-
to-trade, tick-to-decision, the trade stages' spans and the ticks' spans) must be the reference's,
which measures each row point by point with the rules of correlate.py's docstring.
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from tickscope.collectors.rings.clocks import TscCalibration
from tickscope.collectors.rings.correlate import (
    NOT_TAKEN,
    TICK_TO_DECISION,
    TICK_TO_TRADE,
    Correlator,
    TraceSchema,
)
from tickscope.collectors.rings.tsc_timeline import TscTimeline


@dataclass
class Pt:
    name: str
    stage: str = ""
    flags: int = 0


# (ring declarations, clock of each ring: a TSC domain number or 0 for MONOTONIC)
SHAPES = {
    "chain": ([["a", "b", "c"], ["c", "d", "e"], ["e", "f"]], [1, 2, 0]),
    "branching": ([["a", "b", "c", "f"], ["b", "d", "f"], ["f", "g"]], [1, 0, 2]),
}
TRADE = {"chain": "e", "branching": "f"}


def timeline(hz, mono0, refit):
    tl = TscTimeline()
    tl.update(TscCalibration(hz=hz, tsc0=0, mono0=mono0, residual_ns=0, pairs=2, span_ns=20_000_000), 0)
    if refit:  # a screened fit that disagrees by 1000 ppm: the local rate changes mid-run
        tl.observe(np.array([10**9]))
        tl.update(TscCalibration(hz=hz * 1.001, tsc0=10**9, mono0=tl.common.at(tl.local.at(10**9)), residual_ns=0,
                                 pairs=50, span_ns=10**10), 1)  # fmt: skip
    return tl


class Reference:
    def __init__(self, schema, clock_of_ring, timelines):
        self.g, self.schema = schema.graph(), schema
        self.clock_of_ring, self.timelines = clock_of_ring, timelines

    def stamp(self, t, ring):
        """(value on the common timeline, TSC domain or 0, raw ticks)."""
        dom = self.clock_of_ring[ring]
        return (int(self.timelines[dom].to_common(np.array([t]))[0]) if dom else t), dom, t

    def span(self, a, b):
        (ca, da, ta), (cb, db, tb) = a, b
        if da and da == db:
            return int(self.timelines[da].span(np.array([ta]), np.array([tb]))[0])
        return cb - ca

    def measure(self, row, src, dup, top):
        """One row (pipeline order): its outcome and its values."""
        g, n = self.g, len(row)
        at = [j for j in range(n) if row[j]]
        if dup:
            return "duplicate", None
        if all(g.after_trade[j] for j in at):  # only points after the trade point: no trace to join here
            return "late_beyond_horizon", None
        if not at or not g.source[at[0]] or any(not g.adj[a, b] for a, b in zip(at, at[1:], strict=False)):
            return "incomplete", None
        st = {j: self.stamp(int(row[j]), int(src[j]) - 1) for j in at}
        steps = {b: self.span(st[a], st[b]) for a, b in zip(at, at[1:], strict=False)}
        if any(v < 0 for v in steps.values()):
            return "clock_skew", None
        trade = next((j for j in g.trade_at if row[j]), None)
        t2t = self.span(st[at[0]], st[trade]) if trade is not None else None
        t2d = self.span(st[at[0]], st[at[-1]]) if trade is None and len(at) >= 2 else None
        if top is not None and any(v is not None and v > top for v in [*steps.values(), t2t, t2d]):
            return "out_of_range", None
        return "complete", (steps, trade, t2t, t2d)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(25))
def test_flush_measures_every_row_as_the_reference(shape, seed):
    rng = np.random.default_rng(seed)
    rings, clocks = SHAPES[shape]
    schema = TraceSchema()
    cols = [schema.merge([Pt(p, f"s_{p}", 1 if p == TRADE[shape] else 0) for p in r], f"ring {i}")
            for i, r in enumerate(rings)]  # fmt: skip
    timelines = {
        1: timeline(2.5e9, 10**12, refit=rng.random() < 0.3),
        2: timeline(3.1e9, 2 * 10**12, refit=False),
    }
    top = int(rng.integers(50_000, 400_000)) if rng.random() < 0.6 else None
    c = Correlator(schema, max_value=top, slowest=0)
    for i, dom in enumerate(clocks):
        tsc = np.ones(len(cols[i]), bool) if dom else None
        c.declare_ring(i, cols[i], tick=False, tsc=tsc, timeline=timelines.get(dom), domain=dom)
    order, width = schema.order, len(schema.names)
    rings_of = {col: [i for i in range(len(rings)) if col in cols[i]] for col in range(width)}
    n = int(rng.integers(1, 300))
    ts, src = np.zeros((n, width), np.int64), np.zeros((n, width), np.int16)
    for k in range(n):
        keep = rng.random(width) < (0.97 if rng.random() < 0.7 else 0.6)
        for col in np.flatnonzero(keep):
            ring = int(rng.choice(rings_of[col]))
            pos = int(np.flatnonzero(order == col)[0])
            base = 10**9 + 20_000 * pos + int(rng.integers(-800, 20_000))  # ns after the fit's anchor
            dom = clocks[ring]
            if dom:  # ticks of that domain for about that instant
                ts[k, col] = int(base * {1: 2.5, 2: 3.1}[dom])
            else:
                ts[k, col] = int(timelines[1].to_common(np.array([int(base * 2.5)]))[0]) + int(
                    rng.integers(-300, 300)
                )
            src[k, col] = ring + 1
    ids = np.arange(1, n + 1, dtype=np.uint64)
    dup = rng.random(n) < 0.05
    c.add_rows(ids, ts, src, arrived_ns=0, dup=dup)
    out = c.flush(10**15, force=True)

    ref = Reference(schema, clocks, timelines)
    g = schema.graph()
    outcomes, values = Counter(), {t: [] for t in out.values}
    trade_spans, tick_spans = [], []
    tcols = [j for j in range(1, width) if g.stage[j] and not g.after_trade[j] and j <= g.trade_at.max()]
    kcols = [j for j in range(1, width) if g.stage[j] and not g.leg[j] and not g.after_trade[j]]
    for k in range(n):
        outcome, measured = ref.measure(ts[k, order], src[k, order], dup[k], top)
        outcomes[outcome] += 1
        if measured is None:
            continue
        steps, trade, t2t, t2d = measured
        for j, v in steps.items():
            values[schema.stage_of[schema.order_names[j]]].append(v)
        if t2t is not None:
            values[TICK_TO_TRADE].append(t2t)
            trade_spans.append([steps.get(j, NOT_TAKEN) if j <= trade else NOT_TAKEN for j in tcols])
        if t2d is not None:
            values[TICK_TO_DECISION].append(t2d)
        tick_spans.append([steps.get(j, NOT_TAKEN) for j in kcols])
    got = {"complete": out.complete, "incomplete": out.incomplete, "clock_skew": out.clock_skew,
           "duplicate": out.duplicate, "out_of_range": out.out_of_range,
           "late_beyond_horizon": out.late_beyond_horizon}  # fmt: skip
    assert got == {k: outcomes[k] for k in got}
    assert {t: sorted(v.tolist()) for t, v in out.values.items()} == {t: sorted(v) for t, v in values.items()}
    assert out.trade_spans.tolist() == trade_spans and out.trade_t2t.tolist() == values[TICK_TO_TRADE]
    assert out.ticks["spans"].tolist() == tick_spans
    assert out.rows["trace"].size == out.complete
