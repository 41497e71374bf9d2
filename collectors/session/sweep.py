"""A sweep's result, ``sweep.json``: its steps (offered and achieved rate, latency, drops), each
step's SLA verdict, the sustainable throughput and the knee. The sweep runner
(``collectors.sweep``) judges each step as it ends; ``reports`` render what it wrote.

- the SLA verdict per step; the **sustainable throughput**: the highest offered rate whose step
  meets the SLA (with no drops and the rate actually achieved);
- the **knee**: Kneedle (Satopää et al., 2011) on log offered rate vs p99, the point of the
  normalised curve farthest below the chord from the first to the last step.

A step that breaks the SLA tenfold or drops records ends the sweep early: the rates beyond it
would only measure a queue growing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .units import PERCENTILES, fmt_ns

SLA_PERCENTILES = PERCENTILES  # the one set a user chooses from (units.PERCENTILES)
WIDE_MARGIN = 10.0  # a step this many times over its SLA ends the sweep
RATE_IGNORED = 0.5  # achieved below this share of offered: the command does not follow the rate
RATE_MISSED = 0.9  # achieved below this share of offered: the rate is not sustained


class SweepError(Exception):
    """Bad sweep input or a step that could not run: one line, exit 2."""


def rate_label(rate: float) -> str:
    return (
        f"{rate / 1e6:g}M"
        if rate >= 1e6 and rate % 1e5 == 0
        else f"{rate / 1e3:g}k"
        if rate >= 1e3
        else f"{rate:g}"
    )


@dataclass
class Step:
    offered: float
    session: str
    speed: str | None = None  # a replay step: the multiple of the file's own pace
    achieved: float | None = None
    tag: str | None = None  # the headline stage: tick_to_trade (or tick_to_decision without orders)
    latency: dict[str, float | None] = field(default_factory=dict)  # p50, p90, p99, p99_9, max (ns)
    latency_co: dict[str, float | None] = field(default_factory=dict)  # the same, CO-corrected
    drops: int = 0
    gaps: int = 0
    meets_sla: bool | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False  # Ctrl-C during this step: its figures cover the time up to then
    wall_s: float = 0.0  # the profile run, start to exit
    sweep_overhead_s: float = 0.0  # the sweep's own work for this step (read, judge, write)

    def value(self, sla_name: str) -> float | None:
        """The figure an SLA is judged on: the CO-corrected one when intended times are known."""
        key = SLA_PERCENTILES[sla_name]
        co = self.latency_co.get(key)
        return co if co is not None else self.latency.get(key)


def judge(step: Step, sla: dict[str, float]) -> str | None:
    """Set the step's SLA verdict and flags; a reason to stop the sweep, or None."""
    if step.error:
        step.meets_sla = False
        return step.error
    if step.tag is None:
        step.meets_sla = False
        step.flags.append("no ticks recorded")
        return "no ticks were recorded (does the command write probes?)"
    ratio = (step.achieved or 0) / step.offered
    if ratio < RATE_IGNORED and not step.drops:  # with drops the ticks were lost, not unsent
        step.flags.append(f"rate ignored? achieved {ratio:.0%} of offered")
    elif ratio < RATE_MISSED:
        step.flags.append(f"rate not sustained: achieved {ratio:.0%} of offered")
    if step.drops:
        step.flags.append(f"{step.drops:,} records dropped")
    broken = []
    for name, limit in sla.items():
        v = step.value(name)
        if v is not None and v > limit:
            broken.append((v / limit, name, v, limit))
    step.flags += [f"{name} {fmt_ns(v)} > {fmt_ns(limit)}" for _, name, v, limit in broken]
    step.meets_sla = not broken and not step.drops and ratio >= RATE_MISSED
    if step.drops:
        return f"{rate_label(step.offered)}/s dropped {step.drops:,} records"
    worst = max(broken, default=None)
    if worst and worst[0] >= WIDE_MARGIN:
        return f"{rate_label(step.offered)}/s broke {worst[1]} {worst[0]:.0f}x ({fmt_ns(worst[2])} > {fmt_ns(worst[3])})"
    return None


def kneedle(x: list[float], y: list[float]) -> int | None:
    """Index of the knee of an increasing convex curve (latency rising with load), by Kneedle:
    normalise both axes to [0, 1] and take the point farthest below the diagonal. The rate axis is
    taken in log (sweeps step geometrically, and the plot shows them so). None with fewer than 3
    points or a curve that never bends upward."""
    if len(x) < 3 or min(x) <= 0:
        return None
    xa, ya = np.log10(np.asarray(x, float)), np.asarray(y, float)
    if not np.all(np.isfinite(ya)) or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return None
    xn, yn = (xa - xa.min()) / np.ptp(xa), (ya - ya.min()) / np.ptp(ya)
    diff = xn - yn
    i = int(np.argmax(diff))
    return i if diff[i] > 0 and 0 < i < len(x) - 1 else None


def sustainable(steps: list[Step]) -> float | None:
    ok = [s.offered for s in steps if s.meets_sla]
    return max(ok) if ok else None


@dataclass
class SweepResult:
    steps: list[Step]
    sla: dict[str, float]
    sustainable_rate: float | None
    knee_rate: float | None
    knee_method: str = "Kneedle (Satopää et al. 2011) on log offered rate vs p99 tick-to-trade"
    stopped: str | None = None
    interrupted: bool = False  # Ctrl-C (or SIGTERM/SIGHUP): the steps up to then, the last one cut short
    command: list[str] | None = None
    duration_s: float = 0.0
    warmup_s: float = 0.0
    # What a page's header says (sweeps saved before these were kept read back as unknown).
    started_epoch_s: float | None = None
    host: dict = field(default_factory=dict)  # hostname, cpu_model
    argv: list[str] | None = None  # the sweep's own command line
    load: str | None = None  # the steps' load model (profile --load), None: a command's own pace

    def as_dict(self) -> dict:
        return {"format": "tickscope-sweep", "format_version": 1, **asdict(self)}


def analyse(steps: list[Step], sla: dict[str, float], **kw) -> SweepResult:
    measured = [s for s in steps if s.tag and s.latency.get("p99") is not None]
    k = kneedle([s.offered for s in measured], [s.value("p99") for s in measured])
    return SweepResult(steps, sla, sustainable(steps), measured[k].offered if k is not None else None, **kw)


def load_sweep(path: str | Path) -> SweepResult:
    p = Path(path)
    f = p / "sweep.json" if p.is_dir() else p
    try:
        doc = json.loads(f.read_text())
        steps = [Step(**s) for s in doc["steps"]]
        keys = (
            "sla",
            "sustainable_rate",
            "knee_rate",
            "knee_method",
            "stopped",
            "command",
            "duration_s",
            "warmup_s",
        )
        header = {k: doc[k] for k in ("started_epoch_s", "host", "argv", "load") if k in doc}
        return SweepResult(
            steps=steps, interrupted=bool(doc.get("interrupted")), **{k: doc[k] for k in keys}, **header
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SweepError(f"{f}: not a tickscope sweep.json ({e})") from None
