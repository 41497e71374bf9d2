"""Hot-path codecs, per message, ours against the reference in the same run:

    python benchmarks/bench_codecs.py [--quick]

- ITCH 5.0: MoldUDP64 framing + dispatch + decode per message (target <= 1 us), against the
  floor of one ``struct.unpack_from`` per message (no framing, no dispatch).
- FIX 4.4 NewOrderSingle encode (target <= 2 us): our pre-built template against simplefix.
- FIX parse with BodyLength and CheckSum verified (target <= 10 us) against simplefix's parser,
  which checks neither, and against QuickFIX's Python binding (``Message(str, dd, False)``: parsed
  into its field map, not validated against the dictionary) when ``pip install quickfix`` built;
  bar (issue 13): ours faster than QuickFIX's in the same run. A missing peer is skipped, saying why.
- WebSocket depthUpdate: JSON decode with every field checked and the levels parsed (what the
  trader does per event), against bare json.loads.

Each figure is the best of 5 timed loops (ns per message). Prints a table, then one JSON line.
"""

import json
import struct
import sys
import time

from rich.console import Console
from rich.table import Table

from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.binance import DepthPublisher, decode_event, depth_update
from tickscope.pipeline.venue import SESSION, SyntheticFlow

try:
    import simplefix
except ImportError:
    simplefix = None
try:
    import quickfix
except ImportError:
    quickfix = None

QUICK = "--quick" in sys.argv
SKIPPED: dict[str, str] = {}
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

    def ours_parse_read():  # what a consumer does next: read the order's fields
        parse = F.parse
        for raw in raws:
            m = parse(raw)
            m.get(11), m.get(55), m.get(38), m.get(44)

    out = {"fix_encode_ns": best_ns_per(ours_encode, n), "fix_parse_ns": best_ns_per(ours_parse, n),
           "fix_parse_read_ns": best_ns_per(ours_parse_read, n)}  # fmt: skip
    if simplefix is None:
        SKIPPED["simplefix"] = "simplefix is not installed (pip install simplefix)"
    else:
        out["simplefix_encode_ns"] = best_ns_per(simplefix_encode, n)
        out["simplefix_parse_ns"] = best_ns_per(simplefix_parse, n)
    if quickfix is None:
        SKIPPED["quickfix"] = (
            "quickfix is not installed (pip install quickfix: builds from source with a C++ compiler)"
        )
    else:
        dd = _quickfix_dictionary()
        texts = [r.decode() for r in raws]

        def quickfix_parse():
            message = quickfix.Message
            if dd is None:
                for t in texts:
                    message(t, False)
            else:
                for t in texts:
                    message(t, dd, False)

        def quickfix_parse_read():
            for t in texts:
                m = quickfix.Message(t, dd, False) if dd is not None else quickfix.Message(t, False)
                m.getField(11), m.getField(55), m.getField(38), m.getField(44)

        quickfix_parse()  # a message QuickFIX cannot read raises here, not in the timed loop
        out["quickfix_parse_ns"] = best_ns_per(quickfix_parse, n)
        out["quickfix_parse_read_ns"] = best_ns_per(quickfix_parse_read, n)
    return out


def _quickfix_dictionary():
    """QuickFIX's FIX44.xml data dictionary if the package ships it (as the issue's run used), else
    None (``Message(str, False)``: the same parse without a dictionary)."""
    from pathlib import Path

    for spec in (
        Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml",
        Path(quickfix.__file__).parent / "spec" / "FIX44.xml",
    ):
        if spec.is_file():
            return quickfix.DataDictionary(str(spec))
    return None


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
    nan = float("nan")
    rows = [
        ("ITCH decode / msg (framing+dispatch)", r["itch_decode_ns"], "struct.unpack_from only", r["itch_floor_unpack_ns"], 1000),
        ("FIX NewOrderSingle encode", r["fix_encode_ns"], "simplefix encode", r.get("simplefix_encode_ns", nan), 2000),
        ("FIX parse (+CheckSum, BodyLength)", r["fix_parse_ns"], "simplefix parse (no checks)", r.get("simplefix_parse_ns", nan), 10000),
        ("FIX parse (+CheckSum, BodyLength)", r["fix_parse_ns"], "QuickFIX Message(str, dd, False)", r.get("quickfix_parse_ns", nan), None),
        ("FIX parse + read 4 fields", r["fix_parse_read_ns"], "QuickFIX parse + 4 getField", r.get("quickfix_parse_read_ns", nan), None),
        ("WS depthUpdate decode + levels", r["ws_depth_decode_ns"], "json.loads only", r["json_loads_ns"], None),
    ]  # fmt: skip
    t = Table(title="tickscope codecs (ns per message, best of 5)")
    for col in ("codec", "ours", "reference", "ref ns", "ours/ref", "target"):
        t.add_column(col, justify="left" if col in ("codec", "reference") else "right")
    for name, ours, ref_name, ref, target in rows:
        ok = "" if target is None else ("[green]met[/]" if ours <= target else "[red]missed[/]")
        skipped = ref != ref  # NaN: the peer is not installed (the reason is printed below)
        t.add_row(name, f"{ours:,.0f}", ref_name, "skipped" if skipped else f"{ref:,.0f}",
                  "-" if skipped else f"{ours / ref:.2f}x", f"<= {target:,} {ok}" if target else "-")  # fmt: skip
    Console(width=120).print(t)
    for peer, why in SKIPPED.items():
        print(f"skipped peer {peer}: {why}")
    if "quickfix_parse_ns" in r:
        met = r["fix_parse_ns"] < r["quickfix_parse_ns"]
        print(f"bar: FIX parse with checks faster than QuickFIX's binding: {'met' if met else 'MISSED'} "
              f"({r['fix_parse_ns']:,.0f} ns vs {r['quickfix_parse_ns']:,.0f} ns)")  # fmt: skip
    print(json.dumps({k: round(v, 1) for k, v in r.items()} | {"skipped": SKIPPED}))
