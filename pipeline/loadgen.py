"""Load models: when each market-data packet is *intended* to leave.

The venue sends at these times when it can; when it falls behind it sends late, and the intended
time (carried in the ITCH timestamp) still says when the tick should have happened, so latency
measured from it includes the wait that a stalled generator would otherwise hide.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class LoadModel:
    def __init__(self, kind: str, per_second: float, burst: int = 50, seed: int = 1):
        if kind not in ("constant", "poisson", "burst"):
            raise ValueError(f"unknown load model {kind!r}: expected constant, poisson or burst")
        if per_second <= 0:
            raise ValueError(f"rate must be positive: {per_second}")
        self.kind, self.per_second, self.burst = kind, per_second, max(1, burst)
        self.rng = random.Random(seed)

    def schedule(self, start_ns: int) -> Iterator[int]:
        """Intended send times (monotonic ns), forever; the mean rate is ``per_second`` in every model."""
        interval = 1e9 / self.per_second
        if self.kind == "constant":
            i = 0
            while True:
                yield start_ns + int(i * interval)
                i += 1
        elif self.kind == "poisson":
            t = float(start_ns)
            while True:
                yield int(t)
                t += self.rng.expovariate(1.0) * interval
        else:  # bursts of back-to-back packets, then silence, same mean rate
            period = interval * self.burst
            k = 0
            while True:
                base = start_ns + int(k * period)
                for _ in range(self.burst):
                    yield base
                k += 1
