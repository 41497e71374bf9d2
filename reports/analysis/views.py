"""Derived views of a session, computed once and shared by every renderer (pyinstrument's
"processors"): per-interval percentile series, percentile distributions on the
HdrHistogram "nines" axis. Plain functions over a ``Session``; numpy over HDR counts, never a
Python loop per bucket, so a one-hour session (3,600 intervals x 9 tags) stays fast.
"""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session import Session
from tickscope.collectors.session.hdr import percentile_values, percentiles


def nines_axis(max_nines: float = 6.0, points: int = 120) -> np.ndarray:
    """Percentiles spaced evenly on the 1/(1-p) log axis: 0, 90, 99, 99.9, ... (HdrHistogram plots)."""
    x = np.linspace(0, max_nines, points)
    return 100.0 * (1.0 - 10.0**-x)


def distribution(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """(1/(1-p) x-values, latency ns) for a percentile-distribution plot up to the data's nines."""
    n = max(h.total_count, 1)
    nines = min(6.0, np.log10(n) + 0.5)
    pcts = nines_axis(nines)
    return 1.0 / (1.0 - pcts / 100.0), percentile_values(h, pcts).astype(np.float64)


def interval_series(session: Session, tag: str) -> dict[str, np.ndarray]:
    """Per interval of ``tag``: start time (s), count, p50, p99, max (ns)."""
    ivs = session.intervals.get(tag, [])
    out = {k: np.zeros(len(ivs)) for k in ("t", "count", "p50", "p99", "max")}
    for i, iv in enumerate(ivs):
        h = iv.hist
        p = percentiles(h, (50.0, 99.0))
        out["t"][i] = iv.start_s
        out["count"][i] = h.total_count
        out["p50"][i], out["p99"][i] = p[50.0], p[99.0]
        out["max"][i] = h.get_max_value()
    return out


def perf_series(session: Session) -> dict[str, tuple[list[float], list[float]]]:
    """perf.csv as {event: (times, values per second)}."""
    data = session.side_bytes("perf.csv")
    if data is None:
        return {}
    out: dict[str, tuple[list[float], list[float]]] = {}
    lines = data.decode(errors="replace").splitlines()[1:]
    prev_t: dict[str, float] = {}
    for line in lines:
        parts = line.split(",")
        if len(parts) < 3 or not parts[2]:
            continue
        try:
            t, v = float(parts[0]), float(parts[2])
        except ValueError:
            continue
        if not (np.isfinite(t) and np.isfinite(v)):
            continue
        dt = t - prev_t.get(parts[1], 0.0) or 1.0
        prev_t[parts[1]] = t
        ts, vs = out.setdefault(parts[1], ([], []))
        ts.append(t)
        vs.append(v / dt)
    return out


def hiccup_series(session: Session) -> dict[str, np.ndarray] | None:
    from tickscope.collectors.session import SessionError

    try:  # a side file: when damaged, the report goes on without it and says so
        log = session.side_hlog("hiccup.hlog")
        if log is None:
            return None
        ivs, _ = log
        hs = ivs.get("hiccup", [])
        if not hs:
            return None
        hists = [iv.hist for iv in hs]
    except SessionError as e:
        session.warnings.append(f"platform hiccups not shown: {e}")
        return None
    return {"t": np.array([iv.start_s for iv in hs]), "p99": np.array([percentiles(h, (99.0,))[99.0] for h in hists]),
            "max": np.array([h.get_max_value() for h in hists], dtype=float)}  # fmt: skip
