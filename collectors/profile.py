"""A profile session: start the subject, drain its rings until it exits or time is up, save.

The subject is any command that writes probes into ``$TICKSCOPE_RING_DIR`` (set here to a fresh
private directory), or the bundled reference pipeline. Views (live TUI, plain progress lines) and
side collectors (perf, py-spy, hiccup) plug in through small protocols and never block the drain.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tickscope.probe.ring import RING_DIR_ENV

from .collector import Collector, LiveState, monotonic_ns
from .prometheus import ExporterError, start_exporter
from .session import SessionError, SessionWriter


class ProfileError(Exception):
    """A user-facing failure of a profile run: one line, exit code 2."""


class Subject(Protocol):
    pid: int
    description: str

    def poll(self) -> int | None: ...

    def stop(self, timeout_s: float = 5.0) -> int | None: ...


class View(Protocol):
    def start(self) -> None: ...

    def update(
        self, state: LiveState, side: dict[str, dict], elapsed_s: float, duration_s: float | None
    ) -> None: ...

    def stop(self) -> None: ...


class SideCollector(Protocol):
    name: str
    warnings: list[str]

    def start(self, pid: int | None, session_dir: Path) -> None: ...

    def latest(self) -> dict: ...

    def stop(self) -> list[str]: ...


class CommandSubject:
    """Any command, run in its own process group so that stopping it stops its children too."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.description = shlex.join(argv)
        exe = argv[0]
        if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            raise ProfileError(f"target command not found: {exe!r} (check the spelling or PATH)")
        try:
            self.proc = subprocess.Popen(argv, env=env, start_new_session=True)
        except OSError as e:
            raise ProfileError(f"cannot start target {exe!r}: {e.strerror or e}") from None
        self.pid = self.proc.pid
        self.stopped_by_us = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, timeout_s: float = 5.0) -> int | None:
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.stopped_by_us = True
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                return self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()


@dataclass
class ProfileOptions:
    command: list[str] | None = None
    duration_s: float | None = 30.0
    warmup_s: float = 0.0
    interval_s: float = 1.0
    out: Path | None = None
    name: str = "session"
    poll_s: float = 0.005  # first sleep between polls; then adapted to how fast the rings fill
    poll_max_s: float = 0.02
    refresh_s: float = 0.2
    expected_interval_ns: int = 0
    extra_meta: dict = field(default_factory=dict)
    prometheus: str | None = None  # [HOST:]PORT of a /metrics endpoint (collectors/prometheus.py)
    prometheus_linger_s: float = 5.0
    prometheus_hold_s: float = 0.0


@dataclass
class ProfileResult:
    session_dir: Path
    exit_code: int
    subject_exit: int | None
    message: str | None = None
    state: LiveState | None = None
    warnings: list[str] = field(default_factory=list)


def default_session_dir(name: str) -> Path:
    return Path("sessions") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def private_ring_dir() -> Path:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="tickscope-rings-", dir=base))


def run_profile(opts: ProfileOptions, start_subject, *, view: View | None = None,
                side: list[SideCollector] = (), meta: dict | None = None) -> ProfileResult:  # fmt: skip
    """Run one session. ``start_subject(env) -> Subject`` launches the target with the ring dir set."""
    out = opts.out or default_session_dir(opts.name)
    rings = private_ring_dir()
    env = dict(os.environ)
    env[RING_DIR_ENV] = str(rings)
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
    warnings: list[str] = []
    side_started: list[SideCollector] = []
    # A closed terminal (SIGHUP) or a polite kill (SIGTERM) ends the session like Ctrl-C does:
    # the target is stopped (the bundled pipeline runs in its own process groups and would
    # otherwise be orphaned) and the session is saved.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            subject = start_subject(env)
        except ProfileError as e:
            status, code, message = "target-failed", 2, str(e)
            return ProfileResult(out, code, None, message, warnings=warnings)
        writer.meta["command"] = subject.description
        writer.meta["subject_pid"] = subject.pid
        writer.save_meta()
        for s in side:
            try:
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
        subject_exit = subject.stop() if subject is not None else None
        if view:
            view.stop()
        for s in side_started:
            try:
                warnings += s.stop()
            except Exception as e:
                warnings.append(f"{s.name}: failed to stop cleanly ({e})")
        if subject is not None and code == 0 and not getattr(subject, "stopped_by_us", True) and subject_exit:
            status, code = "target-failed", 2
            reason = getattr(subject, "failure_reason", lambda: None)()
            message = reason or f"target {subject.description!r} exited with code {subject_exit}"
        writer.meta["side_warnings"] = warnings
        writer.meta["subject_exit"] = subject_exit
        collector.finish(status)
        if exporter is not None:
            warnings += exporter.conclude(collector, writer, opts.prometheus_linger_s, opts.prometheus_hold_s)
        collector.remove_finished_rings()
        shutil.rmtree(rings, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if collector.ring_errors:
        warnings += collector.ring_errors
    return ProfileResult(out, code, subject_exit, message, collector.live, warnings)


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _collect(
    opts, collector: Collector, subject: Subject, view, side, exporter=None
) -> tuple[int, str | None, str]:
    start = monotonic_ns()
    next_refresh = start
    sleep_s = opts.poll_s
    while True:
        busy = collector.poll() >= collector.BATCH
        if exporter is not None:
            exporter.observe(collector)
        sleep_s = collector.next_sleep(sleep_s, ceiling_s=opts.poll_max_s)
        now = monotonic_ns()
        elapsed = (now - start) / 1e9
        if view and now >= next_refresh:
            view.update(collector.live, {s.name: _latest(s) for s in side}, elapsed, opts.duration_s)
            next_refresh = now + int(opts.refresh_s * 1e9)
        if subject.poll() is not None:
            return 0, None, "complete"
        if opts.duration_s is not None and elapsed >= opts.duration_s:
            return 0, None, "complete"
        if not busy and sleep_s:
            time.sleep(sleep_s)


def _latest(s) -> dict:
    try:
        return s.latest()
    except Exception as e:
        return {"error": str(e)}


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
