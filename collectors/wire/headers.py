"""Link, IP and transport headers of all packets of a chunk decoded at once, with numpy over the
fixed-layout header bytes (gathers on the whole buffer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .capture import PAD, Capture, add_count
from .fragments import IpReassembly

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_IPV4, LINKTYPE_IPV6 = 113, 276, 228, 229
DLT_RAW_ALIASES = (12, 14)  # DLT_RAW as some BSDs number it in pcap files
SUPPORTED_LINKTYPES = {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
                       LINKTYPE_LINUX_SLL2, LINKTYPE_IPV4, LINKTYPE_IPV6, *DLT_RAW_ALIASES}  # fmt: skip


ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
IPPROTO_TCP, IPPROTO_UDP = 6, 17


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


def u8(buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return buf[np.minimum(idx, buf.size - 8)].astype(np.int64)


def be16(buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    idx = np.minimum(idx, buf.size - 8)
    return (buf[idx].astype(np.int64) << 8) | buf[idx + 1]


def be32(buf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return (be16(buf, idx) << 16) | be16(buf, idx + 2)


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
        add_count(counters, "packets_ip_fragments", int(frag[0].size))
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
    versions = u8(buf, offsets) >> 4
    mini, again = _ip_layer(buf, np.where(versions == 4, ETHERTYPE_IPV4, ETHERTYPE_IPV6), offsets,
                            offsets + lengths, counters)  # fmt: skip
    if again is not None:  # a fragment header inside a reassembled datagram: no receiver nests them
        add_count(counters, "packets_malformed_headers", int(again[0].size))
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
        ver = u8(buf, at) >> 4
        return np.where(ver == 4, ETHERTYPE_IPV4, np.where(ver == 6, ETHERTYPE_IPV6, 0))

    eth = lt == LINKTYPE_ETHERNET
    if eth.any():
        et = be16(buf, off + 12)
        at = off + 14
        for _ in range(2):  # 802.1Q and QinQ tags
            tagged = (et == ETHERTYPE_VLAN) | (et == ETHERTYPE_QINQ)
            et = np.where(tagged, be16(buf, at + 2), et)
            at = np.where(tagged, at + 4, at)
        ethertype[eth], l3[eth] = et[eth], at[eth]
    sll = lt == LINKTYPE_LINUX_SLL
    if sll.any():
        ethertype[sll], l3[sll] = be16(buf, off + 14)[sll], (off + 16)[sll]
    sll2 = lt == LINKTYPE_LINUX_SLL2
    if sll2.any():
        ethertype[sll2], l3[sll2] = be16(buf, off)[sll2], (off + 20)[sll2]
    raw = np.isin(lt, (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *DLT_RAW_ALIASES))
    if raw.any():
        ethertype[raw], l3[raw] = version_ethertype(off)[raw], off[raw]
    null = (lt == LINKTYPE_NULL) | (lt == LINKTYPE_LOOP)  # 4-byte address family, then IP
    if null.any():
        ethertype[null], l3[null] = version_ethertype(off + 4)[null], (off + 4)[null]
    known = np.isin(lt, list(SUPPORTED_LINKTYPES))
    for t in np.unique(lt[~known]):
        add_count(counters, f"packets_unknown_linktype_{int(t)}", int(np.count_nonzero(lt == t)))
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
    ihl = (u8(buf, l3) & 0xF) * 4
    flags_offset = be16(buf, l3 + 6)
    ip_end = np.where(v4, l3 + be16(buf, l3 + 2), l3 + 40 + be16(buf, l3 + 4))
    proto = np.where(v4, u8(buf, l3 + 9), np.where(v6, u8(buf, l3 + 6), 0))
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
        length = np.where(is_frag, 8, np.where(proto == IPV6_AH, (u8(buf, l4 + 1) + 2) * 4,
                                               (u8(buf, l4 + 1) + 1) * 8))  # fmt: skip
        frag_at = np.where(is_frag, l4, frag_at)
        proto = np.where(walking, u8(buf, l4), proto)
        l4 = np.where(walking, l4 + length, l4)
        if is_frag.any():  # after a fragment header of a real fragment come its data, not headers
            walking &= ~(is_frag & ((be16(buf, frag_at + 2) & 0xFFF9) != 0))
        walking &= np.isin(proto, IPV6_EXTENSIONS) & (l4 < ip_end)
    has_frag = frag_at >= 0
    frag6 = has_frag & ~truncated & ((be16(buf, frag_at + 2) & 0xFFF9) != 0) if has_frag.any() else has_frag
    frag4 = v4 & ((flags_offset & 0x3FFF) != 0) & ((proto == IPPROTO_UDP) | (proto == IPPROTO_TCP))
    addr = np.where(v4, l3 + 12, l3 + 8)
    addr_len = np.where(v4, 4, 16)
    ip = (v4 | v6) & ((proto == IPPROTO_UDP) | (proto == IPPROTO_TCP)) & ~frag4 & ~frag6 & ~truncated
    ip &= ~v4 | (ihl >= 20)
    if truncated.any():
        add_count(counters, "packets_cut_by_snaplen", int(np.count_nonzero(truncated)))
    tcp = proto == IPPROTO_TCP
    header_end = np.where(tcp, l4 + 20, l4 + 8)
    payload = np.where(tcp, l4 + (u8(buf, l4 + 12) >> 4) * 4, l4 + 8)
    udp_len = be16(buf, l4 + 4)
    # UDP: the datagram is what its own length says (a receiver gets that many bytes), within IP's
    payload_end = np.where(tcp, ip_end, l4 + udp_len)
    cut = ip & ((header_end > end) | (ip_end > end))
    if cut.any():
        add_count(counters, "packets_cut_by_snaplen", int(np.count_nonzero(cut)))
    bad = ip & ~cut & ((payload > ip_end) | (payload < header_end) | (payload_end > ip_end))
    if bad.any():
        add_count(counters, "packets_malformed_headers", int(np.count_nonzero(bad)))
    ok = ip & ~cut & ~bad
    hdr = Headers(np.where(ok, proto, 0), be16(buf, l4), be16(buf, l4 + 2), payload, payload_end,
                  be32(buf, l4 + 4), u8(buf, l4 + 13), addr, addr_len)  # fmt: skip
    frag = frag4 | frag6
    if not frag.any():
        return hdr, None
    frag_cut = frag & (ip_end > end)
    if frag_cut.any():
        add_count(counters, "packets_cut_by_snaplen", int(np.count_nonzero(frag_cut)))
    idx = np.flatnonzero(frag & ~frag_cut)
    v4i = v4[idx]
    fo = np.where(v4i, flags_offset[idx], be16(buf, frag_at[idx] + 2))
    return hdr, (
        idx,
        addr[idx],
        addr_len[idx],
        np.where(v4i, (fo & 0x1FFF) * 8, (fo >> 3) * 8),  # fragment offset, bytes
        np.where(v4i, fo & 0x2000, fo & 1) != 0,  # more fragments
        np.where(v4i, be16(buf, l3[idx] + 4), be32(buf, frag_at[idx] + 4)),  # identification
        np.where(v4i, l4[idx], frag_at[idx] + 8),  # the fragment's data ...
        ip_end[idx],  # ... to here
        np.where(v4i, 4, 6),
        np.where(v4i, proto[idx], u8(buf, frag_at[idx])),  # v6: the fragment header's next header
    )
