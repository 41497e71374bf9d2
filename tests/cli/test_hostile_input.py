"""Hostile peers and malformed market data (issue 9, item 7): every one is answered at its own
level (a FIX Reject or Logout, a counter) and nothing ends the venue or the trader.

Unit tests pin each parser; the end-to-end ones run the real venue and the real trader over
loopback against a peer that sends garbage."""

import os
import socket
import subprocess
import threading
import time

import pytest

from support import free_port
from support.hostile import (
    BadEventsServer,
    assert_exit_unanswered,
    assert_hostile_fix_and_udp_answered,
    body_with_small_checksum,
    frame,
    hostile_fix_peer,
    run_trader_against_hostile_peers,
)
from support.pipeline import TRADER, start_venue, trader_stats
from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.binance import (
    DepthSync,
    WsFeedError,
    book_ticker,
    decode_event,
    depth_update,
    levels,
    snapshot_levels,
)
from tickscope.pipeline.book import BookSet
from tickscope.pipeline.fix_session import FixSession
from tickscope.pipeline.strategy import ImbalanceStrategy
from tickscope.pipeline.venue import FixConnection, OrderEntry, SyntheticFlow


# -- FIX framing --------------------------------------------------------------------------------
@pytest.mark.parametrize("form", [b" %02d", b"+%02d", b"\t%02d", b"%d_%d"])
def test_checksum_is_exactly_three_ascii_digits(form):
    body, value = body_with_small_checksum()
    text = form % divmod(value, 10) if b"_" in form else form % value
    assert len(text) == 3 and int(text) == value  # what int() alone would accept
    with pytest.raises(F.FixError, match="CheckSum is not 3 digits"):
        F.parse(frame(body, checksum=text))
    assert F.parse(frame(body)).get(112) is not None  # the same message, properly framed


@pytest.mark.parametrize("form", [b"+%d", b" %d", b"%d ", b"%d_%d", b"\xd9\xa3%d"])
def test_body_length_is_ascii_digits_only(form):
    body = b"35=0\x0149=VENUE\x0156=TRADER\x0134=2\x01"
    text = form % divmod(len(body), 10) if b"_" in form else form % len(body)
    with pytest.raises(F.FixError, match="BodyLength is not a number"):
        F.parse(frame(body, body_length=text))


def test_a_last_field_without_soh_before_the_checksum_is_an_error_not_dropped():
    body = b"35=0\x0149=VENUE\x0156=TRADER\x0134=2"  # 34=2 ends without SOH
    with pytest.raises(F.FixError, match="does not end in SOH"):
        F.parse(frame(body))


def test_a_tag_beyond_ints_digit_limit_is_a_fix_error():
    with pytest.raises(F.FixError, match="malformed field"):
        F.parse(frame(b"35=0\x01" + b"9" * 5000 + b"=1\x01"))


def test_stream_keeps_a_whole_message_that_follows_a_cut_one():
    good = FixSession("VENUE", "TRADER").build(F.HEARTBEAT)
    out = F.FixStream().feed(good[:30] + good)
    assert [type(x).__name__ for x in out] == ["FixError", "FixMessage"]


def test_stream_keeps_a_begin_string_split_after_garbage():
    good = FixSession("VENUE", "TRADER").build(F.HEARTBEAT)
    s = F.FixStream()
    first = s.feed(b"x" * 40 + good[:3])
    assert [type(x).__name__ for x in first] == ["FixError"]
    assert [type(x).__name__ for x in s.feed(good[3:])] == ["FixMessage"]


# -- FIX session ----------------------------------------------------------------------------------
def logged_on_pair():
    trader, venue = FixSession("TRADER", "VENUE"), FixSession("VENUE", "TRADER")
    (logon,) = F.FixStream().feed(trader.logon())
    venue.on_message(logon)
    (reply,) = F.FixStream().feed(venue.build(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, 30)]))
    trader.on_message(reply)
    assert trader.logged_on and venue.logged_on
    return trader, venue


def one(raw: bytes) -> F.FixMessage:
    (msg,) = F.FixStream().feed(raw)
    assert isinstance(msg, F.FixMessage), msg
    return msg


@pytest.mark.parametrize(
    "seq_field, reason", [(b"34=x\x01", 6), (b"34=+3\x01", 6), (b"34=0\x01", 5), (b"", 1)]
)
def test_a_bad_msg_seq_num_gets_a_reject_with_the_reason_and_the_session_goes_on(seq_field, reason):
    trader, venue = logged_on_pair()
    got = venue.on_message(one(frame(b"35=0\x0149=TRADER\x0156=VENUE\x01" + seq_field)))
    (reject,) = [one(r) for r in got.replies]
    assert not got.close and reject.msg_type == F.REJECT
    assert reject.int(F.SessionRejectReason) == reason and reject.int(F.RefTagID) == F.MsgSeqNum
    assert b"MsgSeqNum" in reject.get(F.Text) or b"tag 34" in reject.get(F.Text)
    assert venue.stats.invalid_fields == 1 and venue.logged_on
    # The bad message consumed no sequence number: the next proper one is in sequence.
    got = venue.on_message(one(trader.build(F.TEST_REQUEST, [(F.TestReqID, b"t")])))
    assert [one(r).msg_type for r in got.replies] == [F.HEARTBEAT]


def test_a_logon_with_a_bad_field_is_answered_with_logout():
    venue = FixSession("VENUE", "TRADER")
    got = venue.on_message(one(frame(b"35=A\x0149=TRADER\x0156=VENUE\x0134=1\x0198=0\x01108=x\x01")))
    (logout,) = [one(r) for r in got.replies]
    assert got.close and logout.msg_type == F.LOGOUT
    assert b"tag 108" in logout.get(F.Text) and not venue.logged_on


def test_a_bad_new_seq_no_is_rejected():
    trader, venue = logged_on_pair()
    got = venue.on_message(one(trader.build(F.SEQUENCE_RESET, [(F.NewSeqNo, b"1e9")])))
    (reject,) = [one(r) for r in got.replies]
    assert reject.msg_type == F.REJECT and reject.int(F.RefTagID) == F.NewSeqNo


@pytest.mark.parametrize("last_px", [b"inf", b"nan", b"1e999", b"-1", b"1.2.3", b"+5", b"1_0"])
def test_execution_report_fields_are_checked_before_use(last_px):
    _, venue = logged_on_pair()
    raw = venue.build(F.EXECUTION_REPORT, [(F.ClOrdID, b"TS1"), (F.ExecType, b"F"), (F.LastQty, 1),
                                           (F.LastPx, last_px)])  # fmt: skip
    with pytest.raises(F.FieldError) as e:
        F.execution_fields(one(raw))
    assert e.value.tag == F.LastPx and e.value.reason == F.FieldError.INCORRECT_DATA_FORMAT


def test_the_venue_rejects_an_order_with_a_price_or_quantity_it_cannot_read():
    flow = SyntheticFlow(["AAPL"], seed=1)
    conn = FixConnection(OrderEntry(flow, threading.Event()))
    client = FixSession("TRADER", "VENUE")
    out, close = conn.received(client.logon())
    assert not close and one(out).msg_type == F.LOGON
    tmpl = F.OrderTemplate("TRADER", "VENUE")
    for price, qty, text in (
        (b"inf", 100, b"bad price"),
        (b"nan", 100, b"bad price"),
        (b"1.0", -5, b"bad quantity"),
    ):
        out, close = conn.received(
            client.sent(tmpl.encode(client.next_seq(), b"O1", b"AAPL", b"1", qty, price))
        )
        report = one(out)
        assert not close and report.get(F.ExecType) == b"8" and report.get(F.Text) == text


# -- ITCH / MoldUDP64 -----------------------------------------------------------------------------
def test_a_zero_length_message_at_the_end_of_a_packet_is_malformed_not_an_index_error():
    good = itch.add_order(1, 0, 0, 7, b"B", 100, "AAPL", 1_000_000)
    packet = itch.mold_packet(b"TEST000001", 1, [good, b""])
    rx = itch.MoldReceiver()
    assert [seq for seq, _ in rx.messages(packet, len(packet))] == [1]  # exact-size buffer
    assert rx.stats.malformed_messages == 1 and "length 0" in rx.last_error
    stale = bytearray(packet) + b"A" * 40  # a bigger receive buffer holding an older packet's bytes
    rx = itch.MoldReceiver()
    assert [seq for seq, _ in rx.messages(stale, len(packet))] == [1]
    assert rx.stats.malformed_messages == 1 and "length 0" in rx.last_error


def test_zero_share_adds_neither_break_the_book_nor_the_strategy():
    books, strategy = BookSet(), ImbalanceStrategy(cooldown_ns=0)
    msgs = [itch.add_order(1, 0, 0, 1, b"B", 0, "X", 100), itch.add_order(1, 0, 0, 3, b"S", 0, "X", 200),
            itch.add_order(1, 0, 0, 2, b"B", 100, "X", 100), itch.order_delete(1, 0, 0, 2),
            itch.order_cancel(1, 0, 0, 1, 0), itch.order_delete(1, 0, 0, 1)]  # fmt: skip
    for m in msgs:
        book = books.apply(itch.decode(m, 0, len(m)))
        if book is not None:
            strategy.on_book(book, 0)
    assert books.books[1].bids.levels == {}


# -- Binance WebSocket events ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw_levels",
    [
        [[101.23, "300"]],  # a numeric price: AttributeError before
        [["101.23", 1e999]],  # an infinite quantity: OverflowError before
        [["101.23", 300]],  # a numeric quantity
        ["12"],  # a string level: read as price 1, quantity 2 before
        [["1", "2", "3"]],
        [["+1", "2"]],
        [["1", " 2"]],
        [["1", "1_0"]],
        [["١٠", "2"]],  # non-ASCII digits
        "12",
        None,
    ],
)
def test_a_malformed_level_is_a_feed_error(raw_levels):
    with pytest.raises(WsFeedError):
        levels(raw_levels)


@pytest.mark.parametrize(
    "text",
    [
        b'{"e":"depthUpdate","s":"AAPL","U":1e999,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":1,"u":1e999,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":"1","u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":true,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":1.5,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":3,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":["AAPL"],"U":1,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","s":"AAPL","U":1,"u":2,"b":[[101.23,"300"]],"a":[]}',
    ],
)
def test_a_depth_update_with_unusable_values_is_a_feed_error(text):
    with pytest.raises(WsFeedError):
        depth_update(decode_event(text))


def test_deeply_nested_json_is_a_feed_error_not_a_recursion_error():
    with pytest.raises(WsFeedError, match="not JSON"):
        decode_event(b"[" * 100_000 + b"]" * 100_000)


def test_tickers_and_snapshots_are_checked_too():
    with pytest.raises(WsFeedError):
        book_ticker(decode_event(b'{"u":1e999,"s":"AAPL","b":"1.0","B":"1","a":"2.0","A":"1"}'))
    with pytest.raises(WsFeedError):
        book_ticker(decode_event(b'{"u":1,"s":"AAPL","b":1.0,"B":"1","a":"2.0","A":"1"}'))
    for result in ({"lastUpdateId": 1e999, "bids": [], "asks": []}, [], {"bids": []}, "x"):
        with pytest.raises(WsFeedError):
            snapshot_levels(result)


def test_a_bad_event_leaves_the_book_as_it_was():
    sync = DepthSync("AAPL")
    sync.on_snapshot(10, [(1_000_000, 5)], [(1_010_000, 5)])
    with pytest.raises(WsFeedError):
        depth_update(
            decode_event(b'{"e":"depthUpdate","s":"AAPL","U":11,"u":11,"b":[["100","7"]],"a":["12"]}')
        )
    assert sync.book.l2() == ({1_000_000: 5}, {1_010_000: 5}) and sync.last_update_id == 10


# -- end to end: the real venue -------------------------------------------------------------------
@pytest.fixture
def venue_fix_port():
    proc, _, fix_port = start_venue("--rate", "500", "--symbols", "2")
    yield fix_port
    proc.terminate()
    try:
        proc.wait(10)
    finally:
        proc.kill()
        err = proc.stderr.read()
    assert "Traceback" not in err, err


def test_a_connection_that_never_logs_on_does_not_keep_the_next_one_out():
    proc, _, fix_port = start_venue("--rate", "500", "--fix-logon-timeout", "1")
    try:
        silent = socket.create_connection(("127.0.0.1", fix_port), timeout=5)
        silent.sendall(b"8=FIX.4.4\x019=")  # and then nothing
        sock, _ = proper_logon(fix_port)  # served once the silent one is dropped
        sock.close()
        silent.close()
    finally:
        proc.kill()
        proc.wait()
    assert "no Logon within 1 s" in proc.stderr.read()


def read_messages(sock, n=1, timeout=10.0):
    stream, out = F.FixStream(), []
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        out += stream.feed(data)
    return out


def proper_logon(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    session = FixSession("TRADER", "VENUE")
    sock.sendall(session.logon())
    (reply,) = read_messages(sock, timeout=30)
    assert isinstance(reply, F.FixMessage) and reply.msg_type == F.LOGON, reply
    session.on_message(reply)
    return sock, session


def test_venue_answers_a_logon_with_msg_seq_num_x_with_logout_and_serves_the_next_logon(venue_fix_port):
    sock = socket.create_connection(("127.0.0.1", venue_fix_port), timeout=5)
    sock.sendall(
        frame(b"35=A\x0149=TRADER\x0156=VENUE\x0134=x\x0152=20260101-00:00:00\x0198=0\x01108=30\x01")
    )
    (logout,) = read_messages(sock)
    assert logout.msg_type == F.LOGOUT and b"tag 34" in logout.get(F.Text)
    sock.close()
    sock, _ = proper_logon(venue_fix_port)  # the acceptor is still serving
    sock.close()


def test_venue_rejects_garbage_inside_a_session_keeps_it_and_serves_the_next_logon(venue_fix_port):
    sock, session = proper_logon(venue_fix_port)
    body, value = body_with_small_checksum()
    hostile = [
        frame(b"35=0\x0149=TRADER\x0156=VENUE\x0134=x\x01"),  # MsgSeqNum not a number
        frame(body, checksum=b"+%02d" % value),  # CheckSum int() would take
        frame(b"35=0\x0149=TRADER\x0156=VENUE\x0134=3\x01", body_length=b"+29"),
        frame(b"35=0\x0149=TRADER\x0156=VENUE\x0134=3"),  # last field without SOH
        b"\x00\xff" * 50,
    ]
    sock.sendall(b"".join(hostile))
    rejects = read_messages(sock, n=5)
    assert [m.msg_type for m in rejects] == [F.REJECT] * 5, rejects
    assert rejects[0].int(F.SessionRejectReason) == 6 and rejects[0].int(F.RefTagID) == F.MsgSeqNum
    # An order the venue cannot read gets an order reject, not a dead acceptor.
    tmpl = F.OrderTemplate("TRADER", "VENUE")
    sock.sendall(session.sent(tmpl.encode(session.next_seq(), b"O1", b"AAPL", b"1", 100, b"inf")))
    sock.sendall(session.build(F.TEST_REQUEST, [(F.TestReqID, b"alive")]))
    answers = [m for m in read_messages(sock, n=2) if isinstance(m, F.FixMessage)]
    assert [m.msg_type for m in answers] == [F.EXECUTION_REPORT, F.HEARTBEAT]
    assert answers[0].get(F.Text) == b"bad price" and answers[1].get(F.TestReqID) == b"alive"
    sock.close()
    sock, _ = proper_logon(venue_fix_port)
    sock.close()


# -- end to end: the real trader ------------------------------------------------------------------
def test_trader_survives_hostile_fix_and_udp_and_counts_both(tmp_path):
    venue, trader, err = run_trader_against_hostile_peers(TRADER, hostile_fix_peer(), tmp_path)
    assert "Traceback" not in err and "would number past 2^64 - 1" in err, err
    assert_exit_unanswered(trader, err)
    assert_hostile_fix_and_udp_answered(venue, tmp_path)


HOSTILE_WS_EVENTS = [
    '{"e":"depthUpdate","s":"AAPL","U":11,"u":11,"b":[[101.23,"300"]],"a":[]}',
    '{"e":"depthUpdate","s":"AAPL","U":1e999,"u":11,"b":[],"a":[]}',
    '{"e":"depthUpdate","s":"AAPL","U":11,"u":11,"b":[["100.00",1e999]],"a":[]}',
    '{"e":"depthUpdate","s":"AAPL","U":11,"u":11,"b":["12"],"a":[]}',
    '{"e":"depthUpdate","s":"AAPL","U":11,"u":11,"b":[],"a":[],"x":' + "[" * 50_000 + "]" * 50_000 + "}",
    "[" * 50_000,
    '{"u":1e999,"s":"AAPL","b":"100.00","B":"5","a":"100.10","A":"5"}',
    '{"u":10,"s":{"a":1},"b":"100.00","B":"5","a":"100.10","A":"5"}',
    '{"id":[1],"status":500,"error":' + "[" * 900 + "]" * 900 + "}",
]


def test_trader_counts_and_skips_every_hostile_websocket_event(tmp_path):
    ws_port = free_port()
    server = BadEventsServer(ws_port, HOSTILE_WS_EVENTS)
    server.start()
    assert server.ready.wait(10)
    venue, _, fix_port = start_venue("--rate", "100")  # FIX order entry only
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(tmp_path))
    try:
        out = subprocess.run([*TRADER, "--feed", "ws", "--ws-url",
                              f"ws://127.0.0.1:{ws_port}/ws", "--fix-port", str(fix_port), "--symbols", "AAPL"],
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        venue.kill()
        venue.wait()
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    ws = trader_stats(tmp_path)["ws"]
    assert ws["malformed"] == len(HOSTILE_WS_EVENTS) - 1 and ws["request_errors"] == 1
    assert ws["applied"] == 1 and ws["synced"] == ["AAPL"], "the good event after the bad ones was applied"
    assert "market data skipped" in out.stderr
