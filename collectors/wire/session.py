"""A normal session directory (meta.json, latency.hlog, summary.json) from a wire match."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .matcher import WireMatch
from .traces import i64

WIRE_STAGE = {"name": "wire_to_wire", "from": "wire.md", "to": "wire.order"}
WIRE_TAGS = ("wire_to_wire", "md.rx-wire.md", "wire.order-order.tx")


def interval_histograms(values: dict[str, tuple[np.ndarray, np.ndarray]], start_ns: int, interval_ns: int,
                        set_aside: dict[str, int] | None = None):  # fmt: skip
    """{tag: (stamps, values)} -> yields (start_s, end_s, {tag: histogram}) per interval that has
    data, in time order, stamps relative to ``start_ns``. Lazy: a histogram is ~220 KB of counts,
    so only one interval's are alive at a time however long the stamps span (a capture of orders
    an hour apart is thousands of intervals). Values no histogram can hold are not recorded: they
    are counted into ``set_aside`` as ``<tag>_negative`` and ``<tag>_beyond_range`` (above the
    highest trackable value, ~68.7 s) by the time this returns, never skipped in silence."""
    from tickscope.collectors.session.hdr import BulkRecorder, new_histogram

    recorder = BulkRecorder(new_histogram(), compiled=False)  # a batch per interval and tag: no numba to load
    by_slot = {}  # tag -> (slots sorted, values in that order)
    for tag, (st, v) in values.items():
        v = np.asarray(v, dtype=np.int64)
        if set_aside is not None:
            for key, n in ((f"{tag}_negative", np.count_nonzero(v < 0)),
                           (f"{tag}_beyond_range", np.count_nonzero(v > recorder.max_recordable))):  # fmt: skip
                if n:
                    set_aside[key] = set_aside.get(key, 0) + int(n)
        slot = (np.asarray(st, dtype=np.int64) - start_ns) // interval_ns
        order = np.argsort(slot, kind="stable")
        by_slot[tag] = (slot[order], v[order])
    slots = np.unique(np.concatenate([s for s, _ in by_slot.values()])) if by_slot else i64()
    return _each_interval(by_slot, slots, interval_ns, recorder)


def _each_interval(by_slot, slots: np.ndarray, interval_ns: int, recorder):
    from tickscope.collectors.session.hdr import new_histogram

    for slot in slots.tolist():
        hists = {}
        for tag, (s, v) in by_slot.items():
            lo, hi = np.searchsorted(s, slot), np.searchsorted(s, slot, side="right")
            if hi > lo:
                h = new_histogram()
                recorder.record(h, v[lo:hi])
                if h.total_count:
                    hists[tag] = h
        yield slot * interval_ns / 1e9, (slot + 1) * interval_ns / 1e9, hists


def write_session(m: WireMatch, out: Path, meta: dict, interval_s: float = 1.0) -> Path:
    """A normal session directory (meta.json, latency.hlog, summary.json) from a capture alone."""
    from tickscope.collectors.session import SessionWriter
    from tickscope.collectors.session.hdr import summarize

    start_ns = int(min(m.md_ts.min(initial=2**62), m.order_ts.min(initial=2**62)))
    if start_ns == 2**62:
        start_ns = 0
    from tickscope.collectors.run.metadata import run_meta

    meta = {**run_meta(measured_here=False), **meta}  # tool, version; this host analysed, not measured
    meta.update({"source": "wire", "points": ["wire.md", "wire.order"], "stages": [WIRE_STAGE],
                 "trade_point": "wire.order", "start_epoch_s": start_ns / 1e9})  # fmt: skip
    meta.setdefault("counters", {}).update(m.counters)
    meta.setdefault("wire", {})["warnings"] = m.warnings
    writer = SessionWriter(out, meta)
    w2w = m.wire_to_wire
    totals = {}
    # Negative: an order stamped before its market data (the clocks of two capture ports disagree);
    # beyond range: an order answered a minute or more after its tick. Both counted, never recorded.
    set_aside: dict[str, int] = {}
    intervals = interval_histograms({"wire_to_wire": (m.wire_order, w2w)}, start_ns, int(interval_s * 1e9),
                                    set_aside)  # fmt: skip
    counters = writer.meta["counters"]
    counters.update(set_aside)
    counters["wire_to_wire_recorded"] = int(w2w.size - sum(set_aside.values()))
    for start_s, end_s, hists in intervals:
        writer.write_interval(hists, start_s, end_s, warmup=False)
        for tag, h in hists.items():
            if tag in totals:
                totals[tag].add(h)
            else:
                totals[tag] = h
    writer.write_summary({tag: summarize(h) for tag, h in totals.items()}, [])
    writer.meta["end_epoch_s"] = (
        int(max(m.md_ts.max(initial=start_ns), m.order_ts.max(initial=start_ns))) / 1e9
    )
    writer.meta["status"] = "complete"
    writer.save_meta()
    writer.latency.close()
    writer.warmup.close()
    return writer.path
