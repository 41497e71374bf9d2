"""The collector's vectorised ingest against simple exact references, on random batches: row keys
packed for unique, small batches recorded bucket by bucket, tail sums over the touched buckets
only, and per-dimension-value histograms grouped by one sort."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickscope.collectors.rings.attribution import TailAttribution
from tickscope.collectors.rings.collector import HistogramSet
from tickscope.collectors.rings.correlate import TICK_TO_DECISION, TICK_TO_TRADE
from tickscope.collectors.rings.slices import DimensionSlices, unique_rows
from tickscope.collectors.session.dimensions import dimension_tag
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram

LAYOUT = new_histogram()
values = st.integers(1, 10**9)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 3), st.integers(1, 70_000), st.integers(0, 2**31))
def test_packed_unique_rows_are_numpy_s_row_wise_unique(n, k, top, seed):
    cols = np.random.default_rng(seed).integers(0, top, size=(n, k)).astype(np.int32)
    got, want = unique_rows(cols), np.unique(cols, axis=0, return_inverse=True, return_counts=True)
    assert got[0].dtype == want[0].dtype
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a.reshape(-1), b.reshape(-1))


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(values, min_size=0, max_size=3000), min_size=1, max_size=4))
def test_batches_of_any_size_encode_as_record_value_one_by_one(compiled, batches):
    ours, ref = new_histogram(), new_histogram()
    rec = BulkRecorder(ours, compiled=compiled)
    for batch in batches:  # small ones take the sparse path, large ones the dense bincount
        rec.record(ours, np.array(batch, np.int64))
        for v in batch:
            ref.record_value(v)
    assert ours.encode() == ref.encode()


def test_both_recorders_take_the_edges_of_every_bucket_and_refuse_what_record_value_refuses():
    """Each power of two and its neighbours (where a value changes bucket), 0, the top value the
    layout holds and the first beyond it, negatives and int64's largest: both recorders and
    ``record_value`` agree on every index, on what is refused and on the encoded histogram."""
    layout = new_histogram()
    top = BulkRecorder(layout).max_recordable
    edges = sorted(
        {max(0, (1 << k) + d) for k in range(63) for d in (-1, 0, 1)}
        | {0, top, top + 1, -1, -(2**40), 2**63 - 1}
    )
    values = np.array(edges, np.int64)
    ref = new_histogram()
    refused = sum(not ref.record_value(int(v)) for v in values)
    inside = values[(values >= 0) & (values <= top)]
    for compiled in (True, False):
        hist = new_histogram()
        rec = BulkRecorder(hist, compiled=compiled)
        assert rec.record(hist, values) == refused
        assert hist.encode() == ref.encode()
        got = rec.indexes(inside, np.empty(inside.size, np.int64))
        assert got.tolist() == [ref._counts_index_for(int(v)) for v in inside]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(values, st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=200),
       st.integers(1, 4))  # fmt: skip
def test_tail_sums_per_bucket_are_the_rows_sums(rows, batches):
    att = TailAttribution(["a", "b"], LAYOUT)
    spans = np.array([[a, b] for _, a, b in rows], np.int64)
    t2t = spans.sum(axis=1)
    for part in np.array_split(np.arange(len(rows)), batches):
        att.add(spans[part], t2t[part])
    rec = BulkRecorder(LAYOUT)
    idx = rec.indexes(t2t, np.empty(t2t.size, np.int64))
    for b in np.unique(idx):
        mine = idx == b
        assert att.count[0, b] == mine.sum()
        assert np.array_equal(att.span_sum[0, b], spans[mine].sum(axis=0))
        total = spans[mine].sum(axis=1)
        shares = np.divide(spans[mine], total[:, None], out=np.zeros((int(mine.sum()), 2)),
                           where=total[:, None] > 0)  # fmt: skip
        assert np.allclose(att.share_sum[0, b], shares.sum(axis=0), rtol=1e-12, atol=1e-12)
    assert att.count.sum() == len(rows)


class Hists:
    """What DimensionSlices records into, kept as plain lists per tag (the reference's view)."""

    def __init__(self):
        self.got: dict[str, list[int]] = {}

    def record(self, tag, vals):
        self.got.setdefault(tag, []).extend(int(v) for v in vals)

    def record_groups(self, tag_of, values, label, column_group, stride, n_groups, absent=(1, 0)):
        for i in range(values.shape[0]):
            for s in range(label.shape[1]):
                for c in range(values.shape[1]):
                    v = int(values[i, c])
                    if label[i, s] >= 0 and not absent[0] <= v <= absent[1]:
                        self.record(tag_of(int(label[i, s]) * stride + int(column_group[c])), [v])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**31))
def test_per_value_histograms_hold_exactly_each_value_s_rows_in_order(n, n_values, cap, seed):
    rng = np.random.default_rng(seed)
    dims = rng.integers(0, n_values + 1, size=(n, 2)).astype(np.int32)  # 0: the row has no value
    traded = rng.random(n) < 0.6
    t2t = np.where(traded, rng.integers(1, 10**7, n), -1)
    t2d = np.where(traded, -1, rng.integers(1, 10**7, n))
    spans = rng.integers(0, 10**6, size=(int(traded.sum()), 2))
    names = {
        "venue": [f"v{i}" for i in range(1, n_values + 1)],
        "side": [f"s{i}" for i in range(1, n_values + 1)],
    }
    slices, hists = DimensionSlices(cap=cap, combinations=[("venue", "side")]), Hists()
    rows = {
        "trace": np.arange(n),
        "leg": np.full(n, -1),
        "dims": dims,
        "tick_to_trade": t2t,
        "tick_to_decision": t2d,
    }
    slices.add(hists, rows, spans, ["a", "b"], names, False, LAYOUT)
    # The reference: row by row, in order, each into its label's lists (the first `cap` values
    # seen in sorted value order get their own, the rest share *other).
    want: dict[str, list[int]] = {}
    span_of = np.cumsum(traded) - 1
    for dims_of, sl in slices.slicings.items():
        cols = [list(names).index(d) for d in dims_of]
        for i in range(n):
            key = tuple(int(dims[i, c]) for c in cols)
            if 0 in key:
                continue
            place = sl.label[key]
            label = dimension_tag(
                "", {d: place or names[d][v - 1] for d, v in zip(dims_of, key, strict=True)}
            )
            if traded[i]:
                want.setdefault(TICK_TO_TRADE + label, []).append(int(t2t[i]))
                for j, stage in enumerate(["a", "b"]):
                    if spans[span_of[i], j]:
                        want.setdefault(stage + label, []).append(int(spans[span_of[i], j]))
            else:
                want.setdefault(TICK_TO_DECISION + label, []).append(int(t2d[i]))
    assert {t: v for t, v in hists.got.items() if v} == want


@settings(max_examples=30, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from("abcd"), st.lists(values, min_size=0, max_size=400), max_size=4),
                min_size=1, max_size=5))  # fmt: skip
def test_recycled_interval_histograms_roll_as_fresh_ones(intervals):
    """Interval histograms are reused after each roll: every interval, and every total, encodes as
    fresh histograms recording the same values would; a tag that saw nothing in an interval is
    not in it (its line is absent from the log, as before)."""
    hists, total = HistogramSet(), {}
    for interval in intervals:
        for tag, batch in interval.items():
            hists.record(tag, np.array(batch, np.int64))
        finished = hists.roll(warmup=False)
        want = {}
        for tag, batch in interval.items():
            if batch:
                want[tag] = fresh(batch)
                total[tag] = total.get(tag, []) + batch
        assert {t: h.encode() for t, h in finished.items()} == {t: h.encode() for t, h in want.items()}
        hists.recycle(finished)
    assert {t: h.encode() for t, h in hists.total.items()} == {t: fresh(v).encode() for t, v in total.items()}


def fresh(batch):
    h = new_histogram()
    BulkRecorder(h).record(h, np.array(batch, np.int64))
    return h
