"""Late answers never truncate the tail: points after the trade point join their trace however late.

A trace closes 250 ms after its last stamp arrived; an ack 400 ms to 2 s later must still become
its ``order_rtt`` value (the slow tail is what users come for), within the documented horizon.
"""

import json
import math
import sys
from dataclasses import dataclass

import numpy as np

from support import PROGRAMS
from support.cli import run_cli
from tickscope.collectors.rings.correlate import TICK_TO_TRADE, Correlator, TraceSchema
from tickscope.collectors.session.hdr import new_histogram

HDR = new_histogram()


def test_every_late_ack_lands_in_order_rtt_with_its_exact_value(tmp_path):
    orders = 40
    out = tmp_path / "s"
    r = run_cli("profile", "--no-live", "--no-perf", "--duration", "120s", "--out", str(out), "--",
                sys.executable, str(PROGRAMS / "late_acks.py"), str(orders), timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stderr
    delays = np.array([int(d) for d in r.stdout.split("delays_ns=")[1].split()[0].split(",")])
    assert delays.size == orders and delays.min() >= 1_500_000_000 and delays.max() <= 3_100_000_000
    summary = json.loads((out / "summary.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    rtt = summary["order_rtt"]
    assert rtt["count"] == orders, "every ack is an order_rtt value, however late"
    for key, pct in (("min", 0), ("p50", 50), ("p90", 90), ("max", 100)):
        exact = int(np.sort(delays)[max(1, math.ceil(pct / 100 * orders)) - 1])
        assert HDR.get_lowest_equivalent_value(exact) <= rtt[key] <= HDR.get_highest_equivalent_value(exact)
    counters = meta["counters"]
    assert summary[TICK_TO_TRADE]["count"] == orders
    assert counters["traces_incomplete"] == 0 and counters["late_beyond_horizon"] == 0
    assert counters["late_points"] == orders, "each ack came after its trace had closed"
    assert meta["clocks"]["late_horizon_s"] == 30.0


@dataclass
class P:
    name: str
    stage: str = ""
    flags: int = 0


def correlator(**kw) -> Correlator:
    s = TraceSchema()
    s.merge([P("md.rx"), P("order.tx", "send", 1), P("ack.rx", "order_rtt"), P("fill.rx", "fill")])
    return Correlator(s, linger_ns=250, **kw)


def add(c, trace, stamps, now):
    ts = np.array([stamps], np.int64)
    c.add_rows(np.array([trace], np.uint64), ts, np.where(ts != 0, 1, 0).astype(np.int16), now)


def test_ack_and_fill_arriving_separately_after_close_both_become_stages():
    c = correlator()
    add(c, 7, [1000, 1500, 0, 0], now=0)
    first = c.flush(now_ns=10_000)
    assert first.complete == 1 and list(first.values[TICK_TO_TRADE]) == [500]
    add(c, 7, [0, 0, 901_500, 0], now=20_000)
    c.advance()
    acked = c.flush(now_ns=30_000)
    assert list(acked.values["order_rtt"]) == [900_000] and acked.late_points == 1 and acked.incomplete == 0
    add(c, 7, [0, 0, 0, 5_901_500], now=40_000)
    c.advance()
    filled = c.flush(now_ns=50_000)
    assert list(filled.values["fill"]) == [5_000_000] and list(filled.values["order_rtt"]) == []
    assert len(c.late) == 0, "a trace that reached its last point leaves the index"


def test_points_beyond_the_horizon_are_counted_not_called_incomplete():
    c = correlator(late_horizon_ns=1_000_000)
    add(c, 1, [1000, 1500, 0, 0], now=0)
    c.flush(now_ns=10_000)
    assert len(c.late) == 1
    add(c, 1, [0, 0, 3_000_000, 0], now=2_000_000)
    out = c.flush(now_ns=2_000_000, force=True)
    assert out.late_beyond_horizon == 1 and out.incomplete == 0 and out.values["order_rtt"].size == 0
    assert c.late_beyond_horizon == 1 and c.late.expired == 1


def test_the_index_is_bounded_and_finds_every_trace_it_holds():
    c = correlator(late_max_entries=5000)
    n = 20_000
    for start in range(0, n, 1000):  # many flushes: the index grows in chunks that merge
        ids = np.arange(start + 1, start + 1001, dtype=np.uint64)
        ts = np.zeros((1000, 4), np.int64)
        ts[:, 0], ts[:, 1] = 10, 20
        c.add_rows(ids, ts, np.where(ts != 0, 1, 0).astype(np.int16), 0)
        c.flush(now_ns=10_000)
    assert len(c.late) <= 5000 + 1000 and c.late.expired >= n - 6000
    held = np.arange(n - 999, n + 1, dtype=np.uint64)  # the newest are always held
    ts = np.zeros((1000, 4), np.int64)
    ts[:, 2] = 20 + held.astype(np.int64)
    c.add_rows(held, ts, np.where(ts != 0, 1, 0).astype(np.int16), 20_000)
    out = c.flush(now_ns=20_000, force=True)
    assert out.late_points == 1000 and np.array_equal(np.sort(out.values["order_rtt"]), held.astype(np.int64))
