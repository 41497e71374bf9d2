"""A drained batch's records decoded (collectors/rings/intake_kernels.py) held to a plain-Python
reference of the rules: a record naming a point beyond the ring's table, or without a stamp, is
malformed (counted, dropped); a stamp is CLOCK_MONOTONIC ns as written, a TSC stamp stays raw
ticks (the newest one observed), any other clock is REALTIME and moves by the offset; a shared
point's leg word passes through (the table ignores it); each dims slot's ring value id maps to
the collector's id of its dimension, an id the ring's table does not hold counted as unknown.

Records are built as the writers write them (``point_dtype``), with stamps and trace ids above
2^63, point ids and value ids beyond every table, and slots mapped to any dimension column.
"""

import numpy as np
import pytest

from tickscope.collectors.rings import intake_kernels as K
from tickscope.collectors.rings.reader import point_dtype
from tickscope.probe import layout as L


def reference_dims(word, dim_map, dim_column, n_dims):
    """One dims word: the collector's value ids, a column per dimension, and how many were unknown."""
    row, unknown = [0] * n_dims, 0
    for slot, col in enumerate(dim_column):
        local = (int(word) >> (L.DIM_SLOT_BITS * slot)) & 0xFFFF
        value = int(dim_map[slot][min(local, L.MAX_DIM_VALUES)])
        unknown += local != 0 and value == 0
        row[col] = value
    return row, unknown


def reference(records, n_points, columns, domains, offset, dim_map, dim_column, n_dims):
    """The rules, one record at a time."""
    ids, legs, cols, ts, dims = [], [], [], [], []
    malformed = out_of_range = tsc = unknown = 0
    newest = None
    for rec in records:
        point, raw = int(rec["point"]), int(rec["ts"])
        if point >= n_points or raw == 0:
            malformed += 1
            out_of_range += point >= n_points
            continue
        stamp = raw - (1 << 64) if raw >= 1 << 63 else raw  # the u64 as an int64
        if domains[point] == L.CLOCK_TSC:
            tsc += 1
            newest = stamp if newest is None else max(newest, stamp)
        elif domains[point] != L.CLOCK_MONOTONIC:
            stamp -= offset
        ids.append(int(rec["trace"]))
        legs.append(int(rec["leg"]))
        cols.append(int(columns[point]))
        ts.append(stamp)
        row, missing = reference_dims(rec["dims"], dim_map, dim_column, n_dims)
        dims.append(row)
        unknown += missing
    return ids, legs, cols, ts, dims, (malformed, out_of_range, tsc, newest, unknown)


@pytest.mark.parametrize("seed", range(30))
def test_point_records_decode_exactly_as_the_reference(seed):
    rng = np.random.default_rng(seed)
    n_points = int(rng.integers(1, 9))
    n_dims = int(rng.integers(0, 5))
    slots = int(rng.integers(0, min(n_dims, L.MAX_DIMS) + 1))
    dim_column = rng.permutation(n_dims)[:slots].astype(np.int64)
    dim_map = np.zeros((slots, L.MAX_DIM_VALUES + 1), np.int32)
    interned = int(rng.integers(0, 40))
    dim_map[:, 1 : interned + 1] = rng.integers(0, 6, (slots, interned))  # 0: a value not interned (yet)
    dim_map[:, L.MAX_DIM_VALUES] = rng.integers(0, 6, slots)
    columns = rng.permutation(12)[:n_points].astype(np.int64)
    domains = rng.choice([L.CLOCK_TSC, L.CLOCK_MONOTONIC, L.CLOCK_REALTIME], n_points).astype(np.int64)
    offset = int(rng.integers(-(1 << 40), 1 << 40))
    n = int(rng.integers(0, 400))
    records = np.zeros(n, point_dtype())
    scale = rng.choice([0, 1, 1, 1, 2, 3], n).astype(np.uint64)  # 0: no stamp; 2, 3: above 2^63
    records["ts"] = rng.integers(1, 1 << 62, n).astype(np.uint64) * scale
    records["trace"] = rng.integers(0, 1 << 64, n, dtype=np.uint64)
    records["point"] = rng.integers(0, n_points + 3, n)
    records["leg"] = rng.choice([0, 1, 2, 0xFFFF], n)
    records["thread"] = rng.integers(0, 1 << 32, n)
    local = rng.choice([0, 0, 1, 2, interned, interned + 1, L.MAX_DIM_VALUES, 5000, 0xFFFF], (n, L.MAX_DIMS))
    records["dims"] = sum(local[:, k].astype(np.uint64) << np.uint64(16 * k) for k in range(L.MAX_DIMS))

    words = records.view(np.uint64).reshape(n, L.POINT_RECORD_SIZE // 8)
    one = np.array([0], np.int64)  # one knot (RealtimeOffset): the offset of the whole batch
    ids, legs, cols, ts, dims, tally = K.point_records(
        words,
        n_points,
        columns,
        domains,
        one,
        one + offset,
        one + offset,
        one.copy(),
        dim_map,
        dim_column,
        n_dims,
    )
    want_ids, want_legs, want_cols, want_ts, want_dims, counts = reference(
        records, n_points, columns, domains, offset, dim_map, dim_column, n_dims
    )
    assert ids.tolist() == want_ids and legs.tolist() == want_legs and cols.tolist() == want_cols
    assert ts.tolist() == want_ts
    assert dims.shape == (len(want_ids), n_dims) and dims.tolist() == want_dims
    malformed, out_of_range, tsc, newest, unknown = counts
    assert tally[K.MALFORMED] == malformed and tally[K.POINT_OUT_OF_RANGE] == out_of_range
    assert tally[K.TSC_STAMPS] == tsc and tally[K.DIMS_UNKNOWN] == unknown
    if tsc:
        assert tally[K.NEWEST_TICK] == newest

    # a tick ring's dims words, by the same rule
    got, unknown_ticks = K.dimension_ids(np.ascontiguousarray(records["dims"]), dim_map, dim_column, n_dims)
    every = [reference_dims(word, dim_map, dim_column, n_dims) for word in records["dims"]]
    assert got.tolist() == [row for row, _ in every] and unknown_ticks == sum(u for _, u in every)
