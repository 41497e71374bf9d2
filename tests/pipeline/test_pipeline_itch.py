"""ITCH 5.0 / MoldUDP64: encode-decode round trips, gap and damage counting, ITCH files."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickscope.pipeline import itch

u16, u32, u64 = st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
ts48 = st.integers(0, 2**48 - 1)


@given(
    u16,
    u16,
    ts48,
    u64,
    st.sampled_from([b"B", b"S"]),
    u32,
    st.text("ABCDEFGHIJ", min_size=1, max_size=8),
    u32,
)
def test_add_order_round_trips_with_the_spec_layout(locate, tracking, ts, ref, side, shares, symbol, price):
    raw = itch.add_order(locate, tracking, ts, ref, side, shares, symbol, price)
    assert len(raw) == 36 and raw[:1] == b"A"
    f = itch.decode(raw, 0, len(raw))
    assert (f[1], f[2], itch.timestamp_of(f), f[5], f[6], f[7], f[8].strip(), f[9]) == (
        locate, tracking, ts, ref, side, shares, symbol.encode(), price)  # fmt: skip


def test_every_message_has_its_spec_length():
    ts = 34_200_000_000_000
    msgs = {
        b"S": itch.system_event(0, 0, ts, b"O"), b"R": itch.stock_directory(1, 0, ts, "AAPL"),
        b"A": itch.add_order(1, 0, ts, 1, b"B", 100, "AAPL", 1_000_000), b"E": itch.order_executed(1, 0, ts, 1, 10, 5),
        b"X": itch.order_cancel(1, 0, ts, 1, 10), b"D": itch.order_delete(1, 0, ts, 1),
        b"U": itch.order_replace(1, 0, ts, 1, 2, 100, 1), b"P": itch.trade(1, 0, ts, 1, b"B", 1, "AAPL", 1, 9),
    }  # fmt: skip
    spec = {b"S": 12, b"R": 39, b"A": 36, b"E": 31, b"X": 23, b"D": 19, b"U": 35, b"P": 44}
    assert {k: len(v) for k, v in msgs.items()} == spec


def packet(seq, msgs):
    return itch.mold_packet(b"TEST000001", seq, msgs)


def add(ref):
    return itch.add_order(1, 0, 0, ref, b"B", 100, "X", 10_000)


def test_receiver_yields_messages_in_order_and_counts_gaps():
    rx = itch.MoldReceiver()
    got = []
    for seq, msgs in [(1, [add(1), add(2)]), (3, [add(3)]), (7, [add(7), add(8)]), (2, [add(2)])]:
        p = packet(seq, msgs)
        got += [s for s, _ in rx.messages(p, len(p))]
    assert got == [1, 2, 3, 7, 8]
    assert rx.stats.gaps == 1 and rx.stats.gap_messages == 3 and rx.stats.stale_packets == 1


def test_damaged_packets_are_counted_not_raised():
    rx = itch.MoldReceiver()
    good = packet(1, [add(1), add(2)])
    wrong_count = good[:18] + struct.pack(">H", 3) + good[20:]
    list(rx.messages(wrong_count, len(wrong_count)))
    assert rx.stats.malformed_packets == 1 and "header says 3" in rx.last_error
    short = b"\x00" * 5
    list(rx.messages(short, len(short)))
    assert rx.stats.malformed_packets == 2
    unknown = packet(10, [b"Z" + b"\x00" * 10])
    wrong_len = packet(11, [add(4)[:30]])
    for p in (unknown, wrong_len):
        assert list(rx.messages(p, len(p))) == []
    assert rx.stats.malformed_messages == 2 and "expected 36" in rx.last_error


def test_heartbeats_and_end_of_session():
    rx = itch.MoldReceiver()
    for p in (itch.mold_heartbeat(b"S" * 10, 1), itch.mold_end_of_session(b"S" * 10, 1)):
        assert list(rx.messages(p, len(p))) == []
    assert rx.stats.heartbeats == 1 and rx.stats.end_of_session


def test_itch_file_round_trip_and_refusal_of_other_files(tmp_path):
    msgs = [add(1), itch.order_delete(1, 0, 5, 1)]
    assert itch.write_itch_file(tmp_path / "f.itch", msgs) == 2
    assert list(itch.read_itch_file(tmp_path / "f.itch")) == msgs
    (tmp_path / "notes.txt").write_text("hello, this is not market data\n")
    with pytest.raises(itch.ItchFileError, match="not an ITCH 5.0 file"):
        list(itch.read_itch_file(tmp_path / "notes.txt"))
    (tmp_path / "cut.itch").write_bytes((tmp_path / "f.itch").read_bytes()[:-3])
    with pytest.raises(itch.ItchFileError, match="runs past the end"):
        list(itch.read_itch_file(tmp_path / "cut.itch"))
