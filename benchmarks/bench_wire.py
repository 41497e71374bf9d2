"""Wire capture parse + match against a plain read of the same file by dpkt, in the same run:

    python benchmarks/bench_wire.py [--packets N] [--quick] [--feed itch|ws]

The file: N packets (default 1 M) of Ethernet/IPv4 as the bundled pipeline sends them, 95 %
MoldUDP64 packets of 1-3 ITCH messages to the market-data port, 5 % FIX NewOrderSingles to the
order port (one TCP stream, ClOrdID ``TS<trace>-<n>``, every 10th order split over two segments),
written as a nanosecond pcap (not timed). ``--feed ws``: the market data is instead one WebSocket
connection's venue side (SYN-ACK, HTTP 101, then segments of 1-3 Binance-shaped text frames of about
130 bytes, every 7th message a 16-bit-length frame of 300 bytes), the orders naming text messages.

- tickscope: ``match_file``, the path ``tickscope wire`` takes: the file read in 4 MiB chunks, each
  fed to the matcher (record walk, numpy header decode, Mold expansion, TCP reassembly and FIX
  framing of the order stream), then the join. Target <= 5 s for 1 M packets.
- ``tickscope wire`` run once as a child process on the same file: wall time (start-up and the
  session files included) and its peak RSS (``getrusage(RUSAGE_CHILDREN)``), which stays near one
  chunk plus the per-message state however large the file.
- dpkt: ``dpkt.pcap.Reader`` and ``dpkt.ethernet.Ethernet`` of every packet (the layers decoded,
  nothing matched): the floor a per-packet-object parser starts from.

Each figure is the best of 3 runs (seconds). Prints a table, then one JSON line.
"""

import argparse
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickscope.collectors.wire import match_file
from tickscope.pipeline import itch
from tickscope.pipeline.fix import OrderTemplate

# The capture builders are test support (tests/support/wire_synth.py), not product code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import wire_synth as S  # noqa: E402

MD_PORT, FIX_PORT, WS_PORT = 40000, 40001, 40002
REPEATS = 3


def _ws_text(i: int) -> bytes:
    pad = "0" * (200 if i % 7 == 0 else 30)
    event = f'{{"e":"depthUpdate","E":{i},"s":"AAPL","U":{i},"u":{i},"b":[["101.2300","{pad}"]],"a":[]}}'
    n = len(event)
    return (bytes((0x81, n)) if n < 126 else bytes((0x81, 126)) + n.to_bytes(2, "big")) + event.encode()


def packets(n: int, feed: str = "itch"):
    """Yields n (stamp ns, frame) pairs; returns the orders among them."""
    template = OrderTemplate("TICKSCOPE", "VENUE")
    msg = itch.order_delete(1, 0, 0, 1)
    md_head = S.MAC_DST + S.MAC_SRC + b"\x08\x00"
    made = 0
    seq, orders, tcp_seq, ts = 1, 0, 1000, 1_700_000_000_000_000_000
    yield ts, S.ethernet(S.ipv4("127.0.0.1", "127.0.0.1", 6, S.tcp(5555, FIX_PORT, tcp_seq - 1, b"", 0x02)))
    made += 1
    ws_seq = 5000
    if feed == "ws":
        syn_ack = S.tcp(WS_PORT, 5557, ws_seq, b"", 0x12)
        yield ts, S.ethernet(S.ipv4("127.0.0.1", "127.0.0.1", 6, syn_ack))
        ws_seq += 1
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        yield ts, S.ethernet(S.ipv4("127.0.0.1", "127.0.0.1", 6, S.tcp(WS_PORT, 5557, ws_seq, head)))
        ws_seq += len(head)
        made += 2
    while made < n:
        ts += 50_000
        if made % 20 and feed == "ws":
            count = 1 + made % 3
            payload = b"".join(_ws_text(seq + i) for i in range(count))
            yield ts, S.ethernet(S.ipv4("127.0.0.1", "127.0.0.1", 6, S.tcp(WS_PORT, 5557, ws_seq, payload)))
            made += 1
            ws_seq += len(payload)
            seq += count
            continue
        if made % 20:
            count = 1 + made % 3
            payload = itch.mold_packet(b"SESSION001", seq, [msg] * count)
            yield ts, md_head + S.ipv4("127.0.0.1", "127.0.0.1", 17, S.udp(5556, MD_PORT, payload))
            made += 1
            seq += count
            continue
        frame = template.encode(orders + 2, b"TS%d-%d" % (seq - 1, orders), b"AAPL", b"1", 100, b"10.0000")
        parts = [frame[:40], frame[40:]] if orders % 10 == 0 else [frame]
        whole = len(parts) <= n - made  # the file's last packet may cut an order in two: not counted
        for part in parts[: n - made]:
            yield (
                ts + 5_000,
                S.ethernet(S.ipv4("127.0.0.1", "127.0.0.1", 6, S.tcp(5555, FIX_PORT, tcp_seq, part))),
            )
            made += 1
            tcp_seq += len(part)
        orders += whole
    return orders


def write_capture(path: Path, n: int, feed: str = "itch") -> int:
    """The n packets written as a nanosecond pcap a batch at a time (any size, little memory).
    -> orders wholly in the file."""
    gen = packets(n, feed)
    with open(path, "wb") as f:
        f.write(S.pcap([]))
        while True:
            batch = []
            try:
                for _ in range(10_000):
                    ts, fr = next(gen)
                    batch.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(fr), len(fr)) + fr)
            except StopIteration as done:
                f.write(b"".join(batch))
                return done.value
            f.write(b"".join(batch))


def best_s(fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def dpkt_read(path: Path) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            dpkt.ethernet.Ethernet(buf)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100 k packets")
    ap.add_argument(
        "--feed", choices=["itch", "ws"], default="itch", help="market data: MoldUDP64 or WebSocket"
    )
    args = ap.parse_args()
    n = 100_000 if args.quick else args.packets
    ws = {WS_PORT} if args.feed == "ws" else set()
    with tempfile.TemporaryDirectory(prefix="tickscope-bench-wire-") as tmp:
        path = Path(tmp) / "bench.pcap"
        orders = write_capture(path, n, args.feed)
        ours_s, m = best_s(lambda: match_file(path, {MD_PORT}, {FIX_PORT}, None, ws))
        assert m.counters["orders_matched"] == orders, m.counters
        del m
        md = f"tcp:{WS_PORT}:ws" if ws else f"udp:{MD_PORT}"
        t0 = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "tickscope.main", "wire", str(path), "--md", md, "--orders",
                              f"tcp:{FIX_PORT}", "-o", str(Path(tmp) / "session")], capture_output=True, text=True)  # fmt: skip
        cli_s = time.perf_counter() - t0
        assert cli.returncode == 0 and f"{orders} matched" in cli.stdout, cli.stderr
        cli_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        try:
            dpkt_s, read = best_s(lambda: dpkt_read(path))
            assert read == n
        except ImportError:
            dpkt_s = None
        size_mb = path.stat().st_size / 1e6
    title = (
        f"{n:,} packets ({size_mb:.0f} MB pcap, {args.feed}), {orders:,} orders matched; best of {REPEATS}"
    )
    t = Table(title=title)
    for col in ("", "seconds", "packets/s", "vs dpkt read", "peak RSS"):
        t.add_column(col, justify="right")
    t.add_row("tickscope parse + match", f"{ours_s:.2f}", f"{n / ours_s:,.0f}",
              f"{dpkt_s / ours_s:.1f}x faster" if dpkt_s else "-", "")  # fmt: skip
    t.add_row("tickscope wire (CLI, once)", f"{cli_s:.2f}", f"{n / cli_s:,.0f}", "", f"{cli_rss_mb:.0f} MB")
    t.add_row("dpkt read + Ethernet decode", f"{dpkt_s:.2f}" if dpkt_s else "pip install dpkt",
              f"{n / dpkt_s:,.0f}" if dpkt_s else "-", "1.0x" if dpkt_s else "-", "")  # fmt: skip
    Console().print(t)
    print(json.dumps({"feed": args.feed, "packets": n, "orders": orders, "file_mb": round(size_mb),
                      "tickscope_s": round(ours_s, 3), "cli_s": round(cli_s, 3), "cli_peak_rss_mb": round(cli_rss_mb),
                      "dpkt_read_s": round(dpkt_s, 3) if dpkt_s else None, "target_s": 5.0 * n / 1e6}))  # fmt: skip


if __name__ == "__main__":
    main()
