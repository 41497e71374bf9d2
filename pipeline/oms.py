"""Order state machine: what the trader believes about each order it sent.

PendingNew -> New -> PartiallyFilled -> Filled, or -> Cancelled / Rejected (also from PendingNew:
an IOC that found nothing, a venue reject). Execution reports that make no sense for the order's
state (duplicates, out of order, unknown ClOrdID) are counted and logged once, never raised into
the hot loop. Independent of FIX: it takes and returns plain values.
"""

from __future__ import annotations

import sys
from enum import Enum

from .risk import RiskChecker


class State(Enum):
    PENDING_NEW = "PendingNew"
    NEW = "New"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    PENDING_CANCEL = "PendingCancel"


TERMINAL = {State.FILLED, State.CANCELLED, State.REJECTED}
# FIX ExecType(150) -> the state it moves an order to.
EXEC_TYPES = {b"0": State.NEW, b"F": State.FILLED, b"1": State.PARTIALLY_FILLED, b"2": State.FILLED,
              b"4": State.CANCELLED, b"C": State.CANCELLED, b"8": State.REJECTED, b"6": State.PENDING_CANCEL}  # fmt: skip
ALLOWED = {
    State.PENDING_NEW: {State.NEW, State.REJECTED, State.CANCELLED, State.PARTIALLY_FILLED, State.FILLED},
    State.NEW: {State.PARTIALLY_FILLED, State.FILLED, State.CANCELLED, State.PENDING_CANCEL},
    State.PARTIALLY_FILLED: {State.PARTIALLY_FILLED, State.FILLED, State.CANCELLED, State.PENDING_CANCEL},
    State.PENDING_CANCEL: {State.CANCELLED, State.FILLED, State.PARTIALLY_FILLED},
}


class Order:
    __slots__ = ("clordid", "symbol", "side", "qty", "price", "state", "filled", "trace_id", "sent_ns", "leg",
                 "venue")  # fmt: skip

    def __init__(self, clordid: bytes, symbol: str, side: bytes, qty: int, price: int, trace_id: int, sent_ns: int,
                 leg: int = 0, venue: str = ""):  # fmt: skip
        self.clordid, self.symbol, self.side, self.qty, self.price = clordid, symbol, side, qty, price
        self.state = State.PENDING_NEW
        self.filled = 0
        self.trace_id = trace_id
        self.sent_ns = sent_ns
        self.leg = leg  # which order of its tick (the trace's leg): its acks join that leg
        self.venue = venue


class OrderManager:
    def __init__(self, risk: RiskChecker, prefix: str = "TS"):
        self.risk = risk
        self.orders: dict[bytes, Order] = {}
        self._next = 1
        self._prefix = prefix.encode()
        self.invalid_transitions = 0
        self.unknown_reports = 0
        self.fills = 0
        self._logged: set[str] = set()

    def new_order(self, symbol: str, side: bytes, qty: int, price: int, trace_id: int, now_ns: int,
                  leg: int = 0, venue: str = "") -> Order:  # fmt: skip
        # The trace id and leg lead the ClOrdID so a wire capture can join the order to its leg's
        # trace (collectors/wire/fix.py: the first run of digits, then '.<leg>'); the counter keeps
        # ClOrdIDs unique. pipeline/rust_trader/src/trader.rs writes the same shape.
        clordid = b"%s%d.%d-%d" % (self._prefix, trace_id, leg, self._next)
        self._next += 1
        o = Order(clordid, symbol, side, qty, price, trace_id, now_ns, leg, venue)
        self.orders[clordid] = o
        return o

    def on_execution(
        self, clordid: bytes, exec_type: bytes, last_qty: int = 0, last_px: int = 0
    ) -> Order | None:
        o = self.orders.get(clordid)
        if o is None:
            self.unknown_reports += 1
            self._log_once("unknown", f"oms: execution report for unknown ClOrdID {clordid!r} (counted)")
            return None
        new_state = EXEC_TYPES.get(exec_type)
        if new_state is None:
            return o
        if new_state == State.FILLED and o.filled + last_qty < o.qty:
            new_state = State.PARTIALLY_FILLED
        if new_state not in ALLOWED.get(o.state, ()):
            self.invalid_transitions += 1
            self._log_once(
                f"{o.state}->{new_state}",
                f"oms: invalid transition {o.state.value} -> {new_state.value} (counted)",
            )
            return o
        if last_qty:
            o.filled += last_qty
            self.fills += 1
            self.risk.on_fill(o.symbol, o.side, last_qty, last_px or o.price)
        o.state = new_state
        if new_state in TERMINAL:
            self.risk.on_done(o.qty - o.filled, o.price)
            del self.orders[clordid]
        return o

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.state not in TERMINAL]

    def cancel_all(self) -> list[Order]:
        """Kill switch: every open order to cancel (the gateway sends the OrderCancelRequests)."""
        out = []
        for o in self.open_orders():
            o.state = State.PENDING_CANCEL if o.state != State.PENDING_NEW else o.state
            out.append(o)
        return out

    def _log_once(self, key: str, line: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            print(line, file=sys.stderr, flush=True)
