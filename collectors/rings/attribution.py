"""Tail attribution: where the time of the slow traces went, from those traces' own spans.

Stacking each stage's own p99 says nothing about the p99 trace (early stages describe every tick,
late ones only the traded ticks, and the p99 trace is not made of p99 stages). Instead, for the
traces at or beyond tick-to-trade's p50, p99 and p99.9, this averages each stage's span *in those
traces*, so a population's stage means add up to its own mean tick-to-trade, exactly.

Definitions (docs/concepts.md "Tail attribution"):
- The population is the traces that reached the trade point and were recorded in the
  ``tick_to_trade`` histogram (warm-up kept out), each bucketed by its tick-to-trade into that
  histogram's HDR layout.
- The pXX tail is the traces whose tick-to-trade falls in the HDR bucket holding the pXX rank
  (``percentile_rank``: ceil(XX/100 * N)) or in any bucket above: tick-to-trade >= the lowest
  value of that bucket (``threshold_ns``). It holds at least (100 - XX) % of the traces.
- A trace's share of stage s is span_s / (sum of its stages' spans); the sum is its tick-to-trade
  (exactly, when the stages are one clock domain's; see correlate.py).
- A stage off the path a trace took (its span ``NOT_TAKEN``, -1) is not a 0 ns span: the trace adds
  nothing to the stage's sums (so the means still add up to the tail's mean tick-to-trade, a
  contribution), is not counted in its ``taken``, and has no share in its median; a stage of 0 ns
  on the path (two points stamped at the same instant) is taken, with span 0 and share 0.

Memory is bounded whatever the run's length: per HDR bucket of tick-to-trade, one count, the sum
of each stage's span (int64 ns) and the sum of each stage's share; so means and mean shares of any
tail are exact (no estimate). Medians cannot be summed: they come from the ``keep_slowest`` slowest
traces kept whole (exact while the tail has no more traces than that) or else from a uniform
reservoir of ``reservoir`` traces (``median.method == "sampled"``; with n of the reservoir's traces
in the tail, the median's rank is within about +-1/sqrt(n) of 50 % at 95 % confidence).

One ``TailAttribution`` holds any number of populations (slots: the collector's one, or one per
dimension value of a slicing), so a flush's orders of every value are summed in one compiled pass
(attribution_kernels.py), whatever the number of values.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session.hdr import BulkRecorder, loading_kernels, percentile_rank

TAILS = (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))
KEEP_SLOWEST = 8192
RESERVOIR = 65536


class Trades(NamedTuple):
    """A batch of traded traces: rows (tick-to-trade, then each stage's span), each row's
    tick-to-trade bucket and each stage's share of the row's taken spans."""

    rows: np.ndarray
    bucket: np.ndarray
    share: np.ndarray


class TailAttribution:
    """Accumulates the trade stages' spans of every traded trace, per population (slot);
    ``summary(slot)`` is summary.json's ``attribution``."""

    def __init__(self, stages: list[str], template: HdrHistogram, keep_slowest: int = KEEP_SLOWEST,
                 reservoir: int = RESERVOIR, seed: int = 0):  # fmt: skip
        self.stages = list(stages)
        self._bucket = BulkRecorder(template)
        self._template = template
        k = len(self.stages)
        # slot x bucket (x stage), grown to the highest bucket seen (a run of microseconds touches
        # a few thousand buckets) and to the slots added.
        self.count = np.zeros((0, 0), np.int64)
        self.span_sum = np.zeros((0, 0, k), np.int64)
        self.share_sum = np.zeros((0, 0, k), np.float64)
        self.taken = np.zeros((0, 0, k), np.int64)  # traces that took the stage
        self.keep_slowest, self.reservoir, self.seed = keep_slowest, reservoir, seed
        # Per slot: the slowest traces kept whole (a heap) and the reservoir, rows of column 0
        # tick-to-trade then the spans, in buffers grown as they fill (a value of ten traces keeps ten).
        self._slow: list[np.ndarray] = []
        self._sample: list[np.ndarray] = []
        self._heap: list[np.ndarray] = []  # per slot: (tick-to-trade, row of _slow), a min-heap
        self._slow_n = np.zeros(0, np.int64)  # rows of the heap
        self._offered = np.zeros(0, np.int64)  # traces offered to the reservoir
        self._room = np.zeros((0, 2), np.int64)  # rows of each slot's two buffers

    @property
    def traces(self) -> int:
        return int(self.count.sum())

    def add(self, spans: np.ndarray, tick_to_trade: np.ndarray, slot: np.ndarray | None = None) -> None:
        """One batch of traced trades: ``spans`` (n x stages, ns; NOT_TAKEN off the trace's path),
        their tick-to-trade (n) and the population of each (n slots, -1: none; None: all slot 0)."""
        self.add_trades(self.trades(spans, tick_to_trade), slot)

    def trades(self, spans: np.ndarray, tick_to_trade: np.ndarray) -> Trades:
        """A batch made ready once for any number of ``add_trades`` (one per slicing of a flush)."""
        n = tick_to_trade.size
        # contiguous arrays: one compiled signature per kernel
        spans = np.ascontiguousarray(spans, np.int64).reshape(n, len(self.stages))
        t2t = np.ascontiguousarray(tick_to_trade, np.int64)
        rows = np.empty((n, len(self.stages) + 1), np.int64)
        rows[:, 0], rows[:, 1:] = t2t, spans
        bucket = self._bucket.indexes(t2t, np.empty(n, np.int64))
        return Trades(rows, bucket, kernels().shares(spans))

    def add_trades(self, trades: Trades, slot: np.ndarray | None = None) -> None:
        n = trades.bucket.size
        if n == 0:
            return
        slot = np.zeros(n, np.int64) if slot is None else np.ascontiguousarray(slot, np.int64)
        top = int(slot.max())
        if top < 0:
            return
        self._grow(top + 1, int(trades.bucket[slot >= 0].max()) + 1)
        compiled = kernels()
        compiled.tail_sums(slot, trades.bucket, trades.rows, trades.share, self.count, self.span_sum,
                          self.share_sum, self.taken)  # fmt: skip
        arriving = np.bincount(slot + 1, minlength=self._slow_n.size + 1)[1:]
        self._make_room(arriving)
        # Each population's rows in arrival order (a stable sort by slot), one kernel call per
        # population that has rows: a flush touches a few values, each call is ~1 µs.
        order = np.argsort(slot, kind="stable")
        at = int(np.searchsorted(slot[order], 0))
        rows = trades.rows
        for s in np.flatnonzero(arriving):
            part = np.ascontiguousarray(rows[order[at : at + arriving[s]]])
            at += int(arriving[s])
            self._slow_n[s], self._offered[s] = compiled.keep(
                int(s), part, self._slow[s], self._heap[s], int(self._slow_n[s]), self.keep_slowest,
                self._sample[s], int(self._offered[s]), self.reservoir, self.seed,
            )  # fmt: skip

    def _make_room(self, arriving: np.ndarray) -> None:
        """Grow the buffers of the slots whose heap or reservoir fills past its rows (doubling)."""
        need = np.column_stack((np.minimum(self._slow_n + arriving, self.keep_slowest),
                                np.minimum(self._offered + arriving, self.reservoir)))  # fmt: skip
        for s, which in zip(*np.nonzero(need > self._room), strict=True):
            buffers, cap = (self._slow, self.keep_slowest) if which == 0 else (self._sample, self.reservoir)
            grown = np.empty((min(max(int(need[s, which]), 2 * int(self._room[s, which]), 64), cap),
                              len(self.stages) + 1), np.int64)  # fmt: skip
            grown[: self._room[s, which]] = buffers[s]
            buffers[s] = grown
            if which == 0:
                heap = np.empty((grown.shape[0], 2), np.int64)
                heap[: self._room[s, which]] = self._heap[s]
                self._heap[s] = heap
            self._room[s, which] = grown.shape[0]

    def _grow(self, slots: int, buckets: int) -> None:
        have_slots, have = self.count.shape
        if slots <= have_slots and buckets <= have:
            return
        # Doubling: a run whose tail creeps up bucket by bucket re-stacks O(log) times, not per batch.
        if buckets > have:
            have = min(max(buckets, 2 * have), self._bucket.counts_len)
        slots = max(slots, have_slots)
        k = len(self.stages)
        for name in ("count", "span_sum", "share_sum", "taken"):
            old = getattr(self, name)
            new = np.zeros((slots, have, k)[: old.ndim], old.dtype)
            new[: old.shape[0], : old.shape[1]] = old
            setattr(self, name, new)
        empty = np.empty((0, k + 1), np.int64)
        while len(self._slow) < slots:
            self._slow.append(empty)
            self._sample.append(empty)
            self._heap.append(np.empty((0, 2), np.int64))
        more = slots - self._slow_n.size
        self._slow_n = np.concatenate((self._slow_n, np.zeros(more, np.int64)))
        self._offered = np.concatenate((self._offered, np.zeros(more, np.int64)))
        self._room = np.vstack((self._room, np.zeros((more, 2), np.int64)))

    def summary(self, slot: int = 0) -> dict | None:
        """summary.json's ``attribution`` (docs/session-format.md) of population ``slot``; None
        before any trade."""
        if slot >= self.count.shape[0] or not self.count[slot].any():
            return None
        # The buckets holding traces only (a few hundred of thousands): sums from the top over them
        # are the same sums, and summary() runs per dimension value at every save.
        filled = np.flatnonzero(self.count[slot] != 0)
        count = self.count[slot, filled]
        n = int(count.sum())
        cum = np.cumsum(count)
        count_up = from_top(count)
        span_up, share_up = from_top(self.span_sum[slot, filled]), from_top(self.share_sum[slot, filled])
        taken_up = from_top(self.taken[slot, filled])
        tails = {}
        for key, pct in TAILS:
            i = int(np.searchsorted(cum, percentile_rank(pct, n), side="left"))
            b = int(filled[i])
            low = int(self._template.get_value_from_index(b))
            high = int(self._template.get_highest_equivalent_value(low))
            m = int(count_up[i])
            means = span_up[i] / m
            median, method, samples = self._median(slot, low, m)
            tails[key] = {
                "percentile_ns": high,  # the tick_to_trade pXX every table reports
                "threshold_ns": low,  # the tail: tick-to-trade >= this
                "traces": m,
                "mean_tick_to_trade_ns": round(float(span_up[i].sum()) / m, 1),
                "median": {"method": method, "samples": samples},
                "stages": {
                    s: {
                        "mean_ns": round(float(means[j]), 1),
                        "mean_share": round(float(share_up[i, j] / m), 6),
                        "median_share": round(float(median[j]), 6),
                        "taken": int(taken_up[i, j]),
                        "sum_ns": int(span_up[i, j]),  # exact: what a merge adds
                        "mean_taken_ns": round(float(span_up[i, j]) / max(int(taken_up[i, j]), 1), 1),
                    }
                    for j, s in enumerate(self.stages)
                },
            }
        return {"population": "orders", "traces": n, "stages": list(self.stages), "tails": tails}

    def _median(self, slot: int, threshold: int, members: int) -> tuple[np.ndarray, str, int]:
        """Each stage's median share in the tail over the n traces that took it (the value at rank
        ceil(n/2) of their n shares; 0 when none did)."""
        if members <= self._slow_n[slot]:
            rows, method = self.slowest(slot), "exact"
        else:
            rows, method = self.sampled(slot), "sampled"
        rows = rows[rows[:, 0] >= threshold]
        if rows.shape[0] == 0:
            return np.zeros(len(self.stages)), method, 0
        spans = np.ascontiguousarray(rows[:, 1:])  # one compiled signature
        shares = kernels().shares(spans)
        median = np.zeros(len(self.stages))
        for j in range(len(self.stages)):
            took = shares[spans[:, j] >= 0, j]
            if took.size:
                k = int(percentile_rank(50.0, took.size)) - 1
                median[j] = np.partition(took, k)[k]  # the sorted k-th, without sorting the rest
        return median, method, int(rows.shape[0])

    def slowest(self, slot: int = 0) -> np.ndarray:
        """The slowest traces kept whole (up to ``keep_slowest``), in no order."""
        return (
            self._slow[slot][: self._slow_n[slot]] if slot < self._slow_n.size else np.empty((0, 0), np.int64)
        )

    def sampled(self, slot: int = 0) -> np.ndarray:
        """The reservoir: a uniform sample of up to ``reservoir`` traces."""
        if slot >= self._offered.size:
            return np.empty((0, 0), np.int64)
        return self._sample[slot][: min(self._offered[slot], self.reservoir)]


def kernels():
    """The compiled kernels (attribution_kernels.py), loaded on first use."""
    with loading_kernels():
        from tickscope.collectors.rings import attribution_kernels
    return attribution_kernels


def from_top(a: np.ndarray) -> np.ndarray:
    """Row b: the sum of rows b and above (bucket b and every slower bucket)."""
    return np.cumsum(a[::-1], axis=0)[::-1]
