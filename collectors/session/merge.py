"""Exact union of interval histograms from several sessions or ``.hlog`` files (hosts, processes, days).

Every input is placed on absolute time: the log's ``BaseTime`` (or ``StartTime``) plus each
interval's own start. The result is an ordinary session directory:

- ``<host>/<tag>``: each host's intervals as recorded, at their own times (rebased on the
  earliest input), so nothing is lost and one host can still be looked at alone;
- ``<tag>``: the fleet total. Histograms cannot be split in time, so each host's interval goes
  whole into the slot of a grid (the longest input interval, from the earliest start) that holds
  its start: a merged interval's time is accurate to one interval, its counts exactly.

Counts are added bucket for bucket, so a merged percentile is exact to HDR precision: the merge of
two halves of a session is the session. Inputs recorded with different layouts (lowest, highest,
significant digits) are merged into the coarsest of them, which is exact because HDR buckets are
power-of-two aligned and a coarser layout's bucket always holds finer ones whole; the check is
made bucket by bucket, and a layout a bucket would straddle (``digits`` finer than an input) is
refused rather than split.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session import (
    LATENCY_LOG,
    META,
    WARMUP_LOG,
    HistogramLogWriter,
    Interval,
    Session,
    SessionError,
    log_anchor,
    trace_accounting,
    write_json_atomic,
)
from tickscope.collectors.session.dimensions import parse_tag
from tickscope.collectors.session.hdr import (
    CHUNK,
    BulkRecorder,
    add_into,
    bucket_values,
    counts_view,
    filled_of,
    highest_equivalent_values,
    new_histogram,
    summarize,
)
from tickscope.collectors.session.segments import Window

OVERLAP_TOLERANCE_S = 0.002  # interval times are written with 3 decimals
CLOCK_WARN_NS = 1_000_000  # hosts whose REALTIME clocks may disagree by more than this get a warning


class MergeError(SessionError):
    """Inputs that cannot be merged: one line naming the input and what to do."""


@dataclass
class MergeInput:
    path: Path
    host: str
    anchor_s: float  # absolute time (epoch s) that the log's interval starts count from
    intervals: dict[str, list[Interval]]
    meta: dict = field(default_factory=dict)
    interval_s: float | None = None
    session: Session | None = None  # as loaded: its warmup intervals, slowest traces and warnings


@dataclass
class MergeResult:
    out: Path
    hosts: list[str]
    tags: list[str]
    intervals: int
    digits: int
    warnings: list[str]


def parse_input(spec: str) -> tuple[str | None, Path]:
    """``PATH`` or ``HOST=PATH`` (a label for inputs whose hostname is missing or shared)."""
    if "=" in spec and not Path(spec).exists():
        host, _, path = spec.partition("=")
        if host and "/" not in host:
            return host, Path(path)
    return None, Path(spec)


def load_input(spec: str, window: Window | None = None) -> MergeInput:
    """One input, loaded by ``Session.load`` as ``report`` and ``compare`` load it: the same checks,
    the same one-line errors, and a damaged meta.json or slowest.json is a warning, not a crash."""
    label, p = parse_input(spec)
    if not p.exists():
        raise MergeError(f"no such input: {p} (expected a session directory or an .hlog file)")
    if p.is_dir():
        session = Session.load(p, window)
        log = p / LATENCY_LOG
    else:
        try:
            session = Session.load(p, window)
        except SessionError as e:
            raise MergeError(
                f"{p} is not an HdrHistogram interval log: {str(e).split(': ', 1)[-1]}"
                " (name a session directory or an .hlog file)"
            ) from None
        log = p
    anchor = log_anchor(log)
    if anchor is None:
        raise MergeError(f"{log} has no StartTime/BaseTime header of finite seconds: it cannot be placed on "
                         "absolute time (merge logs that carry their start time)")  # fmt: skip
    meta = session.meta if p.is_dir() else {}
    host = (
        label
        or meta.get("host", {}).get("hostname")
        or _capture_name(meta)
        or (p.stem if p.is_file() else p.name)
    )
    interval_s = meta.get("interval_s")
    if meta.get("segments") and interval_s:  # decayed segments hold longer intervals: slots fit the longest
        interval_s = max(interval_s, max(iv.length_s for ivs in session.intervals.values() for iv in ivs))
    return MergeInput(p, host, anchor, session.intervals, meta, interval_s, session)


# -- layouts ----------------------------------------------------------------------------------------
def layout_of(h: HdrHistogram) -> tuple[int, int, int]:
    return (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures)


def coarsest_layout(layouts: set[tuple[int, int, int]], digits: int | None) -> tuple[int, int, int]:
    lowest = max(lay[0] for lay in layouts)
    highest = max(lay[1] for lay in layouts)
    return (
        lowest,
        max(highest, 2 * lowest),
        digits if digits is not None else min(lay[2] for lay in layouts),
    )


class LayoutMapper:
    """Moves counts of one layout into another, each source bucket whole into the one target bucket
    that holds it; refuses (MergeError) a source whose buckets would straddle target buckets."""

    def __init__(self, target: HdrHistogram):
        self.target = target
        self.recorder = BulkRecorder(target, compiled=False)  # once per layout: no numba to load for it
        self._maps: dict[tuple, np.ndarray] = {}

    def index_map(self, src: HdrHistogram, where: str) -> np.ndarray:
        key = layout_of(src)
        if key not in self._maps:
            lowest, _ = bucket_values(src)
            highest = highest_equivalent_values(src)
            top = self.recorder.max_recordable
            lo_ix = self._indexes(np.minimum(lowest, top))
            hi_ix = self._indexes(np.minimum(highest, top))
            straddle = np.flatnonzero((lo_ix != hi_ix) | (highest > top))
            # A layout that cannot hold a bucket whole is marked; refused only if that bucket has counts.
            bad = np.zeros(src.counts_len, bool)
            bad[straddle] = True
            self._maps[key] = (lo_ix, bad)
        lo_ix, bad = self._maps[key]
        counts = counts_view(src)
        if bad[counts != 0].any():
            t = layout_of(self.target)
            raise MergeError(f"{where}: recorded as lowest={key[0]} highest={key[1]} digits={key[2]}, "
                             f"its buckets straddle those of lowest={t[0]} highest={t[1]} digits={t[2]}; "
                             "merging would split counts (drop --digits, or merge at the input's precision)")  # fmt: skip
        return lo_ix

    def _indexes(self, values: np.ndarray) -> np.ndarray:
        out = np.empty(values.size, np.int64)
        for i in range(0, values.size, CHUNK):
            self.recorder.indexes(values[i : i + CHUNK], out[i : i + CHUNK])
        return out

    def mapped(self, src: HdrHistogram, where: str) -> HdrHistogram:
        """``src`` in the target layout: itself when it is recorded in it, else a mapped copy."""
        if layout_of(src) == layout_of(self.target):
            return src
        dst = new_histogram(*layout_of(self.target))
        self.add(dst, src, where)
        return dst

    def add(self, dst: HdrHistogram, src: HdrHistogram, where: str) -> None:
        if src.total_count == 0:
            return
        if layout_of(src) == layout_of(dst):
            add_into(dst, src)
            return
        ix = self.index_map(src, where)
        counts = counts_view(src)
        nz = np.flatnonzero(counts)
        np.add.at(counts_view(dst), ix[nz], counts[nz])
        dst.total_count += src.total_count
        dst.min_value = min(dst.min_value, src.min_value)
        dst.max_value = max(dst.max_value, src.max_value)


def _capture_name(meta: dict) -> str | None:
    """A ``tickscope wire`` session measured no host: what it measured is its capture, so two
    sessions of one capture are one "host" and their overlap is refused like any other."""
    capture = meta.get("capture") if meta.get("source") == "wire" else None
    digest = capture.get("sha256_head") if isinstance(capture, dict) else None
    return f"capture-{digest[:12]}" if isinstance(digest, str) and digest else None


# -- checks -------------------------------------------------------------------------------------------
def check_overlaps(inputs: list[MergeInput]) -> None:
    """Two inputs of one host covering the same time would count that host's ticks twice."""
    by_host: dict[str, list[tuple[float, float, int]]] = {}
    for i, inp in enumerate(inputs):
        spans = by_host.setdefault(inp.host, [])
        for ivs in inp.intervals.values():
            for iv in ivs:
                spans.append((inp.anchor_s + iv.start_s, inp.anchor_s + iv.end_s, i))
    for host, spans in by_host.items():
        spans.sort()
        latest_end: dict[int, float] = {}
        for start, end, i in spans:
            for j, e in latest_end.items():
                if j != i and e - start > OVERLAP_TOLERANCE_S:
                    raise MergeError(f"{inputs[j].path} and {inputs[i].path} both hold host {host!r} at "
                                     f"{start - inputs[i].anchor_s:.3f}s of {inputs[i].path.name}: overlapping "
                                     "intervals of one host would count its ticks twice (if they are different "
                                     "processes, label them: NAME=PATH)")  # fmt: skip
            latest_end[i] = max(latest_end.get(i, -math.inf), end)


def clock_offsets(inputs: list[MergeInput], interval_s: float) -> tuple[list[dict], list[str]]:
    """How far the inputs' REALTIME clocks may disagree, from what each session measured: one row
    per input (for meta.json) and at most one warning line per kind of disagreement, however many
    inputs (pairwise lines were 11,175 for 150 sessions).

    Same machine and boot (``boot_id``): REALTIME - MONOTONIC of each session, against the one
    MONOTONIC clock they share, is a measured offset (a step of the clock between the sessions),
    given against the first session of that boot. Different machines: each kernel's own estimate
    (adjtimex offset and error, or unsynchronised)."""
    rows, first_of_boot, machines = [], {}, {}
    for inp in inputs:
        host, clocks = _obj(inp.meta, "host"), _obj(inp.meta, "clocks")
        if not host:
            continue  # an .hlog file: nothing is known of its clock
        boot = host.get("boot_id") if isinstance(host.get("boot_id"), str) and host.get("boot_id") else None
        row = {"input": str(inp.path), "host": inp.host, "boot_id": boot}
        rm = _num(clocks.get("realtime_minus_monotonic_ns"))
        if boot is not None and rm is not None:
            ref, ref_rm, ref_unc = first_of_boot.setdefault(
                boot, (inp, rm, _num(clocks.get("realtime_offset_uncertainty_ns")) or 0)
            )
            row["realtime_step_ns"] = rm - ref_rm  # against the first session of this boot
            row["realtime_step_bound_ns"] = max(
                ref_unc, _num(clocks.get("realtime_offset_uncertainty_ns")) or 0
            )
            row["first_of_boot"] = str(ref.path)
        sync = _obj(host, "clock_sync")
        if sync:
            row["clock_sync"] = {
                k: sync.get(k) for k in ("synchronised", "offset_ns", "esterror_ns", "maxerror_ns")
            }
        machines.setdefault(boot or f"input:{inp.path}", (inp.host, sync))
        rows.append(row)
    out = []
    steps = [
        r
        for r in rows
        if abs(r.get("realtime_step_ns", 0)) > max(CLOCK_WARN_NS, 2 * r.get("realtime_step_bound_ns", 0))
    ]
    if steps:
        worst = max(steps, key=lambda r: abs(r["realtime_step_ns"]))
        out.append(f"clocks disagree: REALTIME of {len(steps)} session{'s' if len(steps) > 1 else ''} is up to "
                   f"{worst['realtime_step_ns'] / 1e6:+.3f} ms from the first session of the same machine "
                   f"({Path(worst['input']).name} ({worst['host']}) against {Path(worst['first_of_boot']).name}; measured "
                   "against the shared MONOTONIC clock); intervals are aligned on REALTIME as recorded (meta.json "
                   "clock_offsets)")  # fmt: skip
    if len(machines) < 2:
        return rows, out
    unknown = [h for h, sync in machines.values() if not sync]
    if unknown:
        out.append(f"clocks of {_hosts(unknown)} unknown (sessions without clock_sync): alignment across hosts is "
                   "only as good as their NTP/PTP")  # fmt: skip
    known = [(h, sync) for h, sync in machines.values() if sync]
    offsets = [(_num(sync.get("offset_ns")) or 0, _num(sync.get("esterror_ns")) or 0, h) for h, sync in known]
    unsynced = [h for h, sync in known if not sync.get("synchronised")]
    if len(known) >= 2 or (known and unknown):
        lo, hi = min(offsets), max(offsets)
        spread = hi[0] - lo[0]
        if unsynced:
            maxerr = max(_num(sync.get("maxerror_ns")) or 0 for _, sync in known)
            out.append(f"clocks may disagree: {_hosts(unsynced)} not synchronised (adjtimex); offsets span "
                       f"{spread / 1e6:.3f} ms, max error {maxerr / 1e6:.0f} ms: intervals of different hosts may be "
                       "misaligned by that much (meta.json clock_offsets)")  # fmt: skip
        elif spread + hi[1] + lo[1] > max(CLOCK_WARN_NS, interval_s * 1e9 / 10):
            out.append(f"clocks disagree: {hi[2]} is {spread / 1e6:+.3f} ms from {lo[2]} (adjtimex offsets, "
                       f"±{(spread + hi[1] + lo[1]) / 1e6:.3f} ms with estimated errors; "
                       f"{len(known)} hosts in meta.json clock_offsets)")  # fmt: skip
    return rows, out


def _obj(d: dict, key: str) -> dict:
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else {}


def _num(v) -> float | None:
    return v if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _hosts(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} host{'s' if len(names) > 1 else ''} ({', '.join(names[:shown])}{more})"


# -- the merge ------------------------------------------------------------------------------------------
def merge(specs: list[str], out: str | os.PathLike, *, digits: int | None = None,
          window: Window | None = None) -> MergeResult:  # fmt: skip
    out = Path(out)
    if digits is not None and not 1 <= digits <= 5:
        raise MergeError(
            f"--digits {digits} is out of range (HdrHistogram supports 1 to 5 significant digits)"
        )
    if not specs:
        raise MergeError("merge needs at least one input (session directories or .hlog files)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out} exists and is not empty (give a new directory for the merged session)")
    inputs = [load_input(s, window) for s in specs]
    seen: dict[Path, str] = {}
    for inp in inputs:
        key = inp.path.resolve()
        if key in seen:
            raise MergeError(
                f"{inp.path} is given twice: its ticks would be counted twice (name each input once)"
            )
        seen[key] = inp.host
    check_overlaps(inputs)
    interval_s = max((x.interval_s or _typical_length(x)) for x in inputs)
    warnings = [f"{x.path}: {w}" for x in inputs if x.session is not None for w in x.session.warnings]
    offsets, clock_lines = clock_offsets(inputs, interval_s)
    warnings += clock_lines

    layouts = set()
    for inp in inputs:
        for ivs in inp.intervals.values():
            for iv in ivs:
                layouts.add(layout_of(iv.hist))
    target = coarsest_layout(layouts, digits)
    template = new_histogram(*target)
    mapper = LayoutMapper(template)
    if len(layouts) > 1 or target not in layouts:
        warnings.append(f"inputs recorded with different layouts {sorted(layouts)}: merged at lowest={target[0]} "
                        f"highest={target[1]} digits={target[2]} (each bucket moved whole, exact at that precision)")  # fmt: skip

    base = round(min(x.anchor_s for x in inputs), 3)
    hosts = list(dict.fromkeys(x.host for x in inputs))
    meta = _merged_meta(inputs, hosts, base, interval_s, target, warnings)
    meta["clock_offsets"] = offsets
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / META, meta)
        totals, lines = _write_log(
            out / LATENCY_LOG, [(x, x.intervals) for x in inputs], base, interval_s, mapper
        )
        warmups = [(x, _warmup_intervals(x)) for x in inputs]
        if any(ivs for _, ivs in warmups):
            _write_log(out / WARMUP_LOG, warmups, base, interval_s, mapper)
        write_json_atomic(out / "summary.json", _summary(inputs, totals, target))
        write_json_atomic(out / "slowest.json", _slowest(inputs))
    except BaseException as e:  # a merge cut short leaves no half session behind to be read as whole
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(e, OSError):
            raise MergeError(
                f"cannot write merged session {out}: {e.strerror or e} (choose another --out)"
            ) from None
        raise
    return MergeResult(out, hosts, sorted(totals), lines, target[2], warnings)


def _write_log(path: Path, sources, base: float, interval_s: float, mapper: LayoutMapper):
    """Write one merged interval log, a grid slot and a tag at a time: memory holds that tag's fleet
    histogram and the one interval being added (a decoded histogram is 225 KB in tickscope's layout,
    16 MB in a 5-digit one; a day of intervals, or ten such tags at once, would not fit), the rest
    stays encoded. Returns the totals per tag (fleet and per host, as ``SparseTotal``) and the
    number of lines written."""
    target = layout_of(mapper.target)
    by_slot: dict[int, list[tuple[str, float, str, float, Interval, str]]] = {}
    for inp, intervals in sources:
        shift = inp.anchor_s - base
        for tag, ivs in intervals.items():
            for iv in ivs:
                start = iv.start_s + shift
                k = int(math.floor(start / interval_s + 1e-6))
                by_slot.setdefault(k, []).append((tag, start, inp.host, iv.end_s + shift, iv, str(inp.path)))
    totals: dict[str, SparseTotal] = {}
    lines = 0
    log = HistogramLogWriter(path, base)
    try:
        for k in sorted(by_slot):
            entries = sorted(by_slot[k], key=lambda e: (e[0], e[1], e[2]))
            for tag in dict.fromkeys(e[0] for e in entries):
                fleet, fleet_end = new_histogram(*target), 0.0
                for _, start, host, end, iv, where in (e for e in entries if e[0] == tag):
                    h = mapper.mapped(iv.hist, f"{where} ({tag} at {iv.start_s:.3f}s)")
                    log.write(f"{host}/{tag}", h, start, end)
                    add_into(fleet, h)
                    fleet_end = max(fleet_end, end)
                    totals.setdefault(f"{host}/{tag}", SparseTotal()).add(h)
                    lines += 1
                    del h
                slot_start = k * interval_s
                log.write(tag, fleet, slot_start, min(fleet_end, slot_start + interval_s))
                totals.setdefault(tag, SparseTotal()).add(fleet)
                lines += 1
                del fleet
            log.flush()
    finally:
        log.close()
    return totals, lines


class SparseTotal:
    """A running total of same-layout histograms kept as its non-zero buckets only: what the counts
    need, not the layout's whole counts array (16 MB per tag for 5 digits over 1 ns .. 1 s).
    ``dense(layout)`` gives it back as a histogram, one at a time, to summarise.

    Each histogram added is kept as its buckets with counts (read between its minimum's and its
    maximum's: ``held``) and folded into the total once ``COMPACT_AT`` such buckets wait: one sort
    per fold, not one of the whole total per histogram (a merge of two 1-hour sessions, 97,236
    additions, spent 41 of its 78 s sorting)."""

    COMPACT_AT = 1 << 16  # buckets waiting to be folded: ~1 MB of index and count words a total

    def __init__(self) -> None:
        self._index = np.empty(0, np.int64)
        self._counts = np.empty(0, np.int64)
        self._waiting: list[tuple[np.ndarray, np.ndarray]] = []
        self._waiting_n = 0
        self.total, self.min_value, self.max_value = 0, sys.maxsize, 0

    def add(self, h: HdrHistogram) -> None:
        if h.total_count == 0:
            return
        nz = filled_of(h)
        self._waiting.append((nz, counts_view(h)[nz]))
        self._waiting_n += nz.size
        if self._waiting_n >= self.COMPACT_AT:
            self._fold()
        self.total += h.total_count
        self.min_value, self.max_value = min(self.min_value, h.min_value), max(self.max_value, h.max_value)

    def _fold(self) -> None:
        if not self._waiting:
            return
        index, inverse = np.unique(
            np.concatenate([self._index, *(i for i, _ in self._waiting)]), return_inverse=True
        )
        counts = np.zeros(index.size, np.int64)
        np.add.at(counts, inverse, np.concatenate([self._counts, *(c for _, c in self._waiting)]))
        self._index, self._counts = index, counts
        self._waiting, self._waiting_n = [], 0

    @property
    def index(self) -> np.ndarray:
        self._fold()
        return self._index

    @property
    def counts(self) -> np.ndarray:
        self._fold()
        return self._counts

    def dense(self, layout: tuple[int, int, int]) -> HdrHistogram:
        h = new_histogram(*layout)
        counts_view(h)[self.index] = self.counts
        h.total_count, h.min_value, h.max_value = self.total, self.min_value, self.max_value
        return h


def _summary(inputs: list[MergeInput], totals: dict, target: tuple[int, int, int]) -> dict:
    """Plain tags at the top level, per-dimension ones under ``dimensions`` as a profiled session
    has them (docs/session-format.md): each value's tags from the merged histograms, its rows (and
    ticks) the inputs' added; tail attribution, the session's and each value's, as ``merge_attribution``."""
    out = {t: summarize(h.dense(target)) for t, h in totals.items() if not parse_tag(t)[1]}
    hosts = [inp.host for inp in inputs]
    attr = merge_attribution(hosts, [inp.session.attribution if inp.session is not None else None for inp in inputs],
                             out.get("tick_to_trade"))  # fmt: skip
    dims: dict[str, dict] = {}
    by_value: dict[tuple[str, str], list] = {}  # (slicing, value) -> each input's attribution of it
    for i, inp in enumerate(inputs):
        recorded = inp.session.dimension_summary if inp.session is not None else {}
        for slicing, rec in recorded.items():
            d = dims.setdefault(slicing, {"cap": 0, "values": {}})
            d["cap"] = max(d["cap"], rec["cap"])
            for value, row in rec["values"].items():
                v = d["values"].setdefault(value, {"rows": 0, "tags": {}})
                v["rows"] += row["rows"]
                if "ticks" in row:  # the value is a tick's own (its stages before the fan-out count ticks)
                    v["ticks"] = v.get("ticks", 0) + row["ticks"]
                if "values" in row:  # the values folded into *other, on any input
                    v["values"] = sorted({*v.get("values", []), *row["values"]})
                by_value.setdefault((slicing, value), [None] * len(inputs))[i] = row.get("attribution")
    for slicing, d in dims.items():
        for value, v in d["values"].items():
            want = dict(zip(slicing.split(","), value.split(","), strict=False))
            for tag in totals:
                base, values = parse_tag(tag)
                if values == want and "/" not in base:  # the fleet's, not one host's (``host/tag``)
                    v["tags"][base] = summarize(totals[tag].dense(target))
            merged = merge_attribution(
                hosts, by_value.get((slicing, value), []), v["tags"].get("tick_to_trade")
            )
            if merged is not None:
                v["attribution"] = merged
    if attr is not None:
        out["attribution"] = attr
    if dims:
        out["dimensions"] = dims
    return out


MEDIAN_NOT_MERGED = "not merged: a median of the union is not a function of the inputs' medians"


def merge_attribution(hosts: list[str], attrs: list[dict | None], tick_to_trade: dict | None) -> dict | None:
    """The inputs' tail attributions as one (docs/fleet.md): each merged pXX tail is the union of
    the inputs' own pXX tails (each input cut its tail at its own ``threshold_ns``, kept per host in
    ``thresholds_ns``). Counts, span sums and shares add, so traces, ``taken``, the means and mean
    shares are exact over that union; a median share cannot be merged, so it is null and the tail's
    ``median.method`` says why. Inputs without an attribution, or with other trade stages, are
    named under ``merged`` and left out of the population. None when no input has one."""
    have = [(h, a) for h, a in zip(hosts, attrs, strict=False) if a]
    if not have:
        return None
    stages = have[0][1]["stages"]
    used = [(h, a) for h, a in have if a["stages"] == stages]
    note = {"inputs": [h for h, _ in used], "tails": "each the union of the inputs' own pXX tails",
            "median_share": MEDIAN_NOT_MERGED}  # fmt: skip
    missing = [h for h, a in zip(hosts, attrs, strict=False) if not a]
    if missing:
        note["without_attribution"] = missing
    other = [h for h, a in have if a["stages"] != stages]
    if other:
        note["other_stages"] = other
    tails = {}
    for key in used[0][1]["tails"]:
        parts = [(h, a["tails"][key]) for h, a in used if key in a["tails"]]
        n = sum(t["traces"] for _, t in parts)
        if n == 0:
            continue
        rows = {}
        for s in stages:
            got = [t["stages"][s] for _, t in parts]
            # sum_ns: exact where the input has it; an older input's rounded mean times its traces
            total = sum(
                g.get("sum_ns", round(g["mean_ns"] * t["traces"]))
                for g, (_, t) in zip(got, parts, strict=True)
            )
            taken = sum(g.get("taken", t["traces"]) for g, (_, t) in zip(got, parts, strict=True))
            share = sum(g["mean_share"] * t["traces"] for g, (_, t) in zip(got, parts, strict=True))
            rows[s] = {"mean_ns": round(total / n, 1), "mean_share": round(share / n, 6), "median_share": None,
                       "taken": taken, "mean_taken_ns": round(total / max(taken, 1), 1), "sum_ns": total}  # fmt: skip
        pct = (tick_to_trade or {}).get(key)
        tails[key] = {
            "percentile_ns": int(pct) if pct is not None else max(t["percentile_ns"] for _, t in parts),
            "threshold_ns": min(t["threshold_ns"] for _, t in parts),
            "thresholds_ns": {h: t["threshold_ns"] for h, t in parts},
            "traces": n,
            "mean_tick_to_trade_ns": round(sum(r["sum_ns"] for r in rows.values()) / n, 1),
            "median": {"method": "not merged", "samples": 0},
            "stages": rows,
        }
    population = used[0][1].get("population", "orders")
    return {"population": population, "traces": sum(a["traces"] for _, a in used), "stages": list(stages),
            "tails": tails, "merged": note}  # fmt: skip


def _warmup_intervals(inp: MergeInput) -> dict[str, list[Interval]]:
    return inp.session.warmup_intervals if inp.session is not None else {}


def _typical_length(inp: MergeInput) -> float:
    lengths = sorted(iv.length_s for ivs in inp.intervals.values() for iv in ivs)
    return lengths[len(lengths) // 2] if lengths else 1.0


def _merged_meta(inputs, hosts, base, interval_s, target, warnings) -> dict:
    stages, points, trade = [], [], None
    for inp in inputs:
        for s in inp.meta.get("stages", []):
            if s["name"] not in [x["name"] for x in stages]:
                stages.append(s)
        for p in inp.meta.get("points", []):
            if p not in points:
                points.append(p)
        trade = trade or inp.meta.get("trade_point")
    counters: dict[str, int] = {}
    for inp in inputs:
        own = dict(inp.meta.get("counters") or {})
        if "traces_complete" in own and "traces_seen" not in own:  # saved before traces were seen
            own["traces_seen"] = trace_accounting(own)[0]  # so the merged sum keeps its identity
        for k, v in own.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                counters[k] = counters.get(k, 0) + v
    ends = [inp.anchor_s + iv.end_s for inp in inputs for ivs in inp.intervals.values() for iv in ivs]
    return {
        "name": "merge-" + "-".join(hosts),
        "source": "merge",
        "format_version": 1,
        "status": "complete",
        "host": {"hostname": ",".join(hosts)},
        "hosts": {inp.host: inp.meta.get("host") for inp in inputs},
        "inputs": [
            {
                "path": str(inp.path),
                "host": inp.host,
                "start_epoch_s": inp.anchor_s,
                "name": inp.meta.get("name"),
            }
            for inp in inputs
        ],  # fmt: skip
        "stages": stages,
        "points": points,
        "trade_point": trade,
        "counters": counters,
        "interval_s": interval_s,
        "start_epoch_s": base,
        "end_epoch_s": max(ends) if ends else base,
        "layout": {"lowest": target[0], "highest": target[1], "digits": target[2]},
        "merge_warnings": warnings,
    }


def _slowest(inputs: list[MergeInput]) -> list[dict]:
    rows = [
        {**row, "host": inp.host} for inp in inputs if inp.session is not None for row in inp.session.slowest
    ]
    rows.sort(key=lambda r: -(r.get("tick_to_trade_ns") or 0))
    return rows[:20]
