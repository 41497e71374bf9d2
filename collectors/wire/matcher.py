"""Wire captures (pcap, pcapng) read and matched to traces: ``wire.md``, ``wire.order``, ``wire_to_wire``.

A capture appliance (or tcpdump) stamps every frame as it passes. STAC-T1 measures tick-to-trade
there: from the first byte of the market-data message (SOM) to the first byte of the order frame
it caused (SOF). This module turns a capture into those two points per trace:

``wire.md``     MoldUDP64 packet on a market-data UDP port: every message it carries is the trace
                whose id is its sequence number (packet's first sequence + index of the message in
                the packet), the key the bundled feed handler gives its traces. The stamp is the
                packet's (a capture stamps frames, not the bytes inside them).
``wire.order``  FIX NewOrderSingle (35=D) sent to an order port, after TCP reassembly per direction
                (out-of-order segments wait for the hole to fill, retransmitted bytes are taken
                once, frames split across segments or several in one are framed by BodyLength).
                The stamp is that of the segment holding the frame's first byte. The trace id is
                read from the ClOrdID (tag 11, or the tag a venue uses instead) with a regex whose
                first group is the id; the bundled trader's ClOrdIDs are ``TS<trace id>-<n>``.

Parsing: the file is walked once in Python for record boundaries (pcap record headers, pcapng
blocks), then link, IP, UDP and TCP headers of all packets are decoded at once with numpy over the
fixed-layout header bytes (gathers on the whole buffer). Only order-port TCP segments go through
Python one by one (stream reassembly needs state). dpkt builds one Python object per layer per
packet, several times slower than the record walk alone (``benchmarks/bench_wire.py`` measures it).

Bad input never raises past ``read_capture``/``match``: an unreadable file is a ``WireError`` (one
line), everything else (a pcapng block with a wrong length, a truncated last record, packets cut
by the snap length, unknown link types, malformed Mold or FIX) is a counter in ``counters`` and,
where it stops reading, a line in ``warnings``.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# -- capture files --------------------------------------------------------------------------------
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
PCAPNG_IDB, PCAPNG_SPB, PCAPNG_EPB, PCAPNG_OBSOLETE_PB = 1, 3, 6, 2
IDB_OPT_TSRESOL, IDB_OPT_TSOFFSET = 9, 14

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_IPV4, LINKTYPE_IPV6 = 113, 276, 228, 229
DLT_RAW_ALIASES = (12, 14)  # DLT_RAW as some BSDs number it in pcap files
SUPPORTED_LINKTYPES = {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
                       LINKTYPE_LINUX_SLL2, LINKTYPE_IPV4, LINKTYPE_IPV6, *DLT_RAW_ALIASES}  # fmt: skip

ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
IPPROTO_TCP, IPPROTO_UDP = 6, 17
TCP_SYN = 0x02

PAD = 128  # zero bytes after the file's data, so header gathers past a short packet stay in bounds


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


# What ``tickscope wire`` reads at a time. 1 M packets (126 MB pcap): 4 MiB chunks peak at 133 MB RSS
# in 1.55 s, 32 MiB at 330 MB in 2.06 s (smaller chunks stay in cache); below 4 MiB nothing is won.
CHUNK_BYTES = 4 << 20
MAX_RECORD_LEN = 16 << 20  # longer pcap records or pcapng blocks are damage (libpcap, Wireshark: 256 KiB)


def capture_stream(head: bytes, path: str | Path) -> PcapStream | PcapngStream:
    """The stream that reads a file beginning with ``head`` (at least its first 4 bytes): chosen by
    the magic, and a file that is neither pcap nor pcapng is refused on those bytes alone."""
    if len(head) < 4:
        raise WireError(f"{path}: {len(head)} bytes, not a pcap or pcapng capture (too short)")
    name = Path(path).name
    if struct.unpack_from("<I", head)[0] == PCAPNG_SHB:  # the same in both byte orders
        return PcapngStream(name)
    for endian in "<>":
        if struct.unpack_from(endian + "I", head)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return PcapStream(name)
    raise WireError(f"{path}: not a pcap or pcapng capture (magic {head[:4].hex()}); "
                    "write captures with tcpdump -w or convert with editcap -F pcap")  # fmt: skip


IDENTITY_HEAD = 1 << 20  # a capture's identity: sha256 of its first MiB and its size (see capture_identity)


def read_chunks(
    path: str | Path, chunk_bytes: int = CHUNK_BYTES, identity: dict | None = None
) -> Iterator[Capture]:
    """The capture at ``path`` as ``Capture``s of whole packets, read ``chunk_bytes`` at a time: memory
    holds one chunk (and the record cut by its end), however large the file. The last one is what
    the stream's ``close`` says (a truncated last record, the interfaces seen). Reading stops at a
    record or block whose length cannot be trusted. ``identity``, when given, is filled from the
    bytes as they are read (``capture_identity``): a FIFO or a pipe cannot be read twice."""
    p = Path(path)
    digest = hashlib.sha256()
    seen = 0
    try:
        with open(p, "rb") as f:
            regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            data = f.read(max(chunk_bytes, 4))
            stream = capture_stream(data, p)
            while data and not stream.stopped:
                if seen < IDENTITY_HEAD:
                    digest.update(data[: IDENTITY_HEAD - seen])
                seen += len(data)
                cap = stream.push(data)
                data = None  # the chunk's bytes live on in cap.data only, not twice while the next is read
                yield cap
                cap = None
                data = f.read(chunk_bytes)
            if identity is not None:
                # A regular file's size is its own (as when the identity was read apart from the
                # match); a pipe's is what came through it, up to where reading stopped.
                size = os.fstat(f.fileno()).st_size if regular else seen
                if regular and seen < min(size, IDENTITY_HEAD):  # stopped at damage inside the first MiB
                    f.seek(seen)
                    digest.update(f.read(IDENTITY_HEAD - seen))
                digest.update(size.to_bytes(8, "little"))
                identity.update({"file": p.name, "bytes": size, "sha256_head": digest.hexdigest()})
    except OSError as e:
        raise WireError(f"cannot read capture {p}: {e.strerror or e}") from None
    yield stream.close()


def read_capture(path: str | Path) -> Capture:
    """A whole capture in one ``Capture`` (tests, small files): the stream ``read_chunks`` uses, fed once."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise WireError(f"cannot read capture {p}: {e.strerror or e}") from None
    stream = capture_stream(data, p)
    cap = stream.push(data)
    end = stream.close()  # a truncated pcap header raises, a truncated last record is counted
    for k, v in end.counters.items():
        _count(cap.counters, k, v)
    cap.warnings += end.warnings
    return cap


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


@dataclass
class _Interface:
    linktype: int
    tsresol: int = 6  # pcapng default: microseconds
    tsoffset_s: int = 0


MAX_STAMP_NS = 1 << 62  # 2116: beyond any pcap stamp (u32 seconds), and the joins' "none" sentinel


def _ticks_to_ns(ticks: np.ndarray, resol: int, offset_s: int) -> tuple[np.ndarray, np.ndarray]:
    """pcapng if_tsresol (high bit clear = 10**-n s per tick, set = 2**-n s per tick) and
    if_tsoffset (seconds added) -> (ns since the epoch, which of them are in 0 .. MAX_STAMP_NS).
    Any byte value of either option gives an answer: a stamp out of range is refused, never an
    overflow."""
    offset_ns = offset_s * 1_000_000_000
    if resol & 0x80 or resol > 9 + 19:  # exact in Python ints (2**-0 s ticks * 1e9 overflow int64)
        if resol & 0x80:
            shift = resol & 0x7F
            ns = [((int(t) * 1_000_000_000) >> shift) + offset_ns for t in ticks.tolist()]
        else:
            ns = [offset_ns] * ticks.size  # 10**-28 s ticks or finer: a u64 of them is under 1 ns
        ok = np.array([0 <= x < MAX_STAMP_NS for x in ns], dtype=bool)
        return np.array([x if 0 <= x < MAX_STAMP_NS else 0 for x in ns], dtype=np.int64), ok
    if resol <= 9:
        scale = 10 ** (9 - resol)
        ok = ticks < np.uint64(MAX_STAMP_NS // scale)
        ns = np.where(ok, ticks, 0).astype(np.int64) * scale
    else:
        ns = (ticks // np.uint64(10 ** (resol - 9))).astype(np.int64)  # < 2**63: fits
        ok = np.ones(ticks.size, dtype=bool)
    if not -(1 << 63) < offset_ns < MAX_STAMP_NS:
        ok[:] = False
    else:  # 0 <= ns + offset < MAX_STAMP_NS, with bounds that fit int64
        ok &= (ns >= max(-offset_ns, 0)) & (ns < min(MAX_STAMP_NS - offset_ns, (1 << 63) - 1))
    return np.where(ok, ns + (offset_ns if ok.any() else 0), 0), ok


class PcapngStream:
    """A pcapng file pushed in pieces, as ``PcapStream``: blocks walked in file order; the section's
    byte order and its interface table (link type, if_tsresol, if_tsoffset) carry over from one
    push to the next, and a block cut by the end of a push waits for the next. A bad block (a
    length that cannot be, a trailer that disagrees, an unknown byte order) stops reading
    (``stopped``): the lengths after it cannot be trusted. ``close`` counts a block left
    incomplete as a bad one, the interfaces packets came on, and simple packet blocks (no stamp)."""

    def __init__(self, name: str = "capture"):
        self.name = name
        self.pending = b""
        self.file_pos = 0  # file offset of pending[0]
        self.packets = 0
        self.stopped = False
        self.endian = "<"
        self.section = 0
        self.ifaces: list[_Interface] = []  # the current section's, by interface id
        self.all_ifaces: dict[int, _Interface] = {}  # (section << 32 | interface id) -> interface
        self.used: set[int] = set()  # keys of the interfaces packets came on
        self.bad_stamps: dict[int, _Interface] = {}  # interfaces that stamped packets out of range
        self.no_stamp = 0

    def push(self, data: bytes) -> Capture:
        if self.stopped:
            return self._walk(b"", final=False)
        return self._walk(self.pending + data if self.pending else bytes(data), final=False)

    def close(self) -> Capture:
        end = self._walk(self.pending, final=True)  # what is left is a block cut short
        end.counters["capture_interfaces"] = len(self.used)
        for key, iface in self.bad_stamps.items():  # said at the end: the same lines however the file is read
            end.warnings.append(f"{self.name}: interface {key & 0xFFFFFFFF} of section {key >> 32} stamps packets "
                                f"outside 1970-2116 (if_tsresol {iface.tsresol}, if_tsoffset {iface.tsoffset_s} s): "
                                "those packets are counted (capture_packets_bad_stamp), not used")  # fmt: skip
        if self.no_stamp:
            end.counters["capture_packets_without_stamp"] = self.no_stamp
            end.warnings.append(
                f"{self.name}: {self.no_stamp} simple packet blocks carry no timestamp: not used"
            )
        return end

    def _walk(self, buf: bytes, final: bool) -> Capture:
        counters: dict[str, int] = {}
        warnings: list[str] = []
        keys, ticks, offs, caps, origs = [], [], [], [], []
        pos, end, base = 0, len(buf), self.file_pos

        def stop(why: str) -> None:
            self.stopped = True
            counters["capture_bad_blocks"] = 1
            warnings.append(f"{self.name}: {why}; reading stopped there, "
                            f"{self.packets + len(offs)} packets read before it")  # fmt: skip

        while pos < end:
            at = base + pos
            if pos + 12 > end:
                if final:
                    stop(f"truncated pcapng block header at byte {at} of {base + end}")
                break
            endian = self.endian
            btype = struct.unpack_from(endian + "I", buf, pos)[0]
            if btype == PCAPNG_SHB:
                bom = buf[pos + 8 : pos + 12]
                if bom == PCAPNG_BYTE_ORDER.to_bytes(4, "little"):
                    endian = "<"
                elif bom == PCAPNG_BYTE_ORDER.to_bytes(4, "big"):
                    endian = ">"
                else:
                    stop(f"pcapng section header at byte {at} has byte-order magic {bom.hex()}")
                    break
            blen = struct.unpack_from(endian + "I", buf, pos + 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_RECORD_LEN:
                stop(f"pcapng block type {btype:#x} at byte {at} has length {blen} (lengths are multiples "
                     f"of 4, at least 12, at most {MAX_RECORD_LEN})")  # fmt: skip
                break
            if pos + blen > end:
                if final:
                    stop(f"pcapng block type {btype:#x} at byte {at} has length {blen} but the file has "
                         f"{end - pos} bytes left (capture cut short?)")  # fmt: skip
                break
            trailer = struct.unpack_from(endian + "I", buf, pos + blen - 4)[0]
            if trailer != blen:
                stop(
                    f"pcapng block type {btype:#x} at byte {at}: length {blen} but trailing length {trailer}"
                )
                break
            body = pos + 8
            if btype == PCAPNG_SHB:
                self.endian = endian
                self.ifaces = []  # interface ids are per section
                self.section += 1
            elif btype == PCAPNG_IDB and blen >= 20:
                linktype, _, _snaplen = struct.unpack_from(endian + "HHI", buf, body)
                iface = _Interface(linktype)
                _options(buf, body + 8, pos + blen - 4, endian, iface)
                self.all_ifaces[(self.section << 32) | len(self.ifaces)] = iface
                self.ifaces.append(iface)
            elif btype == PCAPNG_EPB and blen >= 32:
                iid, hi, lo, incl, orig = struct.unpack_from(endian + "IIIII", buf, body)
                if iid >= len(self.ifaces):
                    _count(counters, "capture_unknown_interface")
                elif body + 20 + incl > pos + blen - 4:
                    _count(counters, "capture_bad_packet_lengths")
                else:
                    keys.append((self.section << 32) | iid)
                    ticks.append((hi << 32) | lo)
                    offs.append(body + 20)
                    caps.append(incl)
                    origs.append(orig)
            elif btype in (PCAPNG_SPB, PCAPNG_OBSOLETE_PB):
                self.no_stamp += 1  # a simple packet block has no stamp: useless for timing
            pos += blen
        self.pending = b"" if self.stopped or final else buf[pos:]
        self.file_pos = base + pos
        self.packets += len(offs)
        ts = np.zeros(len(offs), dtype=np.int64)
        linktypes = np.zeros(len(offs), dtype=np.int32)
        key_arr = np.array(keys, dtype=np.int64)
        tick_arr = np.array(ticks, dtype=np.uint64)
        stamped = np.ones(len(offs), dtype=bool)
        for key in np.unique(key_arr).tolist():
            iface = self.all_ifaces[key]
            self.used.add(key)
            sel = key_arr == key
            ts[sel], ok = _ticks_to_ns(tick_arr[sel], iface.tsresol, iface.tsoffset_s)
            stamped[sel] = ok
            linktypes[sel] = iface.linktype
            if not ok.all():
                self.bad_stamps.setdefault(key, iface)
        chunk = buf if pos == end else buf[:pos]
        cap = Capture(chunk + bytes(PAD), ts, np.array(offs, dtype=np.int64), np.array(caps, dtype=np.int64),
                      np.array(origs, dtype=np.int64), linktypes, "pcapng", counters, warnings)  # fmt: skip
        if not stamped.all():
            _count(counters, "capture_packets_bad_stamp", int(np.count_nonzero(~stamped)))
            for name in ("ts_ns", "offset", "caplen", "origlen", "linktype"):
                setattr(cap, name, getattr(cap, name)[stamped])
        return cap


def _options(data: bytes, pos: int, end: int, endian: str, iface: _Interface) -> None:
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", data, pos)
        if code == 0:
            return
        value = pos + 4
        if value + length > end:
            return
        if code == IDB_OPT_TSRESOL and length >= 1:
            iface.tsresol = data[value]
        elif code == IDB_OPT_TSOFFSET and length >= 8:
            iface.tsoffset_s = struct.unpack_from(endian + "q", data, value)[0]
        pos = value + (length + 3) // 4 * 4


# -- link, IP and transport headers of all packets at once ------------------------------------------
@dataclass
class Headers:
    """Per packet: IP protocol (0 = not IPv4/IPv6 UDP/TCP), ports, where the payload starts and ends,
    and for TCP the sequence number, flags and where the IP addresses are (for the stream key)."""

    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    payload: np.ndarray
    payload_end: np.ndarray
    tcp_seq: np.ndarray
    tcp_flags: np.ndarray
    addr: np.ndarray  # offset of the source address; the destination follows it
    addr_len: np.ndarray


def _count(counters: dict[str, int], name: str, n: int = 1) -> None:
    counters[name] = counters.get(name, 0) + n


def _u8(buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return buf[np.minimum(idx, buf.size - 8)].astype(np.int64)


def _be16(buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    idx = np.minimum(idx, buf.size - 8)
    return (buf[idx].astype(np.int64) << 8) | buf[idx + 1]


def _be32(buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return (_be16(buf, idx) << 16) | _be16(buf, idx + 2)


def decode_headers(cap: Capture, counters: dict[str, int], warnings: list[str],
                   fragments: IpReassembly | None = None) -> Headers:  # fmt: skip
    """Adds what it counts to ``counters`` (a matcher sums them over the chunks it is fed). With
    ``fragments``, IP fragments are handed to it, and a datagram it completes takes the place of
    its last fragment: its bytes are appended to ``cap.data`` and its stamp (that of the fragment
    holding its first byte) written into ``cap.ts_ns``."""
    buf = np.frombuffer(cap.data, dtype=np.uint8)
    ethertype, l3 = _link_layer(buf, cap, counters, warnings)
    hdr, frag = _ip_layer(buf, ethertype, l3, cap.offset + cap.caplen, counters)
    if frag is None:
        return hdr
    if fragments is None:
        _count(counters, "packets_ip_fragments", int(frag[0].size))
        return hdr
    whole = fragments.add(cap.data, cap.ts_ns, *frag)
    if not whole:
        return hdr
    at = np.array([i for i, _, _ in whole], dtype=np.int64)
    packets = [p for _, p, _ in whole]
    base = len(cap.data)
    offsets = base + np.cumsum([0] + [len(p) for p in packets[:-1]], dtype=np.int64)
    lengths = np.array([len(p) for p in packets], dtype=np.int64)
    cap.data = cap.data + b"".join(packets) + bytes(PAD)
    cap.ts_ns[at] = [t for _, _, t in whole]
    buf = np.frombuffer(cap.data, dtype=np.uint8)
    versions = _u8(buf, offsets) >> 4
    mini, again = _ip_layer(buf, np.where(versions == 4, ETHERTYPE_IPV4, ETHERTYPE_IPV6), offsets,
                            offsets + lengths, counters)  # fmt: skip
    if again is not None:  # a fragment header inside a reassembled datagram: no receiver nests them
        _count(counters, "packets_malformed_headers", int(again[0].size))
    for name in Headers.__dataclass_fields__:
        getattr(hdr, name)[at] = getattr(mini, name)
    return hdr


def _link_layer(buf: np.ndarray, cap: Capture, counters: dict[str, int], warnings: list[str]):
    """-> (ethertype, offset of the IP header) per packet; 0 ethertype: not IP."""
    off, lt = cap.offset, cap.linktype
    n = len(cap)
    ethertype = np.zeros(n, dtype=np.int64)
    l3 = np.zeros(n, dtype=np.int64)

    def version_ethertype(at: np.ndarray) -> np.ndarray:
        ver = _u8(buf, at) >> 4
        return np.where(ver == 4, ETHERTYPE_IPV4, np.where(ver == 6, ETHERTYPE_IPV6, 0))

    eth = lt == LINKTYPE_ETHERNET
    if eth.any():
        et = _be16(buf, off + 12)
        at = off + 14
        for _ in range(2):  # 802.1Q and QinQ tags
            tagged = (et == ETHERTYPE_VLAN) | (et == ETHERTYPE_QINQ)
            et = np.where(tagged, _be16(buf, at + 2), et)
            at = np.where(tagged, at + 4, at)
        ethertype[eth], l3[eth] = et[eth], at[eth]
    sll = lt == LINKTYPE_LINUX_SLL
    if sll.any():
        ethertype[sll], l3[sll] = _be16(buf, off + 14)[sll], (off + 16)[sll]
    sll2 = lt == LINKTYPE_LINUX_SLL2
    if sll2.any():
        ethertype[sll2], l3[sll2] = _be16(buf, off)[sll2], (off + 20)[sll2]
    raw = np.isin(lt, (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *DLT_RAW_ALIASES))
    if raw.any():
        ethertype[raw], l3[raw] = version_ethertype(off)[raw], off[raw]
    null = (lt == LINKTYPE_NULL) | (lt == LINKTYPE_LOOP)  # 4-byte address family, then IP
    if null.any():
        ethertype[null], l3[null] = version_ethertype(off + 4)[null], (off + 4)[null]
    known = np.isin(lt, list(SUPPORTED_LINKTYPES))
    for t in np.unique(lt[~known]):
        _count(counters, f"packets_unknown_linktype_{int(t)}", int(np.count_nonzero(lt == t)))
        line = (f"link type {int(t)} is not one tickscope decodes (Ethernet, Linux cooked SLL/SLL2, "
                "raw IP, loopback/null): its packets are counted, not read")  # fmt: skip
        if line not in warnings:
            warnings.append(line)
    return ethertype, l3


# IPv6 extension headers walked to the transport header (RFC 8200 4.1): hop-by-hop options,
# routing, destination options ((length + 1) * 8 bytes), authentication ((length + 2) * 4), fragment (8).
IPV6_HOPOPTS, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DSTOPTS = 0, 43, 44, 51, 60
IPV6_EXTENSIONS = (IPV6_HOPOPTS, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DSTOPTS)
MAX_IPV6_EXTENSIONS = 8  # more in one packet is an attack on parsers, not traffic


def _ip_layer(buf: np.ndarray, ethertype: np.ndarray, l3: np.ndarray, end: np.ndarray,
              counters: dict[str, int]):  # fmt: skip
    """-> (Headers, fragments): fragments None when there are none, else (packet index, key
    bytes offset and length, fragment offset in bytes, more-fragments flag, where the fragment's
    data starts and ends, version, next protocol) per IP fragment of the chunk, for ``IpReassembly``."""
    v4 = ethertype == ETHERTYPE_IPV4
    v6 = ethertype == ETHERTYPE_IPV6
    # Nothing past a packet's captured bytes is read as its header: those are the next packet's (or
    # padding), and what they say would depend on how the file was cut into chunks.
    truncated = (v4 & (l3 + 20 > end)) | (v6 & (l3 + 40 > end))
    v4, v6 = v4 & ~truncated, v6 & ~truncated
    ihl = (_u8(buf, l3) & 0xF) * 4
    flags_offset = _be16(buf, l3 + 6)
    ip_end = np.where(v4, l3 + _be16(buf, l3 + 2), l3 + 40 + _be16(buf, l3 + 4))
    proto = np.where(v4, _u8(buf, l3 + 9), np.where(v6, _u8(buf, l3 + 6), 0))
    l4 = np.where(v4, l3 + ihl, l3 + 40)
    frag_at = np.full(l3.size, -1, dtype=np.int64)  # IPv6: where the fragment header is
    walking = v6 & np.isin(proto, IPV6_EXTENSIONS)
    for _ in range(MAX_IPV6_EXTENSIONS):
        fits = l4 + 8 <= end  # every extension header is 8 bytes or more
        truncated |= walking & ~fits
        walking &= fits
        if not walking.any():
            break
        is_frag = walking & (proto == IPV6_FRAGMENT)
        length = np.where(is_frag, 8, np.where(proto == IPV6_AH, (_u8(buf, l4 + 1) + 2) * 4,
                                               (_u8(buf, l4 + 1) + 1) * 8))  # fmt: skip
        frag_at = np.where(is_frag, l4, frag_at)
        proto = np.where(walking, _u8(buf, l4), proto)
        l4 = np.where(walking, l4 + length, l4)
        if is_frag.any():  # after a fragment header of a real fragment come its data, not headers
            walking &= ~(is_frag & ((_be16(buf, frag_at + 2) & 0xFFF9) != 0))
        walking &= np.isin(proto, IPV6_EXTENSIONS) & (l4 < ip_end)
    has_frag = frag_at >= 0
    frag6 = has_frag & ~truncated & ((_be16(buf, frag_at + 2) & 0xFFF9) != 0) if has_frag.any() else has_frag
    frag4 = v4 & ((flags_offset & 0x3FFF) != 0) & ((proto == IPPROTO_UDP) | (proto == IPPROTO_TCP))
    addr = np.where(v4, l3 + 12, l3 + 8)
    addr_len = np.where(v4, 4, 16)
    ip = (v4 | v6) & ((proto == IPPROTO_UDP) | (proto == IPPROTO_TCP)) & ~frag4 & ~frag6 & ~truncated
    ip &= ~v4 | (ihl >= 20)
    if truncated.any():
        _count(counters, "packets_cut_by_snaplen", int(np.count_nonzero(truncated)))
    tcp = proto == IPPROTO_TCP
    header_end = np.where(tcp, l4 + 20, l4 + 8)
    payload = np.where(tcp, l4 + (_u8(buf, l4 + 12) >> 4) * 4, l4 + 8)
    udp_len = _be16(buf, l4 + 4)
    # UDP: the datagram is what its own length says (a receiver gets that many bytes), within IP's
    payload_end = np.where(tcp, ip_end, l4 + udp_len)
    cut = ip & ((header_end > end) | (ip_end > end))
    if cut.any():
        _count(counters, "packets_cut_by_snaplen", int(np.count_nonzero(cut)))
    bad = ip & ~cut & ((payload > ip_end) | (payload < header_end) | (payload_end > ip_end))
    if bad.any():
        _count(counters, "packets_malformed_headers", int(np.count_nonzero(bad)))
    ok = ip & ~cut & ~bad
    hdr = Headers(np.where(ok, proto, 0), _be16(buf, l4), _be16(buf, l4 + 2), payload, payload_end,
                  _be32(buf, l4 + 4), _u8(buf, l4 + 13), addr, addr_len)  # fmt: skip
    frag = frag4 | frag6
    if not frag.any():
        return hdr, None
    frag_cut = frag & (ip_end > end)
    if frag_cut.any():
        _count(counters, "packets_cut_by_snaplen", int(np.count_nonzero(frag_cut)))
    idx = np.flatnonzero(frag & ~frag_cut)
    v4i = v4[idx]
    fo = np.where(v4i, flags_offset[idx], _be16(buf, frag_at[idx] + 2))
    return hdr, (
        idx,
        addr[idx],
        addr_len[idx],
        np.where(v4i, (fo & 0x1FFF) * 8, (fo >> 3) * 8),  # fragment offset, bytes
        np.where(v4i, fo & 0x2000, fo & 1) != 0,  # more fragments
        np.where(v4i, _be16(buf, l3[idx] + 4), _be32(buf, frag_at[idx] + 4)),  # identification
        np.where(v4i, l4[idx], frag_at[idx] + 8),  # the fragment's data ...
        ip_end[idx],  # ... to here
        np.where(v4i, 4, 6),
        np.where(v4i, proto[idx], _u8(buf, frag_at[idx])),  # v6: the fragment header's next header
    )


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
        _count(self.counters, "packets_ip_fragments", int(idx.size))
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
                _count(self.counters, "ip_fragments_repeated")
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
            _count(self.counters, "ip_datagrams_reassembled")
            out.append((i, head + body, d.pieces[0][1]))
        return out

    def _forget(self, key: bytes) -> _Datagram:
        d = self.datagrams.pop(key)
        self.bytes -= d.received + self.PIECE_OVERHEAD * len(d.offsets)
        return d

    def _drop(self, key: bytes, why: str) -> None:
        self._forget(key)
        _count(self.counters, why)
        _count(self.counters, "ip_datagrams_incomplete")

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


# -- what to match -----------------------------------------------------------------------------------
DEFAULT_CLORDID_TAG = 11
DEFAULT_CLORDID_REGEX = r"(\d+)"  # first run of digits: TS<trace id>-<n> from the bundled trader


MD_PROTOCOLS = {"udp": "mold", "tcp": "ws"}  # --md: MoldUDP64 over UDP, WebSocket (ws://) over TCP
ORDER_PROTOCOLS = {"tcp": "fix"}  # --orders: FIX over TCP


@dataclass
class Endpoint:
    """``udp:PORT[:mold]``, ``tcp:PORT:ws`` or ``tcp:PORT[:fix]``: a transport, a port, a protocol."""

    transport: str
    port: int
    protocol: str

    @classmethod
    def parse(cls, text: str, protocols: dict[str, str]) -> Endpoint:
        """``protocols``: transport -> the protocol matched on it; the first transport is a bare
        port's, a missing protocol is the transport's."""
        parts = text.split(":")
        if len(parts) == 1:  # a bare port
            parts = [next(iter(protocols)), *parts]
        forms = " or ".join(f"{t}:PORT[:{p}]" for t, p in protocols.items())
        if (
            parts[0] not in protocols
            or len(parts) > 3
            or re.fullmatch(r"[0-9]{1,5}", parts[1]) is None  # str.isdigit takes '²', int() does not
            or not 0 < int(parts[1]) < 65536
        ):
            raise WireError(f"{text!r}: expected {forms} with PORT 1-65535")
        protocol = protocols[parts[0]]
        if len(parts) == 3 and parts[2] != protocol:
            raise WireError(
                f"{text!r}: protocol {parts[2]!r} is not one tickscope matches on {parts[0]} ({protocol})"
            )
        return cls(parts[0], int(parts[1]), protocol)


@dataclass
class OrderMapping:
    """Which FIX tag carries the trace and how to read the trace id from it (regex group 1)."""

    tag: int = DEFAULT_CLORDID_TAG
    regex: str = DEFAULT_CLORDID_REGEX

    def __post_init__(self):
        try:
            self.pattern = re.compile(self.regex.encode())
        except re.error as e:
            raise WireError(f"--clordid-regex {self.regex!r} is not a regular expression: {e}") from None
        if self.pattern.groups < 1:
            raise WireError(
                f"--clordid-regex {self.regex!r} needs one group (...) around the trace id digits"
            )
        self.field = b"\x01%d=" % self.tag

    def trace_id(self, value: bytes) -> int | None:
        m = self.pattern.search(value)
        if m is None:
            return None
        digits = m.group(1)  # None when the regex matched through another branch: '(a)|(\d+)'
        if digits is None:
            return None
        try:
            return int(digits)
        except ValueError:
            return None


# -- market data: MoldUDP64 ------------------------------------------------------------------------
MOLD_HEADER_LEN = 20  # session (10), sequence of the first message (u64), message count (u16)
MOLD_END_OF_SESSION = 0xFFFF


def mold_messages(cap: Capture, hdr: Headers, ports: set[int], counters: dict[str, int],
                  sessions: set[bytes]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """-> (trace ids, wire.md stamps) of the MoldUDP64 messages in one chunk, sorted by trace id, a
    sequence seen twice in it keeping its first stamp; ``md_messages_seen`` counts them all."""
    buf = np.frombuffer(cap.data, dtype=np.uint8)
    md = (hdr.proto == IPPROTO_UDP) & np.isin(hdr.dport, list(ports))
    _count(counters, "md_packets", int(np.count_nonzero(md)))
    p, pend = hdr.payload[md], hdr.payload_end[md]
    ts = cap.ts_ns[md]
    short = pend - p < MOLD_HEADER_LEN
    if short.any():
        _count(counters, "md_packets_malformed", int(np.count_nonzero(short)))
        p, pend, ts = p[~short], pend[~short], ts[~short]
    seq = (_be32(buf, p + 10) << 32) | _be32(buf, p + 14)
    count = _be16(buf, p + 18)
    heartbeat = (count == 0) | (count == MOLD_END_OF_SESSION)
    _count(counters, "md_heartbeats", int(np.count_nonzero(heartbeat)))
    # each message is at least its 2-byte length (the trader frames an empty one, then fails to decode it)
    overfull = ~heartbeat & (count * 2 > pend - p - MOLD_HEADER_LEN)
    if overfull.any():
        _count(counters, "md_packets_malformed", int(np.count_nonzero(overfull)))
    keep = ~heartbeat & ~overfull
    misframed = keep & ~_mold_framing_holds(buf, p, pend, count, keep)
    if misframed.any():  # the trader drops such a packet whole: its messages are no traces
        _count(counters, "md_packets_malformed", int(np.count_nonzero(misframed)))
        keep &= ~misframed
    if keep.any():
        sessions.update(np.unique(buf[(p[keep])[:, None] + np.arange(10)].view("S10").ravel()).tolist())
    seq, count, ts = seq[keep], count[keep], ts[keep]
    total = int(count.sum())
    starts = np.repeat(seq - (np.cumsum(count) - count), count)
    trace = starts + np.arange(total, dtype=np.int64)  # first seq of the packet + index in it
    _count(counters, "md_messages_seen", total)
    return _first_per_trace(trace, np.repeat(ts, count))


def _mold_framing_holds(buf: np.ndarray, p: np.ndarray, pend: np.ndarray, count: np.ndarray,
                        which: np.ndarray) -> np.ndarray:  # fmt: skip
    """Per packet (of those in ``which``): its ``count`` length-prefixed messages fill the payload
    exactly, as the trader's MoldReceiver requires before it hands out any of them. One numpy step
    per message index; a packet whose framing broke walks on from past its end, never back in."""
    idx = np.flatnonzero(which)
    pos, end, left = p[idx] + MOLD_HEADER_LEN, pend[idx], count[idx]
    broken = 1 << 40
    for k in range(int(left.max(initial=0))):
        nxt = pos + 2 + _be16(buf, pos)
        pos = np.where(left > k, np.where(nxt <= end, nxt, broken), pos)
    ok = np.zeros(which.size, dtype=bool)
    ok[idx] = pos == end
    return ok


def _first_per_trace(trace: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (trace ids, earliest stamp of each), sorted by trace id."""
    if trace.size < 2 or bool((trace[1:] > trace[:-1]).all()):
        return trace, stamps  # one chunk's, or chunks in sequence order: sorted and unique already
    order = np.lexsort((stamps, trace))
    trace, stamps = trace[order], stamps[order]
    first = np.ones(trace.size, dtype=bool)
    first[1:] = trace[1:] != trace[:-1]
    return trace[first], stamps[first]


# -- orders: FIX over TCP ----------------------------------------------------------------------------
FIX_BEGIN = b"8=FIX"
SOH = b"\x01"
# The header a frame must start with: BeginString of a FIX version, then BodyLength. The venue's
# parser (pipeline/fix.py) knows FIX.4.4 only; captures come from venues of any of these.
FIX_HEAD = re.compile(rb"8=FIX(?:\.4\.[0-4]|T\.1\.1)\x019=")
MAX_BODY_LENGTH_DIGITS = 9
MAX_FIX_MESSAGE = 64 * 1024  # bytes without a CheckSum field after which the receiver gives up
SEQ_MASK = 0xFFFFFFFF


class TcpStream:
    """One direction of one TCP connection, reassembled: bytes in sequence order, each byte's
    capture stamp that of the first segment that carried it.

    Segments after a hole wait for it to fill (every one of them, in capture order: a coalesced
    retransmission starting where a pending segment starts but carrying more is kept too), up to
    ``MAX_PENDING_BYTES``: beyond that the capture lost the hole's bytes (a retransmission comes
    within an RTO, not 16 MiB later), so the stream goes on after it (``tcp_gaps_skipped``,
    ``tcp_bytes_missing``; the unframed bytes before it are dropped, FIX framing resyncs on
    ``8=FIX``). Without it one lost segment would hold the rest of a day's stream in memory. A SYN
    with the stream's own ISN seen again after data (a late copy) is counted, never a rewind; a SYN
    with another ISN is a new connection, the caller's to start (``restarted_by``)."""

    MAX_PENDING_BYTES = 16 << 20

    def __init__(self, counters: dict[str, int]):
        self.counters = counters
        self.isn: int | None = None
        self.next_seq: int | None = None
        self.buf = bytearray()
        self.buf_pos = 0  # stream offset of buf[0]
        self.marks: list[int] = []  # stream offsets where a segment's bytes begin ...
        self.mark_ts: list[int] = []  # ... and their stamps
        # out of order, by arrival (capture order): n -> (seq, payload, stamp)
        self.pending: dict[int, tuple[int, bytes, int]] = {}
        self.pending_longest: dict[int, int] = {}  # seq -> the longest payload pending from it
        self.arrivals = 0
        self.pending_bytes = 0
        self.stream_pos = 0  # stream offset of next_seq
        self.gaps = 0  # holes given up on (see MAX_PENDING_BYTES)
        self.gap_at = 0  # stream offset of the last one

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def restarted_by(self, seq: int, flags: int) -> bool:
        """This segment is a SYN opening a new connection on the same addresses and ports."""
        return bool(flags & TCP_SYN) and seq != self.isn and bool(self.stream_pos or self.pending)

    def segment(self, seq: int, flags: int, payload: bytes, ts: int) -> None:
        if flags & TCP_SYN:
            if not self.stream_pos and not self.pending:
                self.isn, self.next_seq = seq, (seq + 1) & SEQ_MASK
            else:
                self._count("tcp_syn_repeated")  # the same ISN again after data: not a rewind
            return
        if not payload:
            return
        if self.next_seq is None:  # joined mid-connection: start here; framing resyncs on 8=FIX
            self._count("tcp_streams_joined_midway")
            self.next_seq = seq
        rel = (seq - self.next_seq) & SEQ_MASK
        if rel >= 1 << 31:  # starts before what we have: retransmission, maybe with new bytes after
            behind = (self.next_seq - seq) & SEQ_MASK
            if behind >= len(payload):
                self._count("tcp_segments_retransmitted")
                return
            self._count("tcp_segments_partly_retransmitted")
            payload, seq = payload[behind:], self.next_seq
            rel = 0
        if rel:
            longest = self.pending_longest.get(seq, 0)
            if len(payload) <= longest:
                self._count("tcp_segments_retransmitted")
                return
            self._count("tcp_segments_partly_retransmitted" if longest else "tcp_segments_out_of_order")
            self.pending[self.arrivals] = (seq, payload, ts)
            self.arrivals += 1
            self.pending_longest[seq] = len(payload)
            self.pending_bytes += len(payload)
            if self.pending_bytes > self.MAX_PENDING_BYTES:
                self._skip_gap()
            return
        self._append(payload, ts)
        if self.pending:
            self._drain()

    def _drain(self) -> None:
        """Pending segments that now start at or before ``next_seq``, each time the first captured of
        those (its stamp is the bytes' first), until a hole. Sorted once, so a hole filled late
        costs n log n, not n squared."""
        base = self.next_seq
        by_seq = sorted(self.pending.items(), key=lambda kv: (kv[1][0] - base + (1 << 31)) & SEQ_MASK)
        ready: list[int] = []  # arrival numbers: capture order
        i = 0
        while True:
            while i < len(by_seq) and not 0 < (by_seq[i][1][0] - self.next_seq) & SEQ_MASK < 1 << 31:
                heapq.heappush(ready, by_seq[i][0])
                i += 1
            if not ready:
                break
            s, data, t = self.pending.pop(heapq.heappop(ready))
            self.pending_bytes -= len(data)
            behind = (self.next_seq - s) & SEQ_MASK
            if behind < len(data):
                self._append(data[behind:], t)
        longest: dict[int, int] = {}
        for s, data, _ in self.pending.values():
            longest[s] = max(longest.get(s, 0), len(data))
        self.pending_longest = longest

    def _skip_gap(self) -> None:
        base = self.next_seq
        first = min((s for s, _, _ in self.pending.values()), key=lambda s: (s - base) & SEQ_MASK)
        missing = (first - base) & SEQ_MASK
        self._count("tcp_gaps_skipped")
        self._count("tcp_bytes_missing", missing)
        if self.buf:
            self._count("tcp_bytes_dropped_before_gap", len(self.buf))
        self.gaps += 1
        self.gap_at = self.stream_pos
        self.buf.clear()
        self.marks.clear()
        self.mark_ts.clear()
        self.stream_pos += missing
        self.buf_pos = self.stream_pos
        self.next_seq = first
        self._drain()

    def _append(self, payload: bytes, ts: int) -> None:
        self.marks.append(self.stream_pos)
        self.mark_ts.append(ts)
        self.buf += payload
        self.stream_pos += len(payload)
        self.next_seq = (self.next_seq + len(payload)) & SEQ_MASK

    def stamp_at(self, stream_offset: int) -> int:
        return self.mark_ts[bisect.bisect_right(self.marks, stream_offset) - 1]

    def frames(self):
        """Complete FIX frames now in the buffer -> (first byte's stamp, frame bytes, where its body
        starts when BodyLength framed it, else 0), cut exactly
        where the venue's ``FixStream`` (pipeline/fix.py) cuts them, so a frame a receiver reads is
        the frame counted here: by BodyLength when it points at a complete ``10=NNN<SOH>``;
        otherwise (BodyLength not digits, too long, or pointing elsewhere) at the first CheckSum
        field, or at the next header when one comes before it. A header declaring a huge
        BodyLength thus costs one frame, not the rest of the connection. Whether a frame is valid
        (CheckSum, fields) is ``fix_refusal``'s to say. Bytes that are no frame are counted."""
        buf = self.buf
        n = len(buf)
        pos = 0
        while True:
            start = buf.find(FIX_BEGIN, pos)
            if start < 0:
                if n - pos > 16:  # as FixStream: keep a tail that may begin the next BeginString
                    keep = next((k for k in range(4, 0, -1) if buf.endswith(FIX_BEGIN[:k])), 0)
                    self._count("fix_garbage_bytes", n - keep - pos)
                    pos = n - keep
                break
            if start > pos:
                self._count("fix_garbage_bytes", start - pos)
                pos = start
            end, body = _by_body_length(buf, pos)
            if end:
                yield self.stamp_at(self.buf_pos + pos), bytes(buf[pos:end]), body - pos
                pos = end
                continue
            trailer = buf.find(b"\x0110=", pos)
            restart = FIX_HEAD.search(buf, pos + 1, trailer if trailer >= 0 else n)
            if restart is not None:  # cut short (no CheckSum) before a whole one: refuse it alone
                self._count("fix_frames_malformed")
                pos = restart.start()
                continue
            if trailer < 0 or n < trailer + 8:
                if n - pos > MAX_FIX_MESSAGE:
                    self._count("fix_frames_malformed")
                    pos = n
                break
            yield self.stamp_at(self.buf_pos + pos), bytes(buf[pos : trailer + 8]), 0
            pos = trailer + 8
        self.consume(pos)

    def consume(self, n: int) -> None:
        """The first ``n`` bytes of the buffer are framed: drop them (and the marks only they need)."""
        if n:
            del self.buf[:n]
            self.buf_pos += n
            keep = max(0, bisect.bisect_right(self.marks, self.buf_pos) - 1)
            if keep:
                del self.marks[:keep]
                del self.mark_ts[:keep]

    def finish(self) -> None:
        if self.pending:
            self._count("tcp_segments_after_gap", len(self.pending))
        if self.buf:
            self._count("fix_bytes_incomplete_at_end", len(self.buf))


FIX44_HEAD = b"8=FIX.4.4\x019="  # the usual header: checked without the regex


def _by_body_length(buf: bytearray, pos: int) -> tuple[int, int]:
    """(end, body start) of the frame at ``pos`` when its BodyLength is at most 9 digits and points
    at a complete ``10=NNN<SOH>``; (0, 0) otherwise (``FixStream._by_body_length``)."""
    if buf.startswith(FIX44_HEAD, pos):
        at = pos + len(FIX44_HEAD)
    else:
        head = FIX_HEAD.match(buf, pos)
        if head is None:
            return 0, 0
        at = head.end()
    len_end = buf.find(SOH, at, at + MAX_BODY_LENGTH_DIGITS + 1)
    if len_end < 0 or not buf[at:len_end].isdigit():
        return 0, 0
    end = len_end + 1 + int(buf[at:len_end]) + 7
    if len(buf) < end or buf[end - 7 : end - 4] != b"10=" or buf[end - 1] != 1:
        return 0, 0
    return end, len_end + 1


# The byte sum mod 256 is Adler-32's low half minus one while the sum stays below 65521, i.e. for up
# to 256 bytes at a time: one C call per 256 bytes (pipeline/fix.py's checksum, which collectors
# may not import).
_ADLER_CHUNK = 256
# "<SOH>10=NNN<SOH>" -> what the byte sum of the whole frame (trailer included) must be mod 256
_TRAILER_SUM = {b"\x0110=%03d\x01" % n: (sum(b"10=%03d\x01" % n) + n) & 0xFF for n in range(256)}
# A body every receiver takes as it is: MsgType first, then canonical tag=value<SOH> fields.
_BODY_SHAPE = re.compile(rb"35=[^\x01]*+\x01(?:[1-9][0-9]{0,8}+=[^\x01]*+\x01)*+")


def _byte_sum(data: bytes) -> int:
    view = memoryview(data)
    total = 0
    for i in range(0, len(data), _ADLER_CHUNK):
        total += (zlib.adler32(view[i : i + _ADLER_CHUNK]) & 0xFFFF) - 1
    return total & 0xFF


def fix_refusal(frame: bytes, body: int = 0) -> tuple[str, int]:
    """("", body start) for a frame the venue's ``fix.parse`` accepts; (reason, 0) otherwise, the
    reason ``"checksum"`` (a CheckSum value that is not the byte sum: no acceptor takes it) or
    ``"malformed"`` (BodyLength, trailer or a field not as FIX has them). ``body``: where the body
    starts when BodyLength is known to end the frame at its CheckSum field (``frames`` says)."""
    if body:
        expect = _TRAILER_SUM.get(frame[-8:])
        if expect is not None and _BODY_SHAPE.fullmatch(frame, body, len(frame) - 7) is not None:
            total = zlib.adler32(frame) - 1 if len(frame) <= _ADLER_CHUNK else _byte_sum(frame)
            return ("", body) if total & 0xFF == expect else ("checksum", 0)
    head = FIX_HEAD.match(frame)
    if head is None:
        return "malformed", 0
    at = head.end()
    len_end = frame.find(SOH, at)
    if len_end < 0 or not frame[at:len_end].isdigit() or len_end - at > MAX_BODY_LENGTH_DIGITS:
        return "malformed", 0
    body = len_end + 1
    trailer = body + int(frame[at:len_end])
    if len(frame) != trailer + 7:
        return "malformed", 0
    expect = _TRAILER_SUM.get(frame[-8:])
    if expect is not None and _BODY_SHAPE.fullmatch(frame, body, trailer) is not None:  # the usual frame
        total = zlib.adler32(frame) - 1 if len(frame) <= _ADLER_CHUNK else _byte_sum(frame)
        return ("", body) if total & 0xFF == expect else ("checksum", 0)
    sum_text = frame[trailer + 3 : trailer + 6]
    if frame[trailer - 1 : trailer + 3] != b"\x0110=" or frame[-1] != 1 or not sum_text.isdigit():
        return "malformed", 0
    if int(sum_text) != _byte_sum(frame[:trailer]):
        return "checksum", 0
    if not frame.startswith(b"35=", body):
        return "malformed", 0
    for item in frame[body : trailer - 1].split(SOH):
        tag, eq, _ = item.partition(b"=")
        if not eq or not tag.isdigit() or len(tag) > 4300:  # 4300: int()'s digit limit, fix.parse's too
            return "malformed", 0
    return "", body


def fix_field(frame: bytes, field: bytes) -> bytes | None:
    at = frame.find(field)
    if at < 0:
        return None
    start = at + len(field)
    end = frame.find(b"\x01", start)
    return frame[start:end] if end >= 0 else None


# -- market data: WebSocket (RFC 6455) over TCP --------------------------------------------------------
# A WebSocket feed carries no sequence number that is the trace id: a feed handler numbers the text
# messages in the order they arrive (the bundled trader: ``ws_seq += 1`` for every text message).
# TCP delivers the venue's bytes in order, so the n-th text message on the venue->client byte stream
# is the handler's trace n, found on the wire by framing that stream exactly as the client does.
WS_CONT, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0, 1, 2, 8, 9, 10
WS_DATA_OPCODES = (WS_TEXT, WS_BINARY)
WS_CONTROL_OPCODES = (WS_CLOSE, WS_PING, WS_PONG)
MAX_WS_HANDSHAKE = 16384  # the HTTP/1.1 101 response; real ones are a few hundred bytes
MAX_WS_PAYLOAD = 1 << 30  # one frame of market data beyond 1 GiB: the framing is lost, not a message
TCP_FIN, TCP_RST = 0x01, 0x04


class WsConnection:
    """The venue->client direction of one WebSocket connection: TCP reassembled (``TcpStream``), the
    HTTP/1.1 101 response skipped, then RFC 6455 frames walked header by header. Payloads are
    passed over as they arrive, never kept whole and never inflated (permessage-deflate, RSV1, does
    not change how many messages there are). ``stamps[i]`` is the capture stamp of the segment
    holding the first byte of text message i (0-based): its first frame's header.

    A frame the client would refuse (reserved opcode or bits, a masked frame, a fragmented or long
    control frame, a continuation outside a message, a length beyond ``MAX_WS_PAYLOAD``), a
    handshake that is not a 101, or a connection joined midway stops the numbering on it: the count
    of what follows is unknown, and a number after it would be a guess. One line says where."""

    def __init__(self, name: str, counters: dict[str, int]):
        self.name = name
        self.counters = counters
        self.tcp = TcpStream(counters)
        self.state = "handshake"  # -> "frames" -> "closed" (a Close frame) or "stopped" (see above)
        self.why = ""  # why it stopped: a line
        self.skip = 0  # payload bytes of the current frame not yet passed
        self.in_message: int | None = None  # opcode of the fragmented data message in progress
        self.deflate = False  # the 101 response agreed permessage-deflate: RSV1 allowed on data frames
        self.stamps: list[int] = []  # of the text messages not yet given trace ids
        self.emitted = 0  # text messages already given trace ids (their stamps are dropped)
        self.fin = False  # the venue's FIN or RST is on the capture
        self.isn: int | None = None  # the SYN-ACK's sequence number: the stream is seen from its first byte
        self.overlaps = False  # carried messages while an earlier connection was still open

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    @property
    def messages(self) -> int:
        """Text messages framed so far."""
        return self.emitted + len(self.stamps)

    @property
    def ended(self) -> bool:
        """No text message can follow: the count of this connection is final (or unknowable)."""
        return self.state in ("closed", "stopped") or (self.fin and not self.tcp.pending)

    def segment(self, seq: int, flags: int, payload: bytes, ts: int) -> None:
        if flags & TCP_SYN:
            if self.isn is not None:
                return  # the SYN-ACK again (retransmitted): the stream must not rewind to it
            self.isn = seq
        gaps = self.tcp.gaps
        self.tcp.segment(seq, flags, payload, ts)
        if self.tcp.gaps != gaps and self.state in ("handshake", "frames"):
            self._count("ws_gaps_never_filled")
            self.skip = 0
            self.stop(f"a gap in the TCP stream at byte {self.tcp.gap_at} was not filled within "
                      f"{self.tcp.MAX_PENDING_BYTES} bytes of later data")  # fmt: skip
        if flags & (TCP_FIN | TCP_RST):
            self.fin = True
        if self.tcp.buf:
            self._walk()

    def stop(self, why: str) -> None:
        self.state = "stopped"
        self.why = why
        self._count("ws_connections_stopped")

    def _walk(self) -> None:
        tcp = self.tcp
        buf = tcp.buf
        n = len(buf)
        pos = 0
        stamp, base, stamps = tcp.stamp_at, tcp.buf_pos, self.stamps
        while pos < n:
            if self.skip:
                step = min(self.skip, n - pos)
                self.skip -= step
                pos += step
                continue
            if self.state == "handshake":
                pos = self._handshake(buf)
                if pos < 0:
                    pos = 0
                    break
                continue
            if self.state != "frames":
                self._count(
                    "ws_bytes_after_close" if self.state == "closed" else "ws_bytes_unframed", n - pos
                )
                pos = n
                break
            if n - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 == 0x81 and b1 < 126 and self.in_message is None:  # the usual frame: a whole short text
                stamps.append(stamp(base + pos))
                end = pos + 2 + b1
                if end > n:  # its payload goes on in the next segment
                    self.skip, end = end - n, n
                pos = end
                continue
            length = b1 & 0x7F
            head = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
            if n - pos < head:
                break
            if length == 126:
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            problem = self._refused(b0, b1, length)
            at = tcp.buf_pos + pos
            if problem:
                self._count("ws_frames_malformed")
                self.stop(f"{problem} at stream byte {at}")
                continue
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in WS_DATA_OPCODES:
                if opcode == WS_TEXT:
                    self.stamps.append(tcp.stamp_at(at))
                else:
                    self._count("ws_binary_messages")
                self.in_message = None if fin else opcode
            elif opcode == WS_CONT:
                self._count("ws_continuation_frames")
                if fin:
                    self.in_message = None
            elif opcode == WS_CLOSE:
                self._count("ws_close_frames")
                self.state = "closed"  # the client reads no frame after it (RFC 6455 5.5.1)
            else:
                self._count("ws_control_frames")  # ping, pong: anywhere, even inside a fragmented message
            pos += head
            self.skip = length
        tcp.consume(pos)

    def _handshake(self, buf: bytearray) -> int:
        """-> offset of the first frame, -1 while the response is incomplete, 0 once stopped."""
        if not buf.startswith(b"HTTP/1."[: len(buf)]):
            if self.isn is not None:
                self._count("ws_handshakes_malformed")
                self.stop("the stream does not start with an HTTP response")
            else:
                self._count("ws_connections_joined_midway")
                self.stop("the capture joined the connection midway (no SYN, no HTTP 101 response): "
                          "how many messages came before is unknown")  # fmt: skip
            return 0
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_WS_HANDSHAKE:
                self._count("ws_handshakes_malformed")
                self.stop(f"no end of the HTTP response within {MAX_WS_HANDSHAKE} bytes")
                return 0
            return -1
        head = bytes(buf[:end]).lower()
        if head.split(b"\r\n", 1)[0].split(b" ")[1:2] != [b"101"]:
            self._count("ws_handshakes_refused")
            status = bytes(buf[: min(end, 60)]).split(b"\r\n")[0]
            self.stop(f"the venue answered {status!r}, not 101 Switching Protocols")
            return 0
        self.deflate = any(
            line.startswith(b"sec-websocket-extensions:") and b"permessage-deflate" in line
            for line in head.split(b"\r\n")
        )
        self.state = "frames"
        self._count("ws_connections_upgraded")
        return end + 4

    def _refused(self, b0: int, b1: int, length: int) -> str:
        """Why an RFC 6455 client fails the connection on this frame header ("" if it does not)."""
        opcode = b0 & 0x0F
        if opcode not in (WS_CONT, *WS_DATA_OPCODES, *WS_CONTROL_OPCODES):
            return f"reserved opcode {opcode}"
        if b0 & 0x30 or (b0 & 0x40 and not (self.deflate and opcode in WS_DATA_OPCODES)):
            return f"reserved bits RSV1-3 = {(b0 >> 4) & 7:03b}" + (
                "" if self.deflate else ", no extension agreed"
            )
        if b1 & 0x80:
            return "a masked frame from the server (a client must close the connection)"
        if opcode in WS_CONTROL_OPCODES and (not b0 & 0x80 or length > 125):
            return f"control frame (opcode {opcode}) fragmented or longer than 125 bytes ({length})"
        if opcode == WS_CONT and self.in_message is None:
            return "continuation frame outside a message"
        if opcode in WS_DATA_OPCODES and self.in_message is not None:
            return "a new message inside a fragmented one"
        if length > MAX_WS_PAYLOAD:
            return f"payload length {length} beyond {MAX_WS_PAYLOAD} bytes"
        return ""


def _stream_name(key: bytes, addr_len: int) -> str:
    import ipaddress

    src, dst = (ipaddress.ip_address(key[i * addr_len : (i + 1) * addr_len]) for i in (0, 1))
    sport, dport = struct.unpack_from(">HH", key, 2 * addr_len)
    return f"{src}:{sport} -> {dst}:{dport}"


# -- the end marker ----------------------------------------------------------------------------------
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


# -- the join ----------------------------------------------------------------------------------------
@dataclass
class WireStep:
    """What one ``feed`` found: the chunk's wire.md and wire.order points, and its orders joined
    to market data already seen (the live view's ``wire_to_wire``)."""

    md_trace: np.ndarray
    md_ts: np.ndarray
    order_trace: np.ndarray
    order_ts: np.ndarray
    trace: np.ndarray
    wire_md: np.ndarray
    wire_order: np.ndarray


@dataclass
class WireMatch(WireStep):
    """Both wire points per trace over the whole capture, and the join: ``trace``/``wire_to_wire``
    of matched orders."""

    counters: dict[str, int]
    warnings: list[str]
    packets: int
    fmt: str
    source: dict = field(default_factory=dict)  # the capture's identity when read from a file (match_file)

    @property
    def wire_to_wire(self) -> np.ndarray:
        return self.wire_order - self.wire_md


def _i64(values=()) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _join(keys: np.ndarray, stamps: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted and unique -> (mask of ``wanted`` found in them, their stamps)."""
    at = np.searchsorted(keys, wanted)
    found = at < keys.size
    found[found] = keys[at[found]] == wanted[found]
    return found, stamps[at[found]]


class WireMatcher:
    """Captures matched as they are read, in chunks of whole packets (``PcapStream``): MoldUDP64
    first-seen state and the order port's TCP streams carry over from one chunk to the next, so
    ``finish()`` after feeding a file in any number of pieces gives the match of the whole file.

    ``feed`` also joins each new order with the market data seen so far, for the live view; that
    join looks back ``LIVE_LOOKBACK_CHUNKS`` chunks, so its cost per chunk does not grow with the
    run. ``finish`` joins everything with everything, which is what the session files hold."""

    LIVE_LOOKBACK_CHUNKS = 64

    def __init__(self, md_ports: set[int], order_ports: set[int], mapping: OrderMapping | None = None,
                 ws_ports: set[int] = frozenset()):  # fmt: skip
        self.md_ports, self.order_ports, self.ws_ports = set(md_ports), set(order_ports), set(ws_ports)
        self.mapping = mapping or OrderMapping()
        self.counters: dict[str, int] = {"md_packets": 0, "md_heartbeats": 0, "order_segments": 0}
        self.warnings: list[str] = []
        self.packets = 0
        self.fmt = ""
        self.sessions: set[bytes] = set()
        self.md_parts: list[tuple[np.ndarray, np.ndarray]] = []  # per chunk, sorted by trace
        self.order_traces: list[int] = []
        self.order_stamps: list[int] = []
        self.streams: dict[bytes, TcpStream] = {}  # by stream key: the connection in use
        self.order_streams = 0  # connections seen (the same ports opened again count again)
        self.markers: list[bytes] = []  # end-marker payloads seen
        self.fragments = IpReassembly(self.counters)
        # WebSocket market data: text messages numbered across connections in the order they
        # started (all of one connection's before the next one's), 1 for the first.
        self.ws_conns: dict[bytes, WsConnection] = {}  # by stream key: the one in use
        self.ws_order: list[WsConnection] = []  # every connection, in the order it started
        self.ws_next = 0  # the first connection whose messages are not all numbered yet
        self.ws_base = 0  # text messages on the connections before it
        self.ws_blocked = False  # a connection before ws_next stopped: later counts are unknowable

    def feed(self, cap: Capture) -> WireStep:
        for k, v in cap.counters.items():
            _count(self.counters, k, v)
        self.warnings += [w for w in cap.warnings if w not in self.warnings]
        self.fmt = cap.fmt or self.fmt  # a push before the file header is complete has none
        self.packets += len(cap)
        hdr = decode_headers(cap, self.counters, self.warnings, self.fragments)  # may grow cap.data
        self.markers += end_markers(cap, hdr, self.md_ports)
        md_trace, md_ts = mold_messages(cap, hdr, self.md_ports, self.counters, self.sessions)
        if self.ws_ports:
            self._ws_segments(cap, hdr)
            md_trace, md_ts = self._with_ws(md_trace, md_ts, self._number_ws())
        if md_trace.size:
            self.md_parts.append((md_trace, md_ts))
        first = len(self.order_traces)
        self._orders(cap, hdr)
        order_trace, order_ts = _i64(self.order_traces[first:]), _i64(self.order_stamps[first:])
        found, wire_md = self._recent_md(order_trace)
        return WireStep(md_trace, md_ts, order_trace, order_ts, order_trace[found], wire_md, order_ts[found])

    def _recent_md(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.zeros(wanted.size, dtype=bool)
        stamps = np.full(wanted.size, 2**62, dtype=np.int64)
        if not wanted.size:
            return found, stamps[found]
        lo, hi = wanted.min(), wanted.max()
        for trace, ts in self.md_parts[-self.LIVE_LOOKBACK_CHUNKS :]:
            if trace[0] > hi or trace[-1] < lo:
                continue
            hit, st = _join(trace, ts, wanted)
            stamps[hit] = np.minimum(stamps[hit], st)  # a sequence seen twice: its first stamp
            found |= hit
        return found, stamps[found]

    def _with_ws(self, md_trace, md_ts, ws: tuple[np.ndarray, np.ndarray]):
        if not ws[0].size:
            return md_trace, md_ts
        _count(self.counters, "md_messages_seen", int(ws[0].size))
        return _first_per_trace(np.concatenate((md_trace, ws[0])), np.concatenate((md_ts, ws[1])))

    def _ws_segments(self, cap: Capture, hdr: Headers) -> None:
        """The venue's side of the WebSocket connections (TCP from a ``ws_ports`` port), framed."""
        sel = np.flatnonzero((hdr.proto == IPPROTO_TCP) & np.isin(hdr.sport, list(self.ws_ports)))
        _count(self.counters, "ws_segments", int(sel.size))
        data, conns = cap.data, self.ws_conns
        cols = (hdr.addr[sel], hdr.addr_len[sel], hdr.sport[sel], hdr.dport[sel], hdr.payload[sel],
                hdr.payload_end[sel], hdr.tcp_seq[sel], hdr.tcp_flags[sel], cap.ts_ns[sel])  # fmt: skip
        for addr, alen, sport, dport, p, pend, seq, flags, ts in zip(
            *(c.tolist() for c in cols), strict=True
        ):
            key = data[addr : addr + 2 * alen] + bytes((sport >> 8, sport & 0xFF, dport >> 8, dport & 0xFF))
            conn = conns.get(key)
            reused = (conn is not None and flags & TCP_SYN and seq != conn.isn
                      and (conn.fin or conn.tcp.stream_pos))  # fmt: skip
            if conn is None or reused:  # a new connection (the same ports again: a new one too)
                conn = conns[key] = WsConnection(_stream_name(key, alen), self.counters)
                self.ws_order.append(conn)
                _count(self.counters, "ws_connections")
            conn.segment(seq, flags, data[p:pend], ts)

    def _number_ws(self, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Trace ids for the text messages framed since the last call whose number is known: those of
        the first connection not yet ended, and of later ones once every earlier one has ended.
        ``final``: the capture is over, every connection's count is what it is."""
        traces: list[int] = []
        stamps: list[int] = []
        order = self.ws_order
        while self.ws_next < len(order) and not self.ws_blocked:
            c = order[self.ws_next]
            new = c.stamps
            first = self.ws_base + c.emitted + 1
            traces += range(first, first + len(new))
            stamps += new
            c.emitted += len(new)
            c.stamps = []  # numbered: memory per connection stays what one chunk framed
            if not (final or c.ended):
                for later in order[self.ws_next + 1 :]:
                    if later.messages and not later.overlaps:  # messages while an earlier one is open
                        later.overlaps = True
                        _count(self.counters, "ws_connections_overlapping")
                break
            self.ws_next += 1
            self.ws_base += c.messages
            self.ws_blocked = c.state == "stopped"
        return _i64(traces), _i64(stamps)

    def _finish_ws(self) -> tuple[np.ndarray, np.ndarray]:
        for c in self.ws_order:
            if c.tcp.pending:
                _count(self.counters, "tcp_segments_after_gap", len(c.tcp.pending))
            if c.tcp.pending and c.state in ("handshake", "frames"):
                _count(self.counters, "ws_gaps_never_filled")
                c.stop(f"a gap in the TCP stream at byte {c.tcp.stream_pos} was never filled "
                       f"({len(c.tcp.pending)} segments wait behind it)")  # fmt: skip
        ws = self._number_ws(final=True)
        for i, c in enumerate(self.ws_order):
            if c.state == "stopped":
                later = len(self.ws_order) - i - 1
                self.warnings.append(f"WebSocket {c.name}: {c.why}; its later text messages "
                                     + (f"and those of the {later} connection(s) after it " if later else "")
                                     + "are not numbered (a number after it would be a guess)")  # fmt: skip
        if self.ws_blocked:
            _count(self.counters, "ws_messages_not_numbered",
                   sum(c.messages for c in self.ws_order[self.ws_next :]))  # fmt: skip
        overlapping = self.counters.get("ws_connections_overlapping", 0)
        if overlapping:
            self.warnings.append(f"{overlapping} WebSocket connection(s) carried messages while an earlier one "
                                 "was still open: numbered after all of the earlier connection's messages "
                                 "(connection start order); a handler numbering in arrival order across its "
                                 "sockets numbers them differently")  # fmt: skip
        self.counters["ws_text_messages"] = sum(c.messages for c in self.ws_order)
        return ws

    def _orders(self, cap: Capture, hdr: Headers) -> None:
        sel = np.flatnonzero((hdr.proto == IPPROTO_TCP) & np.isin(hdr.dport, list(self.order_ports)))
        _count(self.counters, "order_segments", int(sel.size))
        data, mapping, counters, streams = cap.data, self.mapping, self.counters, self.streams
        new_orders = unmapped = out_of_range = 0
        refused = {"checksum": 0, "malformed": 0}
        cols = (hdr.addr[sel], hdr.addr_len[sel], hdr.sport[sel], hdr.dport[sel], hdr.payload[sel],
                hdr.payload_end[sel], hdr.tcp_seq[sel], hdr.tcp_flags[sel], cap.ts_ns[sel])  # fmt: skip
        for addr, alen, sport, dport, p, pend, seq, flags, ts in zip(
            *(c.tolist() for c in cols), strict=True
        ):
            key = data[addr : addr + 2 * alen] + bytes((sport >> 8, sport & 0xFF, dport >> 8, dport & 0xFF))
            stream = streams.get(key)
            if stream is None or stream.restarted_by(seq, flags):  # the same ports again: a new connection
                if stream is not None:
                    stream.finish()
                    _count(counters, "tcp_connections_reopened")
                stream = streams[key] = TcpStream(counters)
                self.order_streams += 1
            stream.segment(seq, flags, data[p:pend], ts)
            if not stream.buf:
                continue
            for stamp, frame, body in stream.frames():
                why, body = fix_refusal(frame, body)
                if why:
                    refused[why] += 1
                    continue
                if frame[body + 3 : body + 5] != b"D\x01":  # MsgType is the body's first field
                    continue
                new_orders += 1
                value = fix_field(frame, mapping.field)
                trace = mapping.trace_id(value) if value is not None else None
                if trace is None:
                    unmapped += 1
                    continue
                if trace >= 1 << 64:  # beyond any feed's sequence number (u64)
                    out_of_range += 1
                    continue
                # u64 ids as int64, two's complement: how a Mold sequence of 2**63 or more is held too
                self.order_traces.append(trace - (1 << 64) if trace >= 1 << 63 else trace)
                self.order_stamps.append(stamp)
        _count(counters, "orders_new", new_orders)
        if unmapped:
            _count(counters, "orders_unmapped", unmapped)
        if out_of_range:
            _count(counters, "orders_trace_id_out_of_range", out_of_range)
        if refused["checksum"]:
            _count(counters, "fix_frames_bad_checksum", refused["checksum"])
        if refused["malformed"]:
            _count(counters, "fix_frames_malformed", refused["malformed"])

    def finish(self) -> WireMatch:
        """Every trace joined: the same for a file fed whole or in pieces. Call once, at the end."""
        if self.ws_ports:
            ws = self._finish_ws()
            if ws[0].size:
                _count(self.counters, "md_messages_seen", int(ws[0].size))
                self.md_parts.append(ws)
        self.fragments.finish()
        counters, warnings = self.counters, list(self.warnings)
        incomplete = counters.get("ip_datagrams_incomplete", 0)
        if incomplete:
            why = ", ".join(f"{k.removeprefix('ip_').replace('_', ' ')} {v}" for k, v in sorted(counters.items())
                            if k.startswith(("ip_datagrams_", "ip_fragments_")) and k != "ip_datagrams_incomplete"
                            and k != "ip_datagrams_reassembled")  # fmt: skip
            warnings.append(f"{incomplete} fragmented IP datagram(s) never completed ({why}): what they carried "
                            "is not read, as the receiving host's kernel would not deliver it either")  # fmt: skip
        md_trace, md_ts = (
            (np.concatenate(x) for x in zip(*self.md_parts, strict=True))
            if self.md_parts
            else (_i64(), _i64())
        )
        md_trace, md_ts = _first_per_trace(md_trace, md_ts)
        seen = counters.pop("md_messages_seen", 0)
        if len(self.sessions) > 1:
            warnings.append(f"{len(self.sessions)} MoldUDP64 sessions on the market-data port(s): trace ids are "
                            "sequence numbers, so the same number in two sessions is one trace")  # fmt: skip
        counters["md_sessions"] = len(self.sessions)
        counters["md_messages"] = int(md_trace.size)
        if seen - md_trace.size:
            counters["md_messages_duplicate"] = int(seen - md_trace.size)
        for s in self.streams.values():
            s.finish()
        counters["order_streams"] = self.order_streams
        counters.setdefault("orders_new", 0)
        raw = _i64(self.order_traces)
        order_trace, order_ts = _first_per_trace(raw, _i64(self.order_stamps))
        if raw.size - order_trace.size:
            counters["orders_duplicate_trace"] = int(raw.size - order_trace.size)
        found, wire_md = _join(md_trace, md_ts, order_trace)
        counters["orders_matched"] = int(found.sum())
        counters["orders_unmatched"] = int(order_trace.size - found.sum())
        counters["md_messages_without_order"] = int(md_trace.size - found.sum())  # most ticks trade nothing
        if self.markers:
            counters["capture_end_marker"] = len(self.markers)
        counters["packets"] = self.packets
        ws_segments = counters.get("ws_segments", 0)
        counters["packets_other"] = int(self.packets - counters["md_packets"] - counters["order_segments"]
                                        - ws_segments - len(self.markers))  # fmt: skip
        if not counters["md_packets"] and not counters["order_segments"] and not ws_segments:
            ws = f", from tcp port(s) {sorted(self.ws_ports)}" if self.ws_ports else ""
            warnings.append(f"no packet of the capture goes to udp port(s) {sorted(self.md_ports)} or tcp port(s) "
                            f"{sorted(self.order_ports)}{ws}: check --md/--orders")  # fmt: skip
        return WireMatch(md_trace, md_ts, order_trace, order_ts, order_trace[found], wire_md, order_ts[found],
                         counters, warnings, self.packets, self.fmt)  # fmt: skip


# What the wire side refuses or cannot use, as the receiver would: (counter, words) in the order shown.
REFUSAL_COUNTERS = (
    ("md_packets_malformed", "MoldUDP64 packets malformed (dropped whole, as the feed handler does)"),
    ("fix_frames_bad_checksum", "FIX frames with a wrong CheckSum"),
    ("fix_frames_malformed", "FIX frames malformed"),
    ("orders_trace_id_out_of_range", "orders with a trace id of 2**64 or more"),
    ("ip_datagrams_incomplete", "fragmented IP datagrams never completed"),
    ("capture_packets_bad_stamp", "packets stamped outside 1970-2116"),
)


def refusals(counters: dict[str, int]) -> str:
    """One line naming what was refused, "" when nothing was (for ``wire`` and ``profile --capture``)."""
    parts = [f"{counters[k]} {words}" for k, words in REFUSAL_COUNTERS if counters.get(k)]
    return "refused: " + "; ".join(parts) if parts else ""


def match(cap: Capture, md_ports: set[int], order_ports: set[int],
          mapping: OrderMapping | None = None, ws_ports: set[int] = frozenset()) -> WireMatch:  # fmt: skip
    """A whole capture matched at once: one chunk fed to a ``WireMatcher``."""
    matcher = WireMatcher(md_ports, order_ports, mapping, ws_ports)
    matcher.feed(cap)
    return matcher.finish()


def match_file(path: str | Path, md_ports: set[int], order_ports: set[int], mapping: OrderMapping | None = None,
               ws_ports: set[int] = frozenset(), chunk_bytes: int | None = None) -> WireMatch:  # fmt: skip
    """A capture file of any size matched as it is read (``read_chunks``): memory is one chunk plus
    the matcher's state per message, never the file. The same match as ``match(read_capture(path))``,
    with the capture's identity (``source``) taken from the same single read: a FIFO works."""
    matcher = WireMatcher(md_ports, order_ports, mapping, ws_ports)
    read_warnings: list[str] = []
    identity: dict = {}
    for cap in read_chunks(path, chunk_bytes or CHUNK_BYTES, identity):
        matcher.feed(cap)
        read_warnings += cap.warnings
    if not matcher.packets:
        raise WireError(f"{path}: no packets read" + (f" ({read_warnings[0]})" if read_warnings else ""))
    m = matcher.finish()
    m.source = identity
    return m


# -- a session directory from a match -----------------------------------------------------------------
WIRE_STAGE = {"name": "wire_to_wire", "from": "wire.md", "to": "wire.order"}
WIRE_TAGS = ("wire_to_wire", "md.rx-wire.md", "wire.order-order.tx")


def interval_histograms(values: dict[str, tuple[np.ndarray, np.ndarray]], start_ns: int, interval_ns: int,
                        set_aside: dict[str, int] | None = None):  # fmt: skip
    """{tag: (stamps, values)} -> yields (start_s, end_s, {tag: histogram}) per interval that has
    data, in time order, stamps relative to ``start_ns``. Lazy: a histogram is ~220 KB of counts,
    so only one interval's are alive at a time however long the stamps span (a capture of orders
    an hour apart is thousands of intervals). Values no histogram can hold are not recorded: they
    are counted into ``set_aside`` as ``<tag>_negative`` and ``<tag>_beyond_range`` (above the
    highest trackable value, ~68.7 s) by the time this returns, never skipped in silence."""
    from tickscope.collectors.session.hdr import BulkRecorder, new_histogram

    recorder = BulkRecorder(new_histogram())
    by_slot = {}  # tag -> (slots sorted, values in that order)
    for tag, (st, v) in values.items():
        v = np.asarray(v, dtype=np.int64)
        if set_aside is not None:
            for key, n in ((f"{tag}_negative", np.count_nonzero(v < 0)),
                           (f"{tag}_beyond_range", np.count_nonzero(v > recorder.max_recordable))):  # fmt: skip
                if n:
                    set_aside[key] = set_aside.get(key, 0) + int(n)
        slot = (np.asarray(st, dtype=np.int64) - start_ns) // interval_ns
        order = np.argsort(slot, kind="stable")
        by_slot[tag] = (slot[order], v[order])
    slots = np.unique(np.concatenate([s for s, _ in by_slot.values()])) if by_slot else _i64()
    return _each_interval(by_slot, slots, interval_ns, recorder)


def _each_interval(by_slot, slots: np.ndarray, interval_ns: int, recorder):
    from tickscope.collectors.session.hdr import new_histogram

    for slot in slots.tolist():
        hists = {}
        for tag, (s, v) in by_slot.items():
            lo, hi = np.searchsorted(s, slot), np.searchsorted(s, slot, side="right")
            if hi > lo:
                h = new_histogram()
                recorder.record(h, v[lo:hi])
                if h.total_count:
                    hists[tag] = h
        yield slot * interval_ns / 1e9, (slot + 1) * interval_ns / 1e9, hists


def write_session(m: WireMatch, out: Path, meta: dict, interval_s: float = 1.0) -> Path:
    """A normal session directory (meta.json, latency.hlog, summary.json) from a capture alone."""
    from tickscope.collectors.session import SessionWriter
    from tickscope.collectors.session.hdr import summarize

    start_ns = int(min(m.md_ts.min(initial=2**62), m.order_ts.min(initial=2**62)))
    if start_ns == 2**62:
        start_ns = 0
    from tickscope.collectors.run.metadata import run_meta

    meta = {**run_meta(measured_here=False), **meta}  # tool, version; this host analysed, not measured
    meta.update({"source": "wire", "points": ["wire.md", "wire.order"], "stages": [WIRE_STAGE],
                 "trade_point": "wire.order", "start_epoch_s": start_ns / 1e9})  # fmt: skip
    meta.setdefault("counters", {}).update(m.counters)
    meta.setdefault("wire", {})["warnings"] = m.warnings
    writer = SessionWriter(out, meta)
    w2w = m.wire_to_wire
    totals = {}
    # Negative: an order stamped before its market data (the clocks of two capture ports disagree);
    # beyond range: an order answered a minute or more after its tick. Both counted, never recorded.
    set_aside: dict[str, int] = {}
    intervals = interval_histograms({"wire_to_wire": (m.wire_order, w2w)}, start_ns, int(interval_s * 1e9),
                                    set_aside)  # fmt: skip
    counters = writer.meta["counters"]
    counters.update(set_aside)
    counters["wire_to_wire_recorded"] = int(w2w.size - sum(set_aside.values()))
    for start_s, end_s, hists in intervals:
        writer.write_interval(hists, start_s, end_s, warmup=False)
        for tag, h in hists.items():
            if tag in totals:
                totals[tag].add(h)
            else:
                totals[tag] = h
    writer.write_summary({tag: summarize(h) for tag, h in totals.items()}, [])
    writer.meta["end_epoch_s"] = (
        int(max(m.md_ts.max(initial=start_ns), m.order_ts.max(initial=start_ns))) / 1e9
    )
    writer.meta["status"] = "complete"
    writer.save_meta()
    writer.latency.close()
    writer.warmup.close()
    return writer.path
