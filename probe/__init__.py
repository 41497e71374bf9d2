"""The subject's side of tickscope: probe writers and the ring layout.

Imports only the standard library, so an instrumented program needs nothing else installed.
"""

from pathlib import Path

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
    "include_dir",
    "ring_dir",
]


def include_dir() -> str:
    """The directory holding ``tickscope_probe.h`` (the C/C++ probe), for ``-I``.

    Also printed by ``tickscope include-dir`` and, as ``-I<dir>``, by
    ``python -m tickscope.probe --cflags``.
    """
    return str(Path(__file__).resolve().parent / "include")
