"""The bundled trader: the instrumented subject of ``tickscope profile``.

    python -m tickscope.pipeline.trader --md-port 40000 --fix-port 40001 [--loop busy|asyncio]

Per market-data message (one trace, keyed by its MoldUDP64 sequence number)::

    md.rx          kernel receive stamp of the packet (SO_TIMESTAMPING, CLOCK_REALTIME)
    md.read        the message's turn (packet read, earlier ones done) stage wire_to_read
    md.decoded     MoldUDP64 framing + ITCH decode               stage feed
    book.updated   order-level book applied                      stage book
    signal         strategy decided                              stage strategy
    risk.checked   pre-trade risk passed                         stage risk
    order.encoded  NewOrderSingle encoded                        stage encode
    order.tx       kernel transmit stamp of the order (trade)    stage send
    ack.rx         first ExecutionReport for the order           stage order_rtt

With ``--feed ws`` a trace is one Binance-style WebSocket event (depthUpdate or bookTicker,
numbered by the trader in arrival order): ``md.rx`` is the kernel stamp of the TCP segment that
completed it, ``md.decoded`` follows JSON parsing and field checks, ``book.updated`` the
update-id check and the absolute level updates (see ``binance.DepthSync``).

The first seven go in one tick record (``TickWriter``); ``order.tx`` arrives later from the
socket's error queue and ``ack.rx`` with the venue's answer, so they are point records of the same
trace in a second ring, which declares ``order.encoded`` before them (never stamped there) to
link the two rings' orders. Where the kernel gives no transmit stamps, ``order.tx`` is the user-space
stamp after ``send`` returns (the session metadata says which).

This file is also the example to copy when instrumenting a real trading process.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import time
from time import perf_counter_ns

from tickscope.probe import Point, PointWriter, TickWriter, ring_dir

from . import fix as F
from .binance import (
    ANSWER,
    DEPTH_UPDATE,
    DepthSync,
    WsClient,
    WsFeedError,
    book_ticker,
    brief,
    decode_event,
    depth_update,
    event_kind,
    snapshot_levels,
)
from .book import BookSet
from .fix_session import FixSession
from .itch import PRICE_SCALE, MoldReceiver
from .oms import OrderManager, State
from .risk import Reject, RiskChecker, RiskLimits
from .strategy import ImbalanceStrategy
from .timestamping import RxTimestamps, TxTimestamps

TICK_POINTS = [
    Point("md.rx", clock="realtime"),
    Point("md.read", stage="wire_to_read"),
    Point("md.decoded", stage="feed"),
    Point("book.updated", stage="book"),
    Point("signal", stage="strategy"),
    Point("risk.checked", stage="risk"),
    Point("order.encoded", stage="encode", leg=True),  # the fan-out: each order is a leg (leg 0 here)
]
MD_RX, MD_READ, MD_DECODED, BOOK_UPDATED, SIGNAL, RISK_CHECKED, ORDER_ENCODED = range(7)
# The orders ring declares order.encoded first without stamping it: that says its points come
# after the tick ring's, whichever ring the collector finds first (README "Declaring points").
ORDER_ENCODED_REF, ORDER_TX, ACK_RX = 0, 1, 2


# Exit codes: 0 every order answered; 2 start-up failed (one line); 3 orders left unanswered at
# the end (a stalled or lost order session), named in the last line.
EXIT_UNANSWERED = 3


class TraderError(Exception):
    """Start-up failures (venue unreachable, logon refused): one line, exit code 2."""


def log(line: str) -> None:
    print(f"trader: {line}", file=sys.stderr, flush=True)


class Trader:
    def __init__(self, args):
        self.args = args
        self.ws: WsClient | None = None
        if args.feed == "itch":
            self.md = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.md.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            try:
                self.md.bind((args.md_host, args.md_port))
            except OSError as e:
                raise TraderError(f"cannot bind market data port {args.md_port}: {e.strerror or e}") from None
            self.md.setblocking(False)
            self.rx = RxTimestamps(self.md)
        self.buf = bytearray(1 << 20)
        self.depth: dict[str, DepthSync] = {}
        self.snapshot_requests: dict[int, str] = {}
        self.ws_seq = 0
        self.ws_counts = {"events": 0, "malformed": 0, "ticker_checked": 0, "ticker_mismatches": 0,
                          "stale_tickers": 0, "request_errors": 0}  # fmt: skip
        self.mold = MoldReceiver()
        self.books = BookSet()
        self.risk = RiskChecker(RiskLimits())
        self.strategy = ImbalanceStrategy(threshold=args.threshold, qty=args.qty, positions=self.risk.positions,
                                          soft_position=self.risk.limits.max_position * 4 // 5)  # fmt: skip
        self.oms = OrderManager(self.risk)
        self.session = FixSession(args.sender_comp_id, args.target_comp_id, heartbeat_s=args.heartbeat)
        self.template = F.OrderTemplate(args.sender_comp_id, args.target_comp_id)
        self.stream = F.FixStream()
        self._after_logon: list = []
        self.fix = self._connect()
        # Error-queue stamps make the socket report EPOLLERR; libuv (uvloop) stops polling such a
        # socket, so under uvloop order.tx is the user-space stamp after send() instead.
        self.tx = TxTimestamps(self.fix, enable=not args.uvloop)
        self.kernel_tx = False
        # The tick ring exists before Logon: the venue starts publishing as soon as we are logged on.
        self.ticks = TickWriter(TICK_POINTS, name="trader", capacity=1 << 15)
        try:
            self._logon()
            if args.feed == "ws":
                self._connect_ws()
        except TraderError:
            self.ticks.close()
            raise
        clock = "realtime" if self.kernel_tx else "monotonic"
        self.orders_ring = PointWriter([Point("order.encoded", clock=clock),
                                        Point("order.tx", stage="send", clock=clock, trade=True),
                                        Point("ack.rx", stage="order_rtt")], name="trader-orders", capacity=1 << 14)  # fmt: skip
        self.pending_tx: dict[int, int] = {}
        # Orders on the wire and not yet answered, by ClOrdID (-> MsgSeqNum) and by MsgSeqNum (a
        # session-level Reject names the order only by its sequence number).
        self.awaiting: dict[bytes, int] = {}
        self.awaiting_seq: dict[int, bytes] = {}
        self.sent = self.acks = self.venue_rejects = self.gap_filled_orders = 0
        self.order_stalls = 0
        self.stalled = False  # warned about the current stall; cleared once every order is answered
        self.log_lines = 0
        self.stats_path = ring_dir() / f"trader.{os.getpid()}.stats.json"
        self.stop = False
        self.closing = False
        if self._after_logon:
            self._on_fix_items(self._after_logon, perf_counter_ns())

    # -- session start --------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.args.connect_timeout
        tried = False
        while True:
            try:
                s = socket.create_connection((self.args.fix_host, self.args.fix_port), timeout=1.0)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError as e:
                if time.monotonic() > deadline:
                    raise TraderError(f"cannot connect to FIX acceptor {self.args.fix_host}:{self.args.fix_port}: "
                                      f"{e.strerror or e}") from None  # fmt: skip
                if not tried:  # said once: a run stopped while we wait can tell why nothing was traced
                    log(f"waiting for FIX acceptor {self.args.fix_host}:{self.args.fix_port} ({e.strerror or e}); "
                        f"retrying for {self.args.connect_timeout:g} s")  # fmt: skip
                    tried = True
                time.sleep(0.1)

    def _logon(self) -> None:
        raw = self.session.logon(reset=True)
        self.fix.sendall(raw)
        self.tx.key_for_send(len(raw))
        deadline = time.monotonic() + self.args.logon_timeout
        self.fix.settimeout(0.1)
        while not self.session.logged_on:
            if time.monotonic() > deadline:
                raise TraderError(f"venue {self.args.fix_host}:{self.args.fix_port} never answered Logon "
                                  f"within {self.args.logon_timeout:g}s")  # fmt: skip
            try:
                data = self.fix.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise TraderError("venue closed the connection during Logon")
            items = self.stream.feed(data)
            for i, item in enumerate(items):
                if self.session.logged_on:  # what the venue sent right after its Logon: the
                    self._after_logon = items[i:]  # session's to handle, once the trader is set up
                    break
                if isinstance(item, F.FixError):
                    raise TraderError(f"venue answered Logon with garbage: {item}")
                got = self.session.on_message(item)
                if got.replies:
                    self.fix.sendall(b"".join(got.replies))
                if got.close:
                    raise TraderError(f"venue refused Logon: {got.reason}")
        # Did the kernel stamp our Logon? Then order.tx uses kernel transmit stamps. Asked only
        # once the socket is non-blocking: with a timeout set, Python waits for readability even
        # on MSG_ERRQUEUE|MSG_DONTWAIT, and an error queue never makes a socket readable.
        self.fix.setblocking(False)
        deadline = time.monotonic() + 0.02
        while self.tx.enabled and not self.kernel_tx and time.monotonic() < deadline:
            self.kernel_tx = bool(self.tx.drain())
            time.sleep(0.001)

    def _connect_ws(self) -> None:
        try:
            self.ws = WsClient(self.args.ws_url, RxTimestamps, self.args.connect_timeout)
        except ConnectionError as e:
            raise TraderError(str(e)) from None
        self.md, self.rx = self.ws.sock, self.ws.rx
        symbols = [s for s in self.args.symbols.split(",") if s]
        self.ws.request(
            "SUBSCRIBE", [f"{s.lower()}@{kind}" for s in symbols for kind in ("depth", "bookTicker")]
        )
        for s in symbols:
            self.depth[s] = DepthSync(s)
        self._request_snapshots()

    def _request_snapshots(self) -> None:
        for symbol, sync in self.depth.items():
            if sync.want_snapshot:
                sync.want_snapshot = False
                self.snapshot_requests[self.ws.request("depth", {"symbol": symbol, "limit": 1000})] = symbol

    # -- hot path -------------------------------------------------------------------------------
    def on_market_data(self) -> int:
        """Drain the market-data socket; returns the packets read."""
        md_recv, mold, books, strategy = self.rx.recv_into, self.mold, self.books, self.strategy
        buf, commit, decode = self.buf, self.ticks.commit, mold.decode
        t = self.ticks.stamps
        packets = 0
        while True:
            try:
                n, kernel_rx = md_recv(buf)
            except BlockingIOError:
                break
            packets += 1
            for seq, off, length in mold.packet(buf, n):
                # md.read: this message's turn. Messages later in a packet wait for earlier ones,
                # and that wait belongs to wire_to_read (queueing), not to decoding.
                t[MD_RX] = kernel_rx
                t[MD_READ] = perf_counter_ns()
                fields = decode(buf, off, length, seq)
                t[MD_DECODED] = perf_counter_ns()
                if fields is None:
                    t = commit(seq)
                    continue
                book = books.apply(fields)
                t[BOOK_UPDATED] = perf_counter_ns()
                if book is not None:
                    now = time.monotonic_ns()
                    intent = strategy.on_book(book, now)
                    t[SIGNAL] = perf_counter_ns()
                    if intent is not None:
                        self._order(t, seq, book, intent, now)
                t = commit(seq)
        if packets and mold.last_error:
            self._log_limited(mold.last_error)
            mold.last_error = ""
        return packets

    def on_ws_market_data(self) -> int:
        """Drain the WebSocket: every text message is one trace, numbered 1, 2, ... in arrival order
        (answers and malformed ones too: the n-th text message on the wire is trace n, which is how
        ``tickscope wire`` matches it); returns the reads done."""
        ws, commit, strategy, depth = self.ws, self.ticks.commit, self.strategy, self.depth
        t = self.ticks.stamps
        reads = 0
        while True:
            got = ws.receive(self.buf)
            if got is None:
                break
            reads += 1
            kernel_rx, texts = got
            for text in texts:
                self.ws_seq += 1
                seq = self.ws_seq
                t[MD_RX] = kernel_rx
                t[MD_READ] = perf_counter_ns()
                try:
                    msg = decode_event(text)
                    kind = event_kind(msg)
                    if kind == DEPTH_UPDATE:
                        symbol, first, last, bids, asks = depth_update(msg)
                        sync = depth.get(symbol)
                        if sync is None:
                            raise WsFeedError(f"depthUpdate for unsubscribed symbol {symbol[:20]!r}")
                    else:
                        if kind == ANSWER:
                            self._answer(msg)
                        else:
                            self._ticker(msg)
                        msg = None
                except WsFeedError as e:
                    self.ws_counts["malformed"] += 1
                    self._log_limited(f"market data skipped: {e}")
                    t = commit(seq)
                    continue
                self.ws_counts["events"] += 1
                t[MD_DECODED] = perf_counter_ns()
                if msg is not None:
                    changed = sync.on_event(first, last, bids, asks)
                    t[BOOK_UPDATED] = perf_counter_ns()
                    if changed:
                        now = time.monotonic_ns()
                        intent = strategy.on_book(sync.book, now)
                        t[SIGNAL] = perf_counter_ns()
                        if intent is not None:
                            self._order(t, seq, sync.book, intent, now)
                    elif sync.want_snapshot:
                        self._log_limited(
                            f"{sync.symbol}: hole in depth updates at U={first}: resync from a snapshot"
                        )
                        self._request_snapshots()
                t = commit(seq)
        return reads

    def _ticker(self, msg: dict) -> None:
        """bookTicker: a cross-check of the local book, whose update id it names."""
        symbol, u, ticker_top = book_ticker(msg)
        sync = self.depth.get(symbol)
        if sync is None or not sync.synced:
            return
        if u != sync.last_update_id:
            self.ws_counts["stale_tickers"] += 1  # the book moved on (or the depth event was lost)
            return
        self.ws_counts["ticker_checked"] += 1
        book = sync.book
        top = (book.bids.best(), book.bids.best_size(), book.asks.best(), book.asks.best_size())
        if top != ticker_top:
            self.ws_counts["ticker_mismatches"] += 1
            self._log_limited(f"{sync.symbol}: bookTicker u={u} disagrees with the local book {top}")

    def _answer(self, msg: dict) -> None:
        rid = msg.get("id")
        symbol = self.snapshot_requests.pop(rid, None) if type(rid) is int else None
        if msg.get("status", 200) != 200 or "error" in msg:
            self.ws_counts["request_errors"] += 1
            self._log_limited(f"venue refused request {brief(rid)}: {brief(msg.get('error'))}")
            if symbol is not None:
                self.depth[symbol].want_snapshot = True
            return
        if symbol is None:
            return  # SUBSCRIBE acknowledged
        sync = self.depth[symbol]
        try:
            snapshot = snapshot_levels(msg.get("result"))
        except WsFeedError:
            sync.want_snapshot = True  # ask again once the bad answer is counted
            raise
        if not sync.on_snapshot(*snapshot):
            self._request_snapshots()

    def _order(self, t, seq: int, book, intent, now: int) -> None:
        side, qty, price = intent
        verdict = self.risk.check(book.symbol, side, qty, price, book.mid(), now)
        t[RISK_CHECKED] = perf_counter_ns()
        if verdict != Reject.OK:
            if verdict == Reject.KILL_SWITCH:
                return
            self._log_limited(
                f"risk reject {verdict.name} {book.symbol} {side.decode()} {qty}@{price / PRICE_SCALE}"
            )
            return
        order = self.oms.new_order(book.symbol, side, qty, price, seq, now)
        msg_seq = self.session.next_seq()
        raw = self.template.encode(msg_seq, order.clordid, book.symbol.encode(),
                                   b"1" if side == b"B" else b"2", qty, F.price_text(price))  # fmt: skip
        t[ORDER_ENCODED] = perf_counter_ns()
        try:
            self.fix.sendall(raw)
        except OSError as e:
            self._kill(f"order send failed: {e}")
            return
        # Counted the moment it is on the wire: stops arrive as a flag (see main), never between
        # the send and this line, so the count matches what the acceptor received.
        self.sent += 1
        self.awaiting[order.clordid] = msg_seq
        self.awaiting_seq[msg_seq] = order.clordid
        key = self.tx.key_for_send(len(raw))
        self.session.sent(raw)
        if self.kernel_tx:
            self.pending_tx[key] = seq
        else:
            self.orders_ring.record(ORDER_TX, seq)

    def on_fix(self) -> bool:
        """Read the order-entry socket; False when the session is over."""
        try:
            data = self.fix.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            self._kill(f"FIX connection error: {e}")
            return False
        arrived = perf_counter_ns()
        if not data:
            if not self.closing:
                self._kill("venue closed the FIX connection")
            return False
        return self._on_fix_items(self.stream.feed(data), arrived)

    def _on_fix_items(self, items: list, arrived: int) -> bool:
        """Session and ExecutionReport handling of parsed FIX (or FixError); False when it ended."""
        replies: list[bytes] = []
        alive = True
        for item in items:
            if isinstance(item, F.FixError):
                self._log_limited(f"FIX from venue: {item}")
                replies += self.session.on_error(item).replies
                continue
            got = self.session.on_message(item)
            replies += got.replies
            if got.gap_filled:
                self._gap_filled(got.gap_filled)
            for app in got.apps:
                try:
                    if app.msg_type == F.EXECUTION_REPORT:
                        self._execution(app, arrived)
                    elif app.msg_type == F.REJECT:
                        self._session_reject(app)
                except F.FieldError as e:  # e.g. LastPx=inf: Reject(35=3), counted in fix.invalid_fields
                    self._log_limited(f"FIX from venue: {app.msg_type.decode()} rejected: {e}")
                    replies += self.session.on_field_error(app, e).replies
            if got.close:
                if not (self.closing and not self.session.logged_on):
                    self._kill(f"FIX session ended: {got.reason}")
                alive = False
        if replies:
            self._send(b"".join(replies))
        return alive

    def _execution(self, msg: F.FixMessage, arrived: int) -> None:
        clordid, exec_type, last_qty, last_px = F.execution_fields(msg)  # FieldError: nothing changed
        order = self.oms.orders.get(clordid)
        first = order is not None and order.state == State.PENDING_NEW
        self.oms.on_execution(clordid, exec_type, last_qty, last_px)
        if first:
            self.orders_ring.record(ACK_RX, order.trace_id, ts=arrived)
        msg_seq = self.awaiting.pop(clordid, None)
        if msg_seq is not None:
            del self.awaiting_seq[msg_seq]
            self.session.peer_processed(msg_seq)
            if exec_type == b"8":
                self.venue_rejects += 1
            else:
                self.acks += 1

    def _session_reject(self, msg: F.FixMessage) -> None:
        """A session-level Reject of an order: answered (rejected), no longer in flight."""
        ref_seq = msg.int(F.RefSeqNum, -1)
        clordid = self.awaiting_seq.pop(ref_seq, None)
        if clordid is not None and self.awaiting.pop(clordid, None) is not None:
            self.session.peer_processed(ref_seq)
            self.venue_rejects += 1
            self.oms.on_execution(clordid, b"8")
            self._log_limited(f"order {clordid.decode()} rejected by the session: "
                              f"{(msg.get(F.Text) or b'').decode(errors='replace')}")  # fmt: skip

    def _gap_filled(self, ranges: list[tuple[int, int]]) -> None:
        """Orders under numbers we gap-filled at the venue's ResendRequest never reach it (IOC
        orders are not resent, see fix_session): answered, by us, as not delivered."""
        lost = [(seq, c) for seq, c in self.awaiting_seq.items() if any(a <= seq < b for a, b in ranges)]
        for seq, clordid in lost:
            del self.awaiting_seq[seq]
            del self.awaiting[clordid]
            self.oms.on_execution(clordid, b"8")  # terminal: its quantity no longer counts against risk
        self.gap_filled_orders += len(lost)
        if lost:
            log(f"{len(lost)} orders (MsgSeqNum {lost[0][0]}..{lost[-1][0]}) gap-filled at the venue's "
                f"ResendRequest: never delivered, not resent (stale IOC orders)")  # fmt: skip

    def housekeeping(self) -> None:
        self.record_tx_stamps()
        got = self.session.timer()
        if got.replies:
            self._send(b"".join(got.replies))
        if got.close:
            self._kill(got.reason)
        if self.awaiting:
            self._check_stall()
        else:
            self.stalled = False

    def _check_stall(self) -> None:
        """One warning when the oldest unanswered order has waited more than --ack-wait while the
        venue kept sending (heartbeats, rejects, other answers): the session is alive, the orders are not."""
        if self.stalled:
            return
        oldest = self.oms.orders.get(next(iter(self.awaiting)))
        if oldest is None:
            return
        sent_s = oldest.sent_ns / 1e9
        if time.monotonic() - sent_s > self.args.ack_wait and self.session.last_rx > sent_s:
            self.stalled = True
            self.order_stalls += 1
            log(f"warning: order session stalled: {len(self.awaiting)} orders unanswered for over "
                f"{self.args.ack_wait:g} s while the venue is still sending; {self.seq_facts()}")  # fmt: skip

    def seq_facts(self) -> str:
        expects = self.session.stats.peer_expects
        return (
            f"last MsgSeqNum sent {self.session.out_seq - 1}, "
            f"last the venue processed {expects - 1 if expects else 'unknown'}"
        )

    def _send(self, raw: bytes) -> None:
        try:
            self.fix.sendall(raw)
            self.tx.key_for_send(len(raw))
        except OSError as e:
            self._kill(f"FIX send failed: {e}")

    def _kill(self, reason: str) -> None:
        """Kill switch: no more orders; cancel what is open; the market-data side keeps measuring."""
        if not self.risk.killed:
            self.risk.kill(reason)
            log(f"kill switch: {reason}")
            for o in self.oms.cancel_all():
                if self.session.logged_on:
                    self._send(self.session.build(F.ORDER_CANCEL_REQUEST, [
                        (F.OrigClOrdID, o.clordid), (F.ClOrdID, o.clordid + b"C"), (F.Symbol, o.symbol),
                        (F.Side, b"1" if o.side == b"B" else b"2"), (F.TransactTime, F.utc_timestamp())]))  # fmt: skip

    def _log_limited(self, line: str) -> None:
        self.log_lines += 1
        if self.log_lines <= 20 or self.log_lines % 1000 == 0:
            log(line + (" (further lines rate-limited)" if self.log_lines == 20 else ""))

    # -- loops ----------------------------------------------------------------------------------
    def run_busy(self) -> None:
        """Busy-poll both non-blocking sockets: the lowest latency, one core at 100 %."""
        next_house = time.monotonic() + 0.001
        next_stats = time.monotonic() + 1.0
        on_md, on_fix = self.on_market_data if self.ws is None else self.on_ws_market_data, self.on_fix
        fix_alive = True
        while not self.stop:
            on_md()
            if fix_alive:
                fix_alive = on_fix()
            now = time.monotonic()
            if now >= next_house:
                if fix_alive:
                    self.housekeeping()
                next_house = now + 0.001
                if now >= next_stats:
                    self.write_stats()
                    self.ticks.heartbeat()
                    next_stats = now + 1.0
                if self.feed_ended:
                    break

    def run_asyncio(self) -> None:
        """The same handlers driven by an event loop (uvloop when installed)."""
        import asyncio

        if self.args.uvloop:
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        done = loop.create_future()

        def fix_ready():
            if not self.on_fix():
                loop.remove_reader(self.fix.fileno())

        on_md = self.on_market_data if self.ws is None else self.on_ws_market_data

        def md_ready():
            on_md()
            if self.feed_ended and not done.done():
                done.set_result(None)

        async def timers():
            n = 0
            while not done.done():
                await asyncio.sleep(0.001)
                if self.stop:
                    done.set_result(None)
                    break
                self.housekeeping()
                n += 1
                if n % 1000 == 0:
                    self.write_stats()
                    self.ticks.heartbeat()

        async def session():
            loop.add_reader(self.md.fileno(), md_ready)
            loop.add_reader(self.fix.fileno(), fix_ready)
            if self.ws is not None:
                loop.call_soon(md_ready)  # messages read with the handshake wait for no readiness
            await asyncio.gather(timers(), done)

        try:
            loop.run_until_complete(session())
        finally:
            loop.close()

    @property
    def feed_ended(self) -> bool:
        return self.mold.stats.end_of_session if self.ws is None else self.ws.closed

    # -- end ------------------------------------------------------------------------------------
    def stats(self) -> dict:
        feed = self.mold.stats
        ws = {}
        if self.ws is not None:
            sync = [d.stats for d in self.depth.values()]
            ws = {"ws": {**self.ws_counts, **{k: sum(getattr(x, k) for x in sync) for k in
                         ("applied", "stale", "holes", "resyncs", "snapshots_too_old", "missed_ids")},
                         "seen": {s: [d.first_seen, d.last_seen] for s, d in self.depth.items()},
                         "synced": sorted(s for s, d in self.depth.items() if d.synced)}}  # fmt: skip
            feed.messages = self.ws_counts["events"]
            feed.gaps = ws["ws"]["holes"]  # a hole in the update ids is the WebSocket feed's gap
            feed.malformed_messages = self.ws_counts["malformed"]
        return {
            **ws,
            "feed": {**feed.__dict__},
            "feed_gaps": feed.gaps,
            "feed_gap_messages": feed.gap_messages,
            "unknown_order_refs": self.books.unknown_refs,
            "orders_sent": self.sent,
            "orders_acked": self.acks,
            "orders_rejected": self.venue_rejects,
            "orders_in_flight_at_end": len(self.awaiting),
            "orders_gap_filled": self.gap_filled_orders,
            "order_stalls": self.order_stalls,
            "fills": self.oms.fills,
            "risk_rejects": dict(self.risk.counts),
            "signals_held_back": self.strategy.held_back,
            "kill_switch": self.risk.kill_reason or None,
            "oms_invalid_transitions": self.oms.invalid_transitions,
            "oms_unknown_reports": self.oms.unknown_reports,
            "fix": {k: v for k, v in self.session.stats.__dict__.items() if k != "reasons"},
            "kernel_rx_stamps": self.rx.enabled,
            "kernel_tx_stamps": self.kernel_tx,
            "loop": "uvloop" if self.args.uvloop else self.args.loop,
            "tx_stamps_unmatched": len(self.pending_tx),
        }

    def write_stats(self) -> None:
        tmp = self.stats_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.stats()))
            os.replace(tmp, self.stats_path)
        except OSError:
            pass

    def close(self) -> None:
        """End of session: wait (bounded) for the answers to orders on the wire, log out, and
        parse everything that arrives until the peer's Logout, so that the last acks are counted.
        What is still unanswered after that is reported as in flight at end, never dropped."""
        self.closing = True
        try:
            if self.session.logged_on and not self.risk.killed:
                self._read_fix_while(lambda: self.awaiting, self.args.ack_wait)
            if self.session.logged_on:
                self._send(self.session.logout("trader stopping"))
                self._read_fix_while(lambda: self.session.logged_on, self.args.logout_wait)
        except OSError:
            pass
        self.record_tx_stamps()
        if self.pending_tx:  # transmit stamps of the last orders may trail the acks by a moment
            end = time.monotonic() + 0.05
            while self.pending_tx and time.monotonic() < end:
                time.sleep(0.001)
                self.record_tx_stamps()
        self.write_stats()
        self.ticks.close()
        self.orders_ring.close()
        self.fix.close()
        if self.ws is not None:
            self.ws.close()
        else:
            self.md.close()

    def _read_fix_while(self, pending, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while pending() and (left := end - time.monotonic()) > 0:
            if select.select([self.fix], [], [], min(left, 0.01))[0] and not self.on_fix():
                return
            self.record_tx_stamps()

    def record_tx_stamps(self) -> None:
        """order.tx of the orders whose kernel transmit stamp has reached the error queue."""
        if self.pending_tx:
            for key, ts in self.tx.drain():
                seq = self.pending_tx.pop(key, None)
                if seq is not None:
                    self.orders_ring.record(ORDER_TX, seq, ts=ts)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="tickscope-trader", description="The bundled, instrumented trader.")
    ap.add_argument("--feed", choices=["itch", "ws"], default="itch")
    ap.add_argument("--loop", choices=["busy", "asyncio"], default="busy")
    ap.add_argument("--no-uvloop", action="store_true", help="plain asyncio even when uvloop is installed")
    ap.add_argument("--md-host", default="127.0.0.1")
    ap.add_argument("--md-port", type=int, default=0, help="UDP port of the ITCH feed")
    ap.add_argument("--ws-url", default="", help="WebSocket market data (with --feed ws)")
    ap.add_argument("--symbols", default="AAPL,MSFT,NVDA,AMZN", help="WebSocket streams to subscribe")
    ap.add_argument("--fix-host", default="127.0.0.1")
    ap.add_argument("--fix-port", type=int, required=True)
    ap.add_argument("--sender-comp-id", default="TICKSCOPE")
    ap.add_argument("--target-comp-id", default="VENUE")
    ap.add_argument("--heartbeat", type=int, default=30)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--qty", type=int, default=100)
    ap.add_argument("--connect-timeout", type=float, default=5.0)
    ap.add_argument("--logon-timeout", type=float, default=5.0)
    ap.add_argument(
        "--ack-wait",
        type=float,
        default=2.0,
        help="seconds to wait at the end for answers to orders on the wire",
    )
    ap.add_argument("--logout-wait", type=float, default=1.0, help="seconds to wait for the peer's Logout")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.feed == "itch" and not args.md_port or args.feed == "ws" and not args.ws_url:
        log("--feed itch needs --md-port, --feed ws needs --ws-url")
        return 2
    args.uvloop = False
    if args.loop == "asyncio" and not args.no_uvloop:
        try:
            import uvloop  # noqa: F401

            args.uvloop = True
        except ImportError:
            pass
    # Until the loops run, a stop interrupts start-up; from then on it is a flag that the loops
    # test, so an order is never cut between its send and its count. Set for SIGINT too: a
    # trader started from a background job inherits SIGINT ignored and must still stop.
    running: list[Trader] = []

    def request_stop(_signum, _frame):
        if not running:
            raise KeyboardInterrupt
        running[0].stop = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        trader = Trader(args)
    except TraderError as e:
        log(str(e))
        return 2
    except KeyboardInterrupt:
        return 0
    running.append(trader)
    log(
        f"logged on; kernel rx stamps {trader.rx.enabled}, kernel tx stamps {trader.kernel_tx}, loop {args.loop}"
    )
    try:
        trader.run_busy() if args.loop == "busy" else trader.run_asyncio()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        trader.close()
        s = trader.stats()
        log(f"messages {s['feed']['messages']}, gaps {s['feed_gaps']}, orders {s['orders_sent']}, acks {s['orders_acked']}, "
            f"rejected {s['orders_rejected']}, gap-filled {s['orders_gap_filled']}, "
            f"in flight at end {s['orders_in_flight_at_end']}, risk rejects {sum(s['risk_rejects'].values())}")  # fmt: skip
    if trader.awaiting:  # the last line: what `profile` reports as the trader's failure
        log(f"{len(trader.awaiting)} of {trader.sent} orders never answered ({trader.seq_facts()}): "
            f"exit {EXIT_UNANSWERED}")  # fmt: skip
        return EXIT_UNANSWERED
    return 0


if __name__ == "__main__":
    sys.exit(main())
