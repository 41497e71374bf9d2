"""REALTIME against MONOTONIC over a run: where the kernel's stamps (a socket's receive and
transmit stamps) and a capture's sit on the collector's CLOCK_MONOTONIC timeline.

NTP slews both clocks alike, so REALTIME - MONOTONIC holds still until REALTIME is *set*: a
time daemon's step, a VM's host resynchronising its guest (ci28 saw it move +5 ms a second for
87 s). One offset taken at the start put every REALTIME stamp after such a move off by its size
against the writers' MONOTONIC and TSC stamps (`wire_to_read`, `send`), and thousands of traces
went negative. The collector now samples the offset at every poll and keeps its history as
knots: flat while the offset holds, a straight line from the last poll that saw it unchanged to
the poll that saw it moved. ``intake_kernels.realtime_offset_at`` reads a stamp's offset off
them (the one rule, compiled).
"""

from __future__ import annotations

import time

import numpy as np

from tickscope.collectors.rings.clocks import sample_realtime_offset

# A move smaller than this is not followed: one sample's own error is a few hundred ns (the width
# of its MONOTONIC bracket), so following every sample would put noise into every span across
# clocks. A REALTIME stamp is therefore within this of where it belongs, plus a sample's error.
CHANGE_FLOOR_NS = 1_000
MAX_KNOTS = 4_096  # a host whose clock is set at every poll for a day: the oldest go (counted)
SAMPLES_PER_POLL = 5  # brackets per poll sample (the tightest wins): ~2 µs of the poll's time


class RealtimeOffset:
    """REALTIME - MONOTONIC in ns over the run, as knots (MONOTONIC ns, offset ns)."""

    def __init__(self, offset: int, uncertainty: int, now_ns: int):
        self.start, self.uncertainty = offset, uncertainty
        self._mono, self._off = [now_ns], [offset]
        self._held_ns = now_ns  # the last poll that saw the offset where the newest knot has it
        self.changes = 0  # polls that saw it moved
        self.largest_ns = 0  # the largest move one poll saw
        self.dropped = 0  # knots dropped beyond MAX_KNOTS (stamps before the oldest kept: its offset)
        self._arrays = self._build()

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(MONOTONIC ns, offset ns, the knots' REALTIME suffix minimum) for ``realtime_offset_at``:
        one tuple, replaced whole at a change, so a reader on another thread sees one history."""
        return self._arrays

    @property
    def current(self) -> int:
        return self._off[-1]

    @property
    def moved_ns(self) -> int:
        """How far REALTIME moved against MONOTONIC from the run's start to now."""
        return self._off[-1] - self.start

    def sample(self) -> bool:
        """Sample the offset now (a poll): True when it moved."""
        offset, uncertainty = sample_realtime_offset(SAMPLES_PER_POLL)
        return self.observe(offset, uncertainty, time.monotonic_ns())

    def observe(self, offset: int, uncertainty: int, now_ns: int) -> bool:
        """One sample of the offset at ``now_ns``. A move beyond CHANGE_FLOOR_NS and the two samples'
        errors becomes a knot; the stamps between the last unchanged poll and this one are read
        off the straight line between them (a step inside that window is placed no better)."""
        current = self._off[-1]
        if abs(offset - current) <= max(CHANGE_FLOOR_NS, 2 * (uncertainty + self.uncertainty)):
            self._held_ns = max(self._held_ns, now_ns)
            return False
        if now_ns <= self._mono[-1]:
            return False  # not after the newest knot: nothing to place it by
        if self._held_ns > self._mono[-1]:
            self._add(self._held_ns, current)
        self._add(now_ns, offset)
        self._held_ns, self.uncertainty = now_ns, uncertainty
        self.changes += 1
        if abs(offset - current) > abs(self.largest_ns):
            self.largest_ns = offset - current
        self._arrays = self._build()
        return True

    def _add(self, mono: int, off: int) -> None:
        # The middle of the last three knots goes when it lies on the line through the other two
        # (a steady drift keeps two knots, however long it runs).
        if len(self._mono) >= 2:
            (m0, m1), (o0, o1) = self._mono[-2:], self._off[-2:]
            if abs(o0 + (off - o0) * (m1 - m0) / (mono - m0) - o1) <= CHANGE_FLOOR_NS:
                self._mono.pop()
                self._off.pop()
        self._mono.append(mono)
        self._off.append(off)
        if len(self._mono) > MAX_KNOTS:
            del self._mono[0], self._off[0]
            self.dropped += 1

    def _build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mono, off = np.array(self._mono, np.int64), np.array(self._off, np.int64)
        floor = np.minimum.accumulate((mono + off)[::-1])[::-1]
        return mono, off, np.ascontiguousarray(floor)

    def note(self) -> str | None:
        """One line for the run's end when REALTIME moved."""
        if not self.changes:
            return None
        return (f"REALTIME was set during the run: it moved {self.moved_ns / 1e6:+.3f} ms against MONOTONIC in "
                f"{self.changes} change(s), the largest {self.largest_ns / 1e6:+.3f} ms between two polls; "
                "kernel and capture stamps were placed with the offset of their time, those within a poll "
                "of a change may be off by up to its size (meta.json clocks.realtime)")  # fmt: skip

    def to_meta(self) -> dict:
        mono, off, _ = self._arrays
        return {"moved_ns": self.moved_ns, "changes": self.changes, "largest_change_ns": self.largest_ns,
                "knots": [[int(m), int(o)] for m, o in zip(mono[:64], off[:64], strict=True)],
                "knots_kept": int(mono.size), "knots_dropped": self.dropped,
                "change_floor_ns": CHANGE_FLOOR_NS}  # fmt: skip
