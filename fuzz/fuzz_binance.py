"""Coverage-guided fuzzing of the Binance-style WebSocket events, through to the synced book.

    pip install atheris
    python fuzz/fuzz_binance.py -max_total_time=300

The input is a batch of events, one per line, handled as the trader's feed handler does:
``decode_event``, ``event_kind``, then ``depth_update`` into ``DepthSync.on_event``,
``book_ticker``, or ``snapshot_levels`` into ``DepthSync.on_snapshot``. Only ``WsFeedError`` may
come out of the parsing, and nothing out of the book. A bad event leaves the book as it was.
"""

import json

import atheris
from _harness import run

with atheris.instrument_imports():
    from tickscope.pipeline.binance import (
        ANSWER,
        DEPTH_UPDATE,
        DepthPublisher,
        DepthSync,
        WsFeedError,
        book_ticker,
        decode_event,
        depth_update,
        event_kind,
        snapshot_levels,
    )
    from tickscope.pipeline.venue import SyntheticFlow


def test_one_input(data: bytes) -> None:
    syncs = {s: DepthSync(s) for s in ("AAPL", "MSFT")}
    for text in data.split(b"\n"):
        try:
            msg = decode_event(text)
            kind = event_kind(msg)
            if kind == DEPTH_UPDATE:
                symbol, first, last, bids, asks = depth_update(msg)
                sync = syncs.get(symbol)
                if sync is not None:
                    sync.on_event(first, last, bids, asks)
            elif kind == ANSWER:
                if "result" in msg and msg.get("result") is not None:
                    syncs["AAPL"].on_snapshot(*snapshot_levels(msg["result"]))
            else:
                book_ticker(msg)
        except WsFeedError:
            pass


def seeds() -> list[bytes]:
    flow = SyntheticFlow(["AAPL", "MSFT"], seed=1)
    pub = DepthPublisher(flow.books)
    events = []
    for i in range(60):
        msg = flow.next_message(i)
        pub.touched(int.from_bytes(msg[1:3], "big"))
        events += [text.encode() for _, text in pub.events(i)]
    snap = json.dumps({"id": 2, "status": 200, "result": pub.snapshot("AAPL")}).encode()
    hostile = [
        b'{"e":"depthUpdate","s":"AAPL","U":1,"u":2,"b":[[101.23,"300"]],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":1e999,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":1,"u":2,"b":["12"],"a":[]}',
        b"[" * 5000,
    ]
    return [b"\n".join(events[:20]), snap + b"\n" + b"\n".join(events[20:40]), b"\n".join(hostile)]


if __name__ == "__main__":
    run("binance", seeds(), test_one_input)
