"""pcapng files (sections, interfaces with their own link type and stamp resolution), read as they
grow or in chunks."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .capture import MAX_RECORD_LEN, MAX_STAMP_NS, PAD, Capture, add_count

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
PCAPNG_IDB, PCAPNG_SPB, PCAPNG_EPB, PCAPNG_OBSOLETE_PB = 1, 3, 6, 2
IDB_OPT_TSRESOL, IDB_OPT_TSOFFSET = 9, 14


@dataclass
class _Interface:
    linktype: int
    tsresol: int = 6  # pcapng default: microseconds
    tsoffset_s: int = 0


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
                    add_count(counters, "capture_unknown_interface")
                elif body + 20 + incl > pos + blen - 4:
                    add_count(counters, "capture_bad_packet_lengths")
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
            add_count(counters, "capture_packets_bad_stamp", int(np.count_nonzero(~stamped)))
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
