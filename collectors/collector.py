"""The collector loop: rings -> one monotonic timeline -> traces -> HDR intervals -> session.

``Collector.poll()`` is one pass (discover rings, drain each, correlate, ingest, roll the
interval when due); the caller decides the cadence and what else runs between polls (the live
view, side collectors). ``finish()`` drains what is left and closes the session.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.probe import layout as L
from tickscope.probe.clock import fit_tsc, read_calibration, sample_realtime_offset, tsc_facts

from .correlate import TICK_TO_DECISION, TICK_TO_TRADE, Closed, Correlator, TraceSchema
from .hdr import BulkRecorder, add_into, corrected_values, new_histogram, reset, summarize
from .ring_reader import RingCounterError, RingFormatError, RingReader, find_rings
from .session import SessionCounters, SessionWriter
from .tsc_timeline import RATE_TOLERANCE, TscTimeline

CO_SUFFIX = "_co"  # tag suffix of coordinated-omission-corrected histograms


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


CALIB_SPACING_NS = 100_000_000  # pairs kept for the fit are at least this far apart (the newest always)
CALIB_RECENT = 8  # the newest pairs, kept unthinned
CALIB_HISTORY = 64  # so the fit spans up to ~6 s of the writer's recent pairs


@dataclass
class RingSource:
    """One ring being drained, with what it takes to put its stamps on the common timeline.

    TSC stamps stay raw ticks: the correlator measures a span between two ticks of this ring with
    the ring's rate alone, and moves a tick onto CLOCK_MONOTONIC through the ring's slewed map
    (``TscTimeline``) only for spans that cross clocks. Calibration follows the writer's pairs for the whole session: the
    header's pair counter is a sequence number, so every new pair is seen however many came.
    """

    index: int
    reader: RingReader
    columns: np.ndarray  # local point id -> schema column
    domains: np.ndarray  # local point id -> clock domain
    tsc: TscTimeline = field(default_factory=TscTimeline)
    calib_seen: int = 0  # calibration pairs read so far (the writer's sequence counter)
    calib_missed: int = 0  # pairs overwritten before a poll could read them
    calib_pairs: list = field(default_factory=list)  # TSC pairs kept for the fit (see CALIB_SPACING_NS)
    dead_since: int | None = None
    finished: bool = False
    malformed: int = 0
    quarantined: str | None = None  # why the ring's header stopped being trusted
    point_out_of_range: int = 0  # records naming a point id the ring's point table does not have

    @property
    def stamps_tsc(self) -> bool:
        return bool((self.domains == L.CLOCK_TSC).any())

    def refresh_calibration(self) -> None:
        count, pairs = read_calibration(self.reader.mm)
        if count <= self.calib_seen:
            return
        fresh = [(seq, p) for seq, p in pairs if seq >= self.calib_seen]
        self.calib_missed += (fresh[0][0] if fresh else count) - self.calib_seen
        self.calib_seen = count
        for _, pair in fresh:
            if not pair[0] or not pair[1]:
                continue  # a Python writer's pair (no TSC) or an empty slot
            kept = self.calib_pairs
            # The newest CALIB_RECENT pairs all stay (enough of them for the fit to tell an outlier);
            # older ones are thinned to CALIB_SPACING_NS apart, which keeps a long baseline.
            if (
                len(kept) > CALIB_RECENT
                and kept[-CALIB_RECENT][1] - kept[-CALIB_RECENT - 1][1] < CALIB_SPACING_NS
            ):
                del kept[-CALIB_RECENT]
            kept.append(pair)
            del kept[:-CALIB_HISTORY]
        fit = fit_tsc(self.calib_pairs)
        if fit is not None:
            self.tsc.update(fit, count - 1)

    def convert(self, ts: np.ndarray, domain: int, realtime_offset: int) -> np.ndarray:
        """Raw stamps (u64) of one domain -> int64: CLOCK_MONOTONIC ns, or for TSC the raw ticks
        themselves (the correlator measures in-ring spans from ticks, see ``TscTimeline``); 0
        stays 0 (absent)."""
        raw = ts.astype(np.int64)
        if domain == L.CLOCK_MONOTONIC:
            return raw
        absent = raw == 0
        if domain == L.CLOCK_TSC:
            if not self.tsc.ready:
                raise RingFormatError(f"ring {self.reader.path}: TSC stamps but no usable calibration pairs")
            self.tsc.observe(raw[~absent] if absent.any() else raw)
            return raw
        out = raw - realtime_offset
        out[absent] = 0
        return out

    def describe(self) -> dict:
        r = self.reader
        d = {
            "path": str(r.path), "writer": r.writer_name, "pid": r.writer_pid, "tid": r.writer_tid,
            "kind": L.KIND_NAMES[r.kind], "capacity": r.capacity, "points": [p.name for p in r.points],
            "clocks": sorted({L.CLOCK_NAMES[p.clock] for p in r.points}),
            "produced": r.last.produced, "drained": r.drained, "dropped_ring_full": r.last.dropped,
            "in_ring": r.in_ring_seen, "drained_before_attach": r.drained_before_attach,
            "malformed": self.malformed, "point_out_of_range": self.point_out_of_range,
            "closed_cleanly": r.writer_closed,
            "peak_backlog": r.peak_demand, "capacity_needed": capacity_needed(r),
        }  # fmt: skip
        if self.quarantined:
            d["quarantined"] = self.quarantined
        t = self.tsc
        if t.ready:
            d["tsc_hz"] = round(t.fit.hz, 1)
            d["tsc_fit_residual_ns"] = round(t.fit.residual_ns, 2)
            d["tsc_pairs"] = t.fit.pairs
            d["tsc"] = {
                "calibration": self.calibration_quality(),
                "pairs_written": self.calib_seen, "pairs_missed": self.calib_missed,
                "local_hz": [round(1e9 / s, 3) for s in t.local.slopes],  # the rate in-ring spans use
                "local_rate_changes": t.rate_changes,
                "largest_step_ns": t.largest_step_ns,  # largest fit disagreement slewed away
                "fits_total": t.fits_total, "fits": t.fits,
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
        if self.stamps_tsc and t.ready:
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
                out.append(f"{who}: in-ring TSC rate changed {t.rate_changes} time(s) (an opening calibration pair "
                           f"was off by more than {RATE_TOLERANCE * 1e6:.0f} ppm); see meta.json rings[].tsc.fits")  # fmt: skip
        return out


def capacity_needed(reader: RingReader) -> int | None:
    """For a ring that dropped records: the power of two that would have held its peak backlog
    (records waiting plus records dropped between two drains), at least twice the capacity."""
    if not reader.last.dropped:
        return None
    return 1 << (max(reader.peak_demand, 2 * reader.capacity) - 1).bit_length()


CREATION_GRACE_S = 1.0  # a writer sizes the file and publishes the magic within microseconds


def _being_created(path: Path, error: RingFormatError) -> bool:
    """A ring file without its magic yet, or not yet sized, that was touched a moment ago."""
    if "bad magic 0x0000000000000000" not in str(error) and "truncated header" not in str(error):
        return False
    try:
        return time.time() - path.lstat().st_mtime < CREATION_GRACE_S
    except OSError:
        return False


class HistogramSet:
    """Per tag: the interval in progress and the cumulative total (warm-up kept apart)."""

    def __init__(self):
        self.interval: dict[str, HdrHistogram] = {}
        self.total: dict[str, HdrHistogram] = {}
        self.warmup_total: dict[str, HdrHistogram] = {}
        self._recorder = BulkRecorder(new_histogram())
        self.out_of_range = 0

    def record(self, tag: str, values: np.ndarray) -> None:
        if values.size == 0:
            return
        h = self.interval.get(tag)
        if h is None:
            h = self.interval[tag] = new_histogram()
        self.out_of_range += self._recorder.record(h, values)

    def roll(self, warmup: bool) -> dict[str, HdrHistogram]:
        """Close the interval: fold it into the totals, return copies of the finished histograms."""
        finished = {}
        totals = self.warmup_total if warmup else self.total
        for tag, h in self.interval.items():
            if not h.total_count:
                continue
            snap = new_histogram()
            add_into(snap, h)
            finished[tag] = snap
            add_into(totals.setdefault(tag, new_histogram()), h)
            reset(h)
        return finished


@dataclass
class LiveState:
    """What the live view shows; replaced (not mutated) once per interval, so readers need no lock."""

    elapsed_s: float = 0.0
    warmup: bool = False
    tags: list[str] = field(default_factory=list)
    side_tags: list[str] = field(default_factory=list)  # rows from outside the rings (a wire capture)
    trade_stages: list[str] = field(default_factory=list)
    last: dict[str, dict] = field(default_factory=dict)  # tag -> summary of the last interval
    cumulative: dict[str, dict] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # tag -> values per second, last interval
    p99_history: dict[str, list[int]] = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    rings: int = 0
    ring_details: list[dict] = field(default_factory=list)  # RingSource.describe() per ring
    ring_errors: list[str] = field(default_factory=list)  # rings skipped or quarantined, with why


class Collector:
    def __init__(self, ring_dir: str | Path, session: SessionWriter | None = None, *,
                 interval_s: float = 1.0, warmup_s: float = 0.0, linger_s: float = 0.25,
                 slowest: int = 20, history: int = 120, expected_interval_ns: int = 0,
                 ring_paths: list[Path] | None = None, host_tsc: dict | None = None):  # fmt: skip
        self.ring_dir = Path(ring_dir)
        # Named rings: attach to exactly these, never to their neighbours in the directory.
        self.ring_paths = [Path(p) for p in ring_paths] if ring_paths is not None else None
        self.host_tsc = host_tsc if host_tsc is not None else tsc_facts()
        self.clock_notes: list[str] = []  # filled by finish(): one line each, also in meta.json
        self.session = session
        self.interval_ns = round(interval_s * 1e9)
        self.warmup_ns = round(warmup_s * 1e9)
        self.schema = TraceSchema()
        self.correlator = Correlator(self.schema, linger_ns=round(linger_s * 1e9), slowest=slowest)
        self.hists = HistogramSet()
        self.counters = SessionCounters()
        self.sources: list[RingSource] = []
        self._known: set[Path] = set()
        self.ring_errors: list[str] = []
        self.start_ns = monotonic_ns()
        self.start_epoch_s = time.time()
        self.realtime_offset, self.realtime_uncertainty = sample_realtime_offset()
        self._interval_start = self.start_ns
        self._slowest: list[tuple[int, dict]] = []
        self.slowest_n = slowest
        # Known interval between ticks (constant-rate load): also record CO-corrected totals.
        self.expected_interval_ns = expected_interval_ns
        self._history = history
        self.live = LiveState()
        self._p99 = {}
        self._subject_stats: dict = {}
        # point name -> [(trace ids, stamps)] of every trace, kept for joins after the run (a wire
        # capture joins md.rx and order.tx, see collectors/capture.py); empty: nothing is kept.
        self.keep_points: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    # -- discovery -----------------------------------------------------------------------------
    def discover(self) -> None:
        # Rings are merged into the pipeline order in creation order, not file-name order: a
        # process creates its tick ring before the ring of later points (trader-orders.*.ring
        # sorts before trader.*.ring, and merging it first would put order.tx before md.rx).
        found = []
        named = self.ring_paths is not None
        for path in self.ring_paths if named else find_rings(self.ring_dir):
            if path in self._known:
                continue
            try:
                reader = RingReader(path)
            except RingFormatError as e:
                # A ring still being created has no magic yet: retry next poll, report only if it stays bad.
                if not named and _being_created(path, e):
                    continue
                self._known.add(path)
                self.ring_errors.append(f"skipped {e}")
                continue
            self._known.add(path)
            found.append(reader)
        for reader in sorted(found, key=lambda r: r.created_monotonic_ns):
            cols = np.array(self.schema.merge(reader.points), dtype=np.int64)
            src = RingSource(len(self.sources), reader, cols, np.array([p.clock for p in reader.points]))
            self.correlator.declare_ring(src.index, cols, tick=reader.kind != L.KIND_POINT,
                                         tsc=src.domains == L.CLOCK_TSC, timeline=src.tsc)  # fmt: skip
            self.sources.append(src)
            if reader.counter_error is not None:
                self._quarantine(src, reader.counter_error)
                continue
            try:
                src.refresh_calibration()
            except RingFormatError as e:
                self._quarantine(src, e)

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

    # -- one pass --------------------------------------------------------------------------------
    BATCH = 1 << 16  # records per ring per round: bounds the open traces re-sorted per batch
    fill = 0.0  # the largest fraction of a ring's capacity the last poll drained

    def next_sleep(self, current_s: float, floor_s: float = 0.001, ceiling_s: float = 0.02) -> float:
        """How long to sleep before the next poll. Each poll has a fixed cost (~0.5 ms of numpy
        calls), so poll rarely when the rings fill slowly, never letting one pass a quarter full:
        no sleep above 1/4, back off to ``ceiling_s`` below 1/20."""
        if self.fill >= 0.25:
            return 0.0
        if self.fill >= 0.05:
            return max(floor_s, current_s / 2)
        return min(ceiling_s, max(floor_s, current_s * 2))

    def poll(self, now_ns: int | None = None) -> int:
        """One drain round: discover rings, drain up to one batch from each, correlate, and roll
        the interval if due. Returns the records drained (a full batch: poll again, no sleep)."""
        self.discover()
        self.correlator.advance()
        drained = 0
        self.fill = 0.0
        for src in self.sources:
            if not src.finished:
                try:
                    n = self._drain(src)
                except RingFormatError as e:
                    self._quarantine(src, e)
                    continue
                drained += n
                self.fill = max(self.fill, n / src.reader.capacity)
        now = monotonic_ns() if now_ns is None else now_ns
        self._ingest(self.correlator.flush(now))
        while now - self._interval_start >= self.interval_ns:
            self._roll(self._interval_start + self.interval_ns)
        return drained

    def _drain(self, src: RingSource) -> int:
        reader = src.reader
        alive = reader.writer_alive()  # asked before draining: a writer dying meanwhile leaves more
        src.refresh_calibration()  # before draining: the records drained are converted with every pair written before them
        batch = reader.drain(self.BATCH)
        if batch.size:
            self._correlate(src, batch)
        elif not alive and reader.in_ring_seen == 0:
            src.finished = True
            if not reader.writer_closed:
                self.counters.writers_died += 1
        return int(batch.size)

    def _correlate(self, src: RingSource, batch: np.ndarray) -> None:
        reader = src.reader
        if reader.kind == L.KIND_POINT:
            known = batch["point"] < reader.n_points
            ok = known & (batch["ts"] != 0)
            bad = int(batch.size - np.count_nonzero(ok))
            if bad:
                src.malformed += bad
                src.point_out_of_range += int(batch.size - np.count_nonzero(known))
                batch = batch[ok]
            local = batch["point"].astype(np.int64)
            ts = np.empty(batch.size, np.int64)
            for domain in np.unique(src.domains[local]) if batch.size else ():
                sel = src.domains[local] == domain
                ts[sel] = src.convert(batch["ts"][sel], int(domain), self.realtime_offset)
            self.correlator.add_points(batch["trace"], src.columns[local], ts, src.index, monotonic_ns())
            if self.keep_points:
                cols, tsc = src.columns[local], src.domains[local] == L.CLOCK_TSC
                self._keep(batch["trace"], lambda c, cols=cols, tsc=tsc: (cols == c) & ~tsc, ts)
        else:
            raw = batch["ts"]
            n = len(self.schema.names)
            rows = np.zeros((batch.size, n), np.int64)
            srcs = np.zeros((batch.size, n), np.int16)
            for j in range(reader.n_points):
                col = rows[:, src.columns[j]] = src.convert(
                    raw[:, j], int(src.domains[j]), self.realtime_offset
                )
                srcs[:, src.columns[j]] = np.where(col != 0, src.index + 1, 0)
            empty = ~rows.any(axis=1)
            if empty.any():  # a committed tick with no stamp at all carries nothing to measure
                src.malformed += int(empty.sum())
                keep = ~empty
                batch, rows, srcs = batch[keep], rows[keep], srcs[keep]
            self.correlator.add_rows(batch["trace"], rows, srcs, monotonic_ns())
            for j in range(reader.n_points) if self.keep_points else ():
                if src.domains[j] != L.CLOCK_TSC:  # raw ticks are not ns on the capture's clock
                    col = int(src.columns[j])
                    self._keep(batch["trace"], lambda c, col=col: c == col, rows[:, col])

    def _keep(self, trace: np.ndarray, in_column, ts: np.ndarray) -> None:
        for name, parts in self.keep_points.items():
            if name in self.schema.names:
                sel = in_column(self.schema.names.index(name)) & (ts != 0)
                if np.any(sel):
                    parts.append((trace[sel].astype(np.int64), ts[sel]))

    def _ingest(self, closed: Closed) -> None:
        for tag, values in closed.values.items():
            self.hists.record(tag, values)
        if self.expected_interval_ns:
            for tag in (TICK_TO_TRADE, TICK_TO_DECISION):
                corrected = corrected_values(
                    closed.values.get(tag, np.empty(0, np.int64)), self.expected_interval_ns
                )
                self.hists.record(tag + CO_SUFFIX, corrected)
        c = self.counters
        c.traces_complete += closed.complete
        c.traces_incomplete += closed.incomplete
        c.traces_clock_skew += closed.clock_skew
        if closed.slow_ids is not None:
            self._keep_slowest(closed)

    def _keep_slowest(self, closed: Closed) -> None:
        names = self.schema.order_names
        for ids, row, srow, key in zip(
            closed.slow_ids, closed.slow_rows, closed.slow_src, closed.slow_key, strict=True
        ):
            if len(self._slowest) >= self.slowest_n and key <= self._slowest[-1][0]:
                continue
            stamps = []
            for name, ts, s in zip(names, row, srow, strict=False):
                if ts:
                    r = self.sources[int(s) - 1].reader if s else None
                    stamps.append({
                        "point": name, "ts_ns": int(ts), "t_rel_ns": int(ts - self.start_ns),
                        "writer": r.writer_name if r else None, "pid": r.writer_pid if r else None,
                        "tid": r.writer_tid if r else None,
                    })  # fmt: skip
            self._slowest.append(
                (int(key), {"trace_id": int(ids), "tick_to_trade_ns": int(key), "stamps": stamps})
            )
            self._slowest.sort(key=lambda kv: -kv[0])
            del self._slowest[self.slowest_n :]

    # -- intervals -------------------------------------------------------------------------------
    def _roll(self, end_ns: int) -> None:
        start_s = (self._interval_start - self.start_ns) / 1e9
        end_s = (end_ns - self.start_ns) / 1e9
        warmup = self._interval_start - self.start_ns < self.warmup_ns
        finished = self.hists.roll(warmup)
        if self.session is not None:
            self.session.write_interval(finished, start_s, end_s, warmup)
        self._interval_start = end_ns
        self._publish_live(finished, end_s, warmup)
        if self.session is not None:
            self._save_state()

    def tags(self) -> list[str]:
        known = set(self.hists.total) | set(self.hists.warmup_total) | set(self.hists.interval)
        ordered = self.schema.stages + [TICK_TO_TRADE, TICK_TO_DECISION, TICK_TO_TRADE + CO_SUFFIX,
                                         TICK_TO_DECISION + CO_SUFFIX]  # fmt: skip
        return [t for t in dict.fromkeys(ordered) if t in known]

    def trade_stages(self) -> list[str]:
        return self.schema.stages[: self.schema.trade_index]

    def _publish_live(self, finished: dict[str, HdrHistogram], end_s: float, warmup: bool) -> None:
        secs = self.interval_ns / 1e9
        last = {t: summarize(h) for t, h in finished.items()}
        for t, s in last.items():
            hist = self._p99.setdefault(t, deque(maxlen=self._history))
            hist.append(s.get("p99", 0))
        for t in self._p99:
            if t not in last:
                self._p99[t].append(0)
        totals = self.hists.total if self.hists.total else self.hists.warmup_total
        self.live = LiveState(
            elapsed_s=end_s,
            warmup=warmup,
            tags=self.tags(),
            trade_stages=self.trade_stages(),
            last=last,
            cumulative={t: summarize(h) for t, h in totals.items()},
            rates={t: s["count"] / secs for t, s in last.items()},
            p99_history={t: list(d) for t, d in self._p99.items()},
            counters=self.counter_dict(),
            rings=len(self.sources),
            ring_details=[s.describe() for s in self.sources],
            ring_errors=list(self.ring_errors),
        )

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

    def counter_dict(self) -> dict:
        c = self.counters
        stats = self.subject_stats()
        for key in ("feed_gaps", "orders_sent", "orders_acked", "orders_rejected", "orders_gap_filled",
                    "orders_in_flight_at_end", "order_stalls"):  # fmt: skip
            c.extra[key] = sum(int(v.get(key, 0) or 0) for v in stats.values())
        c.extra["risk_rejects"] = sum(sum((v.get("risk_rejects") or {}).values()) for v in stats.values())
        for src in self.sources:
            if not src.finished:
                try:
                    src.reader.counters()  # one fresh, checked reading per ring: the terms add up
                except RingFormatError as e:
                    self._quarantine(src, e)
        readers = [s.reader for s in self.sources]
        c.produced = sum(r.last.produced for r in readers)
        c.drained = sum(r.drained for r in readers)
        c.dropped_ring_full = sum(r.last.dropped for r in readers)
        c.in_ring = sum(r.in_ring_seen for r in readers)
        c.drained_before_attach = sum(r.drained_before_attach for r in readers)
        c.malformed = sum(s.malformed for s in self.sources)
        c.duplicate_stamps = self.correlator.duplicate_stamps
        c.traces_evicted = self.correlator.evicted
        c.values_out_of_range = self.hists.out_of_range
        c.extra["late_points"] = self.correlator.late_points
        c.extra["late_beyond_horizon"] = self.correlator.late_beyond_horizon
        d = c.as_dict()
        d["traces_pending"] = self.correlator.pending
        d["ring_errors"] = len(self.ring_errors)
        return d

    def summary(self) -> dict:
        return {t: summarize(h) for t, h in self.hists.total.items()}

    def meta_update(self) -> dict:
        return {
            **self.schema.to_meta(),
            "counters": self.counter_dict(),
            "drop_free": self.counters.drop_free,
            "rings": [s.describe() for s in self.sources],
            "ring_errors": self.ring_errors,
            "subject_stats": self.subject_stats(),
            "clocks": {
                "realtime_minus_monotonic_ns": self.realtime_offset,
                "realtime_offset_uncertainty_ns": self.realtime_uncertainty,
                "host_tsc": self.host_tsc,
                # False: some ring stamps with a TSC this host does not keep invariant (numbers flagged)
                "tsc_trusted": self.tsc_trusted(),
                "late_horizon_s": self.correlator.late.horizon_ns / 1e9,
                "late_max_traces": self.correlator.late.max_entries,
                "notes": self.clock_notes,
            },
            "interval_s": self.interval_ns / 1e9,
            "expected_interval_ns": self.expected_interval_ns or None,
            "warmup_s": self.warmup_ns / 1e9,
            "start_monotonic_ns": self.start_ns,
        }

    def tsc_trusted(self) -> bool | None:
        """None when no ring stamps in TSC; else whether the host says its TSC is invariant."""
        if not any(s.stamps_tsc for s in self.sources):
            return None
        return bool(self.host_tsc.get("invariant"))

    def notes(self) -> list[str]:
        """What the user must know about how stamps were converted: one line each."""
        out = []
        if self.tsc_trusted() is False:
            missing = [f for f in ("constant_tsc", "nonstop_tsc") if not self.host_tsc.get(f)]
            out.append(f"this host's TSC is not invariant ({' and '.join(missing) or 'constant_tsc/nonstop_tsc'} "
                       "missing from /proc/cpuinfo flags): TSC-stamped stages may be wrong and are flagged "
                       "in meta.json (clocks.tsc_trusted = false)")  # fmt: skip
        for src in self.sources:
            out += src.notes()
        return out

    def _save_state(self) -> None:
        self.session.meta.update(self.meta_update())
        self.session.save_meta()
        self.session.write_summary(self.summary(), [s for _, s in self._slowest])

    def finish(self, status: str = "complete") -> None:
        """Drain everything still in the rings, close all traces, write the last interval."""
        self.discover()
        published = self._published_heads()
        while self.poll() and not self._caught_up(published):
            pass
        pending = self.correlator.pending
        closed = self.correlator.flush(monotonic_ns(), force=True)
        self.counters.traces_open_at_end = pending  # closed (and classified) by the session's end
        self._ingest(closed)
        self.clock_notes[:] = self.notes()
        self._roll(max(monotonic_ns(), self._interval_start + 1))
        if self.session is not None:
            self.session.meta["end_monotonic_ns"] = monotonic_ns()
            self._save_state()
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
        """Unlink rings whose writer is gone and which are fully drained (ours to clean up)."""
        for src in self.sources:
            r = src.reader
            if src.finished or (not r.writer_alive() and r.in_ring_seen == 0):
                try:
                    r.path.unlink()
                except OSError:
                    pass
