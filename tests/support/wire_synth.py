"""Frames and capture files built byte by byte: for tests of the wire reader and its benchmark.

Real captures come from tcpdump (tests do that too); these build what a loopback capture cannot
show on demand: out-of-order and retransmitted segments, other link types, pcapng with several
interfaces and resolutions, damaged files.
"""

from __future__ import annotations

import struct

from tickscope.collectors.wire import LINKTYPE_ETHERNET, PCAP_MAGIC_NS, PCAP_MAGIC_US

MAC_SRC, MAC_DST = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ipv4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    total = 20 + len(l4)
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0, bytes(map(int, src.split("."))),
                       bytes(map(int, dst.split(".")))) + l4  # fmt: skip


def ipv4_fragments(src: str, dst: str, proto: int, l4: bytes, size: int, ident: int = 7) -> list[bytes]:
    """``l4`` cut into IPv4 fragments of ``size`` bytes (a multiple of 8) each, in order."""
    out = []
    for off in range(0, len(l4), size):
        part = l4[off : off + size]
        flags = (0x2000 if off + size < len(l4) else 0) | off // 8
        out.append(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(part), ident, flags, 64, proto, 0,
                               bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + part)  # fmt: skip
    return out


def ipv6_extension(next_header: int, kind: int, body: bytes = bytes(6)) -> bytes:
    """A hop-by-hop (0), routing (43) or destination options (60) header: padded to 8 bytes."""
    body += bytes(-(len(body) + 2) % 8)
    return bytes((next_header, (len(body) + 2) // 8 - 1)) + body


def ipv6(proto: int, l4: bytes, extensions: tuple[int, ...] = ()) -> bytes:
    """An IPv6 packet; ``extensions``: kinds of extension headers (0, 43, 60) before ``l4``, in order."""
    src = dst = bytes(15) + b"\x01"
    chain = b""
    for i, kind in enumerate(extensions):
        chain += ipv6_extension(extensions[i + 1] if i + 1 < len(extensions) else proto, kind)
    first = extensions[0] if extensions else proto
    return struct.pack(">IHBB16s16s", 6 << 28, len(chain) + len(l4), first, 64, src, dst) + chain + l4


def ipv6_fragments(
    proto: int, l4: bytes, size: int, ident: int = 7, before: tuple[int, ...] = ()
) -> list[bytes]:
    """``l4`` in IPv6 fragments of ``size`` bytes (a multiple of 8), each after the extension
    headers ``before`` (the unfragmentable part) and a fragment header."""
    src = dst = bytes(15) + b"\x01"
    out = []
    for off in range(0, len(l4), size):
        part = l4[off : off + size]
        frag = struct.pack(">BBHI", proto, 0, off | (1 if off + size < len(l4) else 0), ident)
        chain = b""
        for i, kind in enumerate(before):
            chain += ipv6_extension(before[i + 1] if i + 1 < len(before) else 44, kind)
        first = before[0] if before else 44
        out.append(struct.pack(">IHBB16s16s", 6 << 28, len(chain) + 8 + len(part), first, 64, src, dst)
                   + chain + frag + part)  # fmt: skip
    return out


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


MATCH_FIELDS = (
    "md_trace",
    "md_ts",
    "order_trace",
    "order_ts",
    "trace",
    "wire_md",
    "wire_order",
    "order_leg",
    "leg",
)


def assert_same_match(a, b) -> None:
    """Two wire matches equal field by field (one read whole, one in chunks or live)."""
    for name in MATCH_FIELDS:
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
