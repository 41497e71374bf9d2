"""``tickscope report SESSION -o report.html``: one self-contained file that opens offline.

The smallest plotly.js bundle that draws the page's trace types is inlined (no CDN,
``reports.assets``); every name that came from a probe or a stage is escaped by Jinja2's
autoescaping in the HTML and as JSON inside the script (``</`` cannot close it).

The one look of the three pages (session, compare, sweep): one skeleton and stylesheet
(``templates/page.html.j2``), one header (``run_header``: name, host, date, command, offered rate
and load model), one units rule on text and axes alike (``fmt_ns``; ``latency_axis`` labels every
latency axis with it).
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
from .assets import plotly_bundle, trace_types

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
    plotly.js (the smallest bundle drawing ``figures``' trace types) and draws each of ``figures``
    into the element whose id is its key."""
    bundle, js = plotly_bundle(trace_types(figures))
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template(template).render(
        figures_json=_json_for_script(figures),
        plotly_js=Markup(js.replace("</script", "<\\/script")),
        plotly_bundle=bundle,
        **context,
    )


def _json_for_script(obj) -> Markup:
    text = json.dumps(obj, allow_nan=False).replace("</", "<\\/").replace("<!--", "<\\!--")
    return Markup(text)


def _clean(a) -> list[float]:
    return [float(x) for x in np.nan_to_num(np.asarray(a, dtype=float))]


def latency_axis(values_ns, log: bool = True, title: str = "latency") -> dict:
    """A latency axis whose data stay in nanoseconds and whose tick labels are ``fmt_ns``'s (850ns,
    12.3µs, 4.56ms): a figure reads the same on the axis, in the hover and in the tables. Log axes
    tick at 1, 2 and 5 per decade when the data span few decades, else at the decades."""
    vals = [float(v) for v in values_ns if v is not None and np.isfinite(v) and v > 0]
    lo, hi = (min(vals), max(vals)) if vals else (1.0, 1e3)
    if log:
        d0, d1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
        steps = (1, 2, 5) if d1 - d0 <= 3 else (1,)
        ticks = [m * 10.0**d for d in range(d0, d1 + 1) for m in steps if lo / 1.5 <= m * 10.0**d <= hi * 1.5]
        if len(ticks) < 2:
            ticks = [10.0**d0, 10.0**d1]
        axis = {"type": "log"}
    else:
        ticks = _nice_ticks(hi)
        axis = {"rangemode": "tozero"}
    return {**axis, "tickmode": "array", "tickvals": ticks, "ticktext": [fmt_ns(t) for t in ticks],
            "title": _title(title), "automargin": True}  # fmt: skip


def ns_hover(values_ns) -> dict:
    """A trace's hover in ``fmt_ns`` (plotly would print 123456.7)."""
    return {
        "text": [fmt_ns(v) for v in values_ns],
        "hovertemplate": "%{fullData.name}: %{text}<extra></extra>",
    }


def wall_clock(start_epoch_s: float | None, offsets_s) -> list[str]:
    """Session offsets as wall-clock times for a date axis (UTC, millisecond resolution)."""
    base = start_epoch_s or 0.0
    return [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + float(t))) + f".{int((base + float(t)) % 1 * 1000):03d}"
            for t in offsets_s]  # fmt: skip


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
    # The end-to-end curves are drawn first, wide and translucent: a stage that carries almost
    # all of the latency (wire_to_read under load) runs along them and must stay visible on top.
    order = sorted(enumerate(session.tags), key=lambda it: not it[1].startswith("tick_to"))
    data = []
    for i, tag in order:
        x, y = curves[tag]
        end_to_end = tag.startswith(("tick_to", "wire_to_wire"))
        data.append({"type": "scatter", "mode": "lines", "name": tag, "x": _clean(x), "y": _clean(y), **ns_hover(y),
                     "opacity": 0.55 if end_to_end else 1.0,
                     "line": {"color": COLORS[i % len(COLORS)], "width": 5 if end_to_end else 1.5}})  # fmt: skip
    layout = {"xaxis": {"type": "log", "title": _title("percentile"), "tickvals": NINES_TICKS[0], "ticktext": NINES_TICKS[1]},
              "yaxis": latency_axis(v for _, y in curves.values() for v in y), "margin": {"t": 10},
              "legend": LEGEND, "height": 460}  # fmt: skip
    return {"data": data, "layout": layout}


DIMENSION_FIGURES = ("p50", "p99", "p99_9", "max")
VALUE_STAGE_FIGURES = ("p50", "p90", "p99", "p99_9", "max")


def dimension_sections(session: Session) -> list[dict]:
    """Per slicing (``venue``, ``venue,symbol``): a row per value (its orders and tick-to-trade
    figures), every value's tick-to-trade nines curve on one plot, the tail attribution bars of
    every value that traded on one plot, and per value its stage table naming each row's
    population (``views.dimension_value``) and its attribution table. Values most rows first; a
    value that never traded (a symbol never quoted) keeps its stages before the fan-out."""
    out = []
    for i, (slicing, values) in enumerate(session.dimensions.items()):
        rows, data, ys, details, tails = [], [], [], [], []
        for j, value in enumerate(values):
            v = views.dimension_value(session, slicing, value)
            s, summary = v["slice"], v["slice"].summary()
            t2t = summary.get("tick_to_trade", {})
            traded = bool(t2t.get("count"))
            rows.append({"value": v["said"], "cells": [f"{v['orders']:,}", "-" if v["ticks"] is None else f"{v['ticks']:,}"]
                         + [fmt_ns(t2t.get(k)) if traded else "-" for k in DIMENSION_FIGURES]})  # fmt: skip
            # Each figure also in ns (data-ns): what a reader of the page's data compares, not the rounded text.
            stage_rows = [{"tag": tag, "population": v["populations"][tag], "count": summary.get(tag, {}).get("count", 0),
                           "cells": [(fmt_ns(row[k]), row[k]) if row.get("count") else ("-", "")
                                     for k in VALUE_STAGE_FIGURES for row in [summary.get(tag, {})]]}
                          for tag in s.tags]  # fmt: skip
            details.append({"value": v["said"], "raw": value, "title": v["title"], "stage_rows": stage_rows,
                            "attribution": attribution.html_rows(s.attribution) if s.attribution else None})  # fmt: skip
            if s.attribution:
                tails.append((v["said"], s.attribution))
            if not traded:
                continue
            x, y = views.distribution(s.total("tick_to_trade"))
            ys += list(y)
            data.append({"type": "scatter", "mode": "lines", "name": v["said"], "x": _clean(x), "y": _clean(y),
                         **ns_hover(y), "line": {"color": COLORS[j % len(COLORS)], "width": 2}})  # fmt: skip
        figure = None
        if data:
            layout = {"xaxis": {"type": "log", "title": _title("percentile"), "tickvals": NINES_TICKS[0],
                                "ticktext": NINES_TICKS[1]},
                      "yaxis": latency_axis(ys), "margin": {"t": 10}, "legend": LEGEND, "height": 380}  # fmt: skip
            figure = {"data": data, "layout": layout}
        out.append({"slicing": slicing, "id": f"dim{i}", "rows": rows, "figure": figure, "per_value": details,
                    "tails_id": f"dim{i}tails" if tails else None,
                    "tails": attribution.values_figure(tails, COLORS, latency_axis) if tails else None})  # fmt: skip
    return out


def dimension_figures(sections: list[dict]) -> dict[str, dict]:
    """The figures of ``dimension_sections`` by element id."""
    out = {}
    for d in sections:
        out.update({d["id"]: d["figure"]} if d["figure"] else {})
        out.update({d["tails_id"]: d["tails"]} if d["tails"] else {})
    return out


def timeline_figure(session: Session) -> dict:
    """Every stage's p99 per interval on a wall-clock axis (tick-to-trade's max beside it), with
    the platform's hiccups and perf's context switches."""
    start = session.meta.get("start_epoch_s")
    data, values = [], []
    for i, tag in enumerate(session.tags):
        s = views.interval_series(session, tag)
        keys = ("p99", "max") if tag == "tick_to_trade" else ("p99",)
        for k in keys:
            y = s[k]
            values += list(y)
            end_to_end = tag.startswith("tick_to")
            data.append({"type": "scatter", "mode": "lines", "name": f"{tag} {k}", "x": wall_clock(start, s["t"]),
                         "y": _clean(y), **ns_hover(y), "visible": True if k == "p99" else "legendonly",
                         "line": {"color": COLORS[i % len(COLORS)], "width": 3 if end_to_end else 1.5,
                                  "dash": "dot" if k == "max" else "solid"}})  # fmt: skip
    layout = {"xaxis": {"type": "date", "title": _title("wall clock (UTC)"), "automargin": True},
              "yaxis": latency_axis(values, title="p99 per interval"),
              "margin": {"t": 10}, "legend": LEGEND, "height": 460}  # fmt: skip
    hic = views.hiccup_series(session)
    if hic is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "platform hiccup p99", "x": wall_clock(start, hic["t"]),
                     "y": _clean(hic["p99"]), **ns_hover(hic["p99"]), "line": {"dash": "dot", "color": "#555"}})  # fmt: skip
        layout["yaxis"] = latency_axis([*values, *hic["p99"]], title="p99 per interval")
    perf = views.perf_series(session)
    cs = perf.get("context-switches")
    if cs:
        data.append({"type": "scatter", "mode": "lines", "name": "context switches/s (perf)", "x": wall_clock(start, cs[0]),
                     "y": cs[1], "yaxis": "y2", "line": {"dash": "dash", "color": "#999"}})  # fmt: skip
        # Four round labels from zero: left alone, plotly packs ten 4-digit labels into 300 px (1049/1026/1001).
        ticks = _nice_ticks(max((float(v) for v in cs[1] if v is not None), default=0))
        layout["yaxis2"] = {"overlaying": "y", "side": "right", "title": _title("context switches/s"),
                            "showgrid": False, "range": [0, ticks[-1]], "tickmode": "array", "tickvals": ticks,
                            "ticktext": [f"{v:,.6g}" for v in ticks], "automargin": True}  # fmt: skip
    return {"data": data, "layout": layout}


def waterfall_figure(session: Session) -> dict | None:
    """The slowest traces, one row each, every stage a bar from its first stamp to its last
    (relative to the trace's first stamp): where each slow trace spent its time."""
    rows = views.waterfalls(session)
    if not rows:
        return None
    stages = list(dict.fromkeys(seg["stage"] for r in rows for seg in r["segments"]))
    labels = [f"trace {r['trace_id']} · {fmt_ns(r['tick_to_trade_ns'])}" for r in rows]
    data = []
    for i, stage in enumerate(stages):
        ys, xs, bases, text = [], [], [], []
        for label, r in zip(labels, rows, strict=True):
            for seg in r["segments"]:
                if seg["stage"] == stage:
                    ys.append(label)
                    xs.append(seg["dur_ns"])
                    bases.append(seg["start_ns"])
                    text.append(f"{fmt_ns(seg['dur_ns'])} from +{fmt_ns(seg['start_ns'])}")
        data.append({"type": "bar", "orientation": "h", "name": stage, "y": ys, "x": xs, "base": bases, "text": text,
                     "textposition": "none", "hovertemplate": "%{y}<br>%{fullData.name}: %{text}<extra></extra>",
                     "marker": {"color": COLORS[i % len(COLORS)]}})  # fmt: skip
    ends = [seg["start_ns"] + seg["dur_ns"] for r in rows for seg in r["segments"]]
    layout = {"barmode": "overlay", "xaxis": latency_axis([0, *ends], log=False, title="time since the trace's first stamp"),
              "yaxis": {"autorange": "reversed", "automargin": True, "type": "category"}, "margin": {"t": 10},
              "legend": LEGEND, "height": 140 + 24 * len(rows)}  # fmt: skip
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
    if orders := views.orders_in_words(c):
        out.append({"k": "orders sent", "v": orders["sent"], "cls": "wide bad" if orders["bad"] else "wide",
                    "lines": orders["lines"], "zeros": orders["zeros"]})  # fmt: skip
    return out


def run_header(facts: dict[str, str], label: str = "") -> dict:
    """One header row of a page (``views.run_facts``): the fields every page shows, in one order."""
    fields = [(k, facts[k]) for k in ("host", "date", "command", "offered rate", "load model")]
    return {
        "label": label,
        "name": facts["name"],
        "fields": fields,
        "raw_command": facts.get("raw_command", ""),
    }


def page_warnings(session: Session) -> list[str]:
    """The host's doctor findings and the session's warnings, each fact once: a warning the run
    recorded about a tool (``perf: events not supported ...``) stands for the doctor's finding
    about the same tool (``perf hardware counters``), which said it first and less exactly."""
    recorded = list(session.warnings) + list(session.recorded_warnings)
    topics = {w.split(":", 1)[0].strip().lower() for w in recorded if ":" in w}
    doctor = [f"{f['name']}: {_readable(str(f['value']))} — {f['fix']}"
              for f in session.meta.get("doctor", [])
              if f.get("status") != "ok" and str(f.get("name", "")).split(" ", 1)[0].lower() not in topics]  # fmt: skip
    return list(dict.fromkeys(doctor + recorded))


def render(session: Session, perfetto_path: str | Path | None = None) -> str:
    """The whole page; ``perfetto_path`` is where the CLI wrote the slowest traces' Perfetto
    export, named on the page."""
    figures = {"dist": ("Percentile distribution per stage (HdrHistogram nines axis)", distribution_figure(session), ""),
               "timeline": ("Latency over time per stage, with platform hiccups and perf counters", timeline_figure(session),
                            "p99 of each interval, on the wall clock; click a legend entry to show or hide it.")}  # fmt: skip
    tails = session.attribution
    if tails:  # after the distribution: the tail's make-up right under the tail's height
        breakdown = ("Tick-to-trade breakdown of the tail traces", attribution.figure(tails, COLORS, latency_axis),
                     f"Of {attribution.population(tails)}: each bar is the traces at or beyond that tick-to-trade "
                     "percentile, each segment a stage's mean span in those traces, so a bar adds up to their own "
                     "mean tick-to-trade.")  # fmt: skip
        figures = {"dist": figures["dist"], "breakdown": breakdown, "timeline": figures["timeline"]}
    waterfall = waterfall_figure(session)
    if waterfall is not None:
        note = f"The {len(session.slowest)} slowest tick-to-trade traces, slowest first: each stage from its first stamp to its last."
        if perfetto_path:
            note += f" Perfetto export: {perfetto_path}"
        figures["waterfall"] = ("Slowest traces, stage by stage", waterfall, note)
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
    keys = ("count", "min", "p50", "p90", "p99", "p99_9", "p99_99", "max", "mean")
    stage_rows = [{"tag": tag, "cells": [f"{summary.get(tag, {}).get('count', 0):,}"]
                   + [fmt_ns(summary.get(tag, {}).get(k)) for k in keys[1:]]} for tag in session.tags]  # fmt: skip
    counters, zeros = views.counters_in_words(session.counters())
    dimensions = dimension_sections(session)
    recorded = session.meta.get("incidents") if isinstance(session.meta.get("incidents"), dict) else None
    incidents = [{"time": i["time_utc"], "trigger": i["trigger"], "value": fmt_ns(i["value_ns"]),
                  "trace_id": i["trace_id"], "traces": i["traces"], "json": (i["dir"] / "incident.json").resolve().as_uri(),
                  "perfetto": i["perfetto"].resolve().as_uri(), "unavailable": ", ".join(i["unavailable"])}
                 for i in session.incidents()]  # fmt: skip
    return page(
        "report.html.j2", {**{k: v[1] for k, v in figures.items()}, **dimension_figures(dimensions)},
        title=session.name, dimensions=dimensions,
        headers=[run_header(views.run_facts(session.meta, session.name))],
        duration=f"{session.duration_s:.1f}s", cards=cards(session), warnings=page_warnings(session), stage_rows=stage_rows,
        charts=[{"id": k, "title": v[0], "note": v[2]} for k, v in figures.items()],
        slowest=slowest, counters=counters, zero_counters=zeros, incidents=incidents, incidents_recorded=recorded,
        accounting=accounting_lines(session),
        attribution=attribution.html_rows(tails) if tails else None,
        attribution_missing=bool(session.trade_stages) and not tails,
    )  # fmt: skip
