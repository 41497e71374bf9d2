"""Coverage-guided fuzzing of FIX 4.4: the parser, the stream framing and both session ends.

    pip install atheris
    python fuzz/fuzz_fix.py -max_total_time=300

One input drives, in turn:
- ``fix.parse`` on the raw bytes: only ``FixError`` may come out;
- the venue's acceptor (``venue.FixConnection``: framing, session, order entry) fed the bytes
  as a TCP stream, after a valid Logon when the first byte is odd; everything it answers must be
  valid FIX that our own parser accepts;
- the trader's end (``FixSession`` + ``fix.execution_fields`` + the order manager), logged on to a
  venue that then sends these bytes.
When the second byte is odd the rest is a list of message bodies split at newlines, each framed
with a correct BodyLength and CheckSum, so that the fuzzer reaches the session and application
logic instead of spending its time on checksums.
"""

import threading

import atheris
from _harness import run

with atheris.instrument_imports():
    from tickscope.pipeline import fix as F
    from tickscope.pipeline import venue
    from tickscope.pipeline.fix_session import FixSession
    from tickscope.pipeline.oms import OrderManager
    from tickscope.pipeline.risk import RiskChecker, RiskLimits
    from tickscope.pipeline.venue import FixConnection, OrderEntry, SyntheticFlow

venue.log = lambda line: None  # the acceptor's one-line reports: thousands per second here
FLOW = SyntheticFlow(["AAPL", "MSFT"], seed=1)
for _ in range(300):  # a book to match against
    FLOW.next_message(0)


def framed(body: bytes) -> bytes:
    msg = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
    return msg + b"10=%03d\x01" % F.checksum(msg)


def body_of(raw: bytes) -> bytes:
    return raw[raw.index(b"\x0135=") + 1 : raw.rindex(b"10=")]


def assert_valid_fix(out: bytes) -> None:
    for item in F.FixStream().feed(out):
        if isinstance(item, F.FixError):
            raise AssertionError(f"we sent invalid FIX: {item}; all: {out!r}")


def acceptor(stream: bytes, log_on: bool) -> None:
    conn = FixConnection(OrderEntry(FLOW, threading.Event()))
    client = FixSession("TRADER", "VENUE")
    chunks = ([client.logon()] if log_on else []) + [stream[i : i + 97] for i in range(0, len(stream), 97)]
    for chunk in chunks:
        out, close = conn.received(chunk)
        assert_valid_fix(out)
        if close:
            return


def initiator(stream: bytes) -> None:
    session = FixSession("TRADER", "VENUE")
    session.logon()
    oms = OrderManager(RiskChecker(RiskLimits()))
    for i in range(3):
        oms.new_order("AAPL", b"B", 100, 1_000_000 + i, i, 0)
    venue = FixSession("VENUE", "TRADER")
    logon_reply = venue.build(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, 30)])
    for item in F.FixStream().feed(logon_reply + stream):
        if isinstance(item, F.FixError):
            got = session.on_error(item)
        else:
            got = session.on_message(item)
            for app in [m for m in got.apps if m.msg_type == F.EXECUTION_REPORT]:
                try:
                    clordid, exec_type, last_qty, last_px = F.execution_fields(app)
                    oms.on_execution(clordid, exec_type, last_qty, last_px)
                except F.FieldError as e:
                    got.replies += session.on_field_error(app, e).replies
        assert_valid_fix(b"".join(got.replies))
        if got.close:
            return


def test_one_input(data: bytes) -> None:
    try:
        F.parse(data)
    except F.FixError:
        pass
    if len(data) < 2:
        return
    stream = data[2:]
    if data[1] & 1:
        stream = b"".join(framed(body) for body in stream.split(b"\n"))
    acceptor(stream, log_on=bool(data[0] & 1))
    initiator(stream)


def seeds() -> list[bytes]:
    trader, venue = FixSession("TRADER", "VENUE"), FixSession("VENUE", "TRADER")
    order = F.OrderTemplate("TRADER", "VENUE")
    raws = [
        trader.logon(),
        trader.build(F.HEARTBEAT),
        trader.build(F.TEST_REQUEST, [(F.TestReqID, b"T1")]),
        order.encode(trader.next_seq(), b"O1", b"AAPL", b"1", 100, b"1000.0000"),
        trader.build(
            F.ORDER_CANCEL_REQUEST, [(F.OrigClOrdID, b"O1"), (F.ClOrdID, b"O1C"), (F.Symbol, b"AAPL")]
        ),
        trader.build(F.RESEND_REQUEST, [(F.BeginSeqNo, 1), (F.EndSeqNo, 0)]),
        trader.build(F.SEQUENCE_RESET, [(F.GapFillFlag, b"Y"), (F.NewSeqNo, 9)]),
        venue.build(
            F.EXECUTION_REPORT,
            [(F.ClOrdID, b"TS1"), (F.ExecType, b"F"), (F.LastQty, 100), (F.LastPx, b"100.5")],
        ),
        trader.logout("bye"),
    ]
    hostile = [
        raws[1].replace(b"34=2", b"34=x"),
        raws[1].replace(b"\x0110=", b"\x0110= ")[:-2] + b"\x01",
        raws[1].replace(b"9=", b"9=+"),
    ]
    out = [b"\x01\x00" + b"".join(raws), b"\x00\x00" + b"".join(raws + hostile)]
    out.append(b"\x01\x01" + b"\n".join(body_of(r) for r in raws[1:]))
    return out


if __name__ == "__main__":
    run("fix", seeds(), test_one_input)
