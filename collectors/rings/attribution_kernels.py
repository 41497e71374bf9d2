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
    tick-to-trade then the spans; ``slot[i]``: the populations of row i (one per slicing; -1: none)."""
    for i in range(slot.shape[0]):
        b = bucket[i]
        for c in range(slot.shape[1]):
            s = slot[i, c]
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
def keep(slot, rows, stream, slow, heap, slow_n, keep_slowest, pool, offered, reservoir, seed):
    """Every population's rows, each population's in arrival order (``slot`` as in ``tail_sums``),
    into its slowest (up to ``keep_slowest`` rows of ``slow[s]``, with a min-heap ``heap[s]`` of
    (tick-to-trade, row) over them: a slower row replaces the least) and its uniform reservoir
    ``pool[s]`` (Algorithm R: the i-th trace offered takes a random place with p = R/i, drawn from
    (seed, ``stream[s]``, i)). ``slow_n`` (rows kept) and ``offered`` (traces offered so far) are
    updated in place."""
    width = rows.shape[1]
    for i in range(slot.shape[0]):
        key = rows[i, 0]
        for col in range(slot.shape[1]):
            s = slot[i, col]
            if s < 0:
                continue
            kept = slow_n[s]  # heap[s] indexed in place: a view per row would cost a reference count
            if kept < keep_slowest:  # room left: the row goes in, its key sifts up
                at, c = kept, kept
                kept += 1
                while c > 0 and heap[s, (c - 1) // 2, 0] > key:
                    up = (c - 1) // 2
                    heap[s, c, 0], heap[s, c, 1] = heap[s, up, 0], heap[s, up, 1]
                    c = up
                heap[s, c, 0], heap[s, c, 1] = key, at
            elif key > heap[s, 0, 0]:  # slower than the least kept: it takes that row's place, sifts down
                at, c = heap[s, 0, 1], 0
                while True:
                    m = 2 * c + 1
                    if m >= kept:
                        break
                    if m + 1 < kept and heap[s, m + 1, 0] < heap[s, m, 0]:
                        m += 1
                    if heap[s, m, 0] >= key:
                        break
                    heap[s, c, 0], heap[s, c, 1] = heap[s, m, 0], heap[s, m, 1]
                    c = m
                heap[s, c, 0], heap[s, c, 1] = key, at
            else:
                at = -1
            if at >= 0:
                for j in range(width):
                    slow[s, at, j] = rows[i, j]
            slow_n[s] = kept
            seen = offered[s]
            place = seen if seen < reservoir else int(_uniform(seed, stream[s], seen) * (seen + 1))
            if place < reservoir:
                for j in range(width):
                    pool[s, place, j] = rows[i, j]
            offered[s] = seen + 1


@njit(cache=True, nogil=True)
def move(src, dst, n):
    """The first ``n[s]`` rows of each population's region ``src[s]`` into ``dst[s]`` (only the
    rows held are touched: the rest of a region is address space, not memory)."""
    for s in range(n.size):
        for r in range(n[s]):
            for j in range(src.shape[2]):
                dst[s, r, j] = src[s, r, j]


def _warm() -> None:
    """Load every kernel's cached machine code at import (hdr_kernels._warm says why)."""
    one, rows = np.zeros(1, np.int64), np.zeros((1, 2), np.int64)
    share = shares(rows[:, 1:].copy())
    cube = np.zeros((1, 1, 2), np.int64)
    slot = np.zeros((1, 1), np.int64)
    tail_sums(slot, one, rows, share, np.zeros((1, 1), np.int64), cube, np.zeros((1, 1, 1)), cube.copy())
    keep(slot, rows, one, cube.copy(), cube.copy(), one.copy(), 1, cube.copy(), one.copy(), 1, 0)
    move(cube, cube.copy(), one)


_warm()
