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


def first_per_leg(trace: np.ndarray, leg: np.ndarray, stamps: np.ndarray):
    """-> (trace ids, legs, earliest stamp of each (trace, leg)), sorted by trace id then leg."""
    order = np.lexsort((stamps, leg, trace))
    trace, leg, stamps = trace[order], leg[order], stamps[order]
    first = np.ones(trace.size, dtype=bool)
    first[1:] = (trace[1:] != trace[:-1]) | (leg[1:] != leg[:-1])
    return trace[first], leg[first], stamps[first]


def lookup_legs(trace: np.ndarray, leg: np.ndarray, ts: np.ndarray, wanted_trace: np.ndarray,
                wanted_leg: np.ndarray) -> np.ndarray:  # fmt: skip
    """Stamp of each wanted (trace id, leg), the earliest kept; 0 where there is none. The pair is
    one key by the dense rank of the trace id (any u64 trace id and u16 leg fit an int64 so)."""
    ids, rank = np.unique(np.concatenate((trace, wanted_trace)), return_inverse=True)
    key = rank.astype(np.int64) * (1 << 16) + np.concatenate((leg, wanted_leg)).astype(np.int64)
    have, want = key[: trace.size], key[trace.size :]
    order = np.lexsort((ts, have))
    have, ts = have[order], ts[order]
    at = np.searchsorted(have, want)
    found = at < have.size
    found[found] = have[at[found]] == want[found]
    out = np.zeros(want.size, np.int64)
    out[found] = ts[at[found]]
    return out
