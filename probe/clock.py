"""Clock domains and their calibration.

Writers store raw stamps in their own domain (TSC ticks, CLOCK_MONOTONIC ns, CLOCK_REALTIME ns
from the kernel); the collector converts everything onto one CLOCK_MONOTONIC nanosecond timeline.
Converting late keeps the hot path to a single clock read, as Tracy does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .layout import CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_TSC


def sample_realtime_offset(samples: int = 9) -> tuple[int, int]:
    """REALTIME - MONOTONIC in ns, and the uncertainty of that estimate in ns.

    Each sample brackets one REALTIME read between two MONOTONIC reads; the tightest bracket
    wins, because a preemption between the reads only ever widens it.
    """
    best_width, best_offset = None, 0
    for _ in range(samples):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        width = m1 - m0
        if best_width is None or width < best_width:
            best_width, best_offset = width, r - (m0 + width // 2)
    return best_offset, best_width // 2


def clock_pair() -> tuple[int, int, int, int]:
    """A (tsc, monotonic_raw, monotonic, realtime) calibration entry as a Python writer sees it.

    Python cannot read the TSC, so the TSC field is 0; the entry still anchors REALTIME stamps.
    """
    raw = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    real = time.clock_gettime_ns(time.CLOCK_REALTIME)
    return 0, raw, mono, real


@dataclass(frozen=True)
class TscCalibration:
    """Linear map from TSC ticks to CLOCK_MONOTONIC ns, fitted over a writer's calibration pairs."""

    hz: float
    tsc0: int
    mono0: int
    residual_ns: float  # RMS distance of the pairs from the fitted line
    pairs: int

    def to_monotonic_ns(self, tsc: int) -> int:
        return self.mono0 + round((tsc - self.tsc0) * 1e9 / self.hz)


def fit_tsc(pairs: list[tuple[int, int, int, int]]) -> TscCalibration | None:
    """Least-squares fit of MONOTONIC_RAW ns against TSC ticks.

    The rate comes from MONOTONIC_RAW (NTP never slews it); the offset anchors the line on the
    MONOTONIC timeline at the mean pair, which is where Python stamps live.
    Returns None with fewer than two pairs with a TSC, or when they span no time.
    """
    pts = [p for p in pairs if p[0]]
    if len(pts) < 2:
        return None
    n = len(pts)
    t0, r0 = pts[0][0], pts[0][1]
    xs = [p[0] - t0 for p in pts]
    ys = [p[1] - r0 for p in pts]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx  # ns per tick
    if slope <= 0:
        return None
    resid = (sum((y - (my + slope * (x - mx))) ** 2 for x, y in zip(xs, ys, strict=True)) / n) ** 0.5
    # Anchor: mean pair, mapped through mono - raw at that pair (they differ by NTP's doing).
    mean_pair = min(pts, key=lambda p: abs((p[0] - t0) - mx))
    mono_minus_raw = mean_pair[2] - mean_pair[1]
    tsc_anchor = mean_pair[0]
    mono_anchor = round(r0 + my + slope * ((tsc_anchor - t0) - mx)) + mono_minus_raw
    return TscCalibration(hz=1e9 / slope, tsc0=tsc_anchor, mono0=mono_anchor, residual_ns=resid, pairs=n)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_flags() -> set[str]:
    text = read_text("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def current_clocksource() -> str | None:
    text = read_text("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    return text.strip() if text else None


def tsc_facts() -> dict:
    """What the host says about its TSC: invariant means constant rate and ticking in deep C-states."""
    flags = cpu_flags()
    invariant = "constant_tsc" in flags and "nonstop_tsc" in flags
    return {
        "tsc": "tsc" in flags,
        "constant_tsc": "constant_tsc" in flags,
        "nonstop_tsc": "nonstop_tsc" in flags,
        "rdtscp": "rdtscp" in flags,
        "invariant": invariant,
        "clocksource": current_clocksource(),
    }


DOMAINS = (CLOCK_TSC, CLOCK_MONOTONIC, CLOCK_REALTIME)
