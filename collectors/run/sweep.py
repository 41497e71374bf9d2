"""``tickscope sweep``: latency against offered load, one profile session per rate, up to the knee.

Each step is an ordinary ``tickscope profile`` run (its own process, its own session directory
under the sweep directory), so a step is exactly what a user would have measured by hand at that
rate. The sweep reads each step's ``summary.json``/``meta.json`` and writes ``sweep.json``:

offered rate, achieved rate (ticks recorded after warmup / duration), p50..max of tick-to-trade
and its coordinated-omission-corrected twin (intended send interval = 1 / rate), drops, gaps. The
verdicts, the sustainable throughput and the knee are ``session.sweep``'s (what reports read).

A step runs ``tickscope profile`` through the command line the caller hands in (``cli``): the CLI
sits above the collectors, which never name it themselves.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tickscope.collectors.session.sweep import (
    RATE_IGNORED,
    RATE_MISSED,
    SLA_PERCENTILES,
    WIDE_MARGIN,
    Step,
    SweepError,
    SweepResult,
    analyse,
    judge,
    kneedle,
    load_sweep,
    rate_label,
    sustainable,
)
from tickscope.collectors.session.units import RateError, format_rate, parse_latency_ns
from tickscope.collectors.session.units import parse_rate as _parse_rate

RATE_ENV = "TICKSCOPE_RATE"  # the offered rate (messages per second) for a user's command
RATE_PLACEHOLDER = "{rate}"
# The verdicts and the knee live with sweep.json in the session package; named here for the runner's callers.
__all__ = [
    "RATE_IGNORED",
    "RATE_MISSED",
    "SLA_PERCENTILES",
    "WIDE_MARGIN",
    "Step",
    "SweepError",
    "SweepResult",
    "analyse",
    "judge",
    "kneedle",
    "load_sweep",
    "rate_label",
    "sustainable",
]


def parse_rate(text: str, what: str = "rate") -> float:
    """One rate of a sweep (``session.units``, the grammar of ``profile --rate``): SweepError."""
    try:
        return _parse_rate(text, what)
    except RateError as e:
        raise SweepError(str(e)) from None


def parse_rates(text: str) -> list[float]:
    """``5k,10k,20k`` -> [5000, 10000, 20000]: strictly increasing, at least one."""
    items = [t for t in (text or "").split(",")]
    if not text or not text.strip() or any(not t.strip() for t in items):
        raise SweepError(
            f"--rates {text!r} is not a list of rates (give rates separated by commas, e.g. 5k,10k,20k)"
        )
    try:
        rates = [parse_rate(t) for t in items]
    except SweepError as e:
        raise SweepError(f"--rates {text!r}: {e}") from None
    if any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
        raise SweepError(
            f"--rates {text!r} do not increase step by step (give them in increasing order, e.g. 5k,10k,20k)"
        )
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
        limit = parse_latency_ns(value) if sep else None
        if limit is None:
            raise SweepError(
                f"--sla {item.strip()!r}: the limit is not a latency (write it like 200us or 1ms)"
            )
        out[name] = limit
    return out


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
        keys = SLA_PERCENTILES.values()  # every figure an --sla may name
        step.latency = {k: row.get(k) for k in keys}
        step.latency_co = {k: co.get(k) for k in keys} if co.get("count") else {}
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


def step_argv(
    rate: float,
    out: Path,
    duration: str,
    warmup: str,
    extra: list[str],
    command: list[str],
    *,
    cli: list[str],
) -> list[str]:
    """``cli`` runs tickscope (e.g. ``[python, -m, tickscope.main]``); the step is its ``profile``."""
    argv = [*cli, "profile", "--rate", format_rate(rate), "--duration", duration,
            "--warmup", warmup, "--out", str(out), "--no-live", "--expected-interval", f"{max(1, round(1e9 / rate))}ns",
            *extra]  # fmt: skip
    if command:
        argv += ["--", *[a.replace(RATE_PLACEHOLDER, format_rate(rate)) for a in command]]
    return argv


STEP_ERROR = "tickscope profile: "
STEP_STOP_S = 60.0  # an interrupted step saving its session (the target's stop, joins, a linger)


def run_sweep(sweep_dir: Path, rates: list[float], duration: str, duration_s: float, warmup: str,
              warmup_s: float, sla: dict[str, float], command: list[str], extra: list[str],
              on_step=None, replay: tuple[Path, list[str]] | None = None, *, cli: list[str]) -> SweepResult:  # fmt: skip
    """Run the steps in order, each a ``tickscope profile`` process; stop early on a wide SLA
    breach or drops (``cli``: the command that runs tickscope). ``on_step(step)`` is told after each step. With ``replay`` (file, speeds),
    step i replays the file at speeds[i] and rates[i] is that speed's offered rate.

    ``sweep.json`` is rewritten (atomically) after every step, so an interrupted or killed sweep
    keeps every step that finished. Ctrl-C (or SIGTERM, SIGHUP) stops the running step as Ctrl-C
    stops ``profile``: its session is saved, marked interrupted, and recorded as the last step."""
    from tickscope.collectors.run.children import become_subreaper, child_pids, end_adopted
    from tickscope.collectors.run.signals import ending_like_ctrl_c

    steps: list[Step] = []
    stopped, interrupted = None, False
    env = dict(os.environ)
    from tickscope.collectors.run.host import host_facts

    facts = host_facts()
    load = extra[extra.index("--load") + 1] if "--load" in extra[:-1] else None if command else "constant"
    kw = {"command": command or None, "duration_s": duration_s, "warmup_s": warmup_s, "started_epoch_s": time.time(),
          "host": {k: facts.get(k) for k in ("hostname", "cpu_model")}, "argv": ["tickscope", *sys.argv[1:]],
          "load": load}  # fmt: skip
    become_subreaper()  # a step killed before its own clean-up leaves its target's children to us
    children_before = child_pids()
    with ending_like_ctrl_c():
        try:
            for i, rate in enumerate(rates):
                speed = replay[1][i] if replay else None
                step_extra = [*extra, "--replay", str(replay[0]), "--speed", speed] if replay else extra
                out = sweep_dir / f"step-{i + 1:02d}-{speed or rate_label(rate)}"
                env[RATE_ENV] = format_rate(rate)
                argv = step_argv(rate, out, duration, warmup, step_extra, command, cli=cli)
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
                    stopped = (
                        f"interrupted ({why}) during {rate_label(rate)}/s: its session is saved up to then"
                    )
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
    from tickscope.collectors.run.children import spawn_child, stop_child
    from tickscope.collectors.run.signals import while_saving

    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = spawn_child(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, death_signal=signal.SIGTERM)
    why = None
    try:
        proc.wait()
    except KeyboardInterrupt as e:
        why = str(e) or "SIGINT"
        # A second Ctrl-C would abandon the step's session half saved: it is told to wait instead.
        with while_saving():
            stop_child(proc, signal.SIGINT, STEP_STOP_S)
    step = Step(offered=rate, session=str(out), speed=speed, wall_s=round(time.monotonic() - t0, 3))
    if why is not None:
        step.interrupted = True
        step.flags.append(f"cut short after {step.wall_s:.1f} s")
        if (out / "meta.json").is_file():
            read_step(step, max(min(step.wall_s, measured_s), 1e-3))
        return step, why
    if proc.returncode not in (0, 1):
        # The step's error line: "tickscope profile: <what> (<what to do>)" (main.py's one form).
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith(STEP_ERROR)]
        step.error = f"step {rate_label(rate)}/s failed (exit {proc.returncode}): " + (
            lines[-1].removeprefix(STEP_ERROR) if lines else f"see {log}"
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
