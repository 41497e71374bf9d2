"""The order book equals a naive model under any event sequence; the strategy is deterministic."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tickscope.pipeline import itch
from tickscope.pipeline.book import BookSet, OrderBook
from tickscope.pipeline.strategy import ImbalanceStrategy

events = st.lists(
    st.tuples(
        st.sampled_from(["add", "cancel", "delete", "exec", "replace"]),
        st.integers(1, 30),
        st.sampled_from([b"B", b"S"]),
        st.integers(95, 105),
        st.integers(1, 500),
    ),  # fmt: skip
    max_size=200,
)


def naive_l2(orders):
    bids, asks = {}, {}
    for side, price, shares in orders.values():
        d = bids if side == b"B" else asks
        d[price] = d.get(price, 0) + shares
    return bids, asks


@settings(max_examples=200, deadline=None)
@given(events)
def test_l2_matches_a_naive_model(evs):
    book, model, next_ref = OrderBook("X"), {}, 1000
    for kind, ref, side, price, shares in evs:
        if kind == "add" and ref not in model:
            book.add(ref, side, price, shares)
            model[ref] = (side, price, shares)
        elif kind in ("cancel", "exec"):
            ok = book.cancel(ref, shares) if kind == "cancel" else book.execute(ref, shares)
            assert ok == (ref in model)
            if ref in model:
                s, p, q = model[ref]
                q -= min(q, shares)
                model[ref] = (s, p, q)
                if q == 0:
                    del model[ref]
        elif kind == "delete":
            assert book.delete(ref) == (ref in model)
            model.pop(ref, None)
        elif kind == "replace" and ref in model:
            next_ref += 1
            assert book.replace(ref, next_ref, shares, price)
            model[next_ref] = (model.pop(ref)[0], price, shares)
    assert book.l2() == naive_l2(model)
    bids, asks = naive_l2(model)
    assert book.best_bid() == (max(bids) if bids else None) and book.best_ask() == (
        min(asks) if asks else None
    )


def test_bookset_applies_decoded_itch_and_counts_unknown_refs():
    books = BookSet()
    for raw in (itch.stock_directory(3, 0, 0, "MSFT"), itch.add_order(3, 0, 0, 1, b"S", 200, "MSFT", 1_000_100),
                itch.add_order(3, 0, 0, 2, b"B", 100, "MSFT", 999_900), itch.order_executed(3, 0, 0, 1, 50, 1),
                itch.order_delete(3, 0, 0, 99)):  # fmt: skip
        books.apply(itch.decode(raw, 0, len(raw)))
    b = books.books[3]
    assert b.symbol == "MSFT" and b.depth(1) == ([(999_900, 100)], [(1_000_100, 150)])
    assert b.mid() == 1_000_000 and books.unknown_refs == 1


def test_strategy_fires_on_imbalance_then_cools_down():
    book = OrderBook("X")
    book.add(1, b"B", 100, 900)
    book.add(2, b"S", 101, 100)
    s = ImbalanceStrategy(threshold=0.6, qty=10, cooldown_ns=1000)
    assert s.on_book(book, 0) == (b"B", 10, 101)
    assert s.on_book(book, 500) is None  # cooling down
    assert s.on_book(book, 1500) == (b"B", 10, 101)
    book.add(3, b"S", 101, 4000)
    assert s.on_book(book, 5000) == (b"S", 10, 100)
    book.add(4, b"B", 100, 1200)
    assert s.on_book(book, 9000) is None  # balanced: no trade


def test_strategy_only_trades_back_towards_flat_past_its_soft_position():
    book = OrderBook("X")
    book.add(1, b"B", 100, 900)
    book.add(2, b"S", 101, 100)
    positions = {"X": 95}
    s = ImbalanceStrategy(threshold=0.6, qty=10, cooldown_ns=0, positions=positions, soft_position=100)
    assert s.on_book(book, 0) is None and s.held_back == 1, "buying 10 more would pass +100"
    positions["X"] = 85
    assert s.on_book(book, 1) == (b"B", 10, 101)
    positions["X"] = -100
    book.add(3, b"S", 101, 4000)
    assert s.on_book(book, 2) is None, "selling more would pass -100"
