"""Market data: MoldUDP64 packets on UDP, each message the trace whose id is its sequence number."""

from __future__ import annotations

import numpy as np

from .capture import Capture, add_count
from .headers import IPPROTO_UDP, Headers, be16, be32
from .traces import first_per_trace

MOLD_HEADER_LEN = 20  # session (10), sequence of the first message (u64), message count (u16)
MOLD_END_OF_SESSION = 0xFFFF


def mold_messages(cap: Capture, hdr: Headers, ports: set[int], counters: dict[str, int],
                  sessions: set[bytes]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """-> (trace ids, wire.md stamps) of the MoldUDP64 messages in one chunk, sorted by trace id, a
    sequence seen twice in it keeping its first stamp; ``md_messages_seen`` counts them all."""
    buf = np.frombuffer(cap.data, dtype=np.uint8)
    md = (hdr.proto == IPPROTO_UDP) & np.isin(hdr.dport, list(ports))
    add_count(counters, "md_packets", int(np.count_nonzero(md)))
    p, pend = hdr.payload[md], hdr.payload_end[md]
    ts = cap.ts_ns[md]
    short = pend - p < MOLD_HEADER_LEN
    if short.any():
        add_count(counters, "md_packets_malformed", int(np.count_nonzero(short)))
        p, pend, ts = p[~short], pend[~short], ts[~short]
    seq = (be32(buf, p + 10) << 32) | be32(buf, p + 14)
    count = be16(buf, p + 18)
    heartbeat = (count == 0) | (count == MOLD_END_OF_SESSION)
    add_count(counters, "md_heartbeats", int(np.count_nonzero(heartbeat)))
    # each message is at least its 2-byte length (the trader frames an empty one, then fails to decode it)
    overfull = ~heartbeat & (count * 2 > pend - p - MOLD_HEADER_LEN)
    if overfull.any():
        add_count(counters, "md_packets_malformed", int(np.count_nonzero(overfull)))
    keep = ~heartbeat & ~overfull
    misframed = keep & ~_mold_framing_holds(buf, p, pend, count, keep)
    if misframed.any():  # the trader drops such a packet whole: its messages are no traces
        add_count(counters, "md_packets_malformed", int(np.count_nonzero(misframed)))
        keep &= ~misframed
    if keep.any():
        sessions.update(np.unique(buf[(p[keep])[:, None] + np.arange(10)].view("S10").ravel()).tolist())
    seq, count, ts = seq[keep], count[keep], ts[keep]
    total = int(count.sum())
    starts = np.repeat(seq - (np.cumsum(count) - count), count)
    trace = starts + np.arange(total, dtype=np.int64)  # first seq of the packet + index in it
    add_count(counters, "md_messages_seen", total)
    return first_per_trace(trace, np.repeat(ts, count))


def _mold_framing_holds(buf: np.ndarray, p: np.ndarray, pend: np.ndarray, count: np.ndarray,
                        which: np.ndarray) -> np.ndarray:  # fmt: skip
    """Per packet (of those in ``which``): its ``count`` length-prefixed messages fill the payload
    exactly, as the trader's MoldReceiver requires before it hands out any of them. One numpy step
    per message index; a packet whose framing broke walks on from past its end, never back in."""
    idx = np.flatnonzero(which)
    pos, end, left = p[idx] + MOLD_HEADER_LEN, pend[idx], count[idx]
    broken = 1 << 40
    for k in range(int(left.max(initial=0))):
        nxt = pos + 2 + be16(buf, pos)
        pos = np.where(left > k, np.where(nxt <= end, nxt, broken), pos)
    ok = np.zeros(which.size, dtype=bool)
    ok[idx] = pos == end
    return ok
