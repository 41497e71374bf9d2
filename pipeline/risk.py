"""Pre-trade risk checks of the kind SEC 15c3-5 and MiFID II RTS 6 require of a broker-dealer.

Every order passes ``RiskChecker.check`` before it is encoded. Checks run cheapest first and
allocate nothing on accept. A rejection returns a stable reason code (``Reject``) that is counted
per reason; the kill switch, once tripped, rejects everything and asks the OMS to cancel all.
Time is passed in (monotonic ns), never read here, so that tests are deterministic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum


class Reject(IntEnum):
    OK = 0
    KILL_SWITCH = 1
    RESTRICTED = 2
    MAX_QTY = 3
    MAX_NOTIONAL = 4
    PRICE_COLLAR = 5
    MSG_RATE = 6
    DUPLICATE = 7
    MAX_POSITION = 8
    CREDIT = 9


@dataclass
class RiskLimits:
    max_qty: int = 10_000
    max_notional: int = 5_000_000 * 10_000  # price units (1/10000) x shares: $5M per order
    collar_bps: int = 500  # limit price within 5% of the mid
    max_position: int = 50_000  # shares, long or short, per symbol, after the order fills
    credit: int = 50_000_000 * 10_000  # gross exposure: open orders + |positions|, in price units x shares
    max_orders_per_s: int = 500
    duplicate_window_ns: int = 5_000_000  # same symbol/side/qty/price within 5 ms
    restricted: frozenset[str] = field(default_factory=frozenset)


class RiskChecker:
    def __init__(self, limits: RiskLimits | None = None):
        self.limits = limits or RiskLimits()
        self.counts = {r.name: 0 for r in Reject if r}
        self.killed = False
        self.kill_reason = ""
        self._recent: deque[int] = deque()
        self._last_order: dict[tuple, int] = {}
        self.positions: dict[str, int] = {}
        self.open_exposure = 0  # notional of orders sent and not yet done
        self._position_value: dict[str, int] = {}  # |position| x last fill price, per symbol

    def kill(self, reason: str) -> None:
        self.killed = True
        self.kill_reason = reason

    def check(self, symbol: str, side: bytes, qty: int, price: int, mid: float | None, now_ns: int) -> Reject:
        lim = self.limits
        r = Reject.OK
        notional = qty * price
        if self.killed:
            r = Reject.KILL_SWITCH
        elif symbol in lim.restricted:
            r = Reject.RESTRICTED
        elif qty <= 0 or qty > lim.max_qty:
            r = Reject.MAX_QTY
        elif notional > lim.max_notional:
            r = Reject.MAX_NOTIONAL
        elif mid is None or abs(price - mid) * 10_000 > lim.collar_bps * mid:
            r = Reject.PRICE_COLLAR
        else:
            recent = self._recent
            while recent and recent[0] <= now_ns - 1_000_000_000:
                recent.popleft()
            key = (symbol, side, qty, price)
            last = self._last_order.get(key)
            signed = qty if side == b"B" else -qty
            if len(recent) >= lim.max_orders_per_s:
                r = Reject.MSG_RATE
            elif last is not None and now_ns - last < lim.duplicate_window_ns:
                r = Reject.DUPLICATE
            elif abs(self.positions.get(symbol, 0) + signed) > lim.max_position:
                r = Reject.MAX_POSITION
            elif self.open_exposure + self.position_exposure + notional > lim.credit:
                r = Reject.CREDIT
            else:
                recent.append(now_ns)
                self._last_order[key] = now_ns
                self.open_exposure += notional
                return Reject.OK
        self.counts[r.name] += 1
        return r

    @property
    def position_exposure(self) -> int:
        """Gross exposure of the positions (marked at their last fill): a sale that flattens frees credit."""
        return sum(self._position_value.values())

    def on_fill(self, symbol: str, side: bytes, qty: int, price: int) -> None:
        pos = self.positions[symbol] = self.positions.get(symbol, 0) + (qty if side == b"B" else -qty)
        self._position_value[symbol] = abs(pos) * price
        self.open_exposure = max(0, self.open_exposure - qty * price)

    def on_done(self, leaves_qty: int, price: int) -> None:
        """An order left the book (cancelled, expired, rejected): release its open exposure."""
        self.open_exposure = max(0, self.open_exposure - leaves_qty * price)
