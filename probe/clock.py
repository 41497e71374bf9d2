"""The writer's half of the clocks: the calibration pair a Python writer stores in its ring.

Writers store raw stamps in their own domain (TSC ticks, CLOCK_MONOTONIC ns, CLOCK_REALTIME ns);
the collector converts them (``collectors/rings/clocks.py``), so the hot path reads one clock.
"""

from __future__ import annotations

import time

# Clock-read sequences per calibration entry, at most, and a bracket narrow enough to end them:
# nothing ran in between (a preemption takes microseconds), as the C and Rust writers decide.
PAIR_TRIES = 5
PAIR_NARROW_NS = 1_000


def clock_pair() -> tuple[int, int, int, int]:
    """A (tsc, monotonic_raw, monotonic, realtime) calibration entry as a Python writer sees it.

    Python cannot read the TSC, so the TSC field is 0; the entry still anchors REALTIME stamps.
    Each sequence is bracketed by a second RAW read and a preemption between the reads widens it:
    the first bracket under ``PAIR_NARROW_NS`` is kept, else the narrowest of ``PAIR_TRIES``.
    """
    return tightest(_read_sequence)


def _read_sequence() -> tuple[int, int, int, int]:
    raw0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    real = time.clock_gettime_ns(time.CLOCK_REALTIME)
    return raw0, mono, real, time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)


def tightest(read) -> tuple[int, int, int, int]:
    """The entry of the first sequence ``(raw0, mono, real, raw1)`` narrower than ``PAIR_NARROW_NS``,
    else of the narrowest of ``PAIR_TRIES``."""
    raw0, mono, real, _ = narrowest(read)
    return 0, raw0, mono, real


def narrowest(read, tries: int = PAIR_TRIES) -> tuple[int, ...]:
    """The first clock-read sequence from ``read`` (bracketed by its first and last values, RAW
    reads) narrower than ``PAIR_NARROW_NS``, else the narrowest of ``tries``: the one rule by which
    the writers and the collector choose their calibration pairs."""
    best = None
    for _ in range(tries):
        seq = read()
        if best is None or seq[-1] - seq[0] < best[-1] - best[0]:
            best = seq
        if seq[-1] - seq[0] < PAIR_NARROW_NS:
            break
    return best
