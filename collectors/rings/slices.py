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

from tickscope.collectors.rings.attribution import TailAttribution, kernels
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
        self.attribution: TailAttribution | None = None  # one population per label
        self.slot: dict[str, int] = {}  # label -> its population in ``attribution``

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
        kernels()  # loaded with the collector, not at its first trade

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
        tick's values and the leg's; the tail attribution per order, over all the trade stages.
        Per slicing, every value's histograms are filled by one ``hists.record_groups`` pass and
        its attribution by one ``TailAttribution.add``, whatever the number of values."""
        dims = rows["dims"]
        if dims.size == 0 or dims.shape[1] == 0:
            return
        names = list(dimensions)
        t2t, t2d = rows["tick_to_trade"], rows["tick_to_decision"]
        traded = np.flatnonzero(t2t >= 0)  # row i of ``spans`` is row traded[i]
        spans = (
            trade_spans
            if trade_spans is not None
            else np.full((traded.size, len(trade_stages)), NOT_TAKEN, np.int64)
        )
        per_tick = set(tick_stages) if ticks is not None else set()
        leg_stages = [j for j, s in enumerate(trade_stages) if s not in per_tick]
        columns = [TICK_TO_TRADE, TICK_TO_DECISION] + [trade_stages[j] for j in leg_stages]
        trades = None  # made ready once for every slicing's attribution
        for sl in self._slicings(names[: dims.shape[1]]):
            at = [names.index(d) for d in sl.dims]
            labels, label = self._labelled(sl, dims[:, at], dimensions, warmup, sl.rows, sl.warm)
            if labels:
                c = len(columns)
                of_trade = label[traded]
                # one value (and group: label x column) per row and column; -1 is recorded nowhere
                groups = [np.where(of_trade >= 0, of_trade * c, -1),
                          np.where((label >= 0) & (t2d >= 0), label * c + 1, -1)]  # fmt: skip
                values = [t2t[traded], t2d]
                for col, j in enumerate(leg_stages, start=2):
                    groups.append(
                        np.where((of_trade >= 0) & (spans[:, j] != NOT_TAKEN), of_trade * c + col, -1)
                    )
                    values.append(spans[:, j])  # a 0 ns stage is one sample
                hists.record_groups([col + lab for lab in labels for col in columns],
                                    np.concatenate(groups), np.concatenate(values))  # fmt: skip
                if sl.attribution is None or sl.attribution.stages != list(trade_stages):
                    # a ring declaring trade points after trades were attributed: start over on them
                    sl.attribution, sl.slot = TailAttribution(trade_stages, layout), {}
                if trades is None:
                    trades = sl.attribution.trades(spans, t2t[traded])
                slot_of = np.array([sl.slot.setdefault(lab, len(sl.slot)) for lab in labels] + [-1], np.int64)
                sl.attribution.add_trades(trades, slot_of[of_trade])  # of_trade -1: the last, -1
            if ticks is None or ticks["dims"].shape[1] <= max(at):
                continue
            labels, label = self._labelled(sl, ticks["dims"][:, at], dimensions, warmup, sl.ticks, {})
            if labels:
                k = len(tick_stages)
                groups = [np.where((label >= 0) & (ticks["spans"][:, j] != NOT_TAKEN), label * k + j, -1)
                          for j in range(k)]  # fmt: skip
                hists.record_groups([stage + lab for lab in labels for stage in tick_stages],
                                    np.concatenate(groups), ticks["spans"].T.reshape(-1))  # fmt: skip

    def _labelled(self, sl: Slicing, cols: np.ndarray, dimensions: dict[str, list[str]], warmup: bool,
                  counted: dict, warm: dict) -> tuple[list[str], np.ndarray]:  # fmt: skip
        """The labels of the rows of ``cols`` (value ids of the slicing's dimensions) and each row's
        position among them (-1: a row without a value of the slicing, in none of its slices), each
        row counted into ``counted`` (``warm`` in the warm-up, when nothing is recorded: no labels)."""
        labelled = (cols != 0).all(axis=1)
        if not labelled.any():
            return [], np.empty(0, np.int64)
        keys, inverse, counts = unique_rows(cols[labelled])
        for key, n in zip(map(tuple, keys.tolist()), counts.tolist(), strict=True):
            into = warm if warmup else counted
            into[key] = into.get(key, 0) + n
        if warmup:
            return [], np.empty(0, np.int64)
        labels: dict[str, int] = {}  # label -> its position; several values may share one (OTHER)
        label_of = np.empty(keys.shape[0], np.int64)
        for g, key in enumerate(map(tuple, keys.tolist())):
            value = sl.place(key)
            label = dimension_tag(
                "", {d: value or dimensions[d][i - 1] for d, i in zip(sl.dims, key, strict=True)}
            )
            label_of[g] = labels.setdefault(label, len(labels))
        row_label = np.full(cols.shape[0], -1, np.int64)
        row_label[labelled] = label_of[inverse.reshape(-1)]
        return list(labels), row_label

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
                att = None if tag_label not in sl.slot else sl.attribution.summary(sl.slot[tag_label])
                if att is not None:
                    v["attribution"] = att
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
    span = int(np.prod(radix))
    if span <= max(4 * cols.shape[0], 1 << 16):
        # Few possible keys (a flush's symbols x venues): counted in place, no sort.
        every = np.bincount(packed, minlength=span)
        u = np.flatnonzero(every)
        rank = np.zeros(span, np.int64)
        rank[u] = np.arange(u.size)
        inverse, counts = rank[packed], every[u]
    else:
        u, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    keys = np.empty((u.size, cols.shape[1]), cols.dtype)
    for j in reversed(range(cols.shape[1])):
        u, keys[:, j] = np.divmod(u, radix[j])
    return keys, inverse, counts
