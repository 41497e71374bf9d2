"""Per-dimension slicing, tail attribution and HDR bucketing done for all values of a flush at once
(compiled kernels), against plain-Python references row by row: every tag's histogram
bit-identical to hdrh's ``record_value`` of that tag's values, per value row counts, and per value
the attribution's bucket sums, tails and exact medians."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickscope.collectors.rings.attribution import TailAttribution
from tickscope.collectors.rings.collector import HistogramSet
from tickscope.collectors.rings.correlate import NOT_TAKEN, TICK_TO_DECISION, TICK_TO_TRADE
from tickscope.collectors.rings.slices import DimensionSlices
from tickscope.collectors.session.dimensions import dimension_tag
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, percentile_rank

LAYOUT = new_histogram()
TRADE, TICK = ["risk", "send"], ["feed", "book"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 70 * 10**9), st.integers(-1, 4)), max_size=300), st.integers(1, 5))
def test_grouped_recording_is_record_value_per_group(pairs, n_groups):
    """Values of many histograms in one pass: each as hdrh records its own values one by one;
    group -1 records nowhere, and only values of a group count as out of range."""
    values = np.array([v for v, _ in pairs], np.int64)
    group = np.array([min(g, n_groups - 1) for _, g in pairs], np.int64)
    ours = [new_histogram() for _ in range(n_groups)]
    rejected = BulkRecorder(LAYOUT).record_groups(values, group, n_groups, lambda g: ours[g])
    want, out = [new_histogram() for _ in range(n_groups)], 0
    for v, g in zip(values.tolist(), group.tolist(), strict=True):
        if g < 0:
            continue
        if 0 <= v <= LAYOUT.highest_trackable_value:
            want[g].record_value(v)
        else:
            out += 1
    assert rejected == out
    assert [h.encode() for h in ours] == [h.encode() for h in want]
    assert [(h.total_count, h.min_value, h.max_value) for h in ours if h.total_count] == [
        (h.total_count, h.min_value, h.max_value) for h in want if h.total_count
    ]


def flush(rng, n, n_values):
    """One flush of rows (some traded, some legs without a symbol) and of ticks."""
    dims = rng.integers(0, n_values + 1, size=(n, 2)).astype(np.int32)  # 0: no value
    traded = rng.random(n) < 0.7
    t2t = np.where(traded, rng.integers(1, 5 * 10**6, n), -1)
    t2d = np.where(rng.random(n) < 0.5, rng.integers(1, 10**6, n), -1)
    spans = rng.integers(0, 10**6, size=(int(traded.sum()), len(TRADE + TICK)))  # every trade stage
    spans[rng.random(spans.shape) < 0.2] = NOT_TAKEN  # off the path the trace took
    spans[rng.random(spans.shape) < 0.05] = 0  # two points stamped at once: a 0 ns sample
    ticks = {"dims": rng.integers(0, n_values + 1, size=(n // 2, 1)).astype(np.int32),
             "spans": np.where(rng.random((n // 2, len(TICK))) < 0.1, NOT_TAKEN,
                               rng.integers(0, 10**5, (n // 2, len(TICK))))}  # fmt: skip
    rows = {"trace": np.arange(n), "leg": np.zeros(n, np.int64), "dims": dims,
            "tick_to_trade": t2t, "tick_to_decision": t2d}  # fmt: skip
    return rows, spans, ticks


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 5), st.integers(1, 3))
def test_slices_and_attribution_equal_a_row_by_row_reference(seed, flushes, n_values, cap):
    rng = np.random.default_rng(seed)
    names = {"symbol": [f"s{i}" for i in range(n_values)], "venue": [f"v{i}" for i in range(n_values)]}
    slices, hists = DimensionSlices(cap=cap, combinations=[("symbol", "venue")]), HistogramSet()
    want: dict[str, list[int]] = {}  # tag -> its values, row by row
    rows_of: dict[tuple, dict] = {}  # (slicing, key) -> rows counted
    trades: dict[tuple[tuple, str], list] = {}  # (slicing, label) -> its traded rows (t2t, spans)
    for _ in range(flushes):
        rows, spans, ticks = flush(rng, int(rng.integers(1, 400)), n_values)
        slices.add(hists, rows, spans, TRADE + TICK, names, False, LAYOUT, ticks, TICK)
        traded_at = np.cumsum(rows["tick_to_trade"] >= 0) - 1
        for sdims, sl in slices.slicings.items():

            def label(key, sdims=sdims, sl=sl):
                return dimension_tag(
                    "", {d: sl.label[key] or names[d][v - 1] for d, v in zip(sdims, key, strict=True)}
                )

            cols = [list(names).index(d) for d in sdims]
            for i in range(rows["dims"].shape[0]):
                key = tuple(int(rows["dims"][i, c]) for c in cols)
                if 0 in key:
                    continue
                rows_of[sdims, key] = rows_of.get((sdims, key), 0) + 1
                lab, t2t = label(key), int(rows["tick_to_trade"][i])
                if t2t >= 0:
                    mine = spans[traded_at[i]]
                    want.setdefault(TICK_TO_TRADE + lab, []).append(t2t)
                    every = [int(s) for s in mine]
                    for stage, s in zip(
                        TRADE, every, strict=False
                    ):  # per order: the stages after the fan-out
                        if s != NOT_TAKEN:
                            want.setdefault(stage + lab, []).append(s)
                    trades.setdefault((sdims, lab), []).append((t2t, every))
                if rows["tick_to_decision"][i] >= 0:
                    want.setdefault(TICK_TO_DECISION + lab, []).append(int(rows["tick_to_decision"][i]))
            if max(cols) < ticks["dims"].shape[1]:
                for i in range(ticks["dims"].shape[0]):
                    key = tuple(int(ticks["dims"][i, c]) for c in cols)
                    if 0 not in key:
                        for stage, s in zip(TICK, ticks["spans"][i].tolist(), strict=True):
                            if s != NOT_TAKEN:
                                want.setdefault(stage + label(key), []).append(s)
    expected = {}
    for tag, vals in want.items():
        expected[tag] = new_histogram()
        for v in vals:
            expected[tag].record_value(v)
    got = {t: h for t, h in hists.interval.items() if h.total_count}
    assert sorted(got) == sorted(expected)
    assert all(got[t].encode() == expected[t].encode() for t in got)
    assert {(d, k): n for d, sl in slices.slicings.items() for k, n in sl.rows.items()} == rows_of
    for (sdims, lab), traded in trades.items():
        sl = slices.slicings[sdims]
        check_attribution(sl.attribution.summary(sl.slot[lab]), traded)


def check_attribution(got, traded):
    """summary() of one value's orders against its rows: tails by rank, exact sums and medians."""
    t2t = sorted(t for t, _ in traded)
    assert got["traces"] == len(traded)
    for key, pct in (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9)):
        at = t2t[int(percentile_rank(pct, len(t2t))) - 1]
        low = LAYOUT.get_lowest_equivalent_value(at)
        tail = [(t, s) for t, s in traded if t >= low]
        want = got["tails"][key]
        assert (want["threshold_ns"], want["traces"]) == (low, len(tail))
        assert want["median"]["method"] == "exact"
        for j, stage in enumerate(TRADE + TICK):
            took = [(s[j], sum(max(x, 0) for x in s)) for _, s in tail if s[j] != NOT_TAKEN]
            row = want["stages"][stage]
            assert (row["taken"], row["sum_ns"]) == (len(took), sum(s for s, _ in took))
            shares = sorted(s / total if total else 0.0 for s, total in took)
            median = shares[math.ceil(len(shares) / 2) - 1] if shares else 0.0
            assert row["median_share"] == round(median, 6)
            mean = sum(s / total if total else 0.0 for s, total in took) / len(tail)
            assert abs(row["mean_share"] - round(mean, 6)) <= 1e-6


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6))
def test_a_population_s_sample_and_slowest_do_not_depend_on_batching_or_other_populations(seed, parts):
    """The reservoir's draw for a population's i-th trace depends on (seed, population, i) only."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    spans = rng.integers(0, 10**6, size=(n, 2))
    t2t, slot = spans.sum(axis=1), rng.integers(0, 3, n)
    whole, split = (TailAttribution(["a", "b"], LAYOUT, keep_slowest=50, reservoir=100) for _ in range(2))
    alone = TailAttribution(["a", "b"], LAYOUT, keep_slowest=50, reservoir=100)
    whole.add(spans, t2t, slot)
    for part in np.array_split(np.arange(n), parts):
        split.add(spans[part], t2t[part], slot[part])
    mine = slot == 1
    alone.add(spans[mine], t2t[mine], np.where(mine[mine], 1, -1))  # slot 1 only, same numbering
    for s in range(3):
        assert np.array_equal(whole.sampled(s), split.sampled(s))
        assert sorted(whole.slowest(s)[:, 0]) == sorted(split.slowest(s)[:, 0])
        assert sorted(whole.slowest(s)[:, 0]) == sorted(t2t[slot == s])[-50:]
    assert np.array_equal(whole.sampled(1), alone.sampled(1))
