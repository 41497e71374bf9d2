"""The incident buffer (collectors/rings/incidents.py): bounded in rows and bytes, and what a bound
pushes out before its window ended is counted to the row, while what ages out is not."""

import numpy as np

from tickscope.collectors.rings.incidents import StampBuffer, _Chunk


def chunk(first_ns: int, rows: int, span_ns: int = 10) -> _Chunk:
    first = np.arange(first_ns, first_ns + rows, dtype=np.int64)
    stamps = np.stack([first, first + span_ns], axis=1)
    return _Chunk(["a", "b"], {"stamps": stamps}, first, first + span_ns, stamps.nbytes)


def test_rows_that_age_out_leave_quietly_and_the_bound_counts_what_it_pushes_out():
    b = StampBuffer(keep_ns=1_000, max_rows=25, max_bytes=1 << 20)
    for start in (0, 100, 200):
        b.add(chunk(start, 10))
        b.evict()
    assert (b.rows, b.overflow) == (20, 10), "the third chunk pushed the first out early: 10 rows counted"
    assert b.horizon == 10 + 10, "rows ending before the horizon have left"
    b.add(chunk(5_000, 5))
    b.evict()
    assert (b.rows, b.overflow) == (5, 10), "the others aged out of the window: not overflow"
    assert b.peak_rows == 30 and b.bytes == 5 * 2 * 8


def test_the_byte_bound_holds_as_well():
    b = StampBuffer(keep_ns=10**9, max_rows=10**6, max_bytes=3 * 10 * 16)
    for start in range(0, 500, 100):
        b.add(chunk(start, 10))
        b.evict()
    assert b.bytes <= 3 * 10 * 16 and b.overflow == 20
