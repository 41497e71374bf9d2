"""A profile session: start the subject, drain its rings until it exits or time is up, save.

The subject is any command that writes probes into ``$TICKSCOPE_RING_DIR`` (set here to a fresh
private directory), or the bundled reference pipeline. Views (live TUI, plain progress lines) and
side collectors (perf, py-spy, hiccup) plug in through small protocols and never block the drain.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.collectors.run.children import (
    become_subreaper,
    child_pids,
    end_adopted,
    exit_description,
    pid_alive,
    spawn_child,
    stop_child,
)
from tickscope.collectors.session import (
    HICCUP_LOG,
    LATENCY_LOG,
    META,
    PERF_CSV,
    PROFILE,
    SLOWEST,
    SUMMARY,
    WARMUP_LOG,
    SessionError,
    SessionWriter,
    Snapshot,
)
from tickscope.collectors.side.capture import CAPTURE_FILE
from tickscope.collectors.side.prometheus import ExporterError, start_exporter
from tickscope.probe.ring import COLLECTOR_PID_ENV, RING_DIR_ENV

# What a session consists of: removed from an --out that is replaced with --force, nothing else
# (a capture left there would sit in the new session as if it were its own).
SESSION_FILES = {META, LATENCY_LOG, WARMUP_LOG, SUMMARY, SLOWEST, PERF_CSV, PROFILE, HICCUP_LOG, CAPTURE_FILE}


class ProfileError(Exception):
    """A user-facing failure of a profile run: one line, exit code 2."""


class Subject(Protocol):
    pid: int
    description: str
    stopped_by_us: bool

    def poll(self) -> int | None: ...

    def stop(self, timeout_s: float = 5.0) -> int | None: ...

    def failure_reason(self) -> str | None:
        """Why the subject failed when it ended on its own (None: it did not fail)."""


class View(Protocol):
    def start(self) -> None: ...

    def update(
        self, state: Snapshot, side: dict[str, dict], elapsed_s: float, duration_s: float | None
    ) -> None: ...

    def stop(self) -> None: ...


class SideCollector(Protocol):
    name: str
    warnings: list[str]

    def start(self, pid: int | None, session_dir: Path) -> None: ...

    def latest(self) -> dict: ...

    def stop(self) -> list[str]: ...


class CommandSubject:
    """Any command, as a child tickscope owns (``children``): its own process group, so stopping it
    stops its children too; it dies with tickscope. Stopped with SIGINT first, like Ctrl-C, which
    is what programs are written to handle (restored to its default action in the child)."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.description = shlex.join(argv)
        exe = argv[0]
        if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            raise ProfileError(f"target command not found: {exe!r} (check the spelling or PATH)")
        try:
            self.proc = spawn_child(argv, env=env)
        except OSError as e:
            raise ProfileError(f"cannot start target {exe!r}: {e.strerror or e}") from None
        self.pid = self.proc.pid
        self.stopped_by_us = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, timeout_s: float = 5.0) -> int | None:
        self.stopped_by_us = self.proc.poll() is None
        return stop_child(self.proc, signal.SIGINT, timeout_s)  # its group too, though it has exited

    def failure_reason(self) -> str | None:
        code = self.proc.poll()
        if self.stopped_by_us or code in (None, 0):
            return None
        return f"target {self.description!r} {exit_description(code)}"


@dataclass
class ProfileOptions:
    command: list[str] | None = None
    duration_s: float | None = 30.0
    warmup_s: float = 0.0
    interval_s: float = 1.0
    out: Path | None = None
    force: bool = False  # replace the session already in ``out``
    name: str = "session"
    poll_s: float = 0.005  # first sleep between polls; then adapted to how fast the rings fill
    poll_max_s: float = 0.02
    refresh_s: float = 0.2
    expected_interval_ns: int = 0
    extra_meta: dict = field(default_factory=dict)
    prometheus: str | None = None  # [HOST:]PORT of a /metrics endpoint (collectors/side/prometheus.py)
    prometheus_linger_s: float = 5.0
    prometheus_hold_s: float = 0.0


@dataclass
class ProfileResult:
    session_dir: Path
    exit_code: int
    subject_exit: int | None
    message: str | None = None
    state: Snapshot | None = None
    warnings: list[str] = field(default_factory=list)


SESSIONS_DIR = Path("sessions")
RING_DIR_PREFIX = "tickscope-rings-"


def default_session_dir(name: str) -> Path:
    """``sessions/<time>-<name>``, created here: mkdir is exclusive, so a second run started in the
    same second gets ``-2`` (then ``-3``...) instead of writing into the first one's session."""
    base = SESSIONS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    try:
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise ProfileError(f"cannot write session directory {base}: {e.strerror or e}") from None
    raise ProfileError(f"cannot find a free session directory name next to {base}: use --out DIR")


def claim_session_dir(out: Path | None, name: str, force: bool = False) -> tuple[Path, int]:
    """The directory this run writes its session into, and a descriptor holding its lock.

    The lock (``flock`` on the directory, released by the kernel however the run ends) makes a
    second run onto the same ``--out`` refuse instead of interleaving its files with the first.
    An ``--out`` that already holds anything is refused unless ``force``; then the files of the
    old session (and only those) are removed, so nothing of it mixes into the new one.
    """
    path = default_session_dir(name) if out is None else out
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise ProfileError(f"cannot write session directory {path}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProfileError(
                f"session directory {path} is being written by another tickscope run: choose another --out"
            ) from None
        existing = sorted(os.listdir(path))
        if existing and not force:
            raise ProfileError(f"{path} {_holds(path, existing)}: not overwriting it "
                               "(use --force to replace it, or choose another --out)")  # fmt: skip
        for f in existing:
            if f.removesuffix(".tmp") in SESSION_FILES:
                (path / f).unlink(missing_ok=True)
    except BaseException:
        os.close(fd)
        raise
    return path, fd


def _holds(path: Path, existing: list[str]) -> str:
    if META not in existing:
        return "is not empty"
    try:
        status = json.loads((path / META).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    return (
        f"already holds a session (status {status})" if isinstance(status, str) else "already holds a session"
    )


def private_ring_dir(base: Path | None = None) -> tuple[Path, list[str]]:
    """A fresh ring directory for this run, named after our pid, so that a later run can tell
    the directories of runs that were killed (``kill -9`` runs no cleanup) and remove them.
    Returns it with a note for each such removal."""
    if base is None:
        base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    removed = remove_stale_ring_dirs(base)
    notes = [f"removed {len(removed)} ring director{'y' if len(removed) == 1 else 'ies'} left by a killed "
             f"tickscope run ({', '.join(str(p) for p in removed)})"] if removed else []  # fmt: skip
    return Path(tempfile.mkdtemp(prefix=f"{RING_DIR_PREFIX}{os.getpid()}-", dir=base)), notes


def remove_stale_ring_dirs(base: Path) -> list[Path]:
    """Remove this user's run ring directories whose owning tickscope is gone. Directories of
    other users, symlinks, live owners and names without an owner pid are left alone."""
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        owner = entry.name[len(RING_DIR_PREFIX) :].split("-", 1)[0]
        if not entry.name.startswith(RING_DIR_PREFIX) or not owner.isdigit():
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or pid_alive(int(owner)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def run_profile(opts: ProfileOptions, start_subject, *, view: View | None = None,
                side: list[SideCollector] = (), meta: dict | None = None) -> ProfileResult:  # fmt: skip
    """Run one session. ``start_subject(env) -> Subject`` launches the target with the ring dir set."""
    created = opts.out is None or not opts.out.exists()
    out, lock = claim_session_dir(opts.out, opts.name, opts.force)
    become_subreaper()  # what the target leaves behind is re-parented to us: see _run_claimed's end
    try:
        return _run_claimed(out, opts, start_subject, view, side, meta)
    except ProfileError:
        if created and not any(out.iterdir()):
            out.rmdir()  # the run never began (e.g. the --prometheus port is taken): leave nothing
        raise
    finally:
        os.close(lock)


def _run_claimed(out: Path, opts: ProfileOptions, start_subject, view, side, meta) -> ProfileResult:
    rings, warnings = private_ring_dir()
    children_before = child_pids()
    env = dict(os.environ)
    env[RING_DIR_ENV] = str(rings)
    env[COLLECTOR_PID_ENV] = str(os.getpid())  # writers leave their rings to us at exit
    exporter = None
    try:
        exporter = start_exporter(opts.prometheus, out.name) if opts.prometheus else None
        writer = SessionWriter(out, {"name": out.name, **(meta or {}), **opts.extra_meta})
    except (SessionError, ExporterError) as e:
        shutil.rmtree(rings, ignore_errors=True)
        if exporter is not None:
            exporter.close()
        raise ProfileError(str(e)) from None
    collector = Collector(rings, writer, interval_s=opts.interval_s, warmup_s=opts.warmup_s,
                          expected_interval_ns=opts.expected_interval_ns)  # fmt: skip
    status, subject, code, message = "complete", None, 0, None
    side_started: list[SideCollector] = []
    # A closed terminal (SIGHUP) or a polite kill (SIGTERM) ends the session like Ctrl-C does:
    # the target is stopped in order and the session is saved. (Only SIGKILL skips this; the
    # children then die with us, see ``children``, and the next run removes our ring directory.)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for s in side:
            if getattr(s, "before_subject", False):  # e.g. a wire capture that must see the first packet
                try:
                    s.bind(None, collector)
                    s.start(None, out)
                    side_started.append(s)
                except Exception as e:  # a side collector must never take the session down
                    warnings.append(f"{s.name}: failed to start ({e})")
        try:
            subject = start_subject(env)
        except ProfileError as e:
            status, code, message = "target-failed", 2, str(e)
            return ProfileResult(out, code, None, message, warnings=warnings)
        writer.meta["command"] = subject.description
        writer.meta["subject_pid"] = subject.pid
        writer.save_meta()
        for s in side:
            if getattr(s, "before_subject", False):
                continue
            try:
                if hasattr(s, "bind"):  # needs the subject's ports and the collector (wire capture)
                    s.bind(subject, collector)
                s.start(subject.pid, out)
                side_started.append(s)
            except Exception as e:  # a side collector must never take the session down
                warnings.append(f"{s.name}: failed to start ({e})")
        if view:
            view.start()
        cpu0 = time.thread_time()  # this thread drains, correlates and ingests: the collector's cost
        try:
            code, message, status = _collect(opts, collector, subject, view, side_started, exporter)
        finally:
            cpu = time.thread_time() - cpu0
            drained = sum(src.reader.drained for src in collector.sources)
            writer.meta["collector_cpu"] = {"seconds": round(cpu, 3),
                                            "ns_per_record": round(cpu * 1e9 / drained, 1) if drained else None}  # fmt: skip
    except KeyboardInterrupt:
        status, code, message = "interrupted", 130, "interrupted: session saved up to now"
    finally:
        # Stopping and saving takes a moment (the bundled pipeline's acks, the capture's end marker):
        # a second Ctrl-C here used to leave the session marked running, unjoined. Now it is told to wait.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, _while_saving)
        subject_exit = subject.stop() if subject is not None else None
        if view:
            view.stop()
        for s in side_started:
            try:
                warnings += s.stop()
            except Exception as e:
                warnings.append(f"{s.name}: failed to stop cleanly ({e})")
        strays = end_adopted(children_before)  # every child we started is stopped: the rest were orphaned
        if strays:
            warnings.append(f"ended {strays} process{'es' if strays > 1 else ''} the target left running "
                            "outside its process group")  # fmt: skip
        reason = subject.failure_reason() if subject is not None and code == 0 else None
        if reason:
            status, code, message = "target-failed", 2, reason
        writer.meta["side_warnings"] = warnings
        writer.meta["subject_exit"] = subject_exit
        collector.finish(status)
        if subject is not None and not collector.live.tags and hasattr(subject, "last_words"):
            said = subject.last_words()  # read before the ring directory (and the pipeline's logs) goes
            if said and said not in (message or ""):
                warnings.append(f"nothing was traced; the pipeline's last line: {said}")
        for s in side_started:
            if hasattr(s, "conclude"):  # joins that need every trace closed (wire capture)
                try:
                    more, writer.meta[s.name] = s.conclude(collector, writer)
                    warnings += more
                    writer.save_meta()
                except Exception as e:
                    warnings.append(f"{s.name}: failed to join with the traces ({e})")
        if exporter is not None:
            warnings += exporter.conclude(collector, writer, opts.prometheus_linger_s, opts.prometheus_hold_s)
        collector.remove_finished_rings()
        shutil.rmtree(rings, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if collector.ring_errors:
        warnings += collector.ring_errors
    warnings += collector.clock_notes
    return ProfileResult(out, code, subject_exit, message, collector.live, warnings)


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _while_saving(signum, _frame):
    os.write(2, f"tickscope: {signal.Signals(signum).name} while stopping: the session is being saved, "
                "please wait (kill -9 abandons it)\n".encode())  # fmt: skip


def _collect(
    opts, collector: Collector, subject: Subject, view, side, exporter=None
) -> tuple[int, str | None, str]:
    start = monotonic_ns()
    next_refresh = start
    sleep_s = opts.poll_s
    seen = collector.live
    while True:
        busy = collector.poll() >= collector.BATCH
        if exporter is not None:
            exporter.observe(collector)
        sleep_s = collector.next_sleep(sleep_s, ceiling_s=opts.poll_max_s)
        now = monotonic_ns()
        elapsed = (now - start) / 1e9
        if view and now >= next_refresh:
            if collector.live is not seen:  # the collector closed an interval: so do the side rows
                seen = collector.live
                for s in side:
                    if hasattr(s, "roll_live"):
                        s.roll_live(seen.warmup)
            state = with_side_rows(collector.live, side)
            view.update(state, {s.name: _latest(s) for s in side}, elapsed, opts.duration_s)
            next_refresh = now + int(opts.refresh_s * 1e9)
        if subject.poll() is not None:
            return 0, None, "complete"
        if opts.duration_s is not None and elapsed >= opts.duration_s:
            return 0, None, "complete"
        if not busy and sleep_s:
            time.sleep(sleep_s)


def with_side_rows(state: Snapshot, side) -> Snapshot:
    """The collector's state with the rows side collectors add to the stage table (a wire
    capture's ``wire_to_wire`` and residuals): a new state, the collector's own is not touched."""
    rows = [r for s in side if hasattr(s, "live_rows") and (r := s.live_rows()) is not None and r.tags]
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


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
