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
"""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session.hdr import CHUNK, BulkRecorder, percentile_rank

TAILS = (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))
KEEP_SLOWEST = 8192
RESERVOIR = 65536


class TailAttribution:
    """Accumulates the trade stages' spans of every traded trace; ``summary()`` is summary.json's
    ``attribution``."""

    def __init__(self, stages: list[str], template: HdrHistogram, keep_slowest: int = KEEP_SLOWEST,
                 reservoir: int = RESERVOIR, seed: int = 0):  # fmt: skip
        self.stages = list(stages)
        self._bucket = BulkRecorder(template)
        self._template = template
        k = len(self.stages)
        # Grown to the highest bucket seen (a run of microseconds touches a few thousand buckets).
        self.count = np.zeros(0, np.int64)
        self.span_sum = np.zeros((0, k), np.int64)
        self.share_sum = np.zeros((0, k), np.float64)
        self.taken = np.zeros((0, k), np.int64)  # traces that took the stage
        self.keep_slowest, self.reservoir = keep_slowest, reservoir
        self._slow = np.empty((0, k + 1), np.int64)  # column 0: tick-to-trade, then the spans
        self._slow_floor = 0  # the least tick-to-trade in _slow
        self._sample_buffer = np.empty((0, k + 1), np.int64)
        self._sample = self._sample_buffer  # the reservoir's rows: the filled part of the buffer
        self._offered = 0  # traces offered to the reservoir
        self._rng = np.random.default_rng(seed)

    @property
    def traces(self) -> int:
        return int(self.count.sum())

    def add(self, spans: np.ndarray, tick_to_trade: np.ndarray) -> None:
        """One batch of traced trades: ``spans`` (n x stages, ns; NOT_TAKEN off the trace's path) and
        their tick-to-trade (n)."""
        n = tick_to_trade.size
        if n == 0:
            return
        spans = np.asarray(spans, np.int64).reshape(n, len(self.stages))
        t2t = np.asarray(tick_to_trade, np.int64)
        idx = np.empty(n, np.int64)
        for start in range(0, n, CHUNK):  # BulkRecorder's work buffers hold CHUNK values
            self._bucket.indexes(t2t[start : start + CHUNK], idx[start : start + CHUNK])
        self._grow(int(idx.max()) + 1)
        # Sums over the buckets this batch touched only: a poll's few traces per dimension value
        # would otherwise pay for every bucket up to the slowest trace's (thousands) per stage.
        touched, at = np.unique(idx, return_inverse=True)
        at = at.reshape(-1)
        self.count[touched] += np.bincount(at, minlength=touched.size)
        taken = spans >= 0
        shares = _shares(spans)
        for j in range(len(self.stages)):
            # float weights are exact here: a batch's sum per bucket stays far below 2**53 ns
            on = np.where(taken[:, j], spans[:, j], 0)
            self.span_sum[touched, j] += np.rint(np.bincount(at, on, minlength=touched.size)).astype(np.int64)
            self.share_sum[touched, j] += np.bincount(at, shares[:, j], minlength=touched.size)
            self.taken[touched, j] += np.bincount(at[taken[:, j]], minlength=touched.size)
        rows = np.column_stack((t2t, spans))
        self._keep_slowest(rows)
        self._offer(rows)

    def _grow(self, size: int) -> None:
        if size <= self.count.size:
            return
        # Doubling: a run whose tail creeps up bucket by bucket re-stacks O(log) times, not per batch.
        size = min(max(size, 2 * self.count.size), self._bucket.counts_len)
        extra = size - self.count.size
        self.count = np.concatenate((self.count, np.zeros(extra, np.int64)))
        self.span_sum = np.vstack((self.span_sum, np.zeros((extra, len(self.stages)), np.int64)))
        self.share_sum = np.vstack((self.share_sum, np.zeros((extra, len(self.stages)))))
        self.taken = np.vstack((self.taken, np.zeros((extra, len(self.stages)), np.int64)))

    def _keep_slowest(self, rows: np.ndarray) -> None:
        if self._slow.shape[0] >= self.keep_slowest:
            # Only rows as slow as the slowest kept's k-th can enter: most batches stack nothing.
            rows = rows[rows[:, 0] >= self._slow_floor]
            if rows.shape[0] == 0:
                return
        both = np.vstack((self._slow, rows))
        if both.shape[0] > self.keep_slowest:
            both = both[np.argpartition(both[:, 0], both.shape[0] - self.keep_slowest)[-self.keep_slowest :]]
        self._slow = both
        self._slow_floor = int(both[:, 0].min()) if both.shape[0] else 0

    def _offer(self, rows: np.ndarray) -> None:
        """Algorithm R over a batch: the i-th trace offered replaces a random slot with p = R/i."""
        room = self.reservoir - self._sample.shape[0]
        if room > 0:
            n = min(room, rows.shape[0])
            filled = self._sample.shape[0]
            if filled + n > self._sample_buffer.shape[0]:  # doubling: not a re-stack per batch
                grown = np.empty((min(self.reservoir, max(2 * (filled + n), 64)), rows.shape[1]), np.int64)
                grown[:filled] = self._sample
                self._sample_buffer = grown
            self._sample_buffer[filled : filled + n] = rows[:n]
            self._sample = self._sample_buffer[: filled + n]
            self._offered += n
            rows = rows[room:]
        if rows.shape[0] == 0:
            return
        seen = self._offered + 1 + np.arange(rows.shape[0])
        slot = (self._rng.random(rows.shape[0]) * seen).astype(np.int64)
        take = slot < self.reservoir
        self._sample[slot[take]] = rows[take]  # a later trace of the batch wins a shared slot, as in order
        self._offered += rows.shape[0]

    def summary(self) -> dict | None:
        """summary.json's ``attribution`` (docs/session-format.md); None before any trade."""
        n = self.traces
        if n == 0:
            return None
        # The buckets holding traces only (a few hundred of thousands): sums from the top over them
        # are the same sums, and summary() runs per dimension value at every save.
        filled = np.flatnonzero(self.count != 0)
        count = self.count[filled]
        cum = np.cumsum(count)
        count_up = from_top(count)
        span_up, share_up = from_top(self.span_sum[filled]), from_top(self.share_sum[filled])
        taken_up = from_top(self.taken[filled])
        tails = {}
        for key, pct in TAILS:
            i = int(np.searchsorted(cum, percentile_rank(pct, n), side="left"))
            b = int(filled[i])
            low = int(self._template.get_value_from_index(b))
            high = int(self._template.get_highest_equivalent_value(low))
            m = int(count_up[i])
            means = span_up[i] / m
            median, method, samples = self._median(low, m)
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
        return {"population": "traded ticks", "traces": n, "stages": list(self.stages), "tails": tails}

    def _median(self, threshold: int, members: int) -> tuple[np.ndarray, str, int]:
        """Each stage's median share in the tail over the n traces that took it (the value at rank
        ceil(n/2) of their n shares; 0 when none did)."""
        if members <= self._slow.shape[0]:
            rows, method = self._slow[self._slow[:, 0] >= threshold], "exact"
        else:
            rows, method = self._sample[self._sample[:, 0] >= threshold], "sampled"
        if rows.shape[0] == 0:
            return np.zeros(len(self.stages)), method, 0
        spans = rows[:, 1:]
        shares = _shares(spans)
        median = np.zeros(len(self.stages))
        for j in range(len(self.stages)):
            took = shares[spans[:, j] >= 0, j]
            if took.size:
                k = int(percentile_rank(50.0, took.size)) - 1
                median[j] = np.partition(took, k)[k]  # the sorted k-th, without sorting the rest
        return median, method, int(rows.shape[0])


def _shares(spans: np.ndarray) -> np.ndarray:
    """Each taken span's share of its row's taken spans (0 where not taken)."""
    on = np.maximum(spans, 0)
    total = on.sum(axis=1)
    return np.divide(on, total[:, None], out=np.zeros(spans.shape), where=total[:, None] > 0)


def from_top(a: np.ndarray) -> np.ndarray:
    """Row b: the sum of rows b and above (bucket b and every slower bucket)."""
    return np.cumsum(a[::-1], axis=0)[::-1]
