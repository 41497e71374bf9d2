"""The session directory: what a profile run leaves on disk, and the only thing reports read.

::

    <session>/
      meta.json        host, clocks, command, points and stages, counters (drops per cause), times
      latency.hlog     HdrHistogram interval log (format 1.3): one line per tag per interval,
                       ``Tag=<stage>,<start s>,<length s>,<max ms>,<base64 V2 histogram>``
      warmup.hlog      the same for the warm-up seconds, kept out of the headline numbers
      summary.json     per tag: count, min, mean, p50, p90, p99, p99_9, p99_99, max (ns)
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram

from .hdr import add_into, new_histogram, summarize

LATENCY_LOG = "latency.hlog"
WARMUP_LOG = "warmup.hlog"
META = "meta.json"
SUMMARY = "summary.json"
SLOWEST = "slowest.json"
PERF_CSV = "perf.csv"
PROFILE = "profile.speedscope.json"
HICCUP_LOG = "hiccup.hlog"

FORMAT_VERSION = 1


class SessionError(Exception):
    """A session that cannot be written or read. The message is one line naming the file."""


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


class HistogramLogWriter:
    """Writes a tagged HdrHistogram interval log readable by HdrHistogram's own tools.

    (``hdrh.log.HistogramLogWriter`` writes no tags, so the lines are written here.)
    """

    def __init__(self, path: Path, start_epoch_s: float):
        self.path = path
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the session
        stamp = datetime.fromtimestamp(start_epoch_s, UTC).isoformat()
        self.f.write("#[Histogram log format version 1.3]\n")
        self.f.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch), {stamp}]\n")
        self.f.write(f"#[BaseTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
        self.f.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
        self.f.flush()

    def write(self, tag: str, hist: HdrHistogram, start_s: float, end_s: float) -> None:
        payload = hist.encode().decode("ascii")
        max_ms = hist.get_max_value() / 1e6
        self.f.write(f"Tag={tag},{start_s:.3f},{end_s - start_s:.3f},{max_ms:.3f},{payload}\n")

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class SessionWriter:
    """Creates a session directory and keeps it loadable after every interval."""

    def __init__(self, path: str | os.PathLike, meta: dict):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise SessionError(f"cannot write session directory {self.path}: {e.strerror or e}") from None
        self.meta = dict(meta)
        self.meta.setdefault("format_version", FORMAT_VERSION)
        self.meta.setdefault("status", "running")
        start = self.meta.setdefault("start_epoch_s", time.time())
        self.latency = HistogramLogWriter(self.path / LATENCY_LOG, start)
        self.warmup = HistogramLogWriter(self.path / WARMUP_LOG, start)
        self.save_meta()

    def save_meta(self) -> None:
        write_json_atomic(self.path / META, self.meta)

    def write_interval(
        self, hists: dict[str, HdrHistogram], start_s: float, end_s: float, warmup: bool
    ) -> None:
        log = self.warmup if warmup else self.latency
        for tag, h in hists.items():
            if h.total_count:
                log.write(tag, h, start_s, end_s)
        log.flush()

    def write_summary(self, summary: dict, slowest: list[dict]) -> None:
        write_json_atomic(self.path / SUMMARY, summary)
        write_json_atomic(self.path / SLOWEST, slowest)

    def close(self, status: str = "complete") -> None:
        self.meta["status"] = status
        self.meta["end_epoch_s"] = time.time()
        self.save_meta()
        self.latency.close()
        self.warmup.close()


class Interval:
    """One interval of one tag. Keeps the compact encoded form and decodes on demand: a decoded
    histogram is ~225 KB of counts, and a one-hour session has tens of thousands of intervals."""

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
            return HdrHistogram.decode(self._payload)
        except Exception as e:  # hdrh raises assorted errors on bad base64/zlib
            raise SessionError(f"{self._where}: interval at {self.start_s:.3f}s holds a damaged histogram ({e}); "
                               "re-record the session or cut that line out") from None  # fmt: skip

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s


def read_hlog(path: Path) -> tuple[dict[str, list[Interval]], list[str]]:
    """Parse a (tagged or untagged) HdrHistogram interval log. Untagged lines get tag "default".

    Returns intervals per tag in file order, and warnings (a truncated last line is skipped with
    a warning: that is what a killed writer leaves). Anything else malformed is a SessionError.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise SessionError(f"cannot read {path}: {e.strerror or e}") from None
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
                start_time = float(line.split(":", 1)[1].split()[0])
            elif line.startswith("#[BaseTime:"):
                base_time = float(line.split(":", 1)[1].split()[0])
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
                raise ValueError("expected 4 fields")
            start, length = float(parts[0]), float(parts[1])
            if not parts[3].startswith("HIST") or len(parts[3]) < 40:
                raise ValueError("payload is not a base64 V2 histogram")
            if last or len(out) == 0:  # the first and a possibly cut last line are checked fully
                HdrHistogram.decode(parts[3])
        except Exception as e:  # hdrh raises assorted errors on bad base64/zlib
            if last:
                warnings.append(f"{path.name}: last line truncated (writer killed mid-write?), ignored")
                break
            raise SessionError(f"{path}: line {i + 1} is not an HdrHistogram interval ({e})") from None
        # Absolute timestamps (other tools) become relative to the log's start.
        if base_time is None and start_time is not None and start > start_time - 365 * 86400:
            start -= start_time
        out.setdefault(tag, []).append(
            Interval(start, length, payload=parts[3], where=f"{path} line {i + 1}")
        )
    return out, warnings


class Session:
    """A saved session, loaded read-only. ``reports/`` imports nothing else from the collector."""

    def __init__(self, path: Path, meta: dict, intervals: dict[str, list[Interval]],
                 warmup: dict[str, list[Interval]], summary: dict | None, slowest: list[dict],
                 warnings: list[str]):  # fmt: skip
        self.path = path
        self.meta = meta
        self.intervals = intervals
        self.warmup_intervals = warmup
        self._summary = summary
        self.slowest = slowest
        self.warnings = warnings
        self._totals: dict[str, HdrHistogram] = {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> Session:
        """Load a session directory, or a bare ``.hlog`` file written by any HdrHistogram tool."""
        p = Path(path)
        if p.is_file():
            return cls._from_hlog_file(p)
        if not p.is_dir():
            raise SessionError(f"no session at {p} (expected a session directory or an .hlog file)")
        meta_path = p / META
        if not meta_path.is_file():
            raise SessionError(f"{p} is not a tickscope session: {META} is missing")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SessionError(f"{meta_path}: not valid JSON ({e})") from None
        log = p / LATENCY_LOG
        if not log.is_file():
            raise SessionError(f"{log} is missing: the session recorded no intervals")
        intervals, warnings = read_hlog(log)
        if not intervals:
            raise SessionError(f"{log} holds no intervals (empty or truncated session)")
        warmup: dict[str, list[Interval]] = {}
        if (p / WARMUP_LOG).is_file():
            warmup, w2 = read_hlog(p / WARMUP_LOG)
            warnings += w2
        summary = _read_json(p / SUMMARY, warnings)
        slowest = _read_json(p / SLOWEST, warnings) or []
        if meta.get("status") == "running":
            warnings.append(f"{p.name}: the collector did not finish (killed?); data up to its last interval")
        return cls(p, meta, intervals, warmup, summary, slowest, warnings)

    @classmethod
    def _from_hlog_file(cls, p: Path) -> Session:
        intervals, warnings = read_hlog(p)
        if not intervals:
            raise SessionError(f"{p} holds no intervals (empty or not an HdrHistogram log)")
        meta = {"name": p.stem, "source": "hlog", "stages": [], "points": []}
        return cls(p, meta, intervals, {}, None, [], warnings)

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.path.name

    @property
    def tags(self) -> list[str]:
        """Every tag with data: stages in pipeline order first, then the rest (tick_to_trade, ...)."""
        stage_names = self.stages
        known = ["tick_to_trade", "tick_to_decision", "tick_to_trade_co", "tick_to_decision_co"]
        rest = [t for t in known if t in self.intervals and t not in stage_names]
        rest += [t for t in self.intervals if t not in stage_names and t not in known]
        return [s for s in stage_names if s in self.intervals] + rest

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
        """All (non-warm-up) intervals of ``tag`` added together."""
        if tag not in self._totals:
            h = new_histogram()
            for iv in self.intervals.get(tag, []):
                _add_any(h, iv.hist)
            self._totals[tag] = h
        return self._totals[tag]

    def summary(self) -> dict[str, dict]:
        """Per tag: count, min, mean, p50..p99_99, max in ns (computed from the log if needed)."""
        if self._summary and all(t in self._summary for t in self.intervals):
            return self._summary
        return {t: summarize(self.total(t)) for t in self.tags}

    def counters(self) -> dict:
        return self.meta.get("counters", {})

    def side_file(self, name: str) -> Path | None:
        f = self.path / name if self.path.is_dir() else None
        return f if f is not None and f.is_file() else None

    @property
    def duration_s(self) -> float:
        ends = [iv.end_s for ivs in self.intervals.values() for iv in ivs]
        starts = [iv.start_s for ivs in self.intervals.values() for iv in ivs]
        return max(ends) - min(starts) if ends else 0.0


def _add_any(dst: HdrHistogram, src: HdrHistogram) -> None:
    same = (dst.counts_len, dst.unit_magnitude, dst.sub_bucket_count) == (
        src.counts_len,
        src.unit_magnitude,
        src.sub_bucket_count,
    )
    if same:
        add_into(dst, src)
    else:
        dst.add(src)


def _read_json(path: Path, warnings: list[str]):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        warnings.append(f"{path.name}: unreadable, ignored (computed from the log instead)")
        return None


def fmt_ns(ns: float | None) -> str:
    """A latency for humans: 850ns, 12.3us, 4.56ms, 1.20s."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "-"
    if ns < 1_000:
        return f"{ns:.0f}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}us" if ns < 100_000 else f"{ns / 1e3:.0f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"


@dataclass
class SessionCounters:
    """Every record accounted for, per ring and in total, from one reading of each ring's counters:
    ``produced = drained + dropped_ring_full + in_ring + drained_before_attach``. ``malformed``
    records are drained ones that carried nothing usable (a subset of ``drained``)."""

    produced: int = 0
    drained: int = 0
    dropped_ring_full: int = 0
    in_ring: int = 0  # published, not drained yet (a backlog mid-run; left behind at the end)
    drained_before_attach: int = 0  # released by an earlier collector (``tickscope live``)
    malformed: int = 0
    rings_quarantined: int = 0
    duplicate_stamps: int = 0
    traces_complete: int = 0
    traces_incomplete: int = 0
    traces_clock_skew: int = 0
    traces_open_at_end: int = 0
    traces_evicted: int = 0
    values_out_of_range: int = 0
    writers_died: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d

    @property
    def drop_free(self) -> bool:
        return not (self.dropped_ring_full or self.malformed or self.in_ring or self.rings_quarantined)
