"""Order-level books built from ITCH events, aggregated into L2 price levels.

Prices are ints in ITCH units (1/10000). Levels live in a dict (price -> [shares, orders]) plus a
sorted price list per side, so the touch is O(1) and a new level costs one bisect insert.
Unknown order references (joined mid-session, or a gap ate the add) are counted, never raised:
a feed handler must keep going.
"""

from __future__ import annotations

from bisect import bisect_left, insort

BUY, SELL = b"B", b"S"


class Side:
    __slots__ = ("levels", "prices", "descending")

    def __init__(self, descending: bool):
        self.levels: dict[int, list[int]] = {}
        self.prices: list[int] = []  # ascending; the best bid is the last, the best ask the first
        self.descending = descending

    def add(self, price: int, shares: int) -> None:
        level = self.levels.get(price)
        if level is None:
            self.levels[price] = [shares, 1]
            insort(self.prices, price)
        else:
            level[0] += shares
            level[1] += 1

    def reduce(self, price: int, shares: int, removes_order: bool) -> None:
        level = self.levels.get(price)
        if level is None:  # emptied already (a hostile feed's zero-share adds or reused refs)
            return
        level[0] -= shares
        if removes_order:
            level[1] -= 1
        if level[1] <= 0 or level[0] <= 0:
            del self.levels[price]
            del self.prices[bisect_left(self.prices, price)]

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.descending else self.prices[0]

    def best_size(self) -> int:
        p = self.best()
        return self.levels[p][0] if p is not None else 0

    def depth(self, n: int) -> list[tuple[int, int]]:
        prices = reversed(self.prices[-n:]) if self.descending else self.prices[:n]
        return [(p, self.levels[p][0]) for p in prices]

    def set_level(self, price: int, shares: int) -> None:
        """Absolute L2 update (Binance style): 0 removes the level."""
        if shares <= 0:
            if price in self.levels:
                del self.levels[price]
                del self.prices[bisect_left(self.prices, price)]
        elif price in self.levels:
            self.levels[price][0] = shares
        else:
            self.levels[price] = [shares, 1]
            insort(self.prices, price)


class OrderBook:
    """One instrument: live orders by reference, and their L2 aggregation."""

    __slots__ = ("symbol", "bids", "asks", "orders")

    def __init__(self, symbol: str = ""):
        self.symbol = symbol
        self.bids = Side(descending=True)
        self.asks = Side(descending=False)
        self.orders: dict[int, list] = {}  # ref -> [side, price, shares]

    def _side(self, side: bytes) -> Side:
        return self.bids if side == BUY else self.asks

    def add(self, ref: int, side: bytes, price: int, shares: int) -> None:
        self.orders[ref] = [side, price, shares]
        self._side(side).add(price, shares)

    def execute(self, ref: int, shares: int) -> bool:
        return self.cancel(ref, shares)

    def cancel(self, ref: int, shares: int) -> bool:
        o = self.orders.get(ref)
        if o is None:
            return False
        shares = min(shares, o[2])
        o[2] -= shares
        gone = o[2] == 0
        self._side(o[0]).reduce(o[1], shares, gone)
        if gone:
            del self.orders[ref]
        return True

    def delete(self, ref: int) -> bool:
        o = self.orders.pop(ref, None)
        if o is None:
            return False
        self._side(o[0]).reduce(o[1], o[2], True)
        return True

    def replace(self, old_ref: int, new_ref: int, shares: int, price: int) -> bool:
        o = self.orders.get(old_ref)
        if o is None:
            return False
        side = o[0]
        self.delete(old_ref)
        self.add(new_ref, side, price, shares)
        return True

    def best_bid(self) -> int | None:
        return self.bids.best()

    def best_ask(self) -> int | None:
        return self.asks.best()

    def mid(self) -> float | None:
        b, a = self.bids.best(), self.asks.best()
        return (a + b) / 2 if a is not None and b is not None else None

    def depth(self, n: int = 5) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self.bids.depth(n), self.asks.depth(n)

    def l2(self) -> tuple[dict[int, int], dict[int, int]]:
        return (
            {p: lv[0] for p, lv in self.bids.levels.items()},
            {p: lv[0] for p, lv in self.asks.levels.items()},
        )


class BookSet:
    """Books by ITCH stock locate, fed the decoded message tuples of ``itch``."""

    def __init__(self):
        self.books: dict[int, OrderBook] = {}
        self.symbols: dict[int, str] = {}
        self.locate_of_ref: dict[int, int] = {}
        self.unknown_refs = 0

    def book(self, locate: int) -> OrderBook:
        b = self.books.get(locate)
        if b is None:
            b = self.books[locate] = OrderBook(self.symbols.get(locate, str(locate)))
        return b

    def apply(self, f: tuple) -> OrderBook | None:
        """Apply one decoded ITCH message; returns the book it changed (None if none)."""
        kind, locate = f[0], f[1]
        if kind == b"A" or kind == b"F":
            book = self.book(locate)
            book.add(f[5], f[6], f[9], f[7])
            return book
        if kind == b"R":
            symbol = f[5].decode("ascii", "replace").strip()
            self.symbols[locate] = symbol
            self.book(locate).symbol = symbol
            return None
        book = self.books.get(locate)
        if book is None:
            if kind in b"ECXDU":
                self.unknown_refs += 1
            return None
        if kind == b"E" or kind == b"C":
            ok = book.execute(f[5], f[6])
        elif kind == b"X":
            ok = book.cancel(f[5], f[6])
        elif kind == b"D":
            ok = book.delete(f[5])
        elif kind == b"U":
            ok = book.replace(f[5], f[6], f[7], f[8])
        else:
            return None
        if not ok:
            self.unknown_refs += 1
            return None
        return book
