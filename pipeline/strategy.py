"""A deliberately simple strategy: top-of-book imbalance -> marketable IOC limit orders.

When the size at the best bid outweighs the size at the best ask by ``threshold`` (or the
reverse), buy at the ask (or sell at the bid), then stay quiet on that symbol for ``cooldown_ns``.
Most ticks decide "no trade": those are traces too (tick-to-decision). The strategy keeps its
position inside ``soft_position`` (a fraction of the risk limit): past it, it only trades back
towards flat, so pre-trade risk stays the backstop it should be, not the steady state.
"""

from __future__ import annotations

from .book import OrderBook


class ImbalanceStrategy:
    __slots__ = (
        "threshold",
        "qty",
        "cooldown_ns",
        "_last",
        "signals",
        "positions",
        "soft_position",
        "held_back",
    )

    def __init__(self, threshold: float = 0.6, qty: int = 100, cooldown_ns: int = 5_000_000,
                 positions: dict[str, int] | None = None, soft_position: int = 0):  # fmt: skip
        self.threshold = threshold
        self.qty = qty
        self.cooldown_ns = cooldown_ns
        self._last: dict[str, int] = {}
        self.signals = 0
        self.positions = positions if positions is not None else {}  # shared with risk, updated on fills
        self.soft_position = soft_position  # 0: no limit of its own
        self.held_back = 0  # signals not sent: they would have grown the position past the soft limit

    def on_book(self, book: OrderBook, now_ns: int) -> tuple[bytes, int, int] | None:
        """(side, qty, limit price) to send, or None."""
        bid, ask = book.bids.best(), book.asks.best()
        if bid is None or ask is None:
            return None
        bsz, asz = book.bids.levels[bid][0], book.asks.levels[ask][0]
        if bsz + asz <= 0:  # zero-share adds from a hostile feed: no imbalance to read
            return None
        imbalance = (bsz - asz) / (bsz + asz)
        if -self.threshold < imbalance < self.threshold:
            return None
        last = self._last.get(book.symbol)
        if last is not None and now_ns - last < self.cooldown_ns:
            return None
        if self.soft_position:
            after = self.positions.get(book.symbol, 0) + (self.qty if imbalance > 0 else -self.qty)
            if abs(after) > self.soft_position:
                self.held_back += 1
                return None
        self._last[book.symbol] = now_ns
        self.signals += 1
        return (b"B", self.qty, ask) if imbalance > 0 else (b"S", self.qty, bid)
