"""The compiled kernels of HDR bucketing (numba: compiled once per host, cached on disk), loaded
by hdr.py on first use (``hdr.compiled``). hdr.py's module doc states the index arithmetic."""

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros


@njit(cache=True, nogil=True)
def counts_index(v, mask, unit_magnitude, half_mag):
    """hdrh's ``counts_index_for(v)`` for 0 <= v (the one statement of the rule; module doc)."""
    bucket = 64 - leading_zeros(v | mask) - unit_magnitude - (half_mag + 1)
    return (bucket << half_mag) + (v >> (bucket + unit_magnitude))


@njit(cache=True, nogil=True)
def indexes(values, out, mask, unit_magnitude, half_mag):
    for i in range(values.size):
        out[i] = counts_index(values[i], mask, unit_magnitude, half_mag)


@njit(cache=True, nogil=True)
def record(values, counts, mask, unit_magnitude, half_mag, top):
    """Count each value of 0..top into ``counts``; returns (recorded, min, max) of those counted."""
    n, lo, hi = 0, top + 1, -1
    for i in range(values.size):
        v = values[i]
        if v < 0 or v > top:
            continue
        counts[counts_index(v, mask, unit_magnitude, half_mag)] += 1
        n += 1
        lo = min(lo, v)
        hi = max(hi, v)
    return n, lo, hi


@njit(cache=True, nogil=True)
def record_groups(values, label, column_group, stride, n_groups, absent_lo, absent_hi, mask, unit_magnitude,
                  half_mag, top, scratch):  # fmt: skip
    """Bucket counts of many histograms in one pass over a table: cell (i, c) is a sample of
    histogram ``label[i, s] * stride + column_group[c]`` for every s with ``label[i, s] >= 0`` (a
    row may be in several: one label per slicing), unless ``absent_lo <= values[i, c] <= absent_hi``
    (no sample: off the path, no decision). Returns per histogram its (index, count) pairs at
    ``pairs[starts[g]:starts[g + 1]]``, its recorded count, min and max, and how many samples were
    out of 0..top. ``scratch``: counts_len zeros, left zeroed (one group's buckets at a time)."""
    per = np.zeros(n_groups + 1, np.int64)
    rejected = 0
    for i in range(values.shape[0]):
        for s in range(label.shape[1]):
            g0 = label[i, s]
            if g0 < 0:
                continue
            for c in range(values.shape[1]):
                v = values[i, c]
                if absent_lo <= v <= absent_hi:
                    continue
                if v < 0 or v > top:
                    rejected += 1
                else:
                    per[g0 * stride + column_group[c] + 1] += 1
    for g in range(n_groups):
        per[g + 1] += per[g]
    rows = np.empty(per[n_groups], np.int64)  # the recordable values, grouped (counting sort)
    fill = per[:n_groups].copy()
    for i in range(values.shape[0]):
        for s in range(label.shape[1]):
            g0 = label[i, s]
            if g0 < 0:
                continue
            for c in range(values.shape[1]):
                v = values[i, c]
                if not (absent_lo <= v <= absent_hi) and 0 <= v <= top:
                    g = g0 * stride + column_group[c]
                    rows[fill[g]] = v
                    fill[g] += 1
    pairs = np.empty((per[n_groups], 2), np.int64)
    starts = np.zeros(n_groups + 1, np.int64)
    recorded = np.zeros(n_groups, np.int64)
    lo, hi = np.zeros_like(recorded), np.zeros_like(recorded)
    k = 0
    for g in range(n_groups):
        a, b = per[g], per[g + 1]
        if b > a:
            lo[g], hi[g], recorded[g] = top + 1, -1, b - a
            for r in range(a, b):
                v = rows[r]
                ix = counts_index(v, mask, unit_magnitude, half_mag)
                if scratch[ix] == 0:
                    pairs[k, 0] = ix
                    k += 1
                scratch[ix] += 1
                lo[g] = min(lo[g], v)
                hi[g] = max(hi[g], v)
            for p in range(starts[g], k):
                pairs[p, 1] = scratch[pairs[p, 0]]
                scratch[pairs[p, 0]] = 0
        starts[g + 1] = k
    return pairs, starts, recorded, lo, hi, rejected


def _warm() -> None:
    """Load every kernel's cached machine code now, at import (the collector imports this before
    the subject starts), not at its first batch: a ~0.5 s stall mid-run would fill the rings."""
    one, counts = np.ones(1, np.int64), np.zeros(4096, np.int64)
    indexes(one, np.empty(1, np.int64), 2047, 0, 10)
    record(one, counts, 2047, 0, 10, 100)
    cell = np.zeros((1, 1), np.int64)
    record_groups(cell + 1, cell, np.zeros(1, np.int64), 1, 1, 1, 0, 2047, 0, 10, 100, counts)


_warm()
