"""The late index (collectors/rings/late_index.py) held to a plain-Python reference.

Random runs of adds (some rows only, some columns only, in pipeline order; widths and dimensions
that grow), takes (removing or only reading), and expiries by the horizon and by the size bound,
over a pool of keys small enough that one (trace id, leg) is held several times and entries are
taken, expired and added again while the index's ring wraps, doubles and renumbers. Every answer (found, stamps,
sources, time added, dimension values), every length and every expired count must be exactly the
reference's: oldest entry first, per key and for expiry.
"""

import numpy as np
import pytest

from tickscope.collectors.rings.late_index import LateIndex

IDS = np.array([1, 2, 3, 1 << 40, (1 << 64) - 1, 77, 78], np.uint64)


class Reference:
    """The index's rules as a list of entries, oldest first."""

    def __init__(self, horizon_ns, max_entries):
        self.horizon_ns, self.max_entries = horizon_ns, max_entries
        self.entries: list[dict] = []
        self.expired = 0
        self.kept: set[int] = set()  # every column an entry was ever added with: all an entry stores

    def add(self, ids, ts, src, added, legs, dims, rows, order, keep):
        self.kept |= {int(c) for c in order[keep]} if len(rows) else set()
        for r in rows:
            width = int(order.max()) + 1
            e_ts, e_src = [0] * width, [0] * width
            for j in range(ts.shape[1]):
                if keep[j]:
                    e_ts[order[j]], e_src[order[j]] = int(ts[r, j]), int(src[r, j])
            self.entries.append({"key": (int(ids[r]), int(legs[r])), "ts": e_ts, "src": e_src,
                                 "added": int(added[r]), "dims": [int(v) for v in dims[r]]})  # fmt: skip

    def take(self, ids, legs, width, n_dims, keep):
        out = []
        for trace, leg in zip(ids.tolist(), legs.tolist(), strict=True):
            hit = next((e for e in self.entries if e["key"] == (trace, leg)), None)
            if hit is None:
                out.append((False, [0] * width, [0] * width, 0, [0] * n_dims))
                continue
            pad = width - len(hit["ts"])
            out.append((True, (hit["ts"] + [0] * pad)[:width], (hit["src"] + [0] * pad)[:width], hit["added"],
                        (hit["dims"] + [0] * n_dims)[:n_dims]))  # fmt: skip
            if not keep:
                self.entries.remove(hit)
        return out

    def expire(self, now_ns):
        cutoff = now_ns - self.horizon_ns
        while self.entries and (self.entries[0]["added"] < cutoff or len(self.entries) > self.max_entries):
            self.entries.pop(0)
            self.expired += 1


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("shape", ["churn", "ring", "burst"])
def test_late_index_answers_exactly_as_the_reference(seed, shape):
    """``churn``: short horizons, entries expire by time. ``ring``: the size bound decides, over
    more adds than the arrays hold, so the ring wraps, doubles with its entries in place, and
    numbers them anew when takes have left holes. ``burst``: a small bound, so positions run far
    past the arrays' size, then now and then a burst that grows them 4x or more at once."""
    rng = np.random.default_rng(seed)
    if shape == "churn":
        horizon, bound, add_max = int(rng.integers(5, 60)), int(rng.integers(20, 1500)), 120
    elif shape == "ring":
        horizon, bound, add_max = 1 << 40, int(rng.integers(100, 1200)), 300
    else:
        horizon, bound, add_max = 1 << 40, int(rng.integers(1, 100)), 60
    index, ref = LateIndex(horizon, bound), Reference(horizon, bound)
    wrapped = False
    # a few keys held many times, or many (runs of ids in sequence, ids far apart) filling the hash
    pool = IDS if seed % 2 else np.concatenate((IDS, np.arange(1000, 1600, dtype=np.uint64),
                                                 rng.integers(0, 1 << 63, 300).astype(np.uint64) << np.uint64(1)))  # fmt: skip
    width, n_dims, now = 3, 1, 0
    for _ in range(int(rng.integers(20, 80) if shape == "churn" else rng.integers(150, 250))):
        now += int(rng.integers(0, 4))
        op = rng.random()
        if op < 0.5:
            if rng.random() < 0.1:
                width += 1
            if rng.random() < 0.05:
                n_dims += 1
            # now and then a burst of several times what the ring holds: it grows 4x or more at once
            n = int(rng.integers(0, add_max if rng.random() > 0.05 else 12 * add_max))
            ids, legs = rng.choice(pool, n), rng.integers(-1, 3, n).astype(np.int32)
            ts = rng.integers(0, 1 << 62, (n, width)) * (rng.random((n, width)) < 0.7)
            src = rng.integers(1, 5, (n, width)).astype(np.int16)
            added = now - rng.integers(0, 3, n)
            dims = rng.integers(0, 9, (n, n_dims)).astype(np.int32)
            rows = np.flatnonzero(rng.random(n) < 0.8)
            order = rng.permutation(width).astype(np.int64)
            keep = rng.random(width) < 0.8
            index.add(ids, ts, src, added, legs, dims, rows=rows, order=order, keep=keep)
            ref.add(ids, ts, src, added, legs, dims, rows, order, keep)
        elif op < 0.85:
            n = int(rng.integers(0, 40))
            ids, legs = rng.choice(pool, n), rng.integers(-1, 3, n).astype(np.int32)
            ask_width, ask_dims, keep = (
                width + int(rng.integers(-1, 2)),
                n_dims + int(rng.integers(-1, 2)),
                rng.random() < 0.3,
            )
            found, ts, src, added, dims = index.take(ids, max(ask_width, 1), legs, max(ask_dims, 0), keep)
            want = ref.take(ids, legs, max(ask_width, 1), max(ask_dims, 0), keep)
            got = list(
                zip(found.tolist(), ts.tolist(), src.tolist(), added.tolist(), dims.tolist(), strict=True)
            )
            assert got == want
        else:
            index.expire(now)
            ref.expire(now)
        assert len(index) == len(ref.entries)
        assert index.expired == ref.expired
        wrapped |= int(index.cnt[1]) > index.e_id.size > int(index.cnt[1]) - int(index.cnt[0])
        assert index.e_ts.shape[1] == index.e_src.shape[1] == len(ref.kept)  # only the kept columns stored
    held = index.held_src()
    assert sorted(held[held != 0].tolist()) == sorted(v for e in ref.entries for v in e["src"] if v)
    assert wrapped or shape == "churn", "the ring shape never wrapped: it tests less than it says"


def test_an_index_keeping_some_columns_stores_only_those_and_takes_back_full_rows():
    """The fan-out's shared stamps (5 of 14 columns, in pipeline order): 5 columns per entry held,
    the full row taken back with the others 0."""
    n, width = 1000, 14
    keep = np.zeros(width, bool)
    keep[[0, 1, 2, 3, 4]] = True
    order = np.arange(width, dtype=np.int64)[::-1].copy()
    ids = np.arange(n, dtype=np.uint64)
    ts = np.arange(n * width, dtype=np.int64).reshape(n, width) + 1
    src = np.ones((n, width), np.int16)
    index = LateIndex(1 << 40, 1 << 20)
    index.add(ids, ts, src, np.zeros(n, np.int64), order=order, keep=keep)
    assert index.e_ts.shape[1] == 5
    found, got, got_src, _, _ = index.take(ids, width)
    want = np.zeros((n, width), np.int64)
    want[:, order[keep]] = ts[:, keep]
    assert found.all() and np.array_equal(got, want) and np.array_equal(got_src != 0, want != 0)


def test_an_index_at_its_size_bound_adds_and_expires_without_moving_entries():
    """Steady state of a long run: the bound reached, each flush adds at the tail and expires at
    the head. Nothing is moved or numbered anew (the old FIFO shifted a million entries down
    each time its tail met the end of its arrays); answers stay exact across the ring's wrap."""
    bound, batch = 1000, 300
    index = LateIndex(1 << 40, bound)
    arrays = (index.e_id, index.e_ts)
    for flush in range(40):
        ids = np.arange(flush * batch, (flush + 1) * batch, dtype=np.uint64)
        index.add(
            ids, ids.astype(np.int64)[:, None] + 1, np.ones((batch, 1), np.int16), np.zeros(batch, np.int64)
        )
        index.expire(0)
        if flush == 4:
            arrays = (index.e_id, index.e_ts)  # grown to hold the bound and a flush: final from here
    added = 40 * batch
    assert len(index) == bound and index.expired == added - bound
    assert index.cnt[0] == added - bound and index.cnt[1] == added, "positions only grow"
    assert index.e_id is arrays[0] and index.e_ts is arrays[1] and index.e_id.size < added
    found, ts, _, _, _ = index.take(np.arange(added - bound - 5, added, dtype=np.uint64), 1)
    assert not found[:5].any() and found[5:].all()
    assert np.array_equal(ts[5:, 0], np.arange(added - bound, added) + 1)


def test_a_wrapped_ring_that_grows_many_times_over_at_once_keeps_every_entry():
    """A quiet index (few entries, positions far past its arrays' size) met by a burst larger
    than twice its arrays: each entry moves from slot p % 256 to p % 2048 (positions 700..799:
    by 512, and by 512 + 256 past the wrap), not only by 256."""
    index = LateIndex(1 << 40, 100)
    for k in range(16):  # 800 adds, the bound keeps the newest 100: positions 700..799, wrapped
        ids = np.arange(50 * k, 50 * (k + 1), dtype=np.uint64)
        index.add(ids, ids.astype(np.int64)[:, None] + 7, np.ones((50, 1), np.int16), np.zeros(50, np.int64))
        index.expire(0)
    assert index.e_id.size == 256 and index.cnt[0] == 700 and index.cnt[1] == 800
    burst = np.arange(1_000, 2_000, dtype=np.uint64)
    index.add(
        burst, burst.astype(np.int64)[:, None] + 7, np.ones((1000, 1), np.int16), np.zeros(1000, np.int64)
    )
    assert index.e_id.size == 2048 and len(index) == 1100
    ids = np.concatenate((np.arange(700, 800, dtype=np.uint64), burst))
    found, ts, _, _, _ = index.take(ids, 1)
    assert found.all() and np.array_equal(ts[:, 0], ids.astype(np.int64) + 7)
    assert len(index) == 0
