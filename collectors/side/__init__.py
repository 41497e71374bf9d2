"""The side-collector protocol: everything that runs beside the collector (perf stat, py-spy, the
hiccup meter, the wire capture, the Prometheus exporter) and every hook the run engine calls.

A side collector never takes a session down: anything that goes wrong becomes a one-line warning
naming the problem and its fix, and the latency measurement carries on without it. The one
exception is ``prepare``: what must work for the run to be worth starting (a Prometheus port) raises
``SideError`` there, before the session exists.

The engine (``collectors/run/engine.py``) calls, in this order, and nothing else:

==================  ==========================================================================
``prepare(name)``   the session is claimed, not yet written: bind ports (may raise SideError)
``bind(subj, col)`` before ``start``: the subject (its ``ports()``) and the collector (``tap``)
``start(pid, dir)`` collect; ``before_subject`` ones start before the subject exists (pid None)
``after_poll(col)`` after each drain of the rings, on the drain thread: must be cheap
``roll_live(w)``    the collector closed an interval (``w``: a warm-up one)
``segment_closing`` a segmented session closes a segment (dir, start, end run-relative s): write
                    this collector's files for it there (on the drain thread, before the rename)
``live_rows()``     rows for the live stage table (a partial ``Snapshot``) or None
``latest()``        figures for the view's side panel (when ``in_side_panel``)
``incident_view`` on the drain thread, (a, b) CLOCK_MONOTONIC ns: what it saw then -> a
                    ``WindowView`` for an incident (``--incident``), or None; must be cheap
``stop()``          the subject has stopped: stop collecting -> warnings
``conclude(col)``   every trace is closed, the session is not: -> ``Conclusion`` for the engine
``release()``       always, last, once ``prepare`` ran (also when the run never started)
==================  ==========================================================================
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram


class SideError(Exception):
    """A side collector the run cannot start without (``prepare``): one line, exit code 2."""


@dataclass
class Conclusion:
    """What a side collector hands over at the end. The engine writes it (the collector never
    touches the session): ``intervals`` go into latency.hlog through ``SessionWriter.add_tags``,
    interval by interval (a generator: memory stays flat however long the run), ``meta`` becomes
    meta.json's section under the collector's name, and ``summary`` is filled by the engine with
    the totals of the tags added, for the final console output."""

    warnings: list[str] = field(default_factory=list)
    meta: dict | None = None
    intervals: Iterable[tuple[float, float, dict[str, HdrHistogram]]] = ()
    summary: dict[str, dict] = field(default_factory=dict)


class SideCollectorBase:
    name = "side"
    before_subject = False  # start before the subject exists (e.g. a capture must see the first packet)
    in_side_panel = True  # ``latest()`` is shown in the view's side panel
    # prepare() opens it to others (an endpoint serves): it is started first, before anything a
    # stop signal could cut short, and so concluded however the run ends (stopped in its set-up
    # too): what it served and whom it turned away are said
    open_from_prepare = False

    def __init__(self):
        self.warnings: list[str] = []
        self._latest: dict = {}
        self._lock = threading.Lock()

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(f"{self.name}: {text}")

    def publish(self, figures: dict) -> None:
        with self._lock:
            self._latest = dict(figures)

    # -- the hooks, each with what a collector that does not need it does -------------------------
    def prepare(self, session_name: str) -> None:
        pass

    def bind(self, subject, collector) -> None:
        pass

    def start(self, pid: int | None, session_dir: Path | None) -> None:
        pass

    def after_poll(self, collector) -> None:
        pass

    def roll_live(self, warmup: bool) -> None:
        pass

    def segment_closing(self, segment_dir: Path, start_s: float, end_s: float) -> None:
        pass

    def live_rows(self):
        return None

    def latest(self) -> dict:
        with self._lock:
            return dict(self._latest)

    def incident_view(self, start_ns: int, end_ns: int):
        return None

    def stop(self) -> list[str]:
        return self.warnings

    def conclude(self, collector) -> Conclusion:
        return Conclusion()

    def release(self) -> None:
        pass
