"""Renderers: what a session (or an analysis of sessions) looks like to a reader.

The contract every renderer module keeps (pinned by tests/reports/test_renderer_contract.py):

- one entry point, ``render(subject, /, **options)``, that returns a ``str`` (HTML, Markdown, JSON,
  XML) or a Rich renderable (a table, a group of lines) and nothing else happens: no printing;
- the subject is a ``Session`` or another type of the session package, an analysis result of
  ``reports.analysis`` (``Comparison``), or plain data (doctor's findings, bench's figures as
  dicts): a renderer never reaches into the collectors;
- a renderer never loads or writes files: the CLI (``main.py``) loads the sessions, hands them
  over, and writes or prints what comes back, so it alone decides paths, errors and exit codes;
- a module may offer more formats of the same subject beside ``render`` (``compare_render``:
  Markdown, JUnit, JSON, HTML), each keeping the same rules.

What several renderers share is computed once, in ``reports.analysis`` (views, compare statistics,
merge), and every HTML page extends the one skeleton ``templates/page.html.j2``.
"""

from __future__ import annotations

from typing import Any, Protocol

# The renderer modules, and the subject each renders.
RENDERERS = {
    "console": "Session: the stage table, the records accounted for, the warnings",
    "live": "Snapshot: the live dashboard for a terminal of a given size",
    "html": "Session: the self-contained HTML report",
    "perfetto": "Session: the slowest traces as Chrome trace-event JSON",
    "compare_render": "Comparison: the console table (and Markdown, JUnit, JSON, HTML)",
    "sweep_render": "SweepResult: the table and headline (and the HTML load curve)",
    "attribution": "a session's tail attribution (summary.json's dict): the table (and live bars, HTML figure)",
    "doctor": "findings as dicts: the doctor table",
    "bench": "bench figures as a dict: the table against the targets",
}


class Renderer(Protocol):
    """``render(subject, /, **options) -> str | rich.console.RenderableType``."""

    def __call__(self, subject: Any, /, **options: Any) -> Any: ...
