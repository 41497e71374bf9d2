"""Writers released by a long run (``live --watch``), folded into one row.

A daemon sees thousands of short-lived writers over days. A released writer's descriptor, mapping
and file go at release; what it counted goes here, added into one aggregate, so that the
collector's state and ``meta.json`` stay the same size however many writers came and went. The
sums are exact: the run's produced = drained + dropped + in ring identity holds over them. Only
the last ``RELEASED_KEPT`` writers keep their own row (their ``RingSource.describe()``, among
meta.json's ``rings``), for the report and for the user who wants to see what the latest ones looked like.
"""

from __future__ import annotations

from collections import deque

RELEASED_KEPT = 16  # released writers whose own row is kept (among meta.json ``rings``)

# A released writer's describe() terms that add up across writers
SUMMED = ("produced", "drained", "dropped_ring_full", "in_ring", "drained_before_attach", "malformed",
          "point_out_of_range", "leg_out_of_range", "dims_unknown")  # fmt: skip


class ReleasedWriters:
    """The aggregate of every released writer, and the last ``kept`` of them in full."""

    def __init__(self, kept: int = RELEASED_KEPT):
        self.writers = 0
        self.closed_cleanly = 0  # the rest exited (or were killed) without closing their ring
        self.quarantined = 0
        self.peak_backlog = 0  # the largest of any one writer's
        self.sums = dict.fromkeys(SUMMED, 0)
        self.last: deque[dict] = deque(maxlen=kept)

    def fold(self, row: dict) -> None:
        """Add one released writer (its ``RingSource.describe()``)."""
        self.writers += 1
        self.closed_cleanly += bool(row.get("closed_cleanly"))
        self.quarantined += "quarantined" in row
        self.peak_backlog = max(self.peak_backlog, int(row.get("peak_backlog") or 0))
        for key in SUMMED:
            self.sums[key] += int(row.get(key) or 0)
        self.last.append({**row, "released": True})

    def to_meta(self) -> dict:
        """meta.json's ``released_writers``: the counts of all of them (the last few's rows are in
        meta.json's ``rings``, marked ``released``)."""
        return {"writers": self.writers, "closed_cleanly": self.closed_cleanly, "quarantined": self.quarantined,
                **self.sums, "peak_backlog": self.peak_backlog, "rows_kept": self.last.maxlen}  # fmt: skip

    def line(self) -> str:
        """One line for the user: 'released writers: N, records R, drops D'."""
        s = self.sums
        return (f"released writers: {self.writers:,} ({self.writers - self.closed_cleanly:,} without closing), "
                f"records {s['drained_before_attach'] + s['drained']:,}, drops {s['dropped_ring_full']:,}")  # fmt: skip
