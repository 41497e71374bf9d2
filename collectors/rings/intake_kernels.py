"""A drained batch's records turned into what the correlator takes, one pass per batch.

Numba kernels like ``pending.py``'s (compiled once per host, cached on disk, one dtype signature
each), imported with the first collector that correlates: see ``collector._intake``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tickscope.collectors.rings.realtime import REPEAT_SLACK_NS
from tickscope.probe import layout as L

# point_records' tally
MALFORMED, POINT_OUT_OF_RANGE, TSC_STAMPS, NEWEST_TICK, DIMS_UNKNOWN = range(5)


@njit(cache=True, nogil=True)
def dimension_ids(words, dim_map, dim_column, n_dims):
    """Records' dims words (a u16 ring value id per slot) as the collector's value ids, a column
    per dimension (0: none), and how many ids the ring's value table does not hold (yet): those
    are dropped. ``dim_map[slot, ring id]`` is the collector's id (0: not interned)."""
    out = np.zeros((words.size, n_dims), np.int32)
    unknown = 0
    top = dim_map.shape[1] - 1
    for k in range(words.size):
        word = words[k]
        if word == 0:
            continue
        for slot in range(dim_column.size):
            local = np.int64((word >> np.uint64(L.DIM_SLOT_BITS * slot)) & np.uint64(0xFFFF))
            value = dim_map[slot, min(local, top)]
            if local != 0 and value == 0:
                unknown += 1
            out[k, dim_column[slot]] = value
    return out, unknown


@njit(cache=True, nogil=True, inline="always")
def _segment_place(stamp, mono, off, k):
    """Where knot ``k``'s segment places a REALTIME ``stamp`` its REALTIME range holds: on the
    segment's line; from the last knot on, by its offset; on a segment of 1 ns (a set the kernel
    signalled: the stamp's REALTIME is one the set skipped, taken after the set and before the
    signal reached us), by the new offset."""
    if k == mono.size - 1:
        return stamp - off[k]
    dm = mono[k + 1] - mono[k]
    if dm == 1:
        return stamp - off[k + 1]
    return mono[k] + np.int64((stamp - mono[k] - off[k]) * (dm / (dm + off[k + 1] - off[k])))


@njit(cache=True, nogil=True)
def realtime_offset_at(stamp, mono, off, floor):
    """REALTIME - MONOTONIC for a REALTIME ``stamp``, off the knots of ``realtime.RealtimeOffset``
    (MONOTONIC ns, offset ns, the suffix minimum of their REALTIME ns): as the segment of the
    newest knot whose REALTIME is at or before the stamp places it (``_segment_place``); before
    every knot the first's. A REALTIME set back repeats its values: here a stamp of the repeat
    is placed after the change (``realtime_place`` tells the two apart)."""
    if mono.size == 1 or stamp < floor[0]:
        return off[0]
    # floor[k + 1] > stamp >= mono[k] + off[k] (floor's definition): the segment's REALTIME rises
    # over it, so the line meets the stamp once, within the segment
    k = np.searchsorted(floor, stamp, side="right") - 1
    return stamp - _segment_place(stamp, mono, off, k)


@njit(cache=True, nogil=True)
def realtime_place(stamp, mono, off, floor, after):
    """A REALTIME ``stamp`` on the MONOTONIC timeline. Each segment between two knots whose REALTIME
    range holds the stamp places it once (``_segment_place``), the last knot's from it on: one
    candidate, unless REALTIME was set back, which repeats its values. The stamp goes to the
    earliest candidate not before ``after`` (its ring's newest stamp placed so far, less
    REPEAT_SLACK_NS: a ring's records come in order). With none there, a stamp taken after a set
    back but before its signal: the earliest of the stamp less the offset of each knot after the
    newest candidate's segment, not before ``after``; else the newest candidate. With no candidate
    at all (before every knot), by ``realtime_offset_at``."""
    n = mono.size
    if n == 1:
        return stamp - off[0]
    newest, newest_k, best, have_newest, have_best = 0, 0, 0, False, False
    for k in range(n - 1, -1, -1):
        low = mono[k] + off[k]
        covers = stamp >= low if k == n - 1 else low <= stamp < mono[k + 1] + off[k + 1]
        if covers:
            m = _segment_place(stamp, mono, off, k)
            if not have_newest:
                newest, newest_k, have_newest = m, k, True
            if m < after:
                break  # an earlier segment places it earlier still
            best, have_best = m, True
        elif k < n - 1 and mono[k + 1] < after:
            break  # segments ending before ``after`` hold no candidate that counts
    if have_best:
        return best
    if not have_newest:
        return stamp - realtime_offset_at(stamp, mono, off, floor)
    for j in range(newest_k + 1, n):  # the offsets REALTIME was set to after that segment
        m = stamp - off[j]
        if m >= after and (not have_best or m < best):
            best, have_best = m, True
    if have_best:
        return best
    return newest


@njit(cache=True, nogil=True)
def realtime_to_monotonic(stamps, mono, off, floor, after):
    """REALTIME stamps (int64 ns, in the order they were taken) on the MONOTONIC timeline
    (``realtime_place``); 0 stays 0. ``after[0]``: their source's newest stamp placed less the
    slack, carried from call to call (``realtime.placed_after`` makes the first)."""
    out = np.empty(stamps.size, np.int64)
    for k in range(stamps.size):
        s = stamps[k]
        if s == 0:
            out[k] = 0
            continue
        m = realtime_place(s, mono, off, floor, after[0])
        out[k] = m
        after[0] = max(after[0], m - REPEAT_SLACK_NS)
    return out


@njit(cache=True, nogil=True)
def point_records(words, n_points, columns, domains, rt_mono, rt_off, rt_floor, rt_after, dim_map, dim_column,
                  n_dims):  # fmt: skip
    """A point ring's records (``words``: each 32-byte record as four u64, ``layout.POINT_RECORD``)
    without the malformed ones (a point id beyond the ring's table, or no stamp): trace ids,
    legs, schema columns, stamps (CLOCK_MONOTONIC ns, REALTIME ones placed by ``realtime_place`` on
    the ``rt_*`` knots with ``rt_after`` carried as ``realtime_to_monotonic`` carries it, or raw
    ticks for a TSC point: the correlator measures in-ring spans from ticks) and dimension value
    ids (``dimension_ids``).
    ``tally``: malformed, of those the point ids out of range, TSC stamps and the newest tick
    (which ``TscTimeline.observe`` must see), dimension ids unknown."""
    n = words.shape[0]
    ids = np.empty(n, np.uint64)
    legs = np.empty(n, np.int32)
    cols = np.empty(n, np.int64)
    ts = np.empty(n, np.int64)
    dims_words = np.empty(n, np.uint64)
    tally = np.zeros(5, np.int64)
    tally[NEWEST_TICK] = -(2**63)
    m = 0
    for k in range(n):
        point = np.int64(words[k, 2] & np.uint64(0xFFFF))
        if point >= n_points or words[k, 0] == 0:
            tally[MALFORMED] += 1
            if point >= n_points:
                tally[POINT_OUT_OF_RANGE] += 1
            continue
        stamp = np.int64(words[k, 0])
        domain = domains[point]
        if domain == L.CLOCK_TSC:
            tally[TSC_STAMPS] += 1
            tally[NEWEST_TICK] = max(tally[NEWEST_TICK], stamp)
        else:
            if domain != L.CLOCK_MONOTONIC:
                stamp = realtime_place(stamp, rt_mono, rt_off, rt_floor, rt_after[0])
            rt_after[0] = max(rt_after[0], stamp - REPEAT_SLACK_NS)  # on the MONOTONIC timeline
        ids[m] = words[k, 1]
        legs[m] = np.int32((words[k, 2] >> np.uint64(16)) & np.uint64(0xFFFF))
        cols[m] = columns[point]
        ts[m] = stamp
        dims_words[m] = words[k, 3]
        m += 1
    dims, tally[DIMS_UNKNOWN] = dimension_ids(dims_words[:m], dim_map, dim_column, n_dims)
    return ids[:m], legs[:m], cols[:m], ts[:m], dims, tally


def _warm() -> None:
    """Load every kernel's cached machine code at import (hdr_kernels._warm says why)."""
    words = np.zeros((1, L.POINT_RECORD_SIZE // 8), np.uint64)
    dim_map, dim_column = np.zeros((1, 2), np.int32), np.zeros(1, np.int64)
    knot = np.zeros(1, np.int64)
    point_records(words, 1, np.zeros(1, np.int64), np.zeros(1, np.int64), knot, knot, knot, knot.copy(), dim_map,
                  dim_column, 1)  # fmt: skip
    realtime_to_monotonic(knot, knot, knot, knot, knot.copy())
    dimension_ids(np.zeros(1, np.uint64), dim_map, dim_column, 1)


_warm()
