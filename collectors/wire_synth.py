"""Frames and capture files built byte by byte: for tests of the wire reader and its benchmark.

Real captures come from tcpdump (tests do that too); these build what a loopback capture cannot
show on demand: out-of-order and retransmitted segments, other link types, pcapng with several
interfaces and resolutions, damaged files.
"""

from __future__ import annotations

import struct

from .wire import LINKTYPE_ETHERNET, PCAP_MAGIC_NS, PCAP_MAGIC_US

MAC_SRC, MAC_DST = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ipv4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    total = 20 + len(l4)
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0, bytes(map(int, src.split("."))),
                       bytes(map(int, dst.split(".")))) + l4  # fmt: skip


def ipv6(proto: int, l4: bytes) -> bytes:
    src = dst = bytes(15) + b"\x01"
    return struct.pack(">IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst) + l4


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535, 0, 0) + payload


def ethernet(ip: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC_DST + MAC_SRC + struct.pack(">H", ethertype) + ip


def pcap(packets: list[tuple[int, bytes]], linktype: int = LINKTYPE_ETHERNET, nano: bool = True,
         endian: str = "<", snaplen: int = 262144) -> bytes:  # fmt: skip
    """(stamp ns, frame) pairs -> a pcap file's bytes."""
    out = [
        struct.pack(
            endian + "IHHiIII", PCAP_MAGIC_NS if nano else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype
        )
    ]
    for ts, frame in packets:
        frac = ts % 10**9 if nano else ts % 10**9 // 1000
        cut = frame[:snaplen]
        out.append(struct.pack(endian + "IIII", ts // 10**9, frac, len(cut), len(frame)) + cut)
    return b"".join(out)


def block(btype: int, body: bytes, endian: str = "<") -> bytes:
    """One pcapng block: type, total length, the body padded to 4 bytes, the length again."""
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def pcapng(
    interfaces: list[tuple[int, int]], packets: list[tuple[int, int, bytes]], endian: str = "<"
) -> bytes:
    """One section. interfaces: (link type, if_tsresol byte); packets: (interface id, stamp ns, frame).
    Sections concatenated make a file of several sections (interface ids start again in each)."""
    e = endian
    out = [block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)]
    for linktype, resol in interfaces:
        opts = struct.pack(e + "HHB3x", 9, 1, resol) + struct.pack(e + "HH", 0, 0)
        out.append(block(1, struct.pack(e + "HHI", linktype, 0, 262144) + opts, e))
    for iid, ts, frame in packets:
        resol = interfaces[iid][1]
        ticks = (ts << (resol & 0x7F)) // 10**9 if resol & 0x80 else ts // 10 ** (9 - resol)
        out.append(block(6, struct.pack(e + "IIIII", iid, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
                         + frame, e))  # fmt: skip
    return b"".join(out)
