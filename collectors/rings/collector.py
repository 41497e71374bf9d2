"""The collector loop: rings -> one monotonic timeline -> traces -> HDR intervals -> session.

``Collector.poll()`` is one pass (discover rings, drain each, correlate, ingest, roll the
interval when due); the caller decides the cadence and what else runs between polls (the live
view, side collectors). ``finish()`` drains what is left and closes the session.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.rings.attribution import TailAttribution
from tickscope.collectors.rings.attribution import kernels as attribution_kernels
from tickscope.collectors.rings.clocks import read_calibration, sample_realtime_offset, tsc_facts
from tickscope.collectors.rings.correlate import (
    SET_ASIDE,
    TICK_TO_DECISION,
    TICK_TO_TRADE,
    Closed,
    Correlator,
    DeclarationConflict,
    TraceSchema,
    warm_kernels,
)
from tickscope.collectors.rings.host_tsc import collector_pair, host_tsc_domain, tsc_reader
from tickscope.collectors.rings.incidents import IncidentPolicy, IncidentRecorder
from tickscope.collectors.rings.reader import (
    RingCounterError,
    RingDescriptorsExhausted,
    RingFormatError,
    RingReader,
    _pid_running,
    find_rings,
)
from tickscope.collectors.rings.realtime import RealtimeOffset, placed_after
from tickscope.collectors.rings.released import ReleasedWriters
from tickscope.collectors.rings.slices import DimensionSlices
from tickscope.collectors.rings.tsc_timeline import RATE_TOLERANCE, TscDomain, TscTimeline
from tickscope.collectors.session import SessionCounters, SessionWriter, Snapshot, hlog_codec
from tickscope.collectors.session.dimensions import DEFAULT_CAP, is_dimension_tag, parse_tag
from tickscope.collectors.session.hdr import (
    BulkRecorder,
    add_into,
    corrected_histogram,
    layout_of,
    loading_kernels,
    new_histogram,
    reset,
    summarize,
)
from tickscope.probe import layout as L

RELEASED_NOTES_KEPT = 64  # lines about folded writers kept for the end (the rest: a count)
CO_SUFFIX = "_co"  # tag suffix of coordinated-omission-corrected histograms
# Closed's reasons for setting a trace aside -> the session counter that adds them up
SESSION_KEY = {r: r if r == "late_beyond_horizon" else f"traces_{r}" for r in SET_ASIDE}


def _intake():
    """The compiled kernels (intake_kernels.py), loaded when a collector is made, not with this
    module (numba maps LLVM: see ``correlate._kernels``)."""
    with loading_kernels():
        from tickscope.collectors.rings import intake_kernels
    return intake_kernels


def load_kernels() -> None:
    """Every compiled kernel a collector runs, loaded now (from numba's cache; compiled on a fresh
    host: seconds), once per process. Before a session's writer is made: the session's time then
    starts where the collector's clock does, after the load, so a warm-up still counts from there."""
    warm_kernels()
    _intake()
    attribution_kernels()
    hlog_codec.use_compiled_writer()  # the HDR kernels, its varint writer among them


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Allocations beyond this keep their own mapping, as glibc's own threshold never rises past it: the
# tables that grow with the run (open traces, late index) then grow by mremap, not by a copy.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory at the heap's top beyond this goes back to the kernel


@functools.cache  # the allocator is the process's: set once
def keep_freed_memory() -> bool:
    """Keep the memory of the collector's per-flush temporaries for the next flush. Each flush of a
    busy ring allocates arrays of megabytes (the batch's rows, spans, values); glibc gives every
    allocation over its mmap threshold (128 kB, rising with what is freed) a fresh mapping and
    unmaps it at free, so every page of a temporary is faulted in again at its first write: 62,000
    faults draining 6.4 M records, 43 of the 140 ns of CPU a record in the kernel on a 2-vCPU VM
    (docs/performance.md). Served from the heap and not trimmed, the next flush reuses the pages.
    The cost: the process keeps its peak heap instead of returning it between flushes. False where
    the C library has no ``mallopt`` (musl: its allocator as it is)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


COLLECTOR_PAIR_EVERY_NS = 1_000_000_000  # the collector's own calibration pairs, this far apart


@dataclass
class RingSource:
    """One ring being drained, with what it takes to put its stamps on the common timeline.

    TSC stamps stay raw ticks: the correlator measures a span between two ticks of one TSC domain
    (the host's, for every ring on a TSC the host trusts) with that domain's rate alone, and moves
    a tick onto CLOCK_MONOTONIC through the domain's slewed map (``TscTimeline``) only for spans
    that cross clocks. The ring's calibration pairs feed its domain for the whole session: the
    header's pair counter is a sequence number, so every new pair is seen however many came.
    """

    index: int
    reader: RingReader
    columns: np.ndarray  # local point id -> schema column
    domains: np.ndarray  # local point id -> clock domain
    clock: TscDomain  # the TSC domain its TSC stamps belong to (shared by every trusted ring)
    calib_seen: int = 0  # calibration pairs read so far (the writer's sequence counter)
    calib_missed: int = 0  # pairs overwritten before a poll could read them
    dead_since: int | None = None
    finished: bool = False
    malformed: int = 0
    quarantined: str | None = None  # why the ring's header stopped being trusted
    point_out_of_range: int = 0  # records naming a point id the ring's point table does not have
    leg_out_of_range: int = 0  # tick records whose leg word is beyond 65535 (malformed)
    dims_unknown: int = 0  # dimension value ids the ring's value table does not (yet) hold: dropped
    # [slot, ring value id] -> the collector's value id of that dimension (0 = not interned)
    dim_map: np.ndarray = field(default_factory=lambda: np.zeros((0, L.MAX_DIM_VALUES + 1), np.int32))
    dim_column: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # slot -> dimension column
    dim_seen: int = 0  # ring value ids mapped so far
    peak_rate: float = 0.0  # records/s, the fastest seen filling (halved every PEAK_HALF_LIFE_NS)
    # the start of the latest drain round that read everything the ring held (see Collector.poll):
    # nothing published before it is still in the ring
    caught_up_ns: int = -(2**62)
    # the ring's newest stamp placed less the slack (realtime.placed_after): REALTIME set back
    # repeats values, and a ring's records come in order
    realtime_after: np.ndarray = field(init=False)

    def __post_init__(self):
        self.realtime_after = placed_after(self.reader.created_monotonic_ns)

    @property
    def tsc(self) -> TscTimeline:
        return self.clock.timeline

    @property
    def stamps_tsc(self) -> bool:
        return bool((self.domains == L.CLOCK_TSC).any())

    def refresh_calibration(self) -> None:
        """Hand the pairs written since the last call to the ring's domain (fitted by its refit)."""
        self.reader.check_size()  # before anything reads the mapping (see RingReader.check_size)
        count, pairs = read_calibration(self.reader.mm, self.calib_seen)
        if count <= self.calib_seen:
            return
        fresh = [(seq, p) for seq, p in pairs if seq >= self.calib_seen]
        self.calib_missed += (fresh[0][0] if fresh else count) - self.calib_seen
        self.calib_seen = count
        self.clock.add([p for _, p in fresh], "rings")

    def observe_tsc(self, ticks: np.ndarray) -> None:
        """Raw TSC stamps drained: the domain's timeline must be able to place them."""
        if not self.tsc.ready:
            raise RingFormatError(
                f"ring {self.reader.path}: TSC stamps but no usable calibration pairs "
                "(the writer must calibrate its TSC before its first record)"
            )
        self.tsc.observe(ticks)

    def convert(self, ts: np.ndarray, domain: int, realtime: RealtimeOffset) -> np.ndarray:
        """Raw stamps (u64) of one domain -> int64: CLOCK_MONOTONIC ns (REALTIME ones placed by the
        offset of their time, ``intake_kernels.realtime_place``), or for TSC the raw ticks
        themselves (the correlator measures in-ring spans from ticks, see ``TscTimeline``); 0
        stays 0 (absent)."""
        raw = ts.astype(np.int64)
        if domain == L.CLOCK_MONOTONIC:
            return raw
        if domain == L.CLOCK_TSC:
            absent = raw == 0
            self.observe_tsc(raw[~absent] if absent.any() else raw)
            return raw
        return _intake().realtime_to_monotonic(raw, *realtime.knots, self.realtime_after)

    def describe(self) -> dict:
        r = self.reader
        d = {
            "path": str(r.path), "writer": r.writer_name, "pid": r.writer_pid, "tid": r.writer_tid,
            "kind": L.KIND_NAMES[r.kind], "capacity": r.capacity, "points": [p.name for p in r.points],
            "clocks": sorted({L.CLOCK_NAMES[p.clock] for p in r.points}),
            "produced": r.last.produced, "drained": r.drained, "dropped_ring_full": r.last.dropped,
            "in_ring": r.in_ring_seen, "drained_before_attach": r.drained_before_attach,
            "malformed": self.malformed, "point_out_of_range": self.point_out_of_range,
            "leg_out_of_range": self.leg_out_of_range, "dims": list(r.dims), "dims_unknown": self.dims_unknown,
            "closed_cleanly": r.writer_closed,
            "peak_backlog": r.peak_demand, "capacity_needed": capacity_needed(r),
        }  # fmt: skip
        if self.quarantined:
            d["quarantined"] = self.quarantined
        t = self.tsc
        if self.stamps_tsc and t.ready:
            d["tsc_hz"] = round(t.fit.hz, 1)
            d["tsc_fit_residual_ns"] = round(t.fit.residual_ns, 2)
            d["tsc_pairs"] = t.fit.pairs
            d["tsc"] = {
                "domain": self.clock.name,  # meta.json clocks.tsc_domains[] holds its fits
                "calibration": self.calibration_quality(),
                "pairs_written": self.calib_seen, "pairs_missed": self.calib_missed,
                "local_hz": [round(1e9 / s, 3) for s in t.local.slopes],  # the rate spans use
            }  # fmt: skip
        return d

    def calibration_quality(self) -> str:
        """'heartbeats' (pairs during the run), 'open-close only' or 'open only' (never heartbeats)."""
        during = self.calib_seen - 2 - (1 if self.reader.writer_closed else 0)
        if during > 0:
            return "heartbeats"
        return "open-close only" if self.reader.writer_closed else "open only"

    def notes(self) -> list[str]:
        """One line per thing the user must know about this ring's numbers."""
        r, t = self.reader, self.tsc
        who = f"ring {r.writer_name} (pid {r.writer_pid})"
        out = []
        if self.point_out_of_range:
            out.append(f"{who}: {self.point_out_of_range} records name a point id beyond the {r.n_points} "
                       "points of its table: dropped (writer and point table disagree)")  # fmt: skip
        if self.stamps_tsc and t.ready and self.clock.name != "host":
            quality = self.calibration_quality()
            if quality == "open-close only":
                out.append(f"{who}: TSC calibrated from the pairs at open-close only (the writer never called "
                           f"tsp_heartbeat): cross-clock stages moved by up to {t.largest_step_ns} ns when the "
                           "closing pair arrived; call tsp_heartbeat from an idle path")  # fmt: skip
            elif quality == "open only":
                out.append(f"{who}: TSC calibrated from the pairs at open only (no tsp_heartbeat, no tsp_close): "
                           "cross-clock stages rest on two pairs 20 ms apart; call tsp_heartbeat from an idle "
                           "path")  # fmt: skip
            if t.rate_changes:
                out.append(f"{who}: TSC rate changed {t.rate_changes} time(s) (an opening calibration pair "
                           f"was off by more than {RATE_TOLERANCE * 1e6:.0f} ppm); see meta.json clocks.tsc_domains")  # fmt: skip
        return out


def _writer(reader: RingReader) -> str:
    return f"{reader.writer_name}.{reader.writer_pid}"


def population_interval(tick_interval_ns: int, ticks: int, samples: int) -> int:
    """The expected interval between samples of a population with ``samples`` per ``ticks`` ticks."""
    return max(1, round(tick_interval_ns * ticks / samples))


def capacity_needed(reader: RingReader) -> int | None:
    """For a ring that dropped records: the power of two that would have held its peak backlog
    (records waiting plus records dropped between two drains), at least twice the capacity."""
    if not reader.last.dropped:
        return None
    return 1 << (max(reader.peak_demand, 2 * reader.capacity) - 1).bit_length()


CREATION_GRACE_S = 1.0  # a writer sizes the file and publishes the magic within microseconds
# ...unless it is descheduled in between: a loaded host can hold a thread for over a second. While
# the process named in the file is alive its ring is waited for this long, not skipped with all
# that thread's records.
CREATION_WAIT_ALIVE_S = 30.0


def _writer_pid(path: Path) -> int | None:
    """The pid every writer puts in its ring's name (``name.pid.tid[.n].ring``: names keep no dots)."""
    parts = path.name.split(".")
    return int(parts[1]) if len(parts) in (4, 5) and parts[1].isdigit() else None


def _being_created(path: Path, error: RingFormatError) -> str | None:
    """Whether a ring file without its magic yet, or not yet sized, is still being written:
    "fresh" (touched a moment ago: look again soon), "slow" (older, but its writer's process is
    alive: look again at the usual pace), None (neither: a bad ring)."""
    if "bad magic 0x0000000000000000" not in str(error) and "truncated header" not in str(error):
        return None
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return None
    if age < CREATION_GRACE_S:
        return "fresh"
    pid = _writer_pid(path)
    return "slow" if age < CREATION_WAIT_ALIVE_S and pid is not None and _pid_running(pid) else None


class HistogramSet:
    """Per tag: the interval in progress and the cumulative total (warm-up kept apart)."""

    def __init__(self):
        self.interval: dict[str, HdrHistogram] = {}
        self.total: dict[str, HdrHistogram] = {}
        self.warmup_total: dict[str, HdrHistogram] = {}
        self._recorder = BulkRecorder(new_histogram())
        self.max_value = self._recorder.max_recordable  # the highest value a histogram tracks
        self.layout = new_histogram()  # the layout every histogram of the set has (kept empty)
        self.out_of_range = 0
        # Emptied interval histograms, handed back after a roll: with ~180 tags (dimension values)
        # a new one per tag per interval cost more than zeroing a used one.
        self._spare: list[HdrHistogram] = []

    def record(self, tag: str, values: np.ndarray) -> None:
        if values.size == 0:
            return
        self.out_of_range += self._recorder.record(self._interval_of(tag), values)

    def record_groups(self, tag_of, values: np.ndarray, label: np.ndarray, column_group: np.ndarray, stride: int,
                      n_groups: int, absent: tuple[int, int] = (1, 0)) -> None:  # fmt: skip
        """``BulkRecorder.record_groups`` into the interval's histogram of tag ``tag_of(group)``."""
        self.out_of_range += self._recorder.record_groups(
            values, label, column_group, stride, n_groups, lambda g: self._interval_of(tag_of(g)), absent
        )

    def _interval_of(self, tag: str) -> HdrHistogram:
        h = self.interval.get(tag)
        if h is None:
            h = self.interval[tag] = self._spare.pop() if self._spare else new_histogram()
        return h

    def roll(self, warmup: bool) -> dict[str, HdrHistogram]:
        """Close the interval: fold it into the totals and hand its histograms out (no longer the
        set's until ``recycle`` gives them back: the next interval's are taken as its tags record,
        so only the tags an interval touched cost anything at its roll)."""
        finished = {}
        totals = self.warmup_total if warmup else self.total
        for tag, h in self.interval.items():
            if not h.total_count:
                continue
            finished[tag] = h
            total = totals.get(tag)
            if total is None:
                total = totals[tag] = new_histogram()
            add_into(total, h)
        self.interval = {}
        return finished

    def recycle(self, finished: dict[str, HdrHistogram]) -> None:
        """Take back histograms ``roll`` handed out, once nothing holds them any more."""
        for h in finished.values():
            if layout_of(h) == layout_of(self.layout):  # a corrected twin may have grown its layout
                reset(h)
                self._spare.append(h)


class SlowestTraces:
    """The ``n`` slowest traces offered, slowest first."""

    def __init__(self, n: int):
        self.n = n
        self.kept: list[tuple[int, dict]] = []

    def admits(self, key: int) -> bool:
        if self.n <= 0:  # --slowest 0: keep none
            return False
        return len(self.kept) < self.n or key > self.kept[-1][0]

    def floor(self) -> int:
        """The key at or below which nothing is admitted (-1: anything may be)."""
        if self.n <= 0:
            return np.iinfo(np.int64).max
        return self.kept[-1][0] if len(self.kept) >= self.n else -1

    def add(self, key: int, trace: dict) -> None:
        self.kept.append((key, trace))
        self.kept.sort(key=lambda kv: -kv[0])
        del self.kept[self.n :]

    def traces(self) -> list[dict]:
        return [t for _, t in self.kept]


class PointTap:
    """Every trace's stamps of a few named points (trace ids, CLOCK_MONOTONIC ns, legs), kept for a
    join beside or after the run (a wire capture joins ``md.rx`` by trace and ``order.tx`` by
    (trace, leg); a shared point's leg is whatever its record carried). The drain thread
    appends; another thread may ``take_new`` meanwhile (a list's length and slices are safe to
    read while it grows)."""

    def __init__(self, names):
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {n: [] for n in names}
        self._cursor = dict.fromkeys(self.parts, 0)

    def take_new(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What was kept of ``name`` since the last ``take_new``."""
        parts = self.parts.get(name, [])
        end = len(parts)
        new = parts[self._cursor.get(name, 0) : end]
        self._cursor[name] = end
        return _concat(new)

    def all(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _concat(self.parts.get(name, []))


def _concat(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


@dataclass(frozen=True)
class IntervalGrid:
    """The session's timeline, for whoever adds tags on its interval grid: CLOCK_MONOTONIC ns of
    the start, interval and warm-up lengths, and REALTIME - MONOTONIC over the run (to move a
    capture's stamps)."""

    start_ns: int
    interval_ns: int
    warmup_ns: int
    realtime: RealtimeOffset

    def to_monotonic(self, stamps: np.ndarray, after: np.ndarray | None = None) -> np.ndarray:
        """REALTIME ns (a capture's, in capture order) on the collector's CLOCK_MONOTONIC timeline,
        placed as the collector places the kernel's stamps; 0 stays 0. ``after``: the state
        carried from the same source's previous call (None: a source that began with the session)."""
        after = placed_after(self.start_ns) if after is None else after
        return _intake().realtime_to_monotonic(np.asarray(stamps, np.int64), *self.realtime.knots, after)


class Collector:
    def __init__(self, ring_dir: str | Path, session: SessionWriter | None = None, *,
                 interval_s: float = 1.0, warmup_s: float = 0.0, linger_s: float = 0.25,
                 slowest: int = 20, history: int = 120, expected_interval_ns: int = 0,
                 ring_paths: list[Path] | None = None, host_tsc: dict | None = None,
                 dimension_cap: int = DEFAULT_CAP, slice_by: list[tuple[str, ...]] | None = None,
                 incidents: IncidentPolicy | None = None):  # fmt: skip
        keep_freed_memory()
        self.ring_dir = Path(ring_dir)
        # Named rings: attach to exactly these, never to their neighbours in the directory.
        self.ring_paths = [Path(p) for p in ring_paths] if ring_paths is not None else None
        self.host_tsc = host_tsc if host_tsc is not None else tsc_facts()
        # One TSC domain for every ring of this host when the host keeps its TSC one clock;
        # otherwise a domain per ring (the reason is said at the end of the run).
        self.host_domain_ok, self.host_domain_why = host_tsc_domain(self.host_tsc)
        self.host_clock = TscDomain("host")
        self.tsc_domains: list[TscDomain] = [self.host_clock] if self.host_domain_ok else []
        self._saw_tsc = False  # a ring stamping TSC was attached (released or not)
        self._read_tsc = tsc_reader() if self.host_domain_ok else None
        self._next_pair_ns = 0
        self._take_collector_pair(monotonic_ns())
        self.clock_notes: list[str] = []  # filled by finish(): one line each, also in meta.json
        self.session = session
        self.interval_ns = round(interval_s * 1e9)
        self.warmup_ns = round(warmup_s * 1e9)
        self.schema = TraceSchema()
        self.hists = HistogramSet()
        self.correlator = Correlator(self.schema, linger_ns=round(linger_s * 1e9), slowest=slowest,
                                     max_value=self.hists.max_value)  # fmt: skip
        self._kernels = _intake()  # loaded (or compiled) here, before any record is timed
        self.refused: list[RingReader] = []  # rings whose declarations contradict the others': never read
        self._unordered_since: int | None = None  # when the schema last lost its one order
        self.counters = SessionCounters()
        self.sources: list[RingSource] = []  # attached, and released ones not yet folded
        self._by_index: dict[int, RingSource] = {}
        self._next_index = 0
        self._free_indexes: deque[int] = deque()  # of folded writers: reused only at the int16 limit
        # Released writers: parted (released, a stamp of theirs may still be in an open or late
        # trace), then folded into one aggregate once none is (see ``_fold_released``).
        self._parting: list[RingSource] = []
        self._folded_ns = 0  # interval grid time of the last fold
        self.released = ReleasedWriters()
        # What the user must know about a folded writer's numbers (``RingSource.notes``), said at the
        # end with the others: bounded, for a daemon's thousands of writers; beyond, a count
        self._released_notes: deque[str] = deque(maxlen=RELEASED_NOTES_KEPT)
        self._released_notes_left_out = 0
        # index -> (writer, pid, tid) of folded writers, for an incident naming one after the fold
        self._identities: dict[int, tuple] = {}
        self._known: set[str] = set()  # the paths of rings opened or skipped
        self._descriptors_noted = False
        self.ring_errors: list[str] = []
        # Writers attached and released, one line each, for ``live`` to say as they happen (taken
        # by ``take_notices``: a daemon sees thousands of writers, so they are not kept).
        self.notices: list[str] = []
        # REALTIME - MONOTONIC from the start and as it moves: kernel and capture stamps are placed
        # with the offset of their time
        self.realtime = RealtimeOffset(*sample_realtime_offset(), monotonic_ns(), watch=True)
        # The grid starts when the session does, the same instant on both clocks: its intervals
        # are written at epoch times (the session's start plus their offset), and the side
        # collectors' (hiccups, perf) stamp epoch time; started apart, they sat apart by what
        # happened in between (this constructor loading kernels: 0.1 s; 12 s on a fresh host).
        if session is not None:
            self.start_ns = round(session.meta["start_epoch_s"] * 1e9) - self.realtime_offset
        else:
            self.start_ns = monotonic_ns()
        self._interval_start = self.start_ns
        self._state_saved_ns = 0  # interval grid time of the last meta.json/summary.json (0: never)
        self._slowest = SlowestTraces(slowest)  # of the run
        self._segment_slowest = SlowestTraces(slowest)  # of the open segment (a segmented session)
        self.slowest_n = slowest
        # Known interval between ticks (constant-rate load): also record CO-corrected totals, each
        # population corrected with its own interval (``_correct_interval``).
        self.expected_interval_ns = expected_interval_ns
        self._interval_ticks = 0  # complete traces (ticks) closed in the interval in progress
        self._co_totals = {TICK_TO_TRADE: [0, 0], TICK_TO_DECISION: [0, 0]}  # tag -> [ticks, samples]
        self.attribution: TailAttribution | None = None
        self._published: dict[str, tuple] = {}  # name -> (version, when, value): see _throttled
        self._history = history
        self._live: Snapshot | None = Snapshot()  # None: the last roll's is not built yet
        self._interval_live: Snapshot | None = self._live  # the same, without the whole run's figures
        self._live_parts: tuple = ()  # _build_snapshot's arguments as of the last roll
        self._p99 = {}
        self._subject_stats: dict = {}
        self._taps: list[PointTap] = []  # see ``tap``; none: nothing is kept
        # Dimension name -> its values in the order first seen (value id = position + 1): every
        # ring's interned values of that dimension mapped onto one id space (meta.json "dimensions").
        self.dimensions: dict[str, list[str]] = {}
        self.legs_recorded = 0  # recorded rows that were one leg of a fanned-out trace
        # A caller that sets a list gets every flush's recorded rows (trace, leg, dimension value
        # ids, tick-to-trade): per-trace data for slicing by dimension. None: not kept.
        self.rows: list[dict[str, np.ndarray]] | None = None
        # Per-dimension-value histograms (each dimension alone, plus the combinations in ``slice_by``)
        self.slices = DimensionSlices(dimension_cap, slice_by)
        # --incident: every closed trace's stamps kept for a window, breaches written as incidents
        self.incidents: IncidentRecorder | None = None
        if incidents is not None:
            self.incidents = IncidentRecorder(incidents, session.path if session is not None else None,
                                              self._writer_of, self.start_ns, self.realtime_offset)  # fmt: skip
            self.correlator.keep_closed = True

    # -- what others may use ---------------------------------------------------------------------
    def tap(self, points) -> PointTap:
        """Keep every trace's stamps of ``points`` from now on (TSC-stamped points are not kept:
        raw ticks are not ns on another clock's timeline)."""
        tap = PointTap(points)
        self._taps.append(tap)
        return tap

    @property
    def snapshot(self) -> Snapshot:
        """The state as of the last interval closed: a new object at every roll, never mutated.
        Built when first asked for after the roll (by a view, an exporter): a run nobody watches
        does not summarize every total and dimension value each interval for no one."""
        if self._live is None:
            self._live = self._build_snapshot(*self._live_parts)
        return self._live

    @property
    def interval_snapshot(self) -> Snapshot:
        """The last interval's own figures (its summaries, rates, counters, ring problems) without
        the whole run's (cumulative, by dimension, attribution: left empty), for a view that shows
        only those (the progress lines). A new object at every roll, like ``snapshot``; summarizing
        every total once a second for a line that never prints them was ~5 % of the collector."""
        if self._interval_live is None:
            self._interval_live = self._build_snapshot(*self._live_parts, whole_run=False)
        return self._interval_live

    @property
    def realtime_offset(self) -> int:
        """REALTIME - MONOTONIC at the session's start (the grid's epoch times; ``realtime``: since)."""
        return self.realtime.start

    @property
    def realtime_uncertainty(self) -> int:
        return self.realtime.start_uncertainty

    @property
    def grid(self) -> IntervalGrid:
        return IntervalGrid(self.start_ns, self.interval_ns, self.warmup_ns, self.realtime)

    def totals(self) -> dict[str, HdrHistogram]:
        """The post-warm-up total per tag. Mutated in place at each roll: copy what you keep."""
        return self.hists.total

    def _writer_of(self, src: int) -> dict:
        """A stamp's source (ring index + 1, 0: none) as slowest.json names it."""
        held = self._by_index.get(src - 1) if src else None
        if held is not None:
            r = held.reader
            return {"writer": r.writer_name, "pid": r.writer_pid, "tid": r.writer_tid}
        writer, pid, tid = self._identities.get(src - 1, (None, None, None)) if src else (None, None, None)
        return {"writer": writer, "pid": pid, "tid": tid}

    def records_drained(self) -> int:
        return sum(src.reader.drained for src in self.sources)

    # -- discovery -----------------------------------------------------------------------------
    def discover(self) -> None:
        # The pipeline order is the merge of the rings' declarations and does not depend on the
        # order rings are merged in; creation order only decides which of two contradicting
        # rings is refused (the later one: what was already being measured goes on).
        found = []
        named = self.ring_paths is not None
        self.ring_being_created = False
        for path in self.ring_paths if named else find_rings(self.ring_dir, self._known):
            if str(path) in self._known:
                continue
            if not self._room_for_a_ring(len(found)):
                break
            try:
                reader = RingReader(path)
            except RingDescriptorsExhausted:
                self._room_for_a_ring(len(found), exhausted=True)
                break
            except RingFormatError as e:
                # A ring still being created has no magic yet: retry next poll, report only if it stays bad.
                creating = None if named else _being_created(path, e)
                if creating:
                    # its writer is writing the header: look again soon (a slow one at the pace)
                    self.ring_being_created |= creating == "fresh"
                    continue
                # Gone between listing and opening: its writer closed before anyone attached and
                # removed it (the ownership rule, probe/ring.py); nothing of it was ours to count.
                if not named and not os.path.lexists(path):
                    continue
                self._known.add(str(path))
                self.ring_errors.append(f"skipped {e}")
                continue
            self._known.add(str(path))
            found.append(reader)
        for reader in sorted(found, key=lambda r: r.created_monotonic_ns):
            try:
                merged = self.schema.merge(
                    reader.points, ring=f"ring {reader.writer_name} (pid {reader.writer_pid})"
                )
            except DeclarationConflict as e:
                self._refuse(reader, e)
                continue
            cols = np.array(merged, dtype=np.int64)
            clock = self.host_clock
            if not self.host_domain_ok:
                clock = TscDomain(str(reader.path))
                self.tsc_domains.append(clock)
            src = RingSource(
                self._new_index(), reader, cols, np.array([p.clock for p in reader.points]), clock
            )
            # domain 0: a domain of this ring alone (numbered by its index, which outlives a fold)
            self.correlator.declare_ring(src.index, cols, tick=reader.kind != L.KIND_POINT,
                                         tsc=src.domains == L.CLOCK_TSC, timeline=src.tsc,
                                         domain=1 if clock is self.host_clock else 0)  # fmt: skip
            for dim in reader.dims:
                self.dimensions.setdefault(dim, [])
            src.dim_column = np.array([list(self.dimensions).index(dim) for dim in reader.dims], np.int64)
            src.dim_map = np.zeros((len(reader.dims), L.MAX_DIM_VALUES + 1), np.int32)
            self.correlator.declare_dims(len(self.dimensions))
            self.sources.append(src)
            self._by_index[src.index] = src
            self._saw_tsc |= src.stamps_tsc  # sticky: a released writer's TSC stamps were converted too
            self.notices.append(f"attached writer {_writer(reader)} ({reader.path})")
            if reader.counter_error is not None:
                self._quarantine(src, reader.counter_error)
                continue
            try:
                src.refresh_calibration()
            except RingFormatError as e:
                self._quarantine(src, e)
            clock.refit()

    # A stamp's source is an int16 (index + 1): past this many writers, folded writers' indexes are
    # reused, oldest first (a released writer's stamps are long gone by then).
    MAX_INDEXES = np.iinfo(np.int16).max

    def _new_index(self) -> int:
        if self._next_index < self.MAX_INDEXES or not self._free_indexes:
            self._next_index += 1
            return self._next_index - 1
        index = self._free_indexes.popleft()
        self._identities.pop(index, None)
        return index

    def _fold_released(self) -> None:
        """Fold released writers none of whose stamps the correlator still holds into the one
        ``released`` aggregate: the collector keeps nothing per writer gone (a daemon's RSS grew
        ~6.5 kB per writer, and meta.json ~660 bytes, before)."""
        if not self._parting:
            return
        held = self.correlator.rings_held()
        parting = []
        for src in self._parting:
            if src.index in held:
                parting.append(src)
                continue
            self.released.fold(src.describe())
            for line in src.notes():
                self._released_notes_left_out += len(self._released_notes) == RELEASED_NOTES_KEPT
                self._released_notes.append(line)
            self.sources.remove(src)
            del self._by_index[src.index]
            r = src.reader
            self._identities[src.index] = (r.writer_name, r.writer_pid, r.writer_tid)
            while len(self._identities) > self.IDENTITIES_KEPT:
                del self._identities[next(iter(self._identities))]
            self.correlator.forget_ring(src.index)
            if src.clock is not self.host_clock:
                self.tsc_domains.remove(src.clock)
            self._free_indexes.append(src.index)
        self._parting = parting

    # Names of folded writers kept for an incident written after their fold (its window is
    # milliseconds: far fewer writers come and go in it)
    IDENTITIES_KEPT = 64

    def _take_collector_pair(self, now_ns: int) -> None:
        """A calibration pair of the collector's own for the host domain, every
        COLLECTOR_PAIR_EVERY_NS: the baseline grows with the session whatever the writers do."""
        if self._read_tsc is None or now_ns < self._next_pair_ns:
            return
        self._next_pair_ns = now_ns + COLLECTOR_PAIR_EVERY_NS
        self.host_clock.add([collector_pair(self._read_tsc)], "collector")

    def _refuse(self, reader: RingReader, error: DeclarationConflict) -> None:
        """A ring whose point declarations contradict another ring's: none of its records is read
        (they would be measured on an order one of the two rings says is wrong); the run is not
        drop-free and ``--fail-on-drops`` fails it."""
        self.refused.append(reader)
        self.counters.rings_refused += 1
        self.ring_errors.append(f"refused ring {reader.path}: {error}; none of its records is read: fix the "
                                "declarations so that every ring agrees")  # fmt: skip

    def _room_for_a_ring(self, opening: int, exhausted: bool = False) -> bool:
        """Whether one more ring may be attached. Each holds a descriptor (its mapping's) until
        released; rings beyond what the descriptor limit allows, less a reserve for the session's
        files, /proc reads and the Prometheus endpoint, wait in their directory until attached
        ones finish. Said once, in one line."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        attached = opening + sum(not s.finished for s in self.sources)
        if not exhausted and (soft == resource.RLIM_INFINITY or attached < soft - min(128, soft // 2)):
            return True
        if not self._descriptors_noted:
            self._descriptors_noted = True
            self.ring_errors.append(f"rings wait: {attached} attached hold the descriptors this process may use "
                                    f"(ulimit -n {soft}); more are attached as these finish (raise ulimit -n)")  # fmt: skip
        return False

    def _quarantine(self, src: RingSource, error: RingFormatError) -> None:
        """Stop trusting one ring's header: keep what it held under counters that still made
        sense, report it, and let the other rings carry on."""
        src.finished = True
        src.quarantined = str(error).split(": ", 1)[-1]
        before = src.reader.drained
        if isinstance(error, RingCounterError):
            try:
                while (batch := src.reader.drain_trusted(self.BATCH)).size:
                    self._correlate(src, batch)
            except (RingFormatError, ValueError, OverflowError):
                pass
        self.counters.rings_quarantined += 1
        self.ring_errors.append(
            f"quarantined {error}: stopped reading it; kept the {src.reader.drained:,} records drained"
            f" under sane counters ({src.reader.drained - before:,} after the check failed), the other rings go on"
        )
        src.reader.close()  # never read again (a truncated one must not be: SIGBUS); its file is evidence

    def _release(self, src: RingSource) -> None:
        """A ring drained to the end of a writer that is gone: unmap it (its descriptor goes with
        the mapping) and remove its file, as the writer left it for us to do. Its counters stay
        in the accounting (``_fold_released``). ``tickscope live`` attaches to writers for as long as it runs: keeping
        each one mapped ran out of descriptors after ~1,000 short-lived writers."""
        r = src.reader
        how = "closed its ring" if r.writer_closed else "exited without closing its ring"
        dropped = f", {r.last.dropped:,} dropped (ring full)" if r.last is not None and r.last.dropped else ""
        self.notices.append(f"released writer {_writer(r)} (pid {r.writer_pid} {how}; "
                            f"{r.drained_before_attach + r.drained:,} records{dropped})")  # fmt: skip
        src.reader.close()
        self._parting.append(src)  # folded into ``released`` once no open trace holds a stamp of it
        try:
            src.reader.path.unlink()
        except OSError:
            return
        if self.ring_paths is None:  # a new writer may be given the same name (pids are reused)
            self._known.discard(str(src.reader.path))

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices

    # -- one pass --------------------------------------------------------------------------------
    BATCH = 1 << 16  # records per ring per round: bounds the open traces re-sorted per batch
    fill = 0.0  # the largest fraction of a ring's capacity the last poll drained
    ring_being_created = False  # the last discovery found a ring file without its header yet
    CREATING_SLEEP_S = 0.005  # the sleep while a ring file is there without its header yet
    PACE_FILL = 0.25  # one sleep may fill at most this fraction of any ring, at its peak rate
    BACKLOG_FILL = 0.5  # a poll that drained this much of a ring: poll again without sleeping
    PEAK_HALF_LIFE_NS = 10_000_000_000
    _drained_at_ns = 0  # when the last poll drained
    _pace_s = 0.0  # the last sleep next_sleep chose before cutting it to the interval's end

    def next_sleep(self, current_s: float, floor_s: float = 0.001, ceiling_s: float = 0.25) -> float:
        """How long to sleep before the next poll. Each poll has a fixed cost (numpy calls per tag
        and dimension value), so poll rarely when the rings fill slowly: no sleep once a poll found
        a ring BACKLOG_FILL full (a backlog), else double the sleep up to ``ceiling_s`` but never past
        ``safe_sleep_s`` (a ring's capacity at the fastest rate it was seen filling), nor past the
        end of the interval in progress (its records close in it)."""
        if self.fill >= self.BACKLOG_FILL:  # faster than any rate seen: drain again at once
            self._pace_s /= 2
            return 0.0
        if self.ring_being_created:  # a new writer, rate unknown: attach it as soon as its header is there
            return self.CREATING_SLEEP_S
        # No bound from ``linger``: a trace without its last point closes at the first poll after
        # linger has passed since its last record was drained, up to a ceiling later than at
        # linger / 5 (the bound before), and an answer that comes meanwhile joins it on time, not
        # late (LateIndex). Measured: 0.63-0.70x the collector's CPU at 20 k msgs/s, no change in
        # the subject's tails (docs/performance.md).
        # doubled from the last pace, not from a sleep cut short by the interval's end
        self._pace_s = min(ceiling_s, self.safe_sleep_s(), max(floor_s, max(current_s, self._pace_s) * 2))
        until_roll = (self._interval_start + self.interval_ns - monotonic_ns()) / 1e9
        return min(self._pace_s, max(until_roll, floor_s))

    def safe_sleep_s(self) -> float:
        """The longest sleep after which no ring is more than PACE_FILL full, were each written at
        the peak rate it has shown: capacity * PACE_FILL / peak rate, for the ring that fills first.
        A burst faster than any seen still has the other 3/4 of the ring (``capacity_needed`` says
        what would have held one that overflowed)."""
        bounds = [s.reader.capacity * self.PACE_FILL / s.peak_rate for s in self.sources
                  if not s.finished and s.peak_rate > 0]  # fmt: skip
        return min(bounds, default=float("inf"))

    def _pace(self, src: RingSource, drained: int, now_ns: int) -> None:
        """The ring's peak rate, from what one poll drained over the time since the previous one."""
        elapsed = max(now_ns - (self._drained_at_ns or self.start_ns), 1)
        decayed = src.peak_rate * 0.5 ** (elapsed / self.PEAK_HALF_LIFE_NS)
        src.peak_rate = max(drained * 1e9 / elapsed, decayed)

    def poll(self, now_ns: int | None = None) -> int:
        """One drain round: discover rings, drain up to one batch from each, correlate, and roll
        the interval if due. Returns the records drained (a full batch: poll again, no sleep).

        ``now_ns`` (default: the clock) is when the round runs, for a caller that drives time."""
        # Linger counts from here, not from the end of the poll: a collector held between its
        # drain and its close (preempted on a loaded host) must not give a trace up for a point
        # published meanwhile, which only the next round reads.
        began = monotonic_ns() if now_ns is None else now_ns
        self.discover()
        self.correlator.advance()
        drained = 0
        self.fill = 0.0
        # Calibration before draining: the records drained are converted with every pair written
        # before them, by any ring of their domain.
        self._take_collector_pair(monotonic_ns())
        self.realtime.sample()
        for src in self.sources:
            if not src.finished:
                try:
                    src.refresh_calibration()
                except RingFormatError as e:
                    self._quarantine(src, e)
        for clock in self.tsc_domains:
            clock.refit()
        drained_at = monotonic_ns()
        for src in self.sources:
            if not src.finished:
                try:
                    n = self._drain(src)
                except RingFormatError as e:
                    self._quarantine(src, e)
                    continue
                drained += n
                if src.reader.read_to_head:  # what it published before the round began is in
                    src.caught_up_ns = began
                self.fill = max(self.fill, n / src.reader.capacity)
                self._pace(src, n, drained_at)
        self._drained_at_ns = drained_at
        now = monotonic_ns() if now_ns is None else now_ns
        self._ingest(self._close(now))
        if self.incidents is not None:
            self.incidents.write_due(now)
        while now - self._interval_start >= self.interval_ns:
            self._roll(self._interval_start + self.interval_ns)
        return drained

    ORDER_GRACE_NS = 1_000_000_000  # how long traces wait for a ring whose declarations order the others'

    def _close(self, now_ns: int, force: bool = False) -> Closed:
        """Close traces, but never on a guessed order: while no declaration orders some points
        (rings not linked yet: the ring that links them may not be open yet), traces wait; past
        ``max(ORDER_GRACE_NS, one interval)`` or at the end they are set aside, with one line."""
        unresolved = self.schema.unresolved
        if unresolved is None:
            self._unordered_since = None
            # what either keeper of the slowest traces would still admit (a segment's starts empty)
            self.correlator.slow_floor = min(k.floor() for k in (self._slowest, self._segment_slowest))
            return self.correlator.flush(now_ns, force, read_until_ns=self._read_until())
        if self._unordered_since is None:
            self._unordered_since = now_ns
        if not force and now_ns - self._unordered_since < max(self.ORDER_GRACE_NS, self.interval_ns):
            return Closed(values={})
        line = f"traces set aside, unmeasured: {unresolved}"
        if line not in self.ring_errors:
            self.ring_errors.append(line)
        return self.correlator.flush(now_ns, unordered=True)

    def _read_until(self) -> int | None:
        """The time before which every record published to a ring being read has been drained:
        the oldest ``caught_up_ns`` of the rings still read (a ring with a backlog holds it back)."""
        return min((s.caught_up_ns for s in self.sources if not s.finished), default=None)

    def _drain(self, src: RingSource) -> int:
        reader = src.reader
        reader.check_size()  # before anything reads the mapping (see RingReader.check_size)
        alive = reader.writer_alive()  # asked before draining: a writer dying meanwhile leaves more
        if reader.kind == L.KIND_POINT:
            # Decoded in place, and handed back at once: the decode copies what it keeps, and the
            # mapping is read (and ``tail`` written) no later than a copy would (check_size).
            records = reader.peek(self.BATCH)
            n = int(records.size)
            points = self._decode(src, records) if n else None
            del records  # no view of the mapping may outlive this (close, quarantine)
            reader.release(n)
            if n:
                self._correlate_points(src, *points)
        else:
            batch = reader.drain(self.BATCH)
            n = int(batch.size)
            if n:
                self._correlate(src, batch)
        if not n and not alive and reader.in_ring_seen == 0:
            src.finished = True
            if not reader.writer_closed:
                self.counters.writers_died += 1
            self._release(src)
        return n

    def _intern(self, src: RingSource) -> None:
        """Map the values the ring interned since the last drain to the collector's value ids."""
        if not src.dim_column.size:
            return
        values = src.reader.dim_values()
        for i in range(src.dim_seen, len(values)):
            slot, value = values[i]
            if slot < src.dim_column.size:
                known = self.dimensions[list(self.dimensions)[src.dim_column[slot]]]
                if value not in known:
                    known.append(value)
                src.dim_map[slot, i + 1] = known.index(value) + 1
        src.dim_seen = len(values)

    def _decode(self, src: RingSource, records: np.ndarray) -> tuple:
        """A point ring's records as ``point_records`` gives them (copies: ``records`` may be the
        ring itself)."""
        self._intern(src)
        words = records.view(np.uint64).reshape(records.size, L.POINT_RECORD_SIZE // 8)
        return self._kernels.point_records(words, src.reader.n_points, src.columns, src.domains, *self.realtime.knots,
                                           src.realtime_after, src.dim_map, src.dim_column,
                                           len(self.dimensions))  # fmt: skip

    def _correlate_points(self, src: RingSource, trace, legs, cols, ts, dims, tally) -> None:
        """A point ring's decoded records (``_decode``) counted and handed to the correlator."""
        kernels = self._kernels
        src.malformed += int(tally[kernels.MALFORMED])
        src.point_out_of_range += int(tally[kernels.POINT_OUT_OF_RANGE])
        src.dims_unknown += int(tally[kernels.DIMS_UNKNOWN])
        if tally[kernels.TSC_STAMPS]:
            src.observe_tsc(tally[kernels.NEWEST_TICK :][:1])
        self.correlator.add_points(trace, cols, ts, src.index, monotonic_ns(), legs=legs, dims=dims)
        if self._taps:
            tsc = np.zeros(len(self.schema.names), bool)
            tsc[src.columns[src.domains == L.CLOCK_TSC]] = True
            self._keep(trace, lambda c, cols=cols, tsc=tsc[cols]: (cols == c) & ~tsc, ts, legs)

    def _correlate(self, src: RingSource, batch: np.ndarray) -> None:
        """A batch of records drained (copied out) of the ring."""
        reader = src.reader
        if reader.kind == L.KIND_POINT:
            self._correlate_points(src, *self._decode(src, batch))
        else:
            self._intern(src)
            raw = batch["ts"]
            n = len(self.schema.names)
            rows = np.zeros((batch.size, n), np.int64)
            srcs = np.zeros((batch.size, n), np.int16)
            for j in range(reader.n_points):
                col = rows[:, src.columns[j]] = src.convert(raw[:, j], int(src.domains[j]), self.realtime)
                srcs[:, src.columns[j]] = np.where(col != 0, src.index + 1, 0)
            empty = ~rows.any(axis=1)
            bad_leg = batch["leg"] > L.MAX_LEG
            if (
                empty.any() or bad_leg.any()
            ):  # a committed tick with no stamp at all carries nothing to measure
                src.malformed += int((empty | bad_leg).sum())
                src.leg_out_of_range += int((bad_leg & ~empty).sum())
                keep = ~empty & ~bad_leg
                batch, rows, srcs = batch[keep], rows[keep], srcs[keep]
            dims, unknown = self._kernels.dimension_ids(np.ascontiguousarray(batch["dims"]), src.dim_map, src.dim_column,
                                                  len(self.dimensions))  # fmt: skip
            src.dims_unknown += unknown
            self.correlator.add_rows(batch["trace"], rows, srcs, monotonic_ns(), legs=batch["leg"].astype(np.int32),
                                     dims=dims)  # fmt: skip
            for j in range(reader.n_points) if self._taps else ():
                if src.domains[j] != L.CLOCK_TSC:  # raw ticks are not ns on the capture's clock
                    col = int(src.columns[j])
                    self._keep(batch["trace"], lambda c, col=col: c == col, rows[:, col], batch["leg"])

    def _keep(self, trace: np.ndarray, in_column, ts: np.ndarray, leg: np.ndarray) -> None:
        for tap in self._taps:
            for name, parts in tap.parts.items():
                if name in self.schema.names:
                    sel = in_column(self.schema.names.index(name)) & (ts != 0)
                    if np.any(sel):
                        parts.append((trace[sel].astype(np.int64), ts[sel], leg[sel].astype(np.int64)))

    def _ingest(self, closed: Closed) -> None:
        for tag, values in closed.values.items():
            self.hists.record(tag, values)
        self._interval_ticks += closed.complete
        # The collector's orders are population 0 of one attribution that also holds every
        # slicing's values: one compiled pass per flush over the orders for all of them.
        trades = own = None
        if closed.trade_spans is not None and self._interval_start - self.start_ns >= self.warmup_ns:
            stages = self.trade_stages()
            if self.attribution is None or self.attribution.stages != stages:
                # a ring declaring trade points after trades were attributed: start over on the new stages
                self.attribution = TailAttribution(stages, self.hists.layout)
                self.attribution.open(1)
            trades = self.attribution.trades(closed.trade_spans, closed.trade_t2t)
            own = np.zeros((trades.shape[0], 1), np.int64)
        attributed = False
        c = self.counters
        c.traces_seen += closed.seen
        c.traces_complete += closed.complete
        if closed.rows is not None and self.dimensions:
            warmup = self._interval_start - self.start_ns < self.warmup_ns
            attributed = self.slices.add(self.hists, closed.rows, closed.trade_spans, self.trade_stages(),
                                         self.dimensions, warmup, self.hists.layout, closed.ticks,
                                         self.schema.tick_stages, trades, self.attribution, own)  # fmt: skip
        if own is not None and not attributed:
            self.attribution.add_trades(trades, own)
        if closed.rows is not None:
            self.legs_recorded += int((closed.rows["leg"] >= 0).sum())
            if self.rows is not None and closed.rows["trace"].size:
                self.rows.append(closed.rows)
        for reason, n in closed.set_aside().items():
            setattr(c, SESSION_KEY[reason], getattr(c, SESSION_KEY[reason]) + n)
        if closed.slow_ids is not None:
            self._keep_slowest(closed)
        if self.incidents is not None and closed.kept is not None:
            self.incidents.check(closed.kept, self.schema, self.dimensions)

    SLOWEST_NOTE = (
        "stage_ns: the exact span from the previous point, as the stage tables measure it; "
        "ts_ns: the stamp on the session's CLOCK_MONOTONIC timeline, where a TSC stamp goes "
        "through the slewed TSC map and two of them may differ from their exact span by a few ns"
    )

    def _keep_slowest(self, closed: Closed) -> None:
        names = self.schema.order_names
        for ids, row, srow, key, spans, leg in zip(closed.slow_ids, closed.slow_rows, closed.slow_src,
                                                   closed.slow_key, closed.slow_spans, closed.slow_legs,
                                                   strict=True):  # fmt: skip
            keeping = [k for k in (self._slowest, self._segment_slowest) if k.admits(int(key))]
            if not keeping:
                continue
            stamps = []
            for j, (name, ts, s) in enumerate(zip(names, row, srow, strict=False)):
                if ts:
                    stamp = {"point": name, "ts_ns": int(ts), "t_rel_ns": int(ts - self.start_ns),
                             **self._writer_of(int(s))}  # fmt: skip
                    # spans[j - 1]: from the previous point on the trace's path to point j (NOT_TAKEN: none)
                    if stamps and spans[j - 1] >= 0:
                        stamp["stage_ns"] = int(spans[j - 1])
                    stamps.append(stamp)
            trace = {
                "trace_id": int(ids),
                **({"leg": int(leg)} if leg >= 0 else {}),
                "tick_to_trade_ns": int(key),
                "stamps": stamps,
                "note": self.SLOWEST_NOTE,
            }
            for k in keeping:
                k.add(int(key), trace)

    # -- intervals -------------------------------------------------------------------------------
    def _roll(self, end_ns: int, final: bool = False) -> None:
        start_s = (self._interval_start - self.start_ns) / 1e9
        end_s = (end_ns - self.start_ns) / 1e9
        warmup = self._interval_start - self.start_ns < self.warmup_ns
        self._correct_interval(warmup)
        finished = self.hists.roll(warmup)
        if self.session is not None:
            self.session.write_interval(finished, start_s, end_s, warmup)
        self._interval_start = end_ns
        if end_ns - self._folded_ns >= self.FOLD_EVERY_NS:  # a scan of the open traces: not at every roll
            self._fold_released()
            self._folded_ns = end_ns
        self._publish_live(finished, end_s, warmup, final)
        self.hists.recycle(finished)  # written, folded into the totals and summarized: reused
        if self.session is not None:
            due = self.session.segment_due(end_s)
            # meta.json and summary.json are the run's whole state: a summary per tag and dimension
            # value, the tail attribution per value. Rewritten every STATE_EVERY_NS while running
            # (the intervals themselves are appended and flushed at every roll regardless); a
            # killed collector's latency figures come from the log, not from these files.
            if due or end_ns - self._state_saved_ns >= self.STATE_EVERY_NS:
                self._save_state()
                self._state_saved_ns = end_ns
            if due:
                self._cut_segment()

    # Each save was ~25 ms at ~180 tags, a quarter of the collector's CPU at 20 k msgs/s.
    STATE_EVERY_NS = 5_000_000_000
    LIVE_EVERY_NS = 1_000_000_000  # the live view's whole-run figures: a person reads them once a second
    FOLD_EVERY_NS = 1_000_000_000  # released writers folded (a scan of the open traces)

    def _cut_segment(self, final: bool = False) -> None:
        self.session.cut_segment(self._segment_slowest.traces(), self.counter_dict(), self.hists.total, final)
        self._segment_slowest = SlowestTraces(self.slowest_n)

    def _correct_interval(self, warmup: bool) -> None:
        """Coordinated-omission-corrected twins of tick_to_trade and tick_to_decision for the interval
        ending, each with the interval between samples *of its own population*: the intended tick
        interval times the interval's ticks per sample (ticks / orders for tick_to_trade, about 100x
        the tick interval when 1 % of ticks trade). A stall of d ns hides d / interval samples of a
        population; the tick interval would invent ticks-per-order times too many orders."""
        ticks, self._interval_ticks = self._interval_ticks, 0
        if not self.expected_interval_ns:
            return
        for tag in (TICK_TO_TRADE, TICK_TO_DECISION):
            raw = self.hists.interval.get(tag)
            if raw is None or not raw.total_count or not ticks:
                continue
            interval = population_interval(self.expected_interval_ns, ticks, raw.total_count)
            self.hists.interval[tag + CO_SUFFIX] = corrected_histogram(raw, interval)
            if not warmup:
                self._co_totals[tag][0] += ticks
                self._co_totals[tag][1] += raw.total_count

    def coordinated_omission(self) -> dict | None:
        """meta.json's ``coordinated_omission``: the tick interval and, per population, the interval
        its correction used over the whole run (each interval's own is in the hlog's _co counts)."""
        if not self.expected_interval_ns:
            return None
        out = {"tick_interval_ns": self.expected_interval_ns}
        for tag, (ticks, samples) in self._co_totals.items():
            if samples:
                out[tag] = {"ticks": ticks, "samples": samples,
                            "interval_ns": population_interval(self.expected_interval_ns, ticks, samples)}  # fmt: skip
        return out

    def tags(self) -> list[str]:
        known = set(self.hists.total) | set(self.hists.warmup_total) | set(self.hists.interval)
        # each corrected figure right after its raw one: shown side by side
        ordered = self.schema.stages + [TICK_TO_TRADE, TICK_TO_TRADE + CO_SUFFIX, TICK_TO_DECISION,
                                         TICK_TO_DECISION + CO_SUFFIX]  # fmt: skip
        return [t for t in dict.fromkeys(ordered) if t in known]

    def trade_stages(self) -> list[str]:
        return self.schema.trade_stages

    def _publish_live(
        self, finished: dict[str, HdrHistogram], end_s: float, warmup: bool, final: bool = False
    ) -> None:
        last = {t: summarize(h) for t, h in finished.items() if not is_dimension_tag(t)}
        for t, s in last.items():
            hist = self._p99.setdefault(t, deque(maxlen=self._history))
            hist.append(s.get("p99", 0))
        for t in self._p99:
            if t not in last:
                self._p99[t].append(0)
        self._live_parts = (end_s, warmup, last, self.tags(), final)
        self._live = self._interval_live = None

    def _build_snapshot(self, end_s: float, warmup: bool, last: dict[str, dict], tags: list[str],
                        final: bool = False, whole_run: bool = True) -> Snapshot:  # fmt: skip
        secs = self.interval_ns / 1e9
        totals = self.hists.total if self.hists.total else self.hists.warmup_total
        interval = dict(elapsed_s=end_s, warmup=warmup, tags=tags, trade_stages=self.trade_stages(), last=last,
                        rates={t: s["count"] / secs for t, s in last.items()}, counters=self.counter_dict(),
                        rings=len(self.sources), ring_errors=list(self.ring_errors))  # fmt: skip
        if not whole_run:
            return Snapshot(**interval)
        return Snapshot(
            **interval,
            # the whole run's figures change little per interval: at most once a second (see _throttled)
            cumulative=self._throttled("cumulative", None, final, lambda: self.summary(totals)),
            by_dimension=self._throttled("by_dimension", None, final, lambda: self.by_dimension(totals)),
            p99_history={t: list(d) for t, d in self._p99.items()},
            attribution=self._attribution_summary(fresh=final),
            ring_details=self.ring_rows(),
        )

    def _attribution_summary(self, fresh: bool) -> dict | None:
        """The tail attribution as of the last roll (see ``_throttled``): its medians partition a
        sample of up to 65,536 traces per tail. At 10 ms intervals, recomputing it at every roll for
        the live snapshot made the collector fall behind and its final drain last minutes."""
        a = self.attribution
        return None if a is None else self._throttled("attribution", (a, a.traces), fresh, a.summary)

    def _throttled(self, name: str, version, fresh: bool, compute):
        """``compute()`` again when ``version`` changed (None: always changed), but at most once a
        second of the session's time unless ``fresh`` (a save, the last roll); else the last value."""
        last = self._published.get(name)
        if last is not None and version is not None and last[0] == version:
            return last[2]
        if last is not None and not fresh and self._interval_start - last[1] < self.LIVE_EVERY_NS:
            return last[2]
        value = compute()
        self._published[name] = (version, self._interval_start, value)
        return value

    def subject_stats(self) -> dict:
        """Counters a subject publishes beside its rings (``*.stats.json``): feed gaps, risk rejects..."""
        out = {}
        for path in sorted(self.ring_dir.glob("*.stats.json")):
            try:
                out[path.name.split(".")[0]] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        if out:
            self._subject_stats = out
        return self._subject_stats

    def counter_dict(self, stats: dict | None = None) -> dict:
        """The run's counters; the subject's own (``stats``: one reading of ``subject_stats``,
        taken now if not given) folded in."""
        c = self.counters
        stats = self.subject_stats() if stats is None else stats
        for key in ("feed_gaps", "orders_sent", "orders_acked", "orders_rejected", "orders_gap_filled",
                    "orders_in_flight_at_end", "order_stalls"):  # fmt: skip
            c.extra[key] = sum(int(v.get(key, 0) or 0) for v in stats.values())
        c.extra["risk_rejects"] = sum(sum((v.get("risk_rejects") or {}).values()) for v in stats.values())
        # Orders per leg kind (a market maker's bid / ask / hedge), flat: every counter is a number.
        by_leg: dict[str, int] = {}
        for v in stats.values():
            for kind, n in (v.get("orders_by_leg") or {}).items():
                by_leg[f"orders_leg_{kind}"] = by_leg.get(f"orders_leg_{kind}", 0) + int(n or 0)
        c.extra.update(by_leg)
        for src in self.sources:
            if not src.finished:
                try:
                    src.reader.counters()  # one fresh, checked reading per ring: the terms add up
                except RingFormatError as e:
                    self._quarantine(src, e)
        readers = [s.reader for s in self.sources]
        gone = self.released.sums  # folded writers: their terms, added when they were folded
        c.produced = gone["produced"] + sum(r.last.produced for r in readers)
        c.drained = gone["drained"] + sum(r.drained for r in readers)
        c.dropped_ring_full = gone["dropped_ring_full"] + sum(r.last.dropped for r in readers)
        c.in_ring = gone["in_ring"] + sum(r.in_ring_seen for r in readers)
        c.drained_before_attach = gone["drained_before_attach"] + sum(
            r.drained_before_attach for r in readers
        )
        c.malformed = gone["malformed"] + sum(s.malformed for s in self.sources)
        c.duplicate_stamps = self.correlator.duplicate_stamps
        c.extra["dimension_conflicts"] = self.correlator.dimension_conflicts
        c.extra["dimension_values_unknown"] = gone["dims_unknown"] + sum(s.dims_unknown for s in self.sources)
        c.extra["legs_recorded"] = self.legs_recorded
        c.extra["late_legs"] = self.correlator.late_legs
        c.values_out_of_range = self.hists.out_of_range
        c.extra["late_points"] = self.correlator.late_points
        c.records_refused = 0
        for r in self.refused:
            try:
                c.records_refused += r.counters().produced
            except RingFormatError:
                c.records_refused += r.last.produced
        c.produced += c.records_refused
        d = c.as_dict()
        d["traces_pending"] = self.correlator.pending
        d["ring_errors"] = len(self.ring_errors)
        return d

    def summary(self, totals: dict[str, HdrHistogram] | None = None) -> dict:
        totals = self.hists.total if totals is None else totals
        return {t: summarize(h) for t, h in totals.items() if not is_dimension_tag(t)}

    def dimension_summary(self) -> dict:
        """summary.json's ``dimensions``: per slicing, per value, its rows, tags and tail attribution."""
        rows = {t: summarize(h) for t, h in self.hists.total.items() if is_dimension_tag(t)}
        return self.slices.summary(self.dimensions, rows)

    def by_dimension(self, totals: dict[str, HdrHistogram]) -> dict[str, dict[str, dict]]:
        """Slicing -> value -> its tick_to_trade so far (what the live view and Prometheus start from)."""
        out: dict[str, dict[str, dict]] = {}
        for tag, h in totals.items():
            base, values = parse_tag(tag)
            if values and base == TICK_TO_TRADE:
                out.setdefault(",".join(values), {})[",".join(values.values())] = summarize(h)
        return out

    def meta_update(self) -> dict:
        # the subject's stats read once: its counters and subject_stats agree, whenever it rewrites them
        stats = self.subject_stats()
        return {
            **self.schema.to_meta(),
            **({"dimensions": {d: list(v) for d, v in self.dimensions.items()}} if self.dimensions else {}),
            "counters": self.counter_dict(stats),
            "drop_free": self.counters.drop_free,
            "rings": self.ring_rows(),
            "released_writers": self.released.to_meta(),
            "writer_rows": self.writer_rows(),
            "ring_errors": self.ring_errors,
            "subject_stats": stats,
            "clocks": {
                "realtime_minus_monotonic_ns": self.realtime_offset,
                "realtime_offset_uncertainty_ns": self.realtime_uncertainty,
                "realtime": self.realtime.to_meta(),  # how it moved during the run
                "host_tsc": self.host_tsc,
                # False: some ring stamps with a TSC this host does not keep one clock (numbers flagged)
                "tsc_trusted": self.tsc_trusted(),
                # "host": every TSC ring on one clock, one rate; "per-ring": one map per ring, and why
                "tsc_domain": "host" if self.host_domain_ok else "per-ring",
                "tsc_domain_why": self.host_domain_why or None,
                "collector_reads_tsc": self._read_tsc is not None,
                "tsc_domains": [d.describe() for d in self.tsc_domains if d.ready or d.pairs_from],
                "late_horizon_s": self.correlator.late.horizon_ns / 1e9,
                "late_max_traces": self.correlator.late.max_entries,
                "notes": self.clock_notes,
            },
            "interval_s": self.interval_ns / 1e9,
            "expected_interval_ns": self.expected_interval_ns or None,
            "coordinated_omission": self.coordinated_omission(),
            "warmup_s": self.warmup_ns / 1e9,
            "start_monotonic_ns": self.start_ns,
            **({"incidents": self.incidents.to_meta()} if self.incidents is not None else {}),
        }

    def ring_rows(self) -> list[dict]:
        """A row per ring: the last few released (``released_writers`` counts every one) and then
        those still held, in the order they were attached."""
        return list(self.released.last) + [s.describe() for s in self.sources]

    def writer_rows(self) -> dict[str, int]:
        """How many rows per writer each structure holds now: bounded by the writers attached (plus
        a few released, see ``_fold_released``), never by the writers seen (meta.json, for a test
        and for whoever wonders where a daemon's memory goes)."""
        declared, tsc = self.correlator.rings_declared()
        return {"sources": len(self.sources), "parting": len(self._parting),
                "correlator_rings": declared, "correlator_tsc": tsc,
                "tsc_domains": len(self.tsc_domains), "identities": len(self._identities),
                "released_detail": len(self.released.last)}  # fmt: skip

    def tsc_trusted(self) -> bool | None:
        """None when no ring stamps in TSC; else whether the host says its TSC is invariant."""
        if not self._saw_tsc:
            return None
        return self.host_domain_ok

    def notes(self) -> list[str]:
        """What the user must know about how stamps were converted: one line each."""
        out = []
        if self.tsc_trusted() is False:
            out.append(f"this host's TSC is not one clock for all rings: {self.host_domain_why}; each ring's "
                       "TSC is mapped on its own, so stages between two rings' TSC stamps may be off by the "
                       "maps' drift, and all TSC-stamped stages are flagged in meta.json "
                       "(clocks.tsc_trusted = false)")  # fmt: skip
        host = self.host_clock.timeline
        if self.tsc_trusted() and host.rate_changes:
            out.append(f"the host TSC rate changed {host.rate_changes} time(s) mid-run (an early calibration "
                       f"pair was off by more than {RATE_TOLERANCE * 1e6:.0f} ppm); see meta.json clocks.tsc_domains")  # fmt: skip
        if self.tsc_trusted() and self._read_tsc is None:
            for src in self.sources:
                if src.stamps_tsc and src.calibration_quality() != "heartbeats":
                    out.append(f"ring {src.reader.writer_name} (pid {src.reader.writer_pid}): the collector cannot "
                               "read the TSC itself here and the writer never called tsp_heartbeat: cross-clock "
                               "stages rest on its open/close pairs alone")  # fmt: skip
        if (moved := self.realtime.note()) is not None:
            out.append(moved)
        out += self._released_notes
        if self._released_notes_left_out:
            out.append(f"{self._released_notes_left_out} earlier such lines about released writers left out "
                       "(their counts are in meta.json released_writers)")  # fmt: skip
        for src in self.sources:
            out += src.notes()
        return out

    def _save_state(self) -> None:
        self.session.meta.update(self.meta_update())
        self.session.save_meta()
        attribution = self._attribution_summary(fresh=True)
        self.session.write_summary(self.summary(), self._slowest.traces(), attribution,
                                   self.dimension_summary() if self.dimensions else None)  # fmt: skip

    def finish(self, status: str = "complete") -> None:
        """Drain to the end and close the session (for a run with nothing to join afterwards)."""
        self.drain_to_end()
        self.close(status)

    def drain_to_end(self) -> None:
        """Drain everything still in the rings, close all traces, write the last interval. The
        session stays open: joins that need every trace closed come next, then ``close``."""
        self.discover()
        self._next_pair_ns = 0  # one last pair of our own: the host fit spans the whole session
        published = self._published_heads()
        while self.poll() and not self._caught_up(published):
            pass
        pending = self.correlator.pending
        closed = self._close(monotonic_ns(), force=True)
        self.counters.traces_open_at_end = pending  # closed (and classified) by the session's end
        self._ingest(closed)
        self.clock_notes[:] = self.notes()
        self._roll(max(monotonic_ns(), self._interval_start + 1), final=True)
        self._live = self._build_snapshot(*self._live_parts)  # the last state, while the rings are there
        if self.incidents is not None:
            self.incidents.finish(monotonic_ns())

    def close(self, status: str = "complete") -> None:
        """The session's last meta.json, with ``status``, and the session closed (once)."""
        self._fold_released()
        if self.session is not None:
            self.session.meta["end_monotonic_ns"] = monotonic_ns()
            self._save_state()  # the last roll may have come within a second of the last save
            if self.session.segments is not None:
                self._cut_segment(final=True)
            self.session.close(status)

    def _published_heads(self) -> dict[int, int]:
        """Per ring still drained: the head as of now. A writer that keeps running (``tickscope
        live`` detaching) would otherwise keep the final drain going for as long as it writes."""
        heads = {}
        for src in self.sources:
            if src.finished:
                continue
            try:
                heads[src.index] = src.reader.counters().head
            except RingFormatError as e:
                self._quarantine(src, e)
        return heads

    def _caught_up(self, heads: dict[int, int]) -> bool:
        for s in self.sources:  # a ring that appeared meanwhile: up to the head its first drain saw
            heads.setdefault(s.index, s.reader.last.head)
        return all(s.finished or s.reader.tail >= heads[s.index] for s in self.sources)

    def remove_finished_rings(self) -> None:
        """Unlink rings whose writer is gone and which are fully drained (ours to clean up), and
        refused rings whose writer is gone (their records are accounted as refused)."""
        for r in self.refused:
            if not r.writer_alive():
                try:
                    r.path.unlink()
                except OSError:
                    pass
        for src in self.sources:
            r = src.reader
            if src.finished or (not r.writer_alive() and r.in_ring_seen == 0):
                try:
                    r.path.unlink()
                except OSError:
                    pass
