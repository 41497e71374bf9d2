"""FIX session recovery (issue 20), for both traders: each scenario is played by a scripted
acceptor that speaks the real byte protocol over loopback TCP and chooses every MsgSeqNum it
sends; the trader under test is the real process (Python, or the Rust binary built by cargo),
fed market data over UDP that makes it send exactly one order per new symbol.

The rules are the FIX 4.4 session protocol as QuickFIX's session layer applies them (see
pipeline/fix_session.py). Waits are hang guards, never timings."""

import glob
import json
import re
import socket
import subprocess
import threading
import time

import pytest

from support import QUIET, free_port
from support.cli import run_cli
from support.native import rust_trader_binary
from support.pipeline import TRADER
from tickscope.collectors.session import Session
from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.fix_session import FixSession

GUARD_S = 60  # hang guard for every wait


@pytest.fixture(scope="module")
def rust_binary():
    return str(rust_trader_binary())


@pytest.fixture(scope="module")
def rust_tokio_argv():
    return [str(rust_trader_binary("tokio")), "--loop", "tokio"]


# rust: a cargo build; rust-tokio: the same session layer driven by the tokio loop
@pytest.fixture(params=["python", pytest.param("rust", marks=pytest.mark.slow),
                        pytest.param("rust-tokio", marks=pytest.mark.slow)])  # fmt: skip
def trader_argv(request):
    if request.param == "python":
        return TRADER
    if request.param == "rust-tokio":
        return request.getfixturevalue("rust_tokio_argv")
    return [request.getfixturevalue("rust_binary")]


class Feed:
    """ITCH over MoldUDP64 to the trader: ``provoke_orders(n)`` lists n new symbols, each with a
    lopsided book (900 bid against 100 offered), so the imbalance strategy sends one order each."""

    def __init__(self, port: int):
        self.port, self.seq, self.locate = port, 1, 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def provoke_orders(self, n: int) -> None:
        for _ in range(n):
            self.locate += 1
            loc, sym = self.locate, f"T{self.locate:03d}"
            msgs = [itch.stock_directory(loc, 0, 0, sym), itch.add_order(loc, 0, 0, 2 * loc, b"B", 900, sym, 1_000_000),
                    itch.add_order(loc, 0, 0, 2 * loc + 1, b"S", 100, sym, 1_000_100)]  # fmt: skip
            self.sock.sendto(itch.mold_packet(b"RECOVERY01", self.seq, msgs), ("127.0.0.1", self.port))
            self.seq += len(msgs)

    def end(self) -> None:
        self.sock.sendto(itch.mold_end_of_session(b"RECOVERY01", self.seq), ("127.0.0.1", self.port))
        self.sock.close()


class ScriptedAcceptor(threading.Thread):
    """Logs the trader on (141=Y answered with 141=Y), then plays ``script(self)``. Meanwhile a
    reader answers what any venue would: NewOrderSingle with ExecutionReports New + Canceled (IOC)
    while ``answer_orders``, and the trader's Logout with a Logout."""

    def __init__(self, script, feed: Feed, ring_dir):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(GUARD_S)
        self.port = self.server.getsockname()[1]
        self.script, self.feed, self.ring_dir = script, feed, ring_dir
        self.answer_orders = True
        self.handled_orders = 0  # orders the reader is done with: answered, or left unanswered
        self.out_seq = 1
        self.received: list[F.FixMessage] = []
        self.changed = threading.Condition()
        self.send_lock = threading.Lock()
        self.logout_sent = False
        self.error: BaseException | None = None
        self.script_done = threading.Event()
        self.conn: socket.socket | None = None

    # -- what a script uses ----------------------------------------------------------------------
    def send(self, msg_type: bytes, fields=(), seq: int | None = None, poss_dup: bool = False) -> bytes:
        """A message under the next MsgSeqNum, or under ``seq`` (which takes no new number)."""
        with self.send_lock:
            n = self.out_seq if seq is None else seq
            if seq is None:
                self.out_seq += 1
            header = [(F.SenderCompID, b"VENUE"), (F.TargetCompID, b"TICKSCOPE"), (F.MsgSeqNum, n)]
            now = F.utc_timestamp()
            header += [(F.PossDupFlag, b"Y"), (F.SendingTime, now), (F.OrigSendingTime, now)] if poss_dup else [
                (F.SendingTime, now)]  # fmt: skip
            raw = F.encode(msg_type, header + list(fields))
            if msg_type == F.LOGOUT:
                self.logout_sent = True
            self.conn.sendall(raw)
            return raw

    def wait_for(self, pred, what: str, start: int = 0) -> F.FixMessage:
        """The first message from the trader at index >= ``start`` that matches."""
        deadline = time.monotonic() + GUARD_S
        with self.changed:
            while True:
                for m in self.received[start:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the trader never sent {what}; got {[m.msg_type for m in self.received]}"
                    )
                self.changed.wait(min(left, 0.1))

    def sent_of(self, msg_type: bytes, start: int = 0) -> list[F.FixMessage]:
        with self.changed:
            return [m for m in self.received[start:] if m.msg_type == msg_type]

    def wait_orders(self, n: int) -> list[F.FixMessage]:
        """The trader's first ``n`` orders, once the reader is done with them (their
        ExecutionReports sent, if ``answer_orders``): a script that renumbers (``out_seq``) right
        after would otherwise race the reader's ExecutionReports onto the new numbers."""
        self.wait_for(lambda _: len(self.sent_of(F.NEW_ORDER_SINGLE)) >= n and self.handled_orders >= n,
                      f"{n} orders")  # fmt: skip
        return self.sent_of(F.NEW_ORDER_SINGLE)

    def stats(self) -> dict | None:
        paths = glob.glob(str(self.ring_dir / "trader.*.stats.json"))
        try:
            return json.loads(open(paths[0]).read()) if paths else None
        except (OSError, ValueError):
            return None  # between the writer's write and rename

    # -- the thread ------------------------------------------------------------------------------
    def run(self):
        try:
            self.conn, _ = self.server.accept()
        except OSError:
            self.script_done.set()
            return
        threading.Thread(target=self._read, daemon=True).start()
        try:
            logon = self.wait_for(lambda m: m.msg_type == F.LOGON, "a Logon")
            assert logon.get(F.ResetSeqNumFlag) == b"Y"
            self.send(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, logon.get(F.HeartBtInt)),
                                (F.ResetSeqNumFlag, b"Y")])  # fmt: skip
            self.script(self)
        except BaseException as e:  # noqa: BLE001 - reported by the test, after the cleanup
            self.error = e
        self.script_done.set()

    def _read(self):
        stream = F.FixStream()
        while True:
            try:
                data = self.conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            for m in stream.feed(data):
                if not isinstance(m, F.FixMessage):
                    continue
                with self.changed:
                    self.received.append(m)
                    self.changed.notify_all()
                try:
                    self._answer(m)
                except OSError:
                    return
                if m.msg_type == F.NEW_ORDER_SINGLE:
                    with self.changed:
                        self.handled_orders += 1
                        self.changed.notify_all()

    def _answer(self, m: F.FixMessage) -> None:
        if m.msg_type == F.NEW_ORDER_SINGLE and self.answer_orders:
            for exec_type, leaves in ((b"0", 100), (b"4", 0)):
                self.send(F.EXECUTION_REPORT, [(F.OrderID, b"V1"), (F.ExecID, 1), (F.ExecType, exec_type),
                          (F.OrdStatus, exec_type), (F.ClOrdID, m.get(F.ClOrdID)), (F.Symbol, m.get(F.Symbol)),
                          (F.Side, m.get(F.Side)), (F.OrderQty, 100), (F.LastQty, 0), (F.LastPx, 0),
                          (F.LeavesQty, leaves), (F.CumQty, 0), (F.AvgPx, 0)])  # fmt: skip
        elif m.msg_type == F.LOGOUT:
            if not self.logout_sent:
                self.send(F.LOGOUT)
            self.conn.shutdown(socket.SHUT_WR)


def play(trader_argv, tmp_path, script, *args: str):
    """Runs the trader against ``script``; returns (acceptor, exit code, stderr, stats)."""
    md_port = free_port(socket.SOCK_DGRAM)
    feed = Feed(md_port)
    acc = ScriptedAcceptor(script, feed, tmp_path)
    acc.start()
    env = {**__import__("os").environ, "TICKSCOPE_RING_DIR": str(tmp_path)}
    # --quotes one: the scripts count the trader's orders as one per provoked signal (a market
    # maker's bid and ask would double every MsgSeqNum the scripts name).
    proc = subprocess.Popen([*trader_argv, "--md-port", str(md_port), "--fix-port", str(acc.port), "--quotes", "one",
                             *args], env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        acc.script_done.wait(GUARD_S)
        feed.end()
        _, err = proc.communicate(timeout=GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        acc.server.close()
        if acc.conn is not None:
            acc.conn.close()
    if acc.error is not None:
        raise AssertionError(f"{acc.error}\ntrader stderr:\n{err}") from acc.error
    assert "Traceback" not in err and "panicked" not in err, err
    (path,) = glob.glob(str(tmp_path / "trader.*.stats.json"))
    return acc, proc.returncode, err, json.loads(open(path).read())


def seq(m: F.FixMessage) -> int:
    return m.int(F.MsgSeqNum)


# -- the scenarios ----------------------------------------------------------------------------------
def test_a_resend_request_is_answered_with_a_gap_fill_numbered_from_begin_seq_no(trader_argv, tmp_path):
    """QuickFIX's ResendRequest(7=2, 16=0) once stalled both traders for good: their GapFill carried
    their *next* number (34=25 36=26), so the acceptor queued everything after it."""
    found = {}

    def script(acc):
        acc.answer_orders = False
        acc.feed.provoke_orders(3)
        acc.wait_orders(3)
        acc.send(F.RESEND_REQUEST, [(F.BeginSeqNo, 2), (F.EndSeqNo, 0)])
        found["gap_fill"] = acc.wait_for(lambda m: m.msg_type == F.SEQUENCE_RESET, "a SequenceReset")
        with acc.changed:
            at = acc.received.index(found["gap_fill"])
            found["last_before"] = max(seq(m) for m in acc.received[:at])
        acc.answer_orders = True
        acc.feed.provoke_orders(2)
        found["later"] = acc.wait_orders(5)[3:]

    acc, code, err, stats = play(trader_argv, tmp_path, script)
    gf = found["gap_fill"]
    assert seq(gf) == 2 and gf.get(F.GapFillFlag) == b"Y", gf  # MsgSeqNum = BeginSeqNo
    assert gf.int(F.NewSeqNo) == found["last_before"] + 1 == 5  # NewSeqNo = the trader's next number
    assert gf.get(F.PossDupFlag) == b"Y" and gf.get(F.OrigSendingTime), gf
    assert [seq(m) for m in found["later"]] == [5, 6]  # and it goes on from there
    # The three orders under 2..4 never reach the venue (IOC orders are gap-filled, not resent).
    assert (
        stats["orders_gap_filled"] == 3
        and stats["orders_acked"] == 2
        and stats["orders_in_flight_at_end"] == 0
    )
    assert "3 orders (MsgSeqNum 2..4) gap-filled at the venue's ResendRequest" in err
    assert stats["fix"]["resend_requests_received"] == 1 and stats["fix"]["gap_fills_sent"] == 1
    assert code == 0, err


def test_a_gap_is_asked_for_once_and_what_follows_waits_for_the_fill(trader_argv, tmp_path):
    found = {}

    def script(acc):
        acc.out_seq += 3  # 2, 3 and 4 lost on the way
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"after-gap")])
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"after-gap-2")])
        found["resend"] = acc.wait_for(lambda m: m.msg_type == F.RESEND_REQUEST, "a ResendRequest")
        found["early"] = [m for m in acc.sent_of(F.HEARTBEAT) if m.get(F.TestReqID)]
        acc.send(F.SEQUENCE_RESET, [(F.GapFillFlag, b"Y"), (F.NewSeqNo, 5)], seq=2, poss_dup=True)
        for text in (b"after-gap", b"after-gap-2"):
            acc.wait_for(
                lambda m, t=text: m.msg_type == F.HEARTBEAT and m.get(F.TestReqID) == t, f"Heartbeat {text}"
            )

    acc, code, err, stats = play(trader_argv, tmp_path, script)
    rr = found["resend"]
    assert (rr.int(F.BeginSeqNo), rr.int(F.EndSeqNo)) == (2, 0)
    assert found["early"] == [], "the queued TestRequests are answered after the gap is filled, not before"
    assert len(acc.sent_of(F.RESEND_REQUEST)) == 1  # one request per gap
    answers = [m.get(F.TestReqID) for m in acc.sent_of(F.HEARTBEAT) if m.get(F.TestReqID)]
    assert answers == [b"after-gap", b"after-gap-2"]  # in their order
    fix = stats["fix"]
    assert (fix["gaps"], fix["queued"], fix["gap_fills_received"], fix["resend_requests_sent"]) == (
        1,
        2,
        1,
        1,
    )
    assert code == 0, err


def test_poss_dup_duplicates_are_ignored_and_counted_and_a_too_low_number_without_it_ends_the_session(
    trader_argv, tmp_path
):
    found = {}

    def script(acc):
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"first")])  # 2
        acc.wait_for(lambda m: m.get(F.TestReqID) == b"first", "Heartbeat first")
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"dup")], seq=2, poss_dup=True)  # a resend of 2
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"after-dup")])  # 3
        acc.wait_for(lambda m: m.get(F.TestReqID) == b"after-dup", "Heartbeat after-dup")
        acc.send(F.HEARTBEAT, seq=3)  # the trader expects 4, and this is no resend
        found["logout"] = acc.wait_for(lambda m: m.msg_type == F.LOGOUT, "a Logout")

    acc, code, err, stats = play(trader_argv, tmp_path, script)
    assert not [m for m in acc.received if m.get(F.TestReqID) == b"dup"], "a duplicate is not processed again"
    assert not acc.sent_of(F.REJECT) and stats["fix"]["poss_dup_ignored"] == 1
    assert found["logout"].get(F.Text) == b"MsgSeqNum too low, expecting 4 but received 3"
    assert stats["fix"]["seq_too_low"] == 1 and "MsgSeqNum too low" in stats["kill_switch"]
    assert code == 0, err  # no order was left unanswered


def test_sequence_reset_reset_moves_the_expected_number_and_a_lower_one_is_refused(trader_argv, tmp_path):
    found = {}

    def script(acc):
        acc.send(F.SEQUENCE_RESET, [(F.NewSeqNo, 20)], seq=2)  # Reset mode (no 123): no sequence check
        acc.out_seq = 20
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"after-reset")])
        acc.wait_for(lambda m: m.get(F.TestReqID) == b"after-reset", "Heartbeat after-reset")
        acc.send(F.SEQUENCE_RESET, [(F.NewSeqNo, 5), (F.GapFillFlag, b"N")], seq=21)  # backwards: refused
        found["reject"] = acc.wait_for(lambda m: m.msg_type == F.REJECT, "a Reject")
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"still-21")], seq=21)
        acc.wait_for(lambda m: m.get(F.TestReqID) == b"still-21", "Heartbeat still-21")

    acc, code, err, stats = play(trader_argv, tmp_path, script)
    rej = found["reject"]
    assert (rej.int(F.SessionRejectReason), rej.int(F.RefTagID)) == (5, F.NewSeqNo), rej
    assert not acc.sent_of(F.RESEND_REQUEST) and stats["fix"]["sequence_resets_received"] == 2
    assert code == 0, err


def test_a_logon_with_reset_seq_num_flag_restarts_both_sides_at_one(trader_argv, tmp_path):
    found = {}

    def script(acc):
        acc.feed.provoke_orders(1)
        acc.wait_orders(1)
        mark = len(acc.received)
        acc.out_seq = 1
        acc.send(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, 30), (F.ResetSeqNumFlag, b"Y")])
        found["logon"] = acc.wait_for(lambda m: m.msg_type == F.LOGON, "a Logon", start=mark)
        acc.send(F.TEST_REQUEST, [(F.TestReqID, b"after-reset")])  # 2
        found["hb"] = acc.wait_for(lambda m: m.get(F.TestReqID) == b"after-reset", "Heartbeat after-reset")
        acc.feed.provoke_orders(1)
        found["order"] = acc.wait_orders(2)[1]

    acc, code, err, stats = play(trader_argv, tmp_path, script)
    logon = found["logon"]
    assert seq(logon) == 1 and logon.get(F.ResetSeqNumFlag) == b"Y"  # the reset answered in kind
    assert (seq(found["hb"]), seq(found["order"])) == (2, 3)
    assert not acc.sent_of(F.RESEND_REQUEST) and not acc.sent_of(F.REJECT)
    assert (
        stats["fix"]["seq_num_resets"] == 2 and stats["orders_acked"] == 2
    )  # ours at Logon, then the venue's
    assert code == 0, err


def test_a_logout_during_a_resend_is_answered_at_once_and_the_unanswered_order_named(trader_argv, tmp_path):
    found = {}

    def script(acc):
        acc.answer_orders = False
        acc.feed.provoke_orders(1)
        acc.wait_orders(1)
        acc.out_seq += 2
        acc.send(F.HEARTBEAT)  # 4: the trader asks for 2..
        acc.wait_for(lambda m: m.msg_type == F.RESEND_REQUEST, "a ResendRequest")
        acc.send(F.LOGOUT, [(F.Text, b"going away")])  # 5, the gap still open
        found["logout"] = acc.wait_for(lambda m: m.msg_type == F.LOGOUT, "a Logout")

    acc, code, err, stats = play(trader_argv, tmp_path, script)
    assert stats["kill_switch"] == "FIX session ended: peer logged out: going away"
    assert stats["orders_in_flight_at_end"] == 1
    assert code == 3, err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"trader: 1 of 1 orders never answered \(last MsgSeqNum sent \d+, "
                        r"last the venue processed unknown\): exit 3", last), last  # fmt: skip


def test_orders_the_acceptor_stops_answering_are_named_once_and_fail_the_exit_code(trader_argv, tmp_path):
    """836 sent, 20 acked, 816 'in flight at end', exit 0 and no warning, before."""

    def script(acc):
        acc.feed.provoke_orders(1)
        acc.wait_orders(1)
        acc.answer_orders = False
        acc.feed.provoke_orders(3)
        acc.wait_orders(4)
        deadline = time.monotonic() + GUARD_S
        while not ((acc.stats() or {}).get("order_stalls")) and time.monotonic() < deadline:
            acc.send(F.HEARTBEAT)  # the venue is alive; the orders are not answered
            time.sleep(0.2)

    acc, code, err, stats = play(trader_argv, tmp_path, script, "--ack-wait", "1")
    warnings = [line for line in err.splitlines() if "stalled" in line]
    assert len(warnings) == 1, err
    assert re.fullmatch(
        r"trader: warning: order session stalled: 3 orders unanswered for over 1 s while the venue "
        r"is still sending; last MsgSeqNum sent \d+, last the venue processed 2",
        warnings[0],
    ), warnings
    assert stats["order_stalls"] == 1 and stats["orders_acked"] == 1 and stats["orders_in_flight_at_end"] == 3
    assert code == 3 and re.search(r"3 of 4 orders never answered .*processed 2\): exit 3$", err.strip()), err


# -- the venue's side, sans I/O ---------------------------------------------------------------------
def test_the_venue_resends_its_execution_reports_and_gap_fills_its_admin_messages():
    """A venue keeps what it sent a trader (its fills): a ResendRequest gets them again under
    their own numbers with PossDupFlag and OrigSendingTime; admin messages are gap-filled."""
    trader, venue = FixSession("TRADER", "VENUE"), FixSession("VENUE", "TRADER", keep_sent=10)
    venue.on_message(F.parse(trader.logon()))
    sent = [venue.build(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, 30)])]
    sent += [venue.build(F.EXECUTION_REPORT, [(F.ClOrdID, b"TS%d" % i), (F.ExecType, b"0")]) for i in (1, 2)]
    sent.append(venue.build(F.HEARTBEAT))
    sent.append(venue.build(F.EXECUTION_REPORT, [(F.ClOrdID, b"TS3"), (F.ExecType, b"0")]))
    trader.on_message(F.parse(sent[0]))
    got = trader.on_message(F.parse(sent[4]))  # 2..4 lost: queued, and asked for
    (rr,) = [F.parse(r) for r in got.replies]
    assert rr.msg_type == F.RESEND_REQUEST and not got.apps
    answer = venue.on_message(rr)
    again = [F.parse(r) for r in answer.replies]
    assert [(m.msg_type, seq(m)) for m in again] == [(F.EXECUTION_REPORT, 2), (F.EXECUTION_REPORT, 3),
                                                     (F.SEQUENCE_RESET, 4), (F.EXECUTION_REPORT, 5)]  # fmt: skip
    for m, original in zip(again[:2], sent[1:3], strict=True):
        assert m.get(F.PossDupFlag) == b"Y" and m.get(F.OrigSendingTime) == F.parse(original).get(
            F.SendingTime
        )
    assert again[2].int(F.NewSeqNo) == 5 and again[2].get(F.GapFillFlag) == b"Y"
    apps = [a for m in again for a in trader.on_message(m).apps]
    # 2 and 3 arrive in sequence, the GapFill skips 4, the resent 5 is a duplicate of the queued one.
    assert [a.get(F.ClOrdID) for a in apps] == [b"TS1", b"TS2", b"TS3"]
    assert trader.in_seq == 6 and trader.stats.poss_dup_ignored == 1 and not trader.queue


def test_a_profile_whose_orders_go_unanswered_fails_naming_them(tmp_path):
    """The same stall seen from `tickscope profile --fix-connect`: the counters hold the orders in
    flight and the run fails with the trader's last line, however the run was stopped."""

    def keep_alive_without_answers(acc):
        acc.answer_orders = False
        deadline = time.monotonic() + GUARD_S
        try:
            while time.monotonic() < deadline:
                acc.send(F.HEARTBEAT)
                time.sleep(0.2)
        except OSError:
            pass  # the trader is gone

    acc = ScriptedAcceptor(keep_alive_without_answers, None, tmp_path)
    acc.start()
    try:
        r = run_cli("profile", "--fix-connect", f"127.0.0.1:{acc.port}", "--duration", "3s", "--rate", "2k",
                    *QUIET, "--out", str(tmp_path / "s"), timeout=300)  # fmt: skip
    finally:
        acc.server.close()
        if acc.conn is not None:
            acc.conn.close()
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(r"tickscope profile: trader: \d+ of \d+ orders never answered \(last MsgSeqNum sent \d+, "
                     r"last the venue processed unknown\): exit 3", r.stderr), r.stderr  # fmt: skip
    counters = Session.load(tmp_path / "s").meta["counters"]
    assert counters["orders_sent"] == counters["orders_in_flight_at_end"] > 0, counters
    assert f"+ {counters['orders_in_flight_at_end']:,} in flight at end" in r.stdout
