"""The Rust reference trader (pipeline/rust_trader): its cargo unit tests, a profile of it against
the bundled venue over loopback (the Python trader's stage names, every order accounted for, no
gaps), and the hostile peers and packets the Python trader must survive. Skipped, with the reason,
only where cargo is absent."""

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from support import QUIET, free_port
from support.cli import run_cli
from support.hostile import (
    HostileVenue,
    assert_exit_unanswered,
    assert_hostile_fix_and_udp_answered,
    hostile_fix_peer,
    run_trader_against_hostile_peers,
)
from support.native import needs_cargo, rust_trader_binary
from tickscope.collectors.run.cargo import build_root
from tickscope.collectors.run.launch import RUST_TRADER_CRATE, build_rust_trader, cargo_error
from tickscope.collectors.session import Session
from tickscope.pipeline import fix as F
from tickscope.pipeline.trader import TICK_POINTS

# The Python trader's stages: tick points in order, then order.tx (send) and ack.rx (order_rtt).
PYTHON_STAGES = [p.stage for p in TICK_POINTS if p.stage] + ["send", "order_rtt"]


@pytest.fixture(scope="module")
def rust_trader():
    return rust_trader_binary()


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_cargo_unit_tests_pass():
    out = subprocess.run(["cargo", "test", "--offline", "--quiet", "--manifest-path", str(RUST_TRADER_CRATE / "Cargo.toml"),
                          "--target-dir", str(RUST_TRADER_CRATE / "target")], capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test result: ok" in out.stdout and " 0 failed" in out.stdout


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_profile_of_the_rust_trader_has_the_python_stages_and_accounts_for_every_order(tmp_path, rust_trader):
    out = run_cli("profile", "--trader", "rust", "--duration", "4s", "--rate", "5k", *QUIET, "--out", str(tmp_path / "s"), timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    s = Session.load(tmp_path / "s")
    assert s.stages == PYTHON_STAGES
    summary = s.summary()
    for stage in s.stages + ["tick_to_trade", "tick_to_decision"]:
        assert summary[stage]["count"] > 0, stage
    stats = s.meta["subject_stats"]["trader"]
    assert stats["trader"] == "rust" and stats["feed_gaps"] == 0 and stats["feed"]["gap_messages"] == 0
    assert stats["orders_sent"] > 0 and stats["orders_acked"] > 0
    assert (
        stats["orders_sent"]
        == stats["orders_acked"] + stats["orders_rejected"] + stats["orders_in_flight_at_end"]
    )
    counters = s.meta["counters"]
    assert counters["dropped_ring_full"] == 0 and counters["traces_incomplete"] <= 2
    assert counters["orders_sent"] == stats["orders_sent"]
    # The default pipeline is the market maker: bid and ask legs, hedges on the second venue, each
    # order one tick-to-trade sample.
    legs = stats["orders_by_leg"]
    assert stats["quotes"] == "both" and min(legs.values()) > 0 and legs.keys() == {"bid", "ask", "hedge"}
    assert summary["tick_to_trade"]["count"] == stats["orders_sent"] == sum(legs.values())
    # The stages up to the trade point add up to tick-to-trade exactly, trace by trace.
    for trace in s.slowest:
        ts = {st["point"]: st["ts_ns"] for st in trace["stamps"]}
        assert ts["order.tx"] - ts["md.rx"] == trace["tick_to_trade_ns"]
    port = s.meta["command"].split("--md-port ", 1)[1].split()[0]
    hedge_port = s.meta["options"]["pipeline"]["hedge_fix_port"]
    for pattern in (f"--md-port {port}", f"--fix-port {hedge_port}"):  # the hedge venue has no md port
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        assert left == [], pattern


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_a_rust_trader_run_shorter_than_a_second_still_calibrates_over_heartbeats(tmp_path, rust_trader):
    # Its heartbeats came with the stats, once a second: a short replay ended with its rings
    # calibrated "open-close only" and a warning about our own trader never calling tsp_heartbeat.
    # The replay lasts 0.6 s, six of its 100 ms beats: at 0.3 s a trader starved by a loaded host
    # could see only the beat that opened its orders ring.
    from tickscope.pipeline import itch

    t0 = 34_200_000_000_000
    msgs = [itch.stock_directory(1, 0, t0, "AAPL")]
    msgs += [itch.add_order(1, 0, t0 + i * 100_000, i + 1, b"BS"[i % 2 : i % 2 + 1], 100, "AAPL", 1_000_000 + i % 50)
             for i in range(6000)]  # fmt: skip
    itch.write_itch_file(tmp_path / "short.itch", msgs)
    out = run_cli("profile", "--trader", "rust", "--replay", str(tmp_path / "short.itch"), "--speed", "1x",
                  "--duration", "20s", *QUIET, "--out", str(tmp_path / "s"))  # fmt: skip
    assert out.returncode == 0 and "tsp_heartbeat" not in out.stderr, out.stderr
    rings = Session.load(tmp_path / "s").meta["rings"]
    quality = {r["writer"]: r["tsc"]["calibration"] for r in rings}
    assert quality == {"trader": "heartbeats", "trader-orders": "heartbeats"}, [r["tsc"] for r in rings]


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_rust_trader_survives_hostile_fix_and_udp_and_counts_both(tmp_path, rust_trader):
    venue, trader, err = run_trader_against_hostile_peers([str(rust_trader)], hostile_fix_peer(), tmp_path)
    assert "panicked" not in err, err
    assert "CheckSum is not 3 digits" in err and "tag 34 is not an integer" in err  # logged, one line each
    assert "would number past 2^64 - 1" in err
    assert_exit_unanswered(trader, err)
    assert_hostile_fix_and_udp_answered(venue, tmp_path)
    # The trader logged out and read the venue's answer: the session ended cleanly.
    assert any(isinstance(m, F.FixMessage) and m.msg_type == F.LOGOUT for m in venue.received)


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_rust_trader_gives_up_on_a_venue_that_never_answers_logon(rust_trader):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    out = subprocess.run([str(rust_trader), "--md-port", str(free_port(socket.SOCK_DGRAM)),
                          "--fix-port", str(silent.getsockname()[1]), "--logon-timeout", "1"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    silent.close()
    assert out.returncode == 2 and "never answered Logon" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_without_cargo_profile_says_what_to_install_in_one_line(tmp_path):
    out = run_cli("profile", "--trader", "rust", "--duration", "1s", "--no-live", "--out", str(tmp_path / "s"),
                  env={"PATH": str(tmp_path), "HOME": str(tmp_path), "CARGO_HOME": str(tmp_path)})  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "needs cargo" in lines[0] and "apt-get install cargo" in lines[0], lines
    assert not (tmp_path / "s").exists()


RUSTUP_CARGO = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo") / "bin" / "cargo"


@pytest.mark.slow  # a cargo build
@pytest.mark.skipif(
    not RUSTUP_CARGO.exists(), reason=f"no rustup cargo at {RUSTUP_CARGO} (https://rustup.rs)"
)
def test_rustups_cargo_is_found_when_the_shell_never_put_it_on_path(tmp_path):
    # cron, CI steps and `env -i` shells do not read the profile where rustup adds ~/.cargo/bin
    path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "cargo").exists()
    )
    out = run_cli("profile", "--trader", "rust", "--duration", "2s", "--rate", "2k", "--no-live", "--no-perf",
                  "--out", str(tmp_path / "s"), env={"PATH": path})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert Session.load(tmp_path / "s").meta["options"]["pipeline"]["trader"] == "rust"


def cargo_building(target: Path) -> list[int]:
    """Pids of cargo and rustc processes building into ``target``."""
    out = subprocess.run(["pgrep", "-f", f"{target}"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in out if pid.isdigit() and int(pid) != os.getpid()]


@pytest.mark.slow  # cargo builds
@needs_cargo
@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_cargo_stops_with_tickscope_killed_or_interrupted_mid_build(tmp_path, how, monkeypatch):
    # cargo ran as a plain subprocess: kill -9 of tickscope left it (and rustc) building on.
    import signal
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    shutil.copytree(
        RUST_TRADER_CRATE, tmp_path / "pipeline" / "rust_trader", ignore=shutil.ignore_patterns("target")
    )
    shutil.copytree(
        root / "probe" / "rust", tmp_path / "probe" / "rust", ignore=shutil.ignore_patterns("target")
    )
    crate = tmp_path / "pipeline" / "rust_trader"
    # A build that cannot end while cargo lives (its build script waits for cargo to go away), so
    # tickscope is always stopped mid-build, however fast or slow the host compiles.
    (crate / "build.rs").write_text(
        "fn main() { let cargo = std::os::unix::process::parent_id();\n"
        "  while std::os::unix::process::parent_id() == cargo { std::thread::sleep(std::time::Duration::from_millis(20)); } }\n"
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the builder's, and build_root's here
    target = build_root(crate) / "target"
    builder = subprocess.Popen([sys.executable, "-c", "import sys, pathlib; from tickscope.collectors.run.launch import "
                                "build_rust_trader; build_rust_trader(pathlib.Path(sys.argv[1]))", str(crate)],
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # a hang guard: the cold build runs long after cargo starts
        while not cargo_building(target / "release" / "build"):  # the build script runs
            assert builder.poll() is None and time.monotonic() < deadline, builder.stderr.read()
            time.sleep(0.05)
        builder.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
        builder.wait(timeout=60)
        deadline = time.monotonic() + 60
        while cargo_building(target):
            assert time.monotonic() < deadline, f"cargo still building after {how} of tickscope"
            time.sleep(0.1)
    finally:
        builder.kill()
        builder.wait()
        for pid in cargo_building(target):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_a_failed_cargo_build_is_one_line_with_the_reason_and_where(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "broken"\nversion = "0.1.0"\nedition = "2021"\n')
    (tmp_path / "src" / "main.rs").write_text("fn main() {\n    let x: u32 = not_defined;\n}\n")
    out = subprocess.run(["cargo", "build", "--offline", "--quiet", "--manifest-path", str(tmp_path / "Cargo.toml")],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode != 0
    line = cargo_error(out.stderr)
    assert "\n" not in line and line.startswith("error[E0425]") and "src/main.rs:2:" in line, line
    # cargo's own errors keep their "Caused by:" reason on the same line (what Debian's cargo 0.66
    # prints for a Cargo.lock of version 4)
    chained = (
        "error: failed to parse lock file at: /c/Cargo.lock\n\nCaused by:\n  lock file version 4 requires x\n"
    )
    assert (
        cargo_error(chained)
        == "error: failed to parse lock file at: /c/Cargo.lock: lock file version 4 requires x"
    )


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_fix_connect_sends_the_rust_traders_orders_to_another_acceptor(tmp_path, rust_trader):
    """Market data from the bundled venue, orders to a separate FIX 4.4 acceptor (one that logs the
    trader on and never answers an order): every order the trader counts arrives there, and the
    run fails naming them (the trader's exit 3)."""
    acceptor = HostileVenue([])
    acceptor.start()
    out = run_cli("profile", "--trader", "rust", "--duration", "3s", "--rate", "5k", *QUIET, "--fix-connect", f"127.0.0.1:{acceptor.port}", "--out", str(tmp_path / "s"),
                  timeout=600)  # fmt: skip
    acceptor.server.close()
    assert out.returncode == 2 and "orders never answered" in out.stderr, out.stdout + out.stderr
    acceptor.done.wait(30)
    orders = [
        m for m in acceptor.received if isinstance(m, F.FixMessage) and m.msg_type == F.NEW_ORDER_SINGLE
    ]
    stats = Session.load(tmp_path / "s").meta["subject_stats"]["trader"]
    assert len(orders) == stats["orders_sent"] > 0
    assert stats["orders_in_flight_at_end"] == stats["orders_sent"]  # never answered: reported, not dropped
    assert {m.get(F.SenderCompID) for m in orders} == {b"TICKSCOPE"}


def fake_cargo(tmp_path, script: str) -> str:
    """A PATH whose first ``cargo`` is this shell script: cargo's ways of ending, on any host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cargo").write_text("#!/bin/sh\n" + script)
    (bin_dir / "cargo").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_a_cargo_killed_by_a_signal_is_named_in_one_line(tmp_path):
    """A cargo killed by a signal (the OOM killer, a kill -9) was "failed: no output"."""
    path = fake_cargo(tmp_path, 'echo "   Compiling tickscope-trader v0.1.0" >&2\nkill -9 $$\n')
    r = run_cli("profile", "--trader", "rust", "--duration", "1s", "--out", str(tmp_path / "s"),
                *QUIET, env={"PATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")})  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "killed by SIGKILL (last: Compiling tickscope-trader v0.1.0)" in r.stderr, r.stderr
    assert not (tmp_path / "s").exists()


def test_a_slow_cargo_says_what_it_is_building_and_a_hung_one_is_ended(tmp_path, monkeypatch):
    """A hung cargo was silent for the 15 minutes it is given: now a line every few seconds says what
    cargo last said, and at the end of its time it is stopped and named."""
    from tickscope.collectors.run.children import pid_alive
    from tickscope.collectors.run.profile import ProfileError

    pidfile = tmp_path / "cargo.pid"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", fake_cargo(tmp_path, f'echo $$ > {pidfile}\necho "   Compiling tickscope-probe v0.1.0" >&2\n'
                                                    'echo "   Compiling tickscope-trader v0.1.0" >&2\nexec sleep 600\n'))  # fmt: skip
    said = []
    with pytest.raises(
        ProfileError, match=r"did not finish in 8 s \(last: Compiling tickscope-trader v0\.1\.0\)"
    ):
        build_rust_trader.__wrapped__(tmp_path, progress_s=0.2, timeout_s=8, say=said.append)
    assert said and all(s.startswith("building the Rust trader with cargo (") for s in said), said
    assert "Compiling tickscope-trader v0.1.0" in said[-1], said
    assert not pid_alive(int(pidfile.read_text()))
