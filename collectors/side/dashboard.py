"""The Grafana dashboard for what ``--prometheus`` exports, generated from a few typed pieces.

Why our own generator: neither ``grafanalib`` nor ``grafana-foundation-sdk`` is available to this
project's machines, and a dashboard is a page of JSON; ``Panel``/``Row``/``Query`` below are the
handful of shapes it needs, laid out on Grafana's 24-column grid here. The wheel ships the result
(``monitoring/tickscope-dashboard.json``, checked against ``dashboard()`` by a test);
``tickscope alerts --dashboard FILE`` writes it too.

Every query filters on the ``$host`` and ``$pipeline`` variables (the series identity that stays
the same across restarts) and uses Grafana's ``$__rate_interval``. Dimensions (venue, symbol, ...):
the last row holds a tick-to-trade p99 panel per dimension in ``dimensions`` (default: venue), read
from the dimension family (``tickscope_dimension_latency_seconds``), one line per value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from tickscope.collectors.side.alerting import (
    DEFAULT_DIMENSIONS,
    SERIES_LABELS,
    TICK_TO_TRADE,
    dimension_quantile_expr,
    quantile_expr,
)
from tickscope.collectors.side.prometheus import (
    CLOCK_ERROR,
    CLOCK_SYNCHRONISED,
    LATENCY,
    SESSION_INFO,
    label_name,
)

GRID_WIDTH = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SELECT = 'host=~"$host", pipeline=~"$pipeline"'
RATE_WINDOW = "$__rate_interval"
QUANTILES = ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9"))
WHOLE_TRACE = "tick_to_trade|tick_to_decision"  # not stages: spans of the whole trace


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    format: str = "time_series"  # "heatmap": one series per bucket; "table": one row per series
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | heatmap | stat | table | text
    queries: tuple[Query, ...] = ()
    width: int = 12
    height: int = 8
    unit: str = "s"
    description: str = ""
    text: str = ""  # markdown, for kind "text"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]
    collapsed: bool = False


def _latency(quantile: float, stage_match: str, by: str) -> str:
    return quantile_expr(quantile, f"{stage_match}, {SELECT}", RATE_WINDOW, by)


def _increase(metric: str, legend: str) -> Query:
    return Query(f"sum by (host, pipeline) (increase({metric}{{{SELECT}}}[{RATE_WINDOW}]))",
                 f"{legend} {{{{pipeline}}}}@{{{{host}}}}")  # fmt: skip


def rows(dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS) -> list[Row]:
    series = ", ".join(SERIES_LABELS)
    t2t = f'stage="{TICK_TO_TRADE}"'
    tick_to_trade = Row("Tick-to-trade", (
        Panel("Tick-to-trade p50, p99, p99.9", "timeseries", tuple(
            Query(_latency(q, t2t, series), f"{name} {{{{pipeline}}}}@{{{{host}}}}") for q, name in QUANTILES),
            description="From the native histograms (classic buckets where Prometheus scrapes text only), "
                        "over Grafana's rate interval: the tail of each window, not since the start."),
        Panel("Tick-to-trade distribution", "heatmap", (
            Query(f"sum(rate({LATENCY}{{{t2t}, {SELECT}}}[{RATE_WINDOW}]))", "", "heatmap"),),
            description="Native-histogram buckets (0.27 % wide) per rate interval, all selected hosts."),
    ))  # fmt: skip
    stages = Row("Stages", tuple(
        Panel(f"{name} by stage", "timeseries", (
            Query(_latency(q, f'stage!~"{WHOLE_TRACE}"', f"{series}, stage"),
                  "{{stage}} {{pipeline}}@{{host}}"),), width=8)
        for q, name in QUANTILES
    ) + (
        Panel("Throughput", "timeseries", (
            Query(f"sum by ({series}) (rate(tickscope_traces_complete_total{{{SELECT}}}[{RATE_WINDOW}]))",
                  "traces/s {{pipeline}}@{{host}}"),
            Query(f"sum by ({series}) (rate(tickscope_orders_sent_total{{{SELECT}}}[{RATE_WINDOW}]))",
                  "orders/s {{pipeline}}@{{host}}")), unit="short"),
        Panel("Running sessions", "table", (
            Query(f"{SESSION_INFO}{{{SELECT}}}", format="table", instant=True),), unit="none",
            description="The session each collector is writing now (the session label of the info metric)."),
    ))  # fmt: skip
    loss = Row("Drops and gaps", (
        Panel("Records and traces lost", "timeseries", (
            _increase("tickscope_records_dropped_total", "dropped (ring full)"),
            _increase("tickscope_traces_incomplete_total", "traces incomplete"),
            _increase("tickscope_traces_clock_skew_total", "traces clock skew")), unit="short"),
        Panel("Feed gaps, order sessions, writers", "timeseries", (
            _increase("tickscope_feed_gaps_total", "feed gaps"),
            _increase("tickscope_order_stalls_total", "order stalls"),
            _increase("tickscope_orders_gap_filled_total", "orders gap-filled"),
            _increase("tickscope_writers_died_total", "writers died")), unit="short"),
        Panel("Clock synchronised", "stat", (
            Query(f"min by ({series}) ({CLOCK_SYNCHRONISED}{{{SELECT}}})", "{{pipeline}}@{{host}}"),),
            width=6, unit="bool_yes_no", description="adjtimex: does NTP/PTP keep REALTIME synchronised?"),
        Panel("Clock estimated error", "timeseries", (
            Query(f"max by ({series}) ({CLOCK_ERROR}{{{SELECT}}})", "{{pipeline}}@{{host}}"),), width=18),
    ))  # fmt: skip
    if dimensions:
        per_dimension = tuple(
            Panel(f"Tick-to-trade p99 by {dim}", "timeseries", (
                Query(dimension_quantile_expr(0.99, TICK_TO_TRADE, dim, RATE_WINDOW, SELECT),
                      f"{{{{{label_name(dim)}}}}} {{{{pipeline}}}}@{{{{host}}}}"),),
                description=f"Each {dim} on its own (values beyond --dimension-cap are one line, \"other\"): "
                            "a tail one value has while the others hide it.")
            for dim in dimensions
        )  # fmt: skip
    else:
        per_dimension = (Panel("Per-dimension panels", "text", height=4, text=(
            "Per-venue, per-symbol panels go here: `tickscope alerts --by venue --dashboard FILE` adds a "
            "tick-to-trade p99 panel per dimension (and a per-value SLA rule).")),)  # fmt: skip
    return [tick_to_trade, stages, loss, Row("Per dimension", per_dimension, collapsed=not dimensions)]


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict:
    out = {"id": pid, "type": panel.kind, "title": panel.title,
           "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height}}  # fmt: skip
    if panel.description:
        out["description"] = panel.description
    if panel.kind == "text":
        out["options"] = {"mode": "markdown", "content": panel.text}
        return out
    out["datasource"] = DATASOURCE
    out["targets"] = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": q.expr,
                       "legendFormat": q.legend, "format": q.format, "instant": q.instant, "range": not q.instant}
                      for i, q in enumerate(panel.queries)]  # fmt: skip
    out["fieldConfig"] = {"defaults": {"unit": panel.unit}, "overrides": []}
    if panel.kind == "heatmap":  # the buckets are Prometheus's own: show them, do not re-bucket
        out["options"] = {"calculate": False, "yAxis": {"unit": panel.unit}, "cellGap": 1,
                          "color": {"mode": "scheme", "scheme": "Oranges"}}  # fmt: skip
    return out


def _variable(name: str, query: str) -> dict:
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE, "definition": query,
            "query": {"query": query, "refId": name}, "refresh": 2, "multi": True, "includeAll": True,
            "allValue": ".*", "current": {}, "sort": 1}  # fmt: skip


def dashboard(dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS) -> dict:
    """The dashboard as Grafana's JSON model (import it, or provision it as a file)."""
    panels, pid, y = [], 1, 0
    for row in rows(dimensions):
        row_json = {"id": pid, "type": "row", "title": row.title, "collapsed": row.collapsed,
                    "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1}, "panels": []}  # fmt: skip
        panels.append(row_json)
        pid, y, x, line_height = pid + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + line_height
            laid = _panel_json(panel, pid, x, y)
            # A collapsed row holds its panels; an open one is followed by them.
            (row_json["panels"] if row.collapsed else panels).append(laid)
            pid, x, line_height = pid + 1, x + panel.width, max(line_height, panel.height)
        y += line_height
    return {
        "uid": "tickscope", "title": "tickscope", "tags": ["tickscope", "latency"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}},
            _variable("host", f"label_values({SESSION_INFO}, host)"),
            _variable("pipeline", f'label_values({SESSION_INFO}{{host=~"$host"}}, pipeline)'),
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }  # fmt: skip


def render_json(dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS) -> str:
    return json.dumps(dashboard(dimensions), indent=2) + "\n"


def panel_queries(model: dict) -> Iterator[tuple[str, dict]]:
    """(panel title, target) of every query in a dashboard model, collapsed rows included."""
    for panel in model["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target
