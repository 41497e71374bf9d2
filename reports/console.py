"""The per-stage summary table (end of ``profile``, and ``tickscope report SESSION`` without -o).

Renderables over plain data (a summary dict and counters), so the live view, the end-of-run
summary and a saved session print the same table.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tickscope.collectors.session import Session, SessionError, trace_accounting
from tickscope.collectors.session.units import fmt_ns

from .analysis import views
from .attribution import AttributionTable

COLUMNS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))
COMPACT = (("p50", "p50"), ("p99", "p99"), ("max", "max"))
# The live table's columns as a terminal widens, most wanted first: (summary key, label, cumulative?).
GROWTH = [("p50", "p50", False), ("p99", "p99", False), ("max", "max", False), ("p90", "p90", False),
          ("p99_9", "p99.9", False), ("p99", "p99 all", True), ("max", "max all", True),
          ("p99_99", "p99.99", False), ("mean", "mean", False), ("p99_9", "p99.9 all", True),
          ("p50", "p50 all", True), ("mean", "mean all", True)]  # fmt: skip
DISPLAY = sorted(
    GROWTH, key=lambda c: (c[2], ["p50", "p90", "p99", "p99_9", "p99_99", "max", "mean"].index(c[0]))
)
# each coordinated-omission-corrected figure right under its raw one
TOTAL_TAGS = ("tick_to_trade", "tick_to_trade_co", "tick_to_decision", "tick_to_decision_co")


class StageTable:
    """Rows in pipeline order; tick-to-trade and tick-to-decision set apart at the bottom, then
    ``trailing`` tags (the live view's side tags, e.g. wire_to_wire).

    One widget for the end-of-run summary, a saved session and the live view: ``framed`` is the
    boxed table with a count column (a summary), unframed is the live view's (rates and the last
    interval's percentiles, ``cumulative`` percentiles beside them). ``width`` (the live view's
    terminal) chooses the columns: p50/p99/max always, then more in ``GROWTH`` order while they fit,
    and the table fills that width; ``compact`` keeps p50/p99/max."""

    def __init__(self, summary: dict[str, dict], tags: list[str], title: str | None = None,
                 rates: dict[str, float] | None = None, *, cumulative: dict[str, dict] | None = None,
                 trailing: list[str] = (), compact: bool = False, framed: bool = True,
                 width: int | None = None):  # fmt: skip
        self.summary, self.tags, self.title, self.rates = summary, tags, title, rates
        self.cumulative, self.trailing, self.compact, self.framed = cumulative, trailing, compact, framed
        self.width = width

    def _tags(self) -> list[str]:
        tags = [x for x in self.tags if x not in TOTAL_TAGS] + [x for x in TOTAL_TAGS if x in self.tags]
        return tags + [x for x in self.trailing if x not in tags]

    def columns(self) -> list[tuple[str, str, bool]]:
        """(summary key, label, cumulative?) in display order."""
        if self.width is None:
            cols = [(k, label, False) for k, label in (COLUMNS if not self.compact else COMPACT)]
            if self.cumulative is not None:
                cols += [("p99", "p99 all", True), ("max", "max all", True)]
            return cols
        growth = [c for c in GROWTH if self.cumulative is not None or not c[2]]
        stage = min(20, max((len(t) for t in self._tags()), default=5))
        used = stage + (9 if self.rates is not None else 0) + (8 if self.framed else 0)
        chosen = []
        for col in growth:
            need = max(len(col[1]), 7) + 2  # a latency is at most 7 characters (fmt_ns), plus padding
            if used + need > self.width and len(chosen) >= 3:
                break
            chosen.append(col)
            used += need
        return [c for c in DISPLAY if c in chosen]

    def __rich__(self) -> Table:
        expand = self.width is not None
        if self.framed:
            t = Table(title=self.title, title_justify="left", expand=expand, pad_edge=False)
        else:
            t = Table(title=self.title, expand=expand, pad_edge=False, box=None, show_edge=False)
        t.add_column("stage", no_wrap=True, overflow="ellipsis", max_width=24 if self.framed else 20)
        if self.framed:
            t.add_column("count", justify="right")
        if self.rates is not None:
            t.add_column("rate/s", justify="right", no_wrap=True)
        cols = self.columns()
        for _, label, cum in cols:
            t.add_column(label, justify="right", no_wrap=True, style="dim" if cum else "")
        tags = self._tags()
        for tag in tags:
            s = self.summary.get(tag, {"count": 0})
            cum = (self.cumulative or {}).get(tag, {})
            cells = [Text(tag, style="bold" if tag in TOTAL_TAGS else "")]
            if self.framed:
                cells.append(f"{s.get('count', 0):,}")
            if self.rates is not None:
                cells.append(f"{self.rates.get(tag, 0):,.0f}")
            for key, _, is_cum in cols:
                row = cum if is_cum else s
                cells.append(fmt_ns(row.get(key)) if row.get("count") else "-")
            if (
                self.framed
                and tag in TOTAL_TAGS
                and tag == next(x for x in tags if x in TOTAL_TAGS)
                and t.row_count
            ):
                t.add_section()
            t.add_row(*cells)
        return t


def _count(c: dict, key: str) -> int:
    v = c.get(key, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


class CountersLine:
    """Every record accounted for in one line whose terms add up, then a verdict that says what
    became of each record that was not recorded.

    ``status`` is where the run stands: None mid-run (the live view: records in the ring are a
    backlog being drained), else the session's status; ``running`` in a finished process means
    the collector never closed the session (it was killed)."""

    def __init__(self, counters: dict, status: str | None = None, width: int | None = None):
        self.c, self.status, self.width = counters, status, width

    def __rich__(self) -> Text:
        c = self.c
        keys = ("produced", "drained", "dropped_ring_full", "in_ring", "drained_before_attach", "malformed",
                "records_refused")  # fmt: skip
        produced, drained, dropped, in_ring, before, malformed, refused = (_count(c, k) for k in keys)
        # Sessions saved before in_ring was counted: the remainder is what was never drained.
        never = produced - drained - dropped - in_ring - before - refused
        # A narrow terminal (``width``) keeps the equation on one line without the parenthesis.
        terms = [f"drained {drained:,}", f"dropped {dropped:,} (ring full)"]
        if in_ring or "in_ring" in c:
            terms.append(f"in ring {in_ring:,}")
        if before:
            terms.append(f"drained before attach {before:,}")
        if refused:
            terms.append(f"in refused rings {refused:,}")
        if never > 0:
            terms.append(f"never drained {never:,}")
        first = f"records: produced {produced:,} = " + " + ".join(terms)
        if malformed:  # a zero is folded: the equation above already accounts for every record
            first += f"  malformed {malformed:,}"
        if self.width is not None and len(first) > self.width:
            first = first.replace(" (ring full)", "", 1)
        text = Text(first)
        if never < 0:
            text.append(f"  (counters disagree by {-never:,})", style="bold red")
        traces = trace_accounting(c)
        set_aside = 0
        if traces is not None:
            text.append(
                "\n"
                + TraceLine(traces, open_now=_count(c, "traces_pending") if self.status is None else 0).line()
            )
            set_aside = traces[0] - traces[1]
        if c.get("orders_sent"):
            # Every order on the wire is answered, gap-filled at the venue's ResendRequest (never
            # delivered), or still in flight when the session ended.
            gap_filled = f" + {c['orders_gap_filled']:,} gap-filled" if c.get("orders_gap_filled") else ""
            legs = [(k[len("orders_leg_") :], v) for k, v in c.items() if k.startswith("orders_leg_")]
            by_leg = f" ({', '.join(f'{k} {v:,}' for k, v in legs)})" if legs else ""
            text.append(f"\norders: {c['orders_sent']:,} sent{by_leg} = {c.get('orders_acked', 0):,} acked"
                        f" + {c.get('orders_rejected', 0):,} rejected{gap_filled} + {c.get('orders_in_flight_at_end', 0):,}"
                        f" in flight{' at end' if self.status is not None else ''}")  # fmt: skip
            if c.get("order_stalls"):
                text.append(f" (order session stalled {c['order_stalls']:,}x)", style="bold red")
            if c.get("risk_rejects"):
                text.append(f"; {c['risk_rejects']:,} held by risk")
        for key, label in (("feed_gaps", "feed gaps"), ("writers_died", "writers died"),
                           ("values_out_of_range", "values out of HDR range")):  # fmt: skip
            if c.get(key):
                text.append(f", {label} {c[key]:,}")
        problems = self.problems(dropped, malformed, in_ring + max(never, 0), _count(c, "rings_quarantined"))
        if _count(c, "rings_refused"):
            n = _count(c, "rings_refused")
            problems.append(f"{n} ring{'s' if n > 1 else ''} refused (declarations contradict another ring's), "
                            f"{refused:,} records in {'them' if n > 1 else 'it'} unread")  # fmt: skip
        if set_aside:
            problems.append(f"{set_aside:,} traces set aside (not measured)")
        if _count(c, "values_out_of_range"):
            problems.append(f"{_count(c, 'values_out_of_range'):,} values beyond the histogram range")
        if problems:
            text.append("\nNOT drop-free: " + "; ".join(problems), style="bold red")
        elif self.status is None:
            text.append(
                "\ndrop-free so far: every record produced was drained or waits in the ring", style="green"
            )
        else:
            text.append("\ndrop-free: every record produced and every trace seen was recorded", style="green")
        return text

    def problems(self, dropped: int, malformed: int, not_drained: int, quarantined: int) -> list[str]:
        out = []
        if dropped:
            out.append(f"{dropped:,} dropped because a ring was full")
        if malformed:
            out.append(f"{malformed:,} malformed (drained, carried no usable stamp)")
        if not_drained and self.status is not None:
            why = (
                "the collector stopped without closing the session (killed?); counts as of its last save"
                if self.status == "running"
                else "still in the ring when the collector stopped (the writer was still running)"
            )
            out.append(f"{not_drained:,} produced but never drained: {why}")
        if quarantined:
            out.append(
                f"{quarantined} ring{'s' if quarantined > 1 else ''} quarantined (impossible counters)"
            )
        return out


class TraceLine:
    """``traces: N seen = R recorded + S set aside (reason n, ...)``: every trace the correlator
    closed, recorded or set aside for one named reason (``collectors.session.trace_accounting``)."""

    def __init__(self, accounting: tuple[int, int, dict[str, int]], open_now: int = 0):
        self.seen, self.recorded, self.aside = accounting
        self.open_now = open_now

    def line(self) -> str:
        n = self.seen - self.recorded
        text = f"traces: {self.seen:,} seen = {self.recorded:,} recorded + {n:,} set aside"
        if self.aside:
            text += " (" + ", ".join(f"{label} {v:,}" for label, v in self.aside.items()) + ")"
        if sum(self.aside.values()) != n:
            text += f"  (counters disagree by {n - sum(self.aside.values()):,})"
        if self.open_now:
            text += f"; {self.open_now:,} open"
        return text


def wire_line(c: dict) -> str | None:
    """``wire_to_wire: N matched orders = R recorded + S set aside (...)`` for a `tickscope wire`
    session; None for other sessions. Sessions saved before ``wire_to_wire_recorded`` was counted
    skipped a value beyond the histogram range without a count: those are not told apart."""
    if "orders_matched" not in c:
        return None
    matched, negative, beyond = (_count(c, k) for k in ("orders_matched", "wire_to_wire_negative",
                                                          "wire_to_wire_beyond_range"))  # fmt: skip
    recorded = _count(c, "wire_to_wire_recorded") if "wire_to_wire_recorded" in c else matched - negative
    reasons = [
        f"{label} {n:,}" for label, n in (("negative", negative), ("beyond the histogram range", beyond)) if n
    ]
    return (f"wire_to_wire: {matched:,} matched orders = {recorded:,} recorded + {matched - recorded:,} set aside"
            + (f" ({', '.join(reasons)})" if reasons else ""))  # fmt: skip


class DropAdvice:
    """For each ring that dropped records: its capacity and the capacity its peak backlog needed."""

    def __init__(self, rings: list[dict]):
        self.rings = rings

    def lines(self) -> list[str]:
        out = []
        for r in self.rings:
            dropped, produced = _count(r, "dropped_ring_full"), _count(r, "produced")
            if not dropped or not isinstance(r.get("capacity"), int):
                continue
            needed = r.get("capacity_needed")
            line = (f"ring {r.get('path')} ({r.get('writer')}, pid {r.get('pid')}) dropped {dropped:,} of "
                    f"{produced:,} records ({dropped / max(produced, 1):.0%}): capacity {r['capacity']:,}")  # fmt: skip
            if isinstance(needed, int) and needed > 0:
                line += (f", its peak backlog needed {_count(r, 'peak_backlog'):,}: use capacity "
                         f"1 << {needed.bit_length() - 1} ({needed:,}) in the writer")  # fmt: skip
            out.append(line)
        return out

    def __rich__(self) -> Text:
        return Text("\n".join(self.lines()), style="bold red")


class RingProblems:
    """Rings skipped (not ours, not a ring) or quarantined (impossible counters), with why."""

    def __init__(self, errors: list[str], limit: int = 4):
        self.errors, self.limit = errors, limit

    def __rich__(self) -> Text:
        t = Text()
        for e in self.errors[-self.limit :]:
            t.append(f"{e}\n", style="red")
        if len(self.errors) > self.limit:
            t.append(f"(and {len(self.errors) - self.limit} more in meta.json)\n", style="red")
        t.rstrip()
        return t


class IncidentList:
    """``report``'s incidents (``--incident``): one line each, then how many were suppressed."""

    def __init__(self, incidents: list[dict], recorded: dict):
        self.incidents, self.recorded = incidents, recorded

    def __rich_console__(self, console, options):
        n = len(self.incidents)
        suppressed, joined = self.recorded.get("suppressed", 0), self.recorded.get("joined", 0)
        yield Text(f"incidents: {n} written, {suppressed} suppressed by the rate limit, {joined} joined one "
                   "already open", style="bold")  # fmt: skip
        for i in self.incidents:
            also = f" (+{i['also_breached']} breaches joined)" if i["also_breached"] else ""
            missing = f"; unavailable: {', '.join(i['unavailable'])}" if i["unavailable"] else ""
            yield Text(f"  {i['time_utc']}  {i['trigger']}  value {fmt_ns(i['value_ns'])}  trace {i['trace_id']}  "
                       f"{i['traces']} traces{also}{missing}  {i['dir']}")  # fmt: skip


def render(session: Session, recorded_warnings: bool = True):
    """The table, the records and orders accounted for, and every warning: about the files as
    loaded, and (``recorded_warnings``) those of the recording, unless the caller just printed them."""
    parts = [StageTable(session.summary(), session.tags, title=f"session {session.name}")]
    if session.attribution:
        parts.append(AttributionTable(session.attribution))
    if "produced" in session.counters():  # records from rings (a `tickscope wire` session has none)
        parts.append(CountersLine(session.counters(), status=str(session.meta.get("status", "complete"))))
    if (line := wire_line(session.counters())) is not None:
        parts.append(Text(line, style="bold red" if "set aside (" in line else ""))
    rings = session.meta.get("rings")
    advice = DropAdvice([r for r in rings if isinstance(r, dict)] if isinstance(rings, list) else [])
    if advice.lines():
        parts.append(advice)
    incidents, recorded = session.incidents(), session.meta.get("incidents")
    if incidents or isinstance(recorded, dict):
        parts.append(IncidentList(incidents, recorded if isinstance(recorded, dict) else {}))
    errors = session.meta.get("ring_errors")
    if isinstance(errors, list) and errors:
        parts.append(RingProblems([str(e) for e in errors], limit=len(errors)))
    for w in session.warnings + (session.recorded_warnings if recorded_warnings else []):
        parts.append(Text(f"warning: {w}", style="yellow"))
    return Group(*parts)


def render_by(session: Session, slicing: str):
    """``report --by``: a stage table per value of ``slicing`` (a dimension, or a combination
    recorded with ``--slice``), most rows first, ``other`` last; each with its tail attribution.
    The stage rows after the fan-out describe the value's traded legs (each order one sample), the
    stages before it every tick the value is the tick's own (traded or not); tick_to_decision its
    ticks that led to no order."""
    values = session.dimensions.get(slicing)
    if values is None:
        recorded = ", ".join(session.dimensions) or "none"
        hint = f"; record it with --slice {slicing}" if "," in slicing else ""
        raise SessionError(f"{session.name} holds no slicing by {slicing} (recorded: {recorded}){hint}")
    parts = []
    for value in values:
        v = views.dimension_value(session, slicing, value)
        s, title = v["slice"], v["title"]
        parts.append(StageTable(s.summary(), s.tags, title=title))
        if s.attribution:
            parts.append(AttributionTable(s.attribution))
    return Group(*parts)
