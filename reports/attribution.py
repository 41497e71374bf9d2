"""Tail attribution, rendered: where the time of the traces at or beyond tick-to-trade's p50, p99
and p99.9 went, from summary.json's ``attribution`` (or a live ``Snapshot.attribution``).

Each tail's bar stacks the stages' mean spans *in that tail's traces*, so it adds up to those
traces' own mean tick-to-trade; every table and bar names its population (docs/concepts.md).
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tickscope.collectors.session.units import fmt_ns

LABELS = {"p50": "p50", "p99": "p99", "p99_9": "p99.9"}


def median_share(stage: dict) -> str:
    """'42%', or '–' where the median is unknown (a merged session: docs/fleet.md)."""
    m = stage.get("median_share")
    return "–" if m is None else f"{m:.0%}"


def _percent(share: float | None) -> float | None:
    return None if share is None else share * 100  # null: plotly shows no number, not 0 %


def tails(attr: dict | None, keys=tuple(LABELS)) -> list[tuple[str, dict]]:
    if not attr:
        return []
    return [(k, attr["tails"][k]) for k in keys if k in attr.get("tails", {})]


def population(attr: dict) -> str:
    """'1,684 orders': the whole population the tails are cut from."""
    return f"{attr['traces']:,} {attr.get('population', 'orders')}"


def tail_label(key: str, tail: dict) -> str:
    """'p99: 17 traces >= 1.23ms': who is in the tail."""
    n = tail["traces"]
    return f"{LABELS.get(key, key)}: {n:,} trace{'s' if n != 1 else ''} ≥ {fmt_ns(tail['threshold_ns'])}"


class AttributionTable:
    """Per stage and tail: the stage's mean span in the tail's traces, and its share (mean of the
    per-trace shares / median share). Each column's means add up to its tick_to_trade row (the
    tail's mean tick-to-trade)."""

    def __init__(self, attr: dict, title: str | None = None):
        self.attr, self.title = attr, title

    def __rich__(self) -> Table:
        attr = self.attr
        title = self.title or (
            f"tail attribution of {population(attr)}: per stage, its mean span in the traces at or beyond "
            "tick-to-trade pXX and its share (mean/median)"
        )
        t = Table(title=title, title_justify="left", expand=False, pad_edge=False)
        t.add_column("stage", no_wrap=True, overflow="ellipsis", max_width=24)
        shown = tails(attr)
        for key, tail in shown:
            n = tail["traces"]
            t.add_column(f"{LABELS[key]} tail\n{n:,} ≥ {fmt_ns(tail['threshold_ns'])}", justify="right")
        for stage in attr["stages"]:
            cells = [stage]
            for _, tail in shown:
                s = tail["stages"][stage]
                cells.append(f"{fmt_ns(round(s['mean_ns']))} {s['mean_share']:.0%}/{median_share(s)}")
            t.add_row(*cells)
        t.add_section()
        cells = [Text("tick_to_trade", style="bold")]
        cells += [f"{fmt_ns(round(tail['mean_tick_to_trade_ns']))} 100%" for _, tail in shown]
        t.add_row(*cells)
        sampled = [LABELS[k] for k, tail in shown if tail.get("median", {}).get("method") == "sampled"]
        if sampled:
            t.caption = f"median shares of {', '.join(sampled)} from a uniform sample of the tail (see docs/concepts.md)"
        if "merged" in attr:
            t.caption = ("merged: each tail the union of the inputs' own tails; median shares (–) are not "
                         "mergeable (see docs/fleet.md)")  # fmt: skip
        return t


def cells(shares: list[float], width: int) -> list[int]:
    """Bar cells per stage summing to exactly ``width`` (largest remainder), at least one for any
    stage with a share, so a small stage stays visible and the bar never wraps."""
    raw = [x * width for x in shares]
    n = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - n[i], reverse=True)[: width - sum(n)]:
        n[i] += 1
    for i, x in enumerate(shares):
        if x > 0 and n[i] == 0:
            n[i] = 1
            n[max(range(len(n)), key=n.__getitem__)] -= 1
    return n


class TailBars:
    """The live view's breakdown: one bar per tail, each stage's width its mean span in the tail's
    traces over their mean tick-to-trade (so the bar is those traces' tick-to-trade)."""

    def __init__(self, attr: dict | None, width: int = 60, compact: bool = False, palette=("cyan",)):
        self.attr, self.width, self.compact, self.palette = attr, width, compact, palette

    def shares(self, tail: dict) -> list[float]:
        total = tail["mean_tick_to_trade_ns"] or 1
        return [tail["stages"][s]["mean_ns"] / total for s in self.attr["stages"]]

    def __rich__(self):
        shown = tails(self.attr, ("p50", "p99") if self.compact else tuple(LABELS))
        if not shown:
            return Text("(waiting for complete traces)", style="dim")
        lines = [Text(f"of {population(self.attr)}, the traces at or beyond tick-to-trade pXX:", style="dim")]
        labels = [tail_label(k, tail) for k, tail in shown]
        pad = max(len(x) for x in labels) + 1
        for label, (_, tail) in zip(labels, shown, strict=True):
            bar = Text(f"{label:<{pad}}")
            for i, n in enumerate(cells(self.shares(tail), max(10, self.width - pad - 10))):
                bar.append("█" * n, style=self.palette[i % len(self.palette)])
            bar.append(f" {fmt_ns(round(tail['mean_tick_to_trade_ns']))}")
            lines.append(bar)
        key = shown[-1]
        legend = Text(f"mean share at {'/'.join(LABELS[k] for k, _ in shown)}: ", style="dim")
        for i, stage in enumerate(self.attr["stages"]):
            legend.append("■ ", style=self.palette[i % len(self.palette)])
            if self.compact:
                legend.append(
                    f"{stage} {key[1]['stages'][stage]['mean_ns'] / (key[1]['mean_tick_to_trade_ns'] or 1):.0%}  "
                )
            else:
                legend.append(
                    f"{stage} " + "/".join(f"{sh[i]:.0%}" for sh in (self.shares(t) for _, t in shown)) + "  "
                )
        lines.append(legend)
        return Group(*lines)


def figure(attr: dict, colors: list[str], latency_axis) -> dict:
    """Plotly stacked bars for the HTML report: one bar per tail, a segment per stage (its mean
    span in the tail's traces), adding up to the tail's mean tick-to-trade. ``latency_axis``
    (reports.html's) labels the nanosecond axis in ``fmt_ns``."""
    return _bars([(tail_label(k, t), t) for k, t in tails(attr)], attr["stages"], colors, latency_axis, 55)


def values_figure(attrs: list[tuple[str, dict]], colors: list[str], latency_axis) -> dict:
    """``figure`` for every value of one slicing on one plot (``XNAS · p99: 4 traces ≥ 12.0µs``),
    each value's bars over its own population, so values compare tail against tail."""
    stages = list(dict.fromkeys(s for _, a in attrs for s in a["stages"]))
    bars = [(f"{value} · {tail_label(k, t)}", t) for value, a in attrs for k, t in tails(a)]
    return _bars(bars, stages, colors, latency_axis, 26)


def _bars(
    bars: list[tuple[str, dict]], stages: list[str], colors: list[str], latency_axis, per_bar: int
) -> dict:
    labels = [label for label, _ in bars]
    zero = {"mean_ns": 0.0, "mean_share": 0.0, "median_share": None}  # a stage a value's traces never took
    data = []
    for i, stage in enumerate(stages):
        of = [t["stages"].get(stage, zero) for _, t in bars]
        data.append({"type": "bar", "orientation": "h", "name": stage, "y": labels,
                     "x": [s["mean_ns"] for s in of],
                     "text": [fmt_ns(s["mean_ns"]) for s in of], "textposition": "none",
                     "customdata": [[s["mean_share"] * 100, _percent(s["median_share"])] for s in of],
                     "marker": {"color": colors[i % len(colors)]},
                     "hovertemplate": "%{y}<br>mean %{text}, share mean %{customdata[0]:.0f}% "
                     "median %{customdata[1]:.0f}%<extra>" + stage.replace("<", "&lt;") + "</extra>"})  # fmt: skip
    peak = max((t["mean_tick_to_trade_ns"] for _, t in bars), default=0)
    layout = {"barmode": "stack", "xaxis": latency_axis([0, peak], log=False,
                                                       title="mean span in the tail's traces (adds up to their mean tick-to-trade)"),
              "yaxis": {"autorange": "reversed", "automargin": True}, "margin": {"t": 10},
              "height": 160 + per_bar * len(labels),
              "legend": {"orientation": "h", "traceorder": "normal", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"}}  # fmt: skip
    return {"data": data, "layout": layout}


def html_rows(attr: dict) -> dict:
    """The HTML table: headers (one per tail) and a row per stage, then tick_to_trade."""
    shown = tails(attr)
    rows = [{"stage": s, "cells": [f"{fmt_ns(round(t['stages'][s]['mean_ns']))} · {t['stages'][s]['mean_share']:.0%}"
                                   f" / {median_share(t['stages'][s])}" for _, t in shown]}
            for s in attr["stages"]]  # fmt: skip
    rows.append(
        {
            "stage": "tick_to_trade",
            "cells": [f"{fmt_ns(round(t['mean_tick_to_trade_ns']))} · 100%" for _, t in shown],
        }
    )
    return {"population": population(attr), "heads": [tail_label(k, t) for k, t in shown], "rows": rows}


def render(attr: dict, /) -> AttributionTable:
    """The console table of a tail attribution (``Session.attribution`` or ``Snapshot.attribution``)."""
    return AttributionTable(attr)
