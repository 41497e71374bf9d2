"""The correlator's open traces: stamp rows held in place until their trace closes.

One row per (trace id, leg) (leg -1: the trace's shared points), in preallocated arrays that
grow by doubling; an open-addressing hash (linear probing, backward-shift deletion) maps a trace
id to its trace slot, and a trace's rows hang off it in a short list kept in leg order. Records
are inserted where their row lives, in one pass per batch, so nothing is re-sorted or
re-concatenated per batch; a flush scans the open traces once to decide which close and takes
their rows out already in (trace id, leg) order. The rules are the correlator's (module
docstring of ``correlate.py``); this module is their one implementation.

Kernels are numba functions compiled once per process and cached on disk (``cache=True``: in
``__pycache__`` beside this file, or numba's per-user cache when that is read-only). Every array
they take has one dtype and is C-contiguous, so each compiles exactly once; ``warm()`` compiles
(or loads) them all up front.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NO_LEG = -1
_RING_VALUES = np.iinfo(np.int16).max + 1  # src values: ring index + 1 fits an int16

# Counters (one int64 array, so kernels update them in place)
DUP_STAMPS, DIM_CONFLICTS, TRACES, ROWS, TRACE_FREE, ROW_FREE = range(6)


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the CPU to bring ``array[index]`` into the caches (LLVM's prefetch; no effect on values)."""

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.PointerType(ir.IntType(8)), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        read, keep_in_every_level, data = (ir.Constant(i32, v) for v in (0, 3, 1))
        builder.call(fn, [builder.bitcast(ptr, i8p), read, keep_in_every_level, data])
        return context.get_dummy_value()

    return types.void(array, index), codegen


_AHEAD = 32  # records: about two traces of the fan-out bench, time for a hash slot to arrive from memory
_AHEAD_TRACES = 8  # traces taken out: time for their slots to arrive from memory


@njit(cache=True, nogil=True, inline="always")
def _home(key, mask):
    h = key * _GOLDEN
    h ^= h >> np.uint64(29)
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True, inline="always")
def _shifts_back(hole, home, j):
    """Whether the entry at position ``j`` of a linear-probing table, whose home position is
    ``home``, may move back into the hole at ``hole`` (backward-shift deletion): its home is not
    cyclically in (hole, j]. Every table here deletes so (this one, late_index, bench_fused_floor)."""
    return not ((hole < home <= j) if hole <= j else (home > hole or home <= j))


@njit(cache=True, nogil=True)
def _rehash(h_val, t_id, t_live):
    mask = h_val.size - 1
    h_val[:] = -1
    for t in range(t_id.size):
        if t_live[t]:
            i = _home(t_id[t], mask)
            while h_val[i] >= 0:
                i = (i + 1) & mask
            h_val[i] = t


@njit(cache=True, nogil=True)
def _merge_rows(ids, legs, ts, src, dims, dup, arrived_ns, rnd, per_leg, epoch,
                h_val, t_id, t_live, t_head, t_rows, r_next, r_leg, r_live, t_free, r_free,
                R_ts, R_src, R_dims, r_arrived, r_round, r_dup, r_epoch, cnt):  # fmt: skip
    """Join stamp rows to the open ones, each into its row (made if absent): a point stamped in
    both counts one duplicate stamp; stamps and sources keep the larger; two different values of
    one dimension count one conflict per row and batch (the larger id is kept).

    A row stamping both shared and per-leg points (a tick record) is two parts: its shared stamps
    go to the trace (leg -1), its per-leg stamps and its dimension values to its leg. Without a
    declared fan-out every row is the trace's own.

    One flat loop on purpose: a helper taking arrays costs a reference count increment and
    decrement per array per call (atomics, ~100 ns a row), more than the work itself."""
    fan = per_leg.any()
    w, nd = ts.shape[1], dims.shape[1]
    mask = h_val.size - 1
    for k in range(ids.size):
        on_leg = False
        on_trace = not fan
        if fan:
            for c in range(w):
                if ts[k, c] != 0:
                    if per_leg[c]:
                        on_leg = True
                    else:
                        on_trace = True
        for leg_part in (False, True):
            if (leg_part and not on_leg) or (not leg_part and on_leg and not on_trace):
                continue
            leg = legs[k] if leg_part else _NO_LEG
            key = ids[k]
            i = _home(key, mask)
            t = h_val[i]
            while t >= 0 and t_id[t] != key:
                i = (i + 1) & mask
                t = h_val[i]
            if t < 0:  # a new trace
                cnt[TRACE_FREE] -= 1
                t = t_free[cnt[TRACE_FREE]]
                h_val[i] = t
                t_id[t], t_live[t], t_head[t], t_rows[t] = key, 1, -1, 0
                cnt[TRACES] += 1
            prev, r = -1, t_head[t]
            while r >= 0 and r_leg[r] < leg:  # its rows, in leg order
                prev, r = r, r_next[r]
            made = r < 0 or r_leg[r] != leg
            if made:
                cnt[ROW_FREE] -= 1
                new = r_free[cnt[ROW_FREE]]
                r_leg[new], r_next[new], r_live[new] = leg, r, 1
                if prev < 0:
                    t_head[t] = new
                else:
                    r_next[prev] = new
                t_rows[t] += 1
                cnt[ROWS] += 1
                r = new
            newest = 0
            twice = False
            for c in range(w):
                if per_leg[c] != leg_part:
                    if made:
                        R_ts[r, c], R_src[r, c] = 0, 0
                    continue
                v = ts[k, c]
                newest = max(newest, v)
                if made:
                    R_ts[r, c], R_src[r, c] = v, src[k, c]
                    continue
                if v != 0 and R_ts[r, c] != 0:
                    cnt[DUP_STAMPS] += 1
                    twice = True
                R_ts[r, c] = max(R_ts[r, c], v)
                R_src[r, c] = max(R_src[r, c], src[k, c])
            conflict = False
            dims_too = leg_part or not on_leg
            for d in range(nd):
                if made:
                    R_dims[r, d] = 0
                v = dims[k, d] if dims_too else 0
                if v != 0:
                    conflict |= R_dims[r, d] != 0 and R_dims[r, d] != v
                    R_dims[r, d] = max(R_dims[r, d], v)
            if conflict and r_epoch[r] != epoch:
                cnt[DIM_CONFLICTS] += 1
            arrived = newest if arrived_ns < 0 else arrived_ns
            if made:
                r_arrived[r], r_round[r], r_dup[r] = arrived, rnd, dup[k]
                r_epoch[r] = epoch if conflict else -1
            else:
                r_arrived[r] = max(r_arrived[r], arrived)
                r_round[r] = max(r_round[r], rnd)
                r_dup[r] = r_dup[r] | dup[k] | twice
                if conflict:
                    r_epoch[r] = epoch


@njit(cache=True, nogil=True)
def _add_points(ids, legs, cols, ts, dims, src_value, arrived_ns, rnd, per_leg, epoch, B_row, B_made, B_dup, B_conflict,
                B_ts, B_src, B_dims, r_batch, h_val, t_id, t_live, t_head, t_rows, r_next, r_leg, r_live, t_free,
                r_free, R_ts, R_src, R_dims, r_arrived, r_round, r_dup, r_epoch, cnt):  # fmt: skip
    """Point records (one stamp each) of one ring joined to the open rows in one call.

    The records of each (trace id, leg) (leg -1: a shared point, or any point without a declared
    fan-out; ``legs`` is ignored there) are one batch row: a point stamped twice in the batch
    counts a duplicate stamp per extra record (the last record's stamp stays), two values of one
    dimension one conflict. A batch row then joins its open row by the rules of ``_merge_rows``
    (a row's stamps are all shared or all its leg's, so every column joins alike).

    A row this batch makes is its batch row: records go straight into it. A row already open
    gathers its batch row in ``B_*`` first, joined at the end. ``r_batch[r]`` is row r's batch
    row if ``B_row`` says so back (a sparse set: a value left from an earlier batch fails that
    check, so nothing is cleared between batches); the previous record's trace and row are tried before
    the hash (a trace's records mostly come together). ``B_*`` are kept by the table, so nothing
    is allocated per batch. One flat loop on purpose (see ``_merge_rows``).

    Returns (0, 0) once joined, or, having changed nothing, the room it needs first: traces and
    rows it may make (the records' runs of one trace, and of one row), which the free stacks and
    ``B_*`` must hold."""
    fan = per_leg.any()
    w, nd = R_ts.shape[1], dims.shape[1]
    need_t = need_r = 0
    last_leg = -2
    for k in range(ids.size):
        leg = legs[k] if fan and per_leg[cols[k]] else _NO_LEG
        if k == 0 or ids[k] != ids[k - 1]:
            need_t += 1
            need_r += 1
        elif leg != last_leg:
            need_r += 1
        last_leg = leg
    if need_t > cnt[TRACE_FREE] or need_r > cnt[ROW_FREE] or need_r > B_row.size:
        return need_t, need_r
    # the counters as locals: stores to the tables would otherwise reload them (they may alias)
    t_top, r_top, n_traces, n_rows = cnt[TRACE_FREE], cnt[ROW_FREE], cnt[TRACES], cnt[ROWS]
    n_dup, n_conf = cnt[DUP_STAMPS], cnt[DIM_CONFLICTS]
    mask = h_val.size - 1
    nb = 0
    last_id, last_t, last_leg, b, r, direct = np.uint64(0), -1, -2, -1, -1, False
    for k in range(ids.size):
        c = cols[k]
        key = ids[k]
        leg = np.int32(legs[k]) if fan and per_leg[c] else np.int32(_NO_LEG)
        if last_t < 0 or key != last_id:
            if k + _AHEAD < ids.size:  # the hash slot is a cache miss per trace: ask for it early
                _prefetch(h_val, _home(ids[k + _AHEAD], mask))
            i = _home(key, mask)
            t = h_val[i]
            while t >= 0 and t_id[t] != key:
                i = (i + 1) & mask
                t = h_val[i]
            if t < 0:  # a new trace
                t_top -= 1
                t = t_free[t_top]
                h_val[i] = t
                t_id[t], t_live[t], t_head[t], t_rows[t] = key, 1, -1, 0
                n_traces += 1
            last_id, last_t, last_leg = key, t, -2
        if leg != last_leg:
            t = last_t
            prev, r = -1, t_head[t]
            while r >= 0 and r_leg[r] < leg:  # its rows, in leg order
                prev, r = r, r_next[r]
            if r < 0 or r_leg[r] != leg:  # made here
                r_top -= 1
                new = r_free[r_top]
                r_leg[new], r_next[new], r_live[new] = leg, r, 1
                if prev < 0:
                    t_head[t] = new
                else:
                    r_next[prev] = new
                t_rows[t] += 1
                n_rows += 1
                r = new
                for j in range(w):
                    R_ts[r, j], R_src[r, j] = 0, 0
                for d in range(nd):
                    R_dims[r, d] = 0
                r_arrived[r], r_round[r], r_dup[r], r_epoch[r] = max(arrived_ns, 0), rnd, False, -1
                r_batch[r] = nb
                B_row[nb], B_made[nb] = r, True
                nb += 1
            elif not (r_batch[r] < nb and B_row[r_batch[r]] == r):
                b = nb
                nb += 1
                r_batch[r] = b
                B_row[b], B_made[b], B_dup[b], B_conflict[b] = r, False, False, False
                for j in range(w):
                    B_ts[b, j], B_src[b, j] = 0, 0
                for d in range(nd):
                    B_dims[b, d] = 0
            b = r_batch[r]
            direct = B_made[b]
            last_leg = leg
        if direct:  # (a conflict counts once: r_epoch, which a row made here needs for nothing else)
            if R_src[r, c] != 0:
                n_dup += 1
                r_dup[r] = True
            R_ts[r, c], R_src[r, c] = ts[k], src_value
            for d in range(nd):
                v = dims[k, d]
                if v != 0:
                    if R_dims[r, d] != 0 and R_dims[r, d] != v and r_epoch[r] != epoch:
                        n_conf += 1
                        r_epoch[r] = epoch
                    if v > R_dims[r, d]:
                        R_dims[r, d] = v
            continue
        if B_src[b, c] != 0:
            n_dup += 1
            B_dup[b] = True
        B_ts[b, c], B_src[b, c] = ts[k], src_value
        for d in range(nd):
            v = dims[k, d]
            if v != 0:
                if B_dims[b, d] != 0 and B_dims[b, d] != v:
                    B_conflict[b] = True
                if v > B_dims[b, d]:
                    B_dims[b, d] = v
    for b in range(nb):
        r = B_row[b]
        if B_made[b]:
            if arrived_ns < 0:
                for j in range(w):
                    r_arrived[r] = max(r_arrived[r], R_ts[r, j])
            continue
        if B_conflict[b]:
            n_conf += 1
        newest = 0
        twice = False
        for j in range(w):
            v = B_ts[b, j]
            newest = max(newest, v)
            if v != 0 and R_ts[r, j] != 0:
                n_dup += 1
                twice = True
            R_ts[r, j] = max(R_ts[r, j], v)
            R_src[r, j] = max(R_src[r, j], B_src[b, j])
        conflict = False
        for d in range(nd):
            v = B_dims[b, d]
            if v != 0:
                conflict |= R_dims[r, d] != 0 and R_dims[r, d] != v
                R_dims[r, d] = max(R_dims[r, d], v)
        if conflict and r_epoch[r] != epoch:
            n_conf += 1
        r_arrived[r] = max(r_arrived[r], newest if arrived_ns < 0 else arrived_ns)
        r_round[r] = max(r_round[r], rnd)
        r_dup[r] = r_dup[r] | B_dup[b] | twice
        if conflict:
            r_epoch[r] = epoch
    cnt[TRACE_FREE], cnt[ROW_FREE], cnt[TRACES], cnt[ROWS] = t_top, r_top, n_traces, n_rows
    cnt[DUP_STAMPS], cnt[DIM_CONFLICTS] = n_dup, n_conf
    return 0, 0


@njit(cache=True, nogil=True)
def _close_scan(t_live, t_id, t_head, r_next, r_leg, R_ts, R_src, r_arrived, r_round, sink, tick_of, tick_only,
                round_now, cutoff, force, n_traces):  # fmt: skip
    """Every open trace (all its rows) once: its slot, id, newest arrival, and whether it closes
    (final point reached, by every leg that has a row, or decided, and a later round begun; or
    nothing came since ``cutoff``). Per leg: one leg's ack must not close a trace whose other leg
    has not had its send stamped yet (a hedge to another venue, its transmit stamp read late on a
    loaded host): that send, arriving after, could no longer join its leg's own stamps."""
    slots = np.empty(n_traces, np.int64)
    ids = np.empty(n_traces, np.uint64)
    arrived = np.empty(n_traces, np.int64)
    close = np.zeros(n_traces, np.bool_)
    w = R_ts.shape[1]
    present = np.zeros(w, np.bool_)
    delivered = np.zeros(tick_only.shape[0], np.bool_)
    m = 0
    for t in range(t_live.size):
        if not t_live[t]:
            continue
        present[:] = False
        delivered[:] = False
        newest, rnd = np.int64(-(2**62)), np.int64(-(2**62))
        legs_final = True  # every leg row has a final point
        r = t_head[t]
        while r >= 0:
            newest, rnd = max(newest, r_arrived[r]), max(rnd, r_round[r])
            row_final = False
            for c in range(w):
                if R_ts[r, c] != 0:
                    present[c] = True
                    row_final |= sink[c]
            if r_leg[r] >= 0 and not row_final:
                legs_final = False
            if delivered.size:  # sources matter only to tick rings: without one, not even read
                for c in range(w):
                    s = R_src[r, c]
                    if s > 0 and tick_of[s] >= 0:
                        delivered[tick_of[s]] = True
            r = r_next[r]
        final = False
        for c in range(w):
            if sink[c] and present[c]:
                final = legs_final
        decided = False
        for k in range(tick_only.shape[0]):
            if delivered[k]:
                for c in range(w):
                    if tick_only[k, c] and not present[c]:
                        decided = True
        slots[m], ids[m], arrived[m] = t, t_id[t], newest
        close[m] = force or ((final or decided) and rnd < round_now) or newest < cutoff
        m += 1
    return slots, ids, arrived, close


@njit(cache=True, nogil=True)
def _by_id(ids):
    """The order that sorts ``ids``: a stable LSD radix sort, a byte a pass, skipping the bytes in
    which all the ids agree. Trace ids are sequence numbers, one range per writer or feed, so a
    flush's ids differ in two or three low bytes and a byte or two that tells the ranges apart:
    3-4 passes of a few µs, where numpy's quicksort took 5 ns a record on the plain path."""
    n = ids.size
    order = np.arange(n)
    if n < 2:
        return order
    ones, zeros = np.uint64(0), ~np.uint64(0)
    for i in range(n):
        ones |= ids[i]
        zeros &= ids[i]
    varying = ones ^ zeros
    keys = ids.copy()  # kept in the current order, so each pass reads them in sequence
    order_to, keys_to = np.empty(n, np.int64), np.empty(n, np.uint64)
    count = np.empty(257, np.int64)
    for shift in range(0, 64, 8):
        sh = np.uint64(shift)
        if (varying >> sh) & np.uint64(0xFF) == 0:
            continue
        count[:] = 0
        for i in range(n):
            count[np.int64((keys[i] >> sh) & np.uint64(0xFF)) + 1] += 1
        for d in range(256):
            count[d + 1] += count[d]
        for i in range(n):
            d = np.int64((keys[i] >> sh) & np.uint64(0xFF))
            order_to[count[d]], keys_to[count[d]] = order[i], keys[i]
            count[d] += 1
        order, order_to = order_to, order
        keys, keys_to = keys_to, keys
    return order


@njit(cache=True, nogil=True)
def _take(slots, evict_t, order, h_val, t_id, t_live, t_head, t_rows, r_next, r_leg, r_live, t_free, r_free,
          R_ts, R_src, R_dims, r_arrived, r_dup, cnt):  # fmt: skip
    """Take the traces ``slots`` out (in the order given) as the rows measured: each leg row
    with its trace's shared stamps (and its dimension values where the leg sets none), or the
    shared row of a trace without legs. Stamps in pipeline order (``order``). Returns ids, legs,
    stamps, sources, arrived, dup, evicted, dims, and each row's trace's own dimension values
    (its shared row's; none for a leg whose trace's shared row is not here: it closed earlier)."""
    # Slots come in trace id order, at random in the table: each trace's fields, its first row's
    # leg and its hash position are asked for ahead (the hash position a cache miss per trace else)
    mask = h_val.size - 1
    n = 0
    for i in range(slots.size):
        if i + 2 * _AHEAD_TRACES < slots.size:
            u = slots[i + 2 * _AHEAD_TRACES]
            _prefetch(t_head, u)
            _prefetch(t_rows, u)
            _prefetch(t_id, u)
        if i + _AHEAD_TRACES < slots.size:
            _prefetch(r_leg, t_head[slots[i + _AHEAD_TRACES]])
        t = slots[i]
        head = t_head[t]
        n += t_rows[t] - (1 if r_leg[head] < 0 and t_rows[t] > 1 else 0)
    w, nd = order.size, R_dims.shape[1]
    ids = np.empty(n, np.uint64)
    legs = np.empty(n, np.int32)
    C = np.empty((n, w), np.int64)
    S = np.empty((n, w), np.int16)
    dims = np.empty((n, nd), np.int32)
    tdims = np.zeros((n, nd), np.int32)
    arrived = np.empty(n, np.int64)
    dup = np.empty(n, np.bool_)
    evict = np.empty(n, np.bool_)
    k = 0
    for i in range(slots.size):
        if i + _AHEAD_TRACES < slots.size:
            _prefetch(h_val, _home(t_id[slots[i + _AHEAD_TRACES]], mask))
        t = slots[i]
        r = t_head[t]
        shared = r if r_leg[r] < 0 else -1
        if shared >= 0 and r_next[r] >= 0:  # it fanned out: its legs carry the shared stamps
            r = r_next[r]
        while r >= 0:
            ids[k], legs[k], arrived[k], dup[k], evict[k] = (
                t_id[t],
                r_leg[r],
                r_arrived[r],
                r_dup[r],
                evict_t[i],
            )
            for j in range(w):
                C[k, j], S[k, j] = R_ts[r, order[j]], R_src[r, order[j]]
            for d in range(nd):
                dims[k, d] = R_dims[r, d]
            if shared >= 0:
                if shared != r:  # shared and per-leg columns are disjoint: a plain fill
                    for j in range(w):
                        if R_ts[shared, order[j]] != 0:
                            C[k, j], S[k, j] = R_ts[shared, order[j]], R_src[shared, order[j]]
                    for d in range(nd):
                        if dims[k, d] == 0:
                            dims[k, d] = R_dims[shared, d]
                    arrived[k] = max(arrived[k], r_arrived[shared])
                    dup[k] |= r_dup[shared]
                for d in range(nd):
                    tdims[k, d] = R_dims[shared, d]
            k += 1
            r = r_next[r]
        r = t_head[t]
        while r >= 0:
            r_live[r] = 0
            r_free[cnt[ROW_FREE]] = r
            cnt[ROW_FREE] += 1
            cnt[ROWS] -= 1
            r = r_next[r]
        # Out of the hash (inline: see _merge_rows): later entries of its probe run shift back
        # so that lookups never meet a hole.
        i = _home(t_id[t], mask)
        while h_val[i] != t:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            u = h_val[j]
            if u < 0:
                break
            home = _home(t_id[u], mask)
            if _shifts_back(i, home, j):
                h_val[i] = u
                i = j
        h_val[i] = -1
        t_live[t] = 0
        t_free[cnt[TRACE_FREE]] = t
        cnt[TRACE_FREE] += 1
        cnt[TRACES] -= 1
    return ids, legs, C, S, arrived, dup, evict, dims, tdims


class PendingTable:
    """Open traces' rows, one per (trace id, leg). ``width`` stamp columns (the schema's discovery
    order) and ``n_dims`` dimension columns grow as rings and dimensions are declared."""

    def __init__(self, width: int = 0, n_dims: int = 0, capacity: int = 256):
        self.cnt = np.zeros(6, np.int64)
        self._batch: tuple = ()  # _add_points' batch rows (see _scratch)
        self.epoch = 0  # one per batch: a row's dimension conflict counts once per batch
        self._empty(width, n_dims)
        self._alloc(capacity, capacity, width, n_dims)

    def _empty(self, width: int, n_dims: int) -> None:
        self.t_id, self.t_live = np.empty(0, np.uint64), np.empty(0, np.uint8)
        self.t_head, self.t_rows, self.t_free = (np.empty(0, np.int64) for _ in range(3))
        self.r_next, self.r_free = np.empty(0, np.int64), np.empty(0, np.int64)
        self.r_leg, self.r_live = np.empty(0, np.int32), np.empty(0, np.uint8)
        self.ts, self.src = np.empty((0, width), np.int64), np.empty((0, width), np.int16)
        self.dims = np.empty((0, n_dims), np.int32)
        self.arrived, self.round, self.r_epoch, self.r_batch = (np.empty(0, np.int64) for _ in range(4))
        self.dup = np.empty(0, np.bool_)
        self.cnt[[TRACES, ROWS, TRACE_FREE, ROW_FREE]] = 0

    def _alloc(self, traces: int, rows: int, width: int, n_dims: int) -> None:
        """(Re)size every array, keeping what is held; the new slots go on the free stacks."""
        t0, r0 = self.t_id.size, self.r_leg.size
        width, n_dims = max(width, self.ts.shape[1]), max(n_dims, self.dims.shape[1])

        def grow(a, shape, fill=0):
            out = np.full(shape, fill, a.dtype)
            out[tuple(slice(0, s) for s in a.shape)] = a
            return out

        self.t_id, self.t_live, self.t_rows = (grow(a, traces) for a in (self.t_id, self.t_live, self.t_rows))
        self.t_head = grow(self.t_head, traces, -1)
        self.r_leg, self.r_live = grow(self.r_leg, rows), grow(self.r_live, rows)
        self.arrived, self.round, self.dup = (grow(a, rows) for a in (self.arrived, self.round, self.dup))
        self.r_next, self.r_epoch = grow(self.r_next, rows, -1), grow(self.r_epoch, rows, -1)
        self.r_batch = grow(self.r_batch, rows)
        self.ts, self.src = grow(self.ts, (rows, width)), grow(self.src, (rows, width))
        self.dims = grow(self.dims, (rows, n_dims))
        c = self.cnt
        free_t = np.concatenate((np.arange(traces - 1, t0 - 1, -1), self.t_free[: c[TRACE_FREE]]))
        free_r = np.concatenate((np.arange(rows - 1, r0 - 1, -1), self.r_free[: c[ROW_FREE]]))
        self.t_free, self.r_free = grow(free_t, traces), grow(free_r, rows)
        c[TRACE_FREE], c[ROW_FREE] = free_t.size, free_r.size
        if traces != t0:
            size = 4
            while size < 2 * traces:  # at most half full: probe runs stay short
                size *= 2
            self.h_val = np.full(size, -1, np.int64)
            _rehash(self.h_val, self.t_id, self.t_live)

    def shape(self, width: int, n_dims: int) -> None:
        """Make room for ``width`` stamp columns and ``n_dims`` dimensions."""
        if width > self.ts.shape[1] or n_dims > self.dims.shape[1]:
            self._alloc(self.t_id.size, self.r_leg.size, width, n_dims)

    def _room(self, new_rows: int, new_traces: int | None = None) -> None:
        """Room for ``new_rows`` more rows and ``new_traces`` more traces (default: each row may
        open one) without growing mid-kernel."""
        c = self.cnt
        new_traces = new_rows if new_traces is None else new_traces
        if c[TRACE_FREE] >= new_traces and c[ROW_FREE] >= new_rows:
            return
        traces = max(2 * self.t_id.size, int(c[TRACES]) + new_traces)
        rows = max(2 * self.r_leg.size, int(c[ROWS]) + new_rows)
        self._alloc(traces, rows, self.ts.shape[1], self.dims.shape[1])

    @property
    def rows(self) -> int:
        return int(self.cnt[ROWS])

    @property
    def traces(self) -> int:
        return int(self.cnt[TRACES])

    @property
    def duplicate_stamps(self) -> int:
        return int(self.cnt[DUP_STAMPS])

    @property
    def dimension_conflicts(self) -> int:
        return int(self.cnt[DIM_CONFLICTS])

    def _state(self):
        return (self.h_val, self.t_id, self.t_live, self.t_head, self.t_rows, self.r_next, self.r_leg,
                self.r_live, self.t_free, self.r_free, self.ts, self.src, self.dims, self.arrived, self.round,
                self.dup, self.r_epoch, self.cnt)  # fmt: skip

    def add_rows(self, ids, legs, ts, src, dims, dup, arrived_ns: int, rnd: int, per_leg) -> None:
        """Stamp rows (``ts``/``src``: ``width`` columns; ``arrived_ns`` -1: each part's newest stamp)."""
        self._room(2 * ids.size)
        self.epoch += 1
        _merge_rows(ids, legs, ts, src, dims, dup, arrived_ns, rnd, per_leg, self.epoch, *self._state())

    def add_points(
        self, ids, legs, cols, ts, dims, src_value: int, arrived_ns: int, rnd: int, per_leg
    ) -> None:
        """Point records of one ring (``legs``: each record's leg, ignored on shared points)."""
        self.epoch += 1
        while True:
            self._scratch()
            traces, rows = _add_points(ids, legs, cols, ts, dims, np.int16(src_value), arrived_ns, rnd, per_leg,
                                       self.epoch, *self._batch, self.r_batch, *self._state())  # fmt: skip
            if rows == 0:
                return
            self._room(rows, traces)
            self._scratch(rows)

    def _scratch(self, rows: int = 0) -> None:
        """``_add_points``' batch rows, room for ``rows``: kept between batches, grown by doubling."""
        w, nd = self.ts.shape[1], self.dims.shape[1]
        B = self._batch
        if B and B[0].size >= rows and B[4].shape[1] == w and B[6].shape[1] == nd:
            return
        size = max(rows, 2 * B[0].size if B else 0, 64)
        self._batch = (np.empty(size, np.int64), np.empty(size, np.bool_), np.empty(size, np.bool_),
                       np.empty(size, np.bool_), np.empty((size, w), np.int64), np.empty((size, w), np.int16),
                       np.empty((size, nd), np.int32))  # fmt: skip

    def close(
        self, sink, tick_of, tick_only, round_now: int, cutoff: int, force: bool, max_pending: int, order
    ):
        """Take out the traces that close (every one if ``force``): those whose final point
        (``sink``, a column mask) arrived, on every leg row, or that are decided (a tick ring, ``tick_tables``,
        delivered them without one of its own points), once a drain round later than their newest
        stamp's began (``round_now``); those that received nothing since ``cutoff``; then, while
        more than ``max_pending`` stay open, the stalest (equals: the lowest trace id), evicted.

        Returns the rows measured, sorted by (trace id, leg) (see ``_take``: ids, legs, stamps in
        pipeline order (``order``), sources, arrived, stamped twice, evicted, dims, the trace's own
        dims), and how many traces were evicted."""
        slots, ids, arrived, closes = _close_scan(
            self.t_live, self.t_id, self.t_head, self.r_next, self.r_leg, self.ts, self.src, self.arrived, self.round, sink,
            tick_of, tick_only, round_now, cutoff, force, self.traces,
        )  # fmt: skip
        evict = np.zeros(slots.size, bool)
        overflow = 0 if force else slots.size - int(closes.sum()) - max_pending
        if overflow > 0:
            still = np.flatnonzero(~closes)
            stalest = still[np.lexsort((ids[still], arrived[still]))[:overflow]]
            closes[stalest] = evict[stalest] = True
        sel = np.flatnonzero(closes)
        sel = sel[_by_id(ids[sel])]
        return (*self.take(slots[sel], evict[sel], order), max(overflow, 0))

    def take(self, slots, evict_t, order):
        """Take traces out (see ``_take``)."""
        return _take(slots, evict_t, order, self.h_val, self.t_id, self.t_live, self.t_head, self.t_rows,
                     self.r_next, self.r_leg, self.r_live, self.t_free, self.r_free, self.ts, self.src, self.dims,
                     self.arrived, self.dup, self.cnt)  # fmt: skip

    def clear(self) -> int:
        """Drop every open row; return how many there were."""
        n = self.rows
        width, n_dims = self.ts.shape[1], self.dims.shape[1]
        self._empty(width, n_dims)
        self._alloc(256, 256, width, n_dims)
        return n

    def live_src(self) -> np.ndarray:
        """The source values of every stamp held."""
        return self.src[self.r_live.astype(bool)]


def tick_tables(rings, width: int):
    """``(tick_of, tick_only)`` for ``_close_scan``: for each tick ring (one record per trace) with
    points no other ring declares, its row of those points; ``tick_of[src value]`` its row or -1.
    (A point another ring declares may still come from it, even one the tick ring only declares to
    say where its points sit.)"""
    declared: dict[int, int] = {}
    for _, cols, _ in rings:
        for c in cols:
            declared[int(c)] = declared.get(int(c), 0) + 1
    tick_of = np.full(_RING_VALUES, -1, np.int32)
    only = []
    for value, cols, tick in rings:
        only_tick = [int(c) for c in cols if declared[int(c)] == 1 and c < width]
        if tick and only_tick:
            tick_of[value] = len(only)
            row = np.zeros(width, np.bool_)
            row[only_tick] = True
            only.append(row)
    return tick_of, np.array(only, np.bool_).reshape(len(only), width)


@functools.cache  # once per process
def warm() -> None:
    """Compile (or load from the cache) every kernel, with the dtypes the correlator passes; once
    per process. A first compile takes seconds: done mid-drain, it would hold traces past their
    linger time and close them in pieces."""
    t = PendingTable(2, 1, capacity=4)
    per_leg = np.array([False, True])
    ids = np.array([7, 7, 9], np.uint64)
    t.add_points(ids, np.array([-1, 0, -1], np.int32), np.array([0, 1, 0], np.int64),
                 np.array([5, 6, 5], np.int64), np.ones((3, 1), np.int32), 0, -1, 0, per_leg)  # fmt: skip
    t.add_rows(ids, np.zeros(3, np.int32), np.ones((3, 2), np.int64), np.ones((3, 2), np.int16),
               np.zeros((3, 1), np.int32), np.zeros(3, np.bool_), 9, 1, per_leg)  # fmt: skip
    tick_of, tick_only = tick_tables([(1, np.array([0, 1]), True)], 2)
    t.close(per_leg, tick_of, tick_only, 2, 0, False, 0, np.array([0, 1], np.int64))
