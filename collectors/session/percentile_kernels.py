"""The compiled kernel of compare's bootstrap percentiles (numba: compiled once per host, cached on
disk), loaded on first use: four percentiles of each of 2,000 resampled histograms per stage and
side, where a resampled histogram is a weighted sum of the side's interval histograms."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def resample_rank_indexes(weights, cum_t, ranks):
    """Per resample i and rank k (ascending along k): the first bucket j whose cumulative count in
    resample i, ``sum over r of weights[i, r] * cum_t[j, r]``, reaches ``ranks[i, k]``; the width
    if none does. ``cum_t`` is (buckets x intervals): each interval's cumulative counts, one bucket
    a row. The cumulative count never falls as j grows (weights and counts are >= 0), so each rank
    is a binary search of ~log2(width) sums of one row: the resampled histograms themselves
    (resamples x buckets, ~24 MB a side and stage) are never made. Whole counts, so every sum is
    exact in float64 in any order and equals the running sum of the resampled row."""
    n, rows = weights.shape
    width, asked = cum_t.shape[0], ranks.shape[1]
    out = np.empty((n, asked), np.int64)
    for i in range(n):
        lo = 0
        for k in range(asked):
            a, b = lo, width
            while a < b:
                mid = (a + b) // 2
                s = 0.0
                for r in range(rows):
                    s += weights[i, r] * cum_t[mid, r]
                if s >= ranks[i, k]:
                    b = mid
                else:
                    a = mid + 1
            out[i, k] = a
            lo = a
    return out


def _warm() -> None:
    """Load the cached machine code at import (hdr_kernels._warm says why)."""
    one = np.ones((1, 1))
    resample_rank_indexes(one, one, one)


_warm()
