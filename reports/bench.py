"""``tickscope bench``'s table: each figure of ``collectors.run.bench`` (a plain dict) against the
target docs/performance.md sets for it, and which way a figure misses it."""

from __future__ import annotations

from rich.table import Table

TARGETS = {
    "probe_stamp_ns": ("<=", 100),
    "probe_stamp_ratio": ("<=", 1.8),
    "c_probe_ns": ("<=", 15),
    "rust_probe_ns": ("<=", 15),
    "rust_probe_ratio": ("<=", 1.3),
    "rust_probe_handle_ratio": ("<=", 1.3),
    "ingest_values_per_s": (">=", 300e6),  # issue 26
    "ingest_ratio": (">=", 100),
    "drain_records_per_s": (">=", 10e6),
    "drain_dropped": ("<=", 0),  # against the writer paced at drain_paced_records_per_s (30 M/s)
    "collect_records_per_s": (">=", 50e6),  # a native collector core (issue 26)
    "collect_cpu_ns_per_record": ("<=", 20),
    "collect_fanout_records_per_s": (">=", 8e6),
}


def render(results: dict) -> Table:
    t = Table(title="tickscope bench (this host)", title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_column("", justify="left")
    for key, value in results.items():
        target = TARGETS.get(key)
        mark = ""
        if target and value is not None:
            op, bound = target
            met = value <= bound if op == "<=" else value >= bound
            mark = "ok" if met else f"misses target ({'≤' if op == '<=' else '≥'} {bound:,g})"
        shown = (
            f"{value:,.1f}"
            if isinstance(value, float)
            else f"{value:,}"
            if isinstance(value, int) and not isinstance(value, bool)
            else str(value)
        )
        t.add_row(key, shown, f"{target[0]} {target[1]:,g}" if target else "", mark)
    return t
