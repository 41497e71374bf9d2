"""Bulk ingestion is bit-identical to hdrh's record_value, and percentiles are within HDR precision."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickscope.collectors.session.hdr import (
    HIGHEST_NS,
    PERCENTILES,
    BulkRecorder,
    add_into,
    corrected_values,
    mean_of,
    new_histogram,
    percentile_rank,
    percentiles,
    summarize,
)

values_strategy = st.lists(st.integers(min_value=0, max_value=HIGHEST_NS), min_size=1, max_size=400)


@settings(max_examples=150, deadline=None)
@given(values_strategy, st.sampled_from([(1, 60 * 10**9, 3), (1, 10**7, 2), (1000, 10**12, 4)]))
def test_bulk_encode_is_bit_identical_to_record_value(values, layout):
    bulk, ref = new_histogram(*layout), new_histogram(*layout)
    arr = np.array(values, dtype=np.int64)
    rejected = BulkRecorder(bulk).record(bulk, arr)
    accepted = sum(ref.record_value(v) for v in values)
    assert rejected == len(values) - accepted
    assert bulk.encode() == ref.encode()
    assert (bulk.total_count, bulk.min_value, bulk.max_value) == (
        ref.total_count,
        ref.min_value,
        ref.max_value,
    )


def exact_rank(p: float, n: int) -> int:
    """ceil(p/100 * n) in exact decimal arithmetic (p as written), at least 1: the oracle."""
    return max(1, math.ceil(Fraction(repr(p)) * n / 100))


# Percentiles with up to 4 decimals, as people write them (p99.99), plus the ends.
percentile_strategy = st.integers(0, 1_000_000).map(lambda i: i / 10_000) | st.sampled_from(
    [0.0, 99.9, 100.0]
)


@settings(max_examples=200, deadline=None)
@given(values_strategy, st.lists(percentile_strategy, min_size=1, max_size=8))
def test_percentile_is_the_value_at_rank_ceil_q_n_of_the_sorted_values_within_its_hdr_bucket(values, pcts):
    h = new_histogram()
    BulkRecorder(h).record(h, np.array(values, dtype=np.int64))
    ordered = sorted(values)
    got = percentiles(h, pcts)
    for p in pcts:
        v = ordered[exact_rank(p, len(values)) - 1]
        # p0 names the minimum's bucket by its lowest value, as HdrHistogram's tools do
        want = h.get_lowest_equivalent_value(v) if p == 0 else h.get_highest_equivalent_value(v)
        assert got[p] == want, (p, len(values), got[p], want)
    # hdrh's get_mean_value (each recorded value at its bucket's median equivalent), from the values
    # themselves: its own iterator walks all 27,648 buckets in Python, 10 s over these examples
    mean = sum(h._hdr_median_equiv_value(v) for v in values) / len(values)
    assert abs(mean_of(h) - mean) <= 1e-9 * max(1.0, mean)


def test_percentile_rank_edge_cases():
    h = new_histogram()
    BulkRecorder(h).record(h, np.arange(1, 8))  # 1..7, each its own bucket
    assert percentiles(h, (50.0, 90.0)) == {50.0: 4, 90.0: 7}  # hdrh's rounding said p90 = 6
    assert percentiles(h, (0.0, 100.0)) == {0.0: 1, 100.0: 7}
    s = summarize(h)
    assert (s["min"], s["p90"], s["max"]) == (1, 7, 7)
    assert percentiles(new_histogram(), (0.0, 50.0, 100.0)) == {0.0: 0, 50.0: 0, 100.0: 0}
    assert percentile_rank([0.0, 50.0, 100.0], 0).tolist() == [1, 1, 1]
    # q*N an integer: that rank, not the next one, though 0.999 * 1000 is 999.0000000000001 in floats
    assert percentile_rank([90.0, 99.0, 99.9, 99.99], [10, 100, 1000, 10_000]).tolist() == [9, 99, 999, 9999]
    big = new_histogram()
    BulkRecorder(big).record(big, np.arange(1, 1001))
    assert percentiles(big, (99.9,))[99.9] == big.get_highest_equivalent_value(999)
    # hdrh's rounding took rank 8,920 of 8,929 for p99.9: 99.899 % of the values, below the fraction
    assert percentile_rank(99.9, 8929) == 8921 and 8921 / 8929 >= 0.999 > 8920 / 8929


def test_chunked_ingestion_of_many_values_equals_one_by_one():
    rng = np.random.default_rng(3)
    v = rng.lognormal(10, 2, 50_000).astype(np.int64)  # spans several chunks
    bulk, ref = new_histogram(), new_histogram()
    BulkRecorder(bulk).record(bulk, v)
    for x in v:
        ref.record_value(int(x))
    assert bulk.encode() == ref.encode()


def test_percentiles_agree_with_exact_numpy_within_hdr_precision():
    rng = np.random.default_rng(11)
    v = rng.lognormal(np.log(25_000), 1.2, 200_000).astype(np.int64)
    h = new_histogram()
    BulkRecorder(h).record(h, v)
    s = summarize(h)
    ordered = np.sort(v)
    for p, key in zip(PERCENTILES, ("p50", "p90", "p99", "p99_9", "p99_99"), strict=True):
        exact = ordered[exact_rank(p, v.size) - 1]
        assert s[key] == h.get_highest_equivalent_value(int(exact)), (key, s[key], exact)
        assert abs(s[key] - exact) <= 0.001 * exact + 1, (key, s[key], exact)
        # numpy's inverted_cdf is the same rule, but takes q*N in floats: 0.999 * 200,000 is one
        # ulp above 199,800 and it names rank 199,801; the bucket may differ, the precision holds
        inverted = np.percentile(v, p, method="inverted_cdf")
        assert abs(s[key] - inverted) <= 0.001 * inverted + 1, (key, s[key], inverted)
    assert s["max"] >= v.max() and s["count"] == v.size


def test_out_of_range_values_are_counted_not_lost_silently():
    h = new_histogram()
    rejected = BulkRecorder(h).record(h, np.array([-5, 10, 100 * 10**9, 20], dtype=np.int64))
    assert rejected == 2 and h.total_count == 2


def test_add_into_matches_hdrh_add():
    a, b, ref_a = new_histogram(), new_histogram(), new_histogram()
    rec = BulkRecorder(a)
    rec.record(a, np.array([5, 500, 50_000]))
    rec.record(ref_a, np.array([5, 500, 50_000]))
    rec.record(b, np.array([7, 7_000_000]))
    add_into(a, b)
    ref_a.add(b)
    assert a.encode() == ref_a.encode() and a.total_count == ref_a.total_count == 5


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=60), st.integers(0, 200_000))
def test_coordinated_omission_correction_matches_record_corrected_value(values, interval):
    bulk, ref = new_histogram(), new_histogram()
    BulkRecorder(bulk).record(bulk, corrected_values(np.array(values), interval))
    for v in values:
        ref.record_corrected_value(v, interval)
    assert bulk.encode() == ref.encode() and bulk.total_count == ref.total_count


def test_reset_leaves_a_histogram_like_a_new_one():
    from tickscope.collectors.session.hdr import reset

    h = new_histogram()
    for v in (1, 500, 10**9):
        h.record_value(v)
    reset(h)
    fresh = new_histogram()
    assert h.total_count == 0 and h.get_max_value() == fresh.get_max_value()
    assert h.get_min_value() == fresh.get_min_value() and h.encode() == fresh.encode()
    h.record_value(42)
    fresh.record_value(42)
    assert h.encode() == fresh.encode()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 60 * 10**9), max_size=40), min_size=1, max_size=4),
    st.sampled_from(["record", "groups", "record_value", "corrected"]),
)
def test_a_recycled_histogram_folds_and_clears_exactly_whatever_recorded_it(batches, how):
    """The roll folds an interval histogram into its total and clears it for the next interval over
    the buckets its raw minimum and maximum span only: every way of recording keeps them, so the
    total is hdrh's ``add`` and the cleared histogram is a new one (values 0 and the top included)."""
    from tickscope.collectors.session.hdr import corrected_histogram, reset

    total, want, h = new_histogram(), new_histogram(), new_histogram()
    rec, raw = BulkRecorder(h), []
    for batch in batches:
        values = np.array(batch + [0, rec.max_recordable][: len(batch) % 3], np.int64)
        if how == "record":
            rec.record(h, values)
        elif how == "groups":
            rec.record_groups(values.reshape(-1, 1), np.zeros((values.size, 1), np.int64), np.zeros(1, np.int64),
                              1, 1, lambda g, h=h: h)  # fmt: skip
        elif how == "record_value":
            for v in values.tolist():
                h.record_value(v)
        else:  # the coordinated-omission twin the collector also recycles
            plain = new_histogram()
            rec.record(plain, values)
            h = corrected_histogram(plain, 1_000_000)
        if h.total_count:  # (hdrh's add of an empty histogram takes its minimum as 0)
            want.add(h)
            raw.append((h.min_value, h.max_value))
        add_into(total, h)
        reset(h)
        assert h.encode() == new_histogram().encode() and h.total_count == 0
    assert total.encode() == want.encode() and total.total_count == want.total_count
    if raw:  # the raw minimum and maximum of everything folded
        assert (total.min_value, total.max_value) == (min(r[0] for r in raw), max(r[1] for r in raw))
