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
    lines = [(f"tickscope compare: {c.headline}", STYLE.get(c.verdict, "bold"))]
    lines += [(f"warning: {w}", "yellow") for w in c.warnings]
    return Group(t, *(Text(text, style=style) for text, style in lines))


def markdown(c: Comparison) -> str:
    def esc(s: str) -> str:
        return html_lib.escape(s).replace("|", "\\|")

    lines = [f"### tickscope compare: **{c.verdict}**", "", esc(c.support), ""]
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
                        ("headline", c.headline)):  # fmt: skip
        ET.SubElement(props, "property", name=name, value=str(value))
    suite.insert(0, suite[-1])  # JUnit puts <properties> before the test cases
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def json_text(c: Comparison) -> str:
    return json.dumps(c.as_dict(), indent=2)


def html(c: Comparison, base: Session, cand: Session) -> str:
    """The table plus overlaid percentile distributions of ``base`` and ``cand`` (the first
    baseline and candidate) per stage."""
    from .analysis.views import distribution
    from .html import NINES_TICKS, _clean, page

    figures = {}
    for i, tag in enumerate(dict.fromkeys(r.tag for r in c.rows)):
        data = []
        for label, s, dash in (("baseline", base, "solid"), ("candidate", cand, "dash")):
            x, y = distribution(s.total(tag))
            data.append({"type": "scatter", "mode": "lines", "name": label, "x": _clean(x), "y": _clean(y / 1e3),
                         "line": {"dash": dash}})  # fmt: skip
        figures[f"c{i}"] = {"title": tag, "data": data, "layout": {
            "xaxis": {"type": "log", "title": {"text": "percentile"}, "tickvals": NINES_TICKS[0], "ticktext": NINES_TICKS[1]},
            "yaxis": {"type": "log", "title": {"text": "latency (µs)"}}, "height": 320, "margin": {"t": 10}}}  # fmt: skip
    rows = [{"cls": r.verdict.replace(" ", "-"), "cells": [r.tag, r.percentile, fmt_ns(r.baseline_ns),
             fmt_ns(r.candidate_ns), _pct(r.change), _ci(r), r.verdict]} for r in c.rows]  # fmt: skip
    charts = [{"id": k, "title": f["title"]} for k, f in figures.items()]
    return page("compare.html.j2", {k: {"data": f["data"], "layout": f["layout"]} for k, f in figures.items()},
                verdict=c.verdict, support=c.support, warnings=c.warnings, rows=rows, charts=charts)  # fmt: skip
