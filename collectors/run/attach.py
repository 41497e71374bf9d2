"""``tickscope live``: attach a collector to the rings of a pipeline that is already running.

The counterpart of ``profile`` for subjects we did not start, and the same run engine: the
``Collector`` drains the named rings (or every ring of one directory) until the duration is up or
Ctrl-C, the view only shows it. Rings that are not ours to read are skipped, each with its reason
on stderr. ``--watch`` is the daemon shape of the same run (docs/live.md): it watches one directory
for as long as it runs, says each writer attached and released in one line, and writes one session
per start of tickscope under ``-o``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from tickscope.collectors.rings.incidents import IncidentPolicy
from tickscope.collectors.run.claim import ProfileError, default_session_dir
from tickscope.collectors.run.engine import RunPlan, RunResult, View, run
from tickscope.collectors.run.metadata import run_meta
from tickscope.collectors.run.sides import SideOptions, side_collectors
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
            raise ProfileError(
                "a ring directory and ring files given together (give either one directory or files)"
            )
        return dirs[0], None
    parents = {p.parent.resolve() for p in paths}
    if len(parents) != 1:
        raise ProfileError("rings named from several directories (name rings of one directory)")
    return parents.pop(), list(dict.fromkeys(paths))


def watched_dir(rings: list[Path]) -> Path:
    """``live --watch``: the one directory watched, made now (mode 0700, as a writer makes it) when
    the pipeline has not started yet: a daemon may start first."""
    paths = [Path(p) for p in rings] or [Path(os.environ.get(RING_DIR_ENV) or ring_dir())]
    if len(paths) > 1 or paths[0].is_file():
        raise ProfileError("--watch watches one ring directory (give the directory, not ring files)")
    try:
        paths[0].mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ProfileError(f"cannot make ring directory {paths[0]}: {e.strerror or e} (choose another, or "
                           f"set ${RING_DIR_ENV})") from None  # fmt: skip
    if not paths[0].is_dir():
        raise ProfileError(f"{paths[0]} is not a directory (--watch watches a ring directory: name one)")
    return paths[0]


def watch_session_dir(out: Path, name: str) -> Path:
    """``live --watch -o DIR``: DIR holds one session per start of tickscope, ``<time>-<name>``: a
    restart (``Restart=on-failure``) never overwrites, nor refuses on, the session before it."""
    return default_session_dir(name, base=out)


def attach(rings: list[Path], view: View, *, out: Path | None = None, duration_s: float | None = None,
           force: bool = False, name: str = "live", sides: SideOptions | None = None, warmup_s: float = 0.0,
           interval_s: float = 1.0, expected_interval_ns: int = 0, report=lambda line: print(line, file=sys.stderr),
           segments: SegmentPolicy | None = None, dimension_cap: int | None = None,
           slice_by: list[tuple[str, ...]] | None = None, watch: bool = False,
           incidents: IncidentPolicy | None = None) -> RunResult:  # fmt: skip
    """Drain until ``duration_s`` or Ctrl-C; ``report`` gets each skipped ring as it is found and,
    with ``watch``, each writer attached and released. The warm-up, interval and expected interval
    mean what they mean for ``profile`` (one run engine), and so do the side collectors."""
    if watch:
        directory, named = watched_dir(rings), None
    else:
        directory, named = resolve_rings(rings)
    sides = sides or SideOptions(perf=False, hiccup=False)
    sides.check_sides(attached=True, saving=out is not None)
    if watch and out is not None:
        if segments is not None:  # retention counts the sessions of earlier starts under -o too
            segments = replace(segments, pool=str(out))
        out = watch_session_dir(out, name)
    side = side_collectors(sides, name, attached=True)
    plan = RunPlan(name=name, ring_dir=directory, ring_paths=named, save=out is not None, out=out, force=force,
                   meta={"command": "tickscope live", **(run_meta() if out else {})}, duration_s=duration_s, side=side,
                   view=view, report=report, warmup_s=warmup_s, interval_s=interval_s,
                   expected_interval_ns=expected_interval_ns, segments=segments, dimension_cap=dimension_cap or DEFAULT_CAP,
                   slice_by=slice_by or [], say_writers=watch, incidents=incidents)  # fmt: skip
    try:
        return run(plan)
    except ProfileError:
        if watch and out is not None and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the run never began: leave no empty session behind
        raise
