"""The writer's half of the clocks: the calibration pair a Python writer stores in its ring.

Writers store raw stamps in their own domain (TSC ticks, CLOCK_MONOTONIC ns, CLOCK_REALTIME ns);
the collector converts them (``collectors/rings/clocks.py``), so the hot path reads one clock.
"""

from __future__ import annotations

import time


def clock_pair() -> tuple[int, int, int, int]:
    """A (tsc, monotonic_raw, monotonic, realtime) calibration entry as a Python writer sees it.

    Python cannot read the TSC, so the TSC field is 0; the entry still anchors REALTIME stamps.
    """
    raw = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    real = time.clock_gettime_ns(time.CLOCK_REALTIME)
    return 0, raw, mono, real
