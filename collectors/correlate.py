"""Correlation: records of many rings -> per-trace stamp rows -> stage latencies.

A trace is one tick's journey, keyed by its 64-bit trace id. Its stamps are kept as one row of a
matrix with a column per probe point (0 = not reached), so every step below is a numpy operation
over whole batches of traces, never a Python loop per record.

Rules (stated once, used everywhere):
- Points have one pipeline order (``TraceSchema.order``), merged from the rings' point tables.
- A trace is *complete* when its points form a prefix of that order: first point present and no
  hole. Complete traces yield one value per stage (stage j spans point j-1 -> j, named after
  point j's declared stage) and either ``tick_to_trade`` (they reached the trade point) or
  ``tick_to_decision`` (they stopped earlier: a tick that led to no order).
- A trace with a hole or without its first point is *incomplete*: counted, never interpolated.
- A trace with a negative stage (clocks disagree) is counted as ``clock_skew``, not recorded.
- A trace closes once its final point has arrived and a later drain round has begun (its other
  points may sit in a ring drained after the final point's), when nothing arrived for it for
  ``linger_ns`` of collector time, or when the session ends.
- It also closes after a later drain round once it is *decided*: a tick record of it left out a
  point that only tick rings declare. A tick ring writes one record per trace, so that point will
  never come, the trade point cannot be reached as a complete trace, and waiting would only hold
  memory (most ticks lead to no order: without this rule they all wait out ``linger_ns``).
Because stages telescope, the stages up to the trade point sum exactly to tick-to-trade.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TICK_TO_TRADE = "tick_to_trade"
TICK_TO_DECISION = "tick_to_decision"


@dataclass
class TraceSchema:
    """The merged point table: append-only columns, plus the pipeline order over them."""

    names: list[str] = field(default_factory=list)  # column -> point name (discovery order)
    stage_of: dict[str, str] = field(default_factory=dict)  # point -> stage name ending there
    trade_points: set[str] = field(default_factory=set)
    order_names: list[str] = field(default_factory=list)  # pipeline order

    def merge(self, points) -> list[int]:
        """Add a ring's points (objects with name/stage/flags, in that ring's order); return their columns."""
        names = [p.name for p in points]
        for i, p in enumerate(points):
            if p.name not in self.names:
                self.names.append(p.name)
                self._insert_in_order(p.name, names[:i], names[i + 1 :])
            if p.stage and not self.stage_of.get(p.name):
                self.stage_of[p.name] = p.stage
            if p.flags & 1:
                self.trade_points.add(p.name)
        return [self.names.index(n) for n in names]

    def _insert_in_order(self, name: str, before: list[str], after: list[str]) -> None:
        known_before = [n for n in before if n in self.order_names]
        if known_before:
            self.order_names.insert(self.order_names.index(known_before[-1]) + 1, name)
            return
        known_after = [n for n in after if n in self.order_names]
        if known_after:
            self.order_names.insert(self.order_names.index(known_after[0]), name)
        else:
            self.order_names.append(name)

    @property
    def order(self) -> np.ndarray:
        return np.array([self.names.index(n) for n in self.order_names], dtype=np.intp)

    @property
    def stages(self) -> list[str]:
        """Stage names in pipeline order (stage j ends at point j, j >= 1)."""
        return [self.stage_of.get(n) or n for n in self.order_names[1:]]

    @property
    def trade_index(self) -> int:
        """Position (in pipeline order) where tick-to-trade ends."""
        marked = [i for i, n in enumerate(self.order_names) if n in self.trade_points]
        return marked[0] if marked else len(self.order_names) - 1

    def to_meta(self) -> dict:
        return {
            "points": list(self.order_names),
            "stages": [
                {"name": s, "from": a, "to": b}
                for s, a, b in zip(self.stages, self.order_names, self.order_names[1:], strict=False)
            ],
            "trade_point": self.order_names[self.trade_index] if self.order_names else None,
        }


@dataclass
class Closed:
    """What one flush closed: latency values per tag, counts, and the slowest complete traces."""

    values: dict[str, np.ndarray]
    complete: int = 0
    incomplete: int = 0
    clock_skew: int = 0
    slow_rows: np.ndarray | None = None  # ordered stamps (pipeline order) of the slowest traces
    slow_src: np.ndarray | None = None
    slow_ids: np.ndarray | None = None
    slow_key: np.ndarray | None = None


class Correlator:
    def __init__(self, schema: TraceSchema, *, linger_ns: int = 250_000_000, max_pending: int = 1 << 20,
                 slowest: int = 20):  # fmt: skip
        self.schema = schema
        self.linger_ns = linger_ns
        self.max_pending = max_pending
        self.slowest = slowest
        self.round = 0  # drain rounds begun by the caller (see advance())
        self._ids = np.empty(0, np.uint64)
        self._ts = np.empty((0, 0), np.int64)
        self._src = np.empty((0, 0), np.int16)  # ring index + 1 of each stamp, 0 = absent
        self._arrived = np.empty(0, np.int64)  # collector time a row last received a stamp
        self._round = np.empty(0, np.int64)  # drain round of that arrival
        self.duplicate_stamps = 0
        self.evicted = 0
        self._rings: list[tuple[int, np.ndarray, bool]] = []  # (src value, columns, is a tick ring)

    def declare_ring(self, index: int, columns, tick: bool) -> None:
        """Tell the correlator which columns ring ``index`` writes, and whether one record per trace."""
        self._rings.append((index + 1, np.asarray(columns, np.intp), tick))

    def _decided(self, present: np.ndarray) -> np.ndarray:
        """Rows (raw column layout) whose tick record left out a point no point ring declares."""
        decided = np.zeros(present.shape[0], bool)
        point_cols = {int(c) for _, cols, tick in self._rings if not tick for c in cols}
        for value, cols, tick in self._rings:
            only_tick = [int(c) for c in cols if int(c) not in point_cols and c < present.shape[1]]
            if not tick or not only_tick:
                continue
            delivered = (self._src == value).any(axis=1)
            decided |= delivered & ~present[:, only_tick].all(axis=1)
        return decided

    def advance(self) -> None:
        """Begin a drain round: the caller drains every ring once before the next call."""
        self.round += 1

    @property
    def pending(self) -> int:
        return int(self._ids.size)

    def _width(self, m: np.ndarray, fill=0) -> np.ndarray:
        n = len(self.schema.names)
        if m.shape[1] == n:
            return m
        out = np.full((m.shape[0], n), fill, dtype=m.dtype)
        out[:, : m.shape[1]] = m
        return out

    def add_rows(
        self, trace: np.ndarray, ts: np.ndarray, src: np.ndarray, arrived_ns: int | None = None
    ) -> None:
        """Add stamp rows: ``ts[k, column]`` in monotonic ns (0 = absent), ``src`` likewise.

        ``arrived_ns`` is the collector's clock now (default: each row's newest stamp).
        """
        if trace.size == 0:
            return
        self._ts = self._width(self._ts)
        self._src = self._width(self._src)
        ts, src = self._width(ts), self._width(src)
        ids = np.concatenate((self._ids, trace.astype(np.uint64, copy=False)))
        T = np.concatenate((self._ts, ts))
        S = np.concatenate((self._src, src))
        arrived = ts.max(axis=1) if arrived_ns is None else np.full(trace.size, arrived_ns, np.int64)
        arrived = np.concatenate((self._arrived, arrived))
        rounds = np.concatenate((self._round, np.full(trace.size, self.round, np.int64)))
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        T, S, arrived, rounds = T[order], S[order], arrived[order], rounds[order]
        if starts.size != ids.size:
            present = np.add.reduceat((T != 0).astype(np.int32), starts, axis=0)
            self.duplicate_stamps += int(np.clip(present - 1, 0, None).sum())
            T = np.maximum.reduceat(T, starts, axis=0)
            S = np.maximum.reduceat(S, starts, axis=0)
            arrived = np.maximum.reduceat(arrived, starts)
            rounds = np.maximum.reduceat(rounds, starts)
            ids = ids[starts]
        self._ids, self._ts, self._src, self._arrived, self._round = ids, T, S, arrived, rounds

    def add_points(self, trace: np.ndarray, column: np.ndarray, ts: np.ndarray, src: int,
                   arrived_ns: int | None = None) -> None:  # fmt: skip
        """Add point records (one stamp each) by grouping them into rows first."""
        if trace.size == 0:
            return
        n = len(self.schema.names)
        uniq, inv = np.unique(trace, return_inverse=True)
        cell = inv.astype(np.int64) * n + column
        hits = np.bincount(cell, minlength=uniq.size * n)
        self.duplicate_stamps += int(np.clip(hits - 1, 0, None).sum())
        rows = np.zeros((uniq.size, n), np.int64)
        rows.reshape(-1)[cell] = ts
        srcs = np.zeros((uniq.size, n), np.int16)
        srcs.reshape(-1)[cell] = src + 1
        self.add_rows(uniq, rows, srcs, arrived_ns)

    def flush(self, now_ns: int, force: bool = False) -> Closed:
        """Close what is ready (see module rules) and turn it into latency values."""
        schema = self.schema
        tags = schema.stages + [TICK_TO_TRADE, TICK_TO_DECISION]
        empty = {t: np.empty(0, np.int64) for t in tags}
        if self._ids.size == 0:
            return Closed(values=empty)
        self._ts, self._src = self._width(self._ts), self._width(self._src)
        order = schema.order
        T = self._ts[:, order]
        present = T != 0
        final = present[:, -1]
        if force:
            close = np.ones(self._ids.size, bool)
        else:
            settled = (final | self._decided(self._ts != 0)) & (self._round < self.round)
            close = settled | (self._arrived < now_ns - self.linger_ns)
            overflow = self._ids.size - int(close.sum()) - self.max_pending
            if overflow > 0:  # keep memory bounded: close the stalest first
                stalest = np.argsort(self._arrived)[:overflow]
                close[stalest] = True
                self.evicted += overflow
        if not close.any():
            return Closed(values=empty)
        C, P, S, ids = T[close], present[close], self._src[close][:, order], self._ids[close]
        keep = ~close
        self._ids, self._ts, self._src = self._ids[keep], self._ts[keep], self._src[keep]
        self._arrived, self._round = self._arrived[keep], self._round[keep]

        count = P.sum(axis=1)
        prefix = np.logical_and.accumulate(P, axis=1).sum(axis=1)
        complete = (prefix == count) & P[:, 0]
        D = np.diff(C, axis=1)
        valid = P[:, 1:]
        skew = complete & ((D < 0) & valid).any(axis=1)
        good = complete & ~skew
        values: dict[str, np.ndarray] = {}
        for j, stage in enumerate(schema.stages):
            sel = good & valid[:, j]
            values[stage] = np.concatenate((values[stage], D[sel, j])) if stage in values else D[sel, j]
        trade = schema.trade_index
        reached = good & P[:, trade]
        t2t = C[reached, trade] - C[reached, 0]
        values[TICK_TO_TRADE] = t2t
        decided = good & ~P[:, trade] & (count >= 2)
        last = np.take_along_axis(C, (count - 1)[:, None], axis=1)[:, 0]
        values[TICK_TO_DECISION] = last[decided] - C[decided, 0]
        closed = Closed(
            values=values,
            complete=int(good.sum()),
            incomplete=int((~complete).sum()),
            clock_skew=int(skew.sum()),
        )
        if self.slowest and t2t.size:
            k = min(self.slowest, t2t.size)
            top = np.argpartition(t2t, t2t.size - k)[-k:]
            rows = np.flatnonzero(reached)[top]
            closed.slow_rows, closed.slow_src, closed.slow_ids, closed.slow_key = (
                C[rows],
                S[rows],
                ids[rows],
                t2t[top],
            )
        return closed
