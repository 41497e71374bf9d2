"""Replay of an ITCH 5.0 file at its own pace x ``--speed``: the venue's send plan and the
timestamps it puts on the wire (its intended send times), never the test's wall-clock time."""

import json
import re
import socket
import subprocess

import pytest

from conftest import need_tool
from support import QUIET, free_port
from support.cli import run_cli
from support.pipeline import VENUE
from support.replay import GAPS_NS, T0, recorded
from tickscope.collectors.session import Session
from tickscope.pipeline import itch
from tickscope.pipeline.replay import parse_speed, plan, timestamp


def test_the_plan_spans_the_file_divided_by_the_speed_exactly():
    msgs = recorded()
    span = sum(GAPS_NS)
    for speed in (1.0, 2.0, 8.0):
        p = plan(msgs, speed)
        assert p.file_span_ns == span and p.intended_span_ns == round(span / speed)
        offsets = [o for o, _ in p.packets]
        assert offsets == sorted(offsets) and sum(len(m) for _, m in p.packets) == len(msgs)
    fastest = plan(msgs, None)
    assert {o for o, _ in fastest.packets} == {0} and fastest.intended_span_ns == 0


def test_backwards_and_missing_timestamps_are_counted_and_sent_with_the_message_before():
    msgs = recorded()
    msgs.insert(5, itch.add_order(1, 0, T0 - 5, 99, b"S", 1, "AAPL", 1))  # goes backwards
    msgs.insert(9, b"Zshort")  # no timestamp
    p = plan(msgs, 1.0)
    assert p.backwards == 1 and p.untimed == 1 and p.file_span_ns == sum(GAPS_NS)
    assert "1 timestamps went backwards, 1 messages have no timestamp" in p.problems("f.itch")
    assert plan(recorded(), 1.0).problems("f.itch") is None


@pytest.mark.parametrize(
    "text, factor", [("1x", 1.0), ("2x", 2.0), ("8X", 8.0), ("0.5x", 0.5), ("max", None)]
)
def test_speed_parses(text, factor):
    assert parse_speed(text) == factor


@pytest.mark.parametrize("text", ["", "0x", "-2x", "fast", "2y"])
def test_bad_speed_is_refused(text):
    with pytest.raises(ValueError, match="--speed"):
        parse_speed(text)


def _venue(tmp_path, src, speed):
    port = free_port(
        socket.SOCK_DGRAM
    )  # the packets land in a closed port: only the sender's plan matters here
    out = tmp_path / f"sent-{speed}.itch"
    r = subprocess.run([*VENUE, "--md-port", str(port), "--replay", str(src),
                        "--speed", speed, "--write-itch", str(out), "--duration", "120", "--logout-grace", "0"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    stats = json.loads(re.search(r"published (\{.*\})", r.stderr).group(1).replace("'", '"'))
    return [timestamp(m) for m in itch.read_itch_file(out)], stats, r.stderr


@pytest.mark.parametrize("speed, factor", [("1x", 1), ("2x", 2)])
def test_the_venue_stamps_each_packet_with_the_file_pace_times_the_speed(tmp_path, speed, factor):
    """The timestamps on the wire are the intended send times: their gaps are the file's gaps
    divided by the speed (to the rounding nanosecond), so at 1x the replay spans the file's own
    0.3 s and at 2x half of it, however late the loaded host actually sent."""
    src = tmp_path / "day.itch"
    msgs = recorded()
    itch.write_itch_file(src, msgs)
    sent, stats, _ = _venue(tmp_path, src, speed)
    assert len(sent) == len(msgs)
    file_ts = [timestamp(m) for m in msgs]
    for i in range(1, len(msgs)):
        expected = (file_ts[i] - file_ts[0]) / factor
        assert abs((sent[i] - sent[0]) - expected) <= 1, (i, sent[i] - sent[0], expected)
    assert stats["file_span_s"] == pytest.approx(sum(GAPS_NS) / 1e9)
    assert stats["intended_span_s"] == pytest.approx(sum(GAPS_NS) / 1e9 / factor)


def test_a_file_without_timestamps_is_refused_and_backwards_ones_are_counted(tmp_path):
    flat = tmp_path / "flat.itch"
    itch.write_itch_file(flat, [itch.add_order(1, 0, 0, i, b"B", 1, "AAPL", 1) for i in range(5)])
    port = free_port(socket.SOCK_DGRAM)
    r = subprocess.run([*VENUE, "--md-port", str(port), "--replay",
                        str(flat), "--speed", "1x", "--duration", "60"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "no timestamps to pace by" in r.stderr and "Traceback" not in r.stderr
    back = tmp_path / "back.itch"
    msgs = recorded()
    msgs.insert(4, itch.add_order(1, 0, T0 - 1, 77, b"S", 1, "AAPL", 1))
    itch.write_itch_file(back, msgs)
    sent, stats, err = _venue(tmp_path, back, "max")
    assert stats["backwards"] == 1 and "1 timestamps went backwards" in err and len(sent) == len(msgs)


def test_profile_refuses_a_speed_without_a_replay_or_a_bad_speed(tmp_path):
    for args, text in ((["--speed", "2x"], "--speed paces a --replay"),
                       (["--replay", str(tmp_path / "x.itch"), "--speed", "fast"], "")):  # fmt: skip
        if args[0] == "--replay":
            itch.write_itch_file(tmp_path / "x.itch", recorded())
            text = "--speed 'fast'"
        r = run_cli("profile", "--duration", "1s", *args)
        assert r.returncode == 2 and text in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_profile_says_what_the_replay_cannot_pace_before_it_starts(tmp_path):
    flat = tmp_path / "flat.itch"
    itch.write_itch_file(flat, [itch.add_order(1, 0, 0, i, b"B", 1, "AAPL", 1) for i in range(5)])
    r = run_cli(
        "profile", "--duration", "1s", "--replay", str(flat), "--speed", "1x", "--out", str(tmp_path / "s")
    )
    assert r.returncode == 2 and "no timestamps to pace by" in r.stderr and r.stderr.count("\n") == 1, (
        r.stderr
    )
    assert not (tmp_path / "s").exists()
    back = tmp_path / "back.itch"
    msgs = recorded()
    msgs.insert(4, itch.add_order(1, 0, T0 - 1, 77, b"S", 1, "AAPL", 1))
    itch.write_itch_file(back, msgs)
    r = run_cli("profile", "--duration", "3s", *QUIET, "--replay", str(back),
                "--speed", "max", "--out", str(tmp_path / "b"), timeout=180)  # fmt: skip
    assert "warning: replay" in r.stderr and "1 timestamps went backwards" in r.stderr, r.stderr


@pytest.mark.parametrize("trader", ["python", pytest.param("rust", marks=pytest.mark.slow)])  # rust: cargo
def test_under_replay_the_venue_trades_the_instruments_the_file_lists(tmp_path, trader):
    """The venue matched orders against its own synthetic symbols, so every order of a replayed
    file's instruments came back 'unknown symbol' (26 sent, 0 acked): order_rtt was all rejects."""
    if trader == "rust":
        need_tool("cargo", install="apt-get install cargo")
    symbols = ["ZVZZT", "ZXZZT", "ZWZZT", "QQQX", "ZJZZT"]  # none of the venue's synthetic ones
    msgs, ts = [], T0
    for locate, symbol in enumerate(symbols, 1):  # a lopsided book each: the strategy buys the offer
        ts += 1_000_000
        msgs += [itch.stock_directory(locate, 0, ts, symbol), itch.add_order(locate, 0, ts, 2 * locate, b"B", 900,
                 symbol, 1_000_000), itch.add_order(locate, 0, ts, 2 * locate + 1, b"S", 100, symbol, 1_000_100)]  # fmt: skip
    itch.write_itch_file(tmp_path / "day.itch", msgs)
    r = run_cli("profile", "--trader", trader, "--quotes", "both", "--replay", str(tmp_path / "day.itch"), "--speed", "max", "--duration",
                "20s", *QUIET, "--out", str(tmp_path / "s"), timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    session = Session.load(tmp_path / "s")
    stats = session.meta["subject_stats"]["trader"]
    legs = stats.get("orders_by_leg")
    if legs:  # the Python trader makes markets: bid and ask on each, a hedge on every 4th (on venue2)
        assert legs["bid"] == legs["ask"] == len(symbols) and legs["hedge"] == len(symbols) // 4, legs
        assert stats["orders_sent"] == sum(legs.values()) and stats["orders_rejected"] == 0, stats
        # Quotes at the touch of an IOC venue never fill; the hedge buys the offer of the file's book.
        assert stats["orders_acked"] == stats["orders_sent"] and stats["fills"] == legs["hedge"]
    else:
        assert stats["orders_sent"] == len(symbols) and stats["orders_rejected"] == 0, stats
        assert stats["orders_acked"] == len(symbols) and stats["fills"] == len(symbols)
    assert session.summary()["order_rtt"]["count"] == stats["orders_sent"]  # one ack per order, every leg
