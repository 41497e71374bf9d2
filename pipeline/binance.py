"""Binance-shaped WebSocket market data: ``depthUpdate`` and ``bookTicker`` events, depth
snapshots, and the order-book synchronisation Binance documents for its spot streams.

Venue side: :class:`DepthPublisher` turns the venue's books into events. Every book change of a
symbol takes the next *update id* of that symbol; one ``depthUpdate`` carries the absolute
quantity of every level that changed since the previous event, with ``U`` (first update id in the
event) and ``u`` (last). A snapshot carries ``lastUpdateId``.

Trader side: :class:`DepthSync`, per symbol, as documented (spot "how to manage a local order
book correctly"): buffer events until a snapshot arrives; drop buffered events with
``u <= lastUpdateId``; the first applied event must straddle ``lastUpdateId + 1``; afterwards each
event must start at the previous ``u + 1``. An event with ``u`` at or below the book's id is stale
and dropped; one that starts beyond it is a hole: the book is discarded and re-synced from a new
snapshot. Quantities are absolute; 0 removes the level.

Prices travel as decimal strings ("101.2300"), parsed to ITCH price units (1/10000) so the
strategy, risk and FIX code are shared with the ITCH feed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .book import OrderBook
from .itch import PRICE_SCALE


def price_text(p: int) -> str:
    return f"{p // PRICE_SCALE}.{p % PRICE_SCALE:04d}"


def parse_price(s: str) -> int:
    """'101.23' -> 1012300, without float rounding; ValueError for anything but ASCII digits with
    at most 4 decimals (``int()`` alone would take '+', spaces, '_' and non-ASCII digits)."""
    whole, _, frac = s.partition(".")
    if (not s.isascii() or not whole.isdigit() or len(whole) > 12 or (frac and not frac.isdigit())
            or len(frac) > 4):  # fmt: skip
        raise ValueError(f"bad price {brief(s)}")
    return int(whole) * PRICE_SCALE + int((frac + "0000")[:4])


def parse_qty(s: str) -> int:
    """'300' -> 300: a whole quantity as a decimal string of ASCII digits."""
    if type(s) is not str or not s.isascii() or not s.isdigit() or len(s) > 18:
        raise ValueError(f"bad quantity {brief(s)}")
    return int(s)


def brief(v) -> str:
    """A JSON value for a one-line message: scalars shortened, containers by type only (their
    repr could be megabytes, or nested deeper than repr's recursion limit)."""
    if v is None or isinstance(v, (str, int, float, bool)):
        r = repr(v)
        return r if len(r) <= 30 else r[:27] + "..."
    return (
        f"a JSON {'list' if isinstance(v, list) else 'object' if isinstance(v, dict) else type(v).__name__}"
    )


class WsFeedError(ValueError):
    """A market-data event the trader cannot use (bad JSON, missing fields): counted, skipped."""


# -- venue side ---------------------------------------------------------------------------------
class DepthPublisher:
    """Events for the books of the venue's ``SyntheticFlow`` (keyed by ITCH stock locate)."""

    def __init__(self, books: dict[int, OrderBook]):
        self.books = books
        self.update_id = {locate: 0 for locate in books}
        self._first = {locate: 0 for locate in books}  # first update id not yet published
        self._published = {locate: ({}, {}) for locate in books}  # last L2 sent: (bids, asks)
        self._top = {locate: None for locate in books}

    def touched(self, locate: int) -> None:
        """A message changed this symbol's book: it takes the next update id."""
        if locate in self.update_id:
            self.update_id[locate] += 1

    def snapshot(self, symbol: str, limit: int = 1000) -> dict:
        for locate, book in self.books.items():
            if book.symbol == symbol:
                bids, asks = book.depth(limit)
                return {"lastUpdateId": self.update_id[locate],
                        "bids": [[price_text(p), str(q)] for p, q in bids],
                        "asks": [[price_text(p), str(q)] for p, q in asks]}  # fmt: skip
        raise KeyError(symbol)

    def events(self, event_time_ms: int) -> list[tuple[str, str]]:
        """(stream name, JSON text) for every symbol that changed since the last call."""
        out = []
        for locate, book in self.books.items():
            last = self.update_id[locate]
            first = self._first[locate] + 1
            if last < first:
                continue
            self._first[locate] = last
            sym = book.symbol
            old_bids, old_asks = self._published[locate]
            new_bids, new_asks = book.l2()
            b = _diff(old_bids, new_bids)
            a = _diff(old_asks, new_asks)
            self._published[locate] = (new_bids, new_asks)
            out.append((f"{sym.lower()}@depth", json.dumps(
                {"e": "depthUpdate", "E": event_time_ms, "s": sym, "U": first, "u": last, "b": b, "a": a},
                separators=(",", ":"))))  # fmt: skip
            bid, ask = book.bids.best(), book.asks.best()
            top = (bid, book.bids.best_size(), ask, book.asks.best_size())
            if top != self._top[locate] and bid is not None and ask is not None:
                self._top[locate] = top
                out.append((f"{sym.lower()}@bookTicker", json.dumps(
                    {"u": last, "s": sym, "b": price_text(bid), "B": str(top[1]), "a": price_text(ask),
                     "A": str(top[3])}, separators=(",", ":"))))  # fmt: skip
        return out


def _diff(old: dict[int, int], new: dict[int, int]) -> list[list[str]]:
    out = [[price_text(p), str(q)] for p, q in new.items() if old.get(p) != q]
    out += [[price_text(p), "0"] for p in old if p not in new]
    return out


# -- trader side --------------------------------------------------------------------------------
@dataclass
class SyncStats:
    applied: int = 0
    stale: int = 0  # u <= the book's id: already in the book
    holes: int = 0  # U beyond the book's id + 1: missed events, book discarded
    resyncs: int = 0  # snapshots applied after the first
    snapshots_too_old: int = 0
    buffered_max: int = 0
    missed_ids: int = 0  # update ids the stream skipped between two events seen, synced or not


@dataclass
class DepthSync:
    """One symbol's local book kept in sync with a Binance-style depth stream."""

    symbol: str
    book: OrderBook = field(default_factory=OrderBook)
    last_update_id: int = -1  # -1: not synced
    buffer: list[tuple[int, int, list, list]] = field(default_factory=list)
    stats: SyncStats = field(default_factory=SyncStats)
    want_snapshot: bool = True  # the caller should request one (and clear this)
    first_seen: int = -1  # U of the first event seen, u of the last: the span losses are counted in
    last_seen: int = -1

    def __post_init__(self):
        self.book.symbol = self.symbol

    @property
    def synced(self) -> bool:
        return self.last_update_id >= 0

    def on_event(self, first: int, last: int, bids: list, asks: list) -> bool:
        """Apply or buffer one depthUpdate (levels already parsed: ``levels()``); True when the
        book changed."""
        # Stream-level loss accounting, apart from the book's sync state: every update id between
        # two events seen that neither carried was lost on the way, whatever the book did then.
        if last > self.last_seen:
            if self.last_seen < 0:
                self.first_seen = first
            elif first > self.last_seen + 1:
                self.stats.missed_ids += first - self.last_seen - 1
            self.last_seen = last
        if not self.synced:
            self.buffer.append((first, last, bids, asks))
            self.stats.buffered_max = max(self.stats.buffered_max, len(self.buffer))
            return False
        if last <= self.last_update_id:
            self.stats.stale += 1
            return False
        if first > self.last_update_id + 1:
            self.stats.holes += 1
            self._desync()
            self.buffer.append((first, last, bids, asks))
            return False
        self._apply(last, bids, asks)
        return True

    def on_snapshot(self, last_update_id: int, bids: list, asks: list) -> bool:
        """Install a snapshot and replay the buffer; False if the snapshot is older than the buffer
        (Binance: fetch another)."""
        if self.buffer and last_update_id < self.buffer[0][0] - 1:
            self.stats.snapshots_too_old += 1
            self.want_snapshot = True
            return False
        self.book = OrderBook(self.symbol)
        for p, q in bids:
            self.book.bids.set_level(p, q)
        for p, q in asks:
            self.book.asks.set_level(p, q)
        if self.stats.applied or self.stats.holes:
            self.stats.resyncs += 1
        self.last_update_id = last_update_id
        pending, self.buffer = self.buffer, []
        for first, last, b, a in pending:
            if last <= last_update_id:
                continue  # already in the snapshot
            if first > self.last_update_id + 1:  # the stream lost events while we waited
                self.stats.holes += 1
                self._desync()
                self.buffer = [(first, last, b, a)]
                return False
            self._apply(last, b, a)
        return True

    def _apply(self, last: int, bids: list, asks: list) -> None:
        book = self.book
        for p, q in bids:
            book.bids.set_level(p, q)
        for p, q in asks:
            book.asks.set_level(p, q)
        self.last_update_id = last
        self.stats.applied += 1

    def _desync(self) -> None:
        self.last_update_id = -1
        self.buffer = []
        self.want_snapshot = True


def levels(raw) -> list[tuple[int, int]]:
    """[["101.23", "300"], ...] -> [(1012300, 300), ...]; all parsed before any is applied, so a
    malformed event never half-changes a book. Each level is a list of exactly two strings."""
    if type(raw) is not list:
        raise WsFeedError(f"price levels are not a list: {brief(raw)}")
    out = []
    try:
        for level in raw:
            if type(level) is not list or len(level) != 2:
                raise ValueError(f"level {brief(level)} is not [price, quantity]")
            p, q = level
            out.append((parse_price(p), parse_qty(q)))
    except (AttributeError, ValueError) as e:  # AttributeError: a price that is not a string
        raise WsFeedError(f"bad price level: {e}") from None
    return out


def update_id(msg: dict, key: str) -> int:
    """An update id (``U``, ``u``, ``lastUpdateId``): a non-negative JSON integer, nothing else
    (not 1e999, not "5", not true)."""
    v = msg[key]
    if type(v) is not int or v < 0:
        raise WsFeedError(f"{key} is not an update id: {brief(v)}")
    return v


def _symbol(msg: dict) -> str:
    s = msg["s"]
    if type(s) is not str:
        raise WsFeedError(f"symbol is not a string: {brief(s)}")
    return s


def depth_update(msg: dict) -> tuple[str, int, int, list, list]:
    """A decoded depthUpdate -> (symbol, U, u, bids, asks), fully checked; WsFeedError otherwise."""
    first, last = update_id(msg, "U"), update_id(msg, "u")
    if first > last:
        raise WsFeedError(f"depthUpdate with U={first} after u={last}")
    return _symbol(msg), first, last, levels(msg["b"]), levels(msg["a"])


def book_ticker(msg: dict) -> tuple[str, int, tuple[int, int, int, int]]:
    """A decoded bookTicker -> (symbol, u, (bid, bid size, ask, ask size)); WsFeedError otherwise."""
    (bid, bid_size), (ask, ask_size) = levels([[msg["b"], msg["B"]], [msg["a"], msg["A"]]])
    return _symbol(msg), update_id(msg, "u"), (bid, bid_size, ask, ask_size)


def snapshot_levels(result) -> tuple[int, list, list]:
    """The ``result`` of a depth request -> (lastUpdateId, bids, asks); WsFeedError otherwise."""
    if type(result) is not dict or not {"lastUpdateId", "bids", "asks"} <= result.keys():
        raise WsFeedError(f"depth snapshot without lastUpdateId, bids, asks: {brief(result)}")
    return update_id(result, "lastUpdateId"), levels(result["bids"]), levels(result["asks"])


DEPTH_UPDATE, BOOK_TICKER, ANSWER = "depthUpdate", "bookTicker", "answer"


def event_kind(msg: dict) -> str:
    """Which of the three shapes ``decode_event`` lets through this event is."""
    if msg.get("e") == "depthUpdate":
        return DEPTH_UPDATE
    if "result" in msg or "error" in msg or "status" in msg:
        return ANSWER
    return BOOK_TICKER


def decode_event(text: bytes | str) -> dict:
    """json.loads with the fields a feed handler needs present: one WsFeedError otherwise (their
    values are checked by ``depth_update``, ``book_ticker`` and ``snapshot_levels``)."""
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: deep nesting
        raise WsFeedError(f"market data is not JSON: {str(e)[:80]}") from None
    if not isinstance(msg, dict):
        raise WsFeedError("market data event is not a JSON object")
    kind = event_kind(msg)
    if kind == DEPTH_UPDATE:
        missing = [k for k in ("s", "U", "u", "b", "a") if k not in msg]
    elif kind == ANSWER:
        return msg  # an answer to one of our requests
    elif "u" in msg and "b" in msg:
        missing = [k for k in ("s", "B", "a", "A") if k not in msg]  # bookTicker
    else:
        raise WsFeedError(f"unknown market data event: {text[:80]!r}")
    if missing:
        raise WsFeedError(f"{msg.get('e', 'bookTicker')} event without {', '.join(missing)}")
    return msg


class WsClient:
    """A WebSocket client on our own non-blocking socket, using ``websockets``' Sans-I/O protocol.

    The library's threaded and asyncio clients read the socket themselves; a feed handler wants
    to: ``recvmsg_into`` with the kernel's receive stamp, from a busy-poll loop or an event loop.
    The protocol object does the framing, masking, ping/pong and close handshake.

    ``receive`` hands out every text *message* once, in arrival order (a fragmented one when its last
    frame is in, with the stamp of the read that completed it), including any that came in the same
    read as the handshake's 101 response: the trader numbers them 1, 2, ..., and ``tickscope wire``
    finds the same numbers by framing the venue's side of the connection on a capture.
    """

    def __init__(self, url: str, rx_factory, connect_timeout_s: float = 5.0):
        import socket
        import time

        from websockets.client import ClientProtocol
        from websockets.http11 import Response
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                self.sock = socket.create_connection((uri.host, uri.port), timeout=1.0)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"cannot connect to market data {url}: {e.strerror or e}") from None
                time.sleep(0.1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.protocol = ClientProtocol(uri, max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.sock.settimeout(0.2)
        self.rx = rx_factory(self.sock)
        self.closed = False
        self._next_id = 1
        self._fragments: list[bytes] | None = None  # a fragmented text message being assembled
        buf = bytearray(65536)
        while True:
            if time.monotonic() > deadline:
                raise ConnectionError(f"market data {url} never completed the WebSocket handshake")
            try:
                n, kernel_rx = self.rx.recv_into(buf)
            except TimeoutError:
                continue
            if not n:
                raise ConnectionError(f"market data {url} closed the connection during the handshake")
            self.protocol.receive_data(bytes(buf[:n]))
            events = self.protocol.events_received()
            if events and isinstance(events[0], Response):
                if self.protocol.handshake_exc is not None:
                    raise ConnectionError(f"market data {url} refused the WebSocket handshake: "
                                          f"{self.protocol.handshake_exc}")  # fmt: skip
                # Messages in the same read as the 101: the first ``receive`` hands them out.
                self._early = (kernel_rx, self._texts(events[1:]))
                break
        self.sock.setblocking(False)

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def request(self, method: str, params) -> int | None:
        """Send a request; its id, or None once the connection is closing (the venue's close frame
        came in the read whose messages asked for it: no answer could come, the feed is over)."""
        from websockets.protocol import State

        if self.protocol.state is not State.OPEN:
            return None
        rid = self._next_id
        self._next_id += 1
        self.protocol.send_text(json.dumps({"id": rid, "method": method, "params": params}).encode())
        self._flush()
        return rid

    def receive(self, buf) -> tuple[int, list[bytes]] | None:
        """One ``recv``: (kernel receive stamp, text payloads); None when nothing is waiting.
        Pings are answered here; a close from the venue sets ``closed``."""
        if self._early is not None:
            early, self._early = self._early, None
            if early[1]:
                return early
        if self.closed:
            return None
        try:
            n, kernel_rx = self.rx.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # reset by the peer
            self.closed = True
            return None
        if n == 0:
            self.closed = True
            self.protocol.receive_eof()
            return kernel_rx, []
        self.protocol.receive_data(bytes(buf[:n]))
        out = self._texts(self.protocol.events_received())
        self._flush()
        return kernel_rx, out

    def _texts(self, frames) -> list[bytes]:
        """The text messages completed by these frames (the protocol hands out frames, not messages:
        a fragmented one is a TEXT frame and CONT frames up to the one with FIN)."""
        out = []
        for frame in frames:
            op = frame.opcode
            if op == 1:  # TEXT
                if frame.fin:
                    out.append(frame.data)
                else:
                    self._fragments = [frame.data]
            elif op == 0:  # CONT
                if self._fragments is not None:  # (else: the rest of a binary message, not market data)
                    self._fragments.append(frame.data)
                    if frame.fin:
                        out.append(b"".join(self._fragments))
                        self._fragments = None
            elif op == 8:  # CLOSE
                self.closed = True
        return out

    def close(self) -> None:
        try:
            if not self.closed:
                self.protocol.send_close(1000, "trader stopping")
                self._flush()
        except OSError:
            pass
        self.sock.close()
