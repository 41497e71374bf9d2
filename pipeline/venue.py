"""The bundled exchange simulator: market data out (ITCH 5.0 over MoldUDP64/UDP, or Binance-style
WebSocket streams), FIX 4.4 order entry in.

    python -m tickscope.pipeline.venue --md-port 40000 --fix-port 40001 --rate 20000
    python -m tickscope.pipeline.venue --feed ws --ws-port 40002 --fix-port 40001 --rate 5000

Market data comes from its own order-level book model (adds, cancels, deletes, executions,
replaces around a random-walk mid for a few symbols) or from ``--replay`` of an ITCH 5.0 file.
Each packet's messages carry the packet's *intended* send time as their ITCH timestamp, so a
receiver can tell the load generator's own stalls from its own (coordinated omission).

Orders arrive over FIX 4.4 (one session at a time); IOC limit orders are matched against the
venue's book: ExecutionReport New, then Fill (or partial fill) and Cancel of the remainder.
Fills do not change the published book: the feed stays a pure function of the seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import fix as F
from . import itch
from . import replay as replay_pace
from .binance import DepthPublisher
from .book import BookSet, OrderBook
from .fix_session import FixSession
from .loadgen import LoadModel

SESSION = b"TICKSCOPE1"
DEFAULT_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOG", "TSLA", "AMD"]


def ns_since_midnight(realtime_ns: int) -> int:
    return realtime_ns % 86_400_000_000_000


class SyntheticFlow:
    """An order-level market for a few symbols, as a stream of ITCH messages."""

    def __init__(self, symbols: list[str], seed: int):
        self.rng = random.Random(seed)
        self.symbols = symbols
        self.books = {i + 1: OrderBook(s) for i, s in enumerate(symbols)}
        self.mids = {i + 1: 100_0000 + 50_0000 * i for i in range(len(symbols))}  # $100, $150, ...
        self.next_ref = 1
        self.next_match = 1
        # The FIX thread matches against these books, the WebSocket thread snapshots them.
        self.lock = threading.RLock()

    def preamble(self, ts: int) -> list[bytes]:
        msgs = [itch.system_event(0, 0, ts, b"O")]
        for locate, book in self.books.items():
            msgs.append(itch.stock_directory(locate, 0, ts, book.symbol))
        return msgs

    def next_message(self, ts: int) -> bytes:
        rng = self.rng
        locate = rng.randrange(1, len(self.books) + 1)
        book = self.books[locate]
        with self.lock:
            if rng.random() < 0.02:
                self.mids[locate] += rng.choice((-100, 100))
            n = len(book.orders)
            r = rng.random()
            if n < 40 or r < 0.45:
                return self._add(locate, book, ts)
            ref = rng.choice(list(book.orders)) if n < 200 else next(iter(book.orders))
            side, price, shares = book.orders[ref]
            if r < 0.60:
                cut = max(1, shares // 2)
                book.cancel(ref, cut)
                return itch.order_cancel(locate, 0, ts, ref, cut)
            if r < 0.80:
                book.delete(ref)
                return itch.order_delete(locate, 0, ts, ref)
            if r < 0.90:
                qty = max(1, shares // 3)
                book.execute(ref, qty)
                self.next_match += 1
                return itch.order_executed(locate, 0, ts, ref, qty, self.next_match)
            new_ref = self.next_ref
            self.next_ref += 1
            new_price = self._price(locate, side)
            book.replace(ref, new_ref, shares, new_price)
            return itch.order_replace(locate, 0, ts, ref, new_ref, shares, new_price)

    def _price(self, locate: int, side: bytes) -> int:
        k = self.rng.randint(1, 6) * 100
        return self.mids[locate] - k if side == b"B" else self.mids[locate] + k

    def _add(self, locate: int, book: OrderBook, ts: int) -> bytes:
        side = b"B" if self.rng.random() < 0.5 else b"S"
        price = self._price(locate, side)
        shares = self.rng.randint(1, 10) * 100
        ref = self.next_ref
        self.next_ref += 1
        book.add(ref, side, price, shares)
        return itch.add_order(locate, 0, ts, ref, side, shares, book.symbol, price)

    def locate_of(self, symbol: str) -> int | None:
        for locate, book in self.books.items():
            if book.symbol == symbol:
                return locate
        return None


class ReplayMarket:
    """The market of a replayed ITCH file, as the venue has published it so far: its instruments
    are the file's (stock directory 'R' messages) and orders match against the books its messages
    built, so an order for a replayed symbol is traded, not rejected as unknown."""

    def __init__(self):
        self.bookset = BookSet()
        self.books = self.bookset.books
        self.by_symbol: dict[str, int] = {}
        self.lock = threading.RLock()  # the FIX thread matches against the books the publisher builds

    def published(self, msgs: list[bytes]) -> None:
        with self.lock:
            for msg in msgs:
                try:
                    fields = itch.decode(msg, 0, len(msg))
                except ValueError:  # sent as it is, counted by the trader's feed handler; no book change
                    continue
                if fields is None:
                    continue
                self.bookset.apply(fields)
                if fields[0] == b"R":
                    self.by_symbol[self.bookset.symbols[fields[1]]] = fields[1]

    def locate_of(self, symbol: str) -> int | None:
        return self.by_symbol.get(symbol)


class FixConnection:
    """One order-entry connection, sans I/O: FIX bytes in, (bytes to send, close) out.

    The acceptor's thread owns the socket; the fuzzer (fuzz/fuzz_fix.py) drives this directly.
    Whatever the peer sends, the answer is FIX (Reject, Logout) or a disconnect, never an exception.
    """

    KEEP_SENT = 10_000  # application messages kept for resending (bounded: memory stays flat)

    def __init__(self, orders: OrderEntry):
        self.orders = orders
        self.stream = F.FixStream()
        self.session: FixSession | None = None
        self.log_lines = 0

    def received(self, data: bytes) -> tuple[bytes, bool]:
        out: list[bytes] = []
        for item in self.stream.feed(data):
            if isinstance(item, F.FixError):
                self._log(f"FIX garbage from peer: {item}")
                if self.session is not None:
                    out += self.session.on_error(item).replies
                continue
            if self.session is None:
                if item.msg_type != F.LOGON:
                    self._log("FIX: first message is not Logon: disconnecting")
                    return b"", True
                sender, target = comp_id(item.get(F.TargetCompID)), comp_id(item.get(F.SenderCompID))
                if sender is None or target is None:
                    self._log("FIX: Logon without printable SenderCompID/TargetCompID: disconnecting")
                    return b"", True
                # HeartBtInt: checked by the session. ExecutionReports are kept for a ResendRequest:
                # a venue resends what a trader missed (its fills), it does not gap-fill them.
                self.session = FixSession(sender, target, keep_sent=self.KEEP_SENT)
            got = self.session.on_message(item)
            out += got.replies
            for app in got.apps:
                out += self.orders.application(self.session, app)
            if got.close:
                self._log(f"FIX session closed: {got.reason}")
                return b"".join(out), True
        return b"".join(out), False

    def timer(self) -> tuple[bytes, bool]:
        if self.session is None:
            return b"", False
        t = self.session.timer()
        return b"".join(t.replies), t.close

    def _log(self, line: str) -> None:
        self.log_lines += 1  # a peer sending garbage in a loop must not flood the log
        if self.log_lines <= 20 or self.log_lines % 1000 == 0:
            log(line + (" (further lines rate-limited)" if self.log_lines == 20 else ""))


class FixAcceptor(threading.Thread):
    """One FIX 4.4 connection at a time, on a blocking socket with a short timeout."""

    def __init__(self, port: int, flow: SyntheticFlow, logged_on: threading.Event, stop: threading.Event,
                 logon_timeout_s: float = 10.0, ack_delay_s: float = 0.0):  # fmt: skip
        super().__init__(daemon=True, name="fix-acceptor")
        self.stop = stop
        self.logon_timeout_s = logon_timeout_s
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(4)
        self.server.settimeout(0.2)
        self.entry = OrderEntry(flow, logged_on, ack_delay_s)
        self.sessions = 0
        self.idle = threading.Event()  # set while no FIX session is connected
        self.idle.set()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            self.sessions += 1
            self.idle.clear()
            try:
                self._serve(conn)
            except OSError as e:
                log(f"FIX connection lost: {e}")
            except Exception as e:  # noqa: BLE001 - one peer must never stop the acceptor
                log(f"FIX connection dropped after an internal error ({type(e).__name__}: {e})")
            finally:
                conn.close()
                self.idle.set()
        self.server.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.2)
        fix = FixConnection(self.entry)
        # One connection at a time: one that never logs on must not keep the next one out.
        logon_deadline = time.monotonic() + self.logon_timeout_s
        while not self.stop.is_set():
            if fix.session is None and time.monotonic() > logon_deadline:
                log(f"FIX: no Logon within {self.logon_timeout_s:g} s: disconnecting")
                return
            try:
                data = conn.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                return
            out, close = fix.received(data) if data else (b"", False)
            if not close:
                more, close = fix.timer()
                out += more
            if out:
                conn.sendall(out)
            if close:
                return


class OrderEntry:
    """The venue's order handling: IOC limit orders matched against the flow's books."""

    def __init__(self, flow: SyntheticFlow, logged_on: threading.Event, ack_delay_s: float = 0.0):
        self.flow, self.logged_on = flow, logged_on
        self.ack_delay_s = ack_delay_s  # this venue's latency profile: matching engine time per order
        self.orders = 0
        self.exec_id = 0

    def application(self, session: FixSession, msg: F.FixMessage) -> list[bytes]:
        t = msg.msg_type
        if t == F.LOGON:
            out = [session.build(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, session.heartbeat_s)]
                                 + ([(F.ResetSeqNumFlag, b"Y")] if msg.get(F.ResetSeqNumFlag) == b"Y" else []))]  # fmt: skip
            self.logged_on.set()
            return out
        if t == F.NEW_ORDER_SINGLE:
            self.orders += 1
            if self.ack_delay_s:
                time.sleep(self.ack_delay_s)
            return self._new_order(session, msg)
        if t == F.ORDER_CANCEL_REQUEST:
            return [session.build(F.ORDER_CANCEL_REJECT, [(F.OrderID, b"NONE"), (F.ClOrdID, msg.get(F.ClOrdID, b"")),
                                   (F.OrigClOrdID, msg.get(F.OrigClOrdID, b"")), (F.OrdStatus, b"4"),
                                   (434, b"1"), (102, b"1"), (F.Text, b"IOC orders are already done")])]  # fmt: skip
        if t in (F.LOGOUT, F.REJECT):
            return []
        return [session.reject(f"unsupported MsgType {t.decode(errors='replace')}", msg.int(F.MsgSeqNum))]

    def _report(self, session, msg, exec_type: bytes, status: bytes, cum: int, leaves: int,
                last_qty: int = 0, last_px: bytes = b"0", extra=()) -> bytes:  # fmt: skip
        self.exec_id += 1
        return session.build(F.EXECUTION_REPORT, [
            (F.OrderID, b"V" + msg.get(F.ClOrdID, b"")), (F.ExecID, self.exec_id), (F.ExecType, exec_type),
            (F.OrdStatus, status), (F.ClOrdID, msg.get(F.ClOrdID, b"")), (F.Symbol, msg.get(F.Symbol, b"")),
            (F.Side, msg.get(F.Side, b"")), (F.OrderQty, msg.get(F.OrderQty, b"0")), (F.LastQty, last_qty),
            (F.LastPx, last_px), (F.LeavesQty, leaves), (F.CumQty, cum), (F.AvgPx, last_px if cum else b"0"),
            (F.TransactTime, F.utc_timestamp()), *extra])  # fmt: skip

    def _new_order(self, session: FixSession, msg: F.FixMessage) -> list[bytes]:
        required = (F.ClOrdID, F.Symbol, F.Side, F.OrderQty, F.OrdType, F.TransactTime)
        missing = [tag for tag in required if msg.get(tag) is None]
        symbol = (msg.get(F.Symbol) or b"").decode(errors="replace")
        locate = self.flow.locate_of(symbol)
        qty, price = _or(msg.int, F.OrderQty, 0), _or(F.parse_price, msg.get(F.Price, b"0"), -1)
        reason = (f"missing required tags {missing}" if missing else "unknown symbol" if locate is None
                  else "bad quantity" if qty <= 0 else "bad price" if price < 0
                  else "only limit orders" if msg.get(F.OrdType) != b"2"
                  else "bad side" if msg.get(F.Side) not in (b"1", b"2") else None)  # fmt: skip
        if reason:
            return [
                self._report(session, msg, b"8", b"8", 0, 0, extra=[(F.OrdRejReason, 99), (F.Text, reason)])
            ]
        out = [self._report(session, msg, b"0", b"0", 0, qty)]
        with self.flow.lock:
            book = self.flow.books[locate]
            if msg.get(F.Side) == b"1":
                best = book.asks.best()
                fill = min(qty, book.asks.levels[best][0]) if best is not None and best <= price else 0
            else:
                best = book.bids.best()
                fill = min(qty, book.bids.levels[best][0]) if best is not None and best >= price else 0
        if fill:
            px = F.price_text(best)
            out.append(
                self._report(session, msg, b"F", b"2" if fill == qty else b"1", fill, qty - fill, fill, px)
            )
        if fill < qty:  # IOC: the remainder expires at once
            out.append(self._report(session, msg, b"4", b"4", fill, 0))
        return out


class WsServer(threading.Thread):
    """Binance-style streams (``<symbol>@depth``, ``<symbol>@bookTicker``) after a SUBSCRIBE, and
    the WebSocket API's ``depth`` request for snapshots, on the thread's own asyncio loop."""

    def __init__(self, port: int, flow: SyntheticFlow, publisher: DepthPublisher):
        super().__init__(daemon=True, name="ws-server")
        self.port, self.flow, self.publisher = port, flow, publisher
        self.loop = asyncio.new_event_loop()
        self.clients: dict = {}  # connection -> subscribed stream names
        self.ready = threading.Event()
        self.error: str | None = None
        self.sent = 0
        self._stopping: asyncio.Future | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except OSError as e:
            self.error = f"cannot listen for WebSocket on port {self.port}: {e.strerror or e}"
            self.ready.set()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stopping = self.loop.create_future()
        async with serve(self._serve, "127.0.0.1", self.port, compression=None, ping_interval=None):
            self.ready.set()
            await self._stopping
            for ws in list(self.clients):
                await ws.close(1001, "venue stopping")

    async def _serve(self, ws) -> None:
        self.clients[ws] = set()
        try:
            async for text in ws:
                await ws.send(self._answer(text, self.clients[ws]))
        except Exception as e:  # noqa: BLE001 - one client's failure must not stop the venue
            log(f"WebSocket client lost: {e}")
        finally:
            self.clients.pop(ws, None)

    def _answer(self, text, streams: set) -> str:
        try:
            req = json.loads(text)
            rid, method, params = req.get("id"), req["method"], req.get("params")
        except (ValueError, KeyError, AttributeError, TypeError, RecursionError):
            return json.dumps(
                {"id": None, "status": 400, "error": {"code": -1100, "msg": "malformed request"}}
            )
        if method == "SUBSCRIBE" and isinstance(params, list):
            streams.update(str(p) for p in params)
            return json.dumps({"result": None, "id": rid})
        if method == "depth" and isinstance(params, dict):
            limit = params.get("limit", 1000)
            if type(limit) is not int or not 1 <= limit <= 5000:
                return json.dumps(
                    {"id": rid, "status": 400, "error": {"code": -1100, "msg": "limit must be 1-5000"}}
                )
            with self.flow.lock:  # the book and its lastUpdateId, consistently
                try:
                    snap = self.publisher.snapshot(str(params.get("symbol", "")), limit)
                except KeyError:
                    return json.dumps(
                        {"id": rid, "status": 400, "error": {"code": -1121, "msg": "Invalid symbol."}}
                    )
            return json.dumps({"id": rid, "status": 200, "result": snap})
        return json.dumps(
            {"id": rid, "status": 400, "error": {"code": -1102, "msg": f"unknown method {method}"}}
        )

    def publish(self, events: list[tuple[str, str]]) -> None:
        """From the publisher thread: hand the events to the loop, never block on a slow client."""
        self.loop.call_soon_threadsafe(self._send, events)

    def _send(self, events: list[tuple[str, str]]) -> None:
        from websockets.asyncio.server import broadcast

        for stream, text in events:
            targets = [ws for ws, subs in self.clients.items() if stream in subs]
            if targets:
                broadcast(targets, text)
                self.sent += len(targets)

    def shutdown(self) -> None:
        if self._stopping is not None:
            self.loop.call_soon_threadsafe(lambda: self._stopping.done() or self._stopping.set_result(None))
        self.join(3.0)


def _or(parse, arg, fallback: int) -> int:
    try:
        return parse(arg)
    except F.FieldError:
        return fallback


def comp_id(value: bytes | None) -> str | None:
    """A CompID from a peer's Logon: printable ASCII, or None."""
    if not value or not value.isascii():
        return None
    text = value.decode("ascii")
    return text if text.isprintable() else None


def log(line: str) -> None:
    print(f"venue: {line}", file=sys.stderr, flush=True)


def paced(args, stop: threading.Event):
    """(per_packet, iterator of intended send times in REALTIME ns) for the load model: waits for
    each send time, ends at ``--duration`` or ``stop``."""
    per_packet = max(1, min(8, round(args.rate / 5000)))
    model = LoadModel(args.load, args.rate / per_packet, burst=args.burst, seed=args.seed)

    def times():
        start = time.monotonic_ns()
        end = start + int(args.duration * 1e9) if args.duration else None
        wall0 = time.clock_gettime_ns(time.CLOCK_REALTIME) - start
        for due in model.schedule(start):
            if stop.is_set() or (end is not None and due > end):
                return
            wait_until(due)
            yield wall0 + due

    return per_packet, times()


def wait_until(due: int) -> None:
    """Sleep through most of the gap to ``due`` (monotonic ns) and spin the last 80 us (about one
    sleep overshoot): spinning the whole gap would take a core from the trader, sleeping it all sends late."""
    now = time.monotonic_ns()
    if due - now > 160_000:
        time.sleep((due - now - 80_000) / 1e9)
    while time.monotonic_ns() < due:
        pass


def publish_replay(args, plan: replay_pace.ReplayPlan, market: ReplayMarket, stop: threading.Event) -> dict:
    """An ITCH file at its own pace x ``--speed``: each packet waits for its intended offset and
    carries that intended time as its messages' timestamp (with ``max``: the time it is sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = (args.md_host, args.md_port)
    record = [] if args.write_itch else None
    seq, sent, late = 1, 0, 0
    start = time.monotonic_ns()
    wall0 = time.clock_gettime_ns(time.CLOCK_REALTIME) - start
    end = start + int(args.duration * 1e9) if args.duration else None
    pace = args.speed_factor is not None
    try:
        for offset, msgs in plan.packets:
            due = start + offset if pace else time.monotonic_ns()
            if stop.is_set() or (end is not None and due > end):
                break
            if pace:
                wait_until(due)
                late += time.monotonic_ns() - due > 1_000_000
            ts = ns_since_midnight(wall0 + due)  # the intended send time, on the wire
            msgs = [replay_pace.restamp(m, ts) for m in msgs]
            market.published(msgs)
            seq = send_packet(sock, dest, seq, msgs, record)
            sent += len(msgs)
    finally:
        sock.sendto(itch.mold_end_of_session(SESSION, seq), dest)
        if record is not None:
            itch.write_itch_file(args.write_itch, record)
    elapsed = (time.monotonic_ns() - start) / 1e9
    return {"messages": sent, "packets": len(plan.packets), "seconds": round(elapsed, 3),
            "rate": round(sent / elapsed) if elapsed else 0, "speed": args.speed,
            "file_span_s": plan.file_span_ns / 1e9, "intended_span_s": plan.intended_span_ns / 1e9,
            "packets_late_over_1ms": late, "backwards": plan.backwards, "untimed": plan.untimed}  # fmt: skip


def send_packet(sock: socket.socket, dest, seq: int, msgs: list[bytes], record: list | None) -> int:
    """One MoldUDP64 packet of ``msgs`` numbered from ``seq`` (kept in ``record`` for --write-itch);
    returns the next sequence number. A failed send is logged, and its numbers are still used: the
    receiver sees the gap, as it would on a real feed."""
    try:
        sock.sendto(itch.mold_packet(SESSION, seq, msgs), dest)
    except OSError as e:
        log(f"market data send failed: {e}")
    if record is not None:
        record += msgs
    return seq + len(msgs)


def publish(
    args, flow: SyntheticFlow | ReplayMarket, replay: list[bytes] | None, stop: threading.Event
) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = (args.md_host, args.md_port)
    per_packet, send_times = paced(args, stop)
    record = [] if args.write_itch else None
    seq = 1
    sent = packets = 0
    start = time.monotonic_ns()
    pending: list[bytes] = [] if replay is not None else flow.preamble(ns_since_midnight(time.time_ns()))
    replay_pos = 0
    try:
        for due in send_times:
            ts = ns_since_midnight(due)  # the intended send time, on the wire
            msgs = pending
            pending = []
            if replay is not None:
                if replay_pos >= len(replay):
                    break
                msgs += replay[replay_pos : replay_pos + per_packet]
                replay_pos += per_packet
                flow.published(msgs)
            else:
                while len(msgs) < per_packet:
                    msgs.append(flow.next_message(ts))
            seq = send_packet(sock, dest, seq, msgs, record)
            sent += len(msgs)
            packets += 1
    finally:
        sock.sendto(itch.mold_end_of_session(SESSION, seq), dest)
        if record is not None:
            itch.write_itch_file(args.write_itch, record)
    elapsed = (time.monotonic_ns() - start) / 1e9
    return {
        "messages": sent,
        "packets": packets,
        "seconds": round(elapsed, 3),
        "rate": round(sent / elapsed) if elapsed else 0,
    }


def publish_ws(args, flow: SyntheticFlow, server: WsServer, publisher: DepthPublisher,
               stop: threading.Event) -> dict:  # fmt: skip
    """The synthetic market as WebSocket events, paced like the UDP feed: each batch of
    ``per_packet`` book messages becomes one depthUpdate per changed symbol (+ bookTicker)."""
    per_packet, send_times = paced(args, stop)
    sent = batches = skipped = depth_events = 0
    skipped_ids: dict[str, list[list[int]]] = {}  # symbol -> [U, u] of every event left out
    start = time.monotonic_ns()
    for due in send_times:
        ts = ns_since_midnight(due)
        with flow.lock:
            for _ in range(per_packet):
                msg = flow.next_message(ts)
                publisher.touched(int.from_bytes(msg[1:3], "big"))
            events = publisher.events(due // 1_000_000)
        if args.ws_skip_every:  # chaos: lose depth events, as a flaky link would
            kept = []
            for ev in events:
                if ev[0].endswith("@depth"):
                    depth_events += 1
                    if depth_events % args.ws_skip_every == 0:
                        skipped += 1
                        lost = json.loads(ev[1])
                        skipped_ids.setdefault(lost["s"], []).append([lost["U"], lost["u"]])
                        continue
                kept.append(ev)
            events = kept
        server.publish(events)
        sent += per_packet
        batches += 1
    elapsed = (time.monotonic_ns() - start) / 1e9
    return {"messages": sent, "batches": batches, "skipped_events": skipped, "seconds": round(elapsed, 3),
            "rate": round(sent / elapsed) if elapsed else 0, "skipped_ids": skipped_ids}  # fmt: skip


def quiet_market(flow: SyntheticFlow | ReplayMarket, stop: threading.Event, replay=None) -> dict:
    """An order-entry-only venue: its books get a few hundred orders of its own flow, or (with
    ``--replay``) the whole file, published nowhere, so hedges can fill; then it serves FIX until
    stopped."""
    if replay is not None:
        flow.published(replay)  # the file's instruments: a hedge on a replayed symbol is traded
    else:
        with flow.lock:
            for _ in range(QUIET_MARKET_ORDERS):
                flow.next_message(0)
    while not stop.wait(0.1):
        pass
    return {"messages": 0, "book_orders": sum(len(b.orders) for b in flow.books.values())}


QUIET_MARKET_ORDERS = 400


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="tickscope-venue", description="Exchange simulator: ITCH 5.0 over UDP, FIX 4.4 order entry."
    )
    ap.add_argument("--md-host", default="127.0.0.1")
    ap.add_argument("--md-port", type=int, default=0, help="UDP port for ITCH (with --feed itch)")
    ap.add_argument("--fix-port", type=int, default=0, help="0: no FIX acceptor")
    ap.add_argument("--fix-logon-timeout", type=float, default=10.0,
                    help="seconds a FIX connection may take to log on before it is closed")  # fmt: skip
    ap.add_argument("--ws-port", type=int, default=0, help="WebSocket port (with --feed ws)")
    ap.add_argument("--feed", choices=["itch", "ws", "none"], default="itch",
                    help="none: order entry only (a second venue to hedge on), its book from its own quiet flow")  # fmt: skip
    ap.add_argument("--ack-delay-us", type=float, default=0.0,
                    help="microseconds the matching engine takes per order (a venue's latency profile)")  # fmt: skip
    ap.add_argument("--ws-skip-every", type=int, default=0, help="drop every K-th depth event (resync tests)")
    ap.add_argument("--rate", type=float, default=20_000, help="market-data messages per second")
    ap.add_argument("--load", choices=["constant", "poisson", "burst"], default="constant")
    ap.add_argument("--burst", type=int, default=50, help="packets per burst with --load burst")
    ap.add_argument("--duration", type=float, default=0, help="seconds; 0 = until stopped")
    ap.add_argument(
        "--logout-grace",
        type=float,
        default=10.0,
        help="after --duration, seconds to keep serving FIX until the trader logs out",
    )
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--replay", type=Path)
    ap.add_argument(
        "--speed", help="with --replay: 1x, 2x, 8x... of the file's own pace, or max (default: --rate)"
    )
    ap.add_argument("--write-itch", type=Path, help="also write what was sent as an ITCH 5.0 file")
    ap.add_argument(
        "--wait-logon", action="store_true", help="publish only after the first FIX logon (or 15 s)"
    )
    ap.add_argument("--start-delay", type=float, default=0.0)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # The FIX thread answers orders while the publisher paces packets: switch often enough that
    # an ExecutionReport does not wait for the publisher's 5 ms default time slice.
    sys.setswitchinterval(0.0002)
    if args.rate <= 0:
        log("--rate must be positive")
        return 2
    if args.ack_delay_us < 0:
        log(f"--ack-delay-us must be 0 or more: got {args.ack_delay_us:g}")
        return 2
    if args.feed == "none" and (not args.fix_port or args.speed):
        log(
            "--feed none is an order-entry-only venue: it needs --fix-port and publishes nothing (no --speed)"
        )
        return 2
    if args.feed == "itch" and not args.md_port:
        log("--feed itch needs --md-port")
        return 2
    if args.feed == "ws" and (not args.ws_port or args.replay):
        log("--feed ws needs --ws-port and replays only ITCH files (use --feed itch with --replay)")
        return 2
    replay = None
    if args.replay:
        try:
            replay = list(itch.read_itch_file(args.replay))
        except itch.ItchFileError as e:
            log(str(e))
            return 2
    plan = None
    if args.speed is not None:
        try:
            args.speed_factor = replay_pace.parse_speed(args.speed)
        except ValueError as e:
            log(str(e))
            return 2
        if replay is None or args.feed != "itch":
            log("--speed paces a --replay of an ITCH file (--feed itch)")
            return 2
        plan = replay_pace.plan(replay, args.speed_factor)
        if problem := plan.problems(str(args.replay)):
            log(problem)
        if args.speed_factor is not None and not plan.file_span_ns:
            log(
                f"replay {args.replay}: no timestamps to pace by (all absent or equal); use --speed max or --rate"
            )
            return 2
    # Orders trade the instruments on the feed: the replayed file's, or the synthetic flow's.
    market = ReplayMarket() if replay is not None else None
    flow = market or SyntheticFlow(
        DEFAULT_SYMBOLS[: max(1, min(args.symbols, len(DEFAULT_SYMBOLS)))], args.seed
    )
    stop, logged_on = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    acceptor = None
    if args.fix_port:
        try:
            acceptor = FixAcceptor(args.fix_port, flow, logged_on, stop, args.fix_logon_timeout,
                                   args.ack_delay_us / 1e6)  # fmt: skip
        except OSError as e:
            log(f"cannot listen for FIX on port {args.fix_port}: {e.strerror or e}")
            return 2
        acceptor.start()
    server = publisher = None
    if args.feed == "ws":
        publisher = DepthPublisher(flow.books)
        server = WsServer(args.ws_port, flow, publisher)
        server.start()
        server.ready.wait(10.0)
        if server.error:
            log(server.error)
            stop.set()
            return 2
    try:
        if args.wait_logon and acceptor is not None:
            deadline = time.monotonic() + 15.0
            while not (logged_on.wait(0.05) or stop.is_set() or time.monotonic() > deadline):
                pass  # a stop (SIGTERM) must not wait out the logon timeout
        if args.start_delay:
            stop.wait(args.start_delay)
        if args.feed == "none":
            stats = quiet_market(flow, stop, replay)
        elif server is not None:
            stats = publish_ws(args, flow, server, publisher, stop)
        elif plan is not None:
            stats = publish_replay(args, plan, market, stop)
        else:
            stats = publish(args, flow, replay, stop)
        log(f"published {stats}")
        if args.duration:
            # The feed is over, the order entry is not: answer the orders still on their way until
            # the trader logs out (bounded), so that no ack is lost to the venue shutting first.
            if server is not None:
                server.shutdown()  # the WebSocket feed's end of session
                server = None
            if acceptor is not None:
                acceptor.idle.wait(args.logout_grace)
            return 0
        while not stop.is_set():  # replay finished: keep serving FIX until stopped
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if server is not None:
            server.shutdown()
        if acceptor is not None:
            acceptor.join(2.0)
            log(f"orders received {acceptor.entry.orders}, FIX sessions {acceptor.sessions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
