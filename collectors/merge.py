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

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from .hdr import (
    CHUNK,
    BulkRecorder,
    _bucket_values,
    add_into,
    counts_view,
    highest_equivalent_values,
    new_histogram,
    summarize,
)
from .session import (
    LATENCY_LOG,
    META,
    WARMUP_LOG,
    HistogramLogWriter,
    Interval,
    SessionError,
    read_hlog,
    trace_accounting,
    write_json_atomic,
)

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


def _log_anchor(path: Path) -> float | None:
    """BaseTime if present (interval starts count from it), else StartTime (read_hlog rebased on it)."""
    start = base = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.startswith("#"):
                    if not line.startswith('"'):
                        break
                    continue
                if line.startswith("#[StartTime:"):
                    start = float(line.split(":", 1)[1].split()[0])
                elif line.startswith("#[BaseTime:"):
                    base = float(line.split(":", 1)[1].split()[0])
    except (OSError, ValueError):
        return None
    return base if base is not None else start


def load_input(spec: str) -> MergeInput:
    label, p = parse_input(spec)
    if p.is_dir():
        meta_path, log = p / META, p / LATENCY_LOG
        if not meta_path.is_file() or not log.is_file():
            raise MergeError(f"{p} is not a tickscope session (no {META} or {LATENCY_LOG}): "
                             "give session directories or HdrHistogram .hlog files")  # fmt: skip
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MergeError(f"{meta_path}: not valid JSON ({e})") from None
    elif p.is_file():
        meta, log = {}, p
    else:
        raise MergeError(f"no such input: {p} (expected a session directory or an .hlog file)")
    try:
        intervals, _ = read_hlog(log)
    except SessionError as e:
        raise MergeError(f"{log} is not an HdrHistogram interval log: {str(e).split(': ', 1)[-1]}") from None
    if not intervals:
        raise MergeError(f"{log} holds no intervals: not an HdrHistogram interval log, or empty")
    anchor = _log_anchor(log)
    if anchor is None:
        raise MergeError(f"{log} has no StartTime/BaseTime header: it cannot be placed on absolute time")
    host = (
        label
        or (meta.get("host") or {}).get("hostname")
        or _capture_name(meta)
        or (p.stem if p.is_file() else p.name)
    )
    return MergeInput(p, host, anchor, intervals, meta, meta.get("interval_s"))


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
        self.recorder = BulkRecorder(target)
        self._maps: dict[tuple, np.ndarray] = {}

    def index_map(self, src: HdrHistogram, where: str) -> np.ndarray:
        key = layout_of(src)
        if key not in self._maps:
            lowest, _ = _bucket_values(src)
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


def clock_warnings(inputs: list[MergeInput], interval_s: float) -> list[str]:
    """How far the inputs' REALTIME clocks may disagree, from what each session measured.

    Same machine and boot (``boot_id``): REALTIME - MONOTONIC of each session, against the one
    MONOTONIC clock they share, is a measured offset (a step of the clock between the sessions).
    Different machines: each kernel's own estimate (adjtimex offset and error, or unsynchronised).
    """
    out = []
    with_clock = [x for x in inputs if x.meta.get("host")]
    for a_i, a in enumerate(with_clock):
        for b in with_clock[a_i + 1 :]:
            if a.host == b.host and a.path == b.path:
                continue
            ha, hb = a.meta["host"], b.meta["host"]
            if ha.get("boot_id") and ha.get("boot_id") == hb.get("boot_id"):
                ra = (a.meta.get("clocks") or {}).get("realtime_minus_monotonic_ns")
                rb = (b.meta.get("clocks") or {}).get("realtime_minus_monotonic_ns")
                if ra is None or rb is None:
                    continue
                unc = max((a.meta.get("clocks") or {}).get("realtime_offset_uncertainty_ns") or 0,
                          (b.meta.get("clocks") or {}).get("realtime_offset_uncertainty_ns") or 0)  # fmt: skip
                offset = rb - ra
                if abs(offset) > max(CLOCK_WARN_NS, 2 * unc):
                    out.append(f"clocks disagree: REALTIME of {b.path.name} ({b.host}) is {offset / 1e6:+.3f} ms "
                               f"from {a.path.name} ({a.host}) on the same machine (measured against the shared "
                               "MONOTONIC clock); intervals are aligned on REALTIME as recorded")  # fmt: skip
                continue
            sa, sb = ha.get("clock_sync") or {}, hb.get("clock_sync") or {}
            if not sa or not sb:
                out.append(f"clocks of {a.host} and {b.host} unknown (sessions without clock_sync): "
                           "alignment across them is only as good as their NTP/PTP")  # fmt: skip
                continue
            offset = sb.get("offset_ns", 0) - sa.get("offset_ns", 0)
            bound = abs(offset) + (sa.get("esterror_ns") or 0) + (sb.get("esterror_ns") or 0)
            if not (sa.get("synchronised") and sb.get("synchronised")):
                unsynced = [x.host for x, s in ((a, sa), (b, sb)) if not s.get("synchronised")]
                out.append(f"clocks may disagree: {', '.join(unsynced)} not synchronised (adjtimex); offset "
                           f"{offset / 1e6:+.3f} ms, max error {max(sa.get('maxerror_ns', 0), sb.get('maxerror_ns', 0)) / 1e6:.0f} ms: "
                           "intervals of different hosts may be misaligned by that much")  # fmt: skip
            elif bound > max(CLOCK_WARN_NS, interval_s * 1e9 / 10):
                out.append(f"clocks disagree: {b.host} is {offset / 1e6:+.3f} ms from {a.host} "
                           f"(adjtimex offsets, ±{bound / 1e6:.3f} ms with estimated errors)")  # fmt: skip
    return out


# -- the merge ------------------------------------------------------------------------------------------
def merge(specs: list[str], out: str | os.PathLike, *, digits: int | None = None) -> MergeResult:
    out = Path(out)
    if digits is not None and not 1 <= digits <= 5:
        raise MergeError(f"--digits {digits}: HdrHistogram supports 1 to 5 significant digits")
    if not specs:
        raise MergeError("merge needs at least one input (session directories or .hlog files)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out} exists and is not empty: give a new directory for the merged session")
    inputs = [load_input(s) for s in specs]
    seen: dict[Path, str] = {}
    for inp in inputs:
        key = inp.path.resolve()
        if key in seen:
            raise MergeError(f"{inp.path} is given twice: its ticks would be counted twice")
        seen[key] = inp.host
    check_overlaps(inputs)
    interval_s = max((x.interval_s or _typical_length(x)) for x in inputs)
    warnings = clock_warnings(inputs, interval_s)

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
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / META, meta)
    totals, lines = _write_log(
        out / LATENCY_LOG, [(x, x.intervals) for x in inputs], base, interval_s, mapper
    )
    warmups = [(x, _warmup_intervals(x)) for x in inputs]
    if any(ivs for _, ivs in warmups):
        _write_log(out / WARMUP_LOG, warmups, base, interval_s, mapper)
    write_json_atomic(out / "summary.json", {t: summarize(h) for t, h in totals.items()})
    write_json_atomic(out / "slowest.json", _slowest(inputs))
    return MergeResult(out, hosts, sorted(totals), lines, target[2], warnings)


def _write_log(path: Path, sources, base: float, interval_s: float, mapper: LayoutMapper):
    """Write one merged interval log, a grid slot at a time: memory holds one slot's histograms
    (a decoded histogram is ~225 KB; a day of intervals would not fit), the rest stays encoded.
    Returns the totals per tag (fleet and per host) and the number of lines written."""
    target = layout_of(mapper.target)
    by_slot: dict[int, list[tuple[float, float, str, str, Interval, str]]] = {}
    for inp, intervals in sources:
        shift = inp.anchor_s - base
        for tag, ivs in intervals.items():
            for iv in ivs:
                start = iv.start_s + shift
                k = int(math.floor(start / interval_s + 1e-6))
                by_slot.setdefault(k, []).append((start, iv.end_s + shift, inp.host, tag, iv, str(inp.path)))
    totals: dict[str, HdrHistogram] = {}
    lines = 0
    log = HistogramLogWriter(path, base)
    try:
        for k in sorted(by_slot):
            fleet: dict[str, list] = {}  # tag -> [hist, end]
            for start, end, host, tag, iv, where in sorted(by_slot[k], key=lambda e: (e[0], e[2], e[3])):
                h = new_histogram(*target)
                mapper.add(h, iv.hist, f"{where} ({tag} at {iv.start_s:.3f}s)")
                log.write(f"{host}/{tag}", h, start, end)
                slot = fleet.setdefault(tag, [new_histogram(*target), end])
                add_into(slot[0], h)
                slot[1] = max(slot[1], end)
                add_into(totals.setdefault(f"{host}/{tag}", new_histogram(*target)), h)
                lines += 1
            for tag, (h, end) in fleet.items():
                slot_start = k * interval_s
                log.write(tag, h, slot_start, min(end, slot_start + interval_s))
                add_into(totals.setdefault(tag, new_histogram(*target)), h)
                lines += 1
            log.flush()
    finally:
        log.close()
    return totals, lines


def _warmup_intervals(inp: MergeInput) -> dict[str, list[Interval]]:
    f = inp.path / WARMUP_LOG if inp.path.is_dir() else None
    if f is None or not f.is_file():
        return {}
    try:
        return read_hlog(f)[0]
    except SessionError:
        return {}


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
    rows = []
    for inp in inputs:
        f = inp.path / "slowest.json" if inp.path.is_dir() else None
        if f is None or not f.is_file():
            continue
        try:
            for row in json.loads(f.read_text(encoding="utf-8")):
                rows.append({**row, "host": inp.host})
        except (OSError, ValueError, TypeError):
            continue
    rows.sort(key=lambda r: -(r.get("tick_to_trade_ns") or 0))
    return rows[:20]
