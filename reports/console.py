"""The per-stage summary table (end of ``profile``, and ``tickscope report SESSION`` without -o).

Renderables over plain data (a summary dict and counters), so the live view, the end-of-run
summary and a saved session print the same table.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tickscope.collectors.session import Session, fmt_ns

COLUMNS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))
TOTAL_TAGS = ("tick_to_trade", "tick_to_decision", "tick_to_trade_co", "tick_to_decision_co")


class StageTable:
    """Rows in pipeline order; tick-to-trade and tick-to-decision set apart at the bottom."""

    def __init__(self, summary: dict[str, dict], tags: list[str], title: str | None = None,
                 rates: dict[str, float] | None = None):  # fmt: skip
        self.summary, self.tags, self.title, self.rates = summary, tags, title, rates

    def __rich__(self) -> Table:
        t = Table(title=self.title, title_justify="left", expand=False, pad_edge=False)
        t.add_column("stage", no_wrap=True, overflow="ellipsis", max_width=24)
        t.add_column("count", justify="right")
        if self.rates is not None:
            t.add_column("rate/s", justify="right")
        for _, label in COLUMNS:
            t.add_column(label, justify="right")
        tags = [x for x in self.tags if x not in TOTAL_TAGS] + [x for x in TOTAL_TAGS if x in self.tags]
        for tag in tags:
            s = self.summary.get(tag, {"count": 0})
            cells = [Text(tag, style="bold" if tag in TOTAL_TAGS else ""), f"{s.get('count', 0):,}"]
            if self.rates is not None:
                cells.append(f"{self.rates.get(tag, 0):,.0f}")
            cells += [fmt_ns(s.get(k)) if s.get("count") else "-" for k, _ in COLUMNS]
            if tag in TOTAL_TAGS and tag == next(x for x in tags if x in TOTAL_TAGS) and t.row_count:
                t.add_section()
            t.add_row(*cells)
        return t


class CountersLine:
    """Every record accounted for, and whether the run was drop-free, in one line."""

    def __init__(self, counters: dict):
        self.c = counters

    def __rich__(self) -> Text:
        c = self.c
        dropped, malformed = c.get("dropped_ring_full", 0), c.get("malformed", 0)
        text = Text()
        text.append(f"records: produced {c.get('produced', 0):,} = drained {c.get('drained', 0):,}"
                    f" + dropped {dropped:,} (ring full)")  # fmt: skip
        text.append(f"  malformed {malformed:,}")
        text.append(
            f"\ntraces: {c.get('traces_complete', 0):,} complete, {c.get('traces_incomplete', 0):,} incomplete"
        )
        if c.get("traces_clock_skew"):
            text.append(f", {c['traces_clock_skew']:,} clock-skewed")
        if c.get("traces_evicted"):
            text.append(f", {c['traces_evicted']:,} evicted (too many open)")
        if c.get("orders_sent"):
            # Every order on the wire is answered or still in flight when the session ended.
            text.append(f"\norders: {c['orders_sent']:,} sent = {c.get('orders_acked', 0):,} acked"
                        f" + {c.get('orders_rejected', 0):,} rejected + {c.get('orders_in_flight_at_end', 0):,}"
                        " in flight at end")  # fmt: skip
            if c.get("risk_rejects"):
                text.append(f"; {c['risk_rejects']:,} held by risk")
        for key, label in (("feed_gaps", "feed gaps"), ("writers_died", "writers died"),
                           ("values_out_of_range", "values out of HDR range")):  # fmt: skip
            if c.get(key):
                text.append(f", {label} {c[key]:,}")
        if dropped == 0 and malformed == 0:
            text.append("\ndrop-free: every record produced was recorded", style="green")
        else:
            text.append(f"\nDROPS: {dropped + malformed:,} records lost", style="bold red")
        return text


def session_renderable(session: Session):
    parts = [StageTable(session.summary(), session.tags, title=f"session {session.name}")]
    if session.counters():
        parts.append(CountersLine(session.counters()))
    for w in session.warnings:
        parts.append(Text(f"warning: {w}", style="yellow"))
    return Group(*parts)
