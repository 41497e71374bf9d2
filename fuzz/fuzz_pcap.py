"""Coverage-guided fuzzing of the capture reader and matcher behind ``tickscope wire``.

    pip install atheris
    python fuzz/fuzz_pcap.py -max_total_time=300

One input is a capture file (the first byte is a mode, the rest the file) and drives, in turn:
- ``read_capture`` + ``match`` of the whole file: only ``WireError`` (one line) may come out, and
  every stamp is in 0 .. 2**62 ns;
- ``match_file`` of the same file read in 97-byte chunks (records, blocks, IP fragments, TCP
  segments and FIX frames cut anywhere): the very same match, counters and warning lines included.
When the mode byte is odd the rest is a list of frames split at b"\\n\\n" (Ethernet payloads:
IPv4/IPv6 packets, fragments, TCP and UDP as they come), wrapped by the harness into a valid
nanosecond pcap, so that the fuzzer reaches IP, Mold, TCP and FIX instead of the file headers.
"""

import struct
import sys
import tempfile
from pathlib import Path

import atheris
from _harness import run

# The capture builders are test support (tests/support/wire_synth.py), not product code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

with atheris.instrument_imports():
    from support import wire_synth as S
    from tickscope.collectors.wire import MAX_STAMP_NS, WireError, match, match_file, read_capture
    from tickscope.pipeline import itch
    from tickscope.pipeline.fix import OrderTemplate

MD_PORT, FIX_PORT, WS_PORT = 40100, 40101, 40102
PORTS = ({MD_PORT}, {FIX_PORT})
TMP = Path(tempfile.mkdtemp(prefix="tickscope-fuzz-pcap-"))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        frames = body.split(b"\n\n")
        body = S.pcap(
            [(1_700_000_000_000_000_000 + i * 1_000, S.MAC_DST + S.MAC_SRC + f) for i, f in enumerate(frames)]
        )
    path = TMP / "input.pcap"
    path.write_bytes(body)
    try:
        whole = match(read_capture(path), *PORTS, ws_ports={WS_PORT})
    except WireError:
        return
    for ts in (whole.md_ts, whole.order_ts):
        assert ((ts >= 0) & (ts < MAX_STAMP_NS)).all()
    try:
        chunked = match_file(path, *PORTS, ws_ports={WS_PORT}, chunk_bytes=97)
    except WireError as e:
        assert "no packets read" in str(e) and not whole.packets, e
        return
    S.assert_same_match(chunked, whole)


def seeds() -> list[bytes]:
    order = OrderTemplate("TRADER", "VENUE")
    o1 = order.encode(2, b"TS11-1", b"AAPL", b"1", 100, b"10.0000")
    o2 = order.encode(3, b"TS12-2", b"AAPL", b"2", 100, b"10.0000")
    mold = itch.mold_packet(b"SESSION001", 10, [itch.order_delete(1, 0, 0, i) for i in range(4)])
    md4 = S.udp(5000, MD_PORT, mold)
    ip_frames = [
        S.ipv4("10.0.0.1", "10.0.0.2", 17, md4),
        *S.ipv4_fragments("10.0.0.1", "10.0.0.2", 17, md4, 24),
        *S.ipv6_fragments(17, S.udp(5000, MD_PORT, mold), 32, before=(0,)),
        S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, 99, b"", 0x02)),
        S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, 100 + len(o1), o2)),
        S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, 100, o1[:30])),
        S.ipv6(6, S.tcp(6000, FIX_PORT, 100, o1), (0, 43, 60)),
        S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, 100 + len(o1) + len(o2), o1.replace(b"9=", b"9=9999999999"))),
    ]  # fmt: skip
    eth = [S.ethernet(f, 0x86DD if f[0] >> 4 == 6 else 0x0800) for f in ip_frames]
    pcap = S.pcap([(1_700_000_000_000_000_000 + i, f) for i, f in enumerate(eth)])
    pcapng = S.pcapng([(1, 9), (101, 0x80 | 30)], [(i % 2, 1_700_000_000_000_000_000 + i, f if i % 2 == 0 else f[14:])
                                                   for i, f in enumerate(eth)])  # fmt: skip
    # an interface whose if_tsoffset (2**62 s) puts every stamp past 2116
    idb = S.block(
        1, struct.pack("<HHI", 1, 0, 262144) + struct.pack("<HHB3xHHqHH", 9, 1, 9, 14, 8, 2**62, 0, 0)
    )
    tsoffset = pcapng[:28] + idb + b"".join(S.block(6, struct.pack("<IIIII", 0, 0, i, len(f), len(f)) + f)
                                            for i, f in enumerate(eth))  # fmt: skip
    framed = b"\n\n".join(f[12:] for f in eth)  # ethertype onwards: the harness adds the MACs
    return [b"\x00" + pcap, b"\x00" + pcapng, b"\x00" + tsoffset, b"\x01" + framed]


if __name__ == "__main__":
    run("pcap", seeds(), test_one_input)
