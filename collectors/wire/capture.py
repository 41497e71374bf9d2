"""A capture in memory: ``Capture`` (packets of one chunk of a file), ``WireError`` (a capture that
cannot be read at all), and the bounds every reader shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAD = 128  # zero bytes after the file's data, so header gathers past a short packet stay in bounds


MAX_RECORD_LEN = 16 << 20  # longer pcap records or pcapng blocks are damage (libpcap, Wireshark: 256 KiB)


MAX_STAMP_NS = 1 << 62  # 2116: beyond any pcap stamp (u32 seconds), and the joins' "none" sentinel


class WireError(Exception):
    """A capture that cannot be read at all (missing, not pcap/pcapng, no packets): one line."""


@dataclass
class Capture:
    """Every packet of a capture: its stamp (ns since the epoch), where its bytes sit in ``data``,
    captured and original length and link type."""

    data: bytes
    ts_ns: np.ndarray
    offset: np.ndarray
    caplen: np.ndarray
    origlen: np.ndarray
    linktype: np.ndarray
    fmt: str
    counters: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts_ns.size)


def add_count(counters: dict[str, int], name: str, n: int = 1) -> None:
    counters[name] = counters.get(name, 0) + n
