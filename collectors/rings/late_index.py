"""The late index: closed traces kept for the points that may still come (correlate.py's rules).

Entries sit in a FIFO (oldest first) and an open-addressing hash (linear probing, backward-shift
deletion) maps (trace id, leg) to the oldest live entry of that key; newer entries of the same key
hang off it in a chain (``e_next``). So an add, a take and an expiry each cost O(1) per entry: a
flush never re-sorts or merges what the index holds. Expiry only ever removes the oldest entry,
which is the head of its key's chain, and a take removes the head too: the chain never needs to
be walked to unlink.

The FIFO is a ring: an entry has a position that only grows (its add's sequence number), stored
in slot ``position & (capacity - 1)``, and the hash and the chains hold positions. A full index
at its size bound therefore expires at the head and adds at the tail without moving anything.
It used to shift its live entries down to slot 0 whenever the tail reached the end of its arrays:
at the bench's fan-out in steady state (a million shared-stamp entries held) that was 110 ms
every million adds, ~22 ns a record. Entries move only when the arrays double (positions kept)
or when taken entries leave holes that fill half of them (then the live ones are numbered anew).

An entry stores only the stamp columns its index was ever asked to keep (``cols``: a compact
column map, new columns added as they are first kept): the shared stamps of fanned-out traces,
kept for 30 s and up to a million entries, are 5 of 14 columns in the bench's fan-out, and the
others were zeros held at full width (a hash that calls 0 empty, so that it could be calloc'ed
zeros, measured no faster than one written with -1).

Kernels are numba functions compiled once per host and cached (see pending.py); every array they
take has one dtype.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from .pending import _home, _shifts_back

ENTRY_ARRAYS = ("e_id", "e_leg", "e_ts", "e_src", "e_added", "e_dims", "e_live", "e_next")  # a slot each
HEAD, TAIL, LIVE = range(3)  # the FIFO's slots [HEAD, TAIL), oldest first, and how many are live
_LEG_MIX = np.uint64(0xC2B2AE3D27D4EB4F)


@njit(cache=True, nogil=True, inline="always")
def _key(trace, leg):
    return trace ^ (np.uint64(leg + 1) * _LEG_MIX)


@njit(cache=True, nogil=True, inline="always")
def _slot_of(key, mask):
    """Home position: keys that differ in their low 3 bits only (trace ids in sequence, as flushes
    add them) share one run of 8 positions (two cache lines) instead of a cache miss each."""
    return (_home(key >> np.uint64(3), mask >> 3) << 3 | np.int64(key & np.uint64(7))) & mask


@njit(cache=True, nogil=True, inline="always")
def _find(h, e_id, e_leg, trace, leg, mask):
    """Hash position of (trace, leg)'s oldest live entry, or of the hole where it would go. Each
    position holds (entry's position, key): a probe reads one cache line, the entry only when the
    keys agree."""
    key = _key(trace, leg)
    i = _slot_of(key, mask)
    smask = e_id.shape[0] - 1
    while h[i, 0] >= 0 and (
        np.uint64(h[i, 1]) != key or e_id[h[i, 0] & smask] != trace or e_leg[h[i, 0] & smask] != leg
    ):
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True, inline="always")
def _unlink(p, h, e_id, e_leg, e_live, e_next, cnt):
    """Remove the entry at position ``p``, the oldest live one of its key."""
    mask = h.shape[0] - 1
    s = p & (e_id.shape[0] - 1)
    i = _find(h, e_id, e_leg, e_id[s], e_leg[s], mask)
    if e_next[s] >= 0:
        h[i, 0] = e_next[s]
    else:  # out of the hash: later entries of its probe run shift back so lookups meet no hole
        j = i
        while True:
            j = (j + 1) & mask
            if h[j, 0] < 0:
                break
            home = _slot_of(np.uint64(h[j, 1]), mask)
            if _shifts_back(i, home, j):
                h[i, 0], h[i, 1] = h[j, 0], h[j, 1]
                i = j
        h[i, 0] = -1
    e_live[s] = 0
    cnt[LIVE] -= 1


@njit(cache=True, nogil=True)
def _add(rows, ids, legs, ts, src, dest, added, dims, h, e_id, e_leg, e_ts, e_src, e_added, e_dims,
         e_live, e_next, cnt):  # fmt: skip
    """Append rows ``rows`` of the inputs at the FIFO's tail (the caller made room) and index them:
    column j of ``ts``/``src`` is stored in stored column ``dest[j]`` (-1: not kept; the stored
    columns no input column lands in hold 0)."""
    mask, smask = h.shape[0] - 1, e_id.shape[0] - 1
    w, nd = ts.shape[1], min(dims.shape[1], e_dims.shape[1])
    for r in rows:
        p = cnt[TAIL]
        s = p & smask
        cnt[TAIL] += 1
        cnt[LIVE] += 1
        e_id[s], e_leg[s], e_added[s], e_live[s], e_next[s] = ids[r], legs[r], added[r], 1, -1
        e_ts[s, :] = 0
        e_src[s, :] = 0
        for j in range(w):
            c = dest[j]
            if c >= 0:
                e_ts[s, c], e_src[s, c] = ts[r, j], src[r, j]
        e_dims[s, :] = 0
        for d in range(nd):
            e_dims[s, d] = dims[r, d]
        i = _find(h, e_id, e_leg, ids[r], legs[r], mask)
        if h[i, 0] < 0:
            h[i, 0], h[i, 1] = p, np.int64(_key(ids[r], legs[r]))
        else:  # an older entry of this key is live: this one is found after it
            t = h[i, 0] & smask
            while e_next[t] >= 0:
                t = e_next[t] & smask
            e_next[t] = p


@njit(cache=True, nogil=True)
def _take(ids, legs, keep, cols, found, ts, src, added, dims, h, e_id, e_leg, e_ts, e_src, e_added, e_dims, e_live,
          e_next, cnt):  # fmt: skip
    """Each (id, leg)'s oldest live entry into the outputs (stored column c as column ``cols[c]``,
    those beyond the outputs' width left out), and out of the index unless ``keep``."""
    mask, smask = h.shape[0] - 1, e_id.shape[0] - 1
    w, nd = ts.shape[1], min(dims.shape[1], e_dims.shape[1])
    for k in range(ids.size):
        p = h[_find(h, e_id, e_leg, ids[k], legs[k], mask), 0]
        if p < 0:
            continue
        s = p & smask
        found[k], added[k] = True, e_added[s]
        for c in range(e_ts.shape[1]):
            out = cols[c]
            if out < w:
                ts[k, out], src[k, out] = e_ts[s, c], e_src[s, c]
        for d in range(nd):
            dims[k, d] = e_dims[s, d]
        if not keep:
            _unlink(p, h, e_id, e_leg, e_live, e_next, cnt)


@njit(cache=True, nogil=True)
def _expire(cutoff, max_live, h, e_id, e_leg, e_added, e_live, e_next, cnt):
    """Drop the oldest entries while they were added before ``cutoff`` or more than ``max_live``
    are held; taken entries at the front are reclaimed on the way. Returns how many live ones went."""
    gone, smask = 0, e_id.shape[0] - 1
    while cnt[HEAD] < cnt[TAIL]:
        p = cnt[HEAD]
        s = p & smask
        if e_live[s]:
            if e_added[s] >= cutoff and cnt[LIVE] <= max_live:
                break
            _unlink(p, h, e_id, e_leg, e_live, e_next, cnt)
            gone += 1
        cnt[HEAD] += 1
    return gone


@njit(cache=True, nogil=True)
def _rehash(old, h):
    """The (position, key) pairs of hash ``old`` into the empty hash ``h``."""
    mask = h.shape[0] - 1
    for i in range(old.shape[0]):
        if old[i, 0] >= 0:
            j = _slot_of(np.uint64(old[i, 1]), mask)
            while h[j, 0] >= 0:
                j = (j + 1) & mask
            h[j, 0], h[j, 1] = old[i, 0], old[i, 1]


class LateIndex:
    """Closed traces that reached their trade point but not their last point, by (trace id, leg).

    Memory is bounded by ``horizon_ns`` of collector time and ``max_entries``: the oldest entries
    go first, each once it was added before the horizon or while more than ``max_entries`` are
    held. An entry taken out (its late point came) leaves at once; a key added twice is answered
    by its oldest entry first."""

    def __init__(self, horizon_ns: int, max_entries: int):
        self.horizon_ns = horizon_ns
        self.max_entries = max_entries
        self.expired = 0  # entries dropped by the horizon or the size bound, never answered
        self.cnt = np.zeros(3, np.int64)
        self.cols = np.zeros(0, np.int64)  # stored column -> its column in the stamp rows added and taken
        self._alloc(256, 0, 0)

    def _alloc(self, capacity: int, width: int, n_dims: int) -> None:
        self.e_id, self.e_leg = np.zeros(capacity, np.uint64), np.zeros(capacity, np.int32)
        self.e_ts, self.e_src = np.zeros((capacity, width), np.int64), np.zeros((capacity, width), np.int16)
        self.e_added, self.e_next = np.zeros(capacity, np.int64), np.full(capacity, -1, np.int64)
        self.e_dims, self.e_live = np.zeros((capacity, n_dims), np.int32), np.zeros(capacity, np.uint8)
        self.h = np.full((2 * capacity, 2), -1, np.int64)  # (entry's position, key), at most half full
        self.cnt[:] = 0

    def _live(self) -> np.ndarray:
        """Slots of the live entries, oldest first."""
        slots = np.arange(self.cnt[HEAD], self.cnt[TAIL]) & (self.e_id.size - 1)
        return slots[self.e_live[slots] != 0]

    def _room(self, n: int, width: int, n_dims: int) -> None:
        """Room for ``n`` more entries of ``width`` stored stamp columns and ``n_dims`` dimensions at the
        ring's tail. With no room left the arrays double and each entry keeps its position, or, when
        taken entries left holes, the live ones are numbered anew from 0 (into arrays doubled if
        they need it); the hash, kept at most half full, is rebuilt from the keys it holds on a
        doubling (no entry is read) and renumbered on a renumbering."""
        if width > self.e_ts.shape[1] or n_dims > self.e_dims.shape[1]:
            self._widen(max(width, self.e_ts.shape[1]), max(n_dims, self.e_dims.shape[1]))
        head, tail, live = (int(c) for c in self.cnt)
        capacity = self.e_id.size
        if tail - head + n <= capacity:
            return
        # Doubled until it holds the live entries and the new: just so when every entry is live (a
        # million entries at the bound fit 2^20 slots, not 2^21), with a fifth to spare when the
        # live ones are renumbered, so that the holes before the next renumbering are many.
        room, spare = capacity, 1.0 if live == tail - head else 1.25
        while room < spare * (live + n):
            room *= 2
        if live == tail - head:  # no holes: a larger ring, every entry at its position
            arrays = [getattr(self, name) for name in ENTRY_ARRAYS]
            for a in arrays:
                a.resize((room, *a.shape[1:]), refcheck=False)  # realloc: slots below capacity stay
            # Position p moves from slot p % capacity to p % room. The positions of one block of
            # `capacity` aligned ones are a run of slots in both (the span is at most capacity, so
            # two runs at most); a run that moves lands at or above `capacity`, where no run
            # still to move comes from.
            p = head
            while p < tail:
                run_end = min(tail, (p | (capacity - 1)) + 1)  # the end of p's aligned block
                was, now, length = p & (capacity - 1), p & (room - 1), run_end - p
                if now != was:
                    for a in arrays:
                        a[now : now + length] = a[was : was + length]
                p = run_end
        else:  # holes: the live entries at positions 0.. in order; chains and hash follow them there
            old_slots = self._live()
            moved_to = np.full(capacity, -1, np.int64)
            moved_to[old_slots] = np.arange(live)
            newer = self.e_next[old_slots]
            self.e_next[old_slots] = np.where(newer >= 0, moved_to[newer & (capacity - 1)], -1)
            held = self.h[:, 0] >= 0
            self.h[held, 0] = moved_to[self.h[held, 0] & (capacity - 1)]
            self.cnt[HEAD], self.cnt[TAIL] = 0, live
            for name in ENTRY_ARRAYS:
                a = getattr(self, name)
                b = np.zeros((room, *a.shape[1:]), a.dtype)
                b[:live] = a[old_slots]
                setattr(self, name, b)
        if room != capacity:
            old, self.h = self.h, np.full((2 * room, 2), -1, np.int64)
            _rehash(old, self.h)

    def _widen(self, width: int, n_dims: int) -> None:
        """Wider stamp rows or more dimensions (new columns zero): those arrays are made anew."""

        def wider(a, columns):
            out = np.zeros((a.shape[0], columns), a.dtype)
            out[:, : a.shape[1]] = a
            return out

        self.e_ts, self.e_src, self.e_dims = (
            wider(self.e_ts, width),
            wider(self.e_src, width),
            wider(self.e_dims, n_dims),
        )

    def _state(self):
        return (self.h, self.e_id, self.e_leg, self.e_ts, self.e_src, self.e_added, self.e_dims, self.e_live,
                self.e_next, self.cnt)  # fmt: skip

    def __len__(self) -> int:
        return int(self.cnt[LIVE])

    def add(self, ids, ts, src, added, legs=None, dims=None, *, rows=None, order=None, keep=None) -> None:
        """Entries (trace id, leg: default -1) with their stamps and sources (``ts``/``src``: the
        schema's discovery order, or pipeline order with ``order`` its columns), the collector's
        time they were added and dimension value ids; ``rows``: only those rows of the inputs;
        ``keep``: only those columns' stamps (the others are not stored: taken back as 0)."""
        rows = np.arange(ids.size, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
        if rows.size == 0:
            return
        w = ts.shape[1]
        legs = np.full(ids.size, -1, np.int32) if legs is None else legs
        dims = np.zeros((ids.size, 0), np.int32) if dims is None else dims
        order = np.arange(w, dtype=np.int64) if order is None else np.ascontiguousarray(order, np.int64)
        keep = np.ones(w, bool) if keep is None else np.ascontiguousarray(keep, bool)
        dest = self._stored(order, keep)
        self._room(rows.size, self.cols.size, dims.shape[1])
        _add(rows, np.ascontiguousarray(ids, np.uint64), np.ascontiguousarray(legs, np.int32),
             np.ascontiguousarray(ts, np.int64), np.ascontiguousarray(src, np.int16), dest,
             np.ascontiguousarray(added, np.int64), np.ascontiguousarray(dims, np.int32), *self._state())  # fmt: skip

    def _stored(self, order: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Per input column, its stored column (-1: not kept); columns kept for the first time
        become stored columns."""
        # a dozen columns: Python's sets beat numpy's set routines here
        new = sorted(set(order[keep].tolist()) - set(self.cols.tolist()))
        if new:
            self.cols = np.concatenate((self.cols, np.array(new, np.int64)))
        where = np.full(int(max(order.max(initial=-1), self.cols.max(initial=-1))) + 1, -1, np.int64)
        where[self.cols] = np.arange(self.cols.size)
        return np.where(keep, where[order], -1)

    def expire(self, now_ns: int) -> None:
        self.expired += int(
            _expire(
                now_ns - self.horizon_ns,
                self.max_entries,
                self.h,
                self.e_id,
                self.e_leg,
                self.e_added,
                self.e_live,
                self.e_next,
                self.cnt,
            )  # fmt: skip
        )

    def take(self, ids: np.ndarray, width: int, legs=None, n_dims: int = 0, keep: bool = False):
        """Remove (``keep``: only read) and return the entries of (``ids``, ``legs``): (found mask,
        ts rows, src rows, added, dims rows)."""
        legs = np.full(ids.size, -1, np.int32) if legs is None else legs
        found = np.zeros(ids.size, bool)
        ts = np.zeros((ids.size, width), np.int64)
        src = np.zeros((ids.size, width), np.int16)
        added = np.zeros(ids.size, np.int64)
        dims = np.zeros((ids.size, n_dims), np.int32)
        _take(np.ascontiguousarray(ids, np.uint64), np.ascontiguousarray(legs, np.int32), keep, self.cols, found, ts, src,
              added, dims, *self._state())  # fmt: skip
        return found, ts, src, added, dims

    def held_src(self) -> np.ndarray:
        """The source values of every stamp of the live entries."""
        return self.e_src[self._live()]


@functools.cache  # once per process
def warm() -> None:
    """Compile (or load from the cache) every kernel with the dtypes the correlator passes; once
    per process."""
    index = LateIndex(10, 1)
    ids = np.array([7, 7, 9], np.uint64)
    index.add(ids, np.ones((3, 2), np.int64), np.ones((3, 2), np.int16), np.arange(3, dtype=np.int64),
              np.array([0, 0, -1], np.int32), np.ones((3, 1), np.int32))  # fmt: skip
    index.take(ids[:1], 2, np.zeros(1, np.int32), 1, keep=True)
    index.take(ids[:1], 2, np.zeros(1, np.int32), 1)
    index._room(1000, 3, 1)
    index.expire(100)
