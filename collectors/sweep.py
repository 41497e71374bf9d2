"""``tickscope sweep``: latency against offered load, one profile session per rate, up to the knee.

Each step is an ordinary ``tickscope profile`` run (its own process, its own session directory
under the sweep directory), so a step is exactly what a user would have measured by hand at that
rate. The sweep reads each step's ``summary.json``/``meta.json`` and writes ``sweep.json``:

- offered rate, achieved rate (ticks recorded after warmup / duration), p50..max of tick-to-trade
  and its coordinated-omission-corrected twin (intended send interval = 1 / rate), drops, gaps;
- the SLA verdict per step; the **sustainable throughput**: the highest offered rate whose step
  meets the SLA (with no drops and the rate actually achieved);
- the **knee**: Kneedle (Satopää et al., 2011) on log offered rate vs p99, the point of the
  normalised curve farthest below the chord from the first to the last step.

A step that breaks the SLA tenfold or drops records ends the sweep early: the rates beyond it
would only measure a queue growing.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .rate import RateError, format_rate
from .rate import parse_rate as _parse_rate

RATE_ENV = "TICKSCOPE_RATE"  # the offered rate (messages per second) for a user's command
RATE_PLACEHOLDER = "{rate}"
SLA_PERCENTILES = {
    "p50": "p50",
    "p90": "p90",
    "p99": "p99",
    "p99.9": "p99_9",
    "p99.99": "p99_99",
    "max": "max",
}
WIDE_MARGIN = 10.0  # a step this many times over its SLA ends the sweep
RATE_IGNORED = 0.5  # achieved below this share of offered: the command does not follow the rate
RATE_MISSED = 0.9  # achieved below this share of offered: the rate is not sustained
_LATENCY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)\s*$")
_LATENCY_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}


class SweepError(Exception):
    """Bad sweep input or a step that could not run: one line, exit 2."""


def parse_rate(text: str, what: str = "rate") -> float:
    """One rate of a sweep (``collectors.rate``, the grammar of ``profile --rate``): SweepError."""
    try:
        return _parse_rate(text, what)
    except RateError as e:
        raise SweepError(str(e)) from None


def parse_rates(text: str) -> list[float]:
    """``5k,10k,20k`` -> [5000, 10000, 20000]: strictly increasing, at least one."""
    items = [t for t in (text or "").split(",")]
    if not text or not text.strip() or any(not t.strip() for t in items):
        raise SweepError(f"--rates {text!r}: give rates separated by commas, e.g. 5k,10k,20k")
    try:
        rates = [parse_rate(t) for t in items]
    except SweepError as e:
        raise SweepError(f"--rates {text!r}: {e}") from None
    if any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
        raise SweepError(f"--rates {text!r}: rates must increase step by step, e.g. 5k,10k,20k")
    return rates


def geometric_rates(start: float, stop: float, steps: int) -> list[float]:
    """``--from 5k --to 80k --steps 5``: rates evenly spaced on a log axis, to 3 significant digits."""
    if steps < 2 or stop <= start:
        raise SweepError(f"--from/--to/--steps: need --to above --from and at least 2 steps (got {steps})")
    return [float(f"{r:.3g}") for r in np.geomspace(start, stop, steps)]


def parse_sla(text: str | None) -> dict[str, float]:
    """``p99=200us,p99.9=1ms`` -> {"p99": 200000.0, "p99.9": 1000000.0} (ns)."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in SLA_PERCENTILES:
            raise SweepError(
                f"--sla {item.strip()!r}: unknown percentile {name!r} (use {', '.join(SLA_PERCENTILES)})"
            )
        m = _LATENCY.match(value) if sep else None
        if not m:
            raise SweepError(f"--sla {item.strip()!r}: the limit must be a latency like 200us or 1ms")
        out[name] = float(m.group(1)) * _LATENCY_NS[m.group(2)]
    return out


def rate_label(rate: float) -> str:
    return (
        f"{rate / 1e6:g}M"
        if rate >= 1e6 and rate % 1e5 == 0
        else f"{rate / 1e3:g}k"
        if rate >= 1e3
        else f"{rate:g}"
    )


def replay_speeds(path: Path, text: str) -> list[tuple[str, float]]:
    """``--replay FILE --speeds 1x,2x,8x`` -> [(speed, offered messages/s)], STAC-T1 style: the
    offered rate of a speed is the file's messages over its own span divided by the speed."""
    from tickscope.pipeline import itch
    from tickscope.pipeline.replay import parse_speed, plan

    items = [s.strip() for s in (text or "").split(",")]
    try:
        factors = [parse_speed(s) for s in items]
    except ValueError as e:
        raise SweepError(f"--speeds {text!r}: {e}") from None
    if any(f is None for f in factors) or any(b <= a for a, b in zip(factors, factors[1:], strict=False)):
        raise SweepError(
            f"--speeds {text!r}: give increasing multiples like 1x,2x,8x (max has no offered rate)"
        )
    try:
        messages = list(itch.read_itch_file(path))
    except itch.ItchFileError as e:
        raise SweepError(str(e)) from None
    span = plan(messages, 1.0).file_span_ns
    if not span:
        raise SweepError(f"--replay {path}: no timestamps to pace by, so no speed to sweep")
    return [(s, len(messages) * f / (span / 1e9)) for s, f in zip(items, factors, strict=True)]


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


def read_step(step: Step, duration_s: float) -> None:
    """Fill a step's figures from its session directory."""
    d = Path(step.session)
    try:
        summary = json.loads((d / "summary.json").read_text())
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as e:
        step.error = f"session {d} unreadable: {e}"
        return
    tag = next((t for t in ("tick_to_trade", "tick_to_decision") if summary.get(t, {}).get("count")), None)
    step.tag = tag
    if tag:
        row, co = summary[tag], summary.get(tag + "_co") or {}
        step.latency = {k: row.get(k) for k in ("p50", "p90", "p99", "p99_9", "max")}
        step.latency_co = (
            {k: co.get(k) for k in ("p50", "p90", "p99", "p99_9", "max")} if co.get("count") else {}
        )
    step.achieved = achieved_rate(d, summary, duration_s)
    counters = meta.get("counters") or {}
    step.drops = int(counters.get("dropped_ring_full") or 0) + int(counters.get("malformed") or 0)
    step.gaps = int(counters.get("feed_gaps") or 0)


def achieved_rate(session_dir: Path, summary: dict, duration_s: float) -> float | None:
    """Ticks per second while the subject ran at its pace: the median over the full-length
    intervals (start-up, logon and shutdown fall into the partial or first ones, and the median
    sets those aside), or the plain average when the step had no full interval."""
    tag = max(("tick_to_trade", "tick_to_decision"), key=lambda t: summary.get(t, {}).get("count") or 0)
    total = summary.get(tag, {}).get("count") or 0
    try:
        from tickscope.collectors.session import Session

        ivs = [iv for iv in Session.load(session_dir).intervals.get(tag, []) if iv.hist.total_count]
    except Exception:  # the figures were read already; without intervals, the plain average
        ivs = []
    longest = max((iv.length_s for iv in ivs), default=0)
    full = [iv.hist.total_count / iv.length_s for iv in ivs if iv.length_s >= 0.9 * longest > 0]
    if full:
        return float(np.median(full))
    return total / duration_s if duration_s else None


def judge(step: Step, sla: dict[str, float]) -> str | None:
    """Set the step's SLA verdict and flags; a reason to stop the sweep, or None."""
    if step.error:
        step.meets_sla = False
        return step.error
    if step.tag is None:
        step.meets_sla = False
        step.flags.append("no ticks recorded")
        return "no ticks were recorded (does the command write probes?)"
    from tickscope.reports.units import fmt_ns

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
        return SweepResult(steps=steps, interrupted=bool(doc.get("interrupted")), **{k: doc[k] for k in keys})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SweepError(f"{f}: not a tickscope sweep.json ({e})") from None


def step_argv(
    rate: float, out: Path, duration: str, warmup: str, extra: list[str], command: list[str]
) -> list[str]:
    argv = [sys.executable, "-m", "tickscope.main", "profile", "--rate", format_rate(rate), "--duration", duration,
            "--warmup", warmup, "--out", str(out), "--no-live", "--expected-interval", f"{max(1, round(1e9 / rate))}ns",
            *extra]  # fmt: skip
    if command:
        argv += ["--", *[a.replace(RATE_PLACEHOLDER, format_rate(rate)) for a in command]]
    return argv


STEP_STOP_S = 60.0  # an interrupted step saving its session (the target's stop, joins, a linger)


def run_sweep(sweep_dir: Path, rates: list[float], duration: str, duration_s: float, warmup: str,
              warmup_s: float, sla: dict[str, float], command: list[str], extra: list[str],
              on_step=None, replay: tuple[Path, list[str]] | None = None) -> SweepResult:  # fmt: skip
    """Run the steps in order, each a ``tickscope profile`` process; stop early on a wide SLA
    breach or drops. ``on_step(step)`` is told after each step. With ``replay`` (file, speeds),
    step i replays the file at speeds[i] and rates[i] is that speed's offered rate.

    ``sweep.json`` is rewritten (atomically) after every step, so an interrupted or killed sweep
    keeps every step that finished. Ctrl-C (or SIGTERM, SIGHUP) stops the running step as Ctrl-C
    stops ``profile``: its session is saved, marked interrupted, and recorded as the last step."""
    from .children import become_subreaper, child_pids, end_adopted
    from .profile import _interrupt

    steps: list[Step] = []
    stopped, interrupted = None, False
    env = dict(os.environ)
    kw = {"command": command or None, "duration_s": duration_s, "warmup_s": warmup_s}
    become_subreaper()  # a step killed before its own clean-up leaves its target's children to us
    children_before = child_pids()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for i, rate in enumerate(rates):
            speed = replay[1][i] if replay else None
            step_extra = [*extra, "--replay", str(replay[0]), "--speed", speed] if replay else extra
            out = sweep_dir / f"step-{i + 1:02d}-{speed or rate_label(rate)}"
            env[RATE_ENV] = format_rate(rate)
            argv = step_argv(rate, out, duration, warmup, step_extra, command)
            step, why = _run_step(
                argv,
                sweep_dir / f"step-{i + 1:02d}.log",
                rate,
                out,
                speed,
                env,
                max(duration_s - warmup_s, 1e-3),
            )  # fmt: skip  (--duration includes the warmup)
            t1 = time.monotonic()
            reason = judge(step, sla) if why is None else None
            step.sweep_overhead_s = round(time.monotonic() - t1, 4)
            steps.append(step)
            if why is not None:
                interrupted = True
                stopped = f"interrupted ({why}) during {rate_label(rate)}/s: its session is saved up to then"
            elif reason:
                stopped = f"stopped after {rate_label(rate)}/s: {reason}"
            _save(sweep_dir, analyse(steps, sla, stopped=stopped, interrupted=interrupted, **kw))
            if on_step:
                on_step(step)
            if stopped:
                break
    except KeyboardInterrupt as e:  # between steps
        interrupted = True
        stopped = f"interrupted ({e or 'SIGINT'}) after {len(steps)} step{'s' if len(steps) != 1 else ''}"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        end_adopted(children_before)
    result = analyse(steps, sla, stopped=stopped, interrupted=interrupted, **kw)
    _save(sweep_dir, result)
    return result


def _run_step(
    argv, log: Path, rate: float, out: Path, speed, env, measured_s: float
) -> tuple[Step, str | None]:
    """One step, as its own ``tickscope profile`` process; the step and why it was interrupted (or None).

    The step is a child tickscope owns (``children``): in a session of its own, so a Ctrl-C in the
    terminal reaches the sweep alone, which stops the step with SIGINT and waits while it saves;
    if the sweep is killed outright, the step gets SIGTERM and still saves its session."""
    from .children import spawn_child, stop_child
    from .profile import _while_saving

    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = spawn_child(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, death_signal=signal.SIGTERM)
    why = None
    try:
        proc.wait()
    except KeyboardInterrupt as e:
        why = str(e) or "SIGINT"
        # A second Ctrl-C would abandon the step's session half saved: it is told to wait instead.
        previous = {
            sig: signal.signal(sig, _while_saving) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            stop_child(proc, signal.SIGINT, STEP_STOP_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    step = Step(offered=rate, session=str(out), speed=speed, wall_s=round(time.monotonic() - t0, 3))
    if why is not None:
        step.interrupted = True
        step.flags.append(f"cut short after {step.wall_s:.1f} s")
        if (out / "meta.json").is_file():
            read_step(step, max(min(step.wall_s, measured_s), 1e-3))
        return step, why
    if proc.returncode not in (0, 1):
        lines = [
            ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("tickscope: error")
        ]
        step.error = f"step {rate_label(rate)}/s failed (exit {proc.returncode}): " + (
            lines[-1].removeprefix("tickscope: error: ") if lines else f"see {log}"
        )
    else:
        read_step(step, measured_s)
    return step, None


def _save(sweep_dir: Path, result: SweepResult) -> None:
    """sweep.json, replaced atomically: a reader (or a kill) never sees half of it."""
    tmp = sweep_dir / "sweep.json.tmp"
    tmp.write_text(json.dumps(result.as_dict(), indent=2, allow_nan=False, default=_finite))
    os.replace(tmp, sweep_dir / "sweep.json")


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x
