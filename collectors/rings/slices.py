"""Slicing by dimension: each recorded row (one per trace, one per leg of a fanned-out trace) goes
into the histograms of its dimension values, tagged as collectors/session/dimensions.py names them.

Per value of a slicing (one dimension, or several together): ``tick_to_trade``,
``tick_to_decision``, the trade stages after the fan-out over the traded rows (each order one
sample: the population of the value's tick-to-trade) and a tail attribution over those orders;
the stages before the fan-out over every tick recorded with the value as its own (``Closed.ticks``:
values attached at shared points), each tick once, traded or not. A value attached only to legs
(a venue) never labels a stage the ticks share: whose venue would a tick with two legs have?

Memory is bounded by the cap, whatever the universe of values: a value's histograms are ~225 KB
each, so only ``cap`` values per slicing get their own; the others share one histogram under
``*other`` and are still counted row by row (``summary()``). Which values: the most frequent of
the warm-up (warm-up rows are counted, not histogrammed, as everywhere), then first come while
room is left. A value never moves between its own histograms and ``*other``, so each value's
histograms hold all its rows from the end of the warm-up on, exactly.
"""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.rings.attribution import TailAttribution
from tickscope.collectors.rings.correlate import NOT_TAKEN, TICK_TO_DECISION, TICK_TO_TRADE
from tickscope.collectors.session.dimensions import DEFAULT_CAP, OTHER, dimension_tag


class Slicing:
    """One slicing (a tuple of dimension names): its value tuples, which have histograms, their counts."""

    def __init__(self, dims: tuple[str, ...], cap: int):
        self.dims, self.cap = dims, cap
        self.rows: dict[tuple[int, ...], int] = {}  # value ids -> rows recorded (after the warm-up)
        self.warm: dict[tuple[int, ...], int] = {}  # value ids -> rows of the warm-up (which get slots)
        self.ticks: dict[tuple[int, ...], int] = {}  # value ids -> ticks recorded with them as their own
        self.label: dict[tuple[int, ...], str | None] = {}  # value ids -> own (None) or OTHER
        self.own = 0
        self.chosen = False  # the warm-up's most frequent values got their slots
        self.attribution: dict[tuple[int, ...] | str, TailAttribution] = {}

    def place(self, key: tuple[int, ...]) -> str | None:
        """None: the value has its own histograms; OTHER: it shares them."""
        if not self.chosen:
            self.chosen = True
            for k in sorted(self.warm, key=lambda k: -self.warm[k])[: self.cap]:
                self.label[k] = None
            self.own = sum(1 for v in self.label.values() if v is None)
        if key not in self.label:
            room = self.own < self.cap
            self.label[key] = None if room else OTHER
            self.own += room
        return self.label[key]


class DimensionSlices:
    """Per-dimension-value histograms, recorded into the collector's ``HistogramSet`` under
    per-dimension tags (so they roll, total and reach the hlog with every other tag)."""

    def __init__(self, cap: int = DEFAULT_CAP, combinations: list[tuple[str, ...]] | None = None):
        if cap < 1:
            raise ValueError(f"the dimension value cap must be at least 1, got {cap}")
        self.cap = cap
        self.combinations = [tuple(c) for c in combinations or []]
        self.slicings: dict[tuple[str, ...], Slicing] = {}

    def _slicings(self, dimensions: list[str]) -> list[Slicing]:
        wanted = [(d,) for d in dimensions] + [
            c for c in self.combinations if all(d in dimensions for d in c)
        ]
        for dims in wanted:
            if dims not in self.slicings:
                self.slicings[dims] = Slicing(dims, self.cap)
        return [self.slicings[d] for d in wanted]

    def add(self, hists, rows: dict, trade_spans: np.ndarray | None, trade_stages: list[str],
            dimensions: dict[str, list[str]], warmup: bool, layout: HdrHistogram,
            ticks: dict | None = None, tick_stages: list[str] = ()) -> None:  # fmt: skip
        """One flush's recorded rows (``Closed.rows``), the trade spans of its traded rows and its
        ticks (``Closed.ticks``: each recorded tick once, its own values, its ``tick_stages``' spans).

        A stage before the fan-out is recorded per tick under the tick's own values (all ticks,
        traded or not: a leg's venue never labels it); the stages after it per order under the
        tick's values and the leg's; the tail attribution per order, over all the trade stages."""
        dims = rows["dims"]
        if dims.size == 0 or dims.shape[1] == 0:
            return
        names = list(dimensions)
        t2t, t2d = rows["tick_to_trade"], rows["tick_to_decision"]
        traded = t2t >= 0
        spans = (
            trade_spans
            if trade_spans is not None
            else np.full((int(traded.sum()), len(trade_stages)), NOT_TAKEN, np.int64)
        )
        span_of = np.cumsum(traded) - 1  # a traded row -> its row of ``spans``
        per_tick = set(tick_stages) if ticks is not None else set()
        leg_stages = [(j, s) for j, s in enumerate(trade_stages) if s not in per_tick]
        for sl in self._slicings(names[: dims.shape[1]]):
            at = [names.index(d) for d in sl.dims]
            for label, rows_of in self._grouped(sl, dims[:, at], dimensions, warmup, sl.rows, sl.warm):
                traded_rows = rows_of[traded[rows_of]]
                hists.record(TICK_TO_TRADE + label, t2t[traded_rows])
                hists.record(TICK_TO_DECISION + label, t2d[rows_of[t2d[rows_of] >= 0]])
                if traded_rows.size == 0:
                    continue
                mine = spans[span_of[traded_rows]]
                for j, stage in leg_stages:
                    s = mine[:, j]
                    hists.record(stage + label, s[s != NOT_TAKEN])  # a 0 ns stage is one sample
                att = sl.attribution.get(label)
                if att is None or att.stages != list(trade_stages):
                    att = sl.attribution[label] = TailAttribution(trade_stages, layout)
                att.add(mine, t2t[traded_rows])
            if ticks is None or ticks["dims"].shape[1] <= max(at):
                continue
            for label, ticks_of in self._grouped(sl, ticks["dims"][:, at], dimensions, warmup, sl.ticks, {}):
                mine = ticks["spans"][ticks_of]
                for j, stage in enumerate(tick_stages):
                    s = mine[:, j]
                    hists.record(stage + label, s[s != NOT_TAKEN])

    def _grouped(self, sl: Slicing, cols: np.ndarray, dimensions: dict[str, list[str]], warmup: bool,
                 counted: dict, warm: dict):  # fmt: skip
        """(label, its rows) of the rows of ``cols`` (value ids of the slicing's dimensions), each
        row counted into ``counted`` (``warm`` in the warm-up, when nothing is recorded)."""
        labelled = (cols != 0).all(axis=1)  # a row without a value of the slicing is in none of its slices
        if not labelled.any():
            return
        keys, inverse, counts = unique_rows(cols[labelled])
        for key, n in zip(map(tuple, keys.tolist()), counts.tolist(), strict=True):
            into = warm if warmup else counted
            into[key] = into.get(key, 0) + n
        if warmup:
            return
        labels: dict[str, int] = {}  # label -> its position; several values may share one (OTHER)
        label_of = np.empty(keys.shape[0], np.int64)
        for g, key in enumerate(map(tuple, keys.tolist())):
            value = sl.place(key)
            label = dimension_tag(
                "", {d: value or dimensions[d][i - 1] for d, i in zip(sl.dims, key, strict=True)}
            )
            label_of[g] = labels.setdefault(label, len(labels))
        # Rows grouped by label once (a stable sort keeps each label's rows in arrival order,
        # which the attribution's reservoir follows), instead of a pass over all rows per label.
        row_label = np.full(cols.shape[0], len(labels), np.int64)
        row_label[labelled] = label_of[inverse.reshape(-1)]
        order = np.argsort(row_label, kind="stable")
        ends = np.searchsorted(row_label[order], np.arange(len(labels) + 1))
        for label, at in labels.items():
            yield label, order[ends[at] : ends[at + 1]]

    def summary(self, dimensions: dict[str, list[str]], hist_summaries: dict[str, dict]) -> dict:
        """summary.json's ``dimensions`` (docs/session-format.md): per slicing, its cap, rows per value
        (every value, also those under ``*other``), and per labelled value its rows by tag and tail
        attribution. ``hist_summaries``: the per-dimension tags' summary rows."""
        out = {}
        for dims, sl in self.slicings.items():
            name = ",".join(dims)

            def said(key, sl=sl):
                return ",".join(dimensions[d][i - 1] for d, i in zip(sl.dims, key, strict=True))

            values: dict[str, dict] = {}
            for key, label in sl.label.items():
                value = OTHER if label == OTHER else said(key)
                tag_label = dimension_tag("", {d: label or dimensions[d][i - 1]
                                               for d, i in zip(sl.dims, key, strict=True)})  # fmt: skip
                v = values.setdefault(value, {"rows": 0, "tags": {}})
                v["rows"] += sl.rows.get(key, 0)
                if sl.ticks:
                    v["ticks"] = v.get("ticks", 0) + sl.ticks.get(key, 0)
                if label == OTHER:
                    v.setdefault("values", []).append(said(key))
                for tag, row in hist_summaries.items():
                    if tag.endswith(tag_label) and "|" not in tag[: -len(tag_label)]:
                        v["tags"][tag[: -len(tag_label)]] = row
                att = sl.attribution.get(tag_label)
                if att is not None and att.summary() is not None:
                    v["attribution"] = att.summary()
            out[name] = {"cap": sl.cap, "values": values}
        return out


def unique_rows(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(cols, axis=0, return_inverse=True, return_counts=True)`` for value ids (>= 0):
    each row packed into one int64 (first column most significant, so the order is the same),
    as numpy's row-wise unique sorts a structured view ~50x slower than int64s."""
    radix = cols.max(axis=0, initial=0).astype(np.int64) + 1
    if float(np.prod(radix.astype(np.float64))) >= 2.0**62:  # never with 16-bit value ids and few dimensions
        return np.unique(cols, axis=0, return_inverse=True, return_counts=True)
    packed = np.zeros(cols.shape[0], np.int64)
    for j in range(cols.shape[1]):
        packed = packed * radix[j] + cols[:, j]
    u, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    keys = np.empty((u.size, cols.shape[1]), cols.dtype)
    for j in reversed(range(cols.shape[1])):
        u, keys[:, j] = np.divmod(u, radix[j])
    return keys, inverse, counts
