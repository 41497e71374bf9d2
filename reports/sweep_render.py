"""Renderers of a ``SweepResult``: the console table (one row per step) and the HTML plot of
latency percentiles against offered load, with the SLA lines and the knee."""

from __future__ import annotations

from tickscope.collectors.session.sweep import Step, SweepResult, rate_label
from tickscope.collectors.session.units import fmt_ns

COLUMNS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))


def step_cells(s: Step) -> list[str]:
    achieved = f"{s.achieved:,.0f}" if s.achieved is not None else "-"
    cells = [f"{rate_label(s.offered)}/s" + (f" ({s.speed})" if s.speed else ""), achieved]
    cells += [fmt_ns(s.latency.get(k)) for k, _ in COLUMNS]
    cells += [fmt_ns(s.latency_co.get("p99")) if s.latency_co else "-", f"{s.drops:,}", f"{s.gaps:,}"]
    verdict = (
        "error"
        if s.error
        else "interrupted"
        if s.interrupted
        else "meets SLA"
        if s.meets_sla
        else "misses SLA"
    )
    cells.append("; ".join([verdict, *s.flags]))
    return cells


def table(result: SweepResult):
    from rich.table import Table

    sla = ", ".join(f"{k} ≤ {fmt_ns(v)}" for k, v in result.sla.items()) or "none (drops and rate only)"
    t = Table(title=f"tickscope sweep: SLA {sla}", title_justify="left")
    for col in ("offered", "achieved/s", *(c for _, c in COLUMNS), "p99 CO", "drops", "gaps", "verdict"):
        t.add_column(col, justify="left" if col == "verdict" else "right", no_wrap=col != "verdict")
    for s in result.steps:
        t.add_row(*step_cells(s))
    return t


def render(result: SweepResult):
    """The table, then the stop reason, the sustainable throughput and the knee, one line each."""
    from rich.console import Group
    from rich.text import Text

    return Group(table(result), *(Text(line) for line in headline(result)))


def headline(result: SweepResult) -> list[str]:
    lines = []
    if result.stopped:
        lines.append(result.stopped)
    sus = result.sustainable_rate
    # Without --sla a step is judged on drops and achieved rate alone: say so, never "the SLA".
    if result.sla:
        why = "highest offered rate meeting the SLA" if sus else "no offered rate met the SLA"
    else:
        why = ("highest offered rate without drops or a missed rate" if sus
               else "every offered rate dropped records or missed its rate") + "; no --sla given"  # fmt: skip
    lines.append(f"sustainable throughput: {f'{rate_label(sus)}/s' if sus else 'none'} ({why})")
    knee = result.knee_rate
    lines.append(f"knee: {rate_label(knee)}/s ({result.knee_method})" if knee
                 else f"knee: not found ({result.knee_method}; needs 3+ steps on a curve that bends upward)")  # fmt: skip
    return lines


def html(result: SweepResult) -> str:
    """Percentiles (and CO-corrected p99) against offered load, both axes log; SLA lines dotted;
    the knee and the sustainable rate marked."""
    from .html import LEGEND, LOG_DECADES, latency_unit, page

    steps = [s for s in result.steps if s.latency]
    x = [s.offered for s in steps]
    peak = max([v or 0 for s in steps for v in (*s.latency.values(), *s.latency_co.values())] + list(result.sla.values()),
               default=0)  # fmt: skip
    unit, scale = latency_unit(peak)
    data = []
    for key, name in COLUMNS:
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": x,
                     "y": [(s.latency.get(key) or 0) / scale for s in steps]})  # fmt: skip
    if any(s.latency_co for s in steps):
        data.append({"type": "scatter", "mode": "lines+markers", "name": "p99 (CO-corrected)", "x": x,
                     "y": [((s.latency_co or {}).get("p99") or 0) / scale for s in steps], "line": {"dash": "dash"}})  # fmt: skip
    shapes, notes = [], []
    for name, limit in result.sla.items():
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": limit / scale, "y1": limit / scale,
                       "line": {"dash": "dot", "color": "#c0392b"}})  # fmt: skip
        notes.append({"xref": "paper", "x": 0, "y": _log10(limit / scale), "yanchor": "bottom", "xanchor": "left",
                      "text": f"SLA {name} ≤ {fmt_ns(limit)}", "showarrow": False, "font": {"color": "#c0392b"}})  # fmt: skip
    for rate, label, color in (
        (result.knee_rate, "knee", "#8e44ad"),
        (result.sustainable_rate, "sustainable", "#1e8e3e"),
    ):
        if rate:
            shapes.append({"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": rate, "x1": rate,
                           "line": {"dash": "dash", "color": color}})  # fmt: skip
            notes.append({"yref": "paper", "y": 1, "x": _log10(rate), "yanchor": "bottom",
                          "text": f"{label} {rate_label(rate)}/s", "showarrow": False, "font": {"color": color}})  # fmt: skip
    figure = {"data": data, "layout": {
        "xaxis": {"type": "log", "title": {"text": "offered load (messages/s)"}, "tickmode": "array", "tickvals": x,
                  "ticktext": [rate_label(r) for r in x]},
        "yaxis": {**LOG_DECADES, "title": {"text": f"tick-to-trade latency ({unit})"}},
        "shapes": shapes, "annotations": notes, "height": 540, "margin": {"t": 60}, "legend": LEGEND}}  # fmt: skip
    head = ("offered", "achieved/s", *(c for _, c in COLUMNS), "p99 CO", "drops", "gaps", "verdict")
    return page("sweep.html.j2", {"sweep": figure}, headline=headline(result), head=head,
                rows=[step_cells(s) for s in result.steps])  # fmt: skip


def _log10(v: float) -> float:
    import math

    return math.log10(v) if v > 0 else 0.0
