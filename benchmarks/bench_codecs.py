"""Hot-path codecs, per message, ours against the reference in the same run:

    python benchmarks/bench_codecs.py [--quick]

- ITCH 5.0: MoldUDP64 framing + dispatch + decode per message (target <= 1 us), against the
  floor of one ``struct.unpack_from`` per message (no framing, no dispatch).
- FIX 4.4 NewOrderSingle encode (target <= 2 us): our pre-built template against simplefix.
- FIX parse with BodyLength and CheckSum verified (target <= 10 us) against simplefix's parser,
  which checks neither.
- WebSocket depthUpdate: JSON decode with every field checked and the levels parsed (what the
  trader does per event), against bare json.loads.

Each figure is the best of 5 timed loops (ns per message). Prints a table, then one JSON line.
"""

import json
import struct
import sys
import time

import simplefix
from rich.console import Console
from rich.table import Table

from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.binance import DepthPublisher, decode_event, depth_update
from tickscope.pipeline.venue import SESSION, SyntheticFlow

QUICK = "--quick" in sys.argv
REPEATS = 5


def best_ns_per(fn, n: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter_ns()
        fn()
        best = min(best, time.perf_counter_ns() - t)
    return best / n


def itch_bench() -> dict:
    flow = SyntheticFlow(["AAPL", "MSFT", "NVDA", "AMZN"], seed=1)
    packets, n_msgs, seq = [], 0, 1
    for i in range(2_000 if QUICK else 20_000):
        msgs = [flow.next_message(i) for _ in range(4)]
        packets.append(itch.mold_packet(SESSION, seq, msgs))
        seq += len(msgs)
        n_msgs += len(msgs)
    bufs = [bytearray(p) for p in packets]

    def ours():
        rx = itch.MoldReceiver()
        decode = rx.decode
        for buf in bufs:
            for s, off, length in rx.packet(buf, len(buf)):
                decode(buf, off, length, s)

    header = struct.Struct(">cHH6sQ")  # the common prefix of the order messages

    def floor():
        unpack = header.unpack_from
        for buf in bufs:
            off = 20
            end = len(buf)
            while off < end:
                length = (buf[off] << 8) | buf[off + 1]
                unpack(buf, off + 2)
                off += 2 + length

    return {"itch_decode_ns": best_ns_per(ours, n_msgs), "itch_floor_unpack_ns": best_ns_per(floor, n_msgs)}


def fix_bench() -> dict:
    n = 5_000 if QUICK else 50_000
    tpl = F.OrderTemplate("TICKSCOPE", "VENUE")
    now = F.utc_timestamp()

    def ours_encode():
        enc = tpl.encode
        for i in range(n):
            enc(i, b"O%d" % i, b"AAPL", b"1", 100, b"101.2300", now)

    def simplefix_encode():
        for i in range(n):
            m = simplefix.FixMessage()
            m.append_pair(8, "FIX.4.4")
            m.append_pair(35, "D")
            m.append_pair(49, "TICKSCOPE")
            m.append_pair(56, "VENUE")
            m.append_pair(34, i)
            m.append_pair(52, now)
            m.append_pair(11, b"O%d" % i)
            m.append_pair(21, 1)
            m.append_pair(55, "AAPL")
            m.append_pair(54, 1)
            m.append_pair(60, now)
            m.append_pair(38, 100)
            m.append_pair(40, 2)
            m.append_pair(44, "101.2300")
            m.append_pair(59, 3)
            m.encode()

    raws = [tpl.encode(i, b"O%d" % i, b"AAPL", b"1", 100, b"101.2300", now) for i in range(n)]

    def ours_parse():
        parse = F.parse
        for raw in raws:
            parse(raw)

    def simplefix_parse():
        p = simplefix.FixParser()
        for raw in raws:
            p.append_buffer(raw)
            p.get_message()

    return {"fix_encode_ns": best_ns_per(ours_encode, n), "simplefix_encode_ns": best_ns_per(simplefix_encode, n),
            "fix_parse_ns": best_ns_per(ours_parse, n), "simplefix_parse_ns": best_ns_per(simplefix_parse, n)}  # fmt: skip


def ws_bench() -> dict:
    flow = SyntheticFlow(["AAPL", "MSFT", "NVDA", "AMZN"], seed=1)
    pub = DepthPublisher(flow.books)
    texts = []
    for i in range(2_000 if QUICK else 20_000):
        msg = flow.next_message(i)
        pub.touched(int.from_bytes(msg[1:3], "big"))
        texts += [t.encode() for stream, t in pub.events(i) if stream.endswith("@depth")]

    def ours():
        for t in texts:
            depth_update(decode_event(t))

    def floor():
        loads = json.loads
        for t in texts:
            loads(t)

    return {
        "ws_depth_decode_ns": best_ns_per(ours, len(texts)),
        "json_loads_ns": best_ns_per(floor, len(texts)),
    }


if __name__ == "__main__":
    r = {**itch_bench(), **fix_bench(), **ws_bench()}
    rows = [
        ("ITCH decode / msg (framing+dispatch)", r["itch_decode_ns"], "struct.unpack_from only", r["itch_floor_unpack_ns"], 1000),
        ("FIX NewOrderSingle encode", r["fix_encode_ns"], "simplefix encode", r["simplefix_encode_ns"], 2000),
        ("FIX parse (+CheckSum, BodyLength)", r["fix_parse_ns"], "simplefix parse (no checks)", r["simplefix_parse_ns"], 10000),
        ("WS depthUpdate decode + levels", r["ws_depth_decode_ns"], "json.loads only", r["json_loads_ns"], None),
    ]  # fmt: skip
    t = Table(title="tickscope codecs (ns per message, best of 5)")
    for col in ("codec", "ours", "reference", "ref ns", "ours/ref", "target"):
        t.add_column(col, justify="left" if col in ("codec", "reference") else "right")
    for name, ours, ref_name, ref, target in rows:
        ok = "" if target is None else ("[green]met[/]" if ours <= target else "[red]missed[/]")
        t.add_row(name, f"{ours:,.0f}", ref_name, f"{ref:,.0f}", f"{ours / ref:.2f}x",
                  f"<= {target:,} {ok}" if target else "-")  # fmt: skip
    Console(width=120).print(t)
    print(json.dumps({k: round(v, 1) for k, v in r.items()}))
