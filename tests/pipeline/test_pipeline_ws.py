"""The Binance-style WebSocket feed: the documented book sync, the venue's publisher, and the
trader against the real venue (and a real WebSocket server that sends garbage) over loopback."""

import base64
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import threading
import time

import pytest

from support import QUIET, free_port
from support.cli import run_cli
from support.hostile import BadEventsServer
from support.pipeline import TRADER, start_venue, trader_stats
from tickscope.collectors.session import Session
from tickscope.pipeline.binance import (
    DepthPublisher,
    DepthSync,
    WsFeedError,
    decode_event,
    levels,
    parse_price,
    price_text,
)
from tickscope.pipeline.venue import SyntheticFlow


def lv(*pairs):
    return [(parse_price(p), q) for p, q in pairs]


def test_prices_round_trip_without_floats():
    assert (
        parse_price("101.23") == 1_012_300
        and parse_price("7") == 70_000
        and price_text(1_012_300) == "101.2300"
    )
    for bad in ("1.23456", "-1", "abc", "1e3", ""):
        with pytest.raises(ValueError):
            parse_price(bad)


def test_sync_buffers_until_the_snapshot_then_drops_what_it_holds():
    s = DepthSync("AAPL")
    assert s.on_event(5, 7, lv(("100", 1)), []) is False and not s.synced
    s.on_event(8, 9, lv(("100", 2)), lv(("101", 5)))
    s.on_event(10, 10, [], lv(("101", 0)))
    assert s.on_snapshot(8, lv(("100", 9), ("99", 3)), lv(("101", 4)))
    # 5..7 was in the snapshot (dropped); 8..9 straddles lastUpdateId + 1 (applied); then 10.
    assert s.last_update_id == 10 and s.book.l2() == ({1_000_000: 2, 990_000: 3}, {})
    assert s.on_event(9, 10, lv(("100", 77)), []) is False and s.stats.stale == 1, "u <= id: stale, dropped"
    assert s.on_event(11, 12, [], lv(("102", 1))) and s.book.asks.best() == 1_020_000


def test_a_hole_discards_the_book_and_asks_for_a_new_snapshot():
    s = DepthSync("AAPL")
    s.want_snapshot = False
    s.on_snapshot(10, lv(("100", 1)), lv(("101", 1)))
    assert s.on_event(11, 11, lv(("100", 2)), [])
    assert s.on_event(13, 14, lv(("100", 3)), []) is False  # 12 is missing
    assert s.stats.holes == 1 and not s.synced and s.want_snapshot and s.buffer
    s.want_snapshot = False
    assert s.on_snapshot(14, lv(("100", 3)), lv(("101", 1)))
    assert s.synced and s.stats.resyncs == 1 and s.book.bids.best_size() == 3


def test_a_snapshot_older_than_the_buffer_is_refused():
    s = DepthSync("AAPL")
    s.want_snapshot = False
    s.on_event(50, 52, lv(("100", 1)), [])
    assert s.on_snapshot(40, [], []) is False and s.want_snapshot and s.stats.snapshots_too_old == 1


def test_publisher_and_sync_agree_through_lost_events_and_resyncs():
    """The venue's own books, published; events lost at random; the trader-side sync re-snapshots
    on every hole; at the end every synced book equals the venue's book level for level."""
    rng = random.Random(3)
    flow = SyntheticFlow(["AAPL", "MSFT", "NVDA"], seed=5)
    pub = DepthPublisher(flow.books)
    syncs = {b.symbol: DepthSync(b.symbol) for b in flow.books.values()}
    lost = 0
    for step in range(6000):
        for _ in range(4):
            msg = flow.next_message(step)
            pub.touched(int.from_bytes(msg[1:3], "big"))
        for _stream, text in pub.events(step):
            m = decode_event(text)
            if "e" not in m:
                continue  # bookTicker
            if rng.random() < 0.01:
                lost += 1
                continue
            sync = syncs[m["s"]]
            sync.on_event(m["U"], m["u"], levels(m["b"]), levels(m["a"]))
        for sym, sync in syncs.items():
            if sync.want_snapshot and rng.random() < 0.3:  # the answer arrives a few events later
                sync.want_snapshot = False
                snap = pub.snapshot(sym)
                sync.on_snapshot(snap["lastUpdateId"], levels(snap["bids"]), levels(snap["asks"]))
    for sync in syncs.values():
        if not sync.synced:
            snap = pub.snapshot(sync.symbol)
            assert sync.on_snapshot(snap["lastUpdateId"], levels(snap["bids"]), levels(snap["asks"]))
    assert lost > 100 and sum(s.stats.holes for s in syncs.values()) > 50
    for book in flow.books.values():
        assert syncs[book.symbol].book.l2() == book.l2(), book.symbol


@pytest.mark.parametrize(
    "text, needle",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"e": "depthUpdate", "s": "AAPL", "U": 1, "b": [], "a": []}', "without u"),
        (b'{"u": 5, "s": "AAPL", "b": "1.0", "a": "2.0"}', "without B, A"),
        (b'{"e": "trade", "s": "AAPL"}', "unknown market data event"),
    ],
)
def test_malformed_events_are_one_clear_error(text, needle):
    with pytest.raises(WsFeedError, match=needle):
        decode_event(text)


def test_a_malformed_level_changes_nothing():
    with pytest.raises(WsFeedError, match="bad price level"):
        levels([["100.5", "3"], ["oops", "1"]])


def run_trader(ring_dir, fix_port, ws_url, *args, timeout=60):
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir))
    return subprocess.run([*TRADER, "--feed", "ws", "--ws-url", ws_url,
                           "--fix-port", str(fix_port), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("loop", ["busy", "asyncio"])
def test_trader_resyncs_on_every_hole_the_venue_makes(tmp_path, loop):
    ws_port = free_port()
    venue, _, fix_port = start_venue("--feed", "ws", "--ws-port", str(ws_port), "--rate", "4000", "--duration", "3",
                                     "--ws-skip-every", "150", "--wait-logon", "--logout-grace", "90")  # fmt: skip
    try:
        out = run_trader(
            tmp_path, fix_port, f"ws://127.0.0.1:{ws_port}/ws", "--loop", loop, "--ack-wait", "60"
        )
    finally:
        venue.wait(20)
    assert out.returncode == 0, out.stderr
    skipped = json.loads(venue.stderr.read().split("published ", 1)[1].split("\n")[0].replace("'", '"'))
    stats = trader_stats(tmp_path)
    ws = stats["ws"]
    assert skipped["skipped_events"] > 20
    # Every update id the venue left out between the first and the last event the trader saw of a
    # symbol is noticed, exactly, whether the book was synced then or waiting for a snapshot.
    visible = sum(u - first + 1 for sym, (lo, hi) in ws["seen"].items()
                  for first, u in skipped["skipped_ids"].get(sym, []) if lo < first <= hi)  # fmt: skip
    assert ws["missed_ids"] == visible > 0
    # A loss seen while synced is a hole (one per resync: losses while waiting for a snapshot are
    # covered by it), and every hole but the last of each symbol was repaired by a resync.
    assert 0 < ws["holes"] <= skipped["skipped_events"]
    assert (
        ws["resyncs"] >= ws["holes"] - len(ws["seen"]) and ws["malformed"] == 0 and ws["request_errors"] == 0
    )
    assert ws["ticker_checked"] > 100 and ws["ticker_mismatches"] == 0, (
        "the synced book matches the venue's tops"
    )
    assert stats["feed_gaps"] == ws["holes"]
    # The venue keeps order entry open until the trader logs out and the trader waits for every
    # answer (the generous --ack-wait is a hang guard, not a timing): nothing is left in flight.
    assert stats["orders_sent"] > 0 and stats["orders_in_flight_at_end"] == 0
    assert stats["orders_acked"] + stats["orders_rejected"] == stats["orders_sent"]


GARBAGE = ["{oops", '{"e": "depthUpdate", "s": "AAPL", "U": 1}', '{"e": "depthUpdate", "s": "ZZZZ", "U": 1, "u": 1, '
           '"b": [], "a": []}', '{"e": "depthUpdate", "s": "AAPL", "U": 1, "u": 2, "b": [["x", "1"]], "a": []}']  # fmt: skip


def test_trader_counts_malformed_events_keeps_going_and_stops_when_the_feed_closes(tmp_path):
    ws_port = free_port()
    server = BadEventsServer(ws_port, GARBAGE)
    server.start()
    server.ready.wait(5)
    venue, _, fix_port = start_venue("--rate", "100")  # FIX order entry only: its UDP feed goes nowhere
    try:
        out = run_trader(
            tmp_path, fix_port, f"ws://127.0.0.1:{ws_port}/ws", "--symbols", "MSFT,AAPL", timeout=30
        )
    finally:
        venue.kill()
        venue.wait()
    assert out.returncode == 0, out.stderr
    ws = trader_stats(tmp_path)["ws"]
    assert ws["malformed"] == len(GARBAGE) and ws["request_errors"] == 1
    assert ws["applied"] == 1 and ws["synced"] == ["AAPL"], "the good event after the bad ones was applied"
    assert "market data skipped" in out.stderr and "Traceback" not in out.stderr


def test_trader_gives_up_on_a_websocket_feed_that_is_not_there(tmp_path):
    venue, _, fix_port = start_venue("--rate", "100")
    try:
        out = run_trader(tmp_path, fix_port, f"ws://127.0.0.1:{free_port()}/ws", "--connect-timeout", "1")
    finally:
        venue.kill()
        venue.wait()
    assert (
        out.returncode == 2
        and "cannot connect to market data" in out.stderr
        and "Traceback" not in out.stderr
    )


def test_profile_with_the_websocket_feed_measures_every_stage(tmp_path):
    out = run_cli("profile", "--feed", "ws", "--duration", "4s", "--rate", "3k", *QUIET, "--out", str(tmp_path / "s"), timeout=90)  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    summary = s.summary()
    for stage in ("wire_to_read", "feed", "book", "strategy", "risk", "leg_wait", "encode", "send", "order_rtt"):  # fmt: skip
        assert summary[stage]["count"] > 0, stage
    assert s.meta["counters"]["dropped_ring_full"] == 0 and s.meta["options"]["pipeline"]["feed"] == "ws"
    ports = s.meta["options"]["pipeline"]  # the ports the pipeline really used, not 0 ("pick one later")
    assert (
        f"--md-port {ports['md_port']} " in s.meta["command"]
        and f"127.0.0.1:{ports['ws_port']}/ws" in s.meta["command"]
    )
    trader = s.meta["subject_stats"]["trader"]
    assert trader["ws"]["synced"] and trader["orders_sent"] > 0 and trader["orders_acked"] > 0
    assert trader["orders_sent"] == (
        trader["orders_acked"] + trader["orders_rejected"] + trader["orders_in_flight_at_end"]
    )
    assert "in flight at end" in out.stdout, "the console accounts for every order"
    bad = run_cli("profile", "--feed", "ws", "--replay", str(tmp_path / "x.itch"), "--no-live")
    assert bad.returncode == 2 and "--feed itch" in bad.stderr


class PushOnConnectServer(threading.Thread):
    """A raw WebSocket server (one socket, RFC 6455 by hand) that sends a text message in the same
    write as its 101 response (as venues that push on connect do), then a message in three fragments
    with a ping between them, a binary message, one more text message and a Close."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.error = None

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
        assert len(payload) < 126
        return bytes(((0x80 if fin else 0) | opcode, len(payload))) + payload

    def run(self):
        try:
            self.listener.settimeout(30)
            conn, _ = self.listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                key = re.search(rb"(?i)sec-websocket-key: *(\S+)", request).group(1)
                accept = base64.b64encode(
                    hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
                )
                early = b'{"u":1,"s":"AAPL","b":"100.0000","B":"5","a":"100.1000","A":"5"}'
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.frame(1, early))  # fmt: skip
                event = b'{"e":"depthUpdate","s":"AAPL","U":5,"u":5,"b":[["100.0000","7"]],"a":[]}'
                conn.sendall(self.frame(1, event[:20], fin=False) + self.frame(9, b"hi")
                             + self.frame(0, event[20:40], fin=False))  # fmt: skip
                time.sleep(0.2)  # the rest in a later read: the message is whole only then
                conn.sendall(self.frame(0, event[40:]) + self.frame(2, b"\x00\x01")
                             + self.frame(1, event.replace(b"5", b"6")) + self.frame(8, b"\x03\xe8"))  # fmt: skip
                time.sleep(1)
        except Exception as e:  # the test reads it
            self.error = e
        finally:
            self.listener.close()


@pytest.mark.parametrize("loop", ["busy", "asyncio"])
def test_trader_numbers_every_text_message_once_whole_including_those_read_with_the_handshake(tmp_path, loop):
    """What ``tickscope wire`` relies on for --feed ws: text message n on the wire is trace n."""
    ws_port = free_port()
    server = PushOnConnectServer(ws_port)
    server.start()
    venue, _, fix_port = start_venue("--rate", "100")  # FIX order entry only
    try:
        out = run_trader(tmp_path, fix_port, f"ws://127.0.0.1:{ws_port}/ws", "--symbols", "AAPL",
                         "--loop", loop, timeout=30)  # fmt: skip
    finally:
        venue.kill()
        venue.wait()
    server.join(10)
    assert server.error is None and out.returncode == 0, (server.error, out.stderr)
    ws = trader_stats(tmp_path)["ws"]
    # the early bookTicker, the fragmented depthUpdate (whole: it parses), the last one; not the binary
    assert ws["events"] == 3 and ws["malformed"] == 0, (ws, out.stderr)
    assert ws["seen"]["AAPL"] == [5, 6], "both depth events were read whole"


def test_a_request_on_a_closing_feed_is_not_sent_and_says_so():
    """The venue's close frame can come in the read whose messages ask for a snapshot (a hole at the
    feed's end, seen under load): the request is not sent (websockets would raise), no id."""
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri

    from tickscope.pipeline.binance import WsClient

    client = WsClient.__new__(WsClient)
    client.protocol, client._next_id = ClientProtocol(parse_uri("ws://127.0.0.1:1/ws")), 1
    client.protocol.state = State.CLOSING
    assert client.request("depth", {"symbol": "AAPL", "limit": 1000}) is None
    assert client._next_id == 1 and client.protocol.data_to_send() == []
