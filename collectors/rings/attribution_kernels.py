"""The compiled kernels of tail attribution (numba: compiled once per host, cached on disk), loaded
by attribution.py on first use. Each takes a whole batch of every population (slot) at once."""

import numpy as np
from numba import njit

from tickscope.collectors.session.hdr_kernels import counts_index


@njit(cache=True, nogil=True, inline="always")
def _taken_total(rows, i):
    """The sum of row i's taken spans (columns 1 on; a NOT_TAKEN span, -1, adds nothing): a
    stage's share of the row is its span over this (0 where not taken, or no span taken)."""
    total = 0
    for j in range(1, rows.shape[1]):
        total += max(rows[i, j], 0)
    return total


@njit(cache=True, nogil=True)
def shares(rows):
    """Each stage's share of each row (``rows``: tick-to-trade, then the spans; ``_taken_total``)."""
    out = np.zeros((rows.shape[0], rows.shape[1] - 1))
    for i in range(rows.shape[0]):
        total = _taken_total(rows, i)
        if total > 0:
            for j in range(rows.shape[1] - 1):
                out[i, j] = max(rows[i, j + 1], 0) / total
    return out


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
def _ranked(keys, m):
    """The m-th least (0 on) of ``keys``, exactly. A sorted sample of 256 brackets rank m (about
    2.7 standard deviations of the sample's rank each side), one pass sets apart the keys in the
    bracket, and those alone are partitioned: a partition of every key (numba's, 150 us for the
    12,288 rows of a settle) only when the bracket missed."""
    n = keys.size
    sample = np.sort(keys[:: max(n // 256, 1)])
    at = m * sample.size // n
    lo = sample[at - 20] if at >= 20 else np.iinfo(np.int64).min
    hi = sample[at + 20] if at + 20 < sample.size else np.iinfo(np.int64).max
    below, held = 0, 0
    between = np.empty(n, np.int64)
    for r in range(n):
        key = keys[r]
        if key < lo:
            below += 1
        elif key <= hi:
            between[held] = key
            held += 1
    if below <= m < below + held:
        return np.partition(between[:held], m - below)[m - below]
    return np.partition(keys.copy(), m)[m]


@njit(cache=True, nogil=True)
def settle(slow, s, n, keep_slowest, floor):
    """Population ``s``'s ``n`` rows held in ``slow[s]`` down to its ``keep_slowest`` slowest (at
    the front; of rows tied at the cut, the first held), and ``floor[s]`` raised to the slowest
    kept's least tick-to-trade: a row no slower cannot be among the slowest. Returns the rows held."""
    if n <= keep_slowest:
        return n
    cut = _ranked(slow[s, :n, 0], n - keep_slowest)
    ties = keep_slowest
    for r in range(n):
        if slow[s, r, 0] > cut:
            ties -= 1
    w = 0
    for r in range(n):
        key = slow[s, r, 0]
        if key > cut or (key == cut and ties > 0):
            if key == cut:
                ties -= 1
            if w != r:
                for j in range(slow.shape[2]):
                    slow[s, w, j] = slow[s, r, j]
            w += 1
    floor[s] = cut
    return w


@njit(cache=True, nogil=True)
def attribute(slot, rows, mask, unit_magnitude, half_mag, sums, shares, stream, slow, floor, slow_n, keep_slowest,
              pool, start, size, offered, seed):  # fmt: skip
    """Every population's rows (``rows``: tick-to-trade, then the spans; ``slot[i]``: the
    populations of row i, one per slicing, -1: none), each population's in arrival order, in one
    pass. Returns the highest tick-to-trade bucket (HDR counts index, ``hdr_kernels``) met.

    The sums: per (population, bucket), one record ``sums[s, b]``: traces, then per stage the sum
    of spans and the traces that did not take it, then (in the same words, as float64: ``shares`` is
    ``sums`` viewed so) the sum of shares; a NOT_TAKEN span, -1, adds nothing.

    The slowest: ``slow[s]`` holds a row only if it is slower than ``floor[s]`` (the least of the
    ``keep_slowest`` slowest at the last ``settle``), so once a population is warm almost every row
    costs one compare; when its region (room for half as many rows again) is full, ``settle`` keeps
    the ``keep_slowest`` slowest and raises the floor: one selection per ``keep_slowest / 2`` rows
    held, not a heap's sift per row. ``slow_n``: rows held (``settle`` before reading them).

    The uniform reservoir of population s, ``size[s]`` (R) rows of ``pool`` from ``start[s]``:
    Algorithm R, the i-th trace offered takes a random place with p = R/i, drawn from (seed,
    ``stream[s]``, i); ``offered``: traces offered so far."""
    k, width, room = rows.shape[1] - 1, rows.shape[1], slow.shape[1]
    top = -1
    share = np.zeros(k)  # row i's, worked out once for all its populations (a division is slow)
    # (pool row, row) of each place taken, copied after the pass: a copy goes to a random place of
    # every population's reservoir (megabytes), and its cache misses, in the pass, held up the sums'
    # stores. In order: a place taken twice keeps the later row.
    taken = np.empty((slot.size, 2), np.int64)
    takes = 0
    for i in range(slot.shape[0]):
        key = rows[i, 0]
        b = counts_index(key, mask, unit_magnitude, half_mag)
        top = max(top, b)
        total = _taken_total(rows, i)
        for j in range(k):
            share[j] = max(rows[i, j + 1], 0) / total if total > 0 else 0.0
        for col in range(slot.shape[1]):
            s = slot[i, col]
            if s < 0:
                continue
            sums[s, b, 0] += 1
            for j in range(k):
                span = rows[i, j + 1]
                if span >= 0:
                    sums[s, b, 1 + j] += span
                    shares[s, b, 1 + 2 * k + j] += share[j]
                else:
                    sums[s, b, 1 + k + j] += 1
            if key > floor[s]:
                held = slow_n[s]
                if held == room:
                    held = settle(slow, s, held, keep_slowest, floor)
                    slow_n[s] = held
                if key > floor[s]:
                    # slow[s] indexed in place: a view per row would cost a reference count
                    for j in range(width):
                        slow[s, held, j] = rows[i, j]
                    slow_n[s] = held + 1
            seen, reservoir = offered[s], size[s]
            place = seen if seen < reservoir else int(_uniform(seed, stream[s], seen) * (seen + 1))
            if place < reservoir:
                taken[takes, 0], taken[takes, 1] = start[s] + place, i
                takes += 1
            offered[s] = seen + 1
    for t in range(takes):
        at, i = taken[t, 0], taken[t, 1]
        for j in range(width):
            pool[at, j] = rows[i, j]
    return top


@njit(cache=True, nogil=True)
def move(src, dst, n):
    """The first ``n[s]`` rows of each population's region ``src[s]`` into ``dst[s]`` (only the
    rows held are touched: the rest of a region is address space, not memory)."""
    for s in range(n.size):
        for r in range(n[s]):
            for j in range(src.shape[2]):
                dst[s, r, j] = src[s, r, j]


@njit(cache=True, nogil=True)
def move_rows(src, dst, start, n):
    """Rows ``start[s]`` to ``start[s] + n[s]`` of ``src`` into ``dst``, for each population s."""
    for s in range(n.size):
        for r in range(start[s], start[s] + n[s]):
            for j in range(src.shape[1]):
                dst[r, j] = src[r, j]


def _warm() -> None:
    """Load every kernel's cached machine code at import (hdr_kernels._warm says why)."""
    one, rows = np.zeros(1, np.int64), np.zeros((1, 2), np.int64)
    shares(rows)
    cube, sums = np.zeros((1, 1, 2), np.int64), np.zeros((1, 1, 4), np.int64)
    slot = np.zeros((1, 1), np.int64)
    attribute(slot, rows, 2047, 0, 10, sums, sums.view(np.float64), one, cube.copy(), one.copy(), one.copy(), 1,
              rows.copy(), np.zeros(1, np.int64), one.copy(), one.copy(), 0)  # fmt: skip
    settle(cube.copy(), 0, 1, 1, one.copy())
    move(cube, cube.copy(), one)
    move_rows(rows, rows.copy(), np.zeros(1, np.int64), one)


_warm()
