"""The live view: small Rich widgets over the collector's ``Snapshot``, redrawn 5 times a second.

Each widget holds the data it shows and builds its renderable on demand; the view only swaps a
new ``Snapshot`` in. ``LiveView.update`` runs on the drain thread between polls and redraws at
most every ``refresh_s`` (a redraw costs a few ms; the rings hold seconds of ticks), so the
screen never makes the collector fall behind.

Keys: when stdin is the terminal (and this process its foreground), ``d`` cycles the dimension
whose worst values are shown; they are read without blocking at each redraw.
"""

from __future__ import annotations

import io
import os
import select
import sys
import termios
import tty

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from tickscope.collectors.session import Snapshot
from tickscope.collectors.session.dimensions import shown
from tickscope.collectors.session.units import fmt_ns

from .attribution import TailBars
from .console import CountersLine, RingProblems, StageTable

SPARK = "▁▂▃▄▅▆▇█"
PALETTE = [
    "cyan",
    "magenta",
    "yellow",
    "green",
    "blue",
    "red",
    "bright_cyan",
    "bright_magenta",
    "bright_yellow",
]


class Sparkline:
    """p99 of tick-to-trade per interval, newest on the right."""

    def __init__(self, values: list[int], width: int = 60, label: str = "t2t p99"):
        self.values, self.width, self.label = values, width, label

    def __rich__(self) -> Text:
        vals = [v for v in self.values[-self.width :]]
        text = Text(f"{self.label} ")
        if not vals or not max(vals):
            return text.append("(no data yet)", style="dim")
        lo, hi = min(vals), max(vals)
        span = (hi - lo) or 1
        text.append(
            "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1)))] for v in vals),
            style="green",
        )
        text.append(f"  {fmt_ns(lo)}..{fmt_ns(hi)}", style="dim")
        return text


class SidePanel:
    def __init__(self, side: dict[str, dict]):
        self.side = side

    def __rich__(self) -> Text:
        t = Text()
        for name, figures in self.side.items():
            if "error" in figures:
                t.append(f"{name}: {figures['error']}  ", style="red")
            elif figures.get("summary"):
                t.append(f"{name}: ", style="bold")
                t.append(f"{figures['summary']}   ")
        return t


class WorstValues:
    """The values of one slicing with the highest tick-to-trade p99 so far, worst first: where to
    look when the run's p99 moves (a venue, a symbol). Its population named: each value's orders.
    A symbol's feed stages over its ticks are not here: the live snapshot carries per value its
    tick-to-trade only (docs/live.md says why); ``report --by``, the HTML and summary.json hold them."""

    def __init__(self, slicing: str, values: dict[str, dict], rows: int = 5):
        self.slicing, self.values, self.rows = slicing, values, rows

    def __rich__(self) -> Text:
        t = Text(f"worst {self.slicing} by t2t p99 over each value's orders (cumulative):", style="bold")
        if not self.values:
            return t.append(" no values yet", style="dim")
        ranked = sorted(self.values.items(), key=lambda kv: -(kv[1].get("p99") or 0))
        for i, (value, row) in enumerate(ranked[: self.rows]):
            t.append(f"\n  {shown(value):<12} ", style="yellow" if i == 0 else "")
            t.append(f"p99 {fmt_ns(row.get('p99')):>8}  p50 {fmt_ns(row.get('p50')):>8}  "
                     f"max {fmt_ns(row.get('max')):>8}  {row.get('count', 0):,} orders")  # fmt: skip
        if len(ranked) > self.rows:
            t.append(f"\n  ... {len(ranked) - self.rows} more", style="dim")
        return t


class Header:
    def __init__(self, state: Snapshot, elapsed_s: float, duration_s: float | None):
        self.state, self.elapsed, self.duration = state, elapsed_s, duration_s

    def __rich__(self) -> Text:
        t = Text("tickscope ", style="bold")
        t.append(f"elapsed {self.elapsed:5.1f}s")
        if self.duration:
            t.append(f"  remaining {max(0.0, self.duration - self.elapsed):5.1f}s")
        if self.state.warmup:
            t.append("  WARM-UP (kept out of the totals)", style="yellow")
        t.append(f"  rings {self.state.rings}  Ctrl-C: stop and save", style="dim")
        return t


class KeysLine:
    """The footer of a view that reads keys: what ``d`` does, and the dimension shown now."""

    def __init__(self, by: str | None, slicings: list[str]):
        self.by, self.slicings = by, slicings

    def __rich__(self) -> Text:
        t = Text("d", style="bold").append(": next dimension", style="dim")
        if not self.slicings:
            return t.append(" (none declared)", style="dim")
        t.append(f" (showing {self.by or 'none'}; declared: {', '.join(self.slicings)})", style="dim")
        return t


def next_dimension(current: str | None, slicings: list[str]) -> str | None:
    """Each declared slicing in turn, then none (the screen without the worst values), then round."""
    cycle = [*slicings, None]
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]


class KeyReader:
    """Keys typed at the terminal, read without blocking. Only when stdin is a terminal and this
    process is in its foreground (a background job changing the terminal would be stopped by
    SIGTTOU): cbreak mode (no echo, no line editing; Ctrl-C still interrupts), restored on stop."""

    def __init__(self):
        self.fd: int | None = None
        self.saved: list | None = None

    def start(self) -> None:
        try:
            fd = sys.stdin.fileno()
            if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
                return
            self.saved = termios.tcgetattr(fd)
            tty.setcbreak(fd, termios.TCSANOW)
            self.fd = fd
        except (OSError, ValueError, AttributeError, termios.error):  # no stdin, or not ours to change
            self.fd = None

    @property
    def active(self) -> bool:
        return self.fd is not None

    def keys(self) -> str:
        """What was typed since the last call ("" when nothing was, or keys are not read)."""
        got = b""
        while self.fd is not None and select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:  # the terminal went away: nothing more to read
                self.stop()
                break
            got += chunk
        return got.decode(errors="ignore")

    def stop(self) -> None:
        if self.fd is not None and self.saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            except termios.error:
                pass
        self.fd = None


def render(state: Snapshot, side: dict, elapsed: float, duration: float | None, width: int, height: int,
           by: str | None = None, footer=None):  # fmt: skip
    """The whole screen for a terminal of width x height: the stage table takes the columns that
    fit the width; the breakdown is compact below 100 columns or 30 rows; with ``by`` (a slicing,
    ``venue``), the worst values of it under the stage table; ``footer`` (the keys) last.

    What does not fit the height is left out, least important first (the breakdown, then the
    sparkline): a terminal crops the bottom, and the bottom holds the drop counters and the side
    collectors' figures (the capture's matched/unmatched), which must stay in view."""
    compact = width < 100 or height < 30
    bar_width = max(10, min(80, width - 10))
    header = Header(state, elapsed, duration)
    if height < 14:  # a tiny terminal: the one line that matters
        t2t = state.last.get("tick_to_trade", {})
        return Group(header, Text(f"t2t p50 {fmt_ns(t2t.get('p50'))} p99 {fmt_ns(t2t.get('p99'))} "
                                  f"dropped {state.counters.get('dropped_ring_full', 0):,}"))  # fmt: skip
    # The panel's border and padding take 4 columns; the table picks the columns that fit the rest.
    table = StageTable(state.last, state.tags, rates=state.rates, cumulative=state.cumulative,
                       trailing=state.side_tags, framed=False, width=width - 4)  # fmt: skip
    stages = Panel(table, title="stages (last interval)", title_align="left", padding=(0, 1))
    breakdown = Panel(
        TailBars(state.attribution, bar_width, compact=compact, palette=PALETTE),
        title="tick-to-trade breakdown of the tail traces (cumulative)",
        title_align="left",
        padding=(0, 1),
    )
    sparkline = Sparkline(state.p99_history.get("tick_to_trade", []), bar_width)
    worst = WorstValues(by, state.by_dimension.get(by, {}), rows=3 if compact else 5) if by else None
    parts = [header, stages, *([worst] if worst else []), breakdown, sparkline,
             CountersLine(state.counters, width=width)]  # fmt: skip
    if state.ring_errors:
        parts.append(RingProblems(state.ring_errors, limit=2 if compact else 4))
    if side:
        parts.append(SidePanel(side))
    if footer is not None:
        parts.append(footer)
    measure = Console(width=width, file=io.StringIO(), color_system=None)
    lines = {id(p): len(measure.render_lines(p, measure.options, pad=False)) for p in parts}
    for optional in (breakdown, sparkline, *([worst] if worst else [])):  # least important first
        if sum(lines.values()) <= height:
            break
        parts.remove(optional)
        del lines[id(optional)]
    return Group(*parts)


def terminal_size(console: Console) -> tuple[int, int]:
    """The terminal's real size (ioctl), which follows resizes; COLUMNS/LINES left over in the
    environment would otherwise pin Rich to a stale size."""
    import os

    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.columns, size.lines
    except (OSError, ValueError):
        return console.size


class LiveView:
    """The ``View`` of ``collectors.run``: a Rich Live display on the controlling terminal."""

    whole_run = True  # cumulative tables, slices by dimension, tail attribution

    def __init__(self, console: Console | None = None, refresh_s: float = 0.2, by: str | None = None):
        self.console = console or Console()
        self.live: Live | None = None
        self.refresh_s = refresh_s
        self.by = by  # --live-by, then the d key: the slicing whose worst values are shown
        self.keys = KeyReader()

    def start(self) -> None:
        self.keys.start()
        w, h = terminal_size(self.console)
        self.console.size = (w, h)
        self.live = Live(Text("tickscope: starting ..."), console=self.console, auto_refresh=False,
                         vertical_overflow="crop", transient=False)  # fmt: skip
        self.live.start()

    def update(self, state: Snapshot, side: dict, elapsed_s: float, duration_s: float | None) -> None:
        if self.live is None:
            return
        slicings = sorted(state.by_dimension)
        for _ in range(self.keys.keys().lower().count("d")):
            self.by = next_dimension(self.by, slicings)
        footer = KeysLine(self.by, slicings) if self.keys.active else None
        w, h = terminal_size(self.console)
        self.console.size = (w, h)
        self.live.update(render(state, side, elapsed_s, duration_s, w, h, self.by, footer), refresh=True)

    def stop(self) -> None:
        self.keys.stop()
        if self.live is not None:
            self.live.stop()
            self.live = None
