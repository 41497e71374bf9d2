"""IP datagrams put back together from their fragments, as the receiving host's kernel does."""

from __future__ import annotations

import bisect
import struct

import numpy as np

from .capture import add_count


class _Datagram:
    __slots__ = ("first_ts", "offsets", "pieces", "received", "total", "version", "proto", "addresses")

    def __init__(self, first_ts: int, version: int, proto: int, addresses: bytes):
        self.first_ts, self.version, self.proto, self.addresses = first_ts, version, proto, addresses
        self.offsets: list[int] = []  # sorted
        self.pieces: dict[int, tuple[bytes, int]] = {}  # offset -> (bytes, stamp)
        self.received = 0
        self.total: int | None = None


class IpReassembly:
    """IP datagrams put back together from their fragments, as the receiving host's kernel does
    before the feed handler reads a byte: IPv4 by (source, destination, protocol, id), IPv6 by
    (source, destination, id). A datagram is whole when its last fragment is in and no byte before
    it is missing; its stamp is that of the fragment holding its first byte (where the Mold header
    and first message start). As Linux: fragments that overlap (other than an exact repeat) spoil
    the datagram (RFC 5722), an incomplete datagram is given up ``TIMEOUT_NS`` after its first
    fragment (ipfrag_time) or when what is held passes ``MAX_BYTES`` (ipfrag_high_thresh), oldest
    first: memory stays bounded whatever the capture, and every datagram given up is counted."""

    MAX_BYTES = 4 << 20
    TIMEOUT_NS = 30 * 1_000_000_000
    MAX_DATAGRAM = 65535
    PIECE_OVERHEAD = 100  # bytes of bookkeeping per fragment held, counted against MAX_BYTES

    def __init__(self, counters: dict[str, int]):
        self.counters = counters
        self.datagrams: dict[bytes, _Datagram] = {}  # first seen first
        self.bytes = 0

    def add(self, data: bytes, ts_ns: np.ndarray, idx, addr, addr_len, offset, more, ident, start, stop,
            version, proto) -> list[tuple[int, bytes, int]]:  # fmt: skip
        """Fragments of one chunk -> (index of the completing fragment, the datagram as a raw IP
        packet, its stamp) per datagram completed."""
        add_count(self.counters, "packets_ip_fragments", int(idx.size))
        out = []
        cols = (idx, addr, addr_len, offset, more, ident, start, stop, version, proto, ts_ns[idx])
        for i, a, alen, off, mf, ident_, p, pend, ver, nxt, ts in zip(
            *(c.tolist() for c in cols), strict=True
        ):
            self._expire(ts)
            addresses = data[a : a + 2 * alen]
            key = bytes((ver,)) + addresses + (bytes((nxt,)) if ver == 4 else b"") + ident_.to_bytes(4, "big")
            piece = data[p:pend]
            end = off + len(piece)
            d = self.datagrams.get(key)
            if d is None:
                d = self.datagrams[key] = _Datagram(ts, ver, nxt, addresses)
            at = bisect.bisect_left(d.offsets, off)
            same = d.pieces.get(off)
            if same is not None and same[0] == piece:
                add_count(self.counters, "ip_fragments_repeated")
                continue
            last_end = d.offsets[-1] + len(d.pieces[d.offsets[-1]][0]) if d.offsets else 0
            if (end > self.MAX_DATAGRAM or (mf and len(piece) % 8) or (mf and d.total is not None and end > d.total)
                    or (not mf and (d.total not in (None, end) or last_end > end))):  # fmt: skip
                self._drop(key, "ip_fragments_malformed")
                continue
            before = d.offsets[at - 1] if at else None
            after = d.offsets[at] if at < len(d.offsets) else None
            if (before is not None and before + len(d.pieces[before][0]) > off) or (
                after is not None and after < end
            ):
                self._drop(key, "ip_fragments_overlapping")
                continue
            d.offsets.insert(at, off)
            d.pieces[off] = (piece, ts)
            d.received += len(piece)
            self.bytes += len(piece) + self.PIECE_OVERHEAD
            if off == 0:
                d.proto = nxt  # the first fragment's next header names what the datagram carries
            if not mf:
                d.total = end
            if d.total is None or d.received != d.total:
                self._shrink()
                continue
            self._forget(key)
            body = b"".join(d.pieces[o][0] for o in d.offsets)
            src, dst = addresses[:alen], addresses[alen:]
            if ver == 4:
                head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + d.total, 0, 0, 64, d.proto, 0, src, dst)
            else:
                head = struct.pack(">IHBB16s16s", 6 << 28, d.total, d.proto, 64, src, dst)
            add_count(self.counters, "ip_datagrams_reassembled")
            out.append((i, head + body, d.pieces[0][1]))
        return out

    def _forget(self, key: bytes) -> _Datagram:
        d = self.datagrams.pop(key)
        self.bytes -= d.received + self.PIECE_OVERHEAD * len(d.offsets)
        return d

    def _drop(self, key: bytes, why: str) -> None:
        self._forget(key)
        add_count(self.counters, why)
        add_count(self.counters, "ip_datagrams_incomplete")

    def _expire(self, now: int) -> None:
        while self.datagrams:
            key = next(iter(self.datagrams))
            if self.datagrams[key].first_ts >= now - self.TIMEOUT_NS:
                return
            self._drop(key, "ip_datagrams_timed_out")

    def _shrink(self) -> None:
        while self.bytes > self.MAX_BYTES and self.datagrams:
            self._drop(next(iter(self.datagrams)), "ip_datagrams_over_memory_bound")

    def finish(self) -> None:
        """The capture is over: datagrams still incomplete are counted."""
        for key in list(self.datagrams):
            self._drop(key, "ip_datagrams_unfinished")
