"""``tickscope live``: attach a collector to the rings of a pipeline that is already running.

The counterpart of ``profile`` for subjects we did not start, and the same run engine: the
``Collector`` drains the named rings (or every ring of one directory) until the duration is up or
Ctrl-C, the view only shows it. Rings that are not ours to read are skipped, each with its reason
on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tickscope.collectors.rings.incidents import IncidentPolicy
from tickscope.collectors.run.claim import ProfileError
from tickscope.collectors.run.engine import RunPlan, RunResult, View, run
from tickscope.collectors.run.metadata import run_meta
from tickscope.collectors.session.dimensions import DEFAULT_CAP
from tickscope.collectors.session.segments import SegmentPolicy
from tickscope.probe.ring import RING_DIR_ENV, ring_dir


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
           force: bool = False, prometheus: str | None = None, prometheus_linger_s: float = 5.0, name: str = "live",
           prometheus_hold_s: float = 0.0, warmup_s: float = 0.0, interval_s: float = 1.0,
           expected_interval_ns: int = 0, report=lambda line: print(line, file=sys.stderr),
           segments: SegmentPolicy | None = None, dimension_cap: int | None = None,
           slice_by: list[tuple[str, ...]] | None = None, incidents: IncidentPolicy | None = None) -> RunResult:  # fmt: skip
    """Drain until ``duration_s`` or Ctrl-C; ``report`` gets each skipped ring as it is found. The
    warm-up, interval and expected interval mean what they mean for ``profile`` (one run engine)."""
    directory, named = resolve_rings(rings)
    side = []
    if prometheus:
        from tickscope.collectors.side.prometheus import PrometheusExporter

        side.append(
            PrometheusExporter(
                prometheus, pipeline=name, linger_s=prometheus_linger_s, hold_s=prometheus_hold_s
            )
        )
    plan = RunPlan(name=name, ring_dir=directory, ring_paths=named, save=out is not None, out=out, force=force,
                   meta={"command": "tickscope live", **(run_meta() if out else {})}, duration_s=duration_s, side=side,
                   view=view, report=report, warmup_s=warmup_s, interval_s=interval_s,
                   expected_interval_ns=expected_interval_ns, segments=segments, dimension_cap=dimension_cap or DEFAULT_CAP,
                   slice_by=slice_by or [], incidents=incidents)  # fmt: skip
    return run(plan)
