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

One ``TailAttribution`` holds any number of populations (slots: the collector's own and one per
label of every slicing), so a flush's orders of the collector and of every value of every slicing
are summed and kept in one compiled pass (attribution_kernels.py), whatever the number of values:
a row is worked out once (its bucket, its shares) and may be in any number of populations. Each
population has its own reservoir size (``open``: the collector's 65,536 rows, a value's 8,192).
Each population's buffers are reserved whole in arrays shared by all (its sums over every bucket,
1.5x ``keep_slowest`` rows for its slowest and its reservoir's rows) and only
what it holds is written: the rest stays address space, and physical memory follows the rows held
(to a page; numpy asks for transparent huge pages on large arrays, so to 2 MB per buffer where the
host grants them), within a bound per population: nothing grows with the run's length.
"""

from __future__ import annotations

import mmap

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session.hdr import BulkRecorder, loading_kernels, percentile_rank

TAILS = (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))
KEEP_SLOWEST = 8192
RESERVOIR = 65536
# A dimension value's reservoir: a slicing holds up to its cap of values (16 by default) per
# slicing, each a population of its own; 65,536 rows of every stage each was ~4 MB per value.
VALUE_RESERVOIR = 8192


class TailAttribution:
    """Accumulates the trade stages' spans of every traded trace, per population (slot);
    ``summary(slot)`` is summary.json's ``attribution``."""

    def __init__(self, stages: list[str], template: HdrHistogram, keep_slowest: int = KEEP_SLOWEST,
                 reservoir: int = RESERVOIR, seed: int = 0):  # fmt: skip
        self.stages = list(stages)
        self._bucket = BulkRecorder(template)
        self._template = template
        k = len(self.stages)
        # slot x bucket x (count, each stage's span sum, traces that did not take it, share sum), every
        # bucket of the layout: zeros never written stay address space (a run of microseconds
        # touches a few thousand buckets), so a tail reaching a far bucket costs a page, not a copy
        # of every slot's sums. One record per (slot, bucket), not four arrays: a row's sums are
        # 2-3 cache lines side by side (the buckets of every slot are more than the caches hold).
        # The share sums are float64 in the record's int64 words (``share_sum``: a view). The
        # traces that took a stage are the count less those that did not: most take every stage,
        # so a row adds to the counts it skipped, not to one per stage.
        self._sums = np.zeros((0, self._bucket.counts_len, 1 + 3 * k), np.int64)
        self._buckets = 0  # buckets below this may hold traces
        self.keep_slowest, self.reservoir, self.seed = keep_slowest, reservoir, seed
        # Per slot: the slowest traces kept whole (held above a floor, with room for half as many
        # again before they are settled: attribution_kernels.attribute) and the reservoir, rows of
        # column 0 tick-to-trade then the spans; the slowest at [slot] of one array for every slot,
        # the reservoirs (of sizes of their own) one after another in one array of rows, slot s's
        # at rows [start[s], start[s] + size[s]) (one compiled call serves them all). Each region is
        # reserved whole but only its rows held are ever written: untouched pages are address
        # space, not memory (a value of ten traces keeps ten rows).
        self._slow = np.empty((0, keep_slowest + max(keep_slowest // 2, 1), k + 1), np.int64)
        self._floor = np.zeros(0, np.int64)  # a row no slower than this is not among the slowest
        self._sample = np.empty((0, k + 1), np.int64)
        self._start = np.zeros(0, np.int64)  # each slot's first row in ``_sample``
        self._size = np.zeros(0, np.int64)  # each slot's reservoir size
        self._slow_n = np.zeros(0, np.int64)  # rows held in ``_slow``
        self._offered = np.zeros(0, np.int64)  # traces offered to the reservoir
        self.stream = np.zeros(0, np.int64)  # each slot's population number in the reservoir draws
        self.slots = 0  # populations opened

    @property
    def count(self) -> np.ndarray:
        """slot x bucket: traces."""
        return self._sums[:, :, 0]

    @property
    def span_sum(self) -> np.ndarray:
        """slot x bucket x stage: the sum of the stage's spans (ns) of the traces that took it."""
        return self._sums[:, :, 1 : 1 + len(self.stages)]

    def taken(self, slot: int, buckets: np.ndarray) -> np.ndarray:
        """bucket x stage: population ``slot``'s traces in ``buckets`` that took the stage."""
        k = len(self.stages)
        return self._sums[slot, buckets, :1] - self._sums[slot, buckets, 1 + k : 1 + 2 * k]

    @property
    def share_sum(self) -> np.ndarray:
        """slot x bucket x stage: the sum of the stage's shares."""
        return self._sums.view(np.float64)[:, :, 1 + 2 * len(self.stages) :]

    @property
    def traces(self) -> int:
        """Every population's traces: each was offered to its population's reservoir once (the
        sums are not read: that would make memory of pages reserved for every population)."""
        return int(self._offered[: self.slots].sum())

    def add(self, spans: np.ndarray, tick_to_trade: np.ndarray, slot: np.ndarray | None = None) -> None:
        """One batch of traced trades: ``spans`` (n x stages, ns; NOT_TAKEN off the trace's path),
        their tick-to-trade (n) and the population of each (n slots, -1: none; None: all slot 0)."""
        self.add_trades(self.trades(spans, tick_to_trade), slot)

    def trades(self, spans: np.ndarray, tick_to_trade: np.ndarray) -> np.ndarray:
        """A batch made ready once for any number of ``add_trades`` (one per slicing of a flush):
        rows of tick-to-trade, then each stage's span (one contiguous int64 array: one compiled
        signature)."""
        n = tick_to_trade.size
        rows = np.empty((n, len(self.stages) + 1), np.int64)
        rows[:, 0], rows[:, 1:] = tick_to_trade, np.reshape(spans, (n, len(self.stages)))
        return rows

    def add_trades(self, trades: np.ndarray, slot: np.ndarray | None = None) -> None:
        """``trades``: rows as ``trades`` makes them. ``slot``: per row its population (n), or its
        populations (n x any: one per slicing; -1: none), every row of every population in one
        compiled pass (``attribution_kernels.attribute``); None: all slot 0."""
        n = trades.shape[0]
        if n == 0:
            return
        slot = (
            np.zeros((n, 1), np.int64)
            if slot is None
            else np.ascontiguousarray(slot, np.int64).reshape(n, -1)
        )
        top = int(slot.max(initial=-1))
        if top < 0:
            return
        self._grow(top + 1)
        b = self._bucket
        top = kernels().attribute(slot, trades, b.sub_bucket_mask, b.unit_magnitude, b.half_mag, self._sums,
                                  self._sums.view(np.float64), self.stream, self._slow, self._floor, self._slow_n,
                                  self.keep_slowest, self._sample, self._start, self._size, self._offered,
                                  self.seed)  # fmt: skip
        self._buckets = max(self._buckets, top + 1)

    def open(self, count: int, reservoir: int | None = None, numbers: np.ndarray | None = None) -> np.ndarray:
        """``count`` new populations (their slots, the next ones), each with a reservoir of
        ``reservoir`` rows (None: the constructor's), numbered ``numbers`` in the reservoir draws
        (None: each its own slot): an owner of several groups of populations numbers each group
        its own way. A slot beyond those opened met by ``add_trades`` is opened with the defaults."""
        first = self.slots
        slots = np.arange(first, first + count, dtype=np.int64)
        if count == 0:
            return slots
        self._room(first + count)
        size = self.reservoir if reservoir is None else reservoir
        rows = int(self._start[first - 1] + self._size[first - 1]) if first else 0
        self._start[slots] = rows + size * np.arange(count)
        self._size[slots] = size
        self._stock(rows + size * count)
        self.stream[slots] = slots if numbers is None else numbers
        self.slots = first + count
        return slots

    def _grow(self, slots: int) -> None:
        """Populations up to ``slots`` opened, with the defaults."""
        if slots > self.slots:
            self.open(slots - self.slots)

    def _room(self, slots: int) -> None:
        """Room for ``slots`` populations. Doubling: a value first seen mid-run copies what the
        others hold O(log) times, not per value, and only what they hold: the sums' buckets that
        may hold traces and the rows kept (the rest is zeros or rows never written)."""
        have = self._sums.shape[0]
        if slots <= have:
            return
        room = max(slots, 2 * have)
        sums = reserved((room, *self._sums.shape[1:]), np.int64)
        sums[:have, : self._buckets] = self._sums[:, : self._buckets]
        self._sums = sums
        slow = reserved((room, *self._slow.shape[1:]), np.int64)
        kernels().move(self._slow, slow, self._slow_n)
        self._slow = slow
        more = room - have
        self._slow_n, self._offered, self._start, self._size, self.stream = (
            np.concatenate((a, np.zeros(more, np.int64)))
            for a in (self._slow_n, self._offered, self._start, self._size, self.stream)
        )
        self._floor = np.concatenate((self._floor, np.full(more, np.iinfo(np.int64).min, np.int64)))

    def _stock(self, rows: int) -> None:
        """Room for ``rows`` reservoir rows (doubling, as ``_room``; only the rows held are copied)."""
        have = self._sample.shape[0]
        if rows <= have:
            return
        sample = reserved((max(rows, 2 * have), self._sample.shape[1]), np.int64)
        held = np.minimum(self._offered[: self.slots], self._size[: self.slots])
        kernels().move_rows(self._sample, sample, self._start[: self.slots], held)
        self._sample = sample

    def summary(self, slot: int = 0) -> dict | None:
        """summary.json's ``attribution`` (docs/session-format.md) of population ``slot``; None
        before any trade."""
        if slot >= self.slots or not self._offered[slot]:
            return None
        # The buckets holding traces only (a few hundred of thousands): sums from the top over them
        # are the same sums, and summary() runs per dimension value at every save. Only the
        # buckets that may hold traces are read: the rest is address space, left so.
        filled = np.flatnonzero(self._sums[slot, : self._buckets, 0] != 0)
        count = self.count[slot, filled]
        n = int(count.sum())
        cum = np.cumsum(count)
        count_up = from_top(count)
        span_up, share_up = from_top(self.span_sum[slot, filled]), from_top(self.share_sum[slot, filled])
        taken_up = from_top(self.taken(slot, filled))
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
        rows, method = self.slowest(slot), "exact"
        if members > rows.shape[0]:
            rows, method = self.sampled(slot), "sampled"
        rows = rows[rows[:, 0] >= threshold]
        if rows.shape[0] == 0:
            return np.zeros(len(self.stages)), method, 0
        spans = rows[:, 1:]
        shares = kernels().shares(np.ascontiguousarray(rows))  # one compiled signature
        median = np.zeros(len(self.stages))
        for j in range(len(self.stages)):
            took = shares[spans[:, j] >= 0, j]
            if took.size:
                k = int(percentile_rank(50.0, took.size)) - 1
                median[j] = np.partition(took, k)[k]  # the sorted k-th, without sorting the rest
        return median, method, int(rows.shape[0])

    def slowest(self, slot: int = 0) -> np.ndarray:
        """The slowest traces kept whole (up to ``keep_slowest``), in no order."""
        if slot >= self._slow_n.size:
            return np.empty((0, 0), np.int64)
        self._slow_n[slot] = kernels().settle(
            self._slow, slot, self._slow_n[slot], self.keep_slowest, self._floor
        )
        return self._slow[slot, : self._slow_n[slot]]

    def sampled(self, slot: int = 0) -> np.ndarray:
        """The reservoir: a uniform sample of up to ``reservoir`` traces."""
        if slot >= self.slots:
            return np.empty((0, 0), np.int64)
        start = self._start[slot]
        return self._sample[start : start + min(self._offered[slot], self._size[slot])]


def reserved(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Zeros whose pages become memory only when written, 4 KB at a time: anonymous memory of
    its own. numpy asks for transparent huge pages on arrays of 4 MB or more, where a first touch
    zeroes 2 MB and, with the host's THP defrag on ``madvise``, may compact memory synchronously:
    seen here as a flush's attribution taking 3x as long, at random."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype).reshape(shape)


def kernels():
    """The compiled kernels (attribution_kernels.py), loaded on first use."""
    with loading_kernels():
        from tickscope.collectors.rings import attribution_kernels
    return attribution_kernels


def from_top(a: np.ndarray) -> np.ndarray:
    """Row b: the sum of rows b and above (bucket b and every slower bucket)."""
    return np.cumsum(a[::-1], axis=0)[::-1]
