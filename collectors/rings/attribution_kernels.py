"""The compiled kernels of tail attribution (numba: compiled once per host, cached on disk), loaded
by attribution.py on first use. Each takes a whole batch of every population (slot) at once."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def shares(spans):
    """Each taken span's share of its row's taken spans (0 where not taken, or no span taken)."""
    out = np.zeros(spans.shape)
    for i in range(spans.shape[0]):
        total = 0
        for j in range(spans.shape[1]):
            total += max(spans[i, j], 0)
        if total > 0:
            for j in range(spans.shape[1]):
                out[i, j] = max(spans[i, j], 0) / total
    return out


@njit(cache=True, nogil=True)
def tail_sums(slot, bucket, rows, share, count, span_sum, share_sum, taken):
    """Per (population, tick-to-trade bucket): traces, and per stage the sum of spans, of shares and
    the traces that took it (a NOT_TAKEN span, -1, adds nothing), row by row in one pass. ``rows``:
    tick-to-trade then the spans; a row of slot -1 is in no population."""
    for i in range(slot.size):
        s, b = slot[i], bucket[i]
        if s < 0:
            continue
        count[s, b] += 1
        for j in range(share.shape[1]):
            span = rows[i, j + 1]
            if span >= 0:
                span_sum[s, b, j] += span
                share_sum[s, b, j] += share[i, j]
                taken[s, b, j] += 1


@njit(cache=True, nogil=True)
def _uniform(seed, s, i):
    """A uniform draw in [0, 1) that depends on (seed, population, trace number) only (splitmix64),
    so a population's sample is the same however the traces were batched and whatever the others'."""
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(s) * np.uint64(0xD1B54A32D192ED03)
    z = z + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def keep(s, rows, kept_rows, h, kept, keep_slowest, pool, seen, reservoir, seed):
    """Population ``s``'s rows, in arrival order, into its slowest (up to ``keep_slowest`` rows, with
    a min-heap ``h`` of (tick-to-trade, row) over them: a slower row replaces the least) and its
    uniform reservoir ``pool`` (Algorithm R: the i-th trace offered takes a random place with
    p = R/i). Buffers sized by the caller; returns the rows kept and the traces offered so far."""
    width = rows.shape[1]
    for i in range(rows.shape[0]):
        key = rows[i, 0]
        if kept < keep_slowest:  # room left: the row goes in, its key sifts up
            at, c = kept, kept
            kept += 1
            while c > 0 and h[(c - 1) // 2, 0] > key:
                h[c, 0], h[c, 1] = h[(c - 1) // 2, 0], h[(c - 1) // 2, 1]
                c = (c - 1) // 2
            h[c, 0], h[c, 1] = key, at
        elif key > h[0, 0]:  # slower than the least kept: it takes that row's place, sifts down
            at, c = h[0, 1], 0
            while True:
                m = 2 * c + 1
                if m >= kept:
                    break
                if m + 1 < kept and h[m + 1, 0] < h[m, 0]:
                    m += 1
                if h[m, 0] >= key:
                    break
                h[c, 0], h[c, 1] = h[m, 0], h[m, 1]
                c = m
            h[c, 0], h[c, 1] = key, at
        else:
            at = -1
        if at >= 0:
            for j in range(width):
                kept_rows[at, j] = rows[i, j]
        place = seen if seen < reservoir else int(_uniform(seed, s, seen) * (seen + 1))
        if place < reservoir:
            for j in range(width):
                pool[place, j] = rows[i, j]
        seen += 1
    return kept, seen


def _warm() -> None:
    """Load every kernel's cached machine code at import (hdr_kernels._warm says why)."""
    one, rows = np.zeros(1, np.int64), np.zeros((1, 2), np.int64)
    share = shares(rows[:, 1:].copy())
    cube = np.zeros((1, 1, 1), np.int64)
    tail_sums(one, one, rows, share, np.zeros((1, 1), np.int64), cube, np.zeros((1, 1, 1)), cube.copy())
    keep(0, rows, rows.copy(), np.zeros((1, 2), np.int64), 0, 1, rows.copy(), 0, 1, 0)


_warm()
