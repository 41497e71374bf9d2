"""One test per pre-trade risk rule: just under the limit passes, just over is rejected with its code."""

import pytest

from tickscope.pipeline.oms import OrderManager, State
from tickscope.pipeline.risk import Reject, RiskChecker, RiskLimits

MID = 100_0000  # $100.0000


def checker(**limits):
    return RiskChecker(RiskLimits(**limits))


def test_max_quantity():
    r = checker(max_qty=500)
    assert r.check("X", b"B", 500, MID, MID, 0) == Reject.OK
    assert r.check("X", b"B", 501, MID, MID, 10**9) == Reject.MAX_QTY
    assert r.counts["MAX_QTY"] == 1


def test_max_notional():
    r = checker(max_notional=100 * MID)
    assert r.check("X", b"B", 100, MID, MID, 0) == Reject.OK
    assert r.check("X", b"B", 101, MID, MID, 10**9) == Reject.MAX_NOTIONAL


def test_price_collar_around_mid():
    r = checker(collar_bps=100)  # 1 %
    assert r.check("X", b"B", 1, MID + 1_0000, MID, 0) == Reject.OK
    assert r.check("X", b"B", 1, MID + 1_0001, MID, 10**9) == Reject.PRICE_COLLAR
    assert r.check("X", b"B", 1, MID, None, 2 * 10**9) == Reject.PRICE_COLLAR, "no mid, no reference: reject"


def test_max_position_after_fill():
    r = checker(max_position=300)
    r.on_fill("X", b"B", 200, MID)
    assert r.check("X", b"B", 100, MID, MID, 0) == Reject.OK
    assert r.check("X", b"B", 101, MID, MID, 10**9) == Reject.MAX_POSITION
    assert r.check("X", b"S", 101, MID, MID, 2 * 10**9) == Reject.OK, "selling reduces the position"


def test_credit_limit_on_gross_exposure():
    r = checker(credit=1000 * MID)
    r.on_fill("X", b"B", 600, MID)
    assert r.check("X", b"B", 400, MID, MID, 0) == Reject.OK  # open 400 + filled 600
    assert r.check("Y", b"B", 1, MID, MID, 10**9) == Reject.CREDIT
    r.on_done(400, MID)
    r.on_fill("X", b"S", 600, MID)  # flat again: the position no longer uses credit
    assert r.position_exposure == 0 and r.check("Y", b"B", 900, MID, MID, 2 * 10**9) == Reject.OK


def test_message_rate_limit_per_second():
    r = checker(max_orders_per_s=3, duplicate_window_ns=0)
    for i in range(3):
        assert r.check("X", b"B", 1 + i, MID, MID, i) == Reject.OK
    assert r.check("X", b"B", 9, MID, MID, 10) == Reject.MSG_RATE
    assert r.check("X", b"B", 9, MID, MID, 1_000_000_001) == Reject.OK, "the window slides"


def test_duplicate_order_window():
    r = checker(duplicate_window_ns=5_000)
    assert r.check("X", b"B", 10, MID, MID, 0) == Reject.OK
    assert r.check("X", b"B", 10, MID, MID, 4_999) == Reject.DUPLICATE
    assert r.check("X", b"B", 11, MID, MID, 4_999) == Reject.OK
    assert r.check("X", b"B", 10, MID, MID, 5_000) == Reject.OK


def test_restricted_symbols():
    r = checker(restricted=frozenset({"BAD"}))
    assert r.check("BAD", b"B", 1, MID, MID, 0) == Reject.RESTRICTED
    assert r.check("GOOD", b"B", 1, MID, MID, 0) == Reject.OK


def test_kill_switch_rejects_everything_and_cancels_open_orders():
    r = checker()
    oms = OrderManager(r)
    a = oms.new_order("X", b"B", 10, MID, trace_id=1, now_ns=0)
    oms.on_execution(a.clordid, b"0")
    r.kill("FIX session lost")
    assert r.check("X", b"B", 1, MID, MID, 0) == Reject.KILL_SWITCH
    assert [o.clordid for o in oms.cancel_all()] == [a.clordid] and a.state == State.PENDING_CANCEL


def test_every_reason_has_a_stable_name_and_a_counter():
    r = checker()
    assert set(r.counts) == {x.name for x in Reject if x}


@pytest.mark.parametrize("steps, final", [
    ([(b"0", 0), (b"F", 100)], State.FILLED),
    ([(b"0", 0), (b"F", 40)], State.PARTIALLY_FILLED),  # a "fill" short of the quantity is partial
    ([(b"0", 0), (b"1", 40), (b"F", 60)], State.FILLED),
    ([(b"0", 0), (b"4", 0)], State.CANCELLED),
    ([(b"8", 0)], State.REJECTED),
])  # fmt: skip
def test_oms_transitions(steps, final):
    oms = OrderManager(RiskChecker())
    o = oms.new_order("X", b"B", 100, MID, 1, 0)
    for exec_type, qty in steps:
        oms.on_execution(o.clordid, exec_type, last_qty=qty, last_px=MID)
    assert o.state == final


def test_oms_counts_invalid_and_unknown_reports():
    oms = OrderManager(RiskChecker())
    o = oms.new_order("X", b"B", 100, MID, 1, 0)
    oms.on_execution(o.clordid, b"0")
    oms.on_execution(o.clordid, b"8")  # New -> Rejected is not a valid transition
    oms.on_execution(b"NOPE", b"0")
    assert oms.invalid_transitions == 1 and oms.unknown_reports == 1 and o.state == State.NEW
