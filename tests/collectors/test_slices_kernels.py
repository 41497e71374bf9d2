"""Per-dimension slicing, tail attribution and HDR bucketing done for all values of a flush at once
(compiled kernels), against plain-Python references row by row: every tag's histogram
bit-identical to hdrh's ``record_value`` of that tag's values, per value row counts, and per value
the attribution's bucket sums, tails and exact medians."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickscope.collectors.rings.attribution import RESERVOIR, VALUE_RESERVOIR, TailAttribution, kernels
from tickscope.collectors.rings.collector import HistogramSet
from tickscope.collectors.rings.correlate import NOT_TAKEN, TICK_TO_DECISION, TICK_TO_TRADE
from tickscope.collectors.rings.slices import DimensionSlices, KeyIndex
from tickscope.collectors.session.dimensions import OTHER, dimension_tag
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, percentile_rank

LAYOUT = new_histogram()
TRADE, TICK = ["risk", "send"], ["feed", "book"]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 300), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4))
def test_a_table_of_samples_records_as_record_value_per_histogram(seed, n, columns, slicings, labels):
    """A rows x columns table in one pass: cell (i, c) into histogram (label[i, s], column c) for
    every slicing s that labels row i, each histogram as hdrh records its own values one by one; a
    label -1 and an absent cell (NOT_TAKEN here) record nowhere, and a cell out of range counts once
    per histogram it was for."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 70 * 10**9, (n, columns))
    kind = rng.random(values.shape)
    values[kind < 0.3] = rng.integers(0, 100, values.shape)[kind < 0.3]  # a few buckets, many repeats
    values[kind < 0.15] = -2  # negative but present: out of range
    values[kind < 0.1] = NOT_TAKEN
    label = rng.integers(-1, labels, (n, slicings))
    stride = columns + 1
    column_group = rng.permutation(stride)[:columns]
    ours = [new_histogram() for _ in range(labels * stride)]
    rejected = BulkRecorder(LAYOUT).record_groups(values, label, column_group, stride, len(ours), lambda g: ours[g],
                                                  (NOT_TAKEN, NOT_TAKEN))  # fmt: skip
    want, out = [new_histogram() for _ in ours], 0
    for i in range(n):
        for s in range(slicings):
            for c in range(columns):
                v, g = int(values[i, c]), int(label[i, s]) * stride + int(column_group[c])
                if label[i, s] < 0 or v == NOT_TAKEN:
                    continue
                if v < 0 or not want[g].record_value(v):  # hdrh refuses values beyond its last bucket
                    out += 1
    assert rejected == out
    assert [h.encode() for h in ours] == [h.encode() for h in want]
    assert [(h.total_count, h.min_value, h.max_value) for h in ours] == [
        (h.total_count, h.min_value, h.max_value) for h in want
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31), st.integers(1, 3), st.sampled_from([1, 4, 1 << 20]), st.sampled_from([1, 1 << 22])
)
def test_value_tuples_get_ids_in_order_of_first_sight_by_lookup_table_or_sorted_search(
    seed, width, dense, wide
):
    """Ids of value tuples, batch after batch with values interned in between (the packing grows):
    a tuple holding a 0 is -1, a new one -2 until added, a known one its id, as a dict says, whether
    a dense table, a sorted search or (packings past int64: ``wide`` value ids) a dict finds them."""
    rng = np.random.default_rng(seed)
    index, known, top = KeyIndex(width, dense_keys=dense), {}, rng.integers(1, 4, width)
    for _ in range(int(rng.integers(1, 6))):
        top = top + rng.integers(0, 40, width) * (rng.random(width) < 0.3)  # values interned meanwhile
        cols = rng.integers(0, top + 1, (int(rng.integers(0, 60)), width))
        ids = index.ids(cols, (top + 1) * wide)
        want = [-1 if 0 in k else known.get(k, -2) for k in map(tuple, cols.tolist())]
        assert ids.tolist() == want
        fresh = sorted({k for k, i in zip(map(tuple, cols.tolist()), want, strict=True) if i == -2})
        if fresh:
            assert index.add(np.array(fresh)).tolist() == list(range(len(known), len(known) + len(fresh)))
            known.update({k: len(known) + j for j, k in enumerate(fresh)})
        assert index.ids(cols, (top + 1) * wide).tolist() == [
            -1 if 0 in k else known[k] for k in map(tuple, cols.tolist())
        ]


def flush(rng, n, n_values):
    """One flush of rows (some traded, some legs without a symbol) and of ticks; ``n_values``: the
    values of each dimension (a number, or one per dimension)."""
    tops = np.broadcast_to(np.asarray(n_values), (2,))
    dims = rng.integers(0, tops + 1, size=(n, 2)).astype(np.int32)  # 0: no value
    traded = rng.random(n) < 0.7
    t2t = np.where(traded, rng.integers(1, 5 * 10**6, n), -1)
    t2d = np.where(rng.random(n) < 0.5, rng.integers(1, 10**6, n), -1)
    spans = rng.integers(0, 10**6, size=(int(traded.sum()), len(TRADE + TICK)))  # every trade stage
    spans[rng.random(spans.shape) < 0.2] = NOT_TAKEN  # off the path the trace took
    spans[rng.random(spans.shape) < 0.05] = 0  # two points stamped at once: a 0 ns sample
    ticks = {"dims": rng.integers(0, tops[0] + 1, size=(n // 2, 1)).astype(np.int32),
             "spans": np.where(rng.random((n // 2, len(TICK))) < 0.1, NOT_TAKEN,
                               rng.integers(0, 10**5, (n // 2, len(TICK))))}  # fmt: skip
    rows = {"trace": np.arange(n), "leg": np.zeros(n, np.int64), "dims": dims,
            "tick_to_trade": t2t, "tick_to_decision": t2d}  # fmt: skip
    return rows, spans, ticks


class Placing:
    """The reference of which values get their own histograms, one slicing's, value by value: the
    warm-up's most frequent first (ties: first seen first), then first come while the cap leaves
    room, the rest under OTHER; warm-up rows counted apart, warm-up ticks not at all."""

    def __init__(self, cap):
        self.cap, self.warm, self.rows, self.ticks, self.label = cap, {}, {}, {}, {}
        self.chosen = False

    def count(self, keys, warmup, ticks):
        keys = [k for k in keys if 0 not in k]
        if warmup:
            if not ticks:
                for k in sorted(set(keys)):  # first seen: by flush, then by value
                    self.warm.setdefault(k, 0)
                for k in keys:
                    self.warm[k] += 1
            return
        if not self.chosen:
            self.chosen = True
            for k in sorted(self.warm, key=lambda k: -self.warm[k])[: self.cap]:
                self.label[k] = None
        for k in sorted(set(keys)):
            if k not in self.label:
                self.label[k] = None if list(self.label.values()).count(None) < self.cap else OTHER
        into = self.ticks if ticks else self.rows
        for k in keys:
            into[k] = into.get(k, 0) + 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 4), st.integers(0, 2), st.integers(1, 5), st.integers(1, 3))
def test_slices_and_attribution_equal_a_row_by_row_reference(seed, flushes, warm, n_values, cap):
    """Every slicing of every flush at once against a value-by-value reference: which values get
    their own histograms (through a warm-up, values interned between flushes, the cap), every tag's
    histogram, the counts, and per label its orders' attribution and the rows its reservoir holds
    (each population's in arrival order)."""
    rng = np.random.default_rng(seed)
    names = {"symbol": [f"s{i}" for i in range(n_values)], "venue": [f"v{i}" for i in range(n_values)]}
    slices, hists = DimensionSlices(cap=cap, combinations=[("symbol", "venue")]), HistogramSet()
    placing = {d: Placing(cap) for d in [("symbol",), ("venue",), ("symbol", "venue")]}
    want: dict[str, list[int]] = {}  # tag -> its values, row by row
    trades: dict[str, list] = {}  # label -> its traded rows (t2t, spans), in arrival order
    for f in range(warm + flushes):
        warmup = f < warm
        rows, spans, ticks = flush(rng, int(rng.integers(1, 400)), [len(v) for v in names.values()])
        slices.add(hists, rows, spans, TRADE + TICK, names, warmup, LAYOUT, ticks, TICK)
        traded_at = np.cumsum(rows["tick_to_trade"] >= 0) - 1
        for sdims, ref in placing.items():
            cols = [list(names).index(d) for d in sdims]
            keys = [tuple(int(v) for v in r) for r in rows["dims"][:, cols]]
            tick_keys = [tuple(int(v) for v in r) for r in ticks["dims"][:, cols]] if max(cols) < 1 else []
            ref.count(keys, warmup, False)
            ref.count(tick_keys, warmup, True)
            if warmup:
                continue

            def label(key, sdims=sdims, ref=ref):
                return dimension_tag(
                    "", {d: ref.label[key] or names[d][v - 1] for d, v in zip(sdims, key, strict=True)}
                )

            for i, key in enumerate(keys):
                if 0 in key:
                    continue
                lab, t2t = label(key), int(rows["tick_to_trade"][i])
                if t2t >= 0:
                    every = [int(s) for s in spans[traded_at[i]]]
                    want.setdefault(TICK_TO_TRADE + lab, []).append(t2t)
                    for stage, s in zip(
                        TRADE, every, strict=False
                    ):  # per order: the stages after the fan-out
                        if s != NOT_TAKEN:
                            want.setdefault(stage + lab, []).append(s)
                    trades.setdefault(lab, []).append((t2t, every))
                if rows["tick_to_decision"][i] >= 0:
                    want.setdefault(TICK_TO_DECISION + lab, []).append(int(rows["tick_to_decision"][i]))
            for i, key in enumerate(tick_keys):
                if 0 not in key:
                    for stage, s in zip(TICK, ticks["spans"][i].tolist(), strict=True):
                        if s != NOT_TAKEN:
                            want.setdefault(stage + label(key), []).append(s)
        for d in names:  # values interned between flushes: ids beyond every packing so far
            names[d] += [
                f"{d}{len(names[d]) + j}" for j in range(int(rng.integers(0, 3)) * int(rng.random() < 0.4))
            ]
    expected = {}
    for tag, vals in want.items():
        expected[tag] = new_histogram()
        for v in vals:
            expected[tag].record_value(v)
    got = {t: h for t, h in hists.interval.items() if h.total_count}
    assert sorted(got) == sorted(expected)
    assert all(got[t].encode() == expected[t].encode() for t in got)
    for sdims, ref in placing.items():
        sl = slices.slicings[sdims]
        assert (sl.rows, sl.warm, sl.ticks) == (ref.rows, ref.warm, ref.ticks)
        assert list(sl.label.items()) == list(ref.label.items())  # placed in the same order
    for lab, traded in trades.items():
        check_attribution(slices.attribution_of(lab), traded)
        held = slices.attribution.sampled(slices.population(lab))
        assert held.tolist() == [[t, *s] for t, s in traded]


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


def uniform(seed, s, i):
    """The reservoir's draw (splitmix64 of seed, population number, trace number), in plain Python."""
    m = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + s * 0xD1B54A32D192ED03) & m
    z = (z + i * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return (z >> 11) * (1.0 / 9007199254740992.0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 5), st.integers(1, 40), st.integers(1, 60))
def test_every_population_of_every_slicing_keeps_what_a_reference_keeps(
    seed, slicings, parts, keep, reservoir
):
    """Rows in a population per slicing at once, in batches: each population's reservoir is
    Algorithm R over its own rows in arrival order, with draws from (seed, the number its owner
    gave it, i), of the size it was opened with (each slicing's its own: the collector's and a
    value's differ); its slowest are its rows' slowest; its sums are its rows'."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 1500))
    spans = rng.integers(0, 10**6, size=(n, 2))
    spans[rng.random(spans.shape) < 0.2] = NOT_TAKEN
    t2t = np.maximum(spans, 0).sum(axis=1)
    populations = 4 * slicings
    slot = rng.integers(-1, 4, (n, slicings))
    slot = np.where(slot >= 0, slot + 4 * np.arange(slicings), -1)  # each slicing its own populations
    att = TailAttribution(["a", "b"], LAYOUT, keep_slowest=keep, reservoir=reservoir, seed=seed % 1000)
    number = rng.permutation(populations)
    size = [reservoir + 7 * (p // 4) for p in range(populations)]
    for j in range(slicings):
        opened = att.open(4, None if j == 0 else size[4 * j], number[4 * j : 4 * j + 4])
        assert opened.tolist() == list(range(4 * j, 4 * j + 4))
    for part in np.array_split(np.arange(n), parts):
        att.add(spans[part], t2t[part], slot[part])
    for p in range(populations):
        mine = [i for i in range(n) if p in slot[i]]
        pool: list[list[int]] = []
        for k, i in enumerate(mine):
            row = [int(t2t[i]), *map(int, spans[i])]
            if k < size[p]:
                pool.append(row)
            elif (j := int(uniform(seed % 1000, int(number[p]), k) * (k + 1))) < size[p]:
                pool[j] = row
        assert att.sampled(p).tolist() == pool
        assert sorted(att.slowest(p)[:, 0].tolist()) == sorted(t2t[mine].tolist())[-keep:]
        assert att.count[p].sum() == len(mine)
        assert np.array_equal(
            att.span_sum[p].sum(axis=0), np.where(spans[mine] >= 0, spans[mine], 0).sum(axis=0)
        )


def settled(held: list[list[int]], keep: int) -> tuple[list[list[int]], int | None]:
    """The slowest's settle in plain Python: the ``keep`` slowest rows by tick-to-trade (column 0),
    in the order held, of rows tied at the cut the first held; and the cut (None: nothing to drop)."""
    if len(held) <= keep:
        return held, None
    cut = sorted(r[0] for r in held)[len(held) - keep]
    ties = keep - sum(r[0] > cut for r in held)
    kept = []
    for r in held:
        if r[0] > cut or (r[0] == cut and ties > 0):
            ties -= r[0] == cut
            kept.append(r)
    return kept, cut


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 12), st.integers(1, 5), st.sampled_from([3, 40, 10**6]))
def test_the_slowest_are_held_above_a_floor_and_settled_as_a_reference_settles(seed, keep, parts, spread):
    """Each population's slowest, offered in batches: a row is held only if slower than the
    population's floor; a full region (keep + keep // 2 rows) settles to its ``keep`` slowest, the
    floor rising to the cut. Held rows and floor equal a plain-Python run of the same rule, ties
    included (a small ``spread``: most rows tie), and ``slowest`` is exactly the keep slowest."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    spans = rng.integers(0, spread, size=(n, 2))
    t2t, slot = spans.sum(axis=1), rng.integers(-1, 3, n)
    att = TailAttribution(["a", "b"], LAYOUT, keep_slowest=keep, reservoir=5)
    for part in np.array_split(np.arange(n), parts):
        att.add(spans[part], t2t[part], slot[part])
    room = keep + max(keep // 2, 1)
    for p in range(3):
        held, floor = [], None
        for i in np.flatnonzero(slot == p).tolist():
            row = [int(t2t[i]), *map(int, spans[i])]
            if floor is not None and row[0] <= floor:
                continue
            if len(held) == room:
                held, floor = settled(held, keep)
                if row[0] <= floor:
                    continue
            held.append(row)
        if p < att._slow_n.size:
            assert att._slow[p, : att._slow_n[p]].tolist() == held
            assert att._floor[p] == (np.iinfo(np.int64).min if floor is None else floor)
        kept = settled(held, keep)[0]
        assert att.slowest(p).tolist() == kept
        assert sorted(r[0] for r in kept) == sorted(t2t[slot == p].tolist())[-keep:]


def test_a_dimension_values_reservoir_holds_value_reservoir_orders_and_its_medians_say_sampled():
    """Each value of a slicing is a population with its own reservoir: VALUE_RESERVOIR orders
    (memory per value bounded however long the run and however many values), fewer than the
    collector's own RESERVOIR; a tail beyond the slowest kept takes its medians from it."""
    assert VALUE_RESERVOIR < RESERVOIR
    rng = np.random.default_rng(3)
    slices, hists = DimensionSlices(cap=4), HistogramSet()
    names = {"symbol": ["s1"], "venue": ["v1"]}
    orders = 0
    while orders <= 3 * VALUE_RESERVOIR:
        rows, spans, ticks = flush(rng, 4000, 1)
        rows["dims"][:] = 1  # every row of the one symbol and the one venue
        slices.add(hists, rows, spans, TRADE + TICK, names, False, LAYOUT, ticks, TICK)
        orders += int((rows["tick_to_trade"] >= 0).sum())
    att = slices.attribution
    for slot in range(2):  # symbol=s1 and venue=v1
        assert att.sampled(slot).shape[0] == VALUE_RESERVOIR
    summary = slices.summary(names, {})["symbol"]["values"]["s1"]["attribution"]
    assert summary["traces"] == orders and summary["tails"]["p50"]["median"]["method"] == "sampled"
    assert 0 < summary["tails"]["p50"]["median"]["samples"] <= VALUE_RESERVOIR


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1, 3, 6, 9]), st.integers(1, 4))
def test_the_sums_of_any_stage_count_equal_a_row_by_row_reference(seed, stages, parts):
    """For any stage count, per population and bucket, the traces, span sums, traces that did not
    take a stage and share sums equal a row-by-row reference, the share sums bit for bit (added in
    arrival order), however the rows were batched."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 600))
    spans = rng.integers(0, 10**5, size=(n, stages))
    spans[rng.random(spans.shape) < 0.15] = NOT_TAKEN
    t2t = np.maximum(spans, 0).sum(axis=1)
    slot = rng.integers(-1, 3, (n, 2))
    slot = np.where(slot >= 0, slot + 3 * np.arange(2), -1)  # each column its own populations
    att = TailAttribution([f"s{j}" for j in range(stages)], LAYOUT, keep_slowest=5, reservoir=7)
    for part in np.array_split(np.arange(n), parts):
        att.add(spans[part], t2t[part], slot[part])
    layout = BulkRecorder(LAYOUT)
    for p in range(att.slots):
        count, span_sum, not_taken = (np.zeros((layout.counts_len, w), np.int64) for w in (1, stages, stages))
        share_sum = np.zeros((layout.counts_len, stages))
        for i in np.flatnonzero((slot == p).any(axis=1)):
            b = LAYOUT._counts_index_for(int(t2t[i]))
            total = int(np.maximum(spans[i], 0).sum())
            count[b] += 1
            for j, s in enumerate(spans[i].tolist()):
                if s == NOT_TAKEN:
                    not_taken[b, j] += 1
                else:
                    span_sum[b, j] += s
                    share_sum[b, j] += s / total if total else 0.0
        assert np.array_equal(att.count[p], count[:, 0])
        assert np.array_equal(att.span_sum[p], span_sum)
        assert np.array_equal(att.taken(p, np.arange(layout.counts_len)), count - not_taken)
        assert np.array_equal(att.share_sum[p].view(np.int64), share_sum.view(np.int64))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 20_000), st.sampled_from([2, 50, 10**6, 2**62]), st.floats(0, 1))
def test_the_settles_cut_is_the_exact_ranked_key(seed, n, spread, at):
    """The settle's cut (a sampled bracket, then a partition of the keys in it) is the m-th least
    key exactly, ties (a small spread) and sorted or reversed arrival included."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(-spread, spread, n)
    if seed % 3:
        keys = np.sort(keys)[:: 1 if seed % 3 == 1 else -1].copy()
    m = min(int(at * n), n - 1)
    assert kernels()._ranked(keys, m) == np.sort(keys)[m]
