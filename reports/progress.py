"""Plain progress lines: what ``profile`` prints when stdout is not a terminal or ``--no-live``."""

from __future__ import annotations

import os
import sys

from tickscope.collectors.session import trace_accounting
from tickscope.collectors.session.units import fmt_ns


class PlainProgress:
    """One line per interval, greppable: elapsed, tick rate, tick-to-trade p50/p99, drops."""

    whole_run = False  # the last interval's figures only: the run's totals are not summarized for it
    refresh_s = None  # a line as each interval closes: nothing to redraw between (polls are not paced by it)

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._last_elapsed = -1.0

    def start(self) -> None:
        pass

    def update(self, state, side, elapsed_s, duration_s) -> None:
        if state.elapsed_s == self._last_elapsed or not state.elapsed_s:
            return
        self._last_elapsed = state.elapsed_s
        total = state.counters
        t2t = state.last.get("tick_to_trade", {})
        ticks = state.rates.get("tick_to_trade", 0) + state.rates.get("tick_to_decision", 0)
        parts = [f"[{state.elapsed_s:6.1f}s{' warmup' if state.warmup else ''}]", f"traces/s {ticks:,.0f}"]
        if t2t.get("count"):
            parts.append(
                f"tick-to-trade p50 {fmt_ns(t2t['p50'])} p99 {fmt_ns(t2t['p99'])} max {fmt_ns(t2t['max'])}"
            )
        parts.append(f"dropped {total.get('dropped_ring_full', 0):,}")
        if state.ring_errors:  # each is printed with its reason at the end
            parts.append(f"ring problems {len(state.ring_errors)}")
        seen, recorded, _ = trace_accounting(total) or (0, 0, {})
        parts.append(f"traces set aside {seen - recorded:,} of {seen:,}")
        for name, figures in side.items():
            if "summary" in figures:
                parts.append(f"{name}: {figures['summary']}")
        try:
            print("  ".join(parts), file=self.stream, flush=True)
        except BrokenPipeError:
            # The reader went away (`| head`): the run goes on to its end, quietly. (The error
            # used to end the session early, marked complete.)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    def stop(self) -> None:
        pass
