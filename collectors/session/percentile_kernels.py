"""The compiled kernel of percentiles over many histograms at once (numba: compiled once per host,
cached on disk), loaded by ``hdr.row_percentile_indexes`` on first use: compare's bootstrap asks
four percentiles of each of 2,000 resampled histograms per stage and side."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def row_totals(counts):
    """Each row's sum, added left to right (the last element of numpy's ``cumsum`` of the row)."""
    out = np.empty(counts.shape[0])
    for i in range(counts.shape[0]):
        total = 0.0
        for j in range(counts.shape[1]):
            total += counts[i, j]
        out[i] = total
    return out


@njit(cache=True, nogil=True)
def rank_indexes(counts, ranks):
    """Per row i and rank k (ascending along k): the first column whose running sum (left to right,
    as ``cumsum``) reaches ``ranks[i, k]``; the row's length if none does."""
    out = np.empty(ranks.shape, np.int64)
    width, asked = counts.shape[1], ranks.shape[1]
    for i in range(counts.shape[0]):
        running, k = 0.0, 0
        for j in range(width):
            running += counts[i, j]
            while k < asked and running >= ranks[i, k]:
                out[i, k] = j
                k += 1
            if k == asked:
                break
        while k < asked:
            out[i, k] = width
            k += 1
    return out


def _warm() -> None:
    """Load the cached machine code at import (hdr_kernels._warm says why)."""
    one = np.ones((1, 1))
    rank_indexes(one, row_totals(one).reshape(1, 1))


_warm()
