"""The side collectors of a run, built from options in one place for ``profile`` and ``live``.

``profile`` starts its subject, so perf and py-spy follow that process; ``live`` attaches to a
pipeline it did not start, so it names what to follow: perf stat system-wide (or ``--perf-pid``),
py-spy on ``--pyspy-pid``. What cannot apply to the command is refused here, one line each.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from tickscope.collectors.run.claim import ProfileError


@dataclass
class SideOptions:
    perf: bool = True
    perf_pid: int | None = None  # live: perf stat of this process (default: system-wide)
    pyspy: bool = False
    pyspy_pid: int | None = None  # live: py-spy of this Python process
    pyspy_rate: int = 250
    pyspy_nonblocking: bool = False
    hiccup: bool = True
    hiccup_cpu: int | None = None
    capture: bool = False
    capture_iface: str | None = None
    prometheus: str | None = None  # [HOST:]PORT of a /metrics endpoint (collectors/side/prometheus.py)
    prometheus_linger_s: float = 5.0
    prometheus_hold_s: float = 0.0

    def check_sides(self, *, attached: bool, saving: bool = True) -> None:
        """``attached``: ``live`` (no subject of ours); ``saving``: there is a session to write
        perf.csv, hiccup.hlog and the profile into."""
        cmd = "live" if attached else "profile"
        if attached:
            if self.capture or self.capture_iface is not None:
                raise ProfileError(
                    "--capture joins the bundled pipeline's ports (use it with profile, not live)"
                )
            if self.pyspy and self.pyspy_pid is None:
                raise ProfileError("live starts no Python process to profile (name one with --pyspy-pid PID)")
        elif self.perf_pid is not None or self.pyspy_pid is not None:
            flag = "--perf-pid" if self.perf_pid is not None else "--pyspy-pid"
            raise ProfileError(f"{flag}: profile follows the process it starts (use --perf / --pyspy)")
        if self.perf_pid is not None and not self.perf:
            raise ProfileError("--perf-pid with --no-perf (drop one of them)")
        for flag, pid in (("--perf-pid", self.perf_pid), ("--pyspy-pid", self.pyspy_pid)):
            if pid is not None and not _process_exists(pid):
                raise ProfileError(f"{flag} {pid}: no such process (is the pipeline running?)")
        if not saving:
            perf = "--perf" if self.perf_pid is None else "--perf-pid"
            wanted = [
                f
                for f, on in ((perf, self.perf), ("--hiccup", self.hiccup), ("--pyspy-pid", self.pyspy))
                if on
            ]
            if wanted:
                raise ProfileError(
                    f"{cmd} {wanted[0]} writes into the session (give -o DIR, or drop {wanted[0]})"
                )
        if self.hiccup_cpu is not None and self.hiccup_cpu not in os.sched_getaffinity(0):
            raise ProfileError(
                f"--hiccup-cpu {self.hiccup_cpu}: not a CPU this process may run on (pick one of {sorted(os.sched_getaffinity(0))})"
            )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def side_collectors(o: SideOptions, name: str, capture_ports: dict[str, int] | None = None, *,
                    attached: bool = False) -> list:  # fmt: skip
    """The side collectors the options ask for, in the order the engine runs them."""
    side = []
    try:
        if o.perf:
            from tickscope.collectors.side.perfstat import PerfStatCollector

            # Attached: the pipeline is not ours, so perf watches the named pid or the whole host.
            side.append(PerfStatCollector(pid=o.perf_pid, system_wide=attached and o.perf_pid is None))
        if o.pyspy:
            from tickscope.collectors.side.pyspy import PySpyCollector

            side.append(PySpyCollector(rate=o.pyspy_rate, nonblocking=o.pyspy_nonblocking, pid=o.pyspy_pid))
        if o.hiccup:
            from tickscope.collectors.side.hiccup import HiccupCollector

            side.append(HiccupCollector(cpu=o.hiccup_cpu))
    except ImportError as e:  # a side collector not built into this install: say so, go on
        print(f"tickscope: warning: side collector unavailable ({e})", file=sys.stderr)
    if o.capture or o.capture_iface is not None:  # an interface given alone was silently ignored
        from tickscope.collectors.side.capture import WireCapture

        # A user command's ports are not known up front: the capture asks the subject (``bind``).
        side.append(WireCapture(o.capture_iface or "lo", **(capture_ports or {})))
    if o.prometheus:  # last: it concludes after the capture's tags are in
        from tickscope.collectors.side.prometheus import PrometheusExporter

        # The run's name, not the session directory's: the same on every restart (one series set).
        side.append(PrometheusExporter(o.prometheus, pipeline=name, linger_s=o.prometheus_linger_s,
                                       hold_s=o.prometheus_hold_s))  # fmt: skip
    return side
