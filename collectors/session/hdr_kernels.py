"""The compiled kernels of HDR bucketing (numba: compiled once per host, cached on disk), loaded
by hdr.py on first use (``hdr.compiled``). hdr.py's module doc states the index arithmetic."""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.cpython.unsafe.numbers import leading_zeros
from numba.extending import intrinsic


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


@intrinsic
def _add_at(typingctx, address, index, by):
    """``counts[index] += by`` for the int64 words at ``address``: a histogram's counts, which
    belong to hdrh (a ctypes array), not to numpy. Sound only while that histogram is alive and
    ``index`` within its counts_len: the caller (hdr.BulkRecorder.record_groups) holds every
    histogram it passes for the call's length, and every index is of their one layout."""

    def codegen(context, builder, sig, args):
        word = ir.IntType(64)
        at = builder.gep(builder.inttoptr(args[0], word.as_pointer()), [args[1]])
        builder.store(builder.add(builder.load(at), args[2]), at)
        return context.get_dummy_value()

    return types.void(types.int64, types.int64, types.int64), codegen


@njit(cache=True, nogil=True)
def group_bounds(values, label, column_group, stride, n_groups, absent_lo, absent_hi, top):
    """The first of two passes over a table of samples: cell (i, c) is a sample of histogram
    ``label[i, s] * stride + column_group[c]`` for every s with ``label[i, s] >= 0`` (a row may be
    in several: one label per slicing), unless ``absent_lo <= values[i, c] <= absent_hi`` (no
    sample: off the path, no decision). Returns per histogram the samples it takes, their min and
    max, and how many samples were out of 0..top (taken by none)."""
    recorded = np.zeros(n_groups, np.int64)
    lo = np.full(n_groups, top + 1, np.int64)
    hi = np.full(n_groups, -1, np.int64)
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
                    g = g0 * stride + column_group[c]
                    recorded[g] += 1
                    lo[g] = min(lo[g], v)
                    hi[g] = max(hi[g], v)
    return recorded, lo, hi, rejected


@njit(cache=True, nogil=True)
def record_groups(values, label, column_group, stride, absent_lo, absent_hi, mask, unit_magnitude, half_mag, top,
                  address):  # fmt: skip
    """The second pass (``group_bounds`` says which cells are samples of which histogram): each
    sample counted into its histogram's counts, at ``address[g]`` (see ``_add_at``)."""
    for i in range(values.shape[0]):
        for c in range(values.shape[1]):
            v = values[i, c]
            if absent_lo <= v <= absent_hi or v < 0 or v > top:
                continue
            ix = counts_index(v, mask, unit_magnitude, half_mag)
            for s in range(label.shape[1]):
                g0 = label[i, s]
                if g0 >= 0:
                    _add_at(address[g0 * stride + column_group[c]], ix, np.int64(1))


TOO_BIG = -1  # write_varints: a count ZigZag cannot hold


@njit("int64(uint64[:], int64, int64, uint8[:], int64)", cache=True, nogil=True)
def write_varints(counts, lead, n, out, at):  # pragma: no cover - compiled
    """The first ``n`` counts as V2 varints (hlog_codec) into ``out`` from ``at``; the end offset,
    or TOO_BIG for a count of 2**63 or more (ZigZag holds 63 bits). ``lead``: the counts below it
    are known empty and ``counts[lead]`` is not (0: nothing known): their run is written without a
    scan."""
    i = lead
    while i < n or lead:
        if lead:
            z = np.uint64(2 * lead - 1)  # ZigZag of -lead
            lead = 0
        else:
            c = counts[i]
            i += 1
            if c == 0:
                zeros = 1
                while i < n and counts[i] == 0:
                    zeros += 1
                    i += 1
                z = np.uint64(2 * zeros - 1)  # ZigZag of -zeros
            elif c >= np.uint64(1 << 63):
                return TOO_BIG
            else:
                z = c << np.uint64(1)
        # LEB128, except that the ninth byte carries eight bits (no continuation bit left)
        k = 0
        while k < 8 and (z >> np.uint64(7)) != 0:
            out[at] = np.uint8((z & np.uint64(0x7F)) | np.uint64(0x80))
            z >>= np.uint64(7)
            at += 1
            k += 1
        out[at] = np.uint8(z & np.uint64(0xFF))
        at += 1
    return at


def _warm() -> None:
    """Load every kernel's cached machine code now, at import (the collector imports this before
    the subject starts), not at its first batch: a ~0.5 s stall mid-run would fill the rings."""
    one, counts = np.ones(1, np.int64), np.zeros(4096, np.int64)
    indexes(one, np.empty(1, np.int64), 2047, 0, 10)
    record(one, counts, 2047, 0, 10, 100)
    cell, column = np.zeros((1, 1), np.int64), np.zeros(1, np.int64)
    group_bounds(cell + 1, cell, column, 1, 1, 1, 0, 100)
    record_groups(cell + 1, cell, column, 1, 1, 0, 2047, 0, 10, 100, np.array([counts.ctypes.data], np.int64))


_warm()
