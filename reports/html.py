"""``tickscope report SESSION -o report.html``: one self-contained file that opens offline.

Plotly's JavaScript is inlined (no CDN); every name that came from a probe or a stage is escaped
by Jinja2's autoescaping in the HTML and as JSON inside the script (``</`` cannot close it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from tickscope.collectors.session import Session
from tickscope.reports.units import fmt_ns

from . import views

TEMPLATES = Path(__file__).parent / "templates"
COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
NINES_TICKS = (
    [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000],
    ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"],
)


def _json_for_script(obj) -> Markup:
    text = json.dumps(obj, allow_nan=False).replace("</", "<\\/").replace("<!--", "<\\!--")
    return Markup(text)


def _clean(a) -> list[float]:
    return [float(x) for x in np.nan_to_num(np.asarray(a, dtype=float))]


def distribution_figure(session: Session) -> dict:
    data = []
    for i, tag in enumerate(session.tags):
        x, y = views.distribution(session.total(tag))
        data.append({"type": "scatter", "mode": "lines", "name": tag, "x": _clean(x), "y": _clean(y / 1e3),
                     "line": {"color": COLORS[i % len(COLORS)], "width": 3 if tag.startswith("tick_to") else 1.5}})  # fmt: skip
    layout = {"xaxis": {"type": "log", "title": "percentile", "tickvals": NINES_TICKS[0], "ticktext": NINES_TICKS[1]},
              "yaxis": {"type": "log", "title": "latency (µs)", "automargin": True}, "margin": {"t": 10},
              "legend": {"orientation": "h"}, "height": 440}  # fmt: skip
    return {"data": data, "layout": layout}


def breakdown_figure(session: Session) -> dict:
    shares = views.stage_shares(session)
    labels = [k.replace("_", ".") for k in shares]
    data = []
    for i, stage in enumerate(session.trade_stages):
        data.append({"type": "bar", "orientation": "h", "name": stage, "y": labels,
                     "x": [shares[k].get(stage, 0) / 1e3 for k in shares], "marker": {"color": COLORS[i % len(COLORS)]},
                     "hovertemplate": "%{y}: %{x:.2f} µs<extra>" + stage.replace("<", "&lt;") + "</extra>"})  # fmt: skip
    layout = {"barmode": "stack", "xaxis": {"title": "µs (each stage at that percentile, stacked)"},
              "yaxis": {"autorange": "reversed"}, "margin": {"t": 10}, "height": 140 + 55 * len(labels),
              "legend": {"orientation": "h", "traceorder": "normal"}}  # fmt: skip
    return {"data": data, "layout": layout}


def timeline_figure(session: Session) -> dict:
    tag = "tick_to_trade" if "tick_to_trade" in session.intervals else session.tags[0]
    s = views.interval_series(session, tag)
    data = [{"type": "scatter", "mode": "lines", "name": f"{tag} {k}", "x": _clean(s["t"]), "y": _clean(s[k] / 1e3)}
            for k in ("p50", "p99", "max")]  # fmt: skip
    layout = {"xaxis": {"title": "session time (s)"}, "yaxis": {"type": "log", "title": "latency (µs)", "automargin": True},
              "margin": {"t": 10}, "legend": {"orientation": "h"}, "height": 400}  # fmt: skip
    hic = views.hiccup_series(session)
    if hic is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "platform hiccup p99", "x": _clean(hic["t"]),
                     "y": _clean(hic["p99"] / 1e3), "line": {"dash": "dot"}})  # fmt: skip
    perf = views.perf_series(session)
    cs = perf.get("context-switches")
    if cs:
        data.append({"type": "scatter", "mode": "lines", "name": "context switches/s (perf)", "x": cs[0], "y": cs[1],
                     "yaxis": "y2", "line": {"dash": "dash", "color": "#999"}})  # fmt: skip
        layout["yaxis2"] = {"overlaying": "y", "side": "right", "title": "per second", "showgrid": False}
    return {"data": data, "layout": layout}


def flame_figure(session: Session) -> dict | None:
    """py-spy's speedscope profile as an icicle chart (aggregated stacks, root on top)."""
    path = session.side_file("profile.speedscope.json")
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
        frames = doc["shared"]["frames"]
        counts: dict[tuple, float] = {}
        for prof in doc["profiles"]:
            if prof.get("type") != "sampled":
                continue
            for stack, w in zip(prof["samples"], prof["weights"], strict=False):
                for depth in range(1, len(stack) + 1):
                    key = tuple(stack[:depth])
                    counts[key] = counts.get(key, 0) + float(w)
        ids, labels, parents, values = [], [], [], []
        for key, v in counts.items():
            ids.append("/".join(map(str, key)))
            f = frames[key[-1]]
            labels.append(f"{f.get('name', '?')} ({Path(str(f.get('file', ''))).name}:{f.get('line', '')})")
            parents.append("/".join(map(str, key[:-1])))
            values.append(v if np.isfinite(v) else 0.0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
        session.warnings.append(f"profile.speedscope.json not shown: unreadable ({type(e).__name__})")
        return None
    if not counts:
        return None
    data = [{"type": "icicle", "ids": ids, "labels": labels, "parents": parents, "values": values,
             "branchvalues": "total", "tiling": {"orientation": "v"}, "maxdepth": 12}]  # fmt: skip
    return {"data": data, "layout": {"margin": {"t": 10, "l": 0, "r": 0, "b": 0}, "height": 520}}


def cards(session: Session) -> list[dict]:
    summary = session.summary()
    t2t = summary.get("tick_to_trade", {})
    c = session.counters()
    dropped = c.get("dropped_ring_full", 0) + c.get("malformed", 0)
    traces = c.get("traces_complete", 0) + c.get("traces_incomplete", 0)
    duration = session.duration_s or 1
    out = [{"k": f"tick-to-trade {k.replace('_', '.')}", "v": fmt_ns(t2t.get(k)) if t2t.get("count") else "-", "cls": ""}
           for k in ("p50", "p99", "p99_9", "max")]  # fmt: skip
    out += [
        {"k": "traces / s", "v": f"{traces / duration:,.0f}", "cls": ""},
        {"k": "records dropped", "v": f"{dropped:,}", "cls": "bad" if dropped else "good"},
        {"k": "feed gaps", "v": f"{c.get('feed_gaps', 0):,}", "cls": "bad" if c.get("feed_gaps") else "good"},
        {"k": "incomplete traces", "v": f"{c.get('traces_incomplete', 0):,}", "cls": ""},
    ]
    if c.get("orders_sent"):
        out.append(
            {
                "k": "orders sent / acked / rejected / in flight at end",
                "v": f"{c['orders_sent']:,} / {c.get('orders_acked', 0):,} / {c.get('orders_rejected', 0):,}"
                f" / {c.get('orders_in_flight_at_end', 0):,}",
                "cls": "",
            }
        )
    return out


def render(session: Session, out_path: str | Path, perfetto_path: str | Path | None = None) -> Path:
    from plotly.offline import get_plotlyjs

    figures = {"dist": ("Percentile distribution per stage (HdrHistogram nines axis)", distribution_figure(session), ""),
               "breakdown": ("Tick-to-trade breakdown by component", breakdown_figure(session),
                             "Percentiles do not add: each bar stacks every stage at that percentile."),
               "timeline": ("Latency over time, with platform hiccups and perf counters", timeline_figure(session), "")}  # fmt: skip
    if not session.trade_stages:
        del figures["breakdown"]
    flame = flame_figure(session)
    if flame is not None:
        figures["flame"] = ("Where the Python time went (py-spy)", flame, "")
    if perfetto_path is not None:
        from .perfetto import write_trace

        write_trace(session, perfetto_path)
    stages_by_point = {s["to"]: s["name"] for s in session.meta.get("stages", [])}
    slowest = []
    for t in session.slowest:
        t0 = t["stamps"][0]["ts_ns"] if t["stamps"] else 0
        slowest.append({"trace_id": t["trace_id"], "t2t": fmt_ns(t.get("tick_to_trade_ns")), "stamps": [
            {"point": s["point"], "rel": fmt_ns(s["ts_ns"] - t0) if s["ts_ns"] != t0 else "0",
             "stage": stages_by_point.get(s["point"], ""), "writer": s.get("writer") or "",
             "pidtid": f"{s.get('pid')}/{s.get('tid')}"} for s in t["stamps"]]})  # fmt: skip
    summary = session.summary()
    keys = ("count", "min", "p50", "p90", "p99", "p99_9", "p99_99", "max")
    stage_rows = [{"tag": tag, "cells": [f"{summary.get(tag, {}).get('count', 0):,}"]
                   + [fmt_ns(summary.get(tag, {}).get(k)) for k in keys[1:]]} for tag in session.tags]  # fmt: skip
    meta = session.meta
    host = meta.get("host") or {}
    warnings = [
        f"{f['name']}: {f['value']} — {f['fix']}" for f in meta.get("doctor", []) if f.get("status") != "ok"
    ]
    warnings += list(session.warnings) + list(meta.get("side_warnings") or [])
    started = meta.get("start_epoch_s")
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        title=session.name, command=meta.get("command", ""), host=f"{host.get('hostname', '?')} ({host.get('cpu_model', '?')})",
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else "",
        duration=f"{session.duration_s:.1f}s", cards=cards(session), warnings=warnings, stage_rows=stage_rows,
        charts=[{"id": k, "title": v[0], "note": v[2]} for k, v in figures.items()],
        figures_json=_json_for_script({k: v[1] for k, v in figures.items()}),
        plotly_js=Markup(get_plotlyjs().replace("</script", "<\\/script")), slowest=slowest,
        perfetto=str(perfetto_path) if perfetto_path else "",
        counters=[(k, f"{v:,}" if isinstance(v, int) else str(v)) for k, v in session.counters().items()],
    )  # fmt: skip
    out = Path(out_path)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        from tickscope.collectors.session import SessionError

        raise SessionError(f"cannot write report {out}: {e.strerror or e}") from None
    return out
