"""REALTIME against MONOTONIC over a run: where the kernel's stamps (a socket's receive and
transmit stamps) and a capture's sit on the collector's CLOCK_MONOTONIC timeline.

NTP slews both clocks alike, so REALTIME - MONOTONIC holds still until REALTIME is *set*: a
time daemon's step, a VM's host resynchronising its guest (ci28 saw it move +5 ms a second for
87 s). One offset taken at the start put every REALTIME stamp after such a move off by its size
against the writers' MONOTONIC and TSC stamps (`wire_to_read`, `send`), and thousands of traces
went negative. The collector keeps the offset's history as knots, flat while it holds:

- the kernel says when REALTIME is set: a timerfd armed with ``TFD_TIMER_CANCEL_ON_SET`` fails
  its read at the set (``SetWatch``, one thread per process, asleep otherwise), and the offset
  sampled then is a step at that instant (placed late by the thread's wake-up only);
- every poll samples it too (a host without that timerfd, a set between a wake-up and the
  re-arm): a move seen only there is a straight line from the last poll that saw it unchanged
  to the poll that saw it moved.

``intake_kernels.realtime_place`` places a stamp by the knots (the one rule, compiled): where
REALTIME was set back and a value came twice, at the first place not before its ring's newest
stamp (a ring's records come in order).
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
import weakref

import numpy as np

from tickscope.collectors.rings.clocks import sample_realtime_offset

# A move smaller than this is not followed: one sample's own error is a few hundred ns (the width
# of its MONOTONIC bracket), so following every sample would put noise into every span across
# clocks. A REALTIME stamp is therefore within this of where it belongs, plus a sample's error.
CHANGE_FLOOR_NS = 1_000
MAX_KNOTS = 4_096  # a host whose clock is set at every poll for a day: the oldest go (counted)
SAMPLES_PER_POLL = 5  # brackets per poll sample (the tightest wins): ~2 µs of the poll's time
# How far before a ring's newest stamp placed so far one of its later records may still stamp
# (a transmit stamp read from the error queue after later points, threads sharing a ring): where
# REALTIME was set back and a stamp's value came twice, the first place not before that is its.
REPEAT_SLACK_NS = 100_000_000


def placed_after(newest_ns: int) -> np.ndarray:
    """The state ``intake_kernels.realtime_to_monotonic`` carries for one source of stamps whose
    first stamp is no older than ``newest_ns`` (a ring's creation, a capture's start)."""
    return np.array([newest_ns - REPEAT_SLACK_NS], np.int64)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET, TFD_CLOEXEC = 1, 2, 0o2000000


class SetWatch:
    """A thread asleep on a CLOCK_REALTIME timerfd armed years ahead with TFD_TIMER_CANCEL_ON_SET:
    the kernel fails its read with ECANCELED whenever REALTIME is set (clock_settime, settimeofday,
    adjtimex's offset, a leap second), and each RealtimeOffset alive is told at once."""

    def __init__(self):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(time.CLOCK_REALTIME, TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.offsets: weakref.WeakSet[RealtimeOffset] = weakref.WeakSet()
        self.arm()
        threading.Thread(target=self._watch, name="tickscope-realtime-set", daemon=True).start()

    def arm(self) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec = int(time.time()) + 10**8  # ~3 years: never expires, only cancels
        if self._libc.timerfd_settime(
            self.fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, ctypes.byref(spec), None
        ):
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    def armed_s(self) -> float:
        """Seconds until the timer would expire (0: not armed), as the kernel holds it."""
        spec = _Itimerspec()
        self._libc.timerfd_gettime(self.fd, ctypes.byref(spec))
        return spec.it_value.tv_sec + spec.it_value.tv_nsec / 1e9

    def _watch(self) -> None:
        while True:
            try:
                os.read(self.fd, 8)
            except OSError as e:
                if e.errno != errno.ECANCELED:
                    return
                at = time.monotonic_ns()  # the set came before this (by the thread's wake-up)
                try:
                    self.arm()  # before the offsets are told: a second set is not missed meanwhile
                except OSError:
                    return  # the polls still sample the offset
                for offset in list(self.offsets):
                    offset.set_at(at)


_watch: SetWatch | None = None
_watch_tried = False
_watch_lock = threading.Lock()


def set_watch() -> SetWatch | None:
    """The process's SetWatch, started by the first caller (None where the timerfd is refused)."""
    global _watch, _watch_tried
    with _watch_lock:
        if not _watch_tried:
            _watch_tried = True
            try:
                _watch = SetWatch()
            except (OSError, AttributeError):
                _watch = None
        return _watch


class RealtimeOffset:
    """REALTIME - MONOTONIC in ns over the run, as knots (MONOTONIC ns, offset ns)."""

    def __init__(self, offset: int, uncertainty: int, now_ns: int, watch: bool = False):
        self._lock = threading.Lock()  # the poll thread and SetWatch's both add knots
        self.watch = set_watch() if watch else None
        if self.watch is not None:
            self.watch.offsets.add(self)
        self.signalled = 0  # sets the kernel signalled during this run
        self.start, self.start_uncertainty = offset, uncertainty  # at the run's start
        self.uncertainty = uncertainty  # the newest knot's sample's
        self._mono, self._off = [now_ns], [offset]
        self._held_ns = now_ns  # the last poll that saw the offset where the newest knot has it
        self.changes = 0  # moves seen
        self.ramps = 0  # of those, seen by a poll only (placed on a line over the poll's window)
        self.largest_ns = 0  # the largest move
        self.dropped = 0  # knots dropped beyond MAX_KNOTS (stamps before the oldest kept: its offset)
        self._arrays = self._build()

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(MONOTONIC ns, offset ns, the knots' REALTIME suffix minimum) for ``realtime_place``:
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

    def set_at(self, at_ns: int) -> bool:
        """The kernel said REALTIME was set just before ``at_ns``: the offset held until then, and
        the one sampled now holds from then (a step, not a line). True when it moved."""
        offset, uncertainty = sample_realtime_offset(SAMPLES_PER_POLL)
        with self._lock:
            self.signalled += 1
            # the old offset held until the set (a poll's "unchanged" may be stamped just after it)
            self._held_ns = max(at_ns - 1, self._mono[-1])
            return self._observe(offset, uncertainty, at_ns, stepped=True)

    def observe(self, offset: int, uncertainty: int, now_ns: int) -> bool:
        """One sample of the offset at ``now_ns``. A move beyond CHANGE_FLOOR_NS and the two samples'
        errors becomes a knot; the stamps between the last unchanged poll and this one are read
        off the straight line between them (a step inside that window is placed no better)."""
        with self._lock:
            return self._observe(offset, uncertainty, now_ns)

    def _observe(self, offset: int, uncertainty: int, now_ns: int, stepped: bool = False) -> bool:
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
        self.ramps += not stepped
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
        where = ("each at the instant the kernel said it was set" if not self.ramps else
                 f"{self.ramps} of them seen by a poll only: stamps within that poll of it may be off by up to "
                 "its size")  # fmt: skip
        return (f"REALTIME was set during the run: it moved {self.moved_ns / 1e6:+.3f} ms against MONOTONIC in "
                f"{self.changes} change(s), the largest {self.largest_ns / 1e6:+.3f} ms; kernel and capture "
                f"stamps were placed with the offset of their time, {where} (meta.json clocks.realtime)")  # fmt: skip

    def to_meta(self) -> dict:
        mono, off, _ = self._arrays
        return {"moved_ns": self.moved_ns, "changes": self.changes, "largest_change_ns": self.largest_ns,
                "kernel_signals_sets": self.watch is not None, "sets_signalled": self.signalled,
                "changes_seen_by_a_poll_only": self.ramps,
                "knots": [[int(m), int(o)] for m, o in zip(mono[:64], off[:64], strict=True)],
                "knots_kept": int(mono.size), "knots_dropped": self.dropped,
                "change_floor_ns": CHANGE_FLOOR_NS}  # fmt: skip
