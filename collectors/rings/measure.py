"""The flush's kernels: the rows of closed traces measured and judged, each row touched once.

``spans`` walks a row's points in pipeline order once: whether they step along declared edges
from a start (the path), the span of each step, tick-to-trade and tick-to-decision. ``judge``
then gives every row its one outcome (``SET_ASIDE`` order) and gathers the recorded stage values.
The rules are the correlator's (module docstring of ``correlate.py``); this is their one
implementation. Numba kernels compiled once per host and cached (see pending.py).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

NOT_TAKEN = -1  # correlate.NOT_TAKEN: a span of a stage the row did not take

# Per-flush tallies (``judge``): one outcome per row
COMPLETE, EVICTED, DUPLICATE, INCOMPLETE, CLOCK_SKEW, OUT_OF_RANGE = range(6)


@njit(cache=True, nogil=True, inline="always")
def _span(a, b, scale):
    """b - a: ns, or ticks of one TSC domain times its rate (``scale`` > 0), rounded once."""
    if scale > 0:
        return np.int64(np.rint((b - a) * scale))
    return b - a


@njit(cache=True, nogil=True)
def spans(C, S, ticks, domain, rate, source, adj, trade_cols, sink):
    """Per row of stamps ``C`` (pipeline order, 0 = absent) from rings ``S`` (ring index + 1):
    points present, on a declared path, first and last point, the trade point reached
    (``trade_cols``: the first present, else the first of them), reached a final point
    (``sink``); per column j > 0 whether a step ends there (``valid``) and its span from the
    previous point present (``D``, 0 where no step); tick-to-trade (rows that reached a trade
    point) and tick-to-decision (rows of two points or more that did not), 0 elsewhere.

    Clocks: ``ticks[ring, j]`` says ring stamps column j in TSC ticks (rings past its rows stamp
    none), of TSC ``domain[ring]`` at ``rate[ring]`` ns per tick (0: the rate changed mid-run).
    A row whose stamps are all ticks of one domain with one rate is measured in ticks times that
    rate (the rate of its highest ring), a row without ticks in ns. Any other row is left to the
    caller (``side``: its spans 0, its steps' previous points in its row of ``prev``)."""
    n, w = C.shape
    ws = max(w - 1, 0)
    scale = np.zeros(n)
    side_at = np.full(n, -1, np.int64)
    n_side = 0
    for r in range(n):
        any_tick, all_ticks, dom, top = False, True, np.int64(0), 0
        for j in range(w):
            if C[r, j] == 0:
                continue
            ring = S[r, j]
            top = max(top, ring)
            if ring < ticks.shape[0] and ticks[ring, j]:
                if any_tick and domain[ring] != dom:
                    all_ticks = False  # two domains
                any_tick, dom = True, domain[ring]
            else:
                all_ticks = False
        if any_tick:
            if all_ticks and rate[top] > 0:
                scale[r] = rate[top]
            else:
                side_at[r] = n_side
                n_side += 1
    side_rows = np.flatnonzero(side_at >= 0)
    D = np.zeros((n, ws), np.int64)
    valid = np.zeros((n, ws), np.bool_)
    count = np.zeros(n, np.int64)
    on_path = np.zeros(n, np.bool_)
    first = np.zeros(n, np.int64)
    last = np.zeros(n, np.int64)
    trade_col = np.empty(n, np.int64)
    to_trade = np.zeros(n, np.bool_)
    at_sink = np.zeros(n, np.bool_)
    t2t = np.zeros(n, np.int64)
    t2d = np.zeros(n, np.int64)
    prev_of = np.full((n_side, w), -1, np.int64)
    for r in range(n):
        s, side = scale[r], side_at[r]
        prev, f, cnt, path, final = -1, -1, 0, True, False
        for j in range(w):
            v = C[r, j]
            if v == 0:
                continue
            cnt += 1
            final |= sink[j]
            if prev < 0:
                f = j
                path = source[j]
            else:
                path &= adj[prev, j]
                valid[r, j - 1] = True
                if side >= 0:
                    prev_of[side, j] = prev
                else:
                    D[r, j - 1] = _span(C[r, prev], v, s)
            prev = j
        tc, hit = trade_cols[0], False
        for k in range(trade_cols.size):
            if C[r, trade_cols[k]] != 0:
                tc, hit = trade_cols[k], True
                break
        f, lst = max(f, 0), max(prev, 0)
        count[r], on_path[r], first[r], last[r], trade_col[r] = cnt, cnt > 0 and path, f, lst, tc
        to_trade[r], at_sink[r] = hit, final
        if side < 0:
            if hit:
                t2t[r] = _span(C[r, f], C[r, tc], s)
            elif cnt >= 2:
                t2d[r] = _span(C[r, f], C[r, lst], s)
    return D, valid, count, on_path, first, last, trade_col, to_trade, at_sink, t2t, t2d, side_rows, prev_of


@njit(cache=True, nogil=True)
def judge(ids, count, on_path, dup, evict, late_leg, D, valid, to_trade, trade_col, t2t, t2d, top, stage_kind,
          tcols, kcols):  # fmt: skip
    """Each row's one outcome, first that applies: evicted, duplicate, incomplete (off every
    declared path), clock skew (a negative step), out of range (a step, or the row's tick-to-trade
    or tick-to-decision, beyond ``top``; -1: no bound), else recorded (``good``). ``once``: the
    first recorded row of its trace (rows sorted by trace id), unless its trace's shared stages
    were recorded before (``late_leg``). Stage values per column j - 1 of ``stage_kind``: 1 a
    leg's stage (every recorded row), 2 a shared one (``once`` rows), 0 no stage; ``V[c, :nV[c]]``
    in row order. The spans of columns ``tcols`` of the recorded rows that reached a trade point,
    each up to its own (``trade[:n_trade]``), and of columns ``kcols`` of the ``once`` rows
    (``tick[:n_tick]``), NOT_TAKEN off the row's path."""
    n, ws = D.shape
    good = np.zeros(n, np.bool_)
    once = np.zeros(n, np.bool_)
    to_decision = np.zeros(n, np.bool_)
    V = np.empty((ws, n), np.int64)
    nV = np.zeros(ws, np.int64)
    tally = np.zeros(6, np.int64)
    trade = np.empty((n, tcols.size), np.int64)
    tick = np.empty((n, kcols.size), np.int64)
    n_trade = n_tick = 0
    seen_id, any_good = np.uint64(0), False
    for r in range(n):
        to_decision[r] = not to_trade[r] and count[r] >= 2
        if evict[r]:
            tally[EVICTED] += 1
            continue
        if dup[r]:
            tally[DUPLICATE] += 1
            continue
        if not on_path[r]:
            tally[INCOMPLETE] += 1
            continue
        negative, big = False, False
        for c in range(ws):
            if valid[r, c]:
                negative |= D[r, c] < 0
                big |= top >= 0 and D[r, c] > top
        if negative:
            tally[CLOCK_SKEW] += 1
            continue
        if top >= 0 and ((to_trade[r] and t2t[r] > top) or (to_decision[r] and t2d[r] > top)):
            big = True
        if big:
            tally[OUT_OF_RANGE] += 1
            continue
        good[r] = True
        tally[COMPLETE] += 1
        once[r] = (not any_good or ids[r] != seen_id) and not late_leg[r]
        seen_id, any_good = ids[r], True
        for c in range(ws):
            if valid[r, c] and (stage_kind[c] == 1 or (stage_kind[c] == 2 and once[r])):
                V[c, nV[c]] = D[r, c]
                nV[c] += 1
        if to_trade[r]:
            for i in range(tcols.size):
                c = tcols[i] - 1
                trade[n_trade, i] = D[r, c] if valid[r, c] and tcols[i] <= trade_col[r] else NOT_TAKEN
            n_trade += 1
        if once[r]:
            for i in range(kcols.size):
                c = kcols[i] - 1
                tick[n_tick, i] = D[r, c] if valid[r, c] else NOT_TAKEN
            n_tick += 1
    return good, once, to_decision, V, nV, tally, trade[:n_trade], tick[:n_tick]


@functools.cache  # once per process
def warm() -> None:
    """Compile (or load from the cache) both kernels with the dtypes the correlator passes; once
    per process."""
    C = np.array([[1, 2, 3], [4, 0, 6]], np.int64)
    flags = np.ones(3, np.bool_)
    S = np.array([[1, 1, 2], [1, 0, 1]], np.int16)
    D, valid, count, on_path, _, _, _, to_trade, _, t2t, t2d, _, _ = spans(
        C, S, np.ones((2, 3), np.bool_), np.ones(2, np.int32), np.array([0.0, 0.4]), flags,
        np.ones((3, 3), np.bool_), np.array([2], np.int64), flags,
    )  # fmt: skip
    no = np.zeros(2, np.bool_)
    cols = np.array([1, 2], np.int64)
    judge(np.array([1, 2], np.uint64), count, on_path, no, no, no, D, valid, to_trade, cols, t2t, t2d, -1,
          np.ones(2, np.int64), cols, cols)  # fmt: skip
