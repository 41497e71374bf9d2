"""The end marker: the UDP datagram ``profile --capture`` ends its capture with."""

from __future__ import annotations

import numpy as np

from .capture import Capture
from .headers import IPPROTO_UDP, Headers

# ``profile --capture`` ends its capture with one UDP datagram of its own (collectors/side/capture.py):
# once it is in the file, every packet captured before it is too. Recognised by its payload, so
# ``tickscope wire`` on the same file counts it as the marker, not as a stray packet.
END_MARKER_MAGIC = b"tickscope-capture-end:"


def end_markers(cap: Capture, hdr: Headers, md_ports: set[int]) -> list[bytes]:
    """Payloads of the end-marker datagrams in a chunk (never on a market-data port)."""
    udp = (hdr.proto == IPPROTO_UDP) & ~np.isin(hdr.dport, list(md_ports))
    at = np.flatnonzero(udp & (hdr.payload_end - hdr.payload >= len(END_MARKER_MAGIC)))
    if not at.size:
        return []
    buf = np.frombuffer(cap.data, dtype=np.uint8)
    head = buf[np.minimum(hdr.payload[at][:, None] + np.arange(len(END_MARKER_MAGIC)), buf.size - 1)]
    hits = at[(head == np.frombuffer(END_MARKER_MAGIC, dtype=np.uint8)).all(axis=1)]
    return [cap.data[hdr.payload[i] : hdr.payload_end[i]] for i in hits.tolist()]
