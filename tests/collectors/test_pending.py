"""The correlator's open-trace table (collectors/rings/pending.py) held to a plain-Python reference.

Random runs: point records of several rings and tick rows of a tick ring, for a pool of trace ids
small enough that records of one trace arrive in several batches and out of order (or, as a
writer sends them, a trace's records together), on shared and per-leg points (a shared point's
record naming any leg, which it ignores), stamped twice, with conflicting dimension values; closes
by final point (every leg's), by a tick ring's decision, by lingering, by the pending bound
(evictions) and forced. Every counter and
every row closed and measured (trace id, leg, stamps in pipeline order with its trace's shared
stamps, sources, arrival, stamped-twice, evicted, dimension values, the trace's own values) must be
exactly the reference's.
"""

import numpy as np
import pytest

from tickscope.collectors.rings.pending import PendingTable, _by_id, tick_tables

WIDTH, N_DIMS = 7, 2
PER_LEG = np.array([False, False, False, True, True, True, False])  # column 6: a late shared point
SINK = np.zeros(WIDTH, bool)
SINK[5] = True
ORDER = np.array([0, 1, 2, 6, 3, 4, 5], np.int64)  # pipeline order of the discovery-order columns
# (src value, columns, one record per trace): two point rings and one tick ring owning column 2
RINGS = [(1, np.array([0, 1]), False), (2, np.array([3, 4, 5, 6]), False), (3, np.array([1, 2]), True)]


class Reference:
    """The rules of the correlator's pending rows, one Python dict entry per (trace id, leg)."""

    def __init__(self):
        self.rows: dict[tuple[int, int], dict] = {}
        self.dup_stamps = self.conflicts = 0

    def add_points(self, ids, legs, cols, ts, dims, src, arrived_ns, rnd):
        batch: dict[tuple[int, int], dict] = {}
        for k in range(len(ids)):
            b = batch.setdefault((int(ids[k]), int(legs[k])), {"ts": {}, "hits": {}, "dims": {}})
            c = int(cols[k])
            b["hits"][c] = b["hits"].get(c, 0) + 1
            b["ts"][c] = int(ts[k])  # the last record's stamp
            for d in range(N_DIMS):
                if dims[k, d]:
                    b["dims"].setdefault(d, set()).add(int(dims[k, d]))
        parts = []
        for (i, leg), b in batch.items():
            self.dup_stamps += sum(h - 1 for h in b["hits"].values())
            self.conflicts += any(len(v) > 1 for v in b["dims"].values())
            row = np.zeros(WIDTH, np.int64)
            for c, v in b["ts"].items():
                row[c] = v
            d = np.array([max(b["dims"].get(j, {0})) for j in range(N_DIMS)], np.int32)
            parts.append(
                ((i, leg), row, np.where(row != 0, src, 0), d, any(h > 1 for h in b["hits"].values()))
            )
        self._merge(parts, arrived_ns, rnd)

    def add_rows(self, ids, legs, ts, src, dims, arrived_ns, rnd):
        parts = []
        for k in range(len(ids)):
            on_leg, on_trace = (ts[k, PER_LEG] != 0).any(), (ts[k, ~PER_LEG] != 0).any()
            if on_trace or not on_leg:
                parts.append(((int(ids[k]), -1), np.where(PER_LEG, 0, ts[k]), np.where(PER_LEG, 0, src[k]),
                              dims[k] * (not on_leg), False))  # fmt: skip
            if on_leg:
                parts.append(((int(ids[k]), int(legs[k])), np.where(PER_LEG, ts[k], 0), np.where(PER_LEG, src[k], 0),
                              dims[k], False))  # fmt: skip
        self._merge(parts, arrived_ns, rnd)

    def _merge(self, parts, arrived_ns, rnd):
        """Each key's parts of one batch and its open row join as one group."""
        groups: dict[tuple[int, int], list] = {}
        for key, ts, src, dims, dup in parts:
            arrived = int(ts.max()) if arrived_ns < 0 else arrived_ns
            groups.setdefault(key, []).append({"ts": ts, "src": src, "dims": dims, "dup": dup, "arrived": arrived,
                                               "round": rnd})  # fmt: skip
        for key, group in groups.items():
            if key in self.rows:
                group.insert(0, self.rows[key])
            present = sum((g["ts"] != 0).astype(int) for g in group)
            self.dup_stamps += int(np.clip(present - 1, 0, None).sum())
            values = [{int(g["dims"][d]) for g in group} - {0} for d in range(N_DIMS)]
            self.conflicts += any(len(v) > 1 for v in values)
            self.rows[key] = {
                "ts": np.max([g["ts"] for g in group], axis=0),
                "src": np.max([g["src"] for g in group], axis=0),
                "dims": np.max([g["dims"] for g in group], axis=0),
                "dup": any(g["dup"] for g in group) or bool((present > 1).any()),
                "arrived": max(g["arrived"] for g in group),
                "round": max(g["round"] for g in group),
            }

    def close(self, round_now, cutoff, force, max_pending):
        traces: dict[int, list] = {}
        for i, leg in self.rows:
            traces.setdefault(i, []).append(leg)
        closes, arrived = {}, {}
        declared = np.bincount(np.concatenate([cols for _, cols, _ in RINGS]), minlength=WIDTH)
        for i, legs in traces.items():
            rows = [self.rows[(i, leg)] for leg in legs]
            present = np.any([r["ts"] != 0 for r in rows], axis=0)
            srcs = {int(s) for r in rows for s in r["src"]}
            decided = any(tick and value in srcs and not present[[c for c in cols if declared[c] == 1]].all()
                          for value, cols, tick in RINGS)  # fmt: skip
            arrived[i] = max(r["arrived"] for r in rows)
            # final: a final point stamped, and by every leg that has a row (one leg's ack does
            # not close a trace while another leg's send may still come)
            legs_final = all(
                (r["ts"][SINK] != 0).any() for leg, r in zip(legs, rows, strict=True) if leg >= 0
            )
            final = present[SINK].any() and legs_final
            settled = (final or decided) and max(r["round"] for r in rows) < round_now
            closes[i] = force or settled or arrived[i] < cutoff
        evicted = set()
        overflow = 0 if force else len(traces) - sum(closes.values()) - max_pending
        if overflow > 0:
            evicted = set(
                sorted((i for i in traces if not closes[i]), key=lambda i: (arrived[i], i))[:overflow]
            )
        out = []
        for i in sorted(i for i in traces if closes[i] or i in evicted):
            rows = {leg: self.rows.pop((i, leg)) for leg in traces[i]}
            shared = rows.pop(-1, None)
            if not rows:  # no leg: the shared row is the trace
                rows, shared = {-1: shared}, None
            for leg in sorted(rows):
                r = rows[leg]
                ts, src, dims, arrived, dup = r["ts"], r["src"], r["dims"], r["arrived"], r["dup"]
                tdims = dims if leg < 0 else np.zeros(N_DIMS, np.int32)
                if shared is not None:  # a leg measured with its trace's shared stamps
                    ts = np.where(shared["ts"] != 0, shared["ts"], ts)
                    src = np.where(shared["ts"] != 0, shared["src"], src)
                    dims, tdims = np.where(dims != 0, dims, shared["dims"]), shared["dims"]
                    arrived, dup = max(arrived, shared["arrived"]), dup or shared["dup"]
                out.append((i, leg, ts[ORDER], src[ORDER], arrived, dup, i in evicted, dims, tdims))
        return out, max(overflow, 0)


@pytest.mark.parametrize("seed", range(40))
def test_pending_rows_close_exactly_as_the_reference(seed):
    rng = np.random.default_rng(seed)
    table, ref = PendingTable(), Reference()
    table.shape(WIDTH, N_DIMS)
    tick_of, tick_only = tick_tables(RINGS, WIDTH)
    n_ids = int(rng.choice([40, 400, 3000]))  # 3000: the table grows past its first capacity
    pool = rng.integers(0, 1 << 63, n_ids, dtype=np.uint64) | np.uint64(1 << 63)  # ids above 2^63 too
    clock, rnd = 1_000, 0
    for _ in range(int(rng.integers(5, 30))):
        clock += int(rng.integers(1, 500))
        arrived_ns = clock if rng.random() < 0.7 else -1  # -1: each row's newest stamp
        n = int(rng.integers(0, 300))
        ids = pool[rng.integers(0, n_ids, n)]
        dims = (rng.integers(0, 4, (n, N_DIMS)) * (rng.random((n, N_DIMS)) < 0.2)).astype(np.int32)
        if rng.random() < 0.6:  # a point ring's records
            value, cols, _ = RINGS[int(rng.integers(0, 2))]
            col = cols[rng.integers(0, cols.size, n)].astype(np.int64)
            named = rng.integers(0, 3, n).astype(np.int32)
            legs = np.where(PER_LEG[col], named, -1).astype(np.int32)
            ts = rng.integers(1, 1 << 40, n).astype(np.int64)
            if rng.random() < 0.5:  # each trace's records together, in writing order
                run = np.argsort(ids, kind="stable")
                ids, col, ts, dims, legs, named = (a[run] for a in (ids, col, ts, dims, legs, named))
            table.add_points(ids, named, col, ts, dims, value, arrived_ns, rnd, PER_LEG)
            ref.add_points(ids, legs, col, ts, dims, value, arrived_ns, rnd)
        else:  # the tick ring's rows, sometimes with per-leg stamps too
            ts = np.zeros((n, WIDTH), np.int64)
            for c in (1, 2, 3):
                ts[:, c] = rng.integers(1, 1 << 40, n) * (rng.random(n) < 0.8)
            src = np.where(ts != 0, 3, 0).astype(np.int16)
            legs = rng.integers(0, 3, n).astype(np.int32)
            table.add_rows(ids, legs, ts, src, dims, np.zeros(n, bool), arrived_ns, rnd, PER_LEG)
            ref.add_rows(ids, legs, ts, src, dims, arrived_ns, rnd)
        if rng.random() < 0.5:
            rnd += 1
        if rng.random() < 0.4:
            force = rng.random() < 0.1
            cutoff = clock - int(rng.integers(0, 2_000))
            max_pending = int(rng.choice([5, 50, 1 << 20]))
            *got, evicted = table.close(SINK, tick_of, tick_only, rnd, cutoff, force, max_pending, ORDER)
            want, want_evicted = ref.close(rnd, cutoff, force, max_pending)
            assert evicted == want_evicted
            assert got[0].size == len(want)
            for k, name in enumerate(
                ("ids", "legs", "stamps", "sources", "arrived", "dup", "evicted", "dims", "tdims")
            ):
                expect = np.array([w[k] for w in want]).reshape(got[k].shape)
                assert np.array_equal(got[k], expect), name
        assert (table.duplicate_stamps, table.dimension_conflicts) == (ref.dup_stamps, ref.conflicts)
        assert table.rows == len(ref.rows)
    *got, _ = table.close(SINK, tick_of, tick_only, rnd + 1, 0, True, 0, ORDER)
    want, _ = ref.close(rnd + 1, 0, True, 0)
    assert got[0].tolist() == [w[0] for w in want] and table.rows == 0


def test_a_wider_schema_keeps_the_rows_held():
    """Columns and dimensions declared while rows are open (a ring found mid-run) widen them in place."""
    table = PendingTable()
    table.shape(2, 0)
    per_leg = np.zeros(2, bool)
    table.add_points(np.array([5], np.uint64), np.array([-1], np.int32), np.array([0], np.int64),
                     np.array([100], np.int64), np.zeros((1, 0), np.int32), 1, 7, 0, per_leg)  # fmt: skip
    table.shape(3, 1)
    per_leg = np.zeros(3, bool)
    table.add_points(np.array([5], np.uint64), np.array([-1], np.int32), np.array([2], np.int64),
                     np.array([300], np.int64), np.array([[4]], np.int32), 2, 8, 0, per_leg)  # fmt: skip
    sink = np.array([False, False, True])
    no_tick, only = tick_tables([], 3)
    ids, legs, C, S, arrived, dup, evict, dims, tdims, evicted = table.close(
        sink, no_tick, only, 1, 0, False, 10, np.array([0, 1, 2], np.int64)
    )
    assert ids.tolist() == [5] and C.tolist() == [[100, 0, 300]] and S.tolist() == [[1, 0, 2]]
    assert dims.tolist() == [[4]] and arrived.tolist() == [8] and not dup.any() and evicted == 0


@pytest.mark.parametrize("shape", ["dense", "two ranges", "sparse", "extreme"])
def test_closed_traces_are_ordered_by_id_whatever_their_spread(shape):
    """The radix order (the bytes in which all ids agree skipped) is the ids' sorted order, for
    one writer's sequence, two writers' ranges far apart, ids at random and both ends of the id
    space (ids are distinct: one per open trace)."""
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 9, 1000, 20_000):
        if shape == "dense":  # sequence numbers, some closed later
            ids = rng.permutation(np.arange(5, 5 + 2 * n, dtype=np.uint64))[:n]
        elif shape == "two ranges":
            ids = np.concatenate((np.arange(1, 1 + n // 2, dtype=np.uint64),
                                  np.arange(1 << 40, (1 << 40) + n - n // 2, dtype=np.uint64)))  # fmt: skip
            rng.shuffle(ids)
        elif shape == "sparse":
            ids = np.unique(rng.integers(0, 10**9, n, dtype=np.uint64))
            rng.shuffle(ids)
        else:  # both ends of the id space
            ids = np.unique(np.concatenate((np.arange(n // 2, dtype=np.uint64),
                                            np.uint64(2**64 - 1) - np.arange(n - n // 2, dtype=np.uint64))))  # fmt: skip
            rng.shuffle(ids)
        order = _by_id(ids)
        assert np.array_equal(ids[order], np.sort(ids)), (shape, n)
