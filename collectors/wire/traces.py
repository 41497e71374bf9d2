"""Arrays keyed by trace id: the first stamp of each trace, and joins of one side to the other."""

from __future__ import annotations

import numpy as np


def i64(values=()) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def first_per_trace(trace: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (trace ids, earliest stamp of each), sorted by trace id."""
    if trace.size < 2 or bool((trace[1:] > trace[:-1]).all()):
        return trace, stamps  # one chunk's, or chunks in sequence order: sorted and unique already
    order = np.lexsort((stamps, trace))
    trace, stamps = trace[order], stamps[order]
    first = np.ones(trace.size, dtype=bool)
    first[1:] = trace[1:] != trace[:-1]
    return trace[first], stamps[first]


def join_traces(keys: np.ndarray, stamps: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted and unique -> (mask of ``wanted`` found in them, their stamps)."""
    at = np.searchsorted(keys, wanted)
    found = at < keys.size
    found[found] = keys[at[found]] == wanted[found]
    return found, stamps[at[found]]
