"""Peers and packets no venue or exchange should send, and the runner that puts a trader (Python or
Rust) against them: a FIX acceptor that logs the trader on and then sends garbage, malformed
MoldUDP64/ITCH, a WebSocket server that sends bad events. Waits are hang guards, not timings."""

import asyncio
import json
import os
import socket
import subprocess
import threading
import time

from support import free_port
from support.pipeline import trader_stats
from tickscope.pipeline import fix as F
from tickscope.pipeline import itch
from tickscope.pipeline.fix_session import FixSession


# -- FIX framing by hand ----------------------------------------------------------------------------
def frame(body: bytes, body_length: bytes | None = None, checksum: bytes | None = None) -> bytes:
    """A message around ``body`` with the given BodyLength and CheckSum texts (correct if None)."""
    head = b"8=FIX.4.4\x019=" + (body_length if body_length is not None else b"%d" % len(body)) + b"\x01"
    msg = head + body
    return msg + b"10=" + (checksum if checksum is not None else b"%03d" % F.checksum(msg)) + b"\x01"


def body_with_small_checksum() -> tuple[bytes, int]:
    """A heartbeat body whose message CheckSum is below 100, so that it fits '+NN', ' NN', 'N_N'."""
    for i in range(1000):
        body = b"35=0\x0149=VENUE\x0156=TRADER\x0134=2\x01112=%d\x01" % i
        value = F.checksum(frame(body)[:-7])
        if value < 100:
            return body, value
    raise AssertionError("no body with a small checksum")


# -- a FIX acceptor that sends garbage ------------------------------------------------------------
class HostileVenue(threading.Thread):
    """A FIX acceptor that logs the trader on, then sends what no venue should; it answers orders
    (New, then Canceled: IOC) only when ``answer_orders``."""

    def __init__(self, hostile: list[bytes], answer_orders: bool = False):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(30)
        self.port = self.server.getsockname()[1]
        self.hostile = hostile
        self.answer_orders = answer_orders
        self.received: list = []
        self.hostile_sent = threading.Event()
        self.done = threading.Event()

    def run(self):
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        conn.settimeout(0.2)
        session, stream = FixSession("VENUE", "TICKSCOPE"), F.FixStream()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            for item in stream.feed(data):
                self.received.append(item)
                if isinstance(item, F.FixMessage) and item.msg_type == F.LOGON and not session.logged_on:
                    session.on_message(item)
                    conn.sendall(session.build(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, 30)]))
                    for raw in self.hostile:
                        conn.sendall(raw if isinstance(raw, bytes) else raw(session))
                    self.hostile_sent.set()
                elif (
                    isinstance(item, F.FixMessage)
                    and item.msg_type == F.NEW_ORDER_SINGLE
                    and self.answer_orders
                ):
                    for exec_type in (b"0", b"4"):
                        conn.sendall(session.build(F.EXECUTION_REPORT, [(F.ClOrdID, item.get(F.ClOrdID)),
                                     (F.ExecType, exec_type), (F.OrdStatus, exec_type), (F.LastQty, 0)]))  # fmt: skip
        conn.close()
        self.server.close()
        self.done.set()

    def rejects(self):
        return [m for m in self.received if isinstance(m, F.FixMessage) and m.msg_type == F.REJECT]


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_trader_against_hostile_peers(trader_argv: list[str], hostile: list, ring_dir, timeout_s: float = 60):
    """A trader (Python or Rust: ``trader_argv`` without its ports) logged on to a venue that sends
    ``hostile``, then fed ``send_hostile_mold``; returns (venue, finished trader, its stderr) once
    the feed's end of session has stopped it. Waits are hang guards, not timings."""
    venue = HostileVenue(hostile)
    venue.start()
    md_port = free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir))
    # --quotes one: the checks count the one order the hostile feed's one signal makes.
    trader = subprocess.Popen([*trader_argv, "--md-port", str(md_port), "--fix-port", str(venue.port), "--quotes",
                               "one"], env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: any(m.msg_type == F.HEARTBEAT and m.get(F.TestReqID) == b"still-there"
                             for m in venue.received if isinstance(m, F.FixMessage)) or trader.poll() is not None,
                 what="the trader's answer to the TestRequest after the garbage")  # fmt: skip
        assert trader.poll() is None, trader.stderr.read()
        send_hostile_mold(md_port)
        trader.wait(timeout_s)
    finally:
        if trader.poll() is None:
            trader.kill()
            trader.wait()
        venue.server.close()
    return venue, trader, trader.stderr.read()


def hostile_fix_peer() -> list:
    """What the hostile venue sends a trader after Logon (both traders get the same)."""
    lenient, value = body_with_small_checksum()
    return [
        frame(b"35=0\x0149=VENUE\x0156=TICKSCOPE\x0134=x\x01"),  # non-numeric MsgSeqNum
        frame(lenient, checksum=b" %02d" % value),  # bad checksums
        frame(lenient, checksum=b"%d_%d" % divmod(value, 10)),
        # A well-framed ExecutionReport whose LastPx no float() should see (OverflowError before).
        lambda s: s.build(
            F.EXECUTION_REPORT,
            [(F.ClOrdID, b"TS1"), (F.ExecType, b"F"), (F.LastQty, 1), (F.LastPx, b"1e999")],
        ),  # fmt: skip
        b"\x00garbage that is not FIX at all\x01",
        lambda s: s.build(F.TEST_REQUEST, [(F.TestReqID, b"still-there")]),
    ]


def assert_hostile_fix_and_udp_answered(venue, tmp_path) -> None:
    """Each fault of ``hostile_fix_peer`` and ``send_hostile_mold`` answered and counted, the trader
    still trading."""
    venue.done.wait(10)
    rejects = venue.rejects()
    assert [(r.int(F.RefTagID), r.int(F.SessionRejectReason)) for r in rejects if r.get(F.RefTagID)] == [
        (F.MsgSeqNum, 6), (F.LastPx, 6)]  # fmt: skip
    assert sum(b"CheckSum is not 3 digits" in r.get(F.Text) for r in rejects) == 2
    stats = trader_stats(tmp_path)
    assert stats["fix"]["invalid_fields"] == 2 and stats["fix"]["garbage"] == 3
    assert stats["kill_switch"] is None, "garbage from the venue is answered, not a reason to stop trading"
    feed = stats["feed"]
    assert feed["messages"] == 3 and feed["malformed_packets"] == 3 and feed["malformed_messages"] == 2
    assert feed["end_of_session"]
    # The one order the feed made is never answered by this venue: counted, named, exit 3.
    assert stats["orders_sent"] == stats["orders_in_flight_at_end"] == 1


def assert_exit_unanswered(trader, err: str) -> None:
    """The trader's exit contract when orders are left unanswered: exit 3, the last line says so."""
    assert trader.returncode == 3, err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "orders never answered (last MsgSeqNum sent "
            f"{last_sent(err)}, last the venue processed unknown): exit 3"
        )
    ), err


def last_sent(err: str) -> str:
    return err.rsplit("last MsgSeqNum sent ", 1)[1].split(",", 1)[0]


# -- malformed market data ----------------------------------------------------------------------
def send_hostile_mold(md_port: int) -> None:
    """Malformed MoldUDP64/ITCH a feed handler must count and survive (the Python and the Rust
    trader alike), ending with a good end-of-session so the trader stops by itself."""
    good = itch.add_order(1, 0, 0, 1, b"B", 100, "AAPL", 1_000_000)
    packets = [
        itch.mold_packet(b"TEST000001", 1, [good, b""]),  # a zero-length message: IndexError once
        b"\x00" * 7,  # shorter than the header
        itch.mold_packet(b"TEST000001", 3, [good])[:-5],  # framing says more than it holds
        itch.mold_packet(b"TEST000001", 4, [b"Z" * 11]),  # unknown type
        itch.mold_packet(b"TEST000001", 5, [itch.add_order(1, 0, 0, 2, b"S", 0, "AAPL", 1_000_100)]),
        itch.mold_packet(b"TEST000001", 6, [itch.order_delete(1, 0, 0, 2)]),
        # Sequence numbers crossing 2^64: the Python trader died in its ring's commit once.
        itch.mold_packet(b"TEST000001", (1 << 64) - 1, [good, good]),
        itch.mold_end_of_session(b"TEST000001", 7),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for p in packets:
            udp.sendto(p, ("127.0.0.1", md_port))


class BadEventsServer(threading.Thread):
    """A real WebSocket server: a snapshot for AAPL (an error for any other symbol), then the events
    ``bad`` no exchange should send, one good AAPL event, and a close."""

    def __init__(self, port: int, bad: list[str]):
        super().__init__(daemon=True)
        self.port, self.bad = port, bad
        self.ready = threading.Event()

    def run(self):
        asyncio.run(self.main())

    async def main(self):
        from websockets.asyncio.server import serve

        async def handler(ws):
            async for text in ws:
                req = json.loads(text)
                if req["method"] == "SUBSCRIBE":
                    await ws.send(json.dumps({"result": None, "id": req["id"]}))
                elif req["params"]["symbol"] == "AAPL":
                    await ws.send(json.dumps({"id": req["id"], "status": 200, "result": {
                        "lastUpdateId": 10, "bids": [["100.00", "5"]], "asks": [["100.10", "5"]]}}))  # fmt: skip
                    for bad in self.bad:
                        await ws.send(bad)
                    await ws.send('{"e":"depthUpdate","s":"AAPL","U":11,"u":11,"b":[["100.00","7"]],"a":[]}')
                    await ws.close()
                    return
                else:
                    await ws.send(json.dumps({"id": req["id"], "status": 400, "error": {"code": -1121}}))

        async with serve(handler, "127.0.0.1", self.port, max_size=None):
            self.ready.set()
            await asyncio.sleep(60)
