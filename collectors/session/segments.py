"""Segments: a long run's session cut into complete, readable units, so a run can last for weeks.

::

    <session>/
      meta.json, summary.json, slowest.json   the whole run, as for any session
      latency.hlog     its header only (whose BaseTime anchors every segment), then any tags
                       joined after the run (a wire capture's)
      total.hlog       the run's histogram per tag, one line each, rewritten when a segment closes
      removed.hlog     per tag, the sum of every segment retention removed, rewritten at each removal
      segments.json    the index: per segment kept, its span, bytes and interval length
      segments/
        000000/        a closed segment: a session of its own (``tickscope report`` reads it)
          meta.json      the run's meta, ``segment`` (n, span, resolution), the segment's own counters
          latency.hlog   its intervals; BaseTime is the run's start, so starts are run-relative
          coarse.hlog    the same intervals merged into the coarse interval (until the segment decays)
          total.hlog, summary.json, slowest.json, warmup.hlog (the first segment, with --warmup)
        000001.open/   the segment being written: appended and flushed per interval

The open segment is renamed to its closed name once every file in it is written (a rename is
atomic), so a crash (kill -9) leaves every closed segment whole and the open one readable up to
its last flushed interval. Decay replaces an old segment's latency.hlog by its coarse.hlog, which
was built as the intervals came by exact histogram additions: nothing is decoded again, and
``total.hlog == union of the segments' intervals + removed.hlog``, bucket for bucket.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram

from .hdr import add_any, holding, layout_of, new_histogram, summarize
from .units import FOREVER, DurationError, format_size, parse_duration_ns, parse_run_duration_s, parse_size

SEGMENTS_DIR = "segments"
INDEX = "segments.json"
TOTAL_LOG = "total.hlog"
REMOVED_LOG = "removed.hlog"
COARSE_LOG = "coarse.hlog"
OPEN_SUFFIX = ".open"
_NAME = re.compile(r"^(\d{6})(\.open)?$")

# Counters that say a state (records in a ring, traces open) rather than count events: a segment
# keeps their value at its end; every other counter is the segment's own, the change over it.
GAUGES = frozenset({"in_ring", "traces_pending"})

DEFAULT_SEGMENT_S = 3600.0
DEFAULT_DECAY = "1d:1m"  # segments older than a day keep 1-minute intervals


class SegmentError(ValueError):
    """Segment options that do not fit together: one line naming the option."""


@dataclass(frozen=True)
class SegmentPolicy:
    """How a long run is cut, kept and coarsened (``--segment``, ``--retain``, ``--max-disk``, ``--decay``)."""

    segment_s: float = DEFAULT_SEGMENT_S
    retain_s: float | None = None  # remove segments that ended longer ago than this
    max_disk_bytes: int | None = None  # remove the oldest segments while the segments take more
    decay_after_s: float | None = 86400.0  # None: never coarsen
    coarse_s: float = 60.0
    # ``live --watch -o DIR``: the directory of one session per start of tickscope. The sessions
    # of earlier starts count toward --retain and --max-disk too, and go first (they are older).
    pool: str | None = None

    def describe(self) -> dict:
        return asdict(self)


def segment_policy(duration_s: float | None, interval_s: float, segment: str | None, retain: str | None,
                   max_disk: str | None, decay: str | None) -> SegmentPolicy | None:  # fmt: skip
    """The options as given -> a policy, or None (an unsegmented session: a run shorter than one
    default segment, with none of the options). ``DurationError``/``SegmentError``: one line."""
    asked = any(x is not None for x in (segment, retain, max_disk, decay))
    if not asked and duration_s is not None and duration_s <= DEFAULT_SEGMENT_S:
        return None
    segment_s = parse_duration_ns(segment, "--segment") / 1e9 if segment else DEFAULT_SEGMENT_S
    if segment_s < interval_s:
        raise SegmentError(f"--segment {segment!r} is shorter than one interval ({interval_s:g}s): a segment "
                           f"holds whole intervals (give at least {interval_s:g}s)")  # fmt: skip
    retain_s = parse_duration_ns(retain, "--retain") / 1e9 if retain else None
    max_disk_bytes = parse_size(max_disk, "--max-disk") if max_disk else None
    decay_after_s, coarse_s = parse_decay(decay or DEFAULT_DECAY)
    if decay_after_s is not None and coarse_s < interval_s:
        raise SegmentError(
            f"--decay {decay!r}: the coarse interval is shorter than --interval ({interval_s:g}s)"
        )
    return SegmentPolicy(segment_s, retain_s, max_disk_bytes, decay_after_s, coarse_s)


def parse_decay(text: str) -> tuple[float | None, float]:
    """'1d:1m' (after a day, 1-minute intervals) -> (86400.0, 60.0); 'off' -> (None, 60.0)."""
    if text.strip().lower() == "off":
        return None, 60.0
    after, sep, coarse = text.partition(":")
    if not sep:
        raise SegmentError(f"--decay {text!r} is not AGE:INTERVAL (expected e.g. 1d:1m, segments older than a "
                           "day keep 1-minute intervals, or off)")  # fmt: skip
    return parse_duration_ns(after, "--decay age") / 1e9, parse_duration_ns(coarse, "--decay interval") / 1e9


def is_segmented(path: Path) -> bool:
    return (path / SEGMENTS_DIR).is_dir()


def segment_dirs(path: Path) -> list[tuple[int, Path, bool]]:
    """(n, directory, still open) of every segment on disk, oldest first. The directory is the
    truth, not the index: a crash between a segment's rename and the index's rewrite loses nothing."""
    out = []
    for d in (path / SEGMENTS_DIR).iterdir():
        m = _NAME.match(d.name)
        if m and d.is_dir():
            out.append((int(m.group(1)), d, bool(m.group(2))))
    return sorted(out)


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def write_total_log(path: Path, totals: dict[str, HdrHistogram], start_epoch_s: float, end_s: float) -> None:
    """One line per tag covering ``[0, end_s]``, replaced atomically."""
    from .files import HistogramLogWriter

    tmp = path.with_name(path.name + ".tmp")
    log = HistogramLogWriter(tmp, start_epoch_s)
    for tag, h in totals.items():
        if h.total_count:
            log.write(tag, h, 0.0, end_s)
    log.close()
    os.replace(tmp, path)


def _add(into: dict[str, HdrHistogram], tag: str, h: HdrHistogram) -> None:
    """``into[tag] += h``, exactly, in a layout that holds both."""
    dst = into.get(tag)
    if dst is None:
        dst = into[tag] = new_histogram(*layout_of(h))
    else:
        dst = into[tag] = holding(dst, h)
    add_any(dst, h)


class SegmentedLog:
    """The writing side: the open segment, its cut, retention and decay. Memory is one histogram
    per tag for the segment's total and one for the coarse interval in progress, whatever the run's length."""

    def __init__(self, root: Path, policy: SegmentPolicy, start_epoch_s: float, note: Callable[[str], None]):
        self.root, self.policy, self.start_epoch_s, self.note = root, policy, start_epoch_s, note
        self.dir = root / SEGMENTS_DIR
        self.dir.mkdir(exist_ok=True)
        self.index: list[dict] = []
        self.removed = {"segments": 0, "bytes": 0, "through_s": None}
        self.n = 0
        self._prev_counters: dict = {}
        # Called with the open segment's directory and span just before it closes: files of the
        # run's side collectors (the hiccup meter's) go into the segment they cover.
        self.closing: list[Callable[[Path, float, float], None]] = []
        self._open(0.0)
        if policy.pool is not None:  # a restarted daemon applies retention to what it finds at once
            self._retain(time.time())

    # -- the open segment --------------------------------------------------------------------------
    def _open(self, start_s: float) -> None:
        from .files import LATENCY_LOG, HistogramLogWriter

        self.path = self.dir / f"{self.n:06d}{OPEN_SUFFIX}"
        self.path.mkdir()
        self.latency = HistogramLogWriter(self.path / LATENCY_LOG, self.start_epoch_s)
        self.warmup = None
        self.coarse = None
        if self.policy.decay_after_s is not None:
            self.coarse = HistogramLogWriter(self.path / COARSE_LOG, self.start_epoch_s)
        self.start_s = self.end_s = start_s
        self.totals: dict[str, HdrHistogram] = {}
        self._coarse_span: tuple[int, float, float] | None = None  # (bucket, start_s, end_s)
        self._coarse: dict[str, HdrHistogram] = {}

    def write(self, hists: dict[str, HdrHistogram], start_s: float, end_s: float, warmup: bool) -> None:
        from .files import WARMUP_LOG, HistogramLogWriter

        if warmup:
            if self.warmup is None:
                self.warmup = HistogramLogWriter(self.path / WARMUP_LOG, self.start_epoch_s)
            log = self.warmup
        else:
            log = self.latency
        for tag, h in hists.items():
            if h.total_count:
                log.write(tag, h, start_s, end_s)
        log.flush()
        if self.start_s == self.end_s:
            self.start_s = start_s  # a segment's span starts at its first interval
        self.end_s = end_s
        if warmup:
            return
        for tag, h in hists.items():
            if h.total_count:
                _add(self.totals, tag, h)
        if self.coarse is not None:
            self._coarsen(hists, start_s, end_s)

    def _coarsen(self, hists: dict[str, HdrHistogram], start_s: float, end_s: float) -> None:
        # Buckets on the run's grid (multiples of coarse_s from its start), so every segment's
        # coarse intervals line up with every other's.
        bucket = math.floor(start_s / self.policy.coarse_s + 1e-9)
        if self._coarse_span is not None and bucket != self._coarse_span[0]:
            self._flush_coarse()
        if self._coarse_span is None:
            self._coarse_span = (bucket, start_s, end_s)
        self._coarse_span = (bucket, self._coarse_span[1], end_s)
        for tag, h in hists.items():
            if h.total_count:
                _add(self._coarse, tag, h)

    def _flush_coarse(self) -> None:
        if self._coarse_span is None:
            return
        _, start_s, end_s = self._coarse_span
        for tag, h in self._coarse.items():
            self.coarse.write(tag, h, start_s, end_s)
        self.coarse.flush()
        self._coarse_span, self._coarse = None, {}

    def due(self, end_s: float) -> bool:
        return end_s - self.start_s >= self.policy.segment_s - 1e-6

    # -- closing a segment -------------------------------------------------------------------------
    def cut(self, meta: dict, slowest: list[dict], counters: dict, run_totals: dict[str, HdrHistogram],
            final: bool = False) -> None:  # fmt: skip
        """Close the open segment (all its files, then one rename), write the run's total, apply
        retention and decay; then open the next one unless ``final``."""
        from .files import META, SLOWEST, SUMMARY, has_side_files, write_json_atomic

        if self.coarse is not None:
            self._flush_coarse()
        self.close()
        for hook in self.closing:
            hook(self.path, self.start_s, self.end_s)
        if not self.totals and self.warmup is None and not has_side_files(self.path):
            # Nothing was recorded in it (an idle pipeline, or the last cut just before the end):
            # a segment of no interval is no readable unit. Its counters go with the next one.
            # One the side collectors wrote into (hiccups, perf rows of an idle pipeline) is kept:
            # the platform's view of that span is a readable unit too, never set aside.
            shutil.rmtree(self.path, ignore_errors=True)
            write_total_log(self.root / TOTAL_LOG, run_totals, self.start_epoch_s, self.end_s)
            if not final:
                self._open(self.end_s)
            self.save_index()
            return
        closed = self.dir / f"{self.n:06d}"
        now = time.time()
        own = {k: v if k in GAUGES else v - self._prev_counters.get(k, 0) for k, v in counters.items()
               if isinstance(v, int) and not isinstance(v, bool)}  # fmt: skip
        self._prev_counters = dict(counters)
        segment = {"n": self.n, "start_s": self.start_s, "end_s": self.end_s,
                   "start_epoch_s": self.start_epoch_s + self.start_s, "end_epoch_s": self.start_epoch_s + self.end_s,
                   "interval_s": meta.get("interval_s"), "decayed": False, "counters_at_end": counters}  # fmt: skip
        write_total_log(self.path / TOTAL_LOG, self.totals, self.start_epoch_s, self.end_s)
        write_json_atomic(self.path / SUMMARY, {t: summarize(h) for t, h in self.totals.items()})
        write_json_atomic(self.path / SLOWEST, slowest)
        write_json_atomic(self.path / META, {**meta, "status": "complete", "segment": segment, "counters": own,
                                             "start_epoch_s": self.start_epoch_s,
                                             "end_epoch_s": segment["end_epoch_s"]})  # fmt: skip
        os.rename(self.path, closed)
        self.index.append({"n": self.n, "dir": f"{SEGMENTS_DIR}/{closed.name}", "start_s": self.start_s,
                           "end_s": self.end_s, "start_epoch_s": segment["start_epoch_s"],
                           "end_epoch_s": segment["end_epoch_s"], "interval_s": segment["interval_s"],
                           "bytes": dir_bytes(closed)})  # fmt: skip
        write_total_log(self.root / TOTAL_LOG, run_totals, self.start_epoch_s, self.end_s)
        self.n += 1
        start = self.end_s
        # Coarsen first, then remove by size: a decayed segment takes a fraction of its bytes, so
        # --max-disk keeps more history rather than deleting what decay was about to shrink.
        self._decay(now)
        self._retain(now)
        if not final:
            self._open(start)
            self.start_s = self.end_s = start
        self.save_index()

    def save_index(self) -> None:
        from .files import write_json_atomic

        write_json_atomic(self.root / INDEX, {"policy": self.policy.describe(), "removed": self.removed,
                                              "segments": self.index})  # fmt: skip

    def _retain(self, now: float) -> None:
        earlier = self._earlier_sessions()
        while earlier:
            start, end, path, size = earlier[0]
            why = self._why_remove(end, now, earlier, "sessions")
            if why is None:
                break
            shutil.rmtree(path, ignore_errors=True)
            earlier.pop(0)
            self.removed["sessions"] = self.removed.get("sessions", 0) + 1
            self.removed["bytes"] += size
            self.note(f"retention: removed earlier session {path.name} ({_wall(start)} to {_wall(end)}, "
                      f"{size / 1e6:.1f} MB): {why}")  # fmt: skip
        while len(self.index) > 0:
            oldest = self.index[0]
            why = self._why_remove(oldest["end_epoch_s"], now, earlier, "segments")
            if why is None:
                return
            self._remove(oldest, why)

    def _why_remove(self, end_epoch_s: float, now: float, earlier: list, what: str) -> str | None:
        """Why the oldest session or segment (ended at ``end_epoch_s``) goes, or None: older than
        --retain, or everything kept (earlier sessions, segments, the open one) over --max-disk."""
        p = self.policy
        if p.retain_s is not None and end_epoch_s < now - p.retain_s:
            return f"older than --retain {_span(p.retain_s)}"
        if p.max_disk_bytes is not None:
            used = sum(e[3] for e in earlier) + sum(s["bytes"] for s in self.index) + dir_bytes(self.path)
            if used > p.max_disk_bytes:
                return f"{what} take {format_size(used)}, over --max-disk {format_size(p.max_disk_bytes)}"
        return None

    def _earlier_sessions(self) -> list[tuple[float, float, Path, int]]:
        """(start, end, path, bytes) of the other sessions under the policy's ``pool``, oldest first:
        only directories whose meta.json says ``tickscope live`` wrote them (nothing else there is
        ours to remove). A session killed mid-run has no end: its meta.json's last save is one."""
        if self.policy.pool is None:
            return []
        out = []
        try:
            entries = list(Path(self.policy.pool).iterdir())
        except OSError:
            return []
        for path in entries:
            if path == self.root or path.is_symlink() or not path.is_dir():
                continue
            try:
                meta = json.loads((path / "meta.json").read_bytes())
                if not isinstance(meta, dict) or meta.get("command") != "tickscope live":
                    continue
                start = float(meta["start_epoch_s"])
                end = float(meta.get("end_epoch_s") or (path / "meta.json").stat().st_mtime)
            except (OSError, ValueError, TypeError, KeyError):
                continue
            out.append((start, end, path, dir_bytes(path)))
        return sorted(out)

    def _remove(self, entry: dict, why: str) -> None:
        from .files import read_hlog

        seg = self.root / entry["dir"]
        removed: dict[str, HdrHistogram] = {}
        if (self.root / REMOVED_LOG).is_file():
            for tag, ivs in read_hlog(self.root / REMOVED_LOG)[0].items():
                for iv in ivs:
                    _add(removed, tag, iv.hist)
        for tag, ivs in read_hlog(seg / TOTAL_LOG)[0].items():
            for iv in ivs:
                _add(removed, tag, iv.hist)
        # The sum first, then the segment: a crash between the two counts a segment twice in
        # removed.hlog and in the union, never loses one.
        write_total_log(self.root / REMOVED_LOG, removed, self.start_epoch_s, entry["end_s"])
        shutil.rmtree(seg, ignore_errors=True)
        self.index.pop(0)
        self.removed["segments"] += 1
        self.removed["bytes"] += entry["bytes"]
        self.removed["through_s"] = entry["end_s"]
        span = f"{_wall(entry['start_epoch_s'])} to {_wall(entry['end_epoch_s'])}"
        self.note(f"retention: removed segment {seg.name} ({span}, {entry['bytes'] / 1e6:.1f} MB): {why}")

    def _decay(self, now: float) -> None:
        from .files import LATENCY_LOG, META, write_json_atomic

        p = self.policy
        if p.decay_after_s is None:
            return
        for entry in self.index:
            seg = self.root / entry["dir"]
            if entry.get("decayed") or entry["end_epoch_s"] >= now - p.decay_after_s:
                continue
            os.replace(seg / COARSE_LOG, seg / LATENCY_LOG)
            meta = json.loads((seg / META).read_bytes())
            meta["segment"]["decayed"] = True
            meta["segment"]["interval_s"] = p.coarse_s
            write_json_atomic(seg / META, meta)
            entry.update(decayed=True, interval_s=p.coarse_s, bytes=dir_bytes(seg))

    def close(self) -> None:
        """Without a final cut (a writer closed by a bug of ours, or never written): files closed."""
        for log in (self.latency, self.warmup, self.coarse):
            if log is not None and not log.f.closed:
                log.close()


def _span(s: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= scale and s % scale == 0:
            return f"{s / scale:g}{unit}"
    return f"{s:g}s"


def _wall(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S")


# ---- reading ----------------------------------------------------------------------------------------


def load_segments(path: Path, warnings: list[str]):
    """The union of a segmented session's segments: ``(intervals, warmup, slowest candidates, end)``,
    intervals per tag in time order, ``end`` the last segment's end as the index records it (the
    run's last roll, after intervals that held no value and left no line; None if not recorded).
    Only ``latency.hlog`` of each segment is read (its coarse.hlog duplicates it until the decay
    replaces one by the other)."""
    from .files import LATENCY_LOG, SLOWEST, WARMUP_LOG, SessionError, _read_json, check_slowest, read_hlog

    intervals: dict[str, list] = {}
    warmup: dict[str, list] = {}
    slowest: list[dict] = []
    for _, seg, is_open in segment_dirs(path):
        if not (seg / LATENCY_LOG).is_file():
            if is_open:
                continue  # made, not yet written: a crash at the very start of a segment
            raise SessionError(
                f"{seg}/{LATENCY_LOG} is missing: that segment is damaged (remove it to read the rest)"
            )
        for name, into in ((LATENCY_LOG, intervals), (WARMUP_LOG, warmup)):
            if (seg / name).is_file():
                got, w = read_hlog(seg / name)
                warnings += [f"{seg.name}/{x}" for x in w]
                for tag, ivs in got.items():
                    into.setdefault(tag, []).extend(ivs)
        if not is_open:
            seg_warnings: list[str] = []
            slowest += check_slowest(_read_json(seg / SLOWEST, seg_warnings), seg_warnings)
            warnings += [f"{seg.name}/{x}" for x in seg_warnings]
    index = _read_json(path / INDEX, warnings)
    removed = index.get("removed") if isinstance(index, dict) else None
    if isinstance(removed, dict) and removed.get("segments"):
        through = removed.get("through_s")
        warnings.append(f"retention removed the {removed['segments']} oldest segment(s)"
                        + (f", up to {through:.0f}s into the run" if isinstance(through, int | float) else "")
                        + f": their totals are in {REMOVED_LOG}")  # fmt: skip
    listed = index.get("segments") if isinstance(index, dict) else None
    ends = [e["end_s"] for e in listed if isinstance(e, dict) and isinstance(e.get("end_s"), int | float)
            and not isinstance(e.get("end_s"), bool) and math.isfinite(e["end_s"])] if isinstance(listed, list) else []  # fmt: skip
    return intervals, warmup, slowest, max(ends, default=None)


def pick_slowest(candidates: list[dict], lo_s: float, hi_s: float, n: int = 20) -> list[dict]:
    """The ``n`` slowest distinct traces whose first stamp lies in ``[lo_s, hi_s)`` (run-relative)."""
    seen, out = set(), []
    for t in sorted(candidates, key=lambda t: -(t.get("tick_to_trade_ns") or 0)):
        first = t["stamps"][0].get("t_rel_ns") if t["stamps"] else None
        key = (t["trace_id"], t["stamps"][0]["ts_ns"] if t["stamps"] else None)
        if key in seen or first is None or not lo_s <= first / 1e9 < hi_s:
            continue
        seen.add(key)
        out.append(t)
        if len(out) == n:
            break
    return out


# ---- windows ----------------------------------------------------------------------------------------


class WindowError(ValueError):
    """A --from/--to that is not a time: one line naming it and the forms."""


_FORMS = (
    "use +2h (after the run's start), -30m (before its end) or a wall-clock time such as 2025-06-01T12:00"
)
_TOLERANCE_S = 0.0005  # interval bounds are written with 1 ms digits


@dataclass(frozen=True)
class Window:
    """``--from``/``--to`` as typed; resolved against one session (its start and its last interval)."""

    start: str | None = None
    end: str | None = None

    def __bool__(self) -> bool:
        return self.start is not None or self.end is not None

    def check(self) -> Window:
        for flag, text in (("--from", self.start), ("--to", self.end)):
            if text is not None:
                _bound(text, flag, 0.0, 0.0, 0.0)
        return self

    def resolve(self, start_epoch_s: float, end_s: float) -> tuple[float, float]:
        """-> ``(lo, hi)`` in seconds after the run's start."""
        lo = (
            _bound(self.start, "--from", start_epoch_s, end_s, -math.inf)
            if self.start is not None
            else -math.inf
        )
        hi = _bound(self.end, "--to", start_epoch_s, end_s, math.inf) if self.end is not None else math.inf
        if hi <= lo:
            raise WindowError(
                f"--from {self.start} is not before --to {self.end}: an empty window (swap them)"
            )
        return lo, hi

    def describe(self, lo: float, hi: float, start_epoch_s: float) -> str:
        def at(s: float) -> str:
            return "the start" if s == -math.inf else "the end" if s == math.inf else _wall(start_epoch_s + s)

        return f"{at(lo)} to {at(hi)}"


def _bound(text: str, flag: str, start_epoch_s: float, end_s: float, default: float) -> float:
    t = text.strip()
    try:
        if t.startswith("+"):
            return parse_duration_ns(t[1:], flag) / 1e9
        if t.startswith("-"):
            return end_s - parse_duration_ns(t[1:], flag) / 1e9
    except DurationError as e:
        raise WindowError(f"{flag} {text!r} is not a time: {_FORMS}") from e
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        raise WindowError(f"{flag} {text!r} is not a time: {_FORMS}") from None
    epoch = when.timestamp() if when.tzinfo is not None else when.astimezone().timestamp()
    return epoch - start_epoch_s


def in_window(iv, lo: float, hi: float) -> bool:
    """An interval belongs to a window when it lies wholly inside it: windows are exact at the
    resolution the data has (1 s, or the coarse interval of a decayed segment)."""
    return iv.start_s >= lo - _TOLERANCE_S and iv.end_s <= hi + _TOLERANCE_S


__all__ = [
    "COARSE_LOG",
    "DEFAULT_DECAY",
    "DEFAULT_SEGMENT_S",
    "FOREVER",
    "INDEX",
    "REMOVED_LOG",
    "SEGMENTS_DIR",
    "TOTAL_LOG",
    "SegmentError",
    "SegmentPolicy",
    "SegmentedLog",
    "Window",
    "WindowError",
    "in_window",
    "is_segmented",
    "load_segments",
    "parse_run_duration_s",
    "pick_slowest",
    "segment_dirs",
    "segment_policy",
]
