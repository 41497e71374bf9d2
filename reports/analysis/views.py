"""Derived views of a session, computed once and shared by every renderer (pyinstrument's
"processors"): per-interval percentile series, percentile distributions on the
HdrHistogram "nines" axis. Plain functions over a ``Session``; numpy over HDR counts, never a
Python loop per bucket, so a one-hour session (3,600 intervals x 9 tags) stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session import Session
from tickscope.collectors.session.dimensions import shown
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


def waterfalls(session: Session) -> list[dict]:
    """The slowest traces (slowest.json, slowest first) as per-stage segments: each declared stage
    whose two points the trace stamped, from its first point to its second, relative to the
    trace's first stamp (ns)."""
    stages = [s for s in session.meta.get("stages", []) if isinstance(s, dict) and "from" in s and "to" in s]
    out = []
    for t in session.slowest:
        ts: dict[str, int] = {}
        for stamp in t.get("stamps", []):
            ts.setdefault(stamp["point"], stamp["ts_ns"])  # a point stamped twice: its first stamp
        if not ts:
            continue
        t0 = min(ts.values())
        segments = [{"stage": s["name"], "start_ns": ts[s["from"]] - t0, "dur_ns": ts[s["to"]] - ts[s["from"]]}
                    for s in stages if s["from"] in ts and s["to"] in ts]  # fmt: skip
        out.append(
            {"trace_id": t["trace_id"], "tick_to_trade_ns": t.get("tick_to_trade_ns"), "segments": segments}
        )
    return out


def run_facts(meta: dict, name: str) -> dict[str, str]:
    """What a page's header says about a run, from its meta.json: name, host, date, command,
    offered rate and load model (the bundled pipeline's options, or what is known of a command's)."""
    from tickscope.collectors.session.sweep import rate_label

    host = meta.get("host") or meta.get("analysed_on") or {}
    started = meta.get("start_epoch_s")
    options = meta.get("options") or {}
    pipeline = options.get("pipeline") if isinstance(options.get("pipeline"), dict) else None
    command = str(meta.get("command", "") or "")
    if pipeline:
        trader = pipeline.get("trader", "python")
        described = f"bundled pipeline: {trader} trader, {pipeline.get('feed', 'itch')} feed"
        if trader == "python":
            described += f", {pipeline.get('loop', 'busy')} loop"
        if pipeline.get("fix_connect"):
            described += f", orders to {pipeline['fix_connect']}"
        command = described
        if pipeline.get("replay"):
            rate = f"replay of {Path(str(pipeline['replay'])).name} at {pipeline.get('speed') or rate_label(pipeline.get('rate') or 0) + '/s'}"
        else:
            rate = f"{rate_label(float(pipeline.get('rate') or 0))}/s"
        load = str(pipeline.get("load", "constant"))
    else:
        interval = meta.get("expected_interval_ns")
        rate = f"{rate_label(1e9 / interval)}/s (--expected-interval)" if isinstance(interval, int) and interval > 0 \
            else "set by the command"  # fmt: skip
        load = "set by the command"
    return {
        "name": name,
        "host": f"{host.get('hostname', '?')} ({host.get('cpu_model', '?')})" if host else "?",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, int | float)
        else "?",
        "command": command or "?",
        "raw_command": str(meta.get("command", "") or ""),
        "offered rate": rate,
        "load model": load,
        "trader": pipeline.get("trader", "python") if pipeline else "?",
        "feed": pipeline.get("feed", "itch") if pipeline else "?",
    }


# Counters in words, in the order a reader asks: what came in, what became of it, the orders.
COUNTER_WORDS = {
    "produced": "records produced", "drained": "records drained", "dropped_ring_full": "records dropped (ring full)",
    "in_ring": "records left in a ring", "drained_before_attach": "records drained before attach",
    "records_refused": "records in refused rings", "malformed": "malformed records",
    "duplicate_stamps": "duplicate stamps", "late_points": "points arriving after their trace closed",
    "traces_seen": "traces seen", "traces_complete": "traces complete", "traces_incomplete": "traces incomplete",
    "traces_clock_skew": "traces set aside: clock skew", "late_beyond_horizon": "stamps beyond the correlation horizon",
    "traces_evicted": "traces evicted (too many open)", "traces_duplicate": "traces seen twice",
    "traces_out_of_range": "traces beyond the histogram range", "traces_unordered": "traces with stamps out of order",
    "traces_open_at_end": "traces still open at the end", "traces_pending": "traces pending",
    "values_out_of_range": "values beyond the histogram range", "writers_died": "writers that died",
    "rings_quarantined": "rings quarantined", "rings_refused": "rings refused", "ring_errors": "ring errors",
    "feed_gaps": "feed sequence gaps", "orders_sent": "orders sent", "orders_acked": "orders acked",
    "orders_rejected": "orders rejected", "orders_gap_filled": "orders gap-filled",
    "orders_in_flight_at_end": "orders in flight at the end", "order_stalls": "order session stalls",
    "risk_rejects": "orders held by risk",
}  # fmt: skip


def counters_in_words(counters: dict) -> tuple[list[tuple[str, str]], list[str]]:
    """(non-zero counters as (words, value), the words of the zero ones): a page lists the first
    and folds the second into one line."""
    shown, zeros = [], []
    for key, value in counters.items():
        words = COUNTER_WORDS.get(key, key.replace("_", " "))
        if value in (0, None, "", [], {}) or value is False:
            zeros.append(words)
        else:
            shown.append((words, f"{value:,}" if isinstance(value, int) else str(value)))
    return shown, zeros


# A leg kind's words, one and many: the trader's stats name them (bid, ask, taker, hedge).
LEG_WORDS = {"bid": ("bid", "bids"), "ask": ("ask", "asks"), "taker": ("taker order", "taker orders"),
             "hedge": ("hedge", "hedges")}  # fmt: skip
LEG_PREFIX = "orders_leg_"


def _count(n: int, kind: str) -> str:
    one, many = LEG_WORDS.get(kind, (kind, kind))
    return f"{n:,} {one if n == 1 else many}"


def orders_in_words(counters: dict) -> dict | None:
    """The orders of a run said in words, for a card: how many were sent, per leg kind (bids, asks,
    hedges), how many the venue answered and how, what stayed unanswered or was held back; the
    figures at zero folded into one ``none ...`` line. None for a run that sent no order."""
    sent = int(counters.get("orders_sent") or 0)
    if not sent:
        return None
    legs = {k[len(LEG_PREFIX) :]: int(v or 0) for k, v in counters.items() if k.startswith(LEG_PREFIX)}
    acked, rejected = int(counters.get("orders_acked") or 0), int(counters.get("orders_rejected") or 0)
    lines, zeros, bad = [], [], False
    if [k for k, n in legs.items() if n] not in ([], ["taker"]):  # one kind of leg: the headline says it
        lines.append("per leg: " + ", ".join(_count(n, k) for k, n in legs.items() if n))
    zeros += [LEG_WORDS.get(k, (k, k))[1] for k, n in legs.items() if not n]
    answered = acked + rejected
    how = ", ".join(f"{n:,} {w}" for n, w in ((acked, "acked"), (rejected, "rejected")) if n)
    lines.append(f"{'all ' if answered == sent else ''}{answered:,} answered" + (f": {how}" if how else ""))
    zeros += ["rejected"] if not rejected else []
    for key, words, counts_against in (
        ("orders_in_flight_at_end", "unanswered at the end", True),
        ("orders_gap_filled", "gap-filled at the venue (never delivered)", True),
        ("order_stalls", "order-session stalls", True),
        ("risk_rejects", "held by risk (not sent)", False),
    ):
        n = int(counters.get(key) or 0)
        if n:
            lines.append(f"{n:,} {words}")
            bad = bad or counts_against
        else:
            zeros.append(words.split(" (")[0])
    return {"sent": f"{sent:,}", "lines": lines, "zeros": zeros, "bad": bad}


def dimension_value(session: Session, slicing: str, value: str) -> dict:
    """One value of one slicing as every output shows it: its slice (``Session.slice``), the value
    in words (``other (3 values)`` for the values beyond the cap), and its populations: ``orders``
    (its tick-to-trade samples, one per leg sent), ``no_order`` (its ticks that led to none) and
    ``ticks`` (every tick recorded with the value as its own; None when the value is a leg's, e.g.
    a venue). ``populations``: per tag of the slice, the population its row describes, named
    (``1,684 orders``, ``157,229 ticks``): a stage before the fan-out is recorded once per tick
    under the tick's own values, the stages after it once per order (docs/concepts.md)."""
    s = session.slice(slicing, value)
    recorded = session.dimension_summary.get(slicing, {}).get("values", {}).get(value, {})
    folded = recorded.get("values")
    said = f"other ({len(folded)} values)" if folded else ",".join(map(shown, value.split(",")))
    summary = s.summary()
    orders, no_order = (summary.get(t, {}).get("count", 0) for t in ("tick_to_trade", "tick_to_decision"))
    ticks = recorded.get("ticks")
    leg_points = set(session.meta.get("leg_points") or [])
    per_leg = {st.get("name") for st in session.meta.get("stages", []) if st.get("to") in leg_points}
    populations = {}
    for tag in s.tags:
        if tag.startswith("tick_to_decision"):
            populations[tag] = f"{no_order:,} ticks without an order"
        elif ticks and not tag.startswith("tick_to_trade") and tag not in per_leg:
            populations[tag] = f"{ticks:,} ticks"
        else:
            populations[tag] = f"{orders:,} orders"
    title = f"{slicing} = {said}: {orders:,} orders, {no_order:,} ticks without an order"
    if ticks:
        title += f"; stages {'before the fan-out' if leg_points else 'per tick'} over all {ticks:,} ticks"
    return {"slice": s, "said": said, "orders": orders, "no_order": no_order, "ticks": ticks,
            "populations": populations, "title": title}  # fmt: skip
