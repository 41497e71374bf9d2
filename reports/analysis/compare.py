"""``tickscope compare``: did the candidate get slower, per stage and percentile, beyond noise?

Method
------
- Unit of replication: the *interval* (1 s histogram) within a run and the *run* itself, in a
  two-level bootstrap: draw the runs with replacement, then each drawn run's intervals. Never the
  individual tick: ticks are autocorrelated (a GC pause or a noisy neighbour slows hundreds in a
  row), so resampling ticks would give confidence intervals far too narrow. With one run per
  side only the within-run noise is visible: on a shared machine, run-to-run noise is larger, so
  gate on several runs per side (``--vs``).
- Point estimate: the percentile of the merged histograms of each side; change = cand / base - 1.
- Confidence interval: 2,000 bootstrap resamples (fixed seed) per side, merging the resampled
  histograms, taking the percentile on each side, and the 2.5 %..97.5 % quantiles of the ratio.
- Verdict (criterion's rule): ``regression`` only when the whole interval lies above
  +threshold, ``improvement`` only when it lies below -threshold, ``within noise`` when it lies
  inside ±threshold, otherwise ``inconclusive``. ``inconclusive`` too with fewer than 5 intervals
  on a side, or fewer than 10 values beyond the percentile (p99.9 needs 10,000 values per side).
- More than 100 intervals per side are merged into consecutive blocks (a block bootstrap).
- Default thresholds: p50 5 %, p90 5 %, p99 10 %, p99.9 20 % (``--threshold p99=15%`` to change).
  p99.99 is judged too when given a threshold (``--threshold p99.99=30%``): it needs 100,000 values
  per side. max and mean are not offered: the max is one sample, not an estimate a resampling can
  bound, and a mean hides the tail the other rows judge.

Works on our sessions and on bare HdrHistogram interval logs of other tools (wrk2, HdrHistogram's
Java HistogramLogWriter): tags are matched by name.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from tickscope.collectors.session import Session, SessionError
from tickscope.collectors.session.dimensions import dimension_tag, shown
from tickscope.collectors.session.hdr import (
    highest_equivalent_values,
    holding,
    layout_of,
    new_histogram,
    percentile_rank,
)

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
OPT_IN_PERCENTILES = (("p99.99", 99.99),)  # judged only when --threshold names them
DEFAULT_THRESHOLDS = {"p50": 0.05, "p90": 0.05, "p99": 0.10, "p99.9": 0.20}
RESAMPLES = 2000
MIN_UNITS = 5  # intervals (or blocks) per side for a confidence interval
MIN_TAIL = 10  # values beyond a percentile for it to be compared (p99.9 needs 10,000 values)
MAX_UNITS = 100  # more intervals than this are merged into consecutive blocks

REGRESSION, IMPROVEMENT, NOISE, INCONCLUSIVE = "regression", "improvement", "within noise", "inconclusive"


class CompareError(SessionError):
    """Bad input for a comparison: one line, exit code 2."""


def parse_thresholds(text: str | None) -> dict[str, float]:
    out = dict(DEFAULT_THRESHOLDS)
    if not text:
        return out
    for item in text.split(","):
        m = re.fullmatch(r"\s*(p50|p90|p99|p99\.9|p99\.99)\s*=\s*(\d+(?:\.\d+)?)\s*%?\s*", item)
        if not m:
            raise CompareError(
                f"--threshold {item.strip()!r} is not like p99=10% (percentiles compared: p50, p90, p99, p99.9, "
                "and p99.99 when given; max and mean are not estimates a resampling can judge)"
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
    why: str = ""  # for an inconclusive verdict: one of the WHY_* reasons


# Why a row is inconclusive: the headline counts each, so "no regression" never hides thin data.
WHY_VALUES = "too few values beyond the percentile"
WHY_INTERVALS = "too few 1 s intervals"
WHY_WIDE = "confidence interval straddles the threshold"


@dataclass
class Comparison:
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    baseline_names: list[str] = field(default_factory=list)
    candidate_names: list[str] = field(default_factory=list)

    @property
    def sides(self) -> str:
        """Both sides by name: 'baseline s1 vs candidate s2' (runs joined with '+')."""
        return f"baseline {' + '.join(self.baseline_names) or '?'} vs candidate {' + '.join(self.candidate_names) or '?'}"

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == REGRESSION]

    @property
    def inconclusive(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == INCONCLUSIVE]

    @property
    def decided(self) -> int:
        return len(self.rows) - len(self.inconclusive)

    @property
    def inconclusive_reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.inconclusive:
            out[r.why] = out.get(r.why, 0) + 1
        return out

    @property
    def verdict(self) -> str:
        """``inconclusive`` when nothing could be decided: "no regression" would claim what no row showed."""
        return REGRESSION if self.regressions else "no regression" if self.decided else INCONCLUSIVE

    @property
    def support(self) -> str:
        """How much stands behind the verdict: '6 of 40 comparisons decided, 34 inconclusive
        (28 too few values beyond the percentile, 6 too few 1 s intervals)'."""
        text = f"{self.decided} of {len(self.rows)} comparisons decided"
        if self.inconclusive:
            why = ", ".join(f"{n} {w}" for w, n in self.inconclusive_reasons.items())
            text += f", {len(self.inconclusive)} inconclusive ({why})"
        return text

    @property
    def headline(self) -> str:
        return f"{self.verdict}: {self.support}"

    def inconclusive_share(self) -> float:
        return len(self.inconclusive) / len(self.rows) if self.rows else 1.0

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "headline": self.headline, "decided": self.decided,
                "inconclusive": len(self.inconclusive), "inconclusive_reasons": self.inconclusive_reasons,
                "thresholds": self.thresholds, "baselines": self.baselines,
                "candidates": self.candidates, "baseline_names": self.baseline_names,
                "candidate_names": self.candidate_names, "warnings": self.warnings, "rows": [asdict(r) for r in self.rows],
                "method": "two-level bootstrap over runs and their 1 s intervals; criterion's rule on the 95% CI"}  # fmt: skip


def _units(sessions: list[Session], tag: str) -> tuple[list[list[tuple[np.ndarray, np.ndarray]]], object]:
    """Per run, its intervals as sparse count vectors (bucket indexes, counts), all in one layout.

    Intervals are decoded one at a time (long sessions are big) and kept sparse. Logs of other
    tools may mix layouts: the reference layout then holds every value (``holding``), and the
    intervals of another layout are re-indexed into it, bucket by bucket."""
    runs, ref, exemplars = [], None, {}
    for s in sessions:
        units = []
        for iv in s.intervals.get(tag, []):
            # the buckets that hold counts, decoded without a whole histogram each (a 1-hour
            # comparison decodes 64,800 intervals: 221 KB allocated, zeroed and scanned each)
            key, nz, counts = iv.sparse()
            if not counts.size:
                continue
            if ref is None:
                ref = new_histogram(*key)
            elif key != layout_of(ref):  # another tool's layout: a reference that holds both
                ref = holding(ref, iv.hist)
            if key not in exemplars:  # its buckets' values (a layout's alone)
                exemplars[key] = new_histogram(*key)
            units.append((key, nz, counts.astype(np.float64)))
        runs.append(units)
    if ref is None:
        raise CompareError(f"{tag}: no recorded values to compare")
    ref_key = layout_of(ref)
    out = []
    for units in runs:
        same = []
        for key, nz, cnt in units:
            if key != ref_key:  # each bucket's lowest value, counted where the reference puts it
                lowest = exemplars[key].get_value_from_index
                idx = np.array([ref._counts_index_for(lowest(int(i))) for i in nz], dtype=np.int64)
                nz, inverse = np.unique(np.minimum(idx, ref.counts_len - 1), return_inverse=True)
                cnt = np.bincount(inverse, weights=cnt)
            same.append((nz, cnt))
        out.append(same)
    return out, ref


def _blocks(units: list[tuple[np.ndarray, np.ndarray]], used: np.ndarray, max_units: int) -> np.ndarray:
    """The intervals' counts (rows) over the ``used`` buckets (columns), consecutive intervals
    merged into at most ``max_units`` blocks: a block bootstrap, which keeps the correlation between
    neighbouring intervals inside a block and bounds the work. Each interval is added into its
    block as it is (sparse), never as a dense row of its own: a 1-hour run's 3,600 dense rows were
    a third of its comparison's time."""
    n = len(units)
    starts = np.linspace(0, n, max_units, endpoint=False).astype(np.int64) if n > max_units else np.arange(n)
    block = np.searchsorted(starts, np.arange(n), side="right") - 1
    m = np.zeros((starts.size, used.size))
    for i, (idx, cnt) in enumerate(units):
        m[block[i], np.searchsorted(used, idx)] += cnt  # an interval's buckets are distinct
    return m


class _Side:
    """One side's interval matrix (intervals x used buckets, blocked per run) and its runs."""

    def __init__(self, runs: list[list[tuple[np.ndarray, np.ndarray]]], used: np.ndarray):
        per_run = max(1, MAX_UNITS // len(runs))
        mats = [_blocks(units, used, per_run) for units in runs]
        self.matrix = np.vstack(mats)
        self.run_sizes = np.array([m.shape[0] for m in mats])
        self.intervals = sum(len(u) for u in runs)

    def resample_weights(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Two-level bootstrap weights (resamples x rows): draw the runs with replacement, then
        each drawn run's intervals with replacement. One run: the plain interval bootstrap. The
        run level is what carries run-to-run noise (placement, neighbours, frequency), which no
        resampling inside one run can see."""
        r = self.run_sizes.size
        draws = rng.multinomial(r, np.full(r, 1 / r), size=n) if r > 1 else np.ones((n, 1), np.int64)
        out = np.empty((n, self.matrix.shape[0]))
        start = 0
        for j, k in enumerate(self.run_sizes):
            out[:, start : start + k] = rng.multinomial(draws[:, j] * k, np.full(k, 1 / k))
            start += k
        return out


def _percentiles(
    weights: np.ndarray, matrix: np.ndarray, values: np.ndarray, pcts: list[float]
) -> np.ndarray:
    """Each resampled histogram's percentiles (resamples x ``pcts``, at ``percentile_rank``, as
    every output): resample i holds ``weights[i] @ matrix`` (interval counts, intervals x buckets,
    whose values are ``values``), never formed: forming the resampled histograms and scanning them
    was two thirds of a comparison's time (``_rank_indexes``)."""
    weights = np.ascontiguousarray(weights, np.float64)
    cum_t = np.ascontiguousarray(np.cumsum(matrix, axis=1, dtype=np.float64).T)
    totals = weights @ cum_t[-1]  # whole counts: exact
    ranks = np.stack([percentile_rank(p, totals) for p in pcts], axis=1).astype(np.float64)
    return values[np.minimum(_rank_indexes(weights, cum_t, ranks), len(values) - 1)]


def _rank_indexes(weights: np.ndarray, cum_t: np.ndarray, ranks: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per resample i and percentile k: the first bucket j whose cumulative count in resample i,
    ``sum over r of weights[i, r] * cum_t[j, r]``, reaches ``ranks[i, k]``; the width if none does.
    ``cum_t`` is (buckets x intervals): each interval's cumulative counts, one bucket a row. The
    cumulative count never falls as j grows (weights and counts are >= 0), so every (i, k) is a
    binary search of ~log2(width) steps, all of them stepped together as array operations over
    ``chunk`` resamples at a time (a few MB). Whole counts, so every sum is exact in float64 in
    any order and equals the running sum of the resampled row.

    numpy rather than a compiled kernel: loading numba for it cost ~0.8 s of every ``compare``,
    more than the searches take (a comparison of two 1-hour sessions: 0.7 s more search)."""
    n, width = weights.shape[0], cum_t.shape[0]
    out = np.empty(ranks.shape, np.int64)
    for s in range(0, n, chunk):
        w, rank = weights[s : s + chunk], ranks[s : s + chunk]
        lo, hi = np.zeros(rank.shape, np.int64), np.full(rank.shape, width, np.int64)
        while (searching := lo < hi).any():
            mid = (lo + hi) // 2  # < width wherever searching
            reached = np.einsum("ir,ikr->ik", w, cum_t[np.minimum(mid, width - 1)]) >= rank
            hi = np.where(searching & reached, mid, hi)
            lo = np.where(searching & ~reached, mid + 1, lo)
        out[s : s + chunk] = lo
    return out


def compare_tag(base: list[Session], cand: list[Session], tag: str, thresholds: dict[str, float],
                rng: np.random.Generator) -> list[Row]:  # fmt: skip
    runs, ref = _units(base + cand, tag)
    runs_b, runs_c = [r for r in runs[: len(base)] if r], [r for r in runs[len(base) :] if r]
    if not runs_b or not runs_c:
        raise CompareError(
            f"{tag}: no recorded values to compare on the {'baseline' if not runs_b else 'candidate'} side"
        )
    # Only buckets that hold anything matter: it shrinks the bootstrap matrices ~100x.
    used = np.unique(np.concatenate([idx for run in runs_b + runs_c for idx, _ in run]))
    values = highest_equivalent_values(ref)[used].astype(np.float64)
    B, C = _Side(runs_b, used), _Side(runs_c, used)
    enough = B.matrix.shape[0] >= MIN_UNITS and C.matrix.shape[0] >= MIN_UNITS
    judged = PERCENTILES + tuple(p for p in OPT_IN_PERCENTILES if p[0] in thresholds)
    pcts = [pct for _, pct in judged]
    if enough:  # resamples x percentiles
        boot_b = _percentiles(B.resample_weights(rng, RESAMPLES), B.matrix, values, pcts)
        boot_c = _percentiles(C.resample_weights(rng, RESAMPLES), C.matrix, values, pcts)
    every_b, every_c = np.ones((1, B.matrix.shape[0])), np.ones((1, C.matrix.shape[0]))  # the whole side
    at_b, at_c = (
        _percentiles(every_b, B.matrix, values, pcts)[0],
        _percentiles(every_c, C.matrix, values, pcts)[0],
    )
    n_b, n_c = B.matrix.sum(), C.matrix.sum()  # counts: whole numbers, exact in any order of adding
    units = (f"runs {len(runs_b)}/{len(runs_c)}, " if len(runs_b) + len(runs_c) > 2 else "") + \
        f"intervals {B.intervals}/{C.intervals}"  # fmt: skip
    rows = []
    for k, (name, pct) in enumerate(judged):
        b, c = float(at_b[k]), float(at_c[k])
        # A percentile of 0 ns (a residual where two stamps are the same clock reading) is taken as
        # the histogram's 1 ns resolution: 0 vs 0 is no change, 0 vs 5 us a 5,000x regression.
        change = max(c, 1.0) / max(b, 1.0) - 1
        t = thresholds[name]
        lo = hi = None
        # A tail percentile needs values beyond it: with fewer than MIN_TAIL above p99.9 it is
        # the few largest samples, and no resampling makes that an estimate.
        tail_ok = min(n_b, n_c) * (1 - pct / 100) >= MIN_TAIL
        if enough and tail_ok:
            ratio = np.maximum(boot_c[:, k], 1) / np.maximum(boot_b[:, k], 1)
            lo, hi = (float(x) - 1 for x in np.quantile(ratio, [0.025, 0.975]))
            verdict = (REGRESSION if lo > t else IMPROVEMENT if hi < -t
                       else NOISE if (lo >= -t and hi <= t) else INCONCLUSIVE)  # fmt: skip
        else:
            verdict = INCONCLUSIVE
        why = (
            ""
            if verdict != INCONCLUSIVE
            else WHY_VALUES
            if not tail_ok
            else WHY_INTERVALS
            if not enough
            else WHY_WIDE
        )
        rows.append(Row(tag, name, b, c, change, lo, hi, t, verdict,
                        units + ("" if tail_ok else f"; too few values for {name}"), why))  # fmt: skip
    return rows


def parse_share(text: str | None) -> float | None:
    """``--max-inconclusive 50%`` (or 0.5): the share of inconclusive rows above which CI fails."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    value = None if not m else float(m.group(1)) / (100 if m.group(2) else 1)
    if value is None or not 0 <= value <= 1:
        raise CompareError(f"--max-inconclusive {text!r} is not a share like 50% (0%..100%)")
    return value


def compare_sessions(base: list[Session], cand: list[Session], thresholds: str | None = None,
                     by: str | None = None) -> Comparison:  # fmt: skip
    """Every common stage of the ``base`` runs against the ``cand`` runs (as loaded by the caller);
    with ``by`` (a slicing, e.g. ``venue``), every value of it recorded on both sides, each judged
    as a session of its own, its rows tagged as the hlog tags it (``tick_to_trade|venue=XNAS``)."""
    if by is not None:
        return _compare_by(base, cand, parse_thresholds(thresholds), by)
    return _compare(base, cand, parse_thresholds(thresholds))


def _compare_by(base: list[Session], cand: list[Session], th: dict[str, float], by: str) -> Comparison:
    def values(runs: list[Session]) -> list[str]:
        per_run = [s.dimensions.get(by, []) for s in runs]
        return [v for v in per_run[0] if all(v in p for p in per_run)]

    vb, vc = values(base), values(cand)
    common = [v for v in vb if v in vc]
    if not common:
        recorded = sorted({d for s in base + cand for d in s.dimensions})
        raise CompareError(f"--by {by}: no value recorded on both sides (baseline {', '.join(map(shown, vb)) or 'none'}; "
                           f"candidate {', '.join(map(shown, vc)) or 'none'}; slicings recorded: "
                           f"{', '.join(recorded) or 'none'}; record it with --slice {by})")  # fmt: skip
    out = None
    for value in common:
        one = _compare([s.slice(by, value) for s in base], [s.slice(by, value) for s in cand], th,
                       dict(zip(by.split(","), value.split(","), strict=False)))  # fmt: skip
        if out is None:
            out = one
        else:
            out.rows += one.rows
            out.warnings += [w for w in one.warnings if w not in out.warnings]
    missing = [f"{side} only: {', '.join(map(shown, only))}" for side, only in
               (("baseline", [v for v in vb if v not in vc]), ("candidate", [v for v in vc if v not in vb])) if only]  # fmt: skip
    if missing:
        out.warnings.append(f"--by {by}: values not on both sides, not compared ({'; '.join(missing)})")
    return out


def _compare(base: list[Session], cand: list[Session], th: dict[str, float],
             value: dict[str, str] | None = None) -> Comparison:  # fmt: skip
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
    warnings += run_differences(base, cand)
    for s in base + cand:
        warnings += [f"{s.name}: {w}" for w in s.warnings]
    rng = np.random.default_rng(20260101)
    rows = [r for tag in common for r in compare_tag(base, cand, tag, th, rng)]
    for r in rows if value else []:
        r.tag = dimension_tag(r.tag, value)
    thin = sorted({f"{r.tag} {r.percentile}" for r in rows if "too few values" in r.units})
    if thin:
        warnings.append(f"fewer than {MIN_TAIL} values beyond the percentile on a side, inconclusive: "
                        f"{', '.join(thin)} (record longer runs)")  # fmt: skip
    if any(r.ci_low is None and "too few values" not in r.units for r in rows):
        warnings.append(f"fewer than {MIN_UNITS} intervals on a side: no confidence interval, verdict inconclusive "
                        "(record longer runs)")  # fmt: skip
    return Comparison(rows, warnings, [str(s.path) for s in base], [str(s.path) for s in cand], th,
                      [s.name for s in base], [s.name for s in cand])  # fmt: skip


# What must match for a latency comparison to mean what it says: a different offered load, trader
# or feed moves every percentile, whatever the change under test.
COMPARED_FACTS = ("offered rate", "load model", "trader", "feed")


def run_differences(base: list[Session], cand: list[Session]) -> list[str]:
    """One warning per run fact (``COMPARED_FACTS``) that differs between the two sides."""
    from .views import run_facts

    out = []
    for key in COMPARED_FACTS:
        b = sorted({run_facts(s.meta, s.name)[key] for s in base})
        c = sorted({run_facts(s.meta, s.name)[key] for s in cand})
        if b != c:
            out.append(f"{key} differs: baseline {', '.join(b)}, candidate {', '.join(c)}: compared anyway, "
                       "the difference moves every percentile")  # fmt: skip
    return out
