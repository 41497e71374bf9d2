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


HEAD = ("offered", "achieved/s", *(c for _, c in COLUMNS), "p99 CO", "drops", "gaps", "verdict")


class RunningTable:
    """The sweep's progress as it runs: a header, then one aligned row per step as it ends (a CI
    log reads it as a table; the full table follows at the end)."""

    WIDTHS = (14, 10, 8, 8, 8, 8, 8, 8, 7, 5)

    def __init__(self):
        self.started = False

    def _line(self, cells) -> str:
        fixed = [f"{c:>{w}}" for c, w in zip(cells, self.WIDTHS, strict=False)]
        return "  ".join([*fixed, *cells[len(self.WIDTHS) :]]).rstrip()

    def row(self, step: Step) -> str:
        """The step's row, after the header the first time."""
        line = self._line(step_cells(step))
        if not self.started:
            self.started = True
            return self._line(list(HEAD)) + "\n" + line
        return line


def run_facts(result: SweepResult) -> dict[str, str]:
    """The page header's fields of a sweep (``views.run_facts`` for a session)."""
    import time

    host = result.host or {}
    rates = [s.offered for s in result.steps]
    return {
        "name": "sweep",
        "host": f"{host.get('hostname', '?')} ({host.get('cpu_model', '?')})" if host else "?",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.started_epoch_s)) if result.started_epoch_s else "?",
        "command": " ".join(result.argv) if result.argv else ("-- " + " ".join(result.command) if result.command else "?"),
        "offered rate": f"{rate_label(min(rates))}/s .. {rate_label(max(rates))}/s in {len(rates)} steps" if rates else "?",
        "load model": result.load or ("set by the command" if result.command else "?"),
    }  # fmt: skip


def html(result: SweepResult, step_reports: dict[str, str] | None = None) -> str:
    """Percentiles (and CO-corrected p99) against offered load, both axes log; SLA lines dotted;
    the knee and the sustainable rate marked; achieved against offered rate; each step's row
    linking to its report (``step_reports``: a step's session -> the href the CLI wrote it at)."""
    from .html import LEGEND, latency_axis, ns_hover, page, run_header

    steps = [s for s in result.steps if s.latency]
    x = [s.offered for s in steps]
    values = [v for s in steps for v in (*s.latency.values(), *s.latency_co.values())] + list(
        result.sla.values()
    )
    data = []
    for key, name in COLUMNS:
        y = [s.latency.get(key) for s in steps]
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": y, **ns_hover(y)})
    if any(s.latency_co for s in steps):
        y = [(s.latency_co or {}).get("p99") for s in steps]
        data.append({"type": "scatter", "mode": "lines+markers", "name": "p99 (CO-corrected)", "x": x, "y": y,
                     **ns_hover(y), "line": {"dash": "dash"}})  # fmt: skip
    shapes, notes = [], []
    for name, limit in result.sla.items():
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": limit, "y1": limit,
                       "line": {"dash": "dot", "color": "#c0392b"}})  # fmt: skip
        notes.append({"xref": "paper", "x": 0, "y": _log10(limit), "yanchor": "bottom", "xanchor": "left",
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
    rate_axis = {"type": "log", "title": {"text": "offered load (messages/s)"}, "tickmode": "array", "tickvals": x,
                 "ticktext": [rate_label(r) for r in x], "automargin": True}  # fmt: skip
    latency = {"data": data, "layout": {
        "xaxis": rate_axis, "yaxis": latency_axis(values, title="tick-to-trade latency"),
        "shapes": shapes, "annotations": notes, "height": 540, "margin": {"t": 60}, "legend": LEGEND}}  # fmt: skip
    measured = [s for s in result.steps if s.achieved is not None]
    top = max([s.offered for s in measured] + [s.achieved for s in measured], default=1)
    low = min([s.offered for s in measured] + [s.achieved or top for s in measured], default=1)
    throughput = {"data": [
        {"type": "scatter", "mode": "lines", "name": "achieved = offered", "x": [low, top], "y": [low, top],
         "line": {"dash": "dot", "color": "#999"}},
        {"type": "scatter", "mode": "lines+markers", "name": "achieved", "x": [s.offered for s in measured],
         "y": [s.achieved for s in measured], "text": [f"{s.achieved:,.0f}/s of {rate_label(s.offered)}/s" for s in measured],
         "hovertemplate": "%{text}<extra></extra>", "line": {"color": "#1f77b4"}}],
        "layout": {"xaxis": {**rate_axis, "tickvals": [s.offered for s in measured],
                             "ticktext": [rate_label(s.offered) for s in measured]},
                   "yaxis": {"type": "log", "title": {"text": "achieved (ticks/s)"}, "automargin": True},
                   "height": 380, "margin": {"t": 10}, "legend": LEGEND}}  # fmt: skip
    links = step_reports or {}
    rows = [{"cells": step_cells(s), "href": links.get(s.session)} for s in result.steps]
    figures = {"sweep": latency, "throughput": throughput}
    return page("sweep.html.j2", figures, title="sweep", headers=[run_header(run_facts(result))],
                headline=headline(result), head=HEAD, rows=rows)  # fmt: skip


def _log10(v: float) -> float:
    import math

    return math.log10(v) if v > 0 else 0.0
