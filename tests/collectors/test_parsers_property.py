"""Property tests for every byte parser of the bundled pipeline: FIX framing and session,
ITCH 5.0 / MoldUDP64, Binance-style JSON events.

Two kinds: round trips where we have an encoder (encode, then parse, gives back the input), and
"arbitrary input never raises anything but the parser's documented error". Derandomized and
bounded so that CI runs the same examples every time; the open-ended search is fuzz/ (atheris).
"""

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.binance import (
    ANSWER,
    DEPTH_UPDATE,
    DepthPublisher,
    WsFeedError,
    book_ticker,
    decode_event,
    depth_update,
    event_kind,
    levels,
    parse_price,
    price_text,
    snapshot_levels,
)
from tickscope.pipeline.fix_session import FixSession
from tickscope.pipeline.venue import FixConnection, OrderEntry, SyntheticFlow

ci = settings(derandomize=True, max_examples=200, deadline=None)

# -- FIX ------------------------------------------------------------------------------------------
FRAMING_TAGS = {F.BeginString, F.BodyLength, F.MsgType, F.CheckSum}
tags = st.integers(1, 99_999).filter(lambda t: t not in FRAMING_TAGS)
values = st.binary(min_size=1, max_size=40).filter(lambda v: b"\x01" not in v)
msg_types = st.sampled_from([F.LOGON, F.HEARTBEAT, F.REJECT, F.NEW_ORDER_SINGLE, F.EXECUTION_REPORT, b"AE"])
field_lists = st.dictionaries(tags, values, max_size=12).map(lambda d: list(d.items()))


def valid_fix(out: bytes) -> list[F.FixMessage]:
    items = F.FixStream().feed(out)
    assert all(isinstance(m, F.FixMessage) for m in items), items
    return items


@ci
@given(msg_types, field_lists)
def test_fix_encode_then_parse_gives_back_every_field(msg_type, fields):
    msg = F.parse(F.encode(msg_type, fields))
    assert msg.msg_type == msg_type and msg.fields == {F.MsgType: msg_type, **dict(fields)}


@ci
@given(st.integers(1, 2**31), st.binary(min_size=1, max_size=20).filter(lambda v: b"\x01" not in v),
       st.sampled_from([b"1", b"2"]), st.integers(1, 10**9), st.integers(0, 10**12))  # fmt: skip
def test_order_template_then_parse_gives_back_the_order(seq, clordid, side, qty, price_units):
    raw = F.OrderTemplate("TRADER", "VENUE").encode(
        seq, clordid, b"AAPL", side, qty, F.price_text(price_units)
    )
    msg = F.parse(raw)
    assert (msg.int(F.MsgSeqNum), msg.get(F.ClOrdID), msg.get(F.Side), msg.int(F.OrderQty)) == (
        seq, clordid, side, qty)  # fmt: skip
    assert F.parse_price(msg.get(F.Price)) == price_units


@ci
@given(st.integers(-(10**18) + 1, 10**18 - 1))
def test_fix_int_round_trips_and_nothing_else_is_an_int(n):
    assert F.parse_int(b"%d" % n) == n
    for lenient in (b"+%d" % n, b" %d" % n, b"%d " % n, b"%d_0" % n):
        with pytest.raises(F.FieldError):
            F.parse_int(lenient)


@ci
@given(st.binary(max_size=300))
def test_fix_parse_of_arbitrary_bytes_raises_only_fix_error(data):
    try:
        F.parse(data)
    except F.FixError:
        pass


def parse_outcome(parse, raw: bytes):
    try:
        m = parse(raw)
    except F.FixError as e:
        return "FixError", str(e)
    return m.msg_type, m.by_text, m.fields, m.raw


# Body pieces that reach every branch of parse's fast path and of its field map: tags with leading
# zeros, empty tags and values, '=' inside values, SOH runs, CheckSum-like fields inside the body.
body_pieces = st.lists(
    st.sampled_from(
        [b"35=", b"\x01", b"=", b"0", b"1", b"9", b"a", b"10=", b"=x=", b"\x0110=000", b"49=A\x01"]
    ),
    max_size=30,
)


@ci
@given(st.sampled_from([b"", b"35=D\x01", b"35=\x01"]), body_pieces)
def test_fix_parse_gives_what_the_field_by_field_parse_gives(head, pieces):
    """parse's fast path is an optimisation only: on any body (framed with a correct BodyLength and
    CheckSum, so that the fast path is reached) it returns the same message or the same error."""
    body = head + b"".join(pieces)
    msg = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
    raw = msg + b"10=%03d\x01" % F.checksum(msg)
    assert parse_outcome(F.parse, raw) == parse_outcome(F._parse_field_by_field, raw)


def test_fix_parse_takes_the_fast_path_for_an_order():
    raw = F.OrderTemplate("TRADER", "VENUE").encode(7, b"TS42", b"AAPL", b"1", 300, b"101.25")
    fast = F._checked(raw, raw.index(b"35="))
    assert fast is not None and parse_outcome(lambda r: fast, raw) == parse_outcome(
        F._parse_field_by_field, raw
    )


@ci
@given(st.lists(st.tuples(msg_types, field_lists), min_size=1, max_size=5), st.data())
def test_fix_stream_gives_the_same_messages_however_the_bytes_are_cut(messages, data):
    raws = [F.encode(t, f) for t, f in messages]
    stream, whole = F.FixStream(), b"".join(raws)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True):
        got += stream.feed(whole[a:b])
    assert [m.raw for m in got] == raws


@ci
@given(st.binary(max_size=200).filter(lambda g: b"8" not in g), msg_types, field_lists)
def test_fix_stream_finds_a_message_after_any_garbage(garbage, msg_type, fields):
    raw = F.encode(msg_type, fields)
    got = F.FixStream().feed(garbage + raw)
    assert isinstance(got[-1], F.FixMessage) and got[-1].raw == raw
    assert all(isinstance(x, F.FixError) for x in got[:-1])


@ci
@given(st.lists(st.binary(max_size=120), max_size=6))
def test_fix_stream_of_arbitrary_bytes_yields_only_messages_and_fix_errors(chunks):
    stream = F.FixStream()
    for chunk in chunks:
        for item in stream.feed(chunk):
            assert isinstance(item, F.FixMessage | F.FixError)


header_values = st.one_of(
    values, st.sampled_from([b"x", b"+1", b" 1", b"1_0", b"-3", b"0", b"99999999999999999999"])
)


@ci
@given(st.sampled_from([F.HEARTBEAT, F.TEST_REQUEST, F.SEQUENCE_RESET, F.LOGON, F.EXECUTION_REPORT, F.REJECT]),
       st.dictionaries(st.sampled_from([F.MsgSeqNum, F.HeartBtInt, F.NewSeqNo, F.GapFillFlag, F.PossDupFlag,
                                        F.ResetSeqNumFlag, F.TestReqID]), header_values),
       st.booleans())  # fmt: skip
def test_the_session_answers_any_header_with_valid_fix_never_an_exception(msg_type, header, logged_on):
    venue = FixSession("VENUE", "TRADER")
    if logged_on:
        venue.on_message(F.parse(FixSession("TRADER", "VENUE").logon()))
    raw = F.encode(msg_type, [(F.SenderCompID, b"TRADER"), (F.TargetCompID, b"VENUE"), *header.items()])
    got = venue.on_message(F.parse(raw))
    valid_fix(b"".join(got.replies))


FLOW = SyntheticFlow(["AAPL", "MSFT"], seed=1)
for _ in range(200):
    FLOW.next_message(0)


@ci
@given(st.lists(st.one_of(st.binary(max_size=80), st.tuples(msg_types, field_lists)), max_size=6))
def test_the_venue_answers_any_stream_after_logon_with_valid_fix(parts):
    conn = FixConnection(OrderEntry(FLOW, threading.Event()))
    client = FixSession("TRADER", "VENUE")
    out, close = conn.received(client.logon())
    assert not close and valid_fix(out)[0].msg_type == F.LOGON
    for part in parts:
        if isinstance(part, tuple):
            t, fields = part
            part = F.encode(t, [(F.SenderCompID, b"TRADER"), (F.TargetCompID, b"VENUE"),
                                (F.MsgSeqNum, client.next_seq()), *fields])  # fmt: skip
        out, close = conn.received(part)
        valid_fix(out)
        if close:
            break


# -- ITCH 5.0 / MoldUDP64 -------------------------------------------------------------------------
u16, u32, u64, ts48 = (
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**48 - 1),
)
symbols = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
itch_messages = st.one_of(
    st.builds(itch.add_order, u16, u16, ts48, u64, st.sampled_from([b"B", b"S"]), u32, symbols, u32),
    st.builds(itch.order_executed, u16, u16, ts48, u64, u32, u64),
    st.builds(itch.order_cancel, u16, u16, ts48, u64, u32),
    st.builds(itch.order_delete, u16, u16, ts48, u64),
    st.builds(itch.order_replace, u16, u16, ts48, u64, u64, u32, u32),
    st.builds(itch.trade, u16, u16, ts48, u64, st.sampled_from([b"B", b"S"]), u32, symbols, u32, u64),
    st.builds(itch.system_event, u16, u16, ts48, st.sampled_from([b"O", b"S", b"Q", b"M", b"E", b"C"])),
    st.builds(itch.stock_directory, u16, u16, ts48, symbols),
)


@ci
@given(itch_messages)
def test_itch_encode_then_decode_gives_back_the_fields(raw):
    fields = itch.decode(raw, 0, len(raw))
    assert itch.DECODED[fields[0]].pack(*fields) == raw


@ci
@given(
    st.integers(1, 2**40), st.lists(st.lists(itch_messages, min_size=1, max_size=5), min_size=1, max_size=5)
)
def test_mold_packets_give_back_every_message_in_sequence(first_seq, batches):
    rx, seq, want, got = itch.MoldReceiver(), first_seq, [], []
    for batch in batches:
        packet = itch.mold_packet(b"TEST000001", seq, batch)
        got += [(s, itch.DECODED[f[0]].pack(*f)) for s, f in rx.messages(packet, len(packet))]
        want += list(enumerate(batch, seq))
        seq += len(batch)
    assert got == want and rx.stats.gaps == 0 and rx.stats.malformed_packets == 0


@ci
@given(st.binary(max_size=300))
def test_mold_receiver_never_raises_and_never_reads_past_the_packet(packet):
    def run(buf):
        rx = itch.MoldReceiver()
        return list(rx.messages(buf, len(packet))), rx.stats

    exact = run(packet)
    assert run(bytearray(packet) + b"\xee" * 64) == exact


@ci
@given(st.binary(max_size=60))
def test_itch_decode_of_arbitrary_bytes_raises_only_value_error(data):
    try:
        itch.decode(data, 0, len(data))
    except ValueError:
        pass


@ci
@given(st.lists(itch_messages, max_size=10), st.binary(max_size=40))
def test_itch_files_round_trip_and_anything_else_is_an_itch_file_error(msgs, tail):
    data = b"".join(itch.MOLD_LENGTH.pack(len(m)) + m for m in msgs)
    assert list(itch.itch_file_messages(data)) == msgs
    try:
        list(itch.itch_file_messages(data + tail))
    except itch.ItchFileError:
        pass


# -- Binance-style JSON events --------------------------------------------------------------------
@ci
@given(st.integers(0, 10**16 - 1))
def test_price_text_then_parse_price_is_exact(units):
    assert parse_price(price_text(units)) == units


@ci
@given(st.integers(0, 2**32), st.integers(1, 80))
def test_published_depth_updates_decode_to_exactly_the_publishers_books(seed, steps):
    flow = SyntheticFlow(["AAPL", "MSFT"], seed=seed)
    pub = DepthPublisher(flow.books)
    l2 = {"AAPL": ({}, {}), "MSFT": ({}, {})}
    for i in range(steps):
        msg = flow.next_message(i)
        pub.touched(int.from_bytes(msg[1:3], "big"))
        for _, text in pub.events(i):
            ev = decode_event(text.encode())
            if event_kind(ev) != DEPTH_UPDATE:
                assert book_ticker(ev)[0] == ev["s"]
                continue
            symbol, first, last, bids, asks = depth_update(ev)
            assert first <= last
            for side, changes in zip(l2[symbol], (bids, asks), strict=True):
                for p, q in changes:
                    side.pop(p, None) if q == 0 else side.__setitem__(p, q)
    for book in flow.books.values():
        assert l2[book.symbol] == book.l2()
        snap = pub.snapshot(book.symbol)
        _, bids, asks = snapshot_levels(json.loads(json.dumps(snap)))
        assert (dict(bids), dict(asks)) == book.l2()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {}, optional={k: json_values for k in ("e", "s", "U", "u", "b", "a", "B", "A", "id", "status", "result")}
)


@ci
@given(st.one_of(event_like, json_values))
def test_any_json_value_is_an_event_or_one_feed_error(value):
    text = json.dumps(value).encode()
    try:
        msg = decode_event(text)
        kind = event_kind(msg)
        if kind == DEPTH_UPDATE:
            depth_update(msg)
        elif kind == ANSWER:
            snapshot_levels(msg.get("result"))
        else:
            book_ticker(msg)
    except WsFeedError:
        pass


@ci
@given(st.binary(max_size=200))
def test_decode_event_of_arbitrary_bytes_raises_only_feed_error(data):
    try:
        decode_event(data)
    except WsFeedError:
        pass


@ci
@given(json_values)
def test_levels_of_anything_is_a_list_of_levels_or_one_feed_error(value):
    try:
        out = levels(value)
    except WsFeedError:
        return
    assert all(type(p) is int and type(q) is int and p >= 0 and q >= 0 for p, q in out)


# -- the wire side (collectors/wire/) frames as these receivers do ------------------------------------
# `tickscope wire` may not import the pipeline (layers), so it has its own FIX and MoldUDP64 framing:
# these pin it to the venue's FixStream and the trader's MoldReceiver, byte for byte.
def _corrupt(raw: bytes, how: int) -> bytes:
    """A message made into one a receiver refuses or frames differently."""
    length_at = raw.index(b"\x019=") + 3
    length_end = raw.index(b"\x01", length_at)
    if how == 0:  # CheckSum value off by one
        return raw[:-4] + b"%03d\x01" % ((int(raw[-4:-1]) + 1) % 256)
    if how == 1:  # BodyLength far past the end (12 digits)
        return raw[:length_at] + b"999999999999" + raw[length_end:]
    if how == 2:  # BodyLength one short
        return raw[:length_at] + b"%d" % (int(raw[length_at:length_end]) - 1) + raw[length_end:]
    if how == 3:  # cut before its CheckSum
        return raw[: raw.rindex(b"10=")]
    if how == 4:  # a field without '=' (CheckSum made right again)
        bad = raw.replace(b"\x0135=", b"\x0135=\x01junk", 1)[:-7]
        bad = bad[:length_at] + b"%d" % (int(raw[length_at:length_end]) + 5) + bad[length_end:]
        return bad + b"10=%03d\x01" % F.checksum(bad)
    return raw


fix_pieces = st.one_of(
    st.builds(F.encode, msg_types, field_lists),
    st.builds(_corrupt, st.builds(F.encode, msg_types, field_lists), st.integers(0, 4)),
    st.binary(max_size=30),
    st.sampled_from([b"8=FIX", b"8=FIX.4.4\x019=", b"\x0110=", b"\x0110=123\x01", b"8=FIX.4.4\x019=5\x01"]),
)


@ci
@given(st.lists(fix_pieces, min_size=1, max_size=8), st.data())
def test_the_wire_side_takes_exactly_the_messages_the_venue_takes_however_the_segments_cut(pieces, data):
    from tickscope.collectors.wire import TcpStream, fix_refusal

    whole = b"".join(pieces)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(whole) - 1)), max_size=6))))
    chunks = [c for c in (whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)) if c]
    venue, tcp, wire = F.FixStream(), TcpStream({}), []
    tcp.segment(99, 0x02, b"", 0)
    taken = []
    seq = 100
    for chunk in chunks:
        taken += [m.raw for m in venue.feed(chunk) if isinstance(m, F.FixMessage)]
        tcp.segment(seq, 0x18, chunk, seq)
        seq += len(chunk)
        for _, frame, body in tcp.frames():
            assert fix_refusal(frame, body) == fix_refusal(frame)  # the shortcut decides as the full check
            wire += [] if fix_refusal(frame)[0] else [frame]
    assert wire == taken


@ci
@given(
    st.binary(max_size=40),
    st.lists(st.binary(max_size=12), max_size=4),
    st.integers(0, 6),
    st.binary(max_size=3),
)
def test_the_wire_side_takes_a_mold_packet_exactly_when_the_trader_does(session, messages, count, tail):
    import numpy as np

    from support import wire_synth as S
    from tickscope.collectors.wire import Capture, decode_headers, mold_messages

    body = b"".join(len(m).to_bytes(2, "big") + m for m in messages) + tail
    packet = (session + bytes(10))[:10] + (5).to_bytes(8, "big") + count.to_bytes(2, "big") + body
    rx = itch.MoldReceiver()
    trader = [seq for seq, _, _ in rx.packet(packet, len(packet))]
    frame = S.ethernet(S.ipv4("10.0.0.1", "10.0.0.2", 17, S.udp(1, 2, packet)))
    cap = Capture(frame + bytes(128), *(np.array([v], dtype=np.int64) for v in (1, 0, len(frame), len(frame))),
                  np.array([1], dtype=np.int32), "pcap-ns")  # fmt: skip
    counters: dict[str, int] = {}
    wire, _ = mold_messages(cap, decode_headers(cap, counters, []), {2}, counters, set())
    assert wire.tolist() == trader


@ci
@given(st.integers(1, 40), st.integers(1, 30), st.booleans(), st.randoms(use_true_random=False))
def test_a_datagram_in_fragments_of_any_size_and_order_reads_as_the_whole_datagram(units, count, v6, rng):
    """MoldUDP64 in IPv4 or IPv6 fragments of ``8 * units`` bytes, captured in any order: the same
    messages as the datagram sent whole, stamped when its first byte was captured."""
    import numpy as np

    from support import wire_synth as S
    from tickscope.collectors.wire import Capture, WireMatcher

    udp = S.udp(
        1, 2, itch.mold_packet(b"TEST000001", 7, [itch.order_delete(1, 0, 0, i) for i in range(count)])
    )
    if v6:
        frags = [S.ethernet(f, 0x86DD) for f in S.ipv6_fragments(17, udp, 8 * units)]
        whole = S.ethernet(S.ipv6(17, udp), 0x86DD)
    else:
        frags = [S.ethernet(f) for f in S.ipv4_fragments("10.0.0.1", "10.0.0.2", 17, udp, 8 * units)]
        whole = S.ethernet(S.ipv4("10.0.0.1", "10.0.0.2", 17, udp))
    order = list(range(len(frags)))
    rng.shuffle(order)

    def read(frames: list[bytes], stamps: list[int]):
        data = b"".join(frames)
        offs = np.cumsum([0] + [len(f) for f in frames[:-1]], dtype=np.int64)
        lens = np.array([len(f) for f in frames], dtype=np.int64)
        cap = Capture(data + bytes(128), np.array(stamps, dtype=np.int64), offs, lens, lens,
                      np.ones(len(frames), dtype=np.int32), "pcap-ns")  # fmt: skip
        m = WireMatcher({2}, {3})
        m.feed(cap)
        return m.finish()

    got = read([frags[i] for i in order], [1_000 + i for i in order])
    want = read([whole], [1_000])
    assert got.md_trace.tolist() == want.md_trace.tolist() == list(range(7, 7 + count))
    assert got.md_ts.tolist() == want.md_ts.tolist()
    assert got.counters.get("ip_datagrams_reassembled", 0) == (len(frags) > 1)
