"""``tickscope doctor``'s table: one row per finding of ``collectors.run.doctor`` (as plain dicts:
``name``, ``status`` ok/warn/fail, ``value``, ``fix``), the status coloured."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def render(findings: list[dict]) -> Table:
    t = Table(title="tickscope doctor: is this host fit to measure?", title_justify="left")
    t.add_column("check", no_wrap=True)
    t.add_column("", no_wrap=True)
    t.add_column("value")
    t.add_column("fix")
    for f in findings:
        t.add_row(f["name"], Text(f["status"], style=STYLE[f["status"]]), Text(f["value"]), Text(f["fix"]))
    return t
