"""pcap files (libpcap's format, microsecond or nanosecond stamps), read as they grow or in chunks."""

from __future__ import annotations

import struct

import numpy as np

from .capture import MAX_RECORD_LEN, PAD, Capture, WireError

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN = 24, 16


class PcapStream:
    """A pcap file read as it grows (tcpdump -U writing it) or in chunks: ``push`` bytes in file
    order and get the complete records among them as a ``Capture``; a record cut by the end of
    what was pushed waits for the next push. ``close`` says what was left over (a truncated last
    record: a counter and a line). One walk for every use, so a file read in pieces gives the
    same packets as the file read whole. A record longer than ``MAX_RECORD_LEN`` stops reading
    (``stopped``): its length is damage, and waiting for its end would hold the rest of the file."""

    def __init__(self, name: str = "capture"):
        self.name = name
        self.pending = bytearray()
        self.file_pos = 0  # file offset of pending[0]
        self.packets = 0
        self.stopped = False
        self.unpack = None
        self.nano = False
        self.linktype = 0

    def push(self, data: bytes) -> Capture:
        if self.stopped:
            return self._capture(b"", [], [], [], [], [])
        buf = bytes(self.pending) + data if self.pending else bytes(data)
        pos = 0
        if self.unpack is None:
            if len(buf) < PCAP_HEADER_LEN:
                self.pending = bytearray(buf)
                return self._capture(b"", [], [], [], [], [])
            self._header(buf)
            pos = PCAP_HEADER_LEN
        length_at = self.unpack  # the captured length of the record whose header starts at an offset
        heads: list[int] = []
        append = heads.append
        start, end = pos, len(buf)
        bad = None
        # One Python step per record, only for its length (records are not of one size); the
        # headers' four fields are then read for all records at once by numpy.
        while pos + PCAP_RECORD_HEADER_LEN <= end:
            (incl,) = length_at(buf, pos + 8)
            if incl > MAX_RECORD_LEN:
                bad = incl
                break
            following = pos + PCAP_RECORD_HEADER_LEN + incl
            if following > end:
                break
            append(pos)
            pos = following
        if heads:
            at = np.array(heads, dtype=np.int64)
            raw = np.frombuffer(buf, dtype=np.uint8)[at[:, None] + np.arange(PCAP_RECORD_HEADER_LEN)]
            rec = raw.view(self.fields).reshape(-1, 4).astype(np.int64)
            secs, fracs, offs, caps, origs = (
                rec[:, 0],
                rec[:, 1],
                at + PCAP_RECORD_HEADER_LEN,
                rec[:, 2],
                rec[:, 3],
            )
        else:
            secs = fracs = offs = caps = origs = []
        self.pending = bytearray(buf[pos:]) if bad is None else bytearray()
        at = self.file_pos + pos - start
        self.file_pos = at
        self.packets += len(heads)
        cap = self._capture(buf if pos == end else buf[:pos], secs, fracs, offs, caps, origs)
        if bad is not None:
            self.stopped = True
            cap.counters["capture_bad_records"] = 1
            cap.warnings.append(f"{self.name}: record at byte {at} has captured length {bad}, more than "
                                f"{MAX_RECORD_LEN} (the file is damaged); reading stopped there, "
                                f"{self.packets} packets read before it")  # fmt: skip
        return cap

    def _header(self, buf: bytes) -> None:
        for endian in "<>":
            magic = struct.unpack_from(endian + "I", buf)[0]
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                break
        else:
            raise WireError(f"{self.name}: not a pcap capture (magic {buf[:4].hex()})")
        self.nano = magic == PCAP_MAGIC_NS
        self.linktype = struct.unpack_from(endian + "I", buf, 20)[0] & 0x0FFFFFFF  # upper bits: FCS flags
        self.unpack = struct.Struct(endian + "I").unpack_from
        self.fields = np.dtype(endian + "u4")
        self.file_pos = PCAP_HEADER_LEN

    def _capture(self, chunk: bytes, secs, fracs, offs, caps, origs) -> Capture:
        ts = np.array(secs, dtype=np.int64) * 1_000_000_000 + np.array(fracs, dtype=np.int64) * (
            1 if self.nano else 1000
        )
        return Capture(chunk + bytes(PAD), ts, np.array(offs, dtype=np.int64), np.array(caps, dtype=np.int64),
                       np.array(origs, dtype=np.int64), np.full(len(offs), self.linktype, dtype=np.int32),
                       "" if self.unpack is None else "pcap-ns" if self.nano else "pcap-us")  # fmt: skip

    def close(self) -> Capture:
        """No more bytes will come: an empty ``Capture`` carrying what was left over."""
        if self.unpack is None:
            raise WireError(
                f"{self.name}: truncated pcap header ({len(self.pending)} of {PCAP_HEADER_LEN} bytes)"
            )
        end = self._capture(b"", [], [], [], [], [])
        if self.pending:
            at, size = self.file_pos, self.file_pos + len(self.pending)
            end.counters["capture_truncated_records"] = 1
            end.warnings.append(f"{self.name}: last record truncated at byte {at} of {size} "
                                f"(capture cut short?); {self.packets} packets read before it")  # fmt: skip
        return end
