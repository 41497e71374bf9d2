"""A TSC ring's stamps on the session's timelines: exact within the ring, slewed across clocks.

probe/clock.py fits the writer's calibration pairs (a subject imports the probe without numpy, so
the maps live here, on the collector side).
"""

from __future__ import annotations

import numpy as np

from tickscope.collectors.rings.clocks import RECENT_PAIRS, TscCalibration, fit_tsc


class PiecewiseLinear:
    """A continuous, non-decreasing, piecewise linear map of int64 -> int64 (x to y).

    Pieces are only ever appended at an x no value has been converted at yet, and each new piece
    starts at the value the map already had there, so conversions done earlier stay valid and the
    map never steps. Before the first piece the map extends backwards with ``back_slope``: the
    first slope it ever had, kept when a piece is appended before the first piece's x (values
    converted before the first anchor, e.g. stamps older than the newest calibration pair of the
    first fit, must not move when the next fit slews).
    """

    MAX_PIECES = 4096  # older pieces are merged into their successor's backward extension

    def __init__(self, x: int, y: int, slope: float):
        if slope <= 0:
            raise ValueError(f"slope must be positive: slope={slope}")
        self.xs, self.ys, self.slopes = [int(x)], [int(y)], [float(slope)]
        self.back_slope = float(slope)
        self._arrays()

    def _arrays(self) -> None:
        self._x = np.array(self.xs, np.int64)
        self._y = np.array(self.ys, np.int64)
        self._s = np.array(self.slopes, np.float64)

    def _slope(self, x: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.where(x < self._x[0], self.back_slope, self._s[i])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.int64)
        i = np.clip(np.searchsorted(self._x, x, side="right") - 1, 0, None)
        return self._y[i] + np.rint((x - self._x[i]) * self._slope(x, i)).astype(np.int64)

    def difference(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """map(b) - map(a) computed without rounding either end first."""
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        ia = np.clip(np.searchsorted(self._x, a, side="right") - 1, 0, None)
        ib = np.clip(np.searchsorted(self._x, b, side="right") - 1, 0, None)
        sa, sb = self._slope(a, ia), self._slope(b, ib)
        apart = (self._y[ib] - self._y[ia]) + ((b - self._x[ib]) * sb - (a - self._x[ia]) * sa)
        together = (ia == ib) & ((a < self._x[0]) == (b < self._x[0]))
        return np.rint(np.where(together, (b - a) * sa, apart)).astype(np.int64)

    def at(self, x: int) -> int:
        return int(self(np.array([x], np.int64))[0])

    def append(self, x: int, slope: float) -> int:
        """From x on, follow ``slope``; returns the (unchanged) value at x."""
        if slope <= 0:
            raise ValueError(f"slope must be positive: slope={slope}")
        y = self.at(x)
        while len(self.xs) > 1 and self.xs[-1] >= x:  # pieces of the future, never used: replaced
            self.xs.pop(), self.ys.pop(), self.slopes.pop()
        if self.xs[-1] >= x:
            self.xs[-1], self.ys[-1], self.slopes[-1] = int(x), y, float(slope)
        else:
            self.xs.append(int(x)), self.ys.append(y), self.slopes.append(float(slope))
        if len(self.xs) > self.MAX_PIECES:
            del self.xs[0], self.ys[0], self.slopes[0]
            self.back_slope = self.slopes[0]
        self._arrays()
        return y

    def pieces(self) -> list[tuple[int, int, float]]:
        return list(zip(self.xs, self.ys, self.slopes, strict=True))


MAX_SLEW = 500e-6  # the map moves towards a new fit at most 500 us per second (NTP's limit)
RATE_TOLERANCE = 100e-6  # ring-local rate kept until a fit disagrees by more (HDR precision ~ 500e-6)
FIT_LOG = 1000  # fits kept in meta.json per ring (the count of all of them is kept too)


class TscTimeline:
    """One TSC ring's stamps on two timelines.

    * **local** (ticks -> ns): one rate and one anchor, so the difference of two stamps of this
      ring is their tick difference times the rate, whatever later fits say (``span``: the
      correlator keeps TSC stamps as raw ticks and asks for spans, rounded once). The rate is the
      first fit's; it changes only if a later fit disagrees by more than RATE_TOLERANCE (a bad
      opening pair), and then as a new piece joined continuously at the newest tick converted.
    * **common** (local ns -> CLOCK_MONOTONIC ns): follows every fit, but slews into it at most
      MAX_SLEW instead of stepping, from the newest tick converted on (as NTP and chrony do): it
      is continuous and non-decreasing, and used only where this ring meets another clock.
    """

    def __init__(self):
        self.fit: TscCalibration | None = None
        self.local: PiecewiseLinear | None = None
        self.common: PiecewiseLinear | None = None
        self.max_tick: int | None = None  # newest tick converted: the past no new piece may touch
        self.fits: list[dict] = []
        self.fits_total = 0
        self.rate_changes = 0
        self.largest_step_ns = 0  # largest disagreement of a new fit with the map (slewed away)
        self.local_rate_from: TscCalibration | None = None  # the fit whose rate local ns use

    def _better_rate(self, fit: TscCalibration) -> bool:
        """May ``fit`` replace the local rate? Only a fit whose outliers could be screened (four
        pairs or more) over a baseline at least four times longer: one perturbed pair among few
        must not rescale every in-ring span."""
        return fit.pairs + fit.rejected >= 4 and fit.span_ns >= 4 * self.local_rate_from.span_ns

    @property
    def ready(self) -> bool:
        return self.fit is not None

    def update(self, fit: TscCalibration, seq: int) -> None:
        step, window, boundary = 0, 0, None
        if self.max_tick is None:  # nothing converted yet: the fit may be taken as it is
            self.local = PiecewiseLinear(fit.tsc0, fit.mono0, fit.ns_per_tick)
            self.common = PiecewiseLinear(fit.mono0, fit.mono0, 1.0)
        else:
            boundary = self.max_tick
            local_rate = self.local.slopes[-1]
            if self._better_rate(fit) and abs(fit.ns_per_tick / local_rate - 1) > RATE_TOLERANCE:
                self.local.append(boundary, fit.ns_per_tick)
                self.local_rate_from = fit
                self.rate_changes += 1
                local_rate = fit.ns_per_tick
            l0 = self.local.at(boundary)
            slope = fit.ns_per_tick / local_rate  # MONOTONIC ns per local ns under the new fit
            target0 = fit.mono0 + round((boundary - fit.tsc0) * fit.ns_per_tick)
            step = self.common.at(l0) - target0
            if step:
                window = int(np.ceil(abs(step) / MAX_SLEW))
                self.common.append(l0, slope - step / window)
                self.common.append(l0 + window, slope)
            else:
                self.common.append(l0, slope)
            self.largest_step_ns = max(self.largest_step_ns, abs(step))
        if self.max_tick is None or self.local_rate_from is None:
            self.local_rate_from = fit
        self.fit = fit
        self.fits_total += 1
        self.fits.append({
            "seq": seq, "hz": round(fit.hz, 3), "pairs": fit.pairs, "rejected": fit.rejected,
            "residual_ns": round(fit.residual_ns, 1), "span_s": round(fit.span_ns / 1e9, 3),
            "from_tick": boundary, "step_ns": step, "slew_ns": window,
        })  # fmt: skip
        del self.fits[:-FIT_LOG]

    def observe(self, ticks: np.ndarray) -> None:
        """Ticks drained: from now on they are the past, which no later piece may change."""
        if ticks.size:
            top = int(ticks.max())
            if self.max_tick is None or top > self.max_tick:
                self.max_tick = top

    def to_local(self, ticks: np.ndarray) -> np.ndarray:
        self.observe(ticks)
        return self.local(ticks)

    def to_common(self, ticks: np.ndarray) -> np.ndarray:
        """Observed ticks -> CLOCK_MONOTONIC ns (for spans that cross clocks)."""
        return self.common(self.local(ticks))

    def span(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """b - a in ns for ticks of this ring: the tick difference times the local rate, rounded
        once (so a span of k ticks is always rint(k * ns_per_tick), never off by a stamp's rounding)."""
        return self.local.difference(a, b)


CALIB_HISTORY = 64  # pairs kept in all: older ones thinned evenly, the first kept (the longest baseline)


class TscDomain:
    """One TSC clock and the one timeline every stamp of it goes through.

    The host's domain pools the calibration pairs of every ring whose TSC the host keeps invariant
    and the collector's own pairs (``collectors/rings/host_tsc.py``): its rings' stamps are one clock, so a
    span between two of them, in one ring or two, is their tick difference times one rate. A ring
    on a TSC the host does not trust gets a domain of its own (per-ring maps, said aloud).
    """

    def __init__(self, name: str):
        self.name = name  # "host", or the ring's path
        self.timeline = TscTimeline()
        self.pairs: list[tuple[int, int, int, int]] = []  # kept for the fit, by MONOTONIC_RAW time
        self.pairs_from: dict[str, int] = {}  # source ("rings", "collector") -> pairs received
        self._fresh = False
        self._fits = 0

    def add(self, pairs, source: str) -> None:
        """Pairs of one source (any order, any ring): kept, thinned, fitted at the next ``refit``."""
        for pair in pairs:
            if not pair[0] or not pair[1]:
                continue  # a Python writer's pair (no TSC) or an empty slot
            self.pairs.append(tuple(pair))
            self.pairs_from[source] = self.pairs_from.get(source, 0) + 1
            self._fresh = True
        if not self._fresh:
            return
        self.pairs.sort(key=lambda p: p[1])
        while len(self.pairs) > CALIB_HISTORY:
            # Drop the older pair closest to its predecessor: the first and the newest stay, the
            # rest spread over the whole session, so the baseline only ever grows.
            older = range(1, len(self.pairs) - RECENT_PAIRS)
            del self.pairs[min(older, key=lambda i: self.pairs[i][1] - self.pairs[i - 1][1])]

    def refit(self) -> None:
        if not self._fresh:
            return
        self._fresh = False
        fit = fit_tsc(self.pairs)
        if fit is not None:
            self._fits += 1
            self.timeline.update(fit, self._fits)

    @property
    def ready(self) -> bool:
        return self.timeline.ready

    def describe(self) -> dict:
        t = self.timeline
        d = {"domain": self.name, "pairs_received": dict(self.pairs_from), "pairs_kept": len(self.pairs)}
        if t.ready:
            d.update({
                "hz": round(t.fit.hz, 1), "fit_residual_ns": round(t.fit.residual_ns, 2),
                "fit_pairs": t.fit.pairs, "fit_span_s": round(t.fit.span_ns / 1e9, 3),
                "local_hz": [round(1e9 / s, 3) for s in t.local.slopes],  # the rate spans use
                "local_rate_changes": t.rate_changes,
                "largest_step_ns": t.largest_step_ns,  # largest fit disagreement slewed away
                "fits_total": t.fits_total, "fits": t.fits,
            })  # fmt: skip
        return d
