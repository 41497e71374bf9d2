"""The subject's side of tickscope: probe writers and the ring layout.

Imports only the standard library, so an instrumented program needs nothing else installed.
"""

from .layout import CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_TSC
from .ring import RING_DIR_ENV, Point, PointWriter, TickWriter, ring_dir

__all__ = [
    "CLOCK_MONOTONIC",
    "CLOCK_REALTIME",
    "CLOCK_TSC",
    "RING_DIR_ENV",
    "Point",
    "PointWriter",
    "TickWriter",
    "ring_dir",
]
