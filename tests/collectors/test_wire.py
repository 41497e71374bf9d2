"""Wire captures: real tcpdump captures of loopback traffic, converted by editcap, and captures built
byte by byte for what loopback cannot show on demand (reordering, other link types, damage)."""

import bisect
import functools
import itertools
import json
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from conftest import need_tool, needs_tool
from support import QUIET, free_port
from support import wire_synth as S
from support.cli import CLI, run_cli
from support.native import needs_cargo
from support.wire_frames import FIX_PORT, MD_PORT, SESSION, md_frame, mold, order, tcp_frame
from tickscope.collectors.wire import (
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    OrderMapping,
    PcapStream,
    WireError,
    WireMatcher,
    match,
    match_file,
    read_capture,
    read_chunks,
)
from tickscope.pipeline import fix as F
from tickscope.pipeline import itch


def run_match(tmp_path, data: bytes, name="c.pcap", mapping=None):
    path = tmp_path / name
    path.write_bytes(data)
    return match(read_capture(path), {MD_PORT}, {FIX_PORT}, mapping)


# -- a real capture ----------------------------------------------------------------------------------
needs_tcpdump = needs_tool("tcpdump", "editcap", install="apt-get install tcpdump wireshark-common")


def _loopback_traffic(md_port: int, fix_port: int, listener: socket.socket) -> tuple[int, int]:
    """Mold packets of 1-3 messages; an order for the last message of every other packet, sent
    whole, split over two segments, or two in one segment. -> (orders with a trace, packets)."""
    md_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    md_rx.bind(("127.0.0.1", md_port))
    md_tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.create_connection(("127.0.0.1", fix_port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    received = bytearray()
    reader = threading.Thread(
        target=lambda: [received.extend(b) for b in iter(lambda: server.recv(65536), b"")]
    )
    reader.start()
    seq, orders, held = 1, 0, b""
    for i in range(300):
        count = 1 + i % 3
        md_tx.sendto(mold(seq, count), ("127.0.0.1", md_port))
        last = seq + count - 1
        seq += count
        if i % 2:
            continue
        frame = order(b"TS%d-%d" % (last, orders))
        orders += 1
        mode = (i // 2) % 3
        if mode == 0:
            client.sendall(frame)
        elif mode == 1:
            client.sendall(frame[:17])
            time.sleep(0.002)
            client.sendall(frame[17:])
        elif held:
            client.sendall(held + frame)
            held = b""
        else:
            held = frame
    client.sendall(held + order(b"TS999999999-0"))  # a trace the feed never had: unmatched
    client.close()
    reader.join(timeout=30)
    server.close()
    md_rx.close()
    md_tx.close()
    return orders, 300


@pytest.fixture(scope="module")
def loopback_capture(tmp_path_factory):
    """A real tcpdump capture of ``_loopback_traffic`` -> (pcap path, md port, fix port, orders)."""
    need_tool("tcpdump", install="apt-get install tcpdump")
    need_tool("editcap", install="apt-get install wireshark-common")
    tmp_path = tmp_path_factory.mktemp("lo")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    fix_port = listener.getsockname()[1]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    md_port = probe.getsockname()[1]
    probe.close()
    pcap = tmp_path / "lo.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "--time-stamp-precision=nano", "-w", str(pcap),
                             f"udp port {md_port} or tcp port {fix_port}"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert "listening on" in dump.stderr.readline()
        orders, _ = _loopback_traffic(md_port, fix_port, listener)
        deadline = time.monotonic() + 60  # hang guard: tcpdump writes the last order (-U) and we go on
        while b"TS999999999" not in pcap.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
        listener.close()
    return pcap, md_port, fix_port, orders


def test_tcpdump_capture_pcap_and_editcap_pcapng_give_the_same_session(tmp_path, loopback_capture):
    pcap, md_port, fix_port, orders = loopback_capture
    pcapng = tmp_path / "lo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True)
    sessions = []
    for cap in (pcap, pcapng):
        out = tmp_path / (cap.suffix[1:] + ".session")
        r = run_cli(
            "wire", str(cap), "--md", f"udp:{md_port}:mold", "--orders", f"tcp:{fix_port}:fix", "-o", str(out)
        )
        assert r.returncode == 0, r.stderr
        assert f"{orders + 1} new orders, {orders} matched, 1 unmatched" in r.stdout
        meta = json.loads((out / "meta.json").read_text())
        assert meta["counters"]["orders_matched"] == orders and meta["counters"]["md_messages"] == 600
        summary = json.loads((out / "summary.json").read_text())
        assert summary["wire_to_wire"]["count"] == orders
        sessions.append(((out / "latency.hlog").read_text().splitlines()[4:], summary))
    assert sessions[0] == sessions[1]  # the pcapng from editcap gives the very same histograms
    r = run_cli("report", str(tmp_path / "pcap.session"))
    assert r.returncode == 0 and "wire_to_wire" in r.stdout, r.stderr


# -- a capture read as it grows ----------------------------------------------------------------------
def _fed_in_pieces(data: bytes, cuts: list[int], md_port: int, fix_port: int):
    """The file's bytes pushed in pieces cut at ``cuts`` -> (the match at the end, orders joined live)."""
    stream, matcher = PcapStream("lo.pcap"), WireMatcher({md_port}, {fix_port})
    joined_live = 0
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        joined_live += matcher.feed(stream.push(data[a:b])).trace.size
    matcher.feed(stream.close())
    return matcher.finish(), joined_live


def _record_bounds(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every pcap record (little-endian, as tcpdump writes here)."""
    out, pos = [], 24
    while pos + 16 <= len(data):
        end = pos + 16 + int.from_bytes(data[pos + 8 : pos + 12], "little")
        out.append((pos, end))
        pos = end
    return out


def test_a_capture_fed_in_any_pieces_matches_exactly_as_the_whole_file(loopback_capture):
    """Cut anywhere (inside a record header, inside a packet, between the two segments of a FIX
    frame split over TCP, inside the file header), the capture read as tcpdump writes it gives the
    match of the whole file; every order is also joined live, its market data came before it."""
    pcap, md_port, fix_port, orders = loopback_capture
    data = pcap.read_bytes()
    whole = match(read_capture(pcap), {md_port}, {fix_port})
    assert (
        whole.counters["orders_matched"] == orders and whole.counters.get("tcp_segments_out_of_order", 0) == 0
    )
    bounds = _record_bounds(data)
    # _loopback_traffic sends some orders in two segments: a record holding the rest of a frame
    split_frames = [(s, e) for s, e in bounds if b"49=TRADER" in data[s:e] and b"8=FIX" not in data[s:e]]
    plans = {
        "every record alone": [e for _, e in bounds[:-1]],
        "inside every record": [(s + e) // 2 for s, e in bounds],
        "inside every record header": [s + 5 for s, _ in bounds],
        "inside the file header": [7],
    }
    rng = random.Random(12)
    for trial in range(30):
        plans[f"random {trial}"] = sorted(set(rng.sample(range(1, len(data)), rng.randint(1, 300))))
    for name, cuts in plans.items():
        m, joined_live = _fed_in_pieces(data, cuts, md_port, fix_port)
        S.assert_same_match(m, whole)
        assert joined_live == orders, name
    assert split_frames, "FIX frames split over two segments, cut between them by 'every record alone'"
    with pytest.raises(WireError, match="truncated pcap header"):
        _fed_in_pieces(data[:20], [], md_port, fix_port)
    m, _ = _fed_in_pieces(data[:-7], [len(data) // 2], md_port, fix_port)  # tcpdump killed mid-record
    assert m.counters["capture_truncated_records"] == 1 and m.packets == len(bounds) - 1


# -- a capture read in chunks (tickscope wire: memory is one chunk, not the file) -------------------
CHUNK_SIZES = (7, 64, 999, 4096)  # cuts inside file headers, record/block headers, packets, FIX frames


def _multi_section_pcapng() -> bytes:
    """Two sections, the second big-endian, with interfaces at ns, µs and 2**-30 s ticks, a simple
    packet block (no stamp), FIX frames split over two segments, and Mold on several interfaces."""
    t0 = 1_700_000_000_000_000_000
    orders = [order(b"TS%d-%d" % (t, t)) for t in range(1, 41)]
    first = [(0, t0, tcp_frame(99, b"", 0x02))]
    seq = 100
    for i in range(20):
        first.append((i % 2, t0 + 1_000 * i + 1, md_frame(1 + i, 1)))
        a, b = orders[i][:23], orders[i][23:]
        first += [
            (0, t0 + 1_000 * i + 500, tcp_frame(seq, a)),
            (1, t0 + 1_000 * i + 700, tcp_frame(seq + len(a), b)),
        ]
        seq += len(orders[i])
    second = []
    for i in range(20, 40):
        second.append((0, t0 + 1_000 * i + 3, md_frame(1 + i, 1)))
        second.append(
            (
                1,
                t0 + 1_000 * i + 900,
                S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, seq, orders[i])),
            )
        )
        seq += len(orders[i])
    spb = S.block(3, struct.pack("<I", 60) + md_frame(999)[:60])
    return (S.pcapng([(1, 9), (1, 6)], first) + spb
            + S.pcapng([(1, 0x80 | 30), (LINKTYPE_RAW, 9)], second, endian=">"))  # fmt: skip


@pytest.mark.parametrize("kind", ["tcpdump pcap", "editcap pcapng", "several sections pcapng"])
def test_a_capture_read_in_small_chunks_matches_exactly_as_the_whole_file(tmp_path, loopback_capture, kind):
    pcap, md_port, fix_port, orders = loopback_capture
    ports = ({md_port}, {fix_port})
    if kind == "editcap pcapng":
        path = tmp_path / "lo.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(path)], check=True)
    elif kind == "several sections pcapng":
        path, ports, orders = tmp_path / "multi.pcapng", ({MD_PORT}, {FIX_PORT}), 40
        path.write_bytes(_multi_section_pcapng())
    else:
        path = pcap
    whole = match(read_capture(path), *ports)
    assert whole.counters["orders_matched"] == orders
    if kind == "several sections pcapng":
        c = whole.counters
        assert c["capture_interfaces"] == 4 and c["capture_packets_without_stamp"] == 1
        assert whole.wire_to_wire.tolist()[:2] == [
            499,
            500,
        ]  # µs ticks on interface 1 and abs(whole.wire_to_wire[-1] - 897) <= 1
    for size in CHUNK_SIZES:
        assert sum(1 for _ in read_chunks(path, size)) > path.stat().st_size // size  # really in pieces
        S.assert_same_match(match_file(path, *ports, chunk_bytes=size), whole)


def test_a_bad_block_or_record_stops_reading_there_whatever_the_chunks(tmp_path):
    """Reading stops at the damage (the rest of a 2 MB file is never read) with the same counter and
    line as the whole file; a record or block longer than 16 MiB is damage, not something to wait for."""
    good = [(0, 100 + i, md_frame(1 + i)) for i in range(3)]
    tail = S.pcapng([(1, 9)], [(0, 10**6 + i, md_frame(100 + i)) for i in range(15_000)])[28:]  # no SHB
    for name, damage in (("length 7", struct.pack("<II", 6, 7)), ("length 4294967292", struct.pack("<II", 6, 2**32 - 4)),
                         ("trailing length", S.block(6, bytes(40))[:-4] + b"\x00\x00\x00\x00")):  # fmt: skip
        path = tmp_path / "bad.pcapng"
        path.write_bytes(S.pcapng([(1, 9)], good) + damage + tail)
        whole = match(read_capture(path), {MD_PORT}, {FIX_PORT})
        assert whole.counters["capture_bad_blocks"] == 1 and whole.packets == 3
        assert any(name in w and "3 packets read before it" in w for w in whole.warnings), whole.warnings
        for size in (64, 4096):
            assert sum(1 for _ in read_chunks(path, size)) < 1_000 // size + 3  # not the file's 2 MB
            S.assert_same_match(match_file(path, {MD_PORT}, {FIX_PORT}, chunk_bytes=size), whole)
    huge = bytearray(S.pcap([(1, md_frame(1)), (2, md_frame(2))] + [(3, md_frame(3))] * 20_000))
    second = 24 + 16 + len(md_frame(1))
    huge[second + 8 : second + 12] = (64 << 20).to_bytes(4, "little")
    path = tmp_path / "huge.pcap"
    path.write_bytes(huge)
    m = match_file(path, {MD_PORT}, {FIX_PORT}, chunk_bytes=4096)
    assert m.packets == 1 and m.counters["capture_bad_records"] == 1
    assert any(f"record at byte {second} has captured length {64 << 20}" in w for w in m.warnings), m.warnings
    assert sum(1 for _ in read_chunks(path, 4096)) == 2  # the chunk with the damage, then close
    S.assert_same_match(m, match(read_capture(path), {MD_PORT}, {FIX_PORT}))


@needs_tcpdump
def test_cli_reading_in_chunks_writes_the_session_of_the_whole_file(tmp_path, loopback_capture):
    from tickscope.collectors.wire import write_session

    pcap, md_port, fix_port, orders = loopback_capture
    pcapng = tmp_path / "lo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True)
    for cap in (pcap, pcapng):
        whole = write_session(
            match(read_capture(cap), {md_port}, {fix_port}), tmp_path / f"{cap.suffix}.whole", {}
        )
        out = tmp_path / f"{cap.suffix}.chunks"
        r = run_cli("wire", str(cap), "--md", f"udp:{md_port}", "--orders", f"tcp:{fix_port}", "-o", str(out),
                    "--chunk-bytes", "1000")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert cap.stat().st_size > 20 * 1000 and f"{orders} matched" in r.stdout
        for name in ("summary.json", "latency.hlog"):
            assert (out / name).read_text().splitlines()[3:] == (whole / name).read_text().splitlines()[3:], (
                name
            )
        meta, meta_whole = (json.loads((d / "meta.json").read_text()) for d in (out, whole))
        assert meta["counters"] == meta_whole["counters"] and meta["wire"] == meta_whole["wire"]


def test_cli_refuses_what_is_not_a_capture_on_its_first_bytes(tmp_path):
    noise = tmp_path / "noise.pcap"
    noise.write_bytes(random.Random(3).randbytes(1 << 20))
    for path in ("/dev/zero", str(noise)):
        # /dev/zero never ends: read on, it would fill memory (or never return)
        r = run_cli("wire", path, "--md", "udp:1", "--orders", "tcp:2", timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "not a pcap or pcapng capture, magic" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # a 410 MB capture
@needs_tool("prlimit", install="apt-get install util-linux")
def test_cli_matches_a_capture_larger_than_its_address_space_limit(tmp_path):
    """A 564 MB pcap matched by ``tickscope wire`` under a 512 MB address-space limit (prlimit --as):
    the whole file can never be in memory at once, so passing shows the bound, on any host speed."""
    path = tmp_path / "big.pcap"
    md_packets, orders = 440_000, 0
    try:
        with open(path, "wb") as f:
            f.write(S.pcap([]))
            body = bytes(1200)
            fix_seq, batch = 1, []
            for i in range(md_packets):
                msg = struct.pack(">H", len(body)) + body  # one 1,202-byte message: bytes, not state
                payload = SESSION + struct.pack(">QH", i + 1, 1) + msg
                frames = [md_frame_raw(payload)]
                if i % 100 == 0:
                    frames.append(tcp_frame(fix_seq, order(b"TS%d-%d" % (i + 1, orders))))
                    fix_seq += len(order(b"TS%d-%d" % (i + 1, orders)))
                    orders += 1
                for fr in frames:
                    ts = 1_700_000_000_000_000_000 + 1_000 * i
                    batch.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(fr), len(fr)) + fr)
                if len(batch) >= 10_000:
                    f.write(b"".join(batch))
                    batch = []
            f.write(b"".join(batch))
        size = path.stat().st_size
        # The whole file is larger than the whole address space. It passed at 160 MB before numba:
        # Python, numpy and the libraries took ~110; numba's LLVM (the hlog encoder's kernel) mapped ~150
        # more until wire stopped loading numba (test_wire_merge_report_and_compare_load_no_numba).
        limit = 512 << 20
        assert size > limit
        env = {"OPENBLAS_NUM_THREADS": "1"}  # one BLAS thread: its stacks count against the limit too
        r = subprocess.run(["prlimit", f"--as={limit}", "--", *CLI, "wire",
                            str(path), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o",
                            str(tmp_path / "s")], capture_output=True, text=True, timeout=600,
                           env={**__import__("os").environ, **env})  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{md_packets + orders} packets" in r.stdout and f"{orders} matched, 0 unmatched" in r.stdout
    finally:
        path.unlink(missing_ok=True)


def md_frame_raw(mold_payload: bytes) -> bytes:
    return S.ethernet(S.ipv4("10.0.0.1", "10.0.0.2", 17, S.udp(5000, MD_PORT, mold_payload)))


# -- TCP reassembly ----------------------------------------------------------------------------------
def test_out_of_order_retransmitted_split_and_joined_frames_stamp_each_order_at_its_first_byte(tmp_path):
    a, b, c, d = (order(b"TS%d-%d" % (t, t)) for t in (1, 2, 3, 4))
    isn = 0xFFFFFFF0  # the sequence numbers wrap inside the stream
    s1 = a[:30]
    s2 = a[30:] + b[:10]
    s3 = b[10:] + c + d[:5]
    s4 = d[5:]
    pos = [isn + 1, isn + 1 + len(s1), isn + 1 + len(s1) + len(s2), isn + 1 + len(s1) + len(s2) + len(s3)]
    packets = [(1000, md_frame(1, 4)),
               (2000, tcp_frame(isn, b"", flags=0x02)),
               (3000, tcp_frame(pos[1], s2)),  # arrives before s1: held until the hole fills
               (4000, tcp_frame(pos[0], s1)),
               (5000, tcp_frame(pos[0], s1)),  # retransmitted
               (6000, tcp_frame(pos[2], s3)),
               (7000, tcp_frame(pos[2], s3[:20])),  # retransmitted part
               (8000, tcp_frame(pos[3], s4))]  # fmt: skip
    m = run_match(tmp_path, S.pcap(packets))
    # a's first byte came in s1 (4000); b's in s2 (3000: captured before s1, it is b's first byte's stamp)
    assert dict(zip(m.trace.tolist(), m.wire_order.tolist(), strict=True)) == {
        1: 4000,
        2: 3000,
        3: 6000,
        4: 6000,
    }
    assert m.wire_to_wire.tolist() == [3000, 2000, 5000, 5000]
    c_ = m.counters
    assert c_["tcp_segments_out_of_order"] == 1 and c_["tcp_segments_retransmitted"] == 2
    assert c_["orders_matched"] == 4 and c_["md_messages"] == 4


def test_a_wire_session_carries_the_run_metadata_and_says_this_host_only_analysed_it(tmp_path):
    """Like every session: the tool, its version, the host facts; under ``analysed_on``, never
    ``host``: the capture was taken anywhere, this host measured nothing."""
    from tickscope.collectors.wire import write_session

    m = run_match(tmp_path, S.pcap([(1000, md_frame(1, 1)), (2000, tcp_frame(100, b"", 0x02)),
                                    (3000, tcp_frame(101, order(b"TS1-1")))]))  # fmt: skip
    meta = json.loads((write_session(m, tmp_path / "s", {"name": "s"}) / "meta.json").read_text())
    assert meta["tool"] == "tickscope" and meta["tool_version"] and meta["analysed_on"]["hostname"]
    assert "host" not in meta and meta["source"] == "wire" and meta["name"] == "s"


def test_several_orders_of_one_tick_are_each_joined_as_their_leg(tmp_path):
    """TS<trace>.<leg>-<n>: every leg of a tick is its own order and its own wire-to-wire sample;
    the same leg again is a duplicate; a ClOrdID without a leg is leg 0; a leg no ring record can
    name (above 65535) is refused and counted."""
    frames = [order(b"TS7.0-1", 1), order(b"TS7.1-2", 2), order(b"TS7.2-3", 3), order(b"TS7.1-4", 4),
              order(b"TS8-5", 5), order(b"TS8.70000-6", 6)]  # fmt: skip
    packets, seq = [(100, md_frame(7, 2)), (150, tcp_frame(99, b"", 0x02))], 100
    for i, f in enumerate(frames):
        packets.append((200 + 10 * i, tcp_frame(seq, f)))
        seq += len(f)
    m = run_match(tmp_path, S.pcap(packets))
    assert list(zip(m.trace.tolist(), m.leg.tolist(), m.wire_to_wire.tolist(), strict=True)) == [
        (7, 0, 100), (7, 1, 110), (7, 2, 120), (8, 0, 140)
    ]  # fmt: skip
    c = m.counters
    assert c["orders_new"] == 6 and c["orders_matched"] == 4 and c["orders_duplicate_trace"] == 1
    assert (c["orders_matched_leg_0"], c["orders_matched_leg_1"], c["orders_matched_leg_2"]) == (2, 1, 1)
    assert c["orders_leg_out_of_range"] == 1 and c["md_messages_without_order"] == 0
    # a regex with no leg group: every order leg 0, the legs of one tick are then duplicates
    m = run_match(tmp_path, S.pcap(packets), mapping=OrderMapping(11, r"(\d+)"))
    assert (
        m.trace.tolist() == [7, 8] and m.leg.tolist() == [0, 0] and m.counters["orders_duplicate_trace"] == 4
    )


def test_gap_never_filled_and_garbage_between_frames_are_counted(tmp_path):
    a, b = order(b"TS1-1"), order(b"TS2-2")
    packets = [(1, md_frame(1, 2)), (2, tcp_frame(100, b"", 0x02)), (3, tcp_frame(101, b"junk" + a)),
               (4, tcp_frame(101 + 4 + len(a) + 50, b))]  # 50 bytes never captured  # fmt: skip
    m = run_match(tmp_path, S.pcap(packets))
    assert m.trace.tolist() == [1]
    assert m.counters["fix_garbage_bytes"] == 4 and m.counters["tcp_segments_after_gap"] == 1


def test_mid_stream_join_and_own_clordid_tag_mapping(tmp_path):
    frame = F.encode(b"D", [(49, b"T"), (56, b"V"), (34, 9), (11, b"ABC"), (9717, b"ref-77")])
    packets = [
        (10, md_frame(77)),
        (30, tcp_frame(5000, b"9=12\x0135=0\x01" + frame)),
    ]  # no SYN: joined midway
    m = run_match(tmp_path, S.pcap(packets), mapping=OrderMapping(9717, r"ref-(\d+)"))
    assert m.trace.tolist() == [77] and m.wire_to_wire.tolist() == [20]
    assert m.counters["tcp_streams_joined_midway"] == 1
    m = run_match(tmp_path, S.pcap(packets))  # tag 11 "ABC" has no digits: counted, not guessed
    assert m.trace.size == 0 and m.counters["orders_unmapped"] == 1
    # a regex whose group 1 did not take part in the match ('ref' matched the other branch)
    m = run_match(tmp_path, S.pcap(packets), mapping=OrderMapping(9717, r"(nope)|ref"))
    assert m.trace.size == 0 and m.counters["orders_unmapped"] == 1


def test_a_hole_never_filled_is_given_up_after_a_bound_and_the_stream_goes_on(tmp_path, monkeypatch):
    """A lost segment must not hold the rest of the stream in memory (a day's capture): past
    MAX_PENDING_BYTES of later data the hole is skipped, counted, and FIX framing goes on after it;
    a WebSocket connection stops its numbering there with one line (a count across a hole is a guess)."""
    from tickscope.collectors.wire import TcpStream

    monkeypatch.setattr(TcpStream, "MAX_PENDING_BYTES", 2_000)
    frames = [order(b"TS%d-%d" % (t, t)) for t in range(1, 41)]
    packets, seq = [(1, md_frame(1, 40)), (2, tcp_frame(99, b"", 0x02))], 100
    for i, f in enumerate(frames):
        if i == 2:  # order 3's second half is lost: its first half waits unframed, then is dropped
            packets.append((10 + i, tcp_frame(seq, f[:30])))
        elif i != 3:  # order 4 is lost whole
            packets.append((10 + i, tcp_frame(seq, f)))
        seq += len(f)
    m = run_match(tmp_path, S.pcap(packets))
    c = m.counters
    assert m.trace.tolist() == [1, 2, *range(5, 41)]
    assert c["tcp_gaps_skipped"] == 1 and c["tcp_bytes_missing"] == len(frames[2]) - 30 + len(frames[3])
    assert c["tcp_bytes_dropped_before_gap"] == 30 and "tcp_segments_after_gap" not in c
    # the same capture fed a packet at a time: the same match
    S.assert_same_match(match_file(tmp_path / "c.pcap", {MD_PORT}, {FIX_PORT}, chunk_bytes=97), m)

    texts = [ws_text(i, size=100) for i in range(1, 41)]
    stream = WS_101 + b"".join(texts)
    cuts = list(itertools.accumulate([len(WS_101), *map(len, texts[:-1])]))
    ws_packets, starts = ws_connection(stream, cuts, 10**18)
    del ws_packets[5]  # message 4's segment (1: SYN-ACK, 2: the 101)
    m = ws_match(tmp_path, ws_packets)
    assert m.md_trace.tolist() == [1, 2, 3] and m.counters["ws_gaps_never_filled"] == 1
    (line,) = [w for w in m.warnings if w.startswith("WebSocket ")]
    assert f"gap in the TCP stream at byte {starts[4]} was not filled within 2000 bytes" in line, line


# -- link types, file formats -------------------------------------------------------------------------
def _ip_packets():
    md = S.ipv4("10.0.0.1", "10.0.0.2", 17, S.udp(5000, MD_PORT, mold(10, 2)))
    syn = S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, 99, b"", 0x02))
    o = S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, 100, order(b"TS11-1")))
    return [(1_000, md), (1_500, syn), (4_250, o)]


@pytest.mark.parametrize("linktype,wrap", [
    (LINKTYPE_LINUX_SLL, lambda ip: b"\x00\x00\x03\x04\x00\x06" + bytes(8) + b"\x08\x00" + ip),
    (LINKTYPE_LINUX_SLL2, lambda ip: b"\x08\x00\x00\x00" + bytes(16) + ip),
    (LINKTYPE_RAW, lambda ip: ip),
    (LINKTYPE_NULL, lambda ip: b"\x02\x00\x00\x00" + ip),
    (1, lambda ip: S.MAC_DST + S.MAC_SRC + b"\x81\x00\x00\x07\x08\x00" + ip),  # 802.1Q tagged
])  # fmt: skip
def test_link_types(tmp_path, linktype, wrap):
    m = run_match(tmp_path, S.pcap([(t, wrap(ip)) for t, ip in _ip_packets()], linktype=linktype))
    assert m.trace.tolist() == [11] and m.wire_to_wire.tolist() == [3_250]


def test_ipv6_and_ethernet_padding(tmp_path):
    md = S.ethernet(S.ipv6(17, S.udp(5000, MD_PORT, mold(5, 1))), 0x86DD) + b"\xee" * 6  # trailer ignored
    o = S.ethernet(S.ipv6(6, S.tcp(6000, FIX_PORT, 1, order(b"TS5-1"))), 0x86DD)
    m = run_match(tmp_path, S.pcap([(100, md), (350, o)]))
    assert m.trace.tolist() == [5] and m.wire_to_wire.tolist() == [250]


@pytest.mark.parametrize("endian,nano", [("<", True), (">", True), ("<", False), (">", False)])
def test_pcap_magic_both_resolutions_both_endians(tmp_path, endian, nano):
    packets = [
        (1_700_000_000_123_456_000, md_frame(3)),
        (1_700_000_000_123_999_000, tcp_frame(7, order(b"TS3-1"))),
    ]
    m = run_match(tmp_path, S.pcap(packets, nano=nano, endian=endian))
    assert m.fmt == ("pcap-ns" if nano else "pcap-us")
    assert m.wire_md.tolist() == [1_700_000_000_123_456_000] and m.wire_to_wire.tolist() == [543_000]


def test_pcapng_several_interfaces_with_their_own_resolutions(tmp_path):
    t0 = 1_700_000_000_000_000_000
    data = S.pcapng([(1, 9), (1, 6), (LINKTYPE_RAW, 0x80 | 30)],
                    [(0, t0 + 1_001, md_frame(20, 3)),
                     (1, t0 + 5_000, tcp_frame(1, order(b"TS21-1"))),
                     (2, t0 + 2**30 * 0 + 9_000, S.ipv4("1.1.1.1", "1.1.1.2", 6, S.tcp(1, FIX_PORT, 1, order(b"TS22-2"))))])  # fmt: skip
    m = run_match(tmp_path, data, "c.pcapng")
    assert m.fmt == "pcapng" and m.counters["capture_interfaces"] == 3
    w2w = dict(zip(m.trace.tolist(), m.wire_to_wire.tolist(), strict=True))
    assert w2w[21] == 5_000 - 1_001
    assert abs(w2w[22] - (9_000 - 1_001)) <= 1  # 2**-30 s ticks: within a nanosecond


# -- bad input ---------------------------------------------------------------------------------------
def test_pcapng_block_with_wrong_length_is_counted_and_named(tmp_path):
    good = S.pcapng([(1, 9)], [(0, 100, md_frame(1)), (0, 200, tcp_frame(1, order(b"TS1-1")))])
    bad = bytearray(good)
    last = len(good) - (len(good) - good.rfind(b"\x06\x00\x00\x00", 0, len(good)))
    bad[last + 4 : last + 8] = (7).to_bytes(4, "little")  # not a multiple of 4
    m = run_match(tmp_path, bytes(bad), "c.pcapng")
    assert m.counters["capture_bad_blocks"] == 1 and m.packets == 1
    assert any("length 7" in w and "1 packets read" in w for w in m.warnings)


def test_truncated_pcap_short_snaplen_unknown_linktype(tmp_path):
    data = S.pcap([(1, md_frame(1)), (2, tcp_frame(1, order(b"TS1-1")))])
    m = run_match(tmp_path, data[:-10])
    assert m.counters["capture_truncated_records"] == 1 and m.packets == 1
    m = run_match(tmp_path, S.pcap([(1, md_frame(1)), (2, tcp_frame(1, order(b"TS1-1")))], snaplen=60))
    assert m.counters["packets_cut_by_snaplen"] == 2 and m.trace.size == 0
    m = run_match(tmp_path, S.pcap([(1, md_frame(1))], linktype=147))
    assert m.counters["packets_unknown_linktype_147"] == 1 and any("link type 147" in w for w in m.warnings)


def test_malformed_mold_and_no_matching_traffic(tmp_path):
    short = S.ethernet(S.ipv4("1.1.1.1", "1.1.1.2", 17, S.udp(1, MD_PORT, b"x" * 12)))
    lying = S.ethernet(S.ipv4("1.1.1.1", "1.1.1.2", 17, S.udp(1, MD_PORT, mold(1, 1)[:18] + b"\x00\x50")))
    m = run_match(tmp_path, S.pcap([(1, short), (2, lying), (3, md_frame(9))]))
    assert m.counters["md_packets_malformed"] == 2 and m.md_trace.tolist() == [9]
    m = run_match(tmp_path, S.pcap([(1, S.ethernet(S.ipv4("1.1.1.1", "1.1.1.2", 17, S.udp(1, 9, b"zz"))))]))
    assert any("no packet of the capture" in w for w in m.warnings)


def test_cli_one_line_errors(tmp_path):
    garbage = tmp_path / "g.pcap"
    garbage.write_bytes(b"\x00garbage" * 10)
    empty = tmp_path / "e.pcap"
    empty.write_bytes(S.pcap([]))
    for path, expect in ((garbage, "not a pcap or pcapng"), (empty, "no packets read"),
                         (tmp_path / "missing.pcap", "cannot read capture")):  # fmt: skip
        r = run_cli("wire", str(path), "--md", "udp:1", "--orders", "tcp:2")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and expect in r.stderr, r.stderr
    r = run_cli("wire", str(garbage), "--md", "sctp:1", "--orders", "tcp:2")
    assert r.returncode == 2 and "udp:PORT[:mold] or tcp:PORT[:ws]" in r.stderr, r.stderr
    r = run_cli("wire", str(garbage), "--md", "tcp:1:mold", "--orders", "tcp:2")
    assert r.returncode == 2 and "not one tickscope matches on tcp (ws)" in r.stderr, r.stderr
    r = run_cli("wire", str(garbage), "--md", "udp:1", "--orders", "tcp:2", "--clordid-regex", "\\d+")
    assert r.returncode == 2 and "has no group" in r.stderr


def test_wire_merge_report_and_compare_load_no_numba(tmp_path):
    """Commands that read or write sessions without running the collector record with numpy and
    encode with hdrh (BulkRecorder(compiled=False), hlog_codec): loading numba and its kernels
    was ~0.7-0.8 s of CPU and start-up in each of them."""
    from support.cli import cli_env

    ports = ["--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}"]
    runs = []
    for k in (1, 2):  # two captures: two sources, which merge takes
        cap = tmp_path / f"c{k}.pcap"
        cap.write_bytes(
            S.pcap([(10, md_frame(10 + k)), (20 + k, tcp_frame(100, order(f"TS{10 + k}-1".encode())))])
        )
        runs.append(["wire", str(cap), *ports, "-o", str(tmp_path / f"w{k}")])
    w1, w2, merged = (str(tmp_path / x) for x in ("w1", "w2", "m"))
    for args in (*runs, ["merge", merged, f"a={w1}", f"b={w2}"], ["report", merged], ["compare", w1, w2]):
        r = subprocess.run([sys.executable, "-X", "importtime", *CLI[1:], *args], capture_output=True, text=True,
                           env=cli_env(), timeout=120)  # fmt: skip
        said = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
        assert r.returncode in ((0, 1) if args[0] == "compare" else (0,)) and not said, (
            args,
            r.returncode,
            said,
        )
        imported = {
            line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")
        }
        assert "numba" not in imported and "llvmlite" not in imported, args[0]


def test_wire_writes_no_session_when_no_order_matched(tmp_path):
    """A session of no values is one report and compare could only refuse: wire says why instead,
    with the counts that tell which option is wrong."""
    cap = tmp_path / "c.pcap"
    cap.write_bytes(S.pcap([(10, md_frame(11)), (20, tcp_frame(100, order(b"TS11-1")))]))
    good = run_cli(
        "wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(tmp_path / "ok")
    )
    assert good.returncode == 0 and "1 matched" in good.stdout, good.stderr
    r = run_cli("wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "--clordid-regex", "(x)",
                "-o", str(tmp_path / "none"))  # fmt: skip
    assert r.returncode == 2 and "1 new orders, 0 matched, 0 unmatched, 1 without a trace id" in r.stdout
    (line,) = r.stderr.splitlines()
    assert "no order in" in line and "no session written" in line and "--clordid-regex" in line, r.stderr
    assert not (tmp_path / "none").exists()


def test_read_capture_refuses_a_short_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"ab")
    with pytest.raises(WireError, match="too short"):
        read_capture(p)


# -- profile --capture ---------------------------------------------------------------------------------
@needs_tcpdump
def test_profile_capture_joins_wire_points_with_the_traces(tmp_path):
    out = tmp_path / "s"
    # --quotes one: one venue, so `tickscope wire` re-reads the capture with its one order port;
    # the default market maker's two venues are the next tests'.
    r = run_cli("profile", "--capture", "--quotes", "one", "--duration", "4s", "--rate", "5k", *QUIET, "-o", str(out), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    cap = meta["capture"]
    c = cap["counters"]
    assert c["orders_new"] > 0 and c["orders_matched"] >= 0.999 * c["orders_new"]
    assert c["orders_unmatched"] == 0 and cap["orders_on_wire_without_trace"] == 0
    # tcpdump listened before the pipeline started, and was stopped only once our end marker was in
    # the file: every traced packet is on the capture, however late tcpdump ran behind.
    assert cap["end_marker"] is True and "end_marker_missing" not in cap
    assert cap["orders_traced_not_on_wire"] == 0 and cap["md_traced_not_on_wire"] == 0, cap
    assert c["capture_end_marker"] == 1 and c["packets_other"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wire_to_wire"]["count"] == c["orders_matched"]
    residual = (
        summary["wire.order-order.tx"]["count"] + summary.get("order.tx-wire.order", {"count": 0})["count"]
    )
    assert residual == c["orders_matched"] and summary["md.rx-wire.md"]["count"] > 0
    assert "tcpdump_dropped_by_kernel" in cap and "dropped by kernel" in r.stdout
    assert "wire_to_wire" in r.stdout and (out / "wire.pcap").is_file()
    # the same capture read afterwards gives the same wire_to_wire histogram
    w = run_cli("wire", str(out / "wire.pcap"), "--md", f"udp:{cap['md_port']}", "--orders",
                f"tcp:{cap['order_port']}", "-o", str(tmp_path / "w"))  # fmt: skip
    assert w.returncode == 0, w.stderr
    assert (
        json.loads((tmp_path / "w" / "summary.json").read_text())["wire_to_wire"] == summary["wire_to_wire"]
    )


@needs_tcpdump
@pytest.mark.slow  # a cargo build
@needs_tool("cargo", install="apt-get install cargo")
def test_profile_capture_with_the_rust_trader_joins_every_order_to_its_trace(tmp_path):
    """The Rust trader's ClOrdIDs carry the trace id and leg (TS<trace>.<leg>-<n>) as the Python trader's do."""
    out = tmp_path / "s"
    r = run_cli("profile", "--capture", "--trader", "rust", "--duration", "4s", "--rate", "5k", *QUIET, "-o", str(out), timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    cap, c = meta["capture"], meta["capture"]["counters"]
    said = {**{k: v for k, v in meta["counters"].items() if v and k not in ("produced", "drained")},
            **{k: v for k, v in cap.items() if k.startswith(("orders_", "md_"))}, **c}  # fmt: skip
    assert c["orders_new"] > 0 and c["orders_matched"] == c["orders_new"], said
    # Every order on the wire joins its trace's order.tx stamp; a collector starved past the rings'
    # depth (a loaded host) loses stamps, and then says so: those orders are on the wire untraced.
    if meta["counters"]["dropped_ring_full"]:
        assert not meta["drop_free"] and "dropped" in r.stdout, said
    else:
        assert cap["orders_traced"] == c["orders_matched"] and cap["orders_on_wire_without_trace"] == 0, said
    assert cap["orders_traced"] == c["orders_matched"] - cap["orders_on_wire_without_trace"], said
    assert cap["orders_traced_not_on_wire"] == 0 and cap["md_traced_not_on_wire"] == 0, said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wire_to_wire"]["count"] == c["orders_matched"]
    residual = (
        summary["wire.order-order.tx"]["count"] + summary.get("order.tx-wire.order", {"count": 0})["count"]
    )
    assert residual == cap["orders_traced"], said
    # the wire joins what the probes measured: wire-to-wire is tick-to-trade give or take the stack
    assert summary["wire_to_wire"]["p50"] < 10 * summary["tick_to_trade"]["p50"] + 1_000_000
    stats = meta["subject_stats"]["trader"]
    assert stats["oms_unknown_reports"] == 0 and stats["orders_acked"] > 0  # its OMS still finds its orders


# A NewOrderSingle's ClOrdID as the bundled traders write it, read straight off the capture's bytes.
RAW_NEW_ORDER = re.compile(rb"\x0135=D\x01(?:[^\x01]*\x01)*?11=TS(\d+)\.(\d+)-(\d+)\x01")
LEG_KIND = {0: "bid", 1: "ask", 2: "hedge"}


@needs_tcpdump
@pytest.mark.parametrize("trader", ["python", pytest.param("rust", marks=[pytest.mark.slow, needs_cargo])])
def test_profile_capture_of_the_market_maker_joins_every_leg_to_its_trace(tmp_path, trader):
    """The default pipeline, the market maker: a tick sends a bid, an ask and sometimes a hedge to a
    second venue. Every order on the wire (counted from the capture's raw bytes, not through the
    matcher) is one wire-to-wire sample, per leg as many as the trader sent, each joined to its own
    leg's order.tx."""
    out = tmp_path / "s"
    r = run_cli("profile", "--capture", "--trader", trader, "--duration", "4s", "--rate", "5k",
                *QUIET, "-o", str(out), timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    cap, c = meta["capture"], meta["capture"]["counters"]
    assert (
        cap["hedge_order_port"] == meta["options"]["pipeline"]["hedge_fix_port"] and cap["end_marker"] is True
    )
    raw = {
        m.group(3): (int(m.group(1)), int(m.group(2)))
        for m in RAW_NEW_ORDER.finditer((out / "wire.pcap").read_bytes())
    }
    raw_legs = {leg: sum(1 for _, g in raw.values() if g == leg) for leg in LEG_KIND}
    stats = meta["subject_stats"]["trader"]
    sent = stats["orders_by_leg"]
    assert {LEG_KIND[leg]: n for leg, n in raw_legs.items()} == sent and min(sent.values()) > 0, (
        raw_legs,
        sent,
    )
    assert c["orders_new"] == c["orders_matched"] == len(raw) == stats["orders_sent"]
    assert {leg: c[f"orders_matched_leg_{leg}"] for leg in LEG_KIND} == raw_legs
    assert c["orders_unmatched"] == 0 and "orders_duplicate_trace" not in c
    # each order joined to its own leg's kernel transmit stamp, none left over; a stamp the kernel
    # never queued for the trader (its error queue full) is the trader's own count, not ours
    lost = stats["tx_stamps_unmatched"]
    assert cap["orders_traced"] == len(raw) - lost and cap["orders_traced_not_on_wire"] == 0
    assert cap["orders_on_wire_without_trace"] == lost and cap["md_traced_not_on_wire"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wire_to_wire"]["count"] == len(raw) == summary["tick_to_trade"]["count"]
    residual = (
        summary["wire.order-order.tx"]["count"] + summary.get("order.tx-wire.order", {"count": 0})["count"]
    )
    assert residual == len(raw) - lost
    # the same capture read afterwards by `tickscope wire` (both order ports): the same samples
    w = run_cli("wire", str(out / "wire.pcap"), "--md", f"udp:{cap['md_port']}", "--orders",
                f"tcp:{cap['order_port']}", "--orders", f"tcp:{cap['hedge_order_port']}", "-o", str(tmp_path / "w"))  # fmt: skip
    assert w.returncode == 0, w.stderr
    assert (
        json.loads((tmp_path / "w" / "summary.json").read_text())["wire_to_wire"] == summary["wire_to_wire"]
    )


def test_the_live_wire_rows_join_each_leg_to_its_own_order_tx():
    """Two legs of one tick on the wire: each leg's residual is against its own order.tx."""
    from tickscope.collectors.rings.collector import IntervalGrid, PointTap
    from tickscope.collectors.rings.realtime import RealtimeOffset
    from tickscope.collectors.side.capture import LiveWireJoin
    from tickscope.collectors.wire import WireStep

    class Collector:  # what LiveWireJoin reads of a collector: its interval grid
        grid = IntervalGrid(0, 10**9, 0, RealtimeOffset(0, 0, 0))

    i64 = functools.partial(np.array, dtype=np.int64)
    tap = PointTap(("md.rx", "order.tx"))
    tap.parts["order.tx"].append((i64([5, 5]), i64([100, 130]), i64([1, 0])))  # leg 1 sent first
    tap.parts["md.rx"].append((i64([5]), i64([50]), i64([0])))
    live = LiveWireJoin(Collector(), tap)
    # on the wire: leg 0 at 135, leg 1 at 103
    live.add(WireStep(i64([5]), i64([40]), i64([5, 5]), i64([135, 103]), i64([5, 5]), i64([40, 40]),
                      i64([135, 103]), i64([0, 1]), i64([0, 1])))  # fmt: skip
    live.roll(False)
    rows = live.rows().cumulative
    assert rows["wire_to_wire"]["count"] == 2 and rows["md.rx-wire.md"]["max"] == 10
    assert (
        rows["wire.order-order.tx"]["count"],
        rows["wire.order-order.tx"]["min"],
        rows["wire.order-order.tx"]["max"],
    ) == (2, 3, 5)


@needs_tcpdump
@needs_tool("tmux", install="apt-get install tmux")
@pytest.mark.parametrize("feed", ["itch", "ws"])
def test_profile_capture_shows_the_wire_rows_in_the_live_view_during_the_run(tmp_path, feed):
    name = f"ts-wire-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "s"
    cmd = (f"{sys.executable} -m tickscope.main profile --capture --feed {feed} --duration 300s --rate 5k "
           f"--no-perf --no-hiccup --out {out}; sleep 60")  # fmt: skip
    tmux = functools.partial(subprocess.run, capture_output=True, text=True)
    tmux(["tmux", "new-session", "-d", "-x", "140", "-y", "50", "-s", name, cmd])
    screen, row = "", None
    try:
        deadline = time.monotonic() + 240  # hang guard: the row appears within seconds
        while row is None and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = tmux(["tmux", "capture-pane", "-p", "-t", name]).stdout
            row = re.search(r"wire_to_wire +([\d,]+) ", screen)
            # Wait for every wire row: the residual rows follow once the order ring is drained,
            # which may be a redraw after wire_to_wire's first orders (more so with three legs a tick).
            if row is not None and (
                int(row.group(1).replace(",", "")) == 0
                or "wire.order-order.tx" not in screen
                or not re.search(r"md\.rx-wire\.md +[\d,]+ ", screen)
            ):
                row = None
        tmux(["tmux", "send-keys", "-t", name, "C-c"])  # stop it early: the session is saved
        while json.loads((out / "meta.json").read_text()).get("status") == "running":
            assert time.monotonic() < deadline + 120, "profile did not finish"
            time.sleep(0.5)
    finally:
        tmux(["tmux", "kill-session", "-t", name])
    assert row is not None, screen
    assert re.search(r"md\.rx-wire\.md +[\d,]+ ", screen) and "wire.order-order.tx" in screen, screen
    assert re.search(r"capture: [\d,]+ packets, .* [\d,]+ matched, [\d,]+ unmatched", screen), screen
    assert "Traceback" not in screen
    assert json.loads((out / "summary.json").read_text())["wire_to_wire"]["count"] > 0


@needs_tcpdump
def test_an_end_marker_that_never_reaches_the_capture_is_one_line_and_a_counter(tmp_path):
    from tickscope.collectors.side.capture import WireCapture

    cap = WireCapture("lo", md_port=free_port(socket.SOCK_DGRAM), order_port=free_port(), end_guard_s=1.0)
    cap.start(None, tmp_path)
    assert cap.tail is not None and not cap.warnings, cap.warnings
    cap.marker_sock.close()  # the marker now goes to a port tcpdump's filter does not have
    cap.marker_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cap.marker_sock.bind(("127.0.0.1", 0))
    warnings = cap.stop()
    assert cap.end == {"end_marker": True, "end_marker_missing": 1}
    assert [w for w in warnings if "end marker did not reach wire.pcap within 1 s" in w] == warnings, warnings
    assert cap.proc.poll() is not None and cap.tail.match.counters.get("capture_end_marker") is None


def test_profile_capture_without_tcpdump_says_so_and_the_session_goes_on(tmp_path):
    out = tmp_path / "s"
    r = run_cli("profile", "--capture", "--duration", "2s", "--rate", "2k", *QUIET, "-o", str(out), timeout=300, env={"PATH": str(tmp_path)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "tcpdump not found (apt-get install tcpdump" in r.stderr
    assert json.loads((out / "summary.json").read_text())["tick_to_trade"]["count"] > 0


def _non_loopback_iface() -> str | None:
    from pathlib import Path

    for dev in sorted(Path("/sys/class/net").iterdir()):
        try:
            flags = int((dev / "flags").read_text(), 16)
        except (OSError, ValueError):
            continue
        if flags & 0x1 and not flags & 0x8:  # up, not loopback
            return dev.name
    return None


@needs_tcpdump
@pytest.mark.skipif(_non_loopback_iface() is None, reason="no non-loopback interface that is up")
def test_profile_capture_on_a_non_loopback_interface_says_there_is_no_end_marker(tmp_path):
    out = tmp_path / "s"
    iface = _non_loopback_iface()
    r = run_cli("profile", "--capture", "--capture-iface", iface, "--duration", "2s", "--rate", "2k", *QUIET, "-o", str(out), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "meta.json").read_text())["capture"]["end_marker"] is False
    assert f"{iface} is not loopback, so no end marker" in r.stderr


# -- WebSocket market data (ws://): text messages numbered on the venue's side of the stream ----------
WS_PORT = 40102
WS_101 = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")  # fmt: skip
WS_101_DEFLATE = WS_101[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"", rsv: int = 0) -> bytes:
    """One RFC 6455 frame: 7-, 16- or 64-bit length as the payload needs, masked when ``mask``."""
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    m, n = 0x80 if mask else 0, len(payload)
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 1 << 16:
        head = struct.pack(">BBH", b0, m | 126, n)
    else:
        head = struct.pack(">BBQ", b0, m | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def ws_text(i: int, size: int = 20) -> bytes:
    return ws_frame(1, json.dumps({"e": "depthUpdate", "i": i, "pad": "x" * size}).encode())


def ws_segment(seq: int, payload: bytes, flags: int = 0x18, client_port: int = 7000) -> bytes:
    return S.ethernet(S.ipv4("10.0.0.9", "10.0.0.2", 6, S.tcp(WS_PORT, client_port, seq, payload, flags)))


def ws_connection(stream: bytes, cuts: list[int], t0: int, client_port: int = 7000, isn: int = 5000):
    """(stamp, frame) of a SYN-ACK and the stream cut into segments at ``cuts`` (stream offsets),
    segment k stamped t0 + 1000 * (k + 1); and each segment's first stream offset."""
    bounds = [0, *cuts, len(stream)]
    packets = [(t0, ws_segment(isn, b"", 0x12, client_port))]
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        packets.append((t0 + 1000 * (k + 1), ws_segment(isn + 1 + a, stream[a:b], 0x18, client_port)))
    return packets, bounds[:-1]


def ws_match(tmp_path, packets, ws_ports=frozenset({WS_PORT})):
    path = tmp_path / "ws.pcap"
    path.write_bytes(S.pcap(packets))
    return match(read_capture(path), set(), {FIX_PORT}, None, ws_ports)


def _stamp_of(offset: int, starts: list[int], t0: int) -> int:
    return t0 + 1000 * bisect.bisect_right(starts, offset)


def test_ws_messages_are_numbered_in_stream_order_through_fragments_pings_and_every_length(tmp_path):
    """Trace n is the n-th text message on the venue's side; wire.md is the stamp of the segment that
    holds its first frame's first byte. Fragments with a ping inside, binary messages (not numbered:
    the trader numbers text), 16- and 64-bit lengths, frames split across segments, several frames in
    one segment, segments out of order and retransmitted."""
    parts = [WS_101, ws_text(1),
             ws_frame(1, b'{"e":"dep', fin=False), ws_frame(9, b"ping"), ws_frame(0, b'thUpdate"', fin=False),
             ws_frame(10, b""), ws_frame(0, b"}"),  # message 2: three fragments, a ping and a pong among them
             ws_frame(2, b"\x00" * 50),  # binary: not a trace
             ws_text(3, size=300),  # 16-bit length
             ws_text(4, size=70_000),  # 64-bit length
             ws_text(5), ws_text(6), ws_frame(8, b"\x03\xe8")]  # fmt: skip
    stream = b"".join(parts)
    offsets = list(itertools.accumulate(len(p) for p in parts))
    starts_of = {1: offsets[0], 2: offsets[1], 3: offsets[7], 4: offsets[8], 5: offsets[9], 6: offsets[10]}
    # cuts: inside message 1's header (split header), inside the fragmented message, inside the
    # 16-bit length field, through the 64-bit payload; messages 5 and 6 share one segment
    cuts = sorted({offsets[0] + 1, offsets[2] + 3, offsets[7] + 3, offsets[8] + 9, offsets[8] + 30_000,
                   offsets[8] + 60_000, offsets[9] - 5})  # fmt: skip
    t0 = 1_700_000_000_000_000_000
    packets, starts = ws_connection(stream, cuts, t0)
    order_ts = t0 + 10**6
    packets.append((order_ts, tcp_frame(100, order(b"TS4-1"))))
    expected = [_stamp_of(starts_of[n], starts, t0) for n in range(1, 7)]

    m = ws_match(tmp_path, packets)
    assert m.md_trace.tolist() == [1, 2, 3, 4, 5, 6] and m.md_ts.tolist() == expected
    c = m.counters
    assert c["ws_text_messages"] == 6 and c["ws_binary_messages"] == 1 and c["ws_control_frames"] == 2
    assert c["ws_close_frames"] == 1 and c["ws_continuation_frames"] == 2
    assert c["ws_connections_upgraded"] == 1
    assert c["packets_other"] == 0 and "ws_frames_malformed" not in c and not m.warnings
    assert m.trace.tolist() == [4] and m.wire_to_wire.tolist() == [order_ts - expected[3]]

    # out of order, retransmissions (of the SYN-ACK too), and fed in pieces: the same numbers, stamps
    shuffled = [packets[0], packets[2], packets[1], packets[3], packets[1], packets[0], *packets[4:]]
    m2 = ws_match(tmp_path, shuffled)
    assert m2.md_trace.tolist() == [1, 2, 3, 4, 5, 6] and m2.counters["ws_connections"] == 1
    assert m2.counters["tcp_segments_out_of_order"] == 1 and m2.counters["tcp_segments_retransmitted"] == 1
    # the stamp of a message's first byte is that of the first segment that carried it
    assert m2.md_ts.tolist()[1:] == expected[1:]
    data = S.pcap(packets)
    matcher = WireMatcher(set(), {FIX_PORT}, ws_ports={WS_PORT})
    stream_in = PcapStream("ws.pcap")
    for a, b in itertools.pairwise([0, 30, 200, 5000, 40_000, 71_000, len(data)]):
        matcher.feed(stream_in.push(data[a:b]))
    pieces = matcher.finish()
    assert pieces.md_trace.tolist() == m.md_trace.tolist() and pieces.md_ts.tolist() == m.md_ts.tolist()
    assert pieces.wire_to_wire.tolist() == m.wire_to_wire.tolist()


def test_ws_permessage_deflate_frames_are_counted_not_inflated(tmp_path):
    stream = WS_101_DEFLATE + ws_frame(1, b"\x8a\x01compressed", rsv=4) + ws_frame(1, b"\x02\x00", rsv=4)
    m = ws_match(tmp_path, ws_connection(stream, [], 10**18)[0])
    assert m.md_trace.tolist() == [1, 2] and not m.warnings


@pytest.mark.parametrize("bad,why", [
    (ws_frame(3, b"x"), "reserved opcode 3"),
    (ws_frame(1, b"x", rsv=4), "reserved bits RSV1-3 = 100, no extension agreed"),
    (ws_frame(1, b"x", rsv=2), "reserved bits RSV1-3 = 010"),
    (ws_frame(1, b"abcd", mask=b"\x01\x02\x03\x04"), "a masked frame from the server"),
    (ws_frame(9, b"p" * 126), "control frame (opcode 9) fragmented or longer than 125 bytes (126)"),
    (ws_frame(9, b"p", fin=False), "control frame (opcode 9) fragmented"),
    (ws_frame(0, b"x"), "continuation frame outside a message"),
    (ws_frame(1, b"a", fin=False) + ws_frame(1, b"b"), "a new message inside a fragmented one"),
    (struct.pack(">BBQ", 0x81, 127, 1 << 63), f"payload length {1 << 63} beyond"),
    (struct.pack(">BBQ", 0x81, 127, (1 << 30) + 1), f"payload length {(1 << 30) + 1} beyond"),
    (b"garbage in the stream", "reserved opcode 7"),  # 'g': RSV2 and RSV3 set, opcode 7
])  # fmt: skip
def test_ws_a_frame_the_client_would_refuse_stops_the_numbering_with_one_line(tmp_path, bad, why):
    stream = WS_101 + ws_text(1) + ws_text(2) + bad + ws_text(3) + ws_text(4)
    packets, _ = ws_connection(stream, [len(WS_101) + 10], 10**18)
    m = ws_match(tmp_path, packets)
    began = why.startswith("a new message")  # its first fragment began text message 3
    assert m.md_trace.tolist() == [1, 2, 3] if began else [1, 2]  # what came before, nothing after
    assert m.counters["ws_frames_malformed"] == 1 and m.counters["ws_connections_stopped"] == 1
    assert m.counters.get("ws_bytes_unframed", 0) > 0
    (line,) = [w for w in m.warnings if w.startswith("WebSocket ")]
    assert why in line and "10.0.0.9:40102 -> 10.0.0.2:7000" in line and "not numbered" in line, line
    assert "\n" not in line


def test_ws_gap_never_filled_refused_handshake_and_midway_join_are_counted(tmp_path):
    stream = WS_101 + b"".join(ws_text(i) for i in range(1, 6))
    n = len(ws_text(1))
    packets, _ = ws_connection(stream, [len(WS_101) + 30, len(WS_101) + n + 9, len(WS_101) + n + 40], 10**18)
    del packets[3]  # the segment with the rest of message 2 (its header came before) never arrives
    m = ws_match(tmp_path, packets)
    assert m.md_trace.tolist() == [1, 2]  # message 2 began before the hole
    assert m.counters["ws_gaps_never_filled"] == 1 and m.counters["tcp_segments_after_gap"] == 1
    assert any("was never filled" in w for w in m.warnings)

    refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + ws_text(1)
    m = ws_match(tmp_path, ws_connection(refused, [], 10**18)[0])
    assert m.md_trace.size == 0 and m.counters["ws_handshakes_refused"] == 1
    assert any("HTTP/1.1 400 Bad Request" in w and "not 101" in w for w in m.warnings)

    midway, _ = ws_connection(ws_text(7) + ws_text(8), [], 10**18)
    m = ws_match(tmp_path, midway[1:])  # no SYN-ACK, no 101: the count before it is unknown
    assert m.md_trace.size == 0 and m.counters["ws_connections_joined_midway"] == 1
    # the SYN-ACK missed but the 101 is there: counted from the first byte all the same
    late, _ = ws_connection(WS_101 + ws_text(1), [], 10**18)
    assert ws_match(tmp_path, late[1:]).md_trace.tolist() == [1]


def test_ws_numbering_continues_across_connections_in_the_order_they_started(tmp_path):
    """A handler that reconnects numbers on: connection B's first message follows A's last. An
    overlap (B sends while A is open) keeps that order and says so; a connection whose count is
    unknown (joined midway) leaves every later connection unnumbered."""
    t0 = 10**18
    a, _ = ws_connection(WS_101 + ws_text(1) + ws_text(2) + ws_frame(8, b""), [], t0, client_port=7000)
    a.append((t0 + 5000, ws_segment(5001 + len(WS_101) + 2 * len(ws_text(1)) + 2, b"", 0x11, 7000)))  # FIN
    b, _ = ws_connection(WS_101 + ws_text(3) + ws_text(4) + ws_text(5), [len(WS_101)], t0 + 10_000, 7001)
    m = ws_match(tmp_path, a + b)
    assert m.md_trace.tolist() == [1, 2, 3, 4, 5] and m.md_ts.tolist()[2:] == [t0 + 12_000] * 3
    assert m.counters["ws_connections"] == 2 and not m.warnings

    # B starts (and sends) before A's last message: A's two messages still come first
    a2, _ = ws_connection(WS_101 + ws_text(1) + ws_text(2), [len(WS_101) + len(ws_text(1))], t0, 7000)
    b2, _ = ws_connection(WS_101 + ws_text(3), [], t0 + 500, 7001)
    m = ws_match(tmp_path, sorted(a2 + b2, key=lambda p: p[0]))
    assert m.md_trace.tolist() == [1, 2, 3] and m.md_ts.tolist() == [t0 + 1000, t0 + 2000, t0 + 1500]
    assert m.counters["ws_connections_overlapping"] == 1
    assert any("numbered after all of the earlier connection's messages" in w for w in m.warnings)

    # the live view gets them as they become known: B's only once A has ended
    matcher = WireMatcher(set(), {FIX_PORT}, ws_ports={WS_PORT})
    found = []
    for pkt in a + b:
        step = matcher.feed(read_capture_bytes(tmp_path, [pkt]))
        found += step.md_trace.tolist()
    assert found == [1, 2, 3, 4, 5]

    midway, _ = ws_connection(ws_text(9), [], t0, 7000)
    m = ws_match(tmp_path, midway[1:] + b)
    assert m.md_trace.size == 0 and m.counters["ws_messages_not_numbered"] == 3
    assert any("and those of the 1 connection(s) after it are not numbered" in w for w in m.warnings)


def read_capture_bytes(tmp_path, packets):
    path = tmp_path / "piece.pcap"
    path.write_bytes(S.pcap(packets))
    return read_capture(path)


def _tshark_streams(pcap, port_filter: str) -> dict[int, bytes]:
    """Each TCP stream matching ``port_filter`` reassembled by tshark's fields alone (sequence
    numbers, payloads), keyed by stream index: a reference apart from tickscope's own reader."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"{port_filter} && tcp.len > 0", "-T", "fields",
                          "-e", "tcp.stream", "-e", "tcp.seq_raw", "-e", "tcp.payload"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    segments: dict[int, dict[int, bytes]] = {}
    for line in out.splitlines():
        stream, seq, payload = line.split("\t")
        segments.setdefault(int(stream), {})[int(seq)] = bytes.fromhex(payload)
    streams = {}
    for key, segs in segments.items():
        data, at = bytearray(), min(segs)
        for seq in sorted(segs):
            if seq <= at < seq + len(segs[seq]):  # retransmitted bytes taken once
                data += segs[seq][at - seq :]
                at = seq + len(segs[seq])
        streams[key] = bytes(data)
    return streams


@needs_tcpdump
@needs_tool("tshark", install="apt-get install tshark")
def test_profile_capture_with_a_websocket_feed_numbers_text_messages_as_the_trader_does(tmp_path):
    """``--feed ws``: trace n is the trader's n-th text message; on the wire, the n-th text message of
    the venue's stream. Checked against a reference: tshark's segments framed by the websockets
    library (the one the trader uses), every order's trace must be a depthUpdate of the order's
    symbol; and every traced message's kernel stamp is at or after the capture's stamp of its first
    byte (a number one too high would pair a message with a later segment's stamp)."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    out = tmp_path / "s"
    r = run_cli("profile", "--capture", "--feed", "ws", "--duration", "4s", "--rate", "5k", *QUIET, "-o", str(out), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    cap = meta["capture"]
    c = cap["counters"]
    assert cap["snaplen"] == 262144 and cap["end_marker"] is True
    assert c["orders_new"] > 0 and c["orders_matched"] >= 0.999 * c["orders_new"]
    assert c["orders_unmatched"] == 0 and cap["md_traced_not_on_wire"] == 0, cap
    assert cap["orders_traced_not_on_wire"] == 0, cap
    assert c["ws_connections"] == c["ws_connections_upgraded"] == 1 and c["packets_other"] == 0, c
    assert not {"ws_frames_malformed", "ws_connections_stopped", "packets_cut_by_snaplen"} & c.keys(), c
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wire_to_wire"]["count"] == c["orders_matched"]
    ws = meta["subject_stats"]["trader"]["ws"]
    assert summary["md.rx-wire.md"]["count"] == ws["events"] + ws["malformed"]  # none negative (dropped)
    assert "wire_to_wire" in r.stdout and f"matched {c['orders_matched']}" in r.stdout

    pcap = out / "wire.pcap"
    (venue,) = _tshark_streams(pcap, f"tcp.srcport == {cap['ws_port']}").values()
    reader = StreamReader()
    reader.feed_data(venue[venue.index(b"\r\n\r\n") + 4 :])
    reader.feed_eof()
    texts = []
    while True:  # to the end of the data: EOFError
        parse = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parse)
        except StopIteration as done:
            if done.value.opcode is Opcode.TEXT:
                texts.append(json.loads(done.value.data))
        except EOFError:
            break  # the end (or the capture ended inside a frame)
    assert len(texts) == c["ws_text_messages"]
    # Both venues' order ports: the market maker's bid and ask go to the first, its hedges to the second.
    ports = f"(tcp.dstport == {cap['order_port']} || tcp.dstport == {cap['hedge_order_port']})"
    fix = b"".join(_tshark_streams(pcap, ports).values())
    orders = [dict(f.split(b"=", 1) for f in frame.split(b"\x01") if b"=" in f)
              for frame in fix.split(b"8=FIX")[1:]]  # fmt: skip
    new = [
        (int(o[b"11"][2:].split(b"-")[0].split(b".")[0]), o[b"55"].decode())
        for o in orders
        if o.get(b"35") == b"D"
    ]
    assert len(new) == c["orders_new"]
    for trace, symbol in new:
        assert texts[trace - 1].get("e") == "depthUpdate" and texts[trace - 1]["s"] == symbol, (trace, symbol)

    w = run_cli("wire", str(pcap), "--md", f"tcp:{cap['ws_port']}:ws", "--orders", f"tcp:{cap['order_port']}:fix",
                "--orders", f"tcp:{cap['hedge_order_port']}:fix", "-o", str(tmp_path / "w"))  # fmt: skip
    assert w.returncode == 0, w.stderr
    again = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert again["wire_to_wire"] == summary["wire_to_wire"]


def test_a_wire_to_wire_beyond_the_histogram_range_is_counted_and_named(tmp_path):
    """An order answered 120 s after its tick: no histogram holds it (~68.7 s at most), so it is
    set aside under its own count in meta.json and the printed line, never skipped in silence."""
    a, b, c = order(b"TS1-1"), order(b"TS2-2"), order(b"TS3-3")
    packets = [(1_000, md_frame(1, 3)), (2_000, tcp_frame(100, b"", 0x02)), (6_000, tcp_frame(101, a)),
               (9_000, tcp_frame(101 + len(a), b)),
               (120 * 10**9, tcp_frame(101 + len(a) + len(b), c))]  # fmt: skip
    cap = tmp_path / "slow.pcap"
    cap.write_bytes(S.pcap(packets))
    out = tmp_path / "slow.session"
    r = run_cli("wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(out))
    assert r.returncode == 0, r.stderr
    counters = json.loads((out / "meta.json").read_text())["counters"]
    assert counters["orders_matched"] == 3 and counters["wire_to_wire_beyond_range"] == 1
    assert counters["wire_to_wire_recorded"] == 2
    assert json.loads((out / "summary.json").read_text())["wire_to_wire"]["count"] == 2
    line = "wire_to_wire: 3 matched orders = 2 recorded + 1 set aside (beyond the histogram range 1)"
    assert line in r.stdout
    assert line in run_cli("report", str(out)).stdout


# -- memory does not grow with the time a capture spans ------------------------------------------------
def _orders_one_second_apart(n: int) -> bytes:
    """n market-data messages and n orders for them, one pair per second: n intervals spanned."""
    t0, seq, packets = 1_700_000_000_000_000_000, 100, [(0, tcp_frame(99, b"", 0x02))]
    for i in range(n):
        o = order(b"TS%d-%d" % (i + 1, i))
        packets += [(t0 + i * 10**9, md_frame(i + 1)), (t0 + i * 10**9 + 5_000, tcp_frame(seq, o))]
        seq += len(o)
    packets[0] = (t0 - 1, packets[0][1])
    return S.pcap(packets)


# The peak address space of a process, read at its end: how much a run held, whatever it ran on
# (numba maps ~200 MB for LLVM, ~85 MB more where scipy is installed: numba then loads its BLAS).
_AT_EXIT = """
import atexit, re, sys
atexit.register(lambda: print("VmPeak", re.search(r"VmPeak:\\s+(\\d+)", open("/proc/self/status").read())[1],
                              file=sys.stderr))
"""
GROWTH_BOUND_KB = 128 << 10  # 3,000 intervals of ~220 KB histograms alive at once would be 660 MB more


def _peak_kb(args: list[str], tmp_path) -> tuple[int, subprocess.CompletedProcess]:
    """Runs ``python args`` with its peak address space printed at exit; (peak in KB, the run)."""
    code = _AT_EXIT + (f"import runpy; sys.argv = {args[1:]!r}; runpy.run_module({args[1]!r}, run_name='__main__')"
                       if args[0] == "-m" else args[1])  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    peak = re.search(r"^VmPeak (\d+)$", r.stderr, re.M)
    assert peak, r.stderr[-2000:]
    return int(peak[1]), r


def test_wire_memory_does_not_grow_with_the_time_the_capture_spans(tmp_path):
    """3,000 orders one second apart are 3,000 intervals: the run's peak address space is that of 30
    intervals, so no per-interval histogram outlives its interval."""
    peaks = {}
    for n in (30, 3_000):
        cap = tmp_path / f"spread{n}.pcap"
        cap.write_bytes(_orders_one_second_apart(n))
        peaks[n], r = _peak_kb(["-m", "tickscope.main", "wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders",
                                f"tcp:{FIX_PORT}", "-o", str(tmp_path / f"s{n}")], tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{n} matched, 0 unmatched" in r.stdout
        hlog = (tmp_path / f"s{n}" / "latency.hlog").read_text().splitlines()
        assert sum(1 for line in hlog if "wire_to_wire" in line) == n
    assert peaks[3_000] - peaks[30] < GROWTH_BOUND_KB, peaks


def test_profile_capture_final_join_memory_does_not_grow_with_the_time_spanned(tmp_path):
    """``profile --capture``'s final join (``wire_tag_intervals`` into ``SessionWriter.add_tags``)
    writes 3,000 one-second intervals of wire tags with the peak address space of 30."""
    script = f"""
import re
import numpy as np
from tickscope.collectors.rings.collector import IntervalGrid
from tickscope.collectors.rings.realtime import RealtimeOffset
from tickscope.collectors.side.capture import wire_tag_intervals
from tickscope.collectors.session import SessionWriter
for n in (30, 3000):
    w = SessionWriter({str(tmp_path)!r} + f"/s{{n}}", {{"start_epoch_s": 0}})
    w.write_summary({{}}, [])
    stamps = np.arange(n, dtype=np.int64) * 10**9 + 7
    values = {{"wire_to_wire": (stamps, np.full(n, 5_000)), "md.rx-wire.md": (stamps, np.full(n, 900))}}
    w.add_tags(wire_tag_intervals(values, IntervalGrid(0, 10**9, 0, RealtimeOffset(0, 0, 0)), {{}}))
    w.close()
    print("after", n, re.search(r"VmPeak:\\s+(\\d+)", open("/proc/self/status").read())[1])
"""
    _, r = _peak_kb(["-c", script], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    after = dict(map(int, line.split()[1:]) for line in r.stdout.splitlines() if line.startswith("after"))
    assert after[3000] - after[30] < GROWTH_BOUND_KB, after
    hlog = (tmp_path / "s3000" / "latency.hlog").read_text().splitlines()
    assert sum(1 for line in hlog if "wire_to_wire" in line) == 3_000
    summary = json.loads((tmp_path / "s3000" / "summary.json").read_text())
    assert summary["wire_to_wire"]["count"] == 3_000 and summary["md.rx-wire.md"]["count"] == 3_000


def test_interval_histograms_hold_one_interval_at_a_time():
    """The generator yields interval by interval in time order: what it made for earlier intervals
    is the caller's to keep or drop."""
    import gc
    import weakref

    import numpy as np

    from tickscope.collectors.wire import interval_histograms

    stamps = np.array([5, 3 * 10**9, 10**9 + 1, 7 * 10**9, 3 * 10**9 + 2], dtype=np.int64)
    gen = interval_histograms({"t": (stamps, np.arange(1, 6) * 100)}, 0, 10**9)
    alive, seen = [], []
    for start_s, _, hists in gen:
        seen.append((start_s, hists["t"].total_count))
        alive.append(weakref.ref(hists["t"]))
        del hists
        gc.collect()
        assert sum(ref() is not None for ref in alive) <= 1  # none but the one just yielded
    assert seen == [(0.0, 1), (1.0, 1), (3.0, 2), (7.0, 1)]


# -- framing exactly as a receiver, and counting what it refuses ----------------------------------------
def _syn() -> tuple[int, bytes]:
    return (2, tcp_frame(99, b"", 0x02))


def test_a_coalesced_retransmission_starting_at_a_pending_segment_is_not_lost(tmp_path):
    """o1 is lost at first; o2 arrives (waits for o1); o2 and o3 are then retransmitted as one
    segment from o2's sequence number (o3 never came alone): every order is read, each stamped at
    its first byte's first capture."""
    o1, o2, o3 = (order(b"TS%d-%d" % (t, t)) for t in (1, 2, 3))
    packets = [(1, md_frame(1, 3)), _syn(),
               (10, tcp_frame(100 + len(o1), o2)),
               (20, tcp_frame(100 + len(o1), o2 + o3)),  # coalesced retransmission, same start
               (30, tcp_frame(100, o1))]  # fmt: skip
    m = run_match(tmp_path, S.pcap(packets))
    assert dict(zip(m.trace.tolist(), m.wire_order.tolist(), strict=True)) == {1: 30, 2: 10, 3: 20}
    assert m.counters["tcp_segments_partly_retransmitted"] == 1 and "tcp_segments_after_gap" not in m.counters


def test_a_syn_seen_again_after_data_does_not_rewind_the_stream(tmp_path):
    o1, o2, o3 = (order(b"TS%d-%d" % (t, t)) for t in (1, 2, 3))
    packets = [(1, md_frame(1, 3)), _syn(), (10, tcp_frame(100, o1)),
               (11, tcp_frame(99, b"", 0x02)),  # a late copy of the SYN (same ISN)
               (20, tcp_frame(100 + len(o1), o2)),
               (30, tcp_frame(5000, b"", 0x02)),  # the same ports opened again: a new connection
               (40, tcp_frame(5001, o3))]  # fmt: skip
    m = run_match(tmp_path, S.pcap(packets))
    assert m.trace.tolist() == [1, 2, 3]
    c = m.counters
    assert c["tcp_syn_repeated"] == 1 and c["tcp_connections_reopened"] == 1 and c["order_streams"] == 2


def _fix_stream_orders(stream: bytes, cuts: list[int]) -> list[bytes]:
    """The NewOrderSingles the venue's own parser takes from ``stream`` received in pieces."""
    fs, got = F.FixStream(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += [x.raw for x in fs.feed(stream[a:b]) if isinstance(x, F.FixMessage) and x.msg_type == b"D"]
    return got


def test_a_header_declaring_a_huge_body_length_costs_one_frame_not_the_connection(tmp_path):
    """``9=999999999999`` before 2,000 good orders: the venue's FixStream resyncs at the next CheckSum
    field, and so does the wire side, frame for frame."""
    bad = order(b"TS1-0").replace(b"\x019=", b"\x019=999999999999", 1)
    orders = [order(b"TS%d-%d" % (t, t)) for t in range(2, 2_002)]
    stream = bad + b"".join(orders)
    packets, seq = [(1, md_frame(1, 2_001)), _syn()], 100
    cuts = []
    for i in range(0, len(stream), 1_000):
        packets.append((10 + i, tcp_frame(seq + i, stream[i : i + 1_000])))
        cuts.append(i)
    m = run_match(tmp_path, S.pcap(packets))
    assert m.trace.tolist() == list(range(2, 2_002)) and m.counters["fix_frames_malformed"] == 1
    assert _fix_stream_orders(stream, cuts[1:]) == orders  # the venue's own parser reads the same


def test_a_frame_with_a_wrong_checksum_is_refused_not_an_order(tmp_path):
    good = order(b"TS2-2")
    wrong = order(b"TS1-1")
    wrong = wrong[:-4] + b"%03d\x01" % ((int(wrong[-4:-1]) + 1) % 256)
    with pytest.raises(F.FixError, match="CheckSum"):
        F.parse(wrong)  # no acceptor takes it
    cap = tmp_path / "c.pcap"
    cap.write_bytes(S.pcap([(1, md_frame(1, 2)), _syn(), (10, tcp_frame(100, wrong + good))]))
    r = run_cli(
        "wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(tmp_path / "s")
    )
    assert r.returncode == 0, r.stderr
    assert "1 new orders, 1 matched" in r.stdout and "1 FIX frames with a wrong CheckSum" in r.stdout
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["counters"]["fix_frames_bad_checksum"] == 1 and meta["counters"]["orders_new"] == 1


def test_a_mold_packet_whose_lengths_do_not_add_up_is_dropped_whole_as_the_trader_does(tmp_path):
    good = mold(10, 2)
    extra = good + b"\x00"  # a byte after the last message
    overrun = bytearray(mold(20, 2))
    overrun[20:22] = (len(overrun)).to_bytes(2, "big")  # the first message runs past the packet
    short = bytearray(mold(30, 3))
    short[18:20] = (2).to_bytes(2, "big")  # header says 2, the packet holds 3
    bad = [bytes(extra), bytes(overrun), bytes(short)]
    for packet in [good, *bad]:  # the trader's receiver: all of a packet or none of it
        rx = itch.MoldReceiver()
        assert len(list(rx.packet(packet, len(packet)))) == (2 if packet is good else 0)
    m = run_match(tmp_path, S.pcap([(i, md_frame_raw(p)) for i, p in enumerate([good, *bad])]))
    assert m.md_trace.tolist() == [10, 11] and m.counters["md_packets_malformed"] == 3


def test_ip_fragments_are_reassembled_and_ipv6_extension_headers_walked(tmp_path):
    """IPv4 and IPv6 market data in fragments (some out of order), an order after IPv6 hop-by-hop,
    routing and destination options headers: all read, each datagram stamped at its first byte."""
    md4 = S.udp(5000, MD_PORT, mold(10, 30))
    md6 = S.udp(5000, MD_PORT, mold(100, 30))
    frags4 = S.ipv4_fragments("10.0.0.1", "10.0.0.2", 17, md4, 256)
    frags6 = S.ipv6_fragments(17, md6, 512, before=(0,))
    o1, o2 = order(b"TS12-1"), order(b"TS105-2")
    packets = [(100 + i, S.ethernet(f)) for i, f in enumerate(frags4)]
    packets += [(200 + i, S.ethernet(f, 0x86DD)) for i, f in enumerate(reversed(frags6))]
    packets += [(1_000, S.ethernet(S.ipv6(6, S.tcp(6000, FIX_PORT, 1, o1), (0, 43, 60)), 0x86DD)),
                (2_000, S.ethernet(S.ipv6(6, S.tcp(6000, FIX_PORT, 1 + len(o1), o2), (60,)), 0x86DD))]  # fmt: skip
    assert len(frags4) == 3 and len(frags6) == 2
    m = run_match(tmp_path, S.pcap(packets))
    assert m.md_trace.tolist() == [*range(10, 40), *range(100, 130)]
    assert dict(zip(m.trace.tolist(), m.wire_to_wire.tolist(), strict=True)) == {12: 900, 105: 2_000 - 201}
    assert m.counters["ip_datagrams_reassembled"] == 2 and m.counters["packets_ip_fragments"] == 5


def test_ip_fragments_never_completed_are_given_up_within_bounds_and_counted(tmp_path, monkeypatch):
    md = S.udp(5000, MD_PORT, mold(10, 30))
    lost_middle = S.ipv4_fragments("10.0.0.1", "10.0.0.2", 17, md, 256, ident=1)
    del lost_middle[1]
    packets = [(100 + i, S.ethernet(f)) for i, f in enumerate(lost_middle)]
    packets.append((200, md_frame(50)))
    m = run_match(tmp_path, S.pcap(packets))
    assert m.md_trace.tolist() == [50] and m.counters["ip_datagrams_incomplete"] == 1
    (line,) = [w for w in m.warnings if "fragmented IP datagram" in w]
    assert "1 fragmented IP datagram(s) never completed (datagrams unfinished 1)" in line
    # 30 s after its first fragment a datagram is given up (Linux ipfrag_time)
    late = [(10**9, S.ethernet(lost_middle[0])), (40 * 10**9, S.ethernet(lost_middle[-1]))]
    assert run_match(tmp_path, S.pcap(late)).counters["ip_datagrams_timed_out"] == 1
    # memory: datagrams that never complete are given up oldest first once the bound is passed
    from tickscope.collectors.wire import IpReassembly

    monkeypatch.setattr(IpReassembly, "MAX_BYTES", 20_000)
    first_fragments = [(i, S.ethernet(S.ipv4_fragments("10.0.0.1", "10.0.0.2", 17, md, 256, ident=i)[0]))
                       for i in range(1, 2_001)]  # fmt: skip
    matcher = WireMatcher({MD_PORT}, {FIX_PORT})
    path = tmp_path / "many.pcap"
    path.write_bytes(S.pcap(first_fragments))
    for cap in read_chunks(path, 4096):
        matcher.feed(cap)
        assert matcher.fragments.bytes <= IpReassembly.MAX_BYTES
        assert len(matcher.fragments.datagrams) <= 20_000 // (256 + IpReassembly.PIECE_OVERHEAD)
    assert matcher.finish().counters["ip_datagrams_incomplete"] == 2_000


# -- a FIFO, a pipe, and the capture's identity --------------------------------------------------------
def test_wire_reads_a_fifo_once_and_the_identity_of_a_file_is_unchanged(tmp_path):
    import hashlib
    import os

    data = S.pcap([(10, md_frame(11)), _syn(), (20, tcp_frame(100, order(b"TS11-1")))])
    cap = tmp_path / "c.pcap"
    cap.write_bytes(data)
    r = run_cli(
        "wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(tmp_path / "f")
    )
    assert r.returncode == 0, r.stderr
    want = {"file": "c.pcap", "bytes": len(data),
            "sha256_head": hashlib.sha256(data[: 1 << 20] + len(data).to_bytes(8, "little")).hexdigest()}  # fmt: skip
    assert (
        json.loads((tmp_path / "f" / "meta.json").read_text())["capture"] == want
    )  # as sessions made before
    fifo = tmp_path / "c.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    try:
        r = run_cli("wire", str(fifo), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o",
                    str(tmp_path / "p"), timeout=60)  # fmt: skip
    finally:
        if writer.is_alive():  # the CLI never opened it: let the writer go
            with open(fifo, "rb") as f:
                f.read()
        writer.join()
    assert r.returncode == 0 and "1 matched" in r.stdout, r.stderr
    got = json.loads((tmp_path / "p" / "meta.json").read_text())["capture"]
    assert got == {**want, "file": "c.fifo"}


def test_two_captures_piped_through_stdin_are_two_sources_for_merge(tmp_path):
    sessions = []
    for i, first in enumerate((11, 12)):
        data = S.pcap([(10, md_frame(first)), _syn(), (20, tcp_frame(100, order(b"TS%d-1" % first)))])
        out = tmp_path / f"s{i}"
        r = subprocess.run([*CLI, "wire", "/dev/stdin", "--md", f"udp:{MD_PORT}",
                            "--orders", f"tcp:{FIX_PORT}", "-o", str(out)], input=data, capture_output=True,
                           timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        capture = json.loads((out / "meta.json").read_text())["capture"]
        assert capture["bytes"] == len(data)
        sessions.append(capture["sha256_head"])
    assert sessions[0] != sessions[1]
    r = run_cli("merge", str(tmp_path / "merged"), str(tmp_path / "s0"), str(tmp_path / "s1"))
    assert r.returncode == 0, r.stderr


# -- bad values: a line or a counter, never a traceback ------------------------------------------------
def test_a_clordid_trace_id_of_2_63_or_more_is_matched_or_counted_never_a_traceback(tmp_path):
    big = 2**63 + 5
    mold_big = itch.mold_packet(SESSION, big, [itch.order_delete(1, 0, 0, 1)])
    cap = tmp_path / "c.pcap"
    o1, o2 = order(b"TS%d-1" % big), order(b"TS%d-2" % 2**64)
    cap.write_bytes(S.pcap([(10, md_frame_raw(mold_big)), _syn(), (20, tcp_frame(100, o1 + o2))]))
    r = run_cli(
        "wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(tmp_path / "s")
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "2 new orders, 1 matched" in r.stdout and "1 orders with a trace id of 2**64 or more" in r.stdout


def _pcapng_with(resol: int, offset_s: int | None = None, ticks: int = 1_000) -> bytes:
    opts = struct.pack("<HHB3x", 9, 1, resol)
    if offset_s is not None:
        opts += struct.pack("<HHq", 14, 8, offset_s)
    out = [S.block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           S.block(1, struct.pack("<HHI", 1, 0, 262144) + opts + struct.pack("<HH", 0, 0))]  # fmt: skip
    for t, frame in ((ticks, md_frame(1)), (ticks + 5, tcp_frame(1, order(b"TS1-1")))):
        out.append(
            S.block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame)) + frame)
        )
    return b"".join(out)


@pytest.mark.parametrize("resol,offset_s,ticks,usable", [
    (40, None, 1_000, True),  # 10**-40 s ticks: every stamp is 0 ns, exactly
    (0x80, None, 2**62, False),  # 2**-0 s ticks: 2**62 s is past 2116
    (9, 2**62, 1_000, False),  # if_tsoffset of 2**62 s
    (9, -(2**62), 1_000, False),
    (0, None, 2**63, False),  # whole seconds: 2**63 s
])  # fmt: skip
def test_pcapng_stamps_out_of_range_are_counted_never_a_traceback(tmp_path, resol, offset_s, ticks, usable):
    cap = tmp_path / "c.pcapng"
    cap.write_bytes(_pcapng_with(resol, offset_s, ticks))
    r = run_cli(
        "wire", str(cap), "--md", f"udp:{MD_PORT}", "--orders", f"tcp:{FIX_PORT}", "-o", str(tmp_path / "s")
    )
    assert "Traceback" not in r.stderr, r.stderr
    if usable:
        assert r.returncode == 0 and "1 matched" in r.stdout, r.stderr
    else:
        (line,) = r.stderr.splitlines()  # no packet left to read: one line saying why
        assert r.returncode == 2 and "no packets read" in line and f"if_tsresol {resol}" in line, r.stderr
        m = match(read_capture(cap), {MD_PORT}, {FIX_PORT})
        assert m.counters["capture_packets_bad_stamp"] == 2 and m.packets == 0


def test_a_port_that_is_not_ascii_digits_is_one_line(tmp_path):
    cap = tmp_path / "c.pcap"
    cap.write_bytes(S.pcap([(1, md_frame(1))]))
    for md in ("udp:²", "udp:" + "1" * 5000, "udp:٣"):
        r = run_cli("wire", str(cap), "--md", md, "--orders", "tcp:2")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "PORT 1-65535" in r.stderr, r.stderr
