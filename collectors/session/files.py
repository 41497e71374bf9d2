"""The session directory: what a profile run leaves on disk, and the only thing reports read.

::

    <session>/
      meta.json        host, clocks, command, points and stages, counters (drops per cause), times
      latency.hlog     HdrHistogram interval log (format 1.3): one line per tag per interval,
                       ``Tag=<stage>,<start s>,<length s>,<max ms>,<base64 V2 histogram>``
      warmup.hlog      the same for the warm-up seconds, kept out of the headline numbers
      summary.json     per tag: count, min, mean, p50, p90, p99, p99_9, p99_99, max (ns); and under
                       the reserved key ``attribution`` the tail attribution (docs/session-format.md)
      slowest.json     the slowest traces with every stamp
      perf.csv, profile.speedscope.json, hiccup.hlog   from side collectors, when they ran

Everything is appended and flushed per interval (JSON files are replaced atomically), so a
collector killed mid-run leaves a session that loads.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram

from .dimensions import OTHER, is_dimension_tag, parse_tag, shown
from .hdr import (
    HistogramDecodeError,
    LayoutLimitError,
    add_any,
    counts_view,
    decode_histogram,
    decode_sparse,
    filled_of,
    holding,
    layout_of,
    new_histogram,
    summarize,
)
from .segments import (
    SegmentedLog,
    SegmentPolicy,
    Window,
    in_window,
    is_segmented,
    load_segments,
    pick_slowest,
    segment_dirs,
)

LATENCY_LOG = "latency.hlog"
WARMUP_LOG = "warmup.hlog"
META = "meta.json"
SUMMARY = "summary.json"
SLOWEST = "slowest.json"
INCIDENTS = "incidents"  # incidents/<UTC time>/ (collectors/rings/incidents.py writes them)
INCIDENT = "incident.json"
PERFETTO_INCIDENT = "trace.perfetto.json"
PERF_CSV = "perf.csv"
PROFILE = "profile.speedscope.json"
HICCUP_LOG = "hiccup.hlog"
SIDE_FILES = (PERF_CSV, PROFILE, HICCUP_LOG)  # what side collectors write into a session or a segment


def has_side_files(path: Path) -> bool:
    return any((path / name).is_file() for name in SIDE_FILES)


FORMAT_VERSION = 1
# summary.json's keys that are not tags (a stage may not be named so)
ATTRIBUTION = "attribution"
DIMENSIONS = "dimensions"


class SessionError(Exception):
    """A session that cannot be written or read. The message is one line naming the file."""


def write_json_atomic(path: Path, data, indent: int | None = 2) -> None:
    """``data`` as ``path``, whole or not at all. ``indent=None``: compact, and ~10x cheaper (only
    ``json.dumps`` without indent runs CPython's C encoder; ``json.dump`` never does)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=indent))
        f.write("\n")
    os.replace(tmp, path)


def _hlog_encode():
    """The hlog encoder (hlog_codec), imported by the first writer."""
    from .hlog_codec import encode

    return encode


class HistogramLogWriter:
    """Writes a tagged HdrHistogram interval log readable by HdrHistogram's own tools.

    (``hdrh.log.HistogramLogWriter`` writes no tags, so the lines are written here.)
    """

    def __init__(self, path: Path, start_epoch_s: float):
        self.path = path
        self.encode = _hlog_encode()
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the session
        stamp = datetime.fromtimestamp(start_epoch_s, UTC).isoformat()
        self.f.write("#[Histogram log format version 1.3]\n")
        self.f.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch), {stamp}]\n")
        self.f.write(f"#[BaseTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
        self.f.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
        self.f.flush()

    @classmethod
    def append_to(cls, path: Path) -> HistogramLogWriter:
        """More lines for a log already written (its header stays); for data joined after a run."""
        self = cls.__new__(cls)
        self.path = path
        self.encode = _hlog_encode()
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        return self

    def write(self, tag: str, hist: HdrHistogram, start_s: float, end_s: float) -> None:
        payload = self.encode(hist).decode("ascii")
        max_ms = hist.get_max_value() / 1e6
        self.f.write(f"Tag={tag},{start_s:.3f},{end_s - start_s:.3f},{max_ms:.3f},{payload}\n")

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class SessionWriter:
    """Creates a session directory and keeps it loadable after every interval.

    Closed exactly once: joins made after the run (a wire capture's tags) come in through
    ``add_tags`` while the session is still open, and nothing is written after ``close``."""

    def __init__(self, path: str | os.PathLike, meta: dict, segments: SegmentPolicy | None = None,
                 note: Callable[[str], None] | None = None):  # fmt: skip
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise SessionError(f"cannot write session directory {self.path}: {e.strerror or e} "
                               "(choose another --out, or make this one writable)") from None  # fmt: skip
        self.meta = dict(meta)
        self.meta.setdefault("format_version", FORMAT_VERSION)
        self.meta.setdefault("status", "running")
        # the encoder's import (numba, up to a second on a busy host) before the session's time
        # starts: after it, the session's start would lead the collector's by that long
        _hlog_encode()
        start = self.meta.setdefault("start_epoch_s", time.time())
        # Segmented, the top-level latency.hlog keeps its header (every segment's anchor) and the
        # tags joined after the run; the intervals go into the open segment.
        self.latency = HistogramLogWriter(self.path / LATENCY_LOG, start)
        self.segments = None
        if segments is not None:
            self.meta["segments"] = segments.describe()
            self.segments = SegmentedLog(self.path, segments, start, note or (lambda line: None))
        else:
            self.warmup = HistogramLogWriter(self.path / WARMUP_LOG, start)
        self.closed = False
        self._summary: dict = {}
        self._added: dict[str, dict] = {}  # summary rows of tags joined after the run
        self._slowest: list[dict] | None = None  # as last written (None: summary.json never was)
        self.save_meta()

    @property
    def _indent(self) -> int | None:
        """The state files are rewritten every few seconds while running: compact then; the final
        ones, written at the close, indented for people."""
        return None if self.meta.get("status") == "running" else 2

    def _open(self, doing: str) -> None:
        if self.closed:
            raise SessionError(f"session {self.path} is closed: cannot {doing} (a late write, a bug of ours)")

    def save_meta(self) -> None:
        self._open("save meta.json")
        write_json_atomic(self.path / META, self.meta, self._indent)

    def write_interval(
        self, hists: dict[str, HdrHistogram], start_s: float, end_s: float, warmup: bool
    ) -> None:
        self._open("write an interval")
        if self.segments is not None:
            self.segments.write(hists, start_s, end_s, warmup)
            return
        log = self.warmup if warmup else self.latency
        for tag, h in hists.items():
            if h.total_count:
                log.write(tag, h, start_s, end_s)
        log.flush()

    def segment_due(self, end_s: float) -> bool:
        """Whether the open segment is full once the interval ending at ``end_s`` is written."""
        return self.segments is not None and self.segments.due(end_s)

    def cut_segment(self, slowest: list[dict], counters: dict, totals: dict[str, HdrHistogram],
                    final: bool = False) -> None:  # fmt: skip
        """Close the open segment with its slowest traces and the run's counters so far (its own
        are the difference from the previous cut), and write the run's ``totals``."""
        self._open("close a segment")
        self.segments.cut(self.meta, slowest, counters, totals, final)
        self.meta["segments_removed"] = dict(self.segments.removed)

    def write_summary(self, summary: dict, slowest: list[dict], attribution: dict | None = None,
                      dimensions: dict | None = None) -> None:  # fmt: skip
        self._open("write summary.json")
        self._summary = {**summary, **({ATTRIBUTION: attribution} if attribution else {}),
                         **({DIMENSIONS: dimensions} if dimensions else {})}  # fmt: skip
        self._slowest = slowest
        self._write_summary()

    def _write_summary(self) -> None:
        write_json_atomic(self.path / SUMMARY, {**self._summary, **self._added}, self._indent)
        if self._slowest is not None:
            write_json_atomic(self.path / SLOWEST, self._slowest, self._indent)

    def add_tags(self, intervals) -> dict[str, dict]:
        """More tags for latency.hlog, from ``(start_s, end_s, {tag: histogram})`` intervals in time
        order (consumed one at a time: memory does not grow with the time they span), and their
        totals into summary.json. -> the added tags' summary rows."""
        from tickscope.collectors.session.hdr import summarize

        self._open("add tags")
        totals: dict[str, HdrHistogram] = {}
        for start_s, end_s, hists in intervals:
            for tag, h in hists.items():
                if h.total_count:
                    self.latency.write(tag, h, start_s, end_s)
                if tag in totals:
                    totals[tag].add(h)
                else:
                    totals[tag] = h
        self.latency.flush()
        rows = {tag: summarize(h) for tag, h in totals.items()}
        self._added.update(rows)
        write_json_atomic(self.path / SUMMARY, {**self._summary, **self._added}, self._indent)
        return rows

    def close(self, status: str = "complete", end_epoch_s: float | None = None) -> None:
        self._open("close it again")
        self.meta["status"] = status
        self.meta["end_epoch_s"] = time.time() if end_epoch_s is None else end_epoch_s
        if self._slowest is not None or self._added:
            self._write_summary()  # the last state, indented (meta.json last: "complete" means all is)
        self.save_meta()
        self.closed = True
        self.latency.close()
        if self.segments is not None:
            self.segments.close()
        else:
            self.warmup.close()


class Interval:
    """One interval of one tag. Keeps the compact encoded form and decodes on demand: a decoded
    histogram is ~225 KB of counts, and a one-hour session has tens of thousands of intervals.
    Decoding checks the layout the payload declares before allocating it (MAX_COUNTS_LEN)."""

    __slots__ = ("start_s", "length_s", "_payload", "_hist", "_where")

    def __init__(self, start_s: float, length_s: float, hist: HdrHistogram | None = None, payload: str | None = None,
                 where: str = "") -> None:  # fmt: skip
        self.start_s, self.length_s = start_s, length_s  # start relative to the session start
        self._hist, self._payload, self._where = hist, payload, where

    @property
    def hist(self) -> HdrHistogram:
        if self._hist is not None:
            return self._hist
        try:
            return decode_histogram(self._payload)
        except HistogramDecodeError as e:
            raise SessionError(self._damaged(e)) from None

    def sparse(self):
        """``(layout, bucket indexes, counts)`` of the buckets that hold counts, without decoding a
        whole histogram when only the encoded form is held (``hdr.decode_sparse``)."""
        if self._hist is not None:
            nz = filled_of(self._hist)
            return layout_of(self._hist), nz, counts_view(self._hist)[nz]
        try:
            return decode_sparse(self._payload)
        except HistogramDecodeError as e:
            raise SessionError(self._damaged(e)) from None

    def _damaged(self, e: HistogramDecodeError) -> str:
        return (f"{self._where}: interval at {self.start_s:.3f}s holds a damaged histogram, {e} "
                "(re-record the session or cut that line out)")  # fmt: skip

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s


def _header_seconds(line: str, name: str, where: str, warnings: list[str]) -> float | None:
    """The number after ``#[StartTime:`` / ``#[BaseTime:``; a missing or non-numeric one is a warning."""
    words = line.split(":", 1)[1].replace("]", " ").split()
    try:
        value = float(words[0])
        if not math.isfinite(value):
            raise ValueError
        return value
    except (IndexError, ValueError):
        warnings.append(
            f"{where}: {name} {(words[0] if words else '')!r} is not a number of seconds, ignored"
        )
        return None


def log_anchor(path: Path) -> float | None:
    """The absolute time (epoch s) a log's interval starts count from: its BaseTime, else its
    StartTime (``parse_hlog`` rebases absolute starts on it); None without a finite one of either.
    Checked as ``parse_hlog`` checks them (a ``nan`` or ``inf`` is no time)."""
    start = base = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.startswith("#"):
                    if line.startswith('"'):
                        continue
                    break
                if line.startswith("#[StartTime:"):
                    start = _header_seconds(line, "StartTime", path.name, [])
                elif line.startswith("#[BaseTime:"):
                    base = _header_seconds(line, "BaseTime", path.name, [])
    except OSError:
        return None
    return base if base is not None else start


def read_hlog(path: Path) -> tuple[dict[str, list[Interval]], list[str]]:
    """Parse a (tagged or untagged) HdrHistogram interval log file. See ``parse_hlog``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SessionError(
            f"cannot read {path}: {e.strerror or e} (check the path and its permissions)"
        ) from None
    return parse_hlog(data.decode("utf-8", errors="replace"), path)


def parse_hlog(text: str, path: Path) -> tuple[dict[str, list[Interval]], list[str]]:
    """Parse the text of a (tagged or untagged) HdrHistogram interval log. Untagged lines get tag "default".

    Returns intervals per tag in file order, and warnings (a truncated last line is skipped with
    a warning: that is what a killed writer leaves; an unreadable StartTime/BaseTime header is
    ignored with a warning). Anything else malformed is a SessionError naming the line. The first
    and last lines are decoded in full, the rest when a report needs them.
    """
    lines = text.split("\n")
    truncated_tail = bool(lines) and lines[-1] != ""
    out: dict[str, list[Interval]] = {}
    warnings: list[str] = []
    start_time = base_time = None
    for i, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#[StartTime:"):
                start_time = _header_seconds(line, "StartTime", f"{path.name} line {i + 1}", warnings)
            elif line.startswith("#[BaseTime:"):
                base_time = _header_seconds(line, "BaseTime", f"{path.name} line {i + 1}", warnings)
            continue
        if line.startswith('"StartTimestamp"'):
            continue
        tag = "default"
        if line.startswith("Tag="):
            tag, _, line = line[4:].partition(",")
        parts = line.split(",")
        last = i == len(lines) - 1 and truncated_tail
        try:
            if len(parts) != 4:
                raise HistogramDecodeError(f"expected 4 fields, found {len(parts)}")
            try:
                start, length = float(parts[0]), float(parts[1])
            except ValueError:
                raise HistogramDecodeError("start and length are not numbers") from None
            if not (math.isfinite(start) and math.isfinite(length) and length >= 0):
                raise HistogramDecodeError(f"start {parts[0]} / length {parts[1]} are not finite seconds")
            if not parts[3].startswith("HIST") or len(parts[3]) < 40:
                raise HistogramDecodeError("payload is not a base64 V2 histogram")
            if last or len(out) == 0:  # the first and a possibly cut last line are checked fully
                decode_histogram(parts[3])
        except HistogramDecodeError as e:
            if last and not isinstance(e, LayoutLimitError):
                warnings.append(f"{path.name}: last line truncated (writer killed mid-write?), ignored")
                break
            raise SessionError(f"{path}: line {i + 1} is not an HdrHistogram interval: {e}") from None
        # Absolute timestamps (other tools) become relative to the log's start.
        if base_time is None and start_time is not None and start > start_time - 365 * 86400:
            start -= start_time
        out.setdefault(tag, []).append(
            Interval(start, length, payload=parts[3], where=f"{path} line {i + 1}")
        )
    return out, warnings


class Session:
    """A saved session, loaded read-only. ``reports/`` imports nothing else from the collector.

    Whatever is on disk, a loaded session holds only well-typed data (see ``check_meta``,
    ``check_summary``, ``check_slowest``): renderers never meet a wrong type.
    """

    def __init__(self, path: Path, meta: dict, intervals: dict[str, list[Interval]],
                 warmup: dict[str, list[Interval]], summary: dict | None, slowest: list[dict],
                 warnings: list[str], attribution: dict | None = None,
                 dimension_summary: dict | None = None):  # fmt: skip
        self.path = path
        self.dimension_summary = dimension_summary or {}  # summary.json's "dimensions" ({}: none recorded)
        self.meta = meta
        self.intervals = intervals
        self.warmup_intervals = warmup
        self._summary = summary
        self.attribution = attribution  # summary.json's tail attribution (None: not recorded)
        self.slowest = slowest
        self.warnings = warnings
        self._totals: dict[str, HdrHistogram] = {}
        self.slowest_pool: list[dict] = []  # a segmented session: the slowest traces of every segment
        # where the run ended, when recorded beyond its intervals (a segmented run's index: its last
        # intervals may have held no value and left no line); a window's "-DUR" counts back from it
        self.run_end_s: float | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, window: Window | None = None) -> Session:
        """Load a session directory (a segmented one as the union of its segments), or a bare
        ``.hlog`` file written by any HdrHistogram tool; with a ``window``, only its intervals."""
        session = cls._load(Path(path))
        return session.within(window) if window else session

    @classmethod
    def _load(cls, p: Path) -> Session:
        if p.is_file():
            return cls._from_hlog_file(p)
        if not p.is_dir():
            raise SessionError(f"no session at {p} (expected a session directory or an .hlog file)")
        meta_path = p / META
        if not meta_path.is_file():
            raise SessionError(
                f"{p} is not a tickscope session: {META} is missing (name a session directory)"
            )
        warnings: list[str] = []
        try:
            raw_meta = json.loads(meta_path.read_bytes())
        except OSError as e:
            raise SessionError(
                f"cannot read {meta_path}: {e.strerror or e} (check its permissions)"
            ) from None
        except (ValueError, RecursionError) as e:
            raise SessionError(f"{meta_path}: not valid JSON ({_one_line(e)})") from None
        meta = check_meta(raw_meta, warnings)
        if is_segmented(p):
            return cls._from_segments(p, meta, warnings)
        log = p / LATENCY_LOG
        if not log.is_file():
            raise SessionError(
                f"{log} is missing: the session recorded no intervals (nothing to read; record a longer run)"
            )
        intervals, w1 = read_hlog(log)
        warnings += w1
        if not intervals and not (isinstance(meta.get("segment"), dict) and has_side_files(p)):
            # (a segment of an idle pipeline holds only what the side collectors saw: readable)
            raise SessionError(f"{log} holds no intervals (empty or truncated session)")
        warmup: dict[str, list[Interval]] = {}
        if (p / WARMUP_LOG).is_file():
            warmup, w2 = read_hlog(p / WARMUP_LOG)
            warnings += w2
        raw_summary = _read_json(p / SUMMARY, warnings)
        attribution = None
        if isinstance(raw_summary, dict) and ATTRIBUTION in raw_summary:
            raw_summary = dict(raw_summary)
            attribution = check_attribution(raw_summary.pop(ATTRIBUTION), warnings)
        dims = None
        if isinstance(raw_summary, dict) and DIMENSIONS in raw_summary:
            raw_summary = dict(raw_summary)
            dims = check_dimension_summary(raw_summary.pop(DIMENSIONS), warnings)
        summary = check_summary(raw_summary, warnings)
        slowest = check_slowest(_read_json(p / SLOWEST, warnings), warnings)
        if meta.get("status") == "running":
            warnings.append(f"{p.name}: the collector did not finish (killed?); data up to its last interval")
            # summary.json is rewritten every few seconds, the log flushed every interval: the
            # figures come from the log, exact up to its last interval (as a segmented run's do)
            summary = None
        return cls(p, meta, intervals, warmup, summary, slowest, warnings, attribution, dims)

    @classmethod
    def _from_segments(cls, p: Path, meta: dict, warnings: list[str]) -> Session:
        """The union of the segments kept, and the tags joined after the run (top-level latency.hlog).
        The run's summary.json covers segments retention removed too: the summary is computed
        from the union instead, and the slowest traces are those of the segments kept."""
        intervals, warmup, slowest, indexed_end = load_segments(p, warnings)
        if (p / LATENCY_LOG).is_file():
            added, w = read_hlog(p / LATENCY_LOG)
            warnings += w
            for tag, ivs in added.items():
                intervals.setdefault(tag, []).extend(ivs)
        if not intervals and not any(has_side_files(seg) for _, seg, _ in segment_dirs(p)):
            raise SessionError(f"{p}: no segment holds an interval (empty or truncated session)")
        raw_summary = _read_json(p / SUMMARY, warnings)
        attribution = None
        if isinstance(raw_summary, dict) and ATTRIBUTION in raw_summary:
            attribution = check_attribution(raw_summary[ATTRIBUTION], warnings)
        dims = None
        if isinstance(raw_summary, dict) and DIMENSIONS in raw_summary:
            dims = check_dimension_summary(raw_summary[DIMENSIONS], warnings)
        starts = [iv.start_s for ivs in intervals.values() for iv in ivs]
        ends = [iv.end_s for ivs in intervals.values() for iv in ivs]
        top = check_slowest(_read_json(p / SLOWEST, warnings), warnings)
        pool = slowest + top
        if meta.get("status") == "running":
            warnings.append(f"{p.name}: the collector did not finish (killed?); data up to its last interval")
        session = cls(p, meta, intervals, warmup, None, pick_slowest(pool, min(starts, default=0.0), max(ends, default=0.0) + 1e-3),
                      warnings, attribution, dims)  # fmt: skip
        session.slowest_pool = pool  # every segment's slowest: a window picks its own from them
        session.run_end_s = indexed_end
        return session

    def within(self, window: Window) -> Session:
        """The same session cut to ``window``: its intervals wholly inside it, the slowest traces
        that started in it; the summary is computed from those intervals, the attribution (whole
        run) is left out. ``SessionError`` when the window holds no interval."""
        ends = [iv.end_s for ivs in self.intervals.values() for iv in ivs]
        start_epoch = self.meta.get("start_epoch_s") or log_anchor(self.path / LATENCY_LOG if self.path.is_dir()
                                                                   else self.path) or 0.0  # fmt: skip
        try:
            lo, hi = window.resolve(start_epoch, max(ends + [self.run_end_s or 0.0]) if ends else 0.0)
        except ValueError as e:
            raise SessionError(str(e)) from None
        kept = {t: [iv for iv in ivs if in_window(iv, lo, hi)] for t, ivs in self.intervals.items()}
        kept = {t: ivs for t, ivs in kept.items() if ivs}
        if not kept:
            span = (
                f"{min(iv.start_s for ivs in self.intervals.values() for iv in ivs):.0f}s to {max(ends):.0f}s"
            )
            raise SessionError(f"{self.path}: no interval lies within {window.describe(lo, hi, start_epoch)} "
                               f"(the session spans {span} after its start)")  # fmt: skip
        meta = {**self.meta, "window": {"from_s": None if lo == -math.inf else lo,
                                        "to_s": None if hi == math.inf else hi}}  # fmt: skip
        slowest = pick_slowest(self.slowest_pool or self.slowest, lo, hi)
        warmup = {t: [iv for iv in ivs if in_window(iv, lo, hi)] for t, ivs in self.warmup_intervals.items()}
        return Session(self.path, meta, kept, {t: v for t, v in warmup.items() if v}, None, slowest,
                       list(self.warnings), None)  # fmt: skip

    @classmethod
    def _from_hlog_file(cls, p: Path) -> Session:
        intervals, warnings = read_hlog(p)
        if not intervals:
            raise SessionError(f"{p} holds no intervals (empty or not an HdrHistogram log)")
        meta = {"name": p.stem, "source": "hlog", "stages": [], "points": []}
        return cls(p, meta, intervals, {}, None, [], warnings)

    @property
    def recorded_warnings(self) -> list[str]:
        """What went wrong while the session was recorded (a side collector that failed, a capture
        cut short), as opposed to ``warnings`` about the files as they were loaded."""
        return [*self.meta.get("side_warnings", []), *self.meta.get("wire", {}).get("warnings", [])]

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.path.name

    def incidents(self) -> list[dict]:
        """The incidents written under ``incidents/`` (``--incident``), oldest first: each its
        directory (``dir``, a path), time, trigger, value, breaching trace and the traces held.
        One that does not read is a warning on the session, never an error."""
        root = self.path / INCIDENTS if self.path.is_dir() else None
        out = []
        for d in sorted(root.iterdir()) if root is not None and root.is_dir() else ():
            if d.name.startswith(".") or not d.is_dir():  # .tmp-*: an incident the collector did not finish
                continue
            doc = _read_json(d / INCIDENT, self.warnings)
            if not isinstance(doc, dict) or not isinstance(doc.get("trigger"), str):
                if (d / INCIDENT).is_file():
                    self.warnings.append(f"{INCIDENTS}/{d.name}/{INCIDENT}: not an incident, ignored")
                continue
            out.append({"dir": d, "time_utc": str(doc.get("time_utc", d.name)), "trigger": doc["trigger"],
                        "value_ns": doc.get("value_ns") if _is_int(doc.get("value_ns")) else None,
                        "trace_id": doc.get("trace_id"), "traces": doc.get("traces") if _is_int(doc.get("traces")) else 0,
                        "also_breached": len(doc.get("also_breached") or []),
                        "unavailable": doc.get("unavailable") if isinstance(doc.get("unavailable"), dict) else {},
                        "perfetto": d / PERFETTO_INCIDENT})  # fmt: skip
        return out

    @property
    def tags(self) -> list[str]:
        """Every tag with data: stages in pipeline order first, then the rest (tick_to_trade, ...)."""
        stage_names = self.stages
        known = ["tick_to_trade", "tick_to_trade_co", "tick_to_decision", "tick_to_decision_co"]
        rest = [t for t in known if t in self.intervals and t not in stage_names]
        rest += [
            t for t in self.intervals if t not in stage_names and t not in known and not is_dimension_tag(t)
        ]
        return [s for s in dict.fromkeys(stage_names) if s in self.intervals] + rest

    @property
    def dimensions(self) -> dict[str, list[str]]:
        """Slicing ("venue", or "venue,symbol" for a combination) -> its values with histograms,
        most rows first (``*other`` last), as found in the log: a merged or bare hlog has them too."""
        rows: dict[str, dict[str, int]] = {}
        for tag in self.intervals:
            base, values = parse_tag(tag)
            if values and base in ("tick_to_trade", "tick_to_decision"):
                key = ",".join(values.values())
                count = rows.setdefault(",".join(values), {})
                count[key] = count.get(key, 0) + self.total(tag).total_count
        return {d: sorted(v, key=lambda k: (OTHER in k.split(","), -v[k], k))
                for d, v in rows.items()}  # fmt: skip

    def slice(self, slicing: str, value: str) -> Session:
        """The session as one value of one slicing sees it: its per-dimension tags under their plain
        names (so every renderer and ``compare`` read it as a session), its summary rows and tail
        attribution from summary.json's ``dimensions``. ``value`` joins a combination's values with
        commas, in the slicing's order (``XNAS,AAPL`` for ``venue,symbol``)."""
        want = dict(zip(slicing.split(","), value.split(","), strict=False))
        intervals = {}
        for tag, ivs in self.intervals.items():
            base, values = parse_tag(tag)
            if values == want:
                intervals[base] = ivs
        if not intervals:
            raise SessionError(f"{self.path}: no histograms for {slicing}={shown(value)} (values: "
                               f"{', '.join(map(shown, self.dimensions.get(slicing, []))) or 'none recorded'})")  # fmt: skip
        recorded = self.dimension_summary.get(slicing, {}).get("values", {}).get(value, {})
        summary = recorded.get("tags") or None
        meta = {**self.meta, "slice": {slicing: value}}
        return Session(
            self.path, meta, intervals, {}, summary, [], list(self.warnings), recorded.get("attribution")
        )

    @property
    def stages(self) -> list[str]:
        return [s["name"] for s in self.meta.get("stages", [])]

    @property
    def trade_stages(self) -> list[str]:
        """The stages that make up tick-to-trade (those before the trade point), in order."""
        points = self.meta.get("points", [])
        trade = self.meta.get("trade_point")
        if trade not in points:
            return self.stages
        cut = points.index(trade)
        return [s["name"] for s in self.meta.get("stages", [])[:cut]]

    def total(self, tag: str) -> HdrHistogram:
        """All (non-warm-up) intervals of ``tag`` added together, in a layout that holds every one
        of them (their own when they share one, as tickscope's do)."""
        if tag not in self._totals:
            h = None
            for iv in self.intervals.get(tag, []):
                x = iv.hist
                h = new_histogram(*layout_of(x)) if h is None else holding(h, x)
                add_any(h, x)
            h = h if h is not None else new_histogram()
            # Keep totals of small layouts only: a file of many tags with big layouts must not
            # hold them all alive (each is recomputed when asked again).
            cached = sum(t.counts_len for t in self._totals.values())
            if cached + h.counts_len <= _TOTALS_CACHE_COUNTS:
                self._totals[tag] = h
            return h
        return self._totals[tag]

    def summary(self) -> dict[str, dict]:
        """Per tag: count, min, mean, p50..p99_99, max in ns (computed from the log if needed)."""
        if self._summary and all(t in self._summary for t in self.tags):
            return self._summary
        return {t: summarize(self.total(t)) for t in self.tags}

    def counters(self) -> dict:
        return self.meta.get("counters", {})

    def side_file(self, name: str) -> Path | None:
        f = self.path / name if self.path.is_dir() else None
        return f if f is not None and f.is_file() else None

    def side_bytes(self, name: str) -> bytes | None:
        """A side file's contents (perf.csv, py-spy's profile), None when the session has none: the
        session reads its files, so renderers never do. OSError when it cannot be read. Of a
        segmented session, a table cut with the segments (perf.csv) is their union: the header
        once, then each segment's rows, oldest segment first."""
        f = self.side_file(name)
        if (
            f is not None
            or not name.endswith(".csv")
            or not self.path.is_dir()
            or not is_segmented(self.path)
        ):
            return None if f is None else f.read_bytes()
        parts = [(seg / name).read_bytes() for _, seg, _ in segment_dirs(self.path) if (seg / name).is_file()]
        if not parts:
            return None
        # a segment cut short by a crash may end mid-row: each part ends its own last line
        rows = [p.split(b"\n", 1)[1] if b"\n" in p else b"" for p in parts]
        return (
            parts[0].split(b"\n", 1)[0]
            + b"\n"
            + b"".join(r if r.endswith(b"\n") or not r else r + b"\n" for r in rows)
        )

    def side_hlog(self, name: str) -> tuple[dict[str, list[Interval]], list[str]] | None:
        """A side interval log (hiccup.hlog) as ``read_hlog`` parses it, None when there is none;
        of a segmented session, the union of its segments' (cut with them)."""
        if self.path.is_dir() and is_segmented(self.path):
            logs = [read_hlog(seg / name) for _, seg, _ in segment_dirs(self.path) if (seg / name).is_file()]
            if not logs:
                return None
            union: dict[str, list[Interval]] = {}
            for ivs, _ in logs:
                for tag, got in ivs.items():
                    union.setdefault(tag, []).extend(got)
            return union, [w for _, ws in logs for w in ws]
        f = self.side_file(name)
        return None if f is None else read_hlog(f)

    @property
    def duration_s(self) -> float:
        ends = [iv.end_s for ivs in self.intervals.values() for iv in ivs]
        starts = [iv.start_s for ivs in self.intervals.values() for iv in ivs]
        return max(ends) - min(starts) if ends else 0.0


_TOTALS_CACHE_COUNTS = 1 << 23  # 64 MB of cached per-tag totals; ~300 tags of tickscope's layout


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _read_json(path: Path, warnings: list[str]):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        warnings.append(f"{path.name}: unreadable ({_one_line(e)[:120]}), ignored")
        return None


# ---- schema checks: wrong types become warnings and safe defaults, in one place ----------------


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_count(v) -> bool:
    return _is_int(v) and 0 <= v < 1 << 64


def _is_number(v) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _is_epoch(v) -> bool:
    return _is_number(v) and 0 <= v < 1e11  # time.gmtime() must be able to format it


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_stage(v) -> bool:
    return isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("name", "from", "to"))


def _is_finding(v) -> bool:  # a doctor check: name, value, fix, status
    return isinstance(v, dict) and all(isinstance(v.get(k), str | int | float | None) for k in
                                       ("name", "value", "fix", "status")) and "name" in v  # fmt: skip


def _is_host(v) -> bool:
    return isinstance(v, dict)


# Key: (check, what it should be, default). Keys not listed are kept as found: no renderer reads them.
META_SCHEMA = {
    "name": (_is_str, "a string", None),
    "status": (_is_str, "a string", None),
    "command": (_is_str, "a string", ""),
    "host": (_is_host, "an object", {}),
    "points": (_is_str_list, "a list of point names", []),
    "stages": (lambda v: isinstance(v, list), "a list of {name, from, to}", []),
    "trade_point": (_is_str, "a point name", None),
    "counters": (lambda v: isinstance(v, dict), "an object of counts", {}),
    "start_epoch_s": (_is_epoch, "seconds since the epoch", None),
    "end_epoch_s": (_is_epoch, "seconds since the epoch", None),
    "interval_s": (lambda v: _is_number(v) and v > 0, "a positive number of seconds", None),
    "clocks": (lambda v: isinstance(v, dict), "an object", {}),
    "doctor": (lambda v: isinstance(v, list), "a list of checks", []),
    "side_warnings": (_is_str_list, "a list of strings", []),
    "wire": (lambda v: isinstance(v, dict), "an object", {}),  # tickscope wire: its warnings
}


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


def check_meta(raw, warnings: list[str]) -> dict:
    """meta.json as renderers may rely on it: every key of META_SCHEMA of the right type (else a
    warning and its default), stages/doctor entries well-formed, counters non-negative integers."""
    if not isinstance(raw, dict):
        warnings.append(f"{META} is {_kind(raw)}, not an object: host, stages and counters unknown")
        raw = {}
    meta = dict(raw)
    for key, (ok, expected, default) in META_SCHEMA.items():
        if key in meta and not ok(meta[key]):
            warnings.append(f"{META}: {key} is {_kind(meta[key])}, expected {expected}: ignored")
            meta[key] = default
        if meta.get(key) is None and default is not None:
            meta[key] = default
    host = meta["host"]
    if any(not isinstance(host.get(k), str | type(None)) for k in ("hostname", "cpu_model")):
        warnings.append(f"{META}: host.hostname / host.cpu_model are not strings: ignored")
        meta["host"] = {k: v for k, v in host.items() if k not in ("hostname", "cpu_model")}
    for key, ok, what in (("stages", _is_stage, "{name, from, to} with string values"),
                          ("doctor", _is_finding, "{name, value, fix, status}")):  # fmt: skip
        good = [x for x in meta[key] if ok(x)]
        if len(good) != len(meta[key]):
            warnings.append(f"{META}: {len(meta[key]) - len(good)} of {len(meta[key])} {key} entries are not "
                            f"{what}: ignored")  # fmt: skip
            meta[key] = good
    if not _is_str_list(meta["wire"].get("warnings", [])):
        warnings.append(f"{META}: wire.warnings is {_kind(meta['wire']['warnings'])}, expected a list of strings: "
                        "ignored")  # fmt: skip
        meta["wire"] = {k: v for k, v in meta["wire"].items() if k != "warnings"}
    counters = meta["counters"]
    bad = [k for k, v in counters.items() if not _is_count(v)]
    if bad:
        shown = ", ".join(f"{k}={counters[k]!r}"[:60] for k in bad[:3]) + (" ..." if len(bad) > 3 else "")
        warnings.append(f"{META}: counters are non-negative integers; ignored {shown}")
        meta["counters"] = {k: v for k, v in counters.items() if k not in bad}
    return meta


_SUMMARY_KEYS = ("count", "min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max")


def check_summary(raw, warnings: list[str]) -> dict | None:
    """summary.json, or None (recomputed from the log) when any of it is not numbers per tag."""
    if raw is None:
        return None
    ok = isinstance(raw, dict) and all(
        isinstance(v, dict)
        and _is_count(v.get("count"))
        and all(_is_number(v[k]) for k in _SUMMARY_KEYS if k in v)
        for v in raw.values()
    )
    if not ok:
        warnings.append(f"{SUMMARY}: not numbers per stage, ignored (computed from the log instead)")
        return None
    return raw


def _is_tail(v, stages: list[str]) -> bool:
    return (isinstance(v, dict) and all(_is_count(v.get(k)) for k in ("traces", "threshold_ns", "percentile_ns"))
            and _is_number(v.get("mean_tick_to_trade_ns")) and isinstance(v.get("median"), dict)
            and isinstance(v.get("stages"), dict) and set(v["stages"]) == set(stages)
            and all(isinstance(x, dict) and all(_is_number(x.get(k)) for k in ("mean_ns", "mean_share"))
                    # null after a merge: a median of the union is unknown (docs/fleet.md)
                    and (_is_number(x.get("median_share")) or x.get("median_share", 0) is None)
                    for x in v["stages"].values()))  # fmt: skip


def check_attribution(raw, warnings: list[str]) -> dict | None:
    """summary.json's ``attribution``, or None (with one warning) when a renderer could not use it."""
    ok = (isinstance(raw, dict) and _is_count(raw.get("traces")) and _is_str_list(raw.get("stages"))
          and isinstance(raw.get("tails"), dict) and all(_is_tail(t, raw["stages"]) for t in raw["tails"].values()))  # fmt: skip
    if not ok:
        warnings.append(f"{SUMMARY}: attribution is malformed, not shown")
        return None
    return raw


def check_dimension_summary(raw, warnings: list[str]) -> dict | None:
    """summary.json's ``dimensions`` (docs/session-format.md), or None (with one warning) when a renderer
    could not use it; a value's malformed attribution is dropped alone (with a warning)."""
    ok = isinstance(raw, dict) and all(
        isinstance(s, dict) and _is_count(s.get("cap")) and isinstance(s.get("values"), dict)
        and all(isinstance(v, dict) and _is_count(v.get("rows")) and isinstance(v.get("tags"), dict)
                and check_summary(v["tags"], []) is not None for v in s["values"].values())
        for s in raw.values()
    )  # fmt: skip
    if not ok:
        warnings.append(f"{SUMMARY}: dimensions are malformed, per-dimension rows computed from the log")
        return None
    for s in raw.values():
        for v in s["values"].values():
            if "attribution" in v and check_attribution(v["attribution"], warnings) is None:
                del v["attribution"]
    return raw


def _is_stamp(v) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("point"), str) and _is_int(v.get("ts_ns"))
            and (v.get("t_rel_ns") is None or _is_int(v.get("t_rel_ns")))
            and all(v.get(k) is None or _is_int(v.get(k)) for k in ("pid", "tid"))
            and (v.get("writer") is None or isinstance(v.get("writer"), str)))  # fmt: skip


def _is_trace(v) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("trace_id"), int | str) and not isinstance(v.get("trace_id"), bool)
            and (v.get("tick_to_trade_ns") is None or _is_number(v.get("tick_to_trade_ns")))
            and isinstance(v.get("stamps"), list) and all(_is_stamp(s) for s in v["stamps"]))  # fmt: skip


def check_slowest(raw, warnings: list[str]) -> list[dict]:
    """slowest.json's well-formed traces; the others are dropped with one warning."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        warnings.append(f"{SLOWEST} is {_kind(raw)}, not a list of traces: ignored")
        return []
    good = [t for t in raw if _is_trace(t)]
    if len(good) != len(raw):
        warnings.append(f"{SLOWEST}: {len(raw) - len(good)} of {len(raw)} traces are malformed, ignored")
    return good


@dataclass
class SessionCounters:
    """Every record accounted for, per ring and in total, from one reading of each ring's counters:
    ``produced = drained + dropped_ring_full + in_ring + drained_before_attach + records_refused``.
    ``malformed`` records are drained ones that carried nothing usable (a subset of ``drained``).

    Every trace the correlator closed likewise: ``traces_seen = traces_complete (recorded) + the
    traces set aside``, one reason each (``TRACES_SET_ASIDE``)."""

    produced: int = 0
    drained: int = 0
    dropped_ring_full: int = 0
    in_ring: int = 0  # published, not drained yet (a backlog mid-run; left behind at the end)
    drained_before_attach: int = 0  # released by an earlier collector (``tickscope live``)
    records_refused: int = 0  # in rings refused for contradicting another ring's declarations
    malformed: int = 0
    rings_quarantined: int = 0
    rings_refused: int = 0
    duplicate_stamps: int = 0
    traces_seen: int = 0
    traces_complete: int = 0
    traces_incomplete: int = 0
    traces_clock_skew: int = 0
    late_beyond_horizon: int = 0
    traces_evicted: int = 0
    traces_duplicate: int = 0
    traces_out_of_range: int = 0
    traces_unordered: int = 0
    traces_open_at_end: int = 0
    values_out_of_range: int = 0
    writers_died: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d

    @property
    def drop_free(self) -> bool:
        records = (self.dropped_ring_full, self.malformed, self.in_ring, self.rings_quarantined, self.rings_refused,
                   self.records_refused, self.values_out_of_range)  # fmt: skip
        return not any(records) and not sum(getattr(self, k) for k in TRACES_SET_ASIDE)


# Counter -> what the accounting line calls it, in the order the correlator applies the reasons.
TRACES_SET_ASIDE = {
    "traces_evicted": "evicted (too many open)",
    "traces_duplicate": "duplicate stamps",
    "traces_incomplete": "incomplete",
    "traces_clock_skew": "clock skew",
    "traces_out_of_range": "beyond the histogram range",
    "late_beyond_horizon": "late beyond the horizon",
    "traces_unordered": "unordered points",
}


def _int(counters: dict, key: str) -> int:
    v = counters.get(key, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def trace_accounting(counters: dict) -> tuple[int, int, dict[str, int]] | None:
    """(seen, recorded, {label: traces set aside}) from a session's counters; None without traces.

    Sessions saved before ``traces_seen`` was counted: seen is rebuilt from the counts that were
    exclusive then (recorded, incomplete, clock skew, late beyond the horizon)."""
    if "traces_complete" not in counters:
        return None
    recorded = _int(counters, "traces_complete")
    if "traces_seen" in counters:
        aside = {label: _int(counters, k) for k, label in TRACES_SET_ASIDE.items()}
        seen = _int(counters, "traces_seen")
    else:
        old = ("traces_incomplete", "traces_clock_skew", "late_beyond_horizon")
        aside = {TRACES_SET_ASIDE[k]: _int(counters, k) for k in old}
        seen = recorded + sum(aside.values())
    return seen, recorded, {k: v for k, v in aside.items() if v}
