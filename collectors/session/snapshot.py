"""What a collector publishes once per interval to its observers (the live view, the progress
lines, the Prometheus exporter): plain data, so an observer needs nothing of the collector."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Snapshot:
    """One interval's view of a run; replaced (not mutated) once per interval, so readers need no lock."""

    elapsed_s: float = 0.0
    warmup: bool = False
    tags: list[str] = field(default_factory=list)
    side_tags: list[str] = field(default_factory=list)  # rows from outside the rings (a wire capture)
    trade_stages: list[str] = field(default_factory=list)
    last: dict[str, dict] = field(default_factory=dict)  # tag -> summary of the last interval
    cumulative: dict[str, dict] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # tag -> values per second, last interval
    p99_history: dict[str, list[int]] = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    rings: int = 0
    attribution: dict | None = None  # summary.json's "attribution" so far (cumulative, warm-up kept out)
    # slicing ("venue", "venue,symbol") -> value -> cumulative tick_to_trade summary (warm-up kept out)
    by_dimension: dict[str, dict[str, dict]] = field(default_factory=dict)
    ring_details: list[dict] = field(default_factory=list)  # RingSource.describe() per ring
    ring_errors: list[str] = field(default_factory=list)  # rings skipped or quarantined, with why
