"""The run engine: one loop for ``profile`` (a subject we start) and ``live`` (rings of a pipeline
already running). Claim the session, start, poll, stop, conclude, close, in that order, once.

Everything around the collector plugs in through declared protocols and nothing else: the subject
(``collectors/run/subject.py``), side collectors and exporters (``collectors/side``), the view
(``View`` below). The drain never waits on any of them. The session is written by the collector
while the run lasts and closed exactly once, here, after every side collector's ``Conclusion``
(a capture's wire tags, an exporter's cost) went in through ``SessionWriter.add_tags``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tickscope.collectors.rings.collector import Collector, load_kernels, monotonic_ns
from tickscope.collectors.rings.incidents import IncidentPolicy
from tickscope.collectors.run.children import become_subreaper, child_pids, end_adopted
from tickscope.collectors.run.claim import ProfileError, claim_session_dir, private_ring_dir
from tickscope.collectors.run.signals import ending_like_ctrl_c, holding_interrupts, while_saving
from tickscope.collectors.run.subject import AttachedRings, Subject
from tickscope.collectors.run.wake import Wakeup
from tickscope.collectors.session import SessionError, SessionWriter, Snapshot
from tickscope.collectors.session.dimensions import DEFAULT_CAP
from tickscope.collectors.session.segments import SegmentPolicy
from tickscope.collectors.side import Conclusion, SideCollectorBase, SideError
from tickscope.probe.ring import COLLECTOR_PID_ENV, RING_DIR_ENV


class View(Protocol):
    # False: the view shows only the last interval's figures (``Collector.interval_snapshot``), and
    # the whole run's totals are not summarized for it
    whole_run: bool
    # How often it redraws between intervals (the live view's clock, its tables' ages); None: it
    # shows closed intervals only, and is updated as each closes (polls are not paced by it), at
    # most every UPDATE_GAP_S.
    refresh_s: float | None

    def start(self) -> None: ...

    def update(
        self, state: Snapshot, side: dict[str, dict], elapsed_s: float, duration_s: float | None
    ) -> None: ...

    def stop(self) -> None: ...


@dataclass
class RunPlan:
    name: str  # the session's name (and the default directory's suffix)
    start_subject: Callable[[dict], Subject] | None = None  # env -> Subject; None: attach to rings
    ring_dir: Path | None = None  # attach: where the rings are (a run of ours makes a private one)
    ring_paths: list[Path] | None = None  # attach: exactly these rings
    save: bool = True  # False: ``live`` without --out keeps no session
    out: Path | None = None
    force: bool = False  # replace the session already in ``out``
    meta: dict = field(default_factory=dict)
    duration_s: float | None = 30.0
    interval_s: float = 1.0
    warmup_s: float = 0.0
    expected_interval_ns: int = 0
    slowest: int = 20  # the N slowest traces whose stamps are kept (slowest.json)
    dimension_cap: int = DEFAULT_CAP  # values per slicing with their own histograms (the rest: other)
    slice_by: list[tuple[str, ...]] = field(
        default_factory=list
    )  # combinations sliced besides each dimension
    poll_s: float = 0.005  # first sleep between polls; then adapted to how fast the rings fill
    poll_max_s: float | None = None  # the longest sleep; None: $TICKSCOPE_POLL_MAX_S or POLL_MAX_S
    side: list[SideCollectorBase] = field(default_factory=list)
    view: View | None = None
    report: Callable[[str], None] | None = None  # ring problems as found; None: in the warnings
    segments: SegmentPolicy | None = None  # cut the session into segments (a long run)
    incidents: IncidentPolicy | None = None  # --incident: breaches written under incidents/
    say_writers: bool = False  # say each writer attached and released (``live --watch``: a daemon's log)


@dataclass
class RunResult:
    session_dir: Path | None
    exit_code: int
    subject_exit: int | None
    message: str | None = None
    state: Snapshot | None = None
    warnings: list[str] = field(default_factory=list)
    conclusions: dict[str, Conclusion] = field(default_factory=dict)  # per side collector, as written
    ring_errors: list[str] = field(default_factory=list)  # rings skipped or quarantined, with why


POLL_MAX_ENV = "TICKSCOPE_POLL_MAX_S"
# A near-idle collector at low rates: each poll costs numpy calls per tag and dimension value, so
# a slow ring is drained 4 times a second; the rings' capacities and peak rates bound it further
# (Collector.next_sleep), and a new ring or the subject's exit ends a sleep at once (wake.py).
# 0.02 (the ceiling before) is kept for side-by-side measurements. A ceiling of 1 s (with the
# trader's tick ring 2x larger, so that the rings' bound allowed ~2.8 polls a second) measured no
# gain: 3 interleaved pairs at 20 k msgs/s, 6.06 / 6.15 / 5.36 % of a core against 5.83 / 5.61 /
# 6.61 % (docs/performance.md).
POLL_MAX_S = 0.25


# No view is updated more often: a person reads it. A line per interval closed at 10 ms intervals
# was 100 lines a second, and filled a pipe nobody read until the end (the run then blocked).
UPDATE_GAP_S = 0.2


def poll_ceiling(plan: RunPlan) -> float:
    if plan.poll_max_s is not None:
        return plan.poll_max_s
    raw = os.environ.get(POLL_MAX_ENV)
    if raw is None:
        return POLL_MAX_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 10:
        raise ProfileError(f"{POLL_MAX_ENV}={raw!r} is not a poll ceiling (seconds above 0, at most 10: "
                           f"e.g. 0.02 for the ceiling before 0.25; or unset it)")  # fmt: skip
    return value


def run(plan: RunPlan) -> RunResult:
    """Claim, start, poll, stop, conclude, close. ``ProfileError``: the run could not begin."""
    plan = dataclasses.replace(plan, poll_max_s=poll_ceiling(plan))
    out = lock = None
    created = False
    if plan.save:  # never overwrite a session, never share one (see claim_session_dir)
        created = plan.out is None or not plan.out.exists()
        out, lock = claim_session_dir(plan.out, plan.name, plan.force)
    if plan.start_subject is not None:
        become_subreaper()  # what the target leaves behind is re-parented to us: see _Run.stop
    prepared: list[SideCollectorBase] = []
    # From here a stop signal ends the run as Ctrl-C does. One during the set-up (a Prometheus
    # endpoint may already serve, the collector's kernels load) is held until the run is set up,
    # which then stops at once, in order, and saves: never the default action's death.
    try:
        with ending_like_ctrl_c():
            interrupted = False
            try:
                with holding_interrupts():
                    try:
                        for s in plan.side:
                            s.prepare(out.name if out else plan.name)
                            prepared.append(s)
                    except SideError as e:
                        raise ProfileError(str(e)) from None
                    the_run = _Run(plan, out)
                    the_run.set_up()
            except KeyboardInterrupt:
                interrupted = True
            return the_run.execute(interrupted)
    except ProfileError:
        if created and out is not None and not any(out.iterdir()):
            out.rmdir()  # the run never began (e.g. the --prometheus port is taken): leave nothing
        raise
    finally:
        for s in prepared:
            s.release()
        if lock is not None:
            os.close(lock)


class _Run:
    def __init__(self, plan: RunPlan, out: Path | None):
        self.plan, self.out = plan, out
        self.owns_rings = plan.start_subject is not None
        self.warnings: list[str] = []
        self.started: list[SideCollectorBase] = []
        self.subject: Subject | None = None
        self.status, self.code, self.message = "complete", 0, None
        self.reported = 0  # ring problems already reported (attach)

    def set_up(self) -> None:
        """The ring directory, the session writer and the collector; rings attached. Nothing runs yet."""
        plan = self.plan
        if self.owns_rings:
            self.rings, self.warnings = private_ring_dir()
            self.children_before = child_pids()
        else:
            self.rings = plan.ring_dir
        load_kernels()  # before the session's time starts, which is the collector's (Collector)
        try:
            meta = {"name": self.out.name, **plan.meta} if self.out else None
            self.writer = SessionWriter(self.out, meta, plan.segments, self._say) if self.out else None
        except SessionError as e:
            self._remove_rings()
            raise ProfileError(str(e)) from None
        self.collector = Collector(self.rings, self.writer, interval_s=plan.interval_s, warmup_s=plan.warmup_s,
                                   expected_interval_ns=plan.expected_interval_ns, slowest=plan.slowest,
                                   ring_paths=plan.ring_paths, dimension_cap=plan.dimension_cap,
                                   slice_by=plan.slice_by, incidents=plan.incidents)  # fmt: skip
        if self.writer is not None and self.writer.segments is not None:
            self.writer.segments.closing.append(self._segment_closing)
        if not self.owns_rings:
            self._attach()

    def execute(self, interrupted: bool = False) -> RunResult:
        """Start, poll, stop, conclude, close (under ``ending_like_ctrl_c``); ``interrupted``: a stop
        signal came during the set-up."""
        try:
            # Serving since prepare(): in the run from its first instant, so concluded however it
            # ends (a stop signal before the others start, too), and started once.
            with holding_interrupts():
                for s in self.plan.side:
                    if s.open_from_prepare:
                        self._start_side(s, None)
            if interrupted:
                raise KeyboardInterrupt
            self._start_and_poll()
        except KeyboardInterrupt:
            self.status, self.code, self.message = "interrupted", 130, "interrupted: session saved up to now"
        finally:
            with while_saving():
                subject_exit = self._stop()
                conclusions = self._conclude_and_close()
        return RunResult(self.out, self.code, subject_exit, self.message, self.collector.snapshot,
                         self.warnings, conclusions, self.collector.ring_errors)  # fmt: skip

    # -- start ----------------------------------------------------------------------------------
    def _attach(self) -> None:
        """Rings of a pipeline already running: found now, each skipped one said as it is found."""
        c = self.collector
        c.discover()
        self.reported = len(c.ring_errors)
        for line in c.ring_errors:
            self._ring_problem(line)
        if self.plan.ring_paths is not None and not c.sources:
            c.finish("no-rings")
            raise ProfileError(
                f"none of the {len(self.plan.ring_paths)} named rings could be attached (reasons above)"
            )

    def _say(self, line: str) -> None:
        """A line the user must see as it happens (a segment retention removed)."""
        if self.plan.report is not None:
            self.plan.report(f"tickscope: {line}")
        else:
            print(f"tickscope: {line}", file=sys.stderr, flush=True)

    def _segment_closing(self, segment_dir: Path, start_s: float, end_s: float) -> None:
        for s in self.started:
            try:
                s.segment_closing(segment_dir, start_s, end_s)
            except Exception as e:  # a side collector never takes the session down
                self.warnings.append(f"{s.name}: failed to write its part of {segment_dir.name} ({e})")

    def _say_notices(self) -> None:
        """Writers attached and released (``live --watch``: a daemon's log of who came and went),
        and rings skipped mid-run: said as they happen, not days later at the end."""
        for line in self.collector.take_notices():
            if self.plan.say_writers:
                self._say(line)
        errors = self.collector.ring_errors
        for line in errors[self.reported :]:
            self._ring_problem(line)
        self.reported = len(errors)

    def _ring_problem(self, line: str) -> None:
        if self.plan.report is not None:
            self.plan.report(f"tickscope: {line}")

    def _start_side(self, s: SideCollectorBase, subject: Subject | None) -> None:
        try:
            s.bind(subject, self.collector)
            s.start(subject.pid if subject is not None else None, self.out)
            self.started.append(s)
        except Exception as e:  # a side collector must never take the session down
            self.warnings.append(f"{s.name}: failed to start ({e})")

    def _start_and_poll(self) -> None:
        plan, writer = self.plan, self.writer
        rest = [s for s in plan.side if not s.open_from_prepare]  # those are started (execute)
        for s in rest:
            if s.before_subject:  # e.g. a wire capture that must see the first packet
                self._start_side(s, None)
        if plan.start_subject is None:
            self.subject = AttachedRings()
        else:
            env = dict(os.environ)
            env[RING_DIR_ENV] = str(self.rings)
            env[COLLECTOR_PID_ENV] = str(os.getpid())  # writers leave their rings to us at exit
            try:
                self.subject = plan.start_subject(env)
            except ProfileError as e:
                self.status, self.code, self.message = "target-failed", 2, str(e)
                return
        if writer is not None:
            writer.meta["command"] = self.subject.description
            writer.meta["subject_pid"] = self.subject.pid
            writer.save_meta()
        for s in rest:
            if not s.before_subject:
                self._start_side(s, self.subject)
        if self.collector.incidents is not None:  # what the side collectors saw of each incident's window
            self.collector.incidents.views = [s.incident_view for s in self.started]
        if plan.view:
            plan.view.start()
        cpu0 = time.thread_time()  # this thread drains, correlates and ingests: the collector's cost
        try:
            self._poll()
        finally:
            cpu, drained = time.thread_time() - cpu0, self.collector.records_drained()
            if writer is not None:
                writer.meta["collector_cpu"] = {"seconds": round(cpu, 3),
                                                "ns_per_record": round(cpu * 1e9 / drained, 1) if drained else None}  # fmt: skip

    def _poll(self) -> None:
        """The one drain loop: until the subject ends, the duration is up, or Ctrl-C."""
        plan, collector, side, view = self.plan, self.collector, self.started, self.plan.view
        start = monotonic_ns()
        next_refresh = start
        sleep_s = plan.poll_s
        refresh_s = None if view is None else view.refresh_s  # a redrawing view paces the polls

        def latest() -> Snapshot:
            return collector.snapshot if view is None or view.whole_run else collector.interval_snapshot

        seen = latest()
        rings = Path(self.rings) if self.rings is not None and Path(self.rings).is_dir() else None
        wake = Wakeup(self.subject.pids(), rings)
        try:
            while True:
                with holding_interrupts():  # never inside a kernel's return (signals.holding_interrupts)
                    busy = collector.poll() >= collector.BATCH
                self._say_notices()
                for s in side:
                    s.after_poll(collector)
                sleep_s = collector.next_sleep(
                    sleep_s, ceiling_s=min(plan.poll_max_s, refresh_s or plan.poll_max_s)
                )
                now = monotonic_ns()
                elapsed = (now - start) / 1e9
                # (asked only of a view: a run nobody watches never builds a snapshot, Collector.snapshot)
                if view and now >= next_refresh and (refresh_s or latest() is not seen):
                    # the collector closed an interval: so do the side rows
                    if (state := latest()) is not seen:
                        seen = state
                        for s in side:
                            s.roll_live(seen.warmup)
                    panel = {s.name: _latest(s) for s in side if s.in_side_panel}
                    view.update(with_side_rows(state, side), panel, elapsed, plan.duration_s)
                    next_refresh = now + int((refresh_s or UPDATE_GAP_S) * 1e9)
                if self.subject.poll() is not None:
                    return
                if plan.duration_s is not None and elapsed >= plan.duration_s:
                    return
                if not busy and sleep_s:
                    if plan.duration_s is not None:  # the end of the run is not put off by a sleep
                        sleep_s = min(sleep_s, max(plan.duration_s - elapsed, 0.0))
                    wake.sleep(sleep_s)  # cut short by the subject's exit or a new ring (wake.py)
        finally:
            wake.close()

    # -- stop, conclude, close ------------------------------------------------------------------
    def _stop(self) -> int | None:
        subject = self.subject
        subject_exit = subject.stop() if subject is not None else None
        if self.plan.view:
            self.plan.view.stop()
        for s in self.started:
            try:
                self.warnings += s.stop()
            except Exception as e:
                self.warnings.append(f"{s.name}: failed to stop cleanly ({e})")
        if self.owns_rings:
            strays = end_adopted(
                self.children_before
            )  # every child we started is stopped: the rest were orphaned
            if strays:
                self.warnings.append(f"ended {strays} process{'es' if strays > 1 else ''} the target left running "
                                     "outside its process group")  # fmt: skip
        reason = subject.failure_reason() if subject is not None and self.code == 0 else None
        if reason:
            self.status, self.code, self.message = "target-failed", 2, reason
        if self.writer is not None:
            self.writer.meta["side_warnings"] = self.warnings  # the same list: what is added below goes too
            self.writer.meta["subject_exit"] = subject_exit
        return subject_exit

    def _conclude_and_close(self) -> dict[str, Conclusion]:
        collector, writer, subject = self.collector, self.writer, self.subject
        collector.drain_to_end()
        self._say_notices()
        if subject is not None and not collector.snapshot.tags:
            said = subject.last_words()  # read before the ring directory (and the pipeline's logs) goes
            if said and said not in (self.message or ""):
                self.warnings.append(f"nothing was traced; the pipeline's last line: {said}")
        conclusions = {}
        for s in self.started:
            try:
                c = s.conclude(collector)  # joins that need every trace closed (wire capture)
                if writer is not None:
                    c.summary = writer.add_tags(c.intervals)
                    if c.meta is not None:
                        writer.meta[s.name] = c.meta
                self.warnings += c.warnings
                conclusions[s.name] = c
            except Exception as e:
                self.warnings.append(f"{s.name}: failed to join with the traces ({e})")
        if self.owns_rings:
            collector.remove_finished_rings()
            self._remove_rings()
        collector.close(self.status)
        if collector.incidents is not None:
            self.warnings += collector.incidents.notes()
        if self.plan.report is not None:
            for line in collector.ring_errors[self.reported :]:
                self._ring_problem(line)
            self.warnings = self.warnings + collector.clock_notes
        else:
            self.warnings = self.warnings + collector.ring_errors + collector.clock_notes
        return conclusions

    def _remove_rings(self) -> None:
        if self.owns_rings:
            shutil.rmtree(self.rings, ignore_errors=True)


def with_side_rows(state: Snapshot, side) -> Snapshot:
    """The collector's state with the rows side collectors add to the stage table (a wire
    capture's ``wire_to_wire`` and residuals): a new state, the collector's own is not touched."""
    rows = [r for s in side if (r := s.live_rows()) is not None and r.tags]
    if not rows:
        return state
    return dataclasses.replace(
        state,
        side_tags=state.side_tags + [t for r in rows for t in r.tags],
        last={**state.last, **{t: v for r in rows for t, v in r.last.items()}},
        cumulative={**state.cumulative, **{t: v for r in rows for t, v in r.cumulative.items()}},
        rates={**state.rates, **{t: v for r in rows for t, v in r.rates.items()}},
    )


def _latest(s) -> dict:
    try:
        return s.latest()
    except Exception as e:
        return {"error": str(e)}
