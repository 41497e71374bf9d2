"""``tickscope compare``: did the candidate get slower, per stage and percentile, beyond noise?

Method
------
- Unit of replication: the *run* when a side has five or more sessions, otherwise the
  *interval* (1 s histograms) of that side's sessions. Never the individual tick: ticks are
  autocorrelated (a GC pause or a noisy neighbour slows hundreds in a row), so resampling ticks
  would give confidence intervals far too narrow.
- Point estimate: the percentile of the merged histograms of each side; change = cand / base - 1.
- Confidence interval: bootstrap (2,000 resamples, fixed seed) of the units on each side, merging
  the resampled histograms, taking the percentile on each side, and the 2.5 %..97.5 % quantiles
  of the ratio.
- Verdict (criterion's rule): ``regression`` only when the whole interval lies above
  +threshold, ``improvement`` only when it lies below -threshold, ``within noise`` when it lies
  inside ±threshold, otherwise ``inconclusive``. Too few units for an interval: ``inconclusive``.
- More than 100 intervals are merged into 100 consecutive blocks (a block bootstrap).
- Default thresholds: p50 5 %, p90 5 %, p99 10 %, p99.9 20 % (``--threshold p99=15%`` to change).

Works on our sessions and on bare HdrHistogram interval logs of other tools (wrk2, HdrHistogram's
Java HistogramLogWriter): tags are matched by name.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tickscope.collectors.hdr import counts_view
from tickscope.collectors.session import Session, SessionError

from .views import _highest_equivalent

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
DEFAULT_THRESHOLDS = {"p50": 0.05, "p90": 0.05, "p99": 0.10, "p99.9": 0.20}
RESAMPLES = 2000
MIN_UNITS = 5
MAX_UNITS = 100  # more intervals than this are merged into consecutive blocks

REGRESSION, IMPROVEMENT, NOISE, INCONCLUSIVE = "regression", "improvement", "within noise", "inconclusive"


class CompareError(SessionError):
    """Bad input for a comparison: one line, exit code 2."""


def parse_thresholds(text: str | None) -> dict[str, float]:
    out = dict(DEFAULT_THRESHOLDS)
    if not text:
        return out
    for item in text.split(","):
        m = re.fullmatch(r"\s*(p50|p90|p99|p99\.9)\s*=\s*(\d+(?:\.\d+)?)\s*%?\s*", item)
        if not m:
            raise CompareError(
                f"threshold {item.strip()!r} is not like p99=10% (percentiles: p50, p90, p99, p99.9)"
            )
        out[m.group(1)] = float(m.group(2)) / 100
    return out


@dataclass
class Row:
    tag: str
    percentile: str
    baseline_ns: float
    candidate_ns: float
    change: float  # candidate / baseline - 1
    ci_low: float | None
    ci_high: float | None
    threshold: float
    verdict: str
    units: str  # what was resampled: "intervals 30/30" or "runs 5/5"


@dataclass
class Comparison:
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == REGRESSION]

    @property
    def verdict(self) -> str:
        return REGRESSION if self.regressions else "no regression"

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "thresholds": self.thresholds, "baselines": self.baselines,
                "candidates": self.candidates, "warnings": self.warnings, "rows": [asdict(r) for r in self.rows],
                "method": "bootstrap over intervals (one run per side) or runs; criterion's rule on the 95% CI"}  # fmt: skip


def _units(sessions: list[Session], tag: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], str, object]:
    """Sparse count vectors (bucket indexes, counts) to resample: one per run, or one per interval."""
    if len(sessions) >= MIN_UNITS:
        hists = (s.total(tag) for s in sessions if tag in s.intervals)
        kind = "runs"
    else:  # too few runs for a run-level interval: the intervals of all of them
        hists = (iv.hist for s in sessions for iv in s.intervals.get(tag, []))
        kind = "intervals"
    units, ref, layout = [], None, None
    for h in hists:  # one decoded histogram at a time: a long session would not fit decoded
        if not h.total_count:
            continue
        shape = (h.counts_len, h.unit_magnitude, h.sub_bucket_half_count_magnitude)
        if layout is not None and shape != layout:
            raise CompareError(
                f"{tag}: histograms of different layouts cannot be compared (record with the same settings)"
            )
        layout, ref = shape, ref or h
        counts = counts_view(h)
        nz = np.flatnonzero(counts)
        units.append((nz, counts[nz].astype(np.float64)))
    if ref is None:
        raise CompareError(f"{tag}: no recorded values to compare")
    return units, kind, ref


def _blocks(m: np.ndarray) -> np.ndarray:
    """Merge consecutive units into at most MAX_UNITS blocks: a block bootstrap, which also keeps
    the correlation between neighbouring intervals inside a block, and bounds the work."""
    if m.shape[0] <= MAX_UNITS:
        return m
    starts = np.linspace(0, m.shape[0], MAX_UNITS, endpoint=False).astype(np.int64)
    return np.add.reduceat(m, starts, axis=0)


def _dense(units: list[tuple[np.ndarray, np.ndarray]], used: np.ndarray) -> np.ndarray:
    m = np.zeros((len(units), used.size))
    for i, (idx, cnt) in enumerate(units):
        m[i, np.searchsorted(used, idx)] = cnt
    return m


def _percentile_of(cum: np.ndarray, values: np.ndarray, pct: float) -> np.ndarray:
    """Percentile (hdrh rounding) of each row of the cumulative counts ``cum`` (replicates x buckets)."""
    total = cum[:, -1]
    target = np.maximum(np.floor(pct * total / 100 + 0.5), 1)
    index = (cum < target[:, None]).sum(axis=1)
    return values[np.minimum(index, len(values) - 1)]


def compare_tag(base: list[Session], cand: list[Session], tag: str, thresholds: dict[str, float],
                rng: np.random.Generator) -> list[Row]:  # fmt: skip
    ub, kind_b, ref = _units(base, tag)
    uc, _kind_c, ref_c = _units(cand, tag)
    if (ref.counts_len, ref.unit_magnitude) != (ref_c.counts_len, ref_c.unit_magnitude):
        raise CompareError(f"{tag}: baseline and candidate histograms have different layouts")
    # Only buckets that hold anything matter: it shrinks the bootstrap matrices ~100x.
    used = np.unique(np.concatenate([idx for idx, _ in ub + uc]))
    values = _highest_equivalent(ref)[used].astype(np.float64)
    Bu, Cu = _blocks(_dense(ub, used)), _blocks(_dense(uc, used))  # units x buckets
    nb, nc = Bu.shape[0], Cu.shape[0]
    enough = nb >= MIN_UNITS and nc >= MIN_UNITS
    if enough:
        # A bootstrap resample = how often each unit is drawn: a multinomial weight per unit.
        wb = rng.multinomial(nb, np.full(nb, 1 / nb), size=RESAMPLES).astype(np.float64)  # resamples x units
        wc = rng.multinomial(nc, np.full(nc, 1 / nc), size=RESAMPLES).astype(np.float64)
        cum_b, cum_c = np.cumsum(wb @ Bu, axis=1), np.cumsum(wc @ Cu, axis=1)  # resamples x buckets
    all_b = np.cumsum(Bu.sum(axis=0, keepdims=True), axis=1)
    all_c = np.cumsum(Cu.sum(axis=0, keepdims=True), axis=1)
    rows = []
    for name, pct in PERCENTILES:
        b = float(_percentile_of(all_b, values, pct)[0])
        c = float(_percentile_of(all_c, values, pct)[0])
        change = c / b - 1 if b else 0.0
        t = thresholds[name]
        lo = hi = None
        if enough:
            ratio = _percentile_of(cum_c, values, pct) / np.maximum(_percentile_of(cum_b, values, pct), 1)
            lo, hi = (float(x) - 1 for x in np.quantile(ratio, [0.025, 0.975]))
            verdict = (
                REGRESSION
                if lo > t
                else IMPROVEMENT
                if hi < -t
                else NOISE
                if (lo >= -t and hi <= t)
                else INCONCLUSIVE
            )
        else:
            verdict = INCONCLUSIVE
        rows.append(Row(tag, name, b, c, change, lo, hi, t, verdict, f"{kind_b} {len(ub)}/{len(uc)}"
                        + (f" in {nb}/{nc} blocks" if (nb, nc) != (len(ub), len(uc)) else "")))  # fmt: skip
    return rows


def compare_sessions(
    baselines: list[str | Path], candidates: list[str | Path], thresholds: str | None = None
) -> Comparison:
    th = parse_thresholds(thresholds)
    base = [Session.load(p) for p in baselines]
    cand = [Session.load(p) for p in candidates]
    warnings: list[str] = []
    tags_b = [t for t in base[0].tags if all(t in s.intervals for s in base)]
    tags_c = {t for t in cand[0].tags if all(t in s.intervals for s in cand)}
    common = [t for t in tags_b if t in tags_c]
    if not common:
        raise CompareError(
            f"no stage in common: baseline has {sorted(tags_b)}, candidate has {sorted(tags_c)}"
        )
    only_b = [t for t in tags_b if t not in tags_c]
    only_c = sorted(tags_c - set(tags_b))
    if only_b or only_c:
        warnings.append(
            f"stage sets differ: only in baseline {only_b}, only in candidate {only_c}; compared the {len(common)} common ones"
        )
    hosts_b = {(s.meta.get("host") or {}).get("hostname") for s in base}
    hosts_c = {(s.meta.get("host") or {}).get("hostname") for s in cand}
    if None not in hosts_b | hosts_c and hosts_b != hosts_c:
        warnings.append(
            f"baseline host {sorted(hosts_b)} differs from candidate host {sorted(hosts_c)}: compared anyway"
        )
    for s in base + cand:
        warnings += [f"{s.name}: {w}" for w in s.warnings]
    rng = np.random.default_rng(20260101)
    rows = [r for tag in common for r in compare_tag(base, cand, tag, th, rng)]
    if any(r.verdict == INCONCLUSIVE and r.ci_low is None for r in rows):
        warnings.append(f"fewer than {MIN_UNITS} intervals on a side: no confidence interval, verdict inconclusive "
                        "(record longer runs)")  # fmt: skip
    return Comparison(rows, warnings, [str(p) for p in baselines], [str(p) for p in candidates], th)


def main(
    baselines, candidates, thresholds=None, markdown=None, junit=None, json_path=None, html=None, console=True
) -> int:
    """The CLI entry point: render every requested output; 0 no regression, 1 regression."""
    from . import compare_render as R

    result = compare_sessions(baselines, candidates, thresholds)
    if console:
        R.print_console(result)
    for path, render in ((markdown, R.markdown), (junit, R.junit), (json_path, R.json_text), (html, R.html)):
        if path is not None:
            try:
                Path(path).write_text(render(result), encoding="utf-8")
            except OSError as e:
                raise CompareError(f"cannot write {path}: {e.strerror or e}") from None
    return 1 if result.regressions else 0
