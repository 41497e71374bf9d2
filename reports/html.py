"""``tickscope report SESSION -o report.html``: one self-contained file that opens offline.

Plotly's JavaScript is inlined (no CDN); every name that came from a probe or a stage is escaped
by Jinja2's autoescaping in the HTML and as JSON inside the script (``</`` cannot close it).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from tickscope.collectors.session import Session, trace_accounting
from tickscope.collectors.session.units import fmt_ns

from . import attribution
from .analysis import views

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


def page(template: str, figures: dict[str, dict], **context) -> str:
    """A page of ``templates/``: each extends the one skeleton (page.html.j2), which inlines
    Plotly and draws each of ``figures`` into the element whose id is its key."""
    from plotly.offline import get_plotlyjs

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template(template).render(
        figures_json=_json_for_script(figures),
        plotly_js=Markup(get_plotlyjs().replace("</script", "<\\/script")),
        **context,
    )


def _json_for_script(obj) -> Markup:
    text = json.dumps(obj, allow_nan=False).replace("</", "<\\/").replace("<!--", "<\\!--")
    return Markup(text)


def _clean(a) -> list[float]:
    return [float(x) for x in np.nan_to_num(np.asarray(a, dtype=float))]


def latency_unit(max_ns: float) -> tuple[str, float]:
    """The unit a latency axis reads best in: ms once values reach 10 ms, else µs."""
    return ("ms", 1e6) if max_ns >= 10e6 else ("µs", 1e3)


def _title(text: str) -> dict:
    return {"text": text}  # plotly.js 3 draws an axis title only as {"text": ...}


# Above the plot: below it, a wrapped legend runs into the x axis title on a narrow page.
LEGEND = {
    "orientation": "h",
    "traceorder": "normal",
    "x": 0,
    "y": 1.02,
    "xanchor": "left",
    "yanchor": "bottom",
}
LOG_DECADES = {"type": "log", "dtick": 1, "automargin": True}  # labels at powers of ten only


_PERF_CSV = re.compile(r"<(not supported|not counted)>,[^,]*,([\w:-]+)[^)]*")


def _readable(value: str) -> str:
    """Sessions recorded before doctor said it in words carry perf's raw CSV row
    (``<not supported>,,instructions,0,100.00,,``): show the event and the reason."""
    return _PERF_CSV.sub(lambda m: f"perf stat: {m.group(2)} {m.group(1)}", value)


def _nice_ticks(peak: float, n: int = 4) -> list[float]:
    """``n`` + 1 round tick values from 0 to at least ``peak`` (1, 2 or 5 times a power of ten apart)."""
    if not peak > 0:
        return [0.0, 1.0]
    raw = peak / n
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [float(step * i) for i in range(int(np.ceil(peak / step)) + 1)]


def distribution_figure(session: Session) -> dict:
    curves = {tag: views.distribution(session.total(tag)) for tag in session.tags}
    unit, scale = latency_unit(max((float(np.nanmax(y)) for _, y in curves.values() if len(y)), default=0))
    # The end-to-end curves are drawn first, wide and translucent: a stage that carries almost
    # all of the latency (wire_to_read under load) runs along them and must stay visible on top.
    order = sorted(enumerate(session.tags), key=lambda it: not it[1].startswith("tick_to"))
    data = []
    for i, tag in order:
        x, y = curves[tag]
        end_to_end = tag.startswith(("tick_to", "wire_to_wire"))
        data.append({"type": "scatter", "mode": "lines", "name": tag, "x": _clean(x), "y": _clean(y / scale),
                     "opacity": 0.55 if end_to_end else 1.0,
                     "line": {"color": COLORS[i % len(COLORS)], "width": 5 if end_to_end else 1.5}})  # fmt: skip
    layout = {"xaxis": {"type": "log", "title": _title("percentile"), "tickvals": NINES_TICKS[0], "ticktext": NINES_TICKS[1]},
              "yaxis": {**LOG_DECADES, "title": _title(f"latency ({unit})")}, "margin": {"t": 10},
              "legend": LEGEND, "height": 460}  # fmt: skip
    return {"data": data, "layout": layout}


def timeline_figure(session: Session) -> dict:
    tag = "tick_to_trade" if "tick_to_trade" in session.intervals else session.tags[0]
    s = views.interval_series(session, tag)
    hic = views.hiccup_series(session)
    peak = max([float(np.nanmax(s["max"])) if len(s["max"]) else 0.0]
               + ([float(np.nanmax(hic["p99"]))] if hic is not None and len(hic["p99"]) else []))  # fmt: skip
    unit, scale = latency_unit(peak)
    data = [{"type": "scatter", "mode": "lines", "name": f"{tag} {k}", "x": _clean(s["t"]), "y": _clean(s[k] / scale)}
            for k in ("p50", "p99", "max")]  # fmt: skip
    layout = {"xaxis": {"title": _title("session time (s)")},
              "yaxis": {**LOG_DECADES, "title": _title(f"latency ({unit})")},
              "margin": {"t": 10}, "legend": LEGEND, "height": 420}  # fmt: skip
    if hic is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "platform hiccup p99", "x": _clean(hic["t"]),
                     "y": _clean(hic["p99"] / scale), "line": {"dash": "dot"}})  # fmt: skip
    perf = views.perf_series(session)
    cs = perf.get("context-switches")
    if cs:
        data.append({"type": "scatter", "mode": "lines", "name": "context switches/s (perf)", "x": cs[0], "y": cs[1],
                     "yaxis": "y2", "line": {"dash": "dash", "color": "#999"}})  # fmt: skip
        # Four round labels from zero: left alone, plotly packs ten 4-digit labels into 300 px (1049/1026/1001).
        ticks = _nice_ticks(max((float(v) for v in cs[1] if v is not None), default=0))
        layout["yaxis2"] = {"overlaying": "y", "side": "right", "title": _title("context switches/s"),
                            "showgrid": False, "range": [0, ticks[-1]], "tickmode": "array", "tickvals": ticks,
                            "ticktext": [f"{v:,.6g}" for v in ticks], "automargin": True}  # fmt: skip
    return {"data": data, "layout": layout}


def flame_figure(session: Session) -> dict | None:
    """py-spy's speedscope profile as an icicle chart (aggregated stacks, root on top)."""
    try:
        data = session.side_bytes("profile.speedscope.json")
        if data is None:
            return None
        doc = json.loads(data)
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


def accounting_lines(session: Session) -> list[str]:
    """The records and traces accounted for, the verdict, and rings skipped or refused: the lines
    the console prints (``CountersLine``, ``wire_line``)."""
    from tickscope.reports.console import CountersLine, wire_line

    c = session.counters()
    out = []
    if "produced" in c:
        out += (
            CountersLine(c, status=str(session.meta.get("status", "complete"))).__rich__().plain.split("\n")
        )
    if (line := wire_line(c)) is not None:
        out.append(line)
    errors = session.meta.get("ring_errors")
    return out + ([str(e) for e in errors] if isinstance(errors, list) else [])


def cards(session: Session) -> list[dict]:
    summary = session.summary()
    t2t = summary.get("tick_to_trade", {})
    c = session.counters()
    dropped = c.get("dropped_ring_full", 0) + c.get("malformed", 0)
    seen, recorded, _ = trace_accounting(c) or (0, 0, {})
    duration = session.duration_s or 1
    out = [{"k": f"tick-to-trade {k.replace('_', '.')}", "v": fmt_ns(t2t.get(k)) if t2t.get("count") else "-", "cls": ""}
           for k in ("p50", "p99", "p99_9", "max")]  # fmt: skip
    out += [
        {"k": "traces / s", "v": f"{seen / duration:,.0f}", "cls": ""},
        {"k": "records dropped", "v": f"{dropped:,}", "cls": "bad" if dropped else "good"},
        {"k": "feed gaps", "v": f"{c.get('feed_gaps', 0):,}", "cls": "bad" if c.get("feed_gaps") else "good"},
        {"k": "traces set aside", "v": f"{seen - recorded:,}", "cls": "bad" if seen - recorded else "good"},
    ]
    if c.get("orders_sent"):
        out.append(
            {
                "k": "orders sent / acked / rejected / gap-filled / in flight at end",
                "v": f"{c['orders_sent']:,} / {c.get('orders_acked', 0):,} / {c.get('orders_rejected', 0):,}"
                f" / {c.get('orders_gap_filled', 0):,} / {c.get('orders_in_flight_at_end', 0):,}",
                "cls": "bad" if c.get("orders_in_flight_at_end") or c.get("order_stalls") else "",
            }
        )
    return out


def render(session: Session, perfetto_path: str | Path | None = None) -> str:
    """The whole page; ``perfetto_path`` is where the CLI wrote the slowest traces' Perfetto
    export, named on the page."""
    figures = {"dist": ("Percentile distribution per stage (HdrHistogram nines axis)", distribution_figure(session), ""),
               "timeline": ("Latency over time, with platform hiccups and perf counters", timeline_figure(session), "")}  # fmt: skip
    tails = session.attribution
    if tails:  # after the distribution: the tail's make-up right under the tail's height
        breakdown = ("Tick-to-trade breakdown of the tail traces", attribution.figure(tails, COLORS, latency_unit),
                     f"Of {attribution.population(tails)}: each bar is the traces at or beyond that tick-to-trade "
                     "percentile, each segment a stage's mean span in those traces, so a bar adds up to their own "
                     "mean tick-to-trade.")  # fmt: skip
        figures = {"dist": figures["dist"], "breakdown": breakdown, "timeline": figures["timeline"]}
    flame = flame_figure(session)
    if flame is not None:
        figures["flame"] = ("Where the Python time went (py-spy)", flame, "")
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
        f"{f['name']}: {_readable(str(f['value']))} — {f['fix']}"
        for f in meta.get("doctor", [])
        if f.get("status") != "ok"
    ]
    warnings += list(session.warnings) + session.recorded_warnings
    started = meta.get("start_epoch_s")
    return page(
        "report.html.j2", {k: v[1] for k, v in figures.items()},
        title=session.name, command=meta.get("command", ""), host=f"{host.get('hostname', '?')} ({host.get('cpu_model', '?')})",
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else "",
        duration=f"{session.duration_s:.1f}s", cards=cards(session), warnings=warnings, stage_rows=stage_rows,
        charts=[{"id": k, "title": v[0], "note": v[2]} for k, v in figures.items()],
        slowest=slowest,
        perfetto=str(perfetto_path) if perfetto_path else "",
        counters=[(k, f"{v:,}" if isinstance(v, int) else str(v)) for k, v in session.counters().items()],
        accounting=accounting_lines(session),
        attribution=attribution.html_rows(tails) if tails else None,
        attribution_missing=bool(session.trade_stages) and not tails,
    )  # fmt: skip
