"""Incidents: when a trace breaches a trigger, the milliseconds around it, kept as evidence.

``--incident 'tick_to_trade>500us'`` (a stage or derived tag, optionally on dimension values in
the hlog tag grammar: ``tick_to_trade|venue=XNAS>500us``) makes the collector keep every closed
trace's stamp rows for the last ``window`` of collector time in a ``StampBuffer`` (bounded in rows
and bytes; what is pushed out early is counted, never silent). Triggers are checked on each batch
of traces the correlator closes, never per record. A breach opens a ``PendingIncident`` with the
buffer's rows from ``window`` before the breaching trace; rows closing afterwards join it up to
``window`` after its last stamp; once collector time is past that (plus ``SETTLE_NS`` for traces
still open and for side collectors' samples), ``incidents/<UTC time>/`` is written atomically (a
temporary directory renamed): ``incident.json`` and ``trace.perfetto.json``. The drain thread
only decides and gathers (the rows are immutable arrays, the side collectors' views are taken
then); a writer thread builds and writes the files: at 20k ticks/s an incident holds ~4,000 traces
and took the drain ~0.2 s of CPU to write, which on a busy host filled the rings (records dropped).
The writer works ``YIELD_WORK_S`` at a time, then sleeps ``YIELD_PAUSE_S`` (``_Yield``: a fifth of
a core at most, so the drain and the pipeline keep theirs; rate-limited incidents can wait), and encodes the
files a few hundred traces at a time (``_write_json``): json's C encoder holds the GIL for a whole
document, and a 7 MB one stalled the drain long enough to fill the rings.

A breach inside the window of an incident not yet written joins it (``also_breached``) instead of
opening another: a stall that slows a hundred ticks is one incident. ``--incident-max 10/h`` caps
incidents written per rolling period; the others are counted as suppressed. Accounting (meta.json
``incidents``): ``breaches = written + suppressed + joined + failed`` (a write the disk refused, said at the end).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tickscope.collectors.rings.correlate import TICK_TO_DECISION, TICK_TO_TRADE, TraceSchema
from tickscope.collectors.session.dimensions import SEPARATOR, parse_tag
from tickscope.collectors.session.files import INCIDENT, INCIDENTS, PERFETTO_INCIDENT
from tickscope.collectors.session.trace_events import window_trace_events
from tickscope.collectors.session.units import (
    DurationError,
    format_duration,
    parse_duration_ns,
    parse_latency_ns,
)

INCIDENTS_DIR, INCIDENT_FILE, PERFETTO_FILE = INCIDENTS, INCIDENT, PERFETTO_INCIDENT
DEFAULT_WINDOW_NS = 100_000_000
DEFAULT_MAX = "10/h"
SETTLE_NS = 250_000_000  # past the window's end: traces still open close (linger), side samples arrive
VIEW_WAIT_NS = 3_000_000_000  # at most this long for a side collector whose samples lag (perf stat -I 1000)
YIELD_WORK_S, YIELD_PAUSE_S = 0.001, 0.004  # the incident writer's work between pauses, and the pauses
MAX_ROWS = 1 << 18  # the buffer's bounds: about 100 ms of a 2M traces/s pipeline
MAX_BYTES = 64 << 20
EXAMPLES = "e.g. 'tick_to_trade>500us', 'strategy>50us' or 'tick_to_trade|venue=XNAS>1ms'"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class IncidentError(ValueError):
    """A trigger, window or rate limit that does not read: one line with what to write instead."""


@dataclass(frozen=True)
class IncidentTrigger:
    text: str
    tag: str  # a stage, tick_to_trade or tick_to_decision
    values: tuple[tuple[str, str], ...]  # (dimension, value) the trace must carry
    limit_ns: float

    def to_meta(self) -> dict:
        return {
            "trigger": self.text,
            "tag": self.tag,
            "dimensions": dict(self.values),
            "limit_ns": self.limit_ns,
        }


def parse_trigger(text: str, what: str = "--incident") -> IncidentTrigger:
    lhs, sep, rhs = (text or "").partition(">")
    if not sep or ">" in rhs:
        raise IncidentError(f"{what} {text!r} is not a trigger (expected TAG>LATENCY, {EXAMPLES})")
    limit = parse_latency_ns(rhs.strip())
    if limit is None or limit <= 0:
        raise IncidentError(f"{what} {text!r}: {rhs.strip()!r} is not a latency with its unit ({EXAMPLES})")
    parts = lhs.strip().split(SEPARATOR)
    if not _NAME.match(parts[0]):
        raise IncidentError(f"{what} {text!r}: {parts[0]!r} is not a stage or tag name ({EXAMPLES})")
    for part in parts[1:]:
        dim, eq, value = part.partition("=")
        if not eq or not _NAME.match(dim) or not value:
            raise IncidentError(f"{what} {text!r}: {part!r} is not DIMENSION=VALUE ({EXAMPLES})")
    base, values = parse_tag(lhs.strip())
    return IncidentTrigger(text, base, tuple(values.items()), limit)


_PERIOD = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


def parse_rate_limit(text: str, what: str = "--incident-max") -> tuple[int, int]:
    """'10/h', '1/m', '3/30s' -> (incidents, period ns)."""
    m = _PERIOD.match(text or "")
    if not m or int(m.group(1)) < 1:
        raise IncidentError(
            f"{what} {text!r} is not a rate limit (expected N/PERIOD with N >= 1, e.g. 10/h, 1/m, 5/30m)"
        )
    period = m.group(2)
    try:
        period_ns = parse_duration_ns(period if period[0].isdigit() else "1" + period, what)
    except DurationError:
        raise IncidentError(f"{what} {text!r}: {period!r} is not a period (e.g. 10/h, 1/m, 5/30m)") from None
    if period_ns <= 0:
        raise IncidentError(f"{what} {text!r}: the period must be longer than 0 (e.g. 10/h)")
    return int(m.group(1)), period_ns


def parse_window_ns(text: str, what: str = "--incident-window") -> int:
    try:
        ns = parse_duration_ns(text, what)
    except DurationError as e:
        raise IncidentError(str(e)) from None
    if not 1_000_000 <= ns <= 10_000_000_000:
        raise IncidentError(f"{what} {text!r}: keep between 1ms and 10s of history (e.g. 50ms)")
    return ns


@dataclass
class IncidentPolicy:
    triggers: list[IncidentTrigger]
    window_ns: int = DEFAULT_WINDOW_NS
    max_count: int = 10
    period_ns: int = 3600 * 10**9
    max_rows: int = MAX_ROWS
    max_bytes: int = MAX_BYTES
    max_text: str = DEFAULT_MAX  # as the user wrote it (said back at the end)

    @classmethod
    def parse(cls, triggers: list[str], window: str | None, limit: str | None) -> IncidentPolicy | None:
        """The CLI's options -> a policy (None without a trigger); ``IncidentError`` on bad text."""
        if not triggers:
            if window is not None or limit is not None:
                raise IncidentError(
                    "--incident-window and --incident-max need a trigger (add --incident TAG>LATENCY)"
                )
            return None
        n, period = parse_rate_limit(limit or DEFAULT_MAX)
        return cls([parse_trigger(t) for t in triggers], parse_window_ns(window) if window else DEFAULT_WINDOW_NS,
                   n, period, max_text=limit or DEFAULT_MAX)  # fmt: skip

    def to_meta(self) -> dict:
        return {"triggers": [t.to_meta() for t in self.triggers], "window_ns": self.window_ns,
                "max": self.max_count, "per_ns": self.period_ns,
                "buffer_max_rows": self.max_rows, "buffer_max_bytes": self.max_bytes}  # fmt: skip


@dataclass
class WindowView:
    """What a side collector saw over an incident's window. ``counter``: (CLOCK_MONOTONIC ns,
    value) samples for a Perfetto counter track; ``covered_until_ns``: how far its samples reach
    (the incident waits, up to ``VIEW_WAIT_NS``, for the window's end); ``unavailable``: why not."""

    name: str
    figures: dict = field(default_factory=dict)
    counter: list[tuple[int, float]] = field(default_factory=list)
    covered_until_ns: int = 0
    unavailable: str | None = None


# What an incident asks for, and why it is missing when no side collector gave it.
EXPECTED_VIEWS = {
    "hiccup": "the hiccup meter was not running in this run (profile --hiccup; live runs none)",
    "context_switches": "perf stat was not running in this run (profile --perf; live runs none)",
}


class _Yield:
    """Called often by the writer thread: sleeps (releasing the GIL) once ``YIELD_WORK_S`` of work passed."""

    def __init__(self):
        self.since = time.perf_counter()

    def __call__(self) -> None:
        if time.perf_counter() - self.since >= YIELD_WORK_S:
            time.sleep(YIELD_PAUSE_S)
            self.since = time.perf_counter()


JSON_BATCH = 256  # list items encoded per call (between two chances for the drain to take the GIL)


def _write_json(path: Path, doc: dict, streamed: tuple[str, ...], pause: Callable[[], None]) -> None:
    """``doc`` as compact JSON (the C encoder: an indent falls back to the pure-Python one, ~10x
    slower), its ``streamed`` lists encoded ``JSON_BATCH`` items at a time."""
    sep = (",", ":")
    head = {k: v for k, v in doc.items() if k not in streamed}
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, separators=sep)[:-1])
        for n, key in enumerate(streamed):
            items = doc[key]
            f.write(("," if head or n else "") + json.dumps(key) + ":[")
            for i in range(0, len(items), JSON_BATCH):
                pause()
                f.write(("," if i else "") + json.dumps(items[i : i + JSON_BATCH], separators=sep)[1:-1])
            f.write("]")
        f.write("}")


@dataclass
class _Chunk:
    names: list[str]  # pipeline order of the columns when the rows closed
    rows: dict[str, np.ndarray]
    first: np.ndarray  # per row: first and last stamp (CLOCK_MONOTONIC ns)
    last: np.ndarray
    nbytes: int


class StampBuffer:
    """The closed traces that ended within ``keep_ns`` of the newest stamp, in chunks as they
    closed, bounded by ``max_rows`` and ``max_bytes``: a chunk pushed out by a bound before its time
    is counted in ``overflow`` (rows). ``horizon``: rows that ended before it have left."""

    def __init__(self, keep_ns: int, max_rows: int, max_bytes: int):
        self.keep_ns, self.max_rows, self.max_bytes = keep_ns, max_rows, max_bytes
        self.chunks: deque[_Chunk] = deque()
        self.rows = self.bytes = self.overflow = self.peak_rows = self.peak_bytes = 0
        self.newest = self.horizon = 0

    def add(self, chunk: _Chunk) -> None:
        self.chunks.append(chunk)
        self.rows += chunk.first.size
        self.bytes += chunk.nbytes
        self.newest = max(self.newest, int(chunk.last.max()))
        self.peak_rows, self.peak_bytes = max(self.peak_rows, self.rows), max(self.peak_bytes, self.bytes)

    def evict(self) -> None:
        """After the chunk just added was checked: its breaches saw everything the buffer held."""
        self.horizon = max(self.horizon, self.newest - self.keep_ns)
        while self.chunks and int(self.chunks[0].last.max()) < self.horizon:
            self._drop(self.chunks[0], False)
        while self.chunks and (self.rows > self.max_rows or self.bytes > self.max_bytes):
            self.horizon = max(self.horizon, int(self.chunks[0].last.max()) + 1)
            self._drop(self.chunks[0], True)

    def _drop(self, chunk: _Chunk, early: bool) -> None:
        self.chunks.popleft()
        self.rows -= chunk.first.size
        self.bytes -= chunk.nbytes
        if early:
            self.overflow += chunk.first.size

    def overlapping(self, start_ns: int, end_ns: int) -> list[tuple[_Chunk, np.ndarray]]:
        out = []
        for c in self.chunks:
            sel = (c.last >= start_ns) & (c.first <= end_ns)
            if sel.any():
                out.append((c, sel))
        return out


@dataclass
class PendingIncident:
    trigger: IncidentTrigger
    chunk: _Chunk
    row: int
    value_ns: int
    start_ns: int  # the window: ``window`` either side of the breaching trace
    end_ns: int
    parts: list[tuple[_Chunk, np.ndarray]]
    also: list[dict] = field(default_factory=list)
    due_ns: int = 0
    history_complete: bool = True  # the buffer still held every trace that ended after ``start_ns``


class IncidentRecorder:
    """Owned by the collector: ``check`` after every flush, ``write_due`` after it, ``finish`` at the end."""

    def __init__(self, policy: IncidentPolicy, session_dir: Path | None, describe_ring: Callable[[int], dict],
                 start_ns: int, realtime_offset: int):  # fmt: skip
        self.policy = policy
        self.dir = Path(session_dir) / INCIDENTS_DIR if session_dir is not None else None
        self.describe_ring = describe_ring  # ring index + 1 -> {writer, pid, tid}
        self.start_ns, self.realtime_offset = start_ns, realtime_offset
        # The window of history, plus the largest limit: a breaching trace lasts at least that long,
        # so the history before its first stamp is still held when it closes (a longer one's may
        # have left in part: ``history_complete`` says so).
        keep = policy.window_ns + int(max(t.limit_ns for t in policy.triggers))
        self.buffer = StampBuffer(keep, policy.max_rows, policy.max_bytes)
        self.pending: list[PendingIncident] = []
        self.written_at: deque[int] = deque()  # collector times of incidents opened in the rate period
        self.views: list[Callable[[int, int], WindowView | None]] = []
        self.breaches = self.written = self.suppressed = self.joined = self.failed = 0
        self.matched: set[str] = set()  # triggers whose tag this run had
        self.written_dirs: list[str] = []
        self.errors: list[str] = []
        self.check_cpu_s = 0.0  # the drain thread's time checking batches and keeping the window
        self.write_cpu_s = 0.0  # the writer thread's time writing incidents (bounded by --incident-max)
        self._todo: queue.Queue[tuple[PendingIncident, list[WindowView]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    # -- per flush -------------------------------------------------------------------------------
    def check(
        self, kept: dict[str, np.ndarray], schema: TraceSchema, dimensions: dict[str, list[str]]
    ) -> None:
        t0 = time.thread_time()
        stamps = kept["stamps"]
        present = stamps != 0
        first = np.where(present, stamps, np.iinfo(np.int64).max).min(axis=1)
        last = stamps.max(axis=1)
        ok = present.any(axis=1)
        if not ok.all():
            kept = {k: v[ok] for k, v in kept.items()}
            first, last = first[ok], last[ok]
        if not first.size:
            return
        chunk = _Chunk(list(schema.order_names), kept, first, last, sum(v.nbytes for v in kept.values()))
        self.buffer.add(chunk)
        for p in self.pending:
            sel = (last >= p.start_ns) & (first <= p.end_ns)
            if sel.any():
                p.parts.append((chunk, sel))
        for trig in self.policy.triggers:
            values = self._values(trig, chunk, schema, dimensions)
            if values is None:
                continue
            for row in np.flatnonzero(values > trig.limit_ns):
                self._breach(trig, chunk, int(row), int(values[row]))
        self.buffer.evict()
        self.check_cpu_s += time.thread_time() - t0

    def _values(
        self, trig: IncidentTrigger, chunk: _Chunk, schema: TraceSchema, dimensions
    ) -> np.ndarray | None:
        rows, n = chunk.rows, chunk.first.size
        if trig.tag in (TICK_TO_TRADE, TICK_TO_DECISION):
            values = rows[trig.tag].copy()
        else:
            g = schema.graph()
            cols = [j for j in range(1, len(chunk.names))
                    if g.stage[j] and (schema.stage_of.get(chunk.names[j]) or chunk.names[j]) == trig.tag]  # fmt: skip
            if not cols:
                return None
            values = np.full(n, -1, np.int64)
            for j in cols:
                values = np.where(
                    rows["stamps"][:, j] != 0, np.maximum(values, rows["spans"][:, j - 1]), values
                )
            values[~rows["recorded"]] = -1
        self.matched.add(trig.text)
        for dim, value in trig.values:
            known = dimensions.get(dim, [])
            if value not in known or rows["dims"].shape[1] <= list(dimensions).index(dim):
                return None
            values[rows["dims"][:, list(dimensions).index(dim)] != known.index(value) + 1] = -1
        return values

    def _breach(self, trig: IncidentTrigger, chunk: _Chunk, row: int, value: int) -> None:
        self.breaches += 1
        first, last = int(chunk.first[row]), int(chunk.last[row])
        for p in self.pending:
            if p.start_ns <= first <= p.end_ns:
                p.also.append(
                    {"trigger": trig.text, "trace_id": int(chunk.rows["trace"][row]), "value_ns": value}
                )
                self.joined += 1
                return
        while self.written_at and self.written_at[0] <= last - self.policy.period_ns:
            self.written_at.popleft()
        if len(self.written_at) >= self.policy.max_count:
            self.suppressed += 1
            return
        self.written_at.append(last)
        w = self.policy.window_ns
        start, end = first - w, last + w
        self.pending.append(PendingIncident(trig, chunk, row, value, start, end, self.buffer.overlapping(start, end),
                                            due_ns=end + SETTLE_NS, history_complete=self.buffer.horizon <= start))  # fmt: skip

    # -- writing -----------------------------------------------------------------------------------
    def write_due(self, now_ns: int, force: bool = False) -> None:
        if not self.pending:
            return
        t0 = time.thread_time()
        waiting = []
        for p in self.pending:
            if force or now_ns >= p.due_ns:
                views = [v for f in self.views if (v := f(p.start_ns, p.end_ns)) is not None]
                lagging = any(v.unavailable is None and v.covered_until_ns < p.end_ns for v in views)
                if lagging and not force and now_ns < p.due_ns + VIEW_WAIT_NS:
                    waiting.append(p)
                    continue
                self._hand_over(p, views)
            else:
                waiting.append(p)
        self.pending = waiting
        self.check_cpu_s += time.thread_time() - t0

    def _hand_over(self, p: PendingIncident, views: list[WindowView]) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_all, name="tickscope-incidents", daemon=True)
            self._writer.start()
        self._todo.put((p, views))

    def _write_all(self) -> None:
        while (item := self._todo.get()) is not None:
            t0 = time.thread_time()
            try:
                self._write(*item)
            except Exception as e:  # a bug of ours must not end the thread: the next ones still go out
                self.failed += 1
                self.errors.append(f"incident {item[0].trigger.text!r} not written ({type(e).__name__}: {e})")
            self.write_cpu_s += time.thread_time() - t0

    def finish(self, now_ns: int) -> None:
        """Every incident still pending written, and written to the end, before the session closes."""
        self.write_due(now_ns, force=True)
        if self._writer is not None:
            self._todo.put(None)
            self._writer.join()
            self._writer = None

    def _trace(self, chunk: _Chunk, i: int, writers: dict[int, dict]) -> dict:
        rows = chunk.rows
        stamps, src, spans = rows["stamps"][i].tolist(), rows["src"][i].tolist(), rows["spans"][i].tolist()
        recorded = bool(rows["recorded"][i])
        out = []
        for j, (name, ts, ring) in enumerate(zip(chunk.names, stamps, src, strict=False)):
            if not ts:
                continue
            who = writers.get(ring)
            if who is None:
                who = writers[ring] = self.describe_ring(ring)
            s = {"point": name, "ts_ns": ts, "t_rel_ns": ts - self.start_ns, **who}
            if out and recorded:
                s["stage_ns"] = spans[j - 1]
            out.append(s)
        t2t, t2d = int(rows["tick_to_trade"][i]), int(rows["tick_to_decision"][i])
        leg = int(rows["leg"][i])
        return {"trace_id": int(rows["trace"][i]), **({"leg": leg} if leg >= 0 else {}), "recorded": recorded, "tick_to_trade_ns": t2t if t2t >= 0 else None,
                **({"tick_to_decision_ns": t2d} if t2d >= 0 else {}), "stamps": out}  # fmt: skip

    def _write(self, p: PendingIncident, views: list[WindowView]) -> None:
        if self.dir is None:
            return
        writers: dict[int, dict] = {}
        pause = _Yield()
        breach = self._trace(p.chunk, p.row, writers)
        b_first, b_last = int(p.chunk.first[p.row]), int(p.chunk.last[p.row])
        overlapping, neighbours, seen = [], [], set()
        for chunk, sel in p.parts:
            for i in np.flatnonzero(sel):
                if chunk is p.chunk and i == p.row:
                    continue
                key = (id(chunk), int(i))
                if key in seen:
                    continue
                seen.add(key)
                pause()
                t = self._trace(chunk, int(i), writers)
                inside = chunk.last[i] >= b_first and chunk.first[i] <= b_last
                (overlapping if inside else neighbours).append(t)
        neighbours.sort(key=lambda t: t["stamps"][0]["ts_ns"])
        epoch_ns = b_first + self.realtime_offset
        stamp = (
            time.strftime("%Y%m%dT%H%M%S", time.gmtime(epoch_ns // 10**9))
            + f".{epoch_ns % 10**9 // 1000:06d}Z"
        )
        got = {v.name: v for v in views}
        unavailable = {n: why for n, why in EXPECTED_VIEWS.items() if n not in got}
        unavailable.update({v.name: v.unavailable for v in views if v.unavailable})
        for v in views:
            if v.unavailable is None and v.covered_until_ns < p.end_ns:
                v.figures["partial"] = (
                    f"samples reach {format_duration(max(0, p.end_ns - v.covered_until_ns))} short of the window's end"
                )
        doc = {
            "version": 1, "time_utc": stamp, **p.trigger.to_meta(), "value_ns": p.value_ns,
            "trace_id": breach["trace_id"], "t_rel_ns": b_first - self.start_ns,
            "window": {"from_rel_ns": p.start_ns - self.start_ns, "to_rel_ns": p.end_ns - self.start_ns,
                       "history_ns": self.policy.window_ns, "history_complete": p.history_complete},
            "breaching": breach, "overlapping": overlapping, "neighbours": neighbours,
            "traces": 1 + len(overlapping) + len(neighbours), "also_breached": p.also,
            **{v.name: v.figures for v in views if v.unavailable is None},
            "unavailable": unavailable,
            "buffer": {"rows": self.buffer.rows, "bytes": self.buffer.bytes, "overflow_rows": self.buffer.overflow},
            "files": {"perfetto": PERFETTO_FILE},
        }  # fmt: skip
        counters = {
            v.name: [(t - self.start_ns, x) for t, x in v.counter] for v in views if v.unavailable is None
        }
        events = window_trace_events(
            [breach, *overlapping, *neighbours], counters, f"incident {stamp}", pause
        )
        try:
            self.dir.mkdir(exist_ok=True)
            name, n = stamp, 1
            while (self.dir / name).exists():
                n += 1
                name = f"{stamp}-{n}"
            tmp = self.dir / f".tmp-{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            _write_json(tmp / INCIDENT_FILE, doc, ("overlapping", "neighbours"), pause)
            _write_json(tmp / PERFETTO_FILE, events, ("traceEvents",), pause)
            os.rename(tmp, self.dir / name)
        except OSError as e:
            line = f"incident not written ({e.strerror or e}): check the session directory's disk"
            self.failed += 1
            if line not in self.errors:
                self.errors.append(line)
            return
        self.written += 1
        self.written_dirs.append(name)

    # -- the end -----------------------------------------------------------------------------------
    def to_meta(self) -> dict:
        return {**self.policy.to_meta(), "breaches": self.breaches, "written": self.written,
                "suppressed": self.suppressed, "joined": self.joined, "failed": self.failed,
                "pending": len(self.pending),
                "buffer": {"rows": self.buffer.rows, "bytes": self.buffer.bytes, "peak_rows": self.buffer.peak_rows,
                           "peak_bytes": self.buffer.peak_bytes, "overflow_rows": self.buffer.overflow},
                "check_cpu_s": round(self.check_cpu_s, 4), "write_cpu_s": round(self.write_cpu_s, 4),
                "dirs": self.written_dirs}  # fmt: skip

    def notes(self) -> list[str]:
        """One line each for the end of the run."""
        out = list(self.errors)
        if self.breaches:
            out.append(f"incidents: {self.breaches} breach(es), {self.written} written under {INCIDENTS_DIR}/, "
                       f"{self.suppressed} suppressed by --incident-max {self.policy.max_text}, "
                       f"{self.joined} joined an incident already open")  # fmt: skip
        if self.buffer.overflow:
            out.append(f"incidents: {self.buffer.overflow} trace rows left the buffer before their window ended "
                       f"(bounds {self.policy.max_rows} rows, {self.policy.max_bytes} bytes): shorten --incident-window")  # fmt: skip
        for t in self.policy.triggers:
            if t.text not in self.matched:
                out.append(
                    f"incident trigger {t.text!r} never applied: no stage or tag {t.tag!r} in this run"
                )
        return out
