"""Renderers of a ``Comparison``: console table, Markdown, JUnit XML, JSON, HTML. One function each."""

from __future__ import annotations

import html as html_lib
import json
from pathlib import Path
from xml.etree import ElementTree as ET

from tickscope.collectors.session.units import fmt_ns

from .compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NOISE,
    REGRESSION,
    CompareError,
    Comparison,
    Row,
    compare_sessions,
    parse_share,
)

EXIT_INCONCLUSIVE = 3  # no regression seen, but too little was decided to say so (--max-inconclusive)
STYLE = {REGRESSION: "bold red", IMPROVEMENT: "green", NOISE: "dim", INCONCLUSIVE: "yellow"}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def _ci(r: Row) -> str:
    return "n/a" if r.ci_low is None else f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}]"


def print_console(c: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"tickscope compare: {c.verdict}", title_justify="left")
    for col, just in (("stage", "left"), ("pct", "left"), ("baseline", "right"), ("candidate", "right"),
                      ("change", "right"), ("95% CI", "right"), ("threshold", "right"), ("verdict", "left")):  # fmt: skip
        t.add_column(col, justify=just, no_wrap=True)
    for r in c.rows:
        t.add_row(r.tag, r.percentile, fmt_ns(r.baseline_ns), fmt_ns(r.candidate_ns), _pct(r.change), _ci(r),
                  f"±{r.threshold * 100:g}%", Text(r.verdict, style=STYLE[r.verdict]))  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))  # CI logs: never squeeze the numbers
    console.print(t)
    console.print(
        Text(f"tickscope compare: {c.headline}", style=STYLE.get(c.verdict, "bold")), soft_wrap=True
    )
    for w in c.warnings:
        console.print(Text(f"warning: {w}", style="yellow"), soft_wrap=True)  # one line, however long


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


def html(c: Comparison) -> str:
    """The table plus overlaid percentile distributions (baseline vs candidate) per stage."""
    from plotly.offline import get_plotlyjs

    from tickscope.collectors.session import Session

    from .html import NINES_TICKS, _clean, _json_for_script
    from .views import distribution

    base, cand = Session.load(c.baselines[0]), Session.load(c.candidates[0])
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
    rows = "".join(
        f"<tr class='{r.verdict.replace(' ', '-')}'><td>{html_lib.escape(r.tag)}</td><td>{r.percentile}</td>"
        f"<td>{fmt_ns(r.baseline_ns)}</td><td>{fmt_ns(r.candidate_ns)}</td><td>{_pct(r.change)}</td><td>{_ci(r)}</td>"
        f"<td>{html_lib.escape(r.verdict)}</td></tr>"
        for r in c.rows
    )
    charts = "".join(
        f"<h3>{html_lib.escape(f['title'])}</h3><div id='{k}' data-chart='1'></div>"
        for k, f in figures.items()
    )
    warnings = "".join(f"<li>{html_lib.escape(w)}</li>" for w in c.warnings)
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tickscope compare</title>
<script>window.__errors=[];window.addEventListener("error",function(e){{window.__errors.push(String(e.message));}});</script>
<style>body{{font:14px system-ui,sans-serif;margin:24px;}}td,th{{padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
.regression td{{color:#c0392b;font-weight:600}}.improvement td{{color:#1e8e3e}}</style></head><body>
<h1>tickscope compare: {html_lib.escape(c.verdict)}</h1><p>{html_lib.escape(c.support)}</p><ul>{warnings}</ul>
<table><tr><th>stage</th><th>pct</th><th>baseline</th><th>candidate</th><th>change</th><th>95% CI</th><th>verdict</th></tr>{rows}</table>
{charts}<script>{plotly_js}</script>
<script>var F={_json_for_script(figures)};Promise.all(Object.keys(F).map(function(k){{return Plotly.newPlot(k,F[k].data,F[k].layout,{{displaylogo:false}});}}))
.then(function(){{document.body.setAttribute("data-charts-drawn",String(Array.prototype.filter.call(document.querySelectorAll("[data-chart]"),function(d){{return d.querySelector(".main-svg");}}).length));
document.body.setAttribute("data-js-errors",String(window.__errors.length));}});</script></body></html>"""


def main(
    baselines,
    candidates,
    thresholds=None,
    markdown_path=None,
    junit_path=None,
    json_path=None,
    html_path=None,
    console=True,
    max_inconclusive=None,
) -> int:
    """The CLI entry point: compare, render every requested output. 0 no regression, 1 regression,
    3 more rows inconclusive than ``max_inconclusive`` allows (a share, e.g. "50%")."""
    limit = parse_share(max_inconclusive)
    result = compare_sessions(baselines, candidates, thresholds)
    if console:
        print_console(result)
    outputs = ((markdown_path, markdown), (junit_path, junit), (json_path, json_text), (html_path, html))
    for path, render in outputs:
        if path is not None:
            try:
                Path(path).write_text(render(result), encoding="utf-8")
            except OSError as e:
                raise CompareError(f"cannot write {path}: {e.strerror or e}") from None
    if result.regressions:
        return 1
    if limit is not None and result.inconclusive_share() > limit:
        print(f"tickscope compare: {len(result.inconclusive)} of {len(result.rows)} comparisons inconclusive, "
              f"more than --max-inconclusive {limit:.0%}: failing (exit 3)")  # fmt: skip
        return EXIT_INCONCLUSIVE
    return 0
