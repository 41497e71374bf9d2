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

Market making (``--quotes both``, the default, as ``profile`` runs it; docs/pipeline.md "A two-venue market
maker"): a signal quotes both sides, each
order a leg of the tick (fan-out at ``order.encoded``): leg 0 the bid, leg 1 the ask, both IOC at
the touch on the primary venue; every ``--hedge-every``-th signal that quoted also sends leg 2, a
marketable IOC on the signal's side to the hedge venue (``--hedge-fix-port``: a second FIX
session). Risk checks every leg; a leg it rejects is not sent and its number stays unused.
Dimensions ``venue`` (the FIX session's TargetCompID), ``symbol``, ``msg_type`` (the ITCH message
type or the WebSocket event) and ``side`` are interned once at start: the hot path ORs small ids.

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
from .timestamping import PendingSends, RxTimestamps, TxTimestamps

TICK_POINTS = [
    Point("md.rx", clock="realtime"),
    Point("md.read", stage="wire_to_read"),
    Point("md.decoded", stage="feed"),
    Point("book.updated", stage="book"),
    Point("signal", stage="strategy"),
    Point("risk.checked", stage="risk"),
    # The fan-out: each order is a leg. A leg's own work starts at order.start: leg_wait is its
    # wait for the legs of its tick sent before it (their encode and send), which its encode
    # would otherwise hold (the second quote's "encode" was the first one's send).
    Point("order.start", stage="leg_wait", leg=True),
    Point("order.encoded", stage="encode"),
]
MD_RX, MD_READ, MD_DECODED, BOOK_UPDATED, SIGNAL, RISK_CHECKED, ORDER_START, ORDER_ENCODED = range(8)
# The orders ring declares order.encoded first without stamping it: that says its points come
# after the tick ring's, whichever ring the collector finds first (README "Declaring points").
ORDER_ENCODED_REF, ORDER_TX, ACK_RX = 0, 1, 2

LEG_BID, LEG_ASK, LEG_HEDGE = 0, 1, 2
LEG_TAKER = 0  # --quotes one: the signal's one marketable order
DIMENSIONS = ["venue", "symbol", "msg_type", "side"]  # slot k of the dims word is DIMENSIONS[k]
VENUE_SLOT, SYMBOL_SLOT, MSG_TYPE_SLOT, SIDE_SLOT = (
    16 * k for k in range(4)
)  # probe/layout.py DIM_SLOT_BITS
ITCH_TYPES = "SRAFECXDUP"  # the ITCH 5.0 messages the feed handler decodes (pipeline/itch.py)
WS_EVENTS = ("depthUpdate", "bookTicker")


# Exit codes: 0 every order answered; 2 start-up failed (one line); 3 orders left unanswered at
# the end (a stalled or lost order session), named in the last line.
EXIT_UNANSWERED = 3


class TraderError(Exception):
    """Start-up failures (venue unreachable, logon refused): one line, exit code 2."""


def log(line: str) -> None:
    print(f"trader: {line}", file=sys.stderr, flush=True)


class Gateway:
    """One FIX order session (a venue): its socket, session layer, and the orders it has on the wire."""

    def __init__(
        self, venue: str, host: str, port: int, sender: str, target: str, heartbeat_s: int, hedge: bool
    ):
        self.venue, self.host, self.port = venue, host, port
        self.prefix = f"hedge venue {venue}: " if hedge else ""  # log lines of the hedge session say so
        self.session = FixSession(sender, target, heartbeat_s=heartbeat_s)
        self.template = F.OrderTemplate(sender, target)
        self.stream = F.FixStream()
        self.after_logon: list = []
        self.fix: socket.socket | None = None
        self.tx: TxTimestamps | None = None
        self.kernel_tx = False
        self.pending_tx = PendingSends()  # (trace id, leg) of the orders waiting for their transmit stamp
        # Orders on the wire and not yet answered, by ClOrdID (-> MsgSeqNum) and by MsgSeqNum (a
        # session-level Reject names the order only by its sequence number).
        self.awaiting: dict[bytes, int] = {}
        self.awaiting_seq: dict[int, bytes] = {}
        self.stalled = False  # warned about the current stall; cleared once every order is answered
        self.alive = True


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
        self.primary = Gateway(args.target_comp_id, args.fix_host, args.fix_port, args.sender_comp_id,
                               args.target_comp_id, args.heartbeat, hedge=False)  # fmt: skip
        self.hedge = None
        if args.hedge_fix_port:
            self.hedge = Gateway(args.hedge_target_comp_id, args.hedge_fix_host, args.hedge_fix_port,
                                 args.sender_comp_id, args.hedge_target_comp_id, args.heartbeat, hedge=True)  # fmt: skip
        self.gateways = [self.primary] + ([self.hedge] if self.hedge else [])
        self.by_venue = {g.venue: g for g in self.gateways}
        for g in self.gateways:
            g.fix = self._connect(g)
            # Error-queue stamps make the socket report EPOLLERR; libuv (uvloop) stops polling such a
            # socket, so under uvloop order.tx is the user-space stamp after send() instead.
            g.tx = TxTimestamps(g.fix, enable=not args.uvloop)
        # The tick ring exists before Logon: the venue starts publishing as soon as we are logged on.
        self.ticks = TickWriter(TICK_POINTS, name="trader", capacity=1 << 15, dims=DIMENSIONS)
        self._intern_dimensions()
        try:
            for g in reversed(self.gateways):  # the hedge venue first: the primary's Logon starts the feed
                self._logon(g)
            if args.feed == "ws":
                self._connect_ws()
        except TraderError:
            self.ticks.close()
            raise
        # One clock for order.tx of every venue: kernel stamps only where every session has them.
        self.kernel_tx = all(g.kernel_tx for g in self.gateways)
        clock = "realtime" if self.kernel_tx else "monotonic"
        self.orders_ring = PointWriter([Point("order.encoded", clock=clock),
                                        Point("order.tx", stage="send", clock=clock, trade=True),
                                        Point("ack.rx", stage="order_rtt")], name="trader-orders", capacity=1 << 14)  # fmt: skip
        self.sent = self.acks = self.venue_rejects = self.gap_filled_orders = 0
        # Orders sent per leg kind: --quotes both: bid, ask (+ hedge); --quotes one: taker (+ hedge).
        kinds = ("bid", "ask") if args.quotes == "both" else ("taker",)
        self.sent_by_kind = dict.fromkeys(kinds + (("hedge",) if self.hedge else ()), 0)
        self.quoted = 0  # signals that sent at least one quote: every hedge_every-th of them hedges
        self.hedges_due = 0  # = quoted // hedge_every; those risk let through are sent
        self.hedges_held_by_risk = 0
        self.order_stalls = 0
        self.log_lines = 0
        self.stats_path = ring_dir() / f"trader.{os.getpid()}.stats.json"
        self.stop = False
        self.closing = False
        for g in self.gateways:
            if g.after_logon:
                self._on_fix_items(g, g.after_logon, perf_counter_ns())

    def _intern_dimensions(self) -> None:
        """Every dimension value the trader knows at start, interned once; the hot path ORs the ids
        (shifted to their slot) into a dims word."""
        intern = self.ticks.intern
        self.venue_bits = {g.venue: intern("venue", g.venue) << VENUE_SLOT for g in self.gateways}
        self.side_bits = {b"B": intern("side", "buy") << SIDE_SLOT, b"S": intern("side", "sell") << SIDE_SLOT}
        self.symbol_bits: dict[str, int] = {}
        for symbol in self.args.symbols.split(","):
            if symbol:
                self._symbol_bits(symbol)
        feed_venue = self.venue_bits[self.primary.venue]  # market data comes from the primary venue
        names = [chr(c) for c in ITCH_TYPES.encode()] if self.args.feed == "itch" else list(WS_EVENTS)
        self.msg_bits = {n.encode() if len(n) == 1 else n: feed_venue | intern("msg_type", n) << MSG_TYPE_SLOT
                         for n in names}  # fmt: skip
        self.feed_bits = feed_venue

    def _symbol_bits(self, symbol: str) -> int:
        """The symbol's slot bits; interned on first sight (the feed names its instruments as it goes)."""
        bits = self.symbol_bits.get(symbol)
        if bits is None:
            try:
                bits = self.ticks.intern("symbol", symbol) << SYMBOL_SLOT
            except ValueError:  # too long, or the ring's value table full: counted as no symbol
                bits = 0
            self.symbol_bits[symbol] = bits
        return bits

    @property
    def awaiting(self) -> int:
        """Orders on the wire, every venue, not yet answered."""
        return sum(len(g.awaiting) for g in self.gateways)

    # -- session start --------------------------------------------------------------------------
    def _connect(self, g: Gateway) -> socket.socket:
        deadline = time.monotonic() + self.args.connect_timeout
        tried = False
        while True:
            try:
                s = socket.create_connection((g.host, g.port), timeout=1.0)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError as e:
                if time.monotonic() > deadline:
                    raise TraderError(f"{g.prefix}cannot connect to FIX acceptor {g.host}:{g.port}: "
                                      f"{e.strerror or e}") from None  # fmt: skip
                if not tried:  # said once: a run stopped while we wait can tell why nothing was traced
                    log(f"{g.prefix}waiting for FIX acceptor {g.host}:{g.port} ({e.strerror or e}); "
                        f"retrying for {self.args.connect_timeout:g} s")  # fmt: skip
                    tried = True
                time.sleep(0.1)

    def _logon(self, g: Gateway) -> None:
        raw = g.session.logon(reset=True)
        g.fix.sendall(raw)
        g.tx.key_for_send(len(raw))
        deadline = time.monotonic() + self.args.logon_timeout
        g.fix.settimeout(0.1)
        while not g.session.logged_on:
            if time.monotonic() > deadline:
                raise TraderError(f"{g.prefix}venue {g.host}:{g.port} never answered Logon "
                                  f"within {self.args.logon_timeout:g}s")  # fmt: skip
            try:
                data = g.fix.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise TraderError(f"{g.prefix}venue closed the connection during Logon")
            items = g.stream.feed(data)
            for i, item in enumerate(items):
                if g.session.logged_on:  # what the venue sent right after its Logon: the
                    g.after_logon = items[i:]  # session's to handle, once the trader is set up
                    break
                if isinstance(item, F.FixError):
                    raise TraderError(f"{g.prefix}venue answered Logon with garbage: {item}")
                got = g.session.on_message(item)
                if got.replies:
                    g.fix.sendall(b"".join(got.replies))
                if got.close:
                    raise TraderError(f"{g.prefix}venue refused Logon: {got.reason}")
        # Did the kernel stamp our Logon? Then order.tx uses kernel transmit stamps. Asked only
        # once the socket is non-blocking: with a timeout set, Python waits for readability even
        # on MSG_ERRQUEUE|MSG_DONTWAIT, and an error queue never makes a socket readable.
        g.fix.setblocking(False)
        deadline = time.monotonic() + 0.02
        while g.tx.enabled and not g.kernel_tx and time.monotonic() < deadline:
            g.kernel_tx = bool(g.tx.drain())
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
                rid = self.ws.request("depth", {"symbol": symbol, "limit": 1000})
                if rid is not None:  # None: the venue is closing the feed, no snapshot will come
                    self.snapshot_requests[rid] = symbol

    # -- hot path -------------------------------------------------------------------------------
    def on_market_data(self) -> int:
        """Drain the market-data socket; returns the packets read."""
        md_recv, mold, books, strategy = self.rx.recv_into, self.mold, self.books, self.strategy
        buf, commit, decode = self.buf, self.ticks.commit, mold.decode
        msg_bits, feed_bits, symbol_bits = self.msg_bits, self.feed_bits, self.symbol_bits
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
                word = msg_bits.get(fields[0], feed_bits)
                if book is not None:
                    word |= symbol_bits.get(book.symbol) or self._symbol_bits(book.symbol)
                    now = time.monotonic_ns()
                    intent = strategy.on_book(book, now)
                    t[SIGNAL] = perf_counter_ns()
                    if (
                        intent is not None
                        and (sent := self._order(t, seq, book, intent, now, word)) is not None
                    ):
                        t = sent  # committed once per leg
                        continue
                t = commit(seq, word)
        if packets and mold.last_error:
            self._log_limited(mold.last_error)
            mold.last_error = ""
        return packets

    def on_ws_market_data(self) -> int:
        """Drain the WebSocket: every text message is one trace, numbered 1, 2, ... in arrival order
        (answers and malformed ones too: the n-th text message on the wire is trace n, which is how
        ``tickscope wire`` matches it); returns the reads done."""
        ws, commit, strategy, depth = self.ws, self.ticks.commit, self.strategy, self.depth
        depth_bits, ticker_bits, feed_bits = (
            self.msg_bits["depthUpdate"],
            self.msg_bits["bookTicker"],
            self.feed_bits,
        )
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
                        word = depth_bits | self.symbol_bits.get(symbol, 0)
                    else:
                        if kind == ANSWER:
                            self._answer(msg)
                            word = feed_bits
                        else:
                            self._ticker(msg)
                            word = ticker_bits
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
                        if intent is not None and (sent := self._order(t, seq, sync.book, intent, now, word)):
                            t = sent  # committed once per leg
                            continue
                    elif sync.want_snapshot:
                        self._log_limited(
                            f"{sync.symbol}: hole in depth updates at U={first}: resync from a snapshot"
                        )
                        self._request_snapshots()
                t = commit(seq, word)
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

    def _order(self, t, seq: int, book, intent, now: int, word: int):
        """Quote both sides of ``book`` (legs bid and ask, primary venue; ``--quotes one``: one
        marketable order on the signal's side, leg taker) and, every
        ``--hedge-every``-th signal that quoted, hedge on the signal's side (leg hedge, hedge venue).
        Commits the tick, then each leg sent, and returns the next tick's stamp vector; None when risk
        let no leg through (the caller commits the tick, which then ends at ``risk.checked``)."""
        side, qty, price = intent
        symbol, mid, check = book.symbol, book.mid(), self.risk.check
        if self.args.quotes == "both":
            quotes = ((LEG_BID, "bid", b"B", book.bids.best()), (LEG_ASK, "ask", b"S", book.asks.best()))
        else:
            quotes = ((LEG_TAKER, "taker", side, price),)
        legs = []
        for leg, kind, leg_side, leg_price in quotes:
            if self._risk_ok(
                check(symbol, leg_side, qty, leg_price, mid, now), symbol, leg_side, qty, leg_price
            ):
                legs.append((leg, kind, self.primary, leg_side, leg_price))
        if legs:
            self.quoted += 1
            if self.hedge is not None and self.quoted % self.args.hedge_every == 0:
                self.hedges_due += 1
                if self._risk_ok(check(symbol, side, qty, price, mid, now), symbol, side, qty, price):
                    legs.append((LEG_HEDGE, "hedge", self.hedge, side, price))
                else:
                    self.hedges_held_by_risk += 1
        t[RISK_CHECKED] = perf_counter_ns()
        if not legs:
            return None
        # The tick's stamps and its own values (feed venue, symbol, msg_type) as a record of their
        # own: a record that also stamps a leg's point gives its values to that leg, and the
        # stages before the fan-out are sliced by the tick's values only (docs/concepts.md).
        t = self.ticks.commit(seq, word)
        commit_leg, base = self.ticks.commit_leg, word
        for leg, kind, g, leg_side, leg_price in legs:
            t[ORDER_START] = perf_counter_ns()
            order = self.oms.new_order(symbol, leg_side, qty, leg_price, seq, now, leg=leg, venue=g.venue)
            msg_seq = g.session.next_seq()
            raw = g.template.encode(msg_seq, order.clordid, symbol.encode(),
                                    b"1" if leg_side == b"B" else b"2", qty, F.price_text(leg_price))  # fmt: skip
            t[ORDER_ENCODED] = perf_counter_ns()
            # Each leg is a record of its own: only its order.start and order.encoded, with the leg's values.
            venue_word = (base & ~0xFFFF) | self.venue_bits[g.venue]
            t = commit_leg(seq, leg, venue_word | self.side_bits[leg_side])
            try:
                g.fix.sendall(raw)
            except OSError as e:
                self._kill(f"{g.prefix}order send failed: {e}")
                return t
            # Counted the moment it is on the wire: stops arrive as a flag (see main), never between
            # the send and this line, so the count matches what the acceptor received.
            self.sent += 1
            self.sent_by_kind[kind] += 1
            g.awaiting[order.clordid] = msg_seq
            g.awaiting_seq[msg_seq] = order.clordid
            key = g.tx.key_for_send(len(raw))
            g.session.sent(raw)
            if self.kernel_tx:
                g.pending_tx.add(key, (seq, leg))
            else:
                self.orders_ring.record(ORDER_TX, seq, leg=leg)
        return t

    def _risk_ok(self, verdict, symbol: str, side: bytes, qty: int, price: int) -> bool:
        if verdict == Reject.OK:
            return True
        if verdict != Reject.KILL_SWITCH:
            self._log_limited(
                f"risk reject {verdict.name} {symbol} {side.decode()} {qty}@{price / PRICE_SCALE}"
            )
        return False

    def on_fix(self, g: Gateway | None = None) -> bool:
        """Read an order-entry socket (the primary's by default); False when that session is over."""
        g = g or self.primary
        try:
            data = g.fix.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            self._kill(f"{g.prefix}FIX connection error: {e}")
            return False
        arrived = perf_counter_ns()
        if not data:
            if not self.closing:
                self._kill(f"{g.prefix}venue closed the FIX connection")
            return False
        return self._on_fix_items(g, g.stream.feed(data), arrived)

    def on_all_fix(self) -> None:
        for g in self.gateways:
            if g.alive:
                g.alive = self.on_fix(g)

    def _on_fix_items(self, g: Gateway, items: list, arrived: int) -> bool:
        """Session and ExecutionReport handling of parsed FIX (or FixError); False when it ended."""
        replies: list[bytes] = []
        alive = True
        for item in items:
            if isinstance(item, F.FixError):
                self._log_limited(f"{g.prefix}FIX from venue: {item}")
                replies += g.session.on_error(item).replies
                continue
            got = g.session.on_message(item)
            replies += got.replies
            if got.gap_filled:
                self._gap_filled(g, got.gap_filled)
            for app in got.apps:
                try:
                    if app.msg_type == F.EXECUTION_REPORT:
                        self._execution(g, app, arrived)
                    elif app.msg_type == F.REJECT:
                        self._session_reject(g, app)
                except F.FieldError as e:  # e.g. LastPx=inf: Reject(35=3), counted in fix.invalid_fields
                    self._log_limited(f"{g.prefix}FIX from venue: {app.msg_type.decode()} rejected: {e}")
                    replies += g.session.on_field_error(app, e).replies
            if got.close:
                if not (self.closing and not g.session.logged_on):
                    self._kill(f"{g.prefix}FIX session ended: {got.reason}")
                alive = False
        if replies:
            self._send(g, b"".join(replies))
        return alive

    def _execution(self, g: Gateway, msg: F.FixMessage, arrived: int) -> None:
        clordid, exec_type, last_qty, last_px = F.execution_fields(msg)  # FieldError: nothing changed
        order = self.oms.orders.get(clordid)
        first = order is not None and order.state == State.PENDING_NEW
        self.oms.on_execution(clordid, exec_type, last_qty, last_px)
        if first:
            self.orders_ring.record(ACK_RX, order.trace_id, ts=arrived, leg=order.leg)
        msg_seq = g.awaiting.pop(clordid, None)
        if msg_seq is not None:
            del g.awaiting_seq[msg_seq]
            g.session.peer_processed(msg_seq)
            if exec_type == b"8":
                self.venue_rejects += 1
            else:
                self.acks += 1

    def _session_reject(self, g: Gateway, msg: F.FixMessage) -> None:
        """A session-level Reject of an order: answered (rejected), no longer in flight."""
        ref_seq = msg.int(F.RefSeqNum, -1)
        clordid = g.awaiting_seq.pop(ref_seq, None)
        if clordid is not None and g.awaiting.pop(clordid, None) is not None:
            g.session.peer_processed(ref_seq)
            self.venue_rejects += 1
            self.oms.on_execution(clordid, b"8")
            self._log_limited(f"{g.prefix}order {clordid.decode()} rejected by the session: "
                              f"{(msg.get(F.Text) or b'').decode(errors='replace')}")  # fmt: skip

    def _gap_filled(self, g: Gateway, ranges: list[tuple[int, int]]) -> None:
        """Orders under numbers we gap-filled at the venue's ResendRequest never reach it (IOC
        orders are not resent, see fix_session): answered, by us, as not delivered."""
        lost = [(seq, c) for seq, c in g.awaiting_seq.items() if any(a <= seq < b for a, b in ranges)]
        for seq, clordid in lost:
            del g.awaiting_seq[seq]
            del g.awaiting[clordid]
            self.oms.on_execution(clordid, b"8")  # terminal: its quantity no longer counts against risk
        self.gap_filled_orders += len(lost)
        if lost:
            log(f"{g.prefix}{len(lost)} orders (MsgSeqNum {lost[0][0]}..{lost[-1][0]}) gap-filled at the venue's "
                f"ResendRequest: never delivered, not resent (stale IOC orders)")  # fmt: skip

    def housekeeping(self) -> None:
        self.record_tx_stamps()
        for g in self.gateways:
            if not g.alive:
                continue
            got = g.session.timer()
            if got.replies:
                self._send(g, b"".join(got.replies))
            if got.close:
                self._kill(f"{g.prefix}{got.reason}")
            if g.awaiting:
                self._check_stall(g)
            else:
                g.stalled = False

    def _check_stall(self, g: Gateway) -> None:
        """One warning when the oldest unanswered order has waited more than --ack-wait while the
        venue kept sending (heartbeats, rejects, other answers): the session is alive, the orders are not."""
        if g.stalled:
            return
        oldest = self.oms.orders.get(next(iter(g.awaiting)))
        if oldest is None:
            return
        sent_s = oldest.sent_ns / 1e9
        if time.monotonic() - sent_s > self.args.ack_wait and g.session.last_rx > sent_s:
            g.stalled = True
            self.order_stalls += 1
            log(f"{g.prefix}warning: order session stalled: {len(g.awaiting)} orders unanswered for over "
                f"{self.args.ack_wait:g} s while the venue is still sending; {self.seq_facts(g)}")  # fmt: skip

    def seq_facts(self, g: Gateway | None = None) -> str:
        gateways = [g] if g else [g for g in self.gateways if g.awaiting] or [self.primary]
        return "; ".join(
            f"{g.prefix}last MsgSeqNum sent {g.session.out_seq - 1}, "
            f"last the venue processed {e - 1 if (e := g.session.stats.peer_expects) else 'unknown'}"
            for g in gateways
        )

    def _send(self, g: Gateway, raw: bytes) -> None:
        try:
            g.fix.sendall(raw)
            g.tx.key_for_send(len(raw))
        except OSError as e:
            self._kill(f"{g.prefix}FIX send failed: {e}")

    def _kill(self, reason: str) -> None:
        """Kill switch: no more orders; cancel what is open; the market-data side keeps measuring."""
        if not self.risk.killed:
            self.risk.kill(reason)
            log(f"kill switch: {reason}")
            for o in self.oms.cancel_all():
                g = self.by_venue.get(o.venue, self.primary)
                if g.session.logged_on:
                    self._send(g, g.session.build(F.ORDER_CANCEL_REQUEST, [
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
        on_md = self.on_market_data if self.ws is None else self.on_ws_market_data
        on_fix, primary = self.on_fix, self.primary
        gateways = self.gateways
        while not self.stop:
            on_md()
            for g in gateways:
                if g.alive:
                    g.alive = on_fix(g)
            now = time.monotonic()
            if now >= next_house:
                if primary.alive or any(g.alive for g in gateways):
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

        def fix_ready(g: Gateway):
            if g.alive and not self.on_fix(g):
                g.alive = False
                loop.remove_reader(g.fix.fileno())

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
            for g in self.gateways:
                loop.add_reader(g.fix.fileno(), fix_ready, g)
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
            "orders_in_flight_at_end": self.awaiting,
            "orders_by_leg": dict(self.sent_by_kind),
            "quotes": self.args.quotes,
            "quoted_signals": self.quoted,
            "hedges_due": self.hedges_due,
            "hedges_held_by_risk": self.hedges_held_by_risk,
            "hedge_every": self.args.hedge_every if self.hedge is not None else 0,
            "venues": {
                g.venue: {
                    "role": "hedge" if g is self.hedge else "primary",
                    "port": g.port,
                    "in_flight_at_end": len(g.awaiting),
                }
                for g in self.gateways
            },  # fmt: skip
            "orders_gap_filled": self.gap_filled_orders,
            "order_stalls": self.order_stalls,
            "fills": self.oms.fills,
            "risk_rejects": dict(self.risk.counts),
            "signals_held_back": self.strategy.held_back,
            "kill_switch": self.risk.kill_reason or None,
            "oms_invalid_transitions": self.oms.invalid_transitions,
            "oms_unknown_reports": self.oms.unknown_reports,
            "fix": {k: v for k, v in self.primary.session.stats.__dict__.items() if k != "reasons"},
            **(
                {"fix_hedge": {k: v for k, v in self.hedge.session.stats.__dict__.items() if k != "reasons"}}
                if self.hedge is not None
                else {}
            ),  # fmt: skip
            "kernel_rx_stamps": self.rx.enabled,
            "kernel_tx_stamps": self.kernel_tx,
            "loop": "uvloop" if self.args.uvloop else self.args.loop,
            "tx_stamps_unmatched": sum(len(g.pending_tx) for g in self.gateways),
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
            if not self.risk.killed:
                self._read_fix_while(lambda: self.awaiting, self.args.ack_wait)
            for g in self.gateways:
                if g.session.logged_on:
                    self._send(g, g.session.logout("trader stopping"))
            self._read_fix_while(
                lambda: any(g.session.logged_on for g in self.gateways), self.args.logout_wait
            )
        except OSError:
            pass
        self.record_tx_stamps()
        if self._pending_tx():  # transmit stamps of the last orders may trail the acks by a moment
            end = time.monotonic() + 0.05
            while self._pending_tx() and time.monotonic() < end:
                time.sleep(0.001)
                self.record_tx_stamps()
        self.write_stats()
        self.ticks.close()
        self.orders_ring.close()
        for g in self.gateways:
            g.fix.close()
        if self.ws is not None:
            self.ws.close()
        else:
            self.md.close()

    def _pending_tx(self) -> bool:
        return any(g.pending_tx for g in self.gateways)

    def _read_fix_while(self, pending, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while pending() and (left := end - time.monotonic()) > 0:
            live = [g for g in self.gateways if g.alive and g.session.logged_on]
            if not live:
                return
            for sock in select.select([g.fix for g in live], [], [], min(left, 0.01))[0]:
                g = next(g for g in live if g.fix is sock)
                g.alive = self.on_fix(g)
            self.record_tx_stamps()

    def record_tx_stamps(self) -> None:
        """order.tx of the orders whose kernel transmit stamp has reached the error queue."""
        for g in self.gateways:
            if g.pending_tx:
                for key, ts in g.tx.drain():
                    for seq, leg in g.pending_tx.stamped(key):
                        self.orders_ring.record(ORDER_TX, seq, ts=ts, leg=leg)


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
    ap.add_argument("--hedge-fix-host", default="127.0.0.1")
    ap.add_argument("--hedge-fix-port", type=int, default=0,
                    help="the hedge venue's FIX acceptor (a second session); 0: quote only, no hedge leg")  # fmt: skip
    ap.add_argument("--hedge-target-comp-id", default="VENUE2")
    ap.add_argument("--quotes", choices=["one", "both"], default="both",
                    help="both: bid and ask legs, the market maker (the default); one: a marketable IOC per signal")  # fmt: skip
    ap.add_argument("--hedge-every", type=int, default=4,
                    help="every N-th signal that quoted also hedges on the hedge venue")  # fmt: skip
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
    if args.hedge_every < 1:
        log(f"--hedge-every must be 1 or more: got {args.hedge_every}")
        return 2
    if args.hedge_fix_port and args.hedge_target_comp_id == args.target_comp_id:
        log(
            f"--hedge-target-comp-id must differ from --target-comp-id ({args.target_comp_id}): it names the venue"
        )
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
        legs = ", ".join(f"{k} {v}" for k, v in s["orders_by_leg"].items())
        log(f"messages {s['feed']['messages']}, gaps {s['feed_gaps']}, orders {s['orders_sent']} ({legs}), "
            f"acks {s['orders_acked']}, "
            f"rejected {s['orders_rejected']}, gap-filled {s['orders_gap_filled']}, "
            f"in flight at end {s['orders_in_flight_at_end']}, risk rejects {sum(s['risk_rejects'].values())}")  # fmt: skip
    if trader.awaiting:  # the last line: what `profile` reports as the trader's failure
        log(f"{trader.awaiting} of {trader.sent} orders never answered ({trader.seq_facts()}): "
            f"exit {EXIT_UNANSWERED}")  # fmt: skip
        return EXIT_UNANSWERED
    return 0


if __name__ == "__main__":
    sys.exit(main())
