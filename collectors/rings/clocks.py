"""The collector's half of the clocks: a ring's calibration pairs, the TSC fit, the host's TSC facts.

Writers store raw stamps in their own domain (TSC ticks, CLOCK_MONOTONIC ns, CLOCK_REALTIME ns
from the kernel); the collector converts everything onto one CLOCK_MONOTONIC nanosecond timeline.
Converting late keeps the hot path to a single clock read, as Tracy does. The writer's half
(``clock_pair``) lives in ``probe/clock.py``.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from tickscope.probe.layout import (
    CALIB_ENTRY,
    CALIB_SLOTS,
    OFF_CALIB_COUNT,
    OFF_CALIB_ENTRIES,
)


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


@dataclass(frozen=True)
class TscCalibration:
    """Linear map from TSC ticks to CLOCK_MONOTONIC ns, fitted over a writer's calibration pairs.

    The rate comes from MONOTONIC_RAW (NTP never slews it); the line is anchored on the MONOTONIC
    timeline at the newest pair, so successive fits follow NTP's corrections of MONOTONIC.
    """

    hz: float
    tsc0: int
    mono0: int
    residual_ns: float  # RMS distance of the pairs kept from the fitted line
    pairs: int  # pairs kept
    rejected: int = 0  # pairs left out as outliers (a preempted or perturbed sample)
    span_ns: int = 0  # MONOTONIC_RAW time between the first and last pair kept

    @property
    def ns_per_tick(self) -> float:
        return 1e9 / self.hz

    def to_monotonic_ns(self, tsc: int) -> int:
        return self.mono0 + round((tsc - self.tsc0) * 1e9 / self.hz)


OUTLIER_FLOOR_NS = 2_000  # a pair this close to the line is never an outlier (clock-read noise)


def _line(pts):
    t0, r0 = pts[0][0], pts[0][1]
    xs = [p[0] - t0 for p in pts]
    ys = [p[1] - r0 for p in pts]
    n = len(pts)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx  # ns per tick
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys, strict=True)]
    return slope, lambda tsc: r0 + my + slope * ((tsc - t0) - mx), resid


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# The newest pairs, kept unthinned by a domain (tsc_timeline): close enough in time that their line
# gives MONOTONIC - MONOTONIC_RAW at the newest one, and enough for the fit to tell an outlier.
RECENT_PAIRS = 8


def _theil_sen(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """The line through (xs, ys) that one bad point cannot tilt or move: the median of the pairwise
    slopes, the median intercept. None when every x is the same."""
    n = len(xs)
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i]]
    if not slopes:
        return None
    m = _median(slopes)
    return m, _median([y - m * x for x, y in zip(xs, ys, strict=True)])


def _mono_minus_raw(pts: list[tuple[int, int, int, int]]) -> float:
    """MONOTONIC - MONOTONIC_RAW at the newest of ``pts``, from their Theil-Sen line (NTP may be
    slewing it) with three pairs or more. A writer reads MONOTONIC after the RAW reads around its
    TSC read, so a preemption there puts that one pair's difference off by its length (writers
    now keep the narrowest of five bracketed sequences, which makes it rare, not impossible, and
    older writers' rings have no such choice): taken from the newest pair alone, it stepped every span across clocks by 32 µs
    for a tenth of a second under load (69 orders' `send` negative, set aside as clock skew)."""
    d = [p[2] - p[1] for p in pts]
    line = _theil_sen([p[1] - pts[-1][1] for p in pts], d) if len(pts) >= 3 else None
    return d[-1] if line is None else line[1]  # the line at the newest pair (x = 0)


def fit_tsc(pairs: list[tuple[int, int, int, int]]) -> TscCalibration | None:
    """Least-squares fit of MONOTONIC_RAW ns against TSC ticks, outliers left out.

    With four pairs or more, a pair is an outlier when it sits further than both OUTLIER_FLOOR_NS
    and five times the median distance from the Theil-Sen line (the median of the pairwise slopes,
    which one bad pair cannot tilt, unlike least squares where the newest pair has the most
    leverage): a preemption between the clock reads, a perturbed sample. Pairs without a TSC
    (Python writers) are ignored. Returns None with fewer than two TSC pairs, or when they span
    no time.
    """
    pts = sorted(p for p in pairs if p[0])
    if len(pts) < 2:
        return None
    rejected = 0
    if len(pts) >= 4:
        t0, r0 = pts[0][0], pts[0][1]
        xs = [p[0] - t0 for p in pts]
        ys = [p[1] - r0 for p in pts]
        line = _theil_sen(xs, ys)
        if line is not None:
            m, b = line
            dist = [abs(y - (b + m * x)) for x, y in zip(xs, ys, strict=True)]
            limit = max(OUTLIER_FLOOR_NS, 5 * _median(dist))
            kept = [p for p, d in zip(pts, dist, strict=True) if d <= limit]
            if len(kept) >= 2:
                rejected, pts = len(pts) - len(kept), kept
    fitted = _line(pts)
    if fitted is None:
        return None
    slope, raw_at, resid = fitted
    if slope <= 0:
        return None
    rms = (sum(r * r for r in resid) / len(resid)) ** 0.5
    newest = pts[-1]
    mono_minus_raw = _mono_minus_raw(pts[-RECENT_PAIRS:])  # what NTP has done to MONOTONIC, now
    return TscCalibration(hz=1e9 / slope, tsc0=newest[0], mono0=round(raw_at(newest[0]) + mono_minus_raw),
                          residual_ns=rms, pairs=len(pts), rejected=rejected,
                          span_ns=pts[-1][1] - pts[0][1])  # fmt: skip


def read_calibration(buf, seen: int = 0) -> tuple[int, list[tuple[int, tuple[int, int, int, int]]]]:
    """The pairs of a ring header that are whole: (pairs written so far, [(sequence number, pair)]).
    ``seen``: the pairs the caller has; with no more written, none is read (a poll reads one
    counter per ring, not its 16 slots: ~20 µs a ring a poll before).

    ``calib_count`` is the writer's sequence counter: pair ``s`` lives in slot ``s % CALIB_SLOTS``
    and is written *before* the counter moves past ``s``. Reading the counter before (c1) and after
    (c2) the slots, a pair ``s`` is whole when ``s < c1`` (published) and ``s > c2 - CALIB_SLOTS``
    (its slot was not being rewritten by pair c2, nor any pair before it, while we read).
    """
    c1 = _calib_count(buf)
    if c1 <= seen:
        return c1, []
    slots = [
        CALIB_ENTRY.unpack_from(buf, OFF_CALIB_ENTRIES + i * CALIB_ENTRY.size) for i in range(CALIB_SLOTS)
    ]
    c2 = _calib_count(buf)
    lo = max(0, c2 + 1 - CALIB_SLOTS)
    return c1, [(s, slots[s % CALIB_SLOTS]) for s in range(lo, c1)]


def _calib_count(buf) -> int:
    return struct.unpack_from("<I", buf, OFF_CALIB_COUNT)[0]


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
