"""The venue and trader as real processes over loopback: no mocks of either side."""

import os
import signal
import socket
import subprocess
import time

import pytest

from support import QUIET, free_port
from support.cli import run_cli, start_cli
from support.pipeline import TRADER, VENUE, start_venue
from tickscope.collectors.session import Session
from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.book import BookSet
from tickscope.pipeline.fix_session import FixSession


@pytest.fixture
def venue():
    procs = []

    def start(*args):
        proc, md, fx = start_venue(*args)
        procs.append(proc)
        return proc, md, fx

    yield start
    for p in procs:
        p.kill()
        p.wait()


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.session = FixSession("TRADER", "VENUE", heartbeat_s=30)
        self.stream = F.FixStream()

    def send(self, raw):
        self.sock.sendall(raw)

    def read(self, n=1, timeout=5.0):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            data = self.sock.recv(65536)
            if not data:
                break
            for item in self.stream.feed(data):
                out.append(item if isinstance(item, F.FixError) else item)
        return out


def logged_on(port):
    c = Client(port)
    c.send(c.session.logon())
    (reply,) = c.read(1)
    c.session.on_message(reply)
    assert reply.msg_type == F.LOGON and c.session.logged_on
    return c


def test_orders_are_acknowledged_and_ioc_remainders_cancelled(venue):
    _, _, fix_port = venue("--rate", "2000", "--symbols", "2")
    c = logged_on(fix_port)
    time.sleep(0.5)  # let the venue's book fill up
    tmpl = F.OrderTemplate("TRADER", "VENUE")
    c.send(
        c.session.sent(tmpl.encode(c.session.next_seq(), b"O1", b"AAPL", b"1", 100, b"1000.0000"))
    )  # crosses
    c.send(
        c.session.sent(tmpl.encode(c.session.next_seq(), b"O2", b"AAPL", b"1", 100, b"1.0000"))
    )  # cannot fill
    reports = [m for m in c.read(4) if m.msg_type == F.EXECUTION_REPORT]
    by_order = {}
    for m in reports:
        by_order.setdefault(m.get(F.ClOrdID), []).append(m.get(F.ExecType))
    assert by_order[b"O1"][0] == b"0" and by_order[b"O1"][1] in (b"F",)
    assert by_order[b"O2"] == [b"0", b"4"]
    for m in reports:  # every answer round-trips the validating parser: valid BodyLength and CheckSum
        assert F.parse(m.raw).fields == m.fields


def test_venue_rejects_garbage_and_bad_checksums_and_keeps_the_session(venue):
    _, _, fix_port = venue("--rate", "1000")
    c = logged_on(fix_port)
    good = c.session.build(F.HEARTBEAT)
    c.send(good[:-4] + b"000\x01")
    (reject,) = c.read(1)
    assert reject.msg_type == F.REJECT and b"CheckSum" in reject.get(F.Text)
    c.session.on_message(reject)
    c.send(c.session.build(F.TEST_REQUEST, [(F.TestReqID, b"still-there")]))
    (resend,) = c.read(1)  # the rejected message left a hole in our sequence: the venue asks for it
    assert resend.msg_type == F.RESEND_REQUEST and resend.int(F.BeginSeqNo) == 2
    # It holds the TestRequest until a GapFill closes the hole (one covering the TestRequest too
    # would skip it: QuickFIX drops what a GapFill covers).
    c.send(c.session.build(F.SEQUENCE_RESET, [(F.GapFillFlag, b"Y"), (F.NewSeqNo, 3)], seq=2))
    (hb,) = c.read(1)
    assert hb.msg_type == F.HEARTBEAT and hb.get(F.TestReqID) == b"still-there"


def test_sequence_number_too_low_ends_the_session(venue):
    _, _, fix_port = venue("--rate", "1000")
    c = logged_on(fix_port)
    c.session.out_seq = 1
    c.send(c.session.build(F.HEARTBEAT))
    (logout,) = c.read(1)
    assert logout.msg_type == F.LOGOUT and b"MsgSeqNum too low" in logout.get(F.Text)


def test_unknown_symbol_gets_an_execution_report_reject(venue):
    _, _, fix_port = venue("--rate", "1000")
    c = logged_on(fix_port)
    c.send(
        c.session.sent(
            F.OrderTemplate("TRADER", "VENUE").encode(c.session.next_seq(), b"Z1", b"NOPE", b"1", 1, b"1")
        )
    )
    (rep,) = c.read(1)
    assert rep.get(F.ExecType) == b"8" and rep.get(F.Text) == b"unknown symbol"


def receive_feed(sock, until_end=True, timeout=10.0):
    rx, books, buf = itch.MoldReceiver(), BookSet(), bytearray(65536)
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not rx.stats.end_of_session:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            continue
        for _, fields in rx.messages(buf, n):
            books.apply(fields)
    return rx, books


def l2(books):
    return {b.symbol: b.l2() for b in books.books.values()}


def test_replaying_the_venues_own_itch_file_rebuilds_the_same_book(tmp_path):
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx_sock.bind(("127.0.0.1", 0))
    port = rx_sock.getsockname()[1]
    live = subprocess.Popen([*VENUE, "--md-port", str(port), "--rate", "5000",
                             "--duration", "1", "--write-itch", str(tmp_path / "day.itch")])  # fmt: skip
    rx_live, books_live = receive_feed(rx_sock)
    assert live.wait(10) == 0
    assert rx_live.stats.gaps == 0 and rx_live.stats.messages > 1000
    replay = subprocess.Popen([*VENUE, "--md-port", str(port), "--rate",
                               "20000", "--replay", str(tmp_path / "day.itch"), "--duration", "5"])  # fmt: skip
    try:
        rx_replay, books_replay = receive_feed(rx_sock)
    finally:
        replay.wait(10)
    assert rx_replay.stats.messages == rx_live.stats.messages
    assert l2(books_replay) == l2(books_live) and l2(books_live)
    from_file = BookSet()
    for m in itch.read_itch_file(tmp_path / "day.itch"):
        from_file.apply(itch.decode(m, 0, len(m)))
    assert l2(from_file) == l2(books_live)


def test_venue_refuses_a_replay_file_that_is_not_itch(tmp_path):
    (tmp_path / "x.itch").write_text("GET / HTTP/1.1\r\n\r\n")
    out = subprocess.run([*VENUE, "--md-port", "9", "--replay",
                          str(tmp_path / "x.itch")], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2 and "not an ITCH 5.0 file" in out.stderr and "Traceback" not in out.stderr


def test_trader_gives_up_on_a_venue_that_never_answers_logon():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    out = subprocess.run([*TRADER, "--md-port", str(free_port(socket.SOCK_DGRAM)),
                          "--fix-port", str(silent.getsockname()[1]), "--logon-timeout", "1"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2 and "never answered Logon" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("loop", ["busy", "asyncio"])
def test_profile_of_the_bundled_pipeline_measures_every_stage(tmp_path, loop):
    out = run_cli("profile", "--duration", "4s", "--rate", "5k", "--loop", loop, *QUIET, "--out", str(tmp_path / "s"), timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    s = Session.load(tmp_path / "s")
    assert s.stages == ["wire_to_read", "feed", "book", "strategy", "risk", "leg_wait", "encode", "send", "order_rtt"]  # fmt: skip
    summary = s.summary()
    for stage in s.stages + ["tick_to_trade", "tick_to_decision"]:
        assert summary[stage]["count"] > 0, stage
    stats = s.meta["subject_stats"]["trader"]
    assert stats["feed_gaps"] == 0 and stats["orders_sent"] > 0
    # Every order on the wire is accounted for: answered, or still in flight when the trader stopped.
    assert (
        stats["orders_sent"]
        == stats["orders_acked"] + stats["orders_rejected"] + stats["orders_in_flight_at_end"]
    )
    assert stats["orders_rejected"] == 0 and stats["orders_acked"] > 0
    # The default pipeline is the market maker: bid and ask legs, hedges on the second venue, each
    # order one tick-to-trade sample.
    legs = stats["orders_by_leg"]
    assert stats["quotes"] == "both" and min(legs.values()) > 0 and legs.keys() == {"bid", "ask", "hedge"}
    assert summary["tick_to_trade"]["count"] == stats["orders_sent"] == sum(legs.values())
    assert s.meta["counters"]["dropped_ring_full"] == 0 and s.meta["counters"]["traces_incomplete"] <= 2
    # The stages up to the trade point add up to tick-to-trade exactly, trace by trace.
    for trace in s.slowest:
        ts = {st["point"]: st["ts_ns"] for st in trace["stamps"]}
        assert ts["order.tx"] - ts["md.rx"] == trace["tick_to_trade_ns"]
    # No orphans: nothing of this run still runs (other runs on the host may: scope by port).
    port = s.meta["command"].split("--md-port ", 1)[1].split()[0]
    hedge_port = s.meta["options"]["pipeline"]["hedge_fix_port"]
    for pattern in (f"--md-port {port}", f"--fix-port {hedge_port}"):  # the hedge venue has no md port
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        assert left == [], pattern


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_killed_or_hung_up_profile_stops_the_pipeline_and_saves(tmp_path, sig):
    """A closed terminal (SIGHUP) or `kill` (SIGTERM) of tickscope itself: the venue and trader run
    in their own process groups, so tickscope must stop them, then save what it has."""
    proc = start_cli(
        "profile", "--duration", "60s", "--rate", "5k", *QUIET, "--out", str(tmp_path / "s"), columns=False
    )
    log = tmp_path / "s" / "latency.hlog"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") > 12):
        time.sleep(0.2)  # a few intervals recorded
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "interrupted" and s.summary()["feed"]["count"] > 0
    ports = s.meta["command"].split("--md-port ", 1)[1].split()[0]
    time.sleep(0.5)
    left = subprocess.run(
        ["pgrep", "-f", f"--md-port {ports}"], capture_output=True, text=True
    ).stdout.split()
    assert left == [], "venue and trader were stopped"


@pytest.mark.parametrize("loop", ["busy", "asyncio"])
def test_a_trader_stopped_mid_flow_counts_exactly_what_the_venue_received(tmp_path, loop):
    """Stopped while orders flow, even with SIGINT inherited as ignored (a background job), the
    trader counts every order the acceptor received and accounts for each: acked, rejected, or
    in flight at end. The venue's own count is the reference."""
    import glob
    import json

    venue, md_port, fix_port = start_venue("--rate", "5000", "--wait-logon")
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(tmp_path))
    trader = subprocess.Popen([*TRADER, "--md-port", str(md_port),
                               "--fix-port", str(fix_port), "--loop", loop], env=env, stderr=subprocess.PIPE,
                              text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        stats_file = None
        deadline = time.monotonic() + 60  # hang guard: wait for a stats file that shows orders
        while time.monotonic() < deadline:
            found = glob.glob(str(tmp_path / "trader.*.stats.json"))
            if found and json.loads(open(found[0]).read() or "{}").get("orders_sent", 0) > 20:
                stats_file = found[0]
                break
            time.sleep(0.1)
        assert stats_file, "the trader sent orders"
        trader.send_signal(signal.SIGINT)  # honoured although inherited as ignored
        err = trader.communicate(timeout=60)[1]
    finally:
        trader.kill()
        venue.send_signal(signal.SIGTERM)
        venue_err = venue.communicate(timeout=30)[1]
    assert trader.returncode == 0 and "Traceback" not in err, err
    stats = json.loads(open(stats_file).read())
    received = int(venue_err.split("orders received ", 1)[1].split(",")[0])
    assert stats["orders_sent"] == received > 20
    assert (
        stats["orders_sent"]
        == stats["orders_acked"] + stats["orders_rejected"] + stats["orders_in_flight_at_end"]
    )
    assert "FIX session closed: peer logged out: trader stopping" in venue_err, "a clean Logout, answered"


def test_the_launcher_subscribes_the_trader_to_the_venues_symbols():
    """The launcher (collectors side) runs the pipeline without importing it, so it keeps the
    venue's symbol list itself: the trader must subscribe to the streams the venue publishes."""
    from tickscope.collectors.run.launch import BUNDLED_SYMBOLS
    from tickscope.pipeline.venue import DEFAULT_SYMBOLS

    assert BUNDLED_SYMBOLS == DEFAULT_SYMBOLS


def test_the_pipelines_ports_are_picked_below_the_ephemeral_range_and_apart_from_a_seeded_random():
    """The bundled venue binds the ports a moment after they are picked: one ``bind(0)`` hands out
    is one an outgoing connection elsewhere on the host may take first (two runs at once did).
    Below the kernel's ephemeral range, free, and not drawn from ``random``'s module state (a run
    that seeds it would pick what another seeded run picks)."""
    import random

    from tickscope.collectors.run.launch import free_port as pick

    lo, _ = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        picked = set()
        for _ in range(20):
            random.seed(7)
            port = pick(kind)
            assert port < lo
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))  # free
            picked.add(port)
        assert len(picked) > 1
