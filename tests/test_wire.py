"""Wire captures: real tcpdump captures of loopback traffic, converted by editcap, and captures built
byte by byte for what loopback cannot show on demand (reordering, other link types, damage)."""

import functools
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import run_cli
from tickscope.collectors import wire_synth as S
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
    read_capture,
)
from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.fix import OrderTemplate

MD_PORT, FIX_PORT = 40100, 40101
SESSION = b"TESTSESS01"
TEMPLATE = OrderTemplate("TRADER", "VENUE")


def mold(seq: int, count: int) -> bytes:
    msgs = [itch.order_delete(1, 0, 0, seq + i) for i in range(count)]
    return itch.mold_packet(SESSION, seq, msgs)


def order(clordid: bytes, seq: int = 1) -> bytes:
    return TEMPLATE.encode(seq, clordid, b"AAPL", b"1", 100, b"10.0000")


def md_frame(seq: int, count: int = 1) -> bytes:
    return S.ethernet(S.ipv4("10.0.0.1", "10.0.0.2", 17, S.udp(5000, MD_PORT, mold(seq, count))))


def tcp_frame(seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    return S.ethernet(S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, seq, payload, flags)))


def run_match(tmp_path, data: bytes, name="c.pcap", mapping=None):
    path = tmp_path / name
    path.write_bytes(data)
    return match(read_capture(path), {MD_PORT}, {FIX_PORT}, mapping)


# -- a real capture ----------------------------------------------------------------------------------
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None or shutil.which("editcap") is None,
                                   reason="tcpdump and editcap (apt-get install tcpdump wireshark-common)")  # fmt: skip


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
    if shutil.which("tcpdump") is None or shutil.which("editcap") is None:
        pytest.skip("tcpdump and editcap (apt-get install tcpdump wireshark-common)")
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


def _same_match(a, b) -> None:
    for name in ("md_trace", "md_ts", "order_trace", "order_ts", "trace", "wire_md", "wire_order"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert (a.counters, a.warnings, a.packets, a.fmt) == (b.counters, b.warnings, b.packets, b.fmt)


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
        _same_match(m, whole)
        assert joined_live == orders, name
    assert split_frames, "FIX frames split over two segments, cut between them by 'every record alone'"
    with pytest.raises(WireError, match="truncated pcap header"):
        _fed_in_pieces(data[:20], [], md_port, fix_port)
    m, _ = _fed_in_pieces(data[:-7], [len(data) // 2], md_port, fix_port)  # tcpdump killed mid-record
    assert m.counters["capture_truncated_records"] == 1 and m.packets == len(bounds) - 1


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
    r = run_cli("wire", str(garbage), "--md", "tcp:1", "--orders", "tcp:2")
    assert r.returncode == 2 and "udp:PORT" in r.stderr
    r = run_cli("wire", str(garbage), "--md", "udp:1", "--orders", "tcp:2", "--clordid-regex", "\\d+")
    assert r.returncode == 2 and "needs one group" in r.stderr


def test_read_capture_refuses_a_short_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"ab")
    with pytest.raises(WireError, match="too short"):
        read_capture(p)


# -- profile --capture ---------------------------------------------------------------------------------
@needs_tcpdump
def test_profile_capture_joins_wire_points_with_the_traces(tmp_path):
    out = tmp_path / "s"
    r = run_cli("profile", "--capture", "--duration", "4s", "--rate", "5k", "--no-live", "--no-perf",
                "--no-hiccup", "-o", str(out), timeout=300)  # fmt: skip
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
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed: apt-get install cargo")
def test_profile_capture_with_the_rust_trader_joins_every_order_to_its_trace(tmp_path):
    """The Rust trader's ClOrdIDs carry the trace id (TS<trace>-<n>) as the Python trader's do."""
    out = tmp_path / "s"
    r = run_cli("profile", "--capture", "--trader", "rust", "--duration", "4s", "--rate", "5k", "--no-live",
                "--no-perf", "--no-hiccup", "-o", str(out), timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    cap, c = meta["capture"], meta["capture"]["counters"]
    assert c["orders_new"] > 0 and c["orders_matched"] == c["orders_new"] == cap["orders_traced"]
    assert cap["orders_traced_not_on_wire"] == 0 and cap["orders_on_wire_without_trace"] == 0
    assert cap["md_traced_not_on_wire"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wire_to_wire"]["count"] == c["orders_matched"]
    residual = (
        summary["wire.order-order.tx"]["count"] + summary.get("order.tx-wire.order", {"count": 0})["count"]
    )
    assert residual == c["orders_matched"]
    # the wire joins what the probes measured: wire-to-wire is tick-to-trade give or take the stack
    assert summary["wire_to_wire"]["p50"] < 10 * summary["tick_to_trade"]["p50"] + 1_000_000
    stats = meta["subject_stats"]["trader"]
    assert stats["oms_unknown_reports"] == 0 and stats["orders_acked"] > 0  # its OMS still finds its orders


@needs_tcpdump
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (apt-get install tmux)")
def test_profile_capture_shows_the_wire_rows_in_the_live_view_during_the_run(tmp_path):
    name = f"ts-wire-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "s"
    cmd = (f"{sys.executable} -m tickscope.main profile --capture --duration 300s --rate 5k --no-perf "
           f"--no-hiccup --out {out}; sleep 60")  # fmt: skip
    tmux = functools.partial(subprocess.run, capture_output=True, text=True)
    tmux(["tmux", "new-session", "-d", "-x", "140", "-y", "50", "-s", name, cmd])
    screen, row = "", None
    try:
        deadline = time.monotonic() + 240  # hang guard: the row appears within seconds
        while row is None and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = tmux(["tmux", "capture-pane", "-p", "-t", name]).stdout
            row = re.search(r"wire_to_wire +([\d,]+) ", screen)
            if row is not None and int(row.group(1).replace(",", "")) == 0:
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
    from tickscope.collectors.capture import WireCapture
    from tickscope.pipeline.launch import free_port

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
    r = run_cli("profile", "--capture", "--duration", "2s", "--rate", "2k", "--no-live", "--no-perf",
                "--no-hiccup", "-o", str(out), timeout=300, env={"PATH": str(tmp_path)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "tcpdump not found: apt-get install tcpdump" in r.stderr
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
    r = run_cli("profile", "--capture", "--capture-iface", iface, "--duration", "2s", "--rate", "2k", "--no-live",
                "--no-perf", "--no-hiccup", "-o", str(out), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "meta.json").read_text())["capture"]["end_marker"] is False
    assert f"{iface} is not loopback, so no end marker" in r.stderr
