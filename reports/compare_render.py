"""Renderers of a ``Comparison``: console table, Markdown, JUnit XML, JSON, HTML. One function each;
``tickscope compare`` (main.py) loads the sessions, writes the files and decides the exit code."""

from __future__ import annotations

import html as html_lib
import json
from xml.etree import ElementTree as ET

from tickscope.collectors.session import Session
from tickscope.collectors.session.units import fmt_ns

from .analysis.compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NOISE,
    REGRESSION,
    Comparison,
    Row,
)

STYLE = {REGRESSION: "bold red", IMPROVEMENT: "green", NOISE: "dim", INCONCLUSIVE: "yellow"}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def _ci(r: Row) -> str:
    return "n/a" if r.ci_low is None else f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}]"


def render(c: Comparison):
    """The console table, the headline and every warning (print it with ``soft_wrap`` so that a
    warning stays one line, however long: a CI log is grepped)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"tickscope compare: {c.verdict}", title_justify="left")
    for col, just in (("stage", "left"), ("pct", "left"), ("baseline", "right"), ("candidate", "right"),
                      ("change", "right"), ("95% CI", "right"), ("threshold", "right"), ("verdict", "left")):  # fmt: skip
        t.add_column(col, justify=just, no_wrap=True)
    for r in c.rows:
        t.add_row(r.tag, r.percentile, fmt_ns(r.baseline_ns), fmt_ns(r.candidate_ns), _pct(r.change), _ci(r),
                  f"±{r.threshold * 100:g}%", Text(r.verdict, style=STYLE[r.verdict]))  # fmt: skip
    lines = [
        (f"tickscope compare: {c.sides}", "bold"),
        (f"tickscope compare: {c.headline}", STYLE.get(c.verdict, "bold")),
    ]
    lines += [(f"warning: {w}", "yellow") for w in c.warnings]
    return Group(t, *(Text(text, style=style) for text, style in lines))


def markdown(c: Comparison) -> str:
    def esc(s: str) -> str:
        return html_lib.escape(s).replace("|", "\\|")

    lines = [f"### tickscope compare: **{c.verdict}**", "", esc(c.sides), "", esc(c.support), ""]
    if c.regressions:
        lines.append(
            "Regressions: "
            + ", ".join(f"`{esc(r.tag)}` {r.percentile} {_pct(r.change)}" for r in c.regressions)
        )
        lines.append("")
    lines += ["| stage | pct | baseline | candidate | change | 95% CI | threshold | verdict |",
              "|---|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in c.rows:
        verdict = f"**{r.verdict}**" if r.verdict == REGRESSION else r.verdict
        lines.append(f"| {esc(r.tag)} | {r.percentile} | {fmt_ns(r.baseline_ns)} | {fmt_ns(r.candidate_ns)} | "
                     f"{_pct(r.change)} | {_ci(r)} | ±{r.threshold * 100:g}% | {verdict} |")  # fmt: skip
    if c.warnings:
        lines += ["", *[f"> warning: {esc(w)}" for w in c.warnings]]
    lines += ["", f"<sub>Method: bootstrap of runs, then their 1 s intervals ({c.rows[0].units if c.rows else '-'}); "
              "a regression needs the whole 95% interval beyond the threshold.</sub>", ""]  # fmt: skip
    return "\n".join(lines)


def junit(c: Comparison) -> str:
    suite = ET.Element("testsuite", name="tickscope.compare", tests=str(len(c.rows)),
                       failures=str(len(c.regressions)), errors="0", skipped="0")  # fmt: skip
    for r in c.rows:
        case = ET.SubElement(
            suite, "testcase", classname=f"tickscope.{r.tag}", name=f"{r.tag} {r.percentile}", time="0"
        )
        message = (f"{r.tag} {r.percentile}: {fmt_ns(r.baseline_ns)} -> {fmt_ns(r.candidate_ns)} ({_pct(r.change)}, "
                   f"95% CI {_ci(r)}, threshold ±{r.threshold * 100:g}%): {r.verdict}")  # fmt: skip
        if r.verdict == REGRESSION:
            ET.SubElement(case, "failure", message=message, type="regression").text = message
        else:
            ET.SubElement(case, "system-out").text = message
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", c.verdict), ("decided", c.decided), ("inconclusive", len(c.inconclusive)),
                        ("headline", c.headline), ("sides", c.sides)):  # fmt: skip
        ET.SubElement(props, "property", name=name, value=str(value))
    suite.insert(0, suite[-1])  # JUnit puts <properties> before the test cases
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def json_text(c: Comparison) -> str:
    return json.dumps(c.as_dict(), indent=2)


def html(c: Comparison, base: list[Session], cand: list[Session]) -> str:
    """The table plus, per stage, the percentile distribution of every run of both sides
    (baseline solid, candidate dashed), each named."""
    from .analysis.views import distribution, run_facts
    from .html import LEGEND, NINES_TICKS, _clean, latency_axis, ns_hover, page, run_header

    figures = {}
    shades = {
        "baseline": ["#1f77b4", "#6baed6", "#08519c", "#9ecae1"],
        "candidate": ["#ff7f0e", "#fdae6b", "#a63603", "#fdd0a2"],
    }
    for i, tag in enumerate(dict.fromkeys(r.tag for r in c.rows)):
        data, values = [], []
        for label, runs, dash in (("baseline", base, "solid"), ("candidate", cand, "dash")):
            for j, s in enumerate(runs):
                x, y = distribution(s.total(tag))
                values += list(y)
                data.append({"type": "scatter", "mode": "lines", "name": f"{label} {s.name}", "x": _clean(x), "y": _clean(y),
                             **ns_hover(y), "line": {"dash": dash, "color": shades[label][j % 4]}})  # fmt: skip
        figures[f"c{i}"] = {"title": tag, "data": data, "layout": {
            "xaxis": {"type": "log", "title": {"text": "percentile"}, "tickvals": NINES_TICKS[0], "ticktext": NINES_TICKS[1]},
            "yaxis": latency_axis(values), "height": 360, "margin": {"t": 10}, "legend": LEGEND}}  # fmt: skip
    rows = [{"cls": r.verdict.replace(" ", "-"), "cells": [r.tag, r.percentile, fmt_ns(r.baseline_ns),
             fmt_ns(r.candidate_ns), _pct(r.change), _ci(r), f"±{r.threshold * 100:g}%", r.verdict]} for r in c.rows]  # fmt: skip
    charts = [{"id": k, "title": f["title"]} for k, f in figures.items()]
    headers = [run_header(_side_facts([run_facts(s.meta, s.name) for s in runs]), label)
               for label, runs in (("baseline", base), ("candidate", cand))]  # fmt: skip
    return page("compare.html.j2", {k: {"data": f["data"], "layout": f["layout"]} for k, f in figures.items()},
                title=f"compare: {c.verdict}", headers=headers, verdict=c.verdict, support=c.support, sides=c.sides,
                base_names=" + ".join(c.baseline_names), cand_names=" + ".join(c.candidate_names),
                warnings=list(dict.fromkeys(c.warnings)), rows=rows, charts=charts)  # fmt: skip


def _side_facts(facts: list[dict[str, str]]) -> dict[str, str]:
    """One side's runs in one header row: each field once when the runs agree, else every value."""
    out = {}
    for key in facts[0]:
        values = list(dict.fromkeys(f[key] for f in facts))
        out[key] = values[0] if len(values) == 1 else " | ".join(values)
    if len(facts) > 1:
        out["name"] = f"{out['name']} ({len(facts)} runs)"
    return out
