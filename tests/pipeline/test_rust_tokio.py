"""The Rust reference trader on its tokio loop (``--trader rust --loop tokio``; the build of
pipeline/rust_trader/tokio/Cargo.toml with Debian's tokio, offline): the busy-poll trader's points,
stages and dimensions under ``profile``, every order answered, the same hostile peers survived with
one-line errors. Its FIX recovery and market-maker legs run in test_fix_recovery.py and
test_market_maker.py (the ``rust-tokio`` cases)."""

import socket
import subprocess

import pytest

from support import QUIET, free_port
from support.cli import run_cli
from support.hostile import (
    assert_exit_unanswered,
    assert_hostile_fix_and_udp_answered,
    hostile_fix_peer,
    run_trader_against_hostile_peers,
)
from support.native import needs_cargo, rust_trader_binary
from tickscope.collectors.run.launch import RUST_TRADER_CRATE, debian_source_config
from tickscope.collectors.session import Session
from tickscope.pipeline import fix as F
from tickscope.pipeline.trader import TICK_POINTS

BUSY_POLL_STAGES = [p.stage for p in TICK_POINTS if p.stage] + ["send", "order_rtt"]
TOKIO = ["--loop", "tokio"]


def slow(test):
    """A test that builds the trader with cargo."""
    return pytest.mark.slow(needs_cargo(test))


@pytest.fixture(scope="module")
def tokio_trader():
    return [str(rust_trader_binary("tokio")), *TOKIO]


@slow
def test_the_tokio_builds_unit_tests_pass(tokio_trader):
    # The shared sources' tests with the feature on (args: --loop tokio is taken, not refused).
    out = subprocess.run(["cargo", "test", "--offline", "--quiet", "--manifest-path",
                          str(RUST_TRADER_CRATE / "tokio" / "Cargo.toml"), *debian_source_config()],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test result: ok" in out.stdout and " 0 failed" in out.stdout


@slow
def test_profile_of_the_tokio_trader_has_the_busy_poll_stages_and_answers_every_order(tmp_path, tokio_trader):
    out = run_cli("profile", "--trader", "rust", *TOKIO, "--duration", "4s", "--rate", "5k", *QUIET,
                  "--out", str(tmp_path / "s"), timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    s = Session.load(tmp_path / "s")
    assert s.meta["options"]["pipeline"]["loop"] == "tokio" and "--loop tokio" in s.meta["command"]
    assert s.stages == BUSY_POLL_STAGES
    summary = s.summary()
    for stage in s.stages + ["tick_to_trade", "tick_to_decision"]:
        assert summary[stage]["count"] > 0, stage
    stats = s.meta["subject_stats"]["trader"]
    assert stats["trader"] == "rust" and stats["loop"] == "tokio"
    assert stats["feed_gaps"] == 0 and stats["feed"]["gap_messages"] == 0
    # Every order answered by an ExecutionReport: none rejected, none left in flight.
    assert stats["orders_sent"] > 0 and stats["orders_acked"] == stats["orders_sent"]
    assert stats["orders_rejected"] == 0 and stats["orders_in_flight_at_end"] == 0
    counters = s.meta["counters"]
    assert counters["dropped_ring_full"] == 0 and counters["traces_incomplete"] <= 2
    assert counters["orders_sent"] == stats["orders_sent"] == summary["tick_to_trade"]["count"]
    # The busy-poll trader's dimensions, interned once for every worker's ring; the default
    # pipeline is the market maker, so both venues (the hedge venue's legs) and every leg kind.
    dims = s.meta["dimensions"]
    assert dims["venue"] == ["VENUE", "VENUE2"] and dims["side"] == ["buy", "sell"]
    legs = stats["orders_by_leg"]
    assert min(legs.values()) > 0 and legs.keys() == {"bid", "ask", "hedge"}
    assert {"AAPL", "MSFT"} <= set(dims["symbol"]) and {"A", "D"} <= set(dims["msg_type"])
    for trace in s.slowest:
        ts = {st["point"]: st["ts_ns"] for st in trace["stamps"]}
        assert ts["order.tx"] - ts["md.rx"] == trace["tick_to_trade_ns"]
    # A multi-thread runtime: the ticks are recorded on its workers (not the main thread, which
    # only opened the rings), each worker writing rings of its own, every ring's dimension ids
    # known (the same values in the same order in every ring), every ring closed by the trader.
    rings = s.meta["rings"]
    ticks = [r for r in rings if r["kind"] == "tick" and r["produced"] > 0]
    assert ticks and all(r["tid"] != r["pid"] for r in ticks), rings
    assert sum(r["produced"] for r in ticks) == counters["produced"] - sum(
        r["produced"] for r in rings if r["kind"] == "point"
    )
    assert all(r["dims_unknown"] == 0 for r in rings), rings
    assert all(r["closed_cleanly"] for r in rings), rings


@slow
def test_tokio_trader_survives_hostile_fix_and_udp_and_counts_both(tmp_path, tokio_trader):
    venue, trader, err = run_trader_against_hostile_peers(tokio_trader, hostile_fix_peer(), tmp_path)
    assert "panicked" not in err, err
    assert "loop tokio (rust)" in err
    assert "CheckSum is not 3 digits" in err and "tag 34 is not an integer" in err
    assert "would number past 2^64 - 1" in err
    assert_exit_unanswered(trader, err)
    assert_hostile_fix_and_udp_answered(venue, tmp_path)
    assert any(isinstance(m, F.FixMessage) and m.msg_type == F.LOGOUT for m in venue.received)


@slow
def test_tokio_trader_gives_up_on_a_venue_that_never_answers_logon(tokio_trader):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    out = subprocess.run([*tokio_trader, "--md-port", str(free_port(socket.SOCK_DGRAM)),
                          "--fix-port", str(silent.getsockname()[1]), "--logon-timeout", "1"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    silent.close()
    assert out.returncode == 2 and "never answered Logon" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@slow
def test_the_default_build_refuses_loop_tokio_in_one_line():
    out = subprocess.run([str(rust_trader_binary()), "--md-port", "1", "--fix-port", "2", *TOKIO],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "trader: --loop tokio: the Rust trader busy-polls only in this build "
        "(--loop tokio: build pipeline/rust_trader/tokio/Cargo.toml)"
    ]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--loop", "tokio"], "--loop tokio runs the Rust trader (add --trader rust"),
        (["--trader", "rust", "--loop", "asyncio"], "busy-poll or tokio loop"),
    ],
)
def test_a_loop_the_trader_does_not_have_is_one_line_before_anything_starts(tmp_path, options, says):
    out = run_cli("profile", *options, "--duration", "1s", "--no-live", "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], lines
    assert not (tmp_path / "s").exists()
