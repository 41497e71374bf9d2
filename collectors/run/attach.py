"""``tickscope live``: attach a collector to the rings of a pipeline that is already running.

The counterpart of ``profile`` for subjects we did not start: the same ``Collector`` drains the
named rings (or every ring of one directory) until the duration is up or Ctrl-C, the view only
shows it. Rings that are not ours to read are skipped, each with its reason on stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.run.profile import ProfileError, View, _interrupt, _while_saving, claim_session_dir
from tickscope.collectors.session import SessionWriter, Snapshot
from tickscope.collectors.side.prometheus import ExporterError, start_exporter
from tickscope.probe.ring import RING_DIR_ENV, ring_dir


@dataclass
class AttachResult:
    exit_code: int
    state: Snapshot
    skipped: list[str] = field(default_factory=list)  # rings skipped or quarantined, with why
    session_dir: Path | None = None


def resolve_rings(rings: list[Path]) -> tuple[Path, list[Path] | None]:
    """RING... -> (their directory, the named ring files); no argument or a directory -> (the
    directory, None: every ring in it, as they appear)."""
    paths = [Path(p) for p in rings] or [Path(os.environ.get(RING_DIR_ENV) or ring_dir())]
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise ProfileError(
                f"no ring directory or file at {p} (is the pipeline running? set ${RING_DIR_ENV})"
            )
    # A directory named on the command line is the user's choice, link or not; ring files inside
    # it (and ring files named) are never opened through a link (see RingReader).
    dirs = [p for p in paths if p.is_dir()]
    if dirs:
        if len(paths) > 1:
            raise ProfileError("give either one ring directory or ring files, not both")
        return dirs[0], None
    parents = {p.parent.resolve() for p in paths}
    if len(parents) != 1:
        raise ProfileError("rings must all live in one directory")
    return parents.pop(), list(dict.fromkeys(paths))


def attach(rings: list[Path], view: View, *, out: Path | None = None, duration_s: float | None = None,
           force: bool = False, prometheus: str | None = None, prometheus_linger_s: float = 5.0,
           report=lambda line: print(line, file=sys.stderr)) -> AttachResult:  # fmt: skip
    """Drain until ``duration_s`` or Ctrl-C; ``report`` gets each skipped ring as it is found."""
    directory, named = resolve_rings(rings)
    lock = None
    if out is not None:  # the same rule as profile: never overwrite a session, never share one
        out, lock = claim_session_dir(out, "live", force)
    try:
        exporter = start_exporter(prometheus, out.name if out else "live") if prometheus else None
    except ExporterError as e:
        if lock is not None:
            os.close(lock)
        raise ProfileError(str(e)) from None
    try:
        return _attach(directory, named, view, out, duration_s, exporter, prometheus_linger_s, report)
    finally:
        if lock is not None:
            os.close(lock)


def _attach(directory, named, view, out, duration_s, exporter, linger_s, report) -> AttachResult:
    writer = SessionWriter(out, {"name": out.name, "command": "tickscope live"}) if out else None
    collector = Collector(directory, writer, ring_paths=named)
    collector.discover()
    reported = 0
    for line in collector.ring_errors:
        report(f"tickscope: {line}")
    reported = len(collector.ring_errors)
    if named is not None and not collector.sources:
        collector.finish("no-rings")
        if exporter is not None:
            exporter.close()
        raise ProfileError(f"none of the {len(named)} named rings could be attached (reasons above)")
    # SIGTERM and SIGHUP end the run as Ctrl-C does (summary printed, session closed); while it is
    # being closed, any of the three only says so (see profile).
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in stops}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    view.start()
    start = time.monotonic()
    status = "complete"
    try:
        next_draw = 0.0
        sleep_s = 0.005
        while duration_s is None or time.monotonic() - start < duration_s:
            busy = collector.poll() >= collector.BATCH
            if exporter is not None:
                exporter.observe(collector)
            sleep_s = collector.next_sleep(sleep_s)
            now = time.monotonic()
            if now >= next_draw:
                view.update(collector.live, {}, now - start, duration_s)
                next_draw = now + 0.2
            if not busy and sleep_s:
                time.sleep(sleep_s)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        for sig in stops:
            signal.signal(sig, _while_saving)
        view.stop()
        collector.finish(status)
        if exporter is not None:
            for line in exporter.conclude(collector, writer, linger_s):
                report(f"tickscope: warning: {line}")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for line in collector.ring_errors[reported:]:
        report(f"tickscope: {line}")
    return AttachResult(130 if status == "interrupted" else 0, collector.live, collector.ring_errors, out)
