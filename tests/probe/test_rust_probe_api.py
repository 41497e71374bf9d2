"""The Rust crate's `Probe` (probe/rust/src/probe.rs): one handle for every thread, a ring per
thread opened on its first record, traces that hop threads, typed points, errors that print one
line, and rings that a run without tickscope leaves nowhere. Subject: examples/probe_threads.rs."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from support import QUIET
from support.cli import cli_env, run_cli, start_cli
from support.native import exact_within_hdr, known_span, needs_cargo, rust_example
from tickscope.collectors.rings.reader import find_rings
from tickscope.collectors.session import Session

HANG_GUARD_S = 120


@pytest.fixture(scope="module")
def probe_threads():
    return rust_example("probe_threads")


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_traces_hopping_three_threads_are_exact_under_profile(probe_threads, tmp_path):
    traces = 20_000
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", str(probe_threads), "hop", str(traces),
                  timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    c = s.meta["counters"]
    assert c["produced"] == c["drained"] == 4 * traces and c["dropped_ring_full"] == 0
    assert (c["traces_complete"], c["traces_incomplete"], c["traces_clock_skew"]) == (traces, 0, 0)
    assert c["writers_died"] == 0
    rings = s.meta["rings"]
    assert len(rings) == 3 and len({r["tid"] for r in rings}) == 3, (
        "a ring per thread, opened where it records"
    )
    assert sorted(r["produced"] for r in rings) == [traces, traces, 2 * traces]
    assert all(r["closed_cleanly"] for r in rings), "the main thread's ring too: closed when the probe drops"
    (clock,) = {c for r in rings for c in r["clocks"]}
    ns_per_tick = 1e9 / rings[0]["tsc_hz"] if clock == "tsc" else 1.0
    spans = np.array([[known_span(i, k) for k in (1, 2, 3)] for i in range(traces)], dtype=np.float64)
    summary = s.summary()
    # strategy and send cross rings (threads): exact too, as the host's TSC is one clock.
    for k, stage in enumerate(["feed", "strategy", "send"]):
        exact_within_hdr(summary[stage], spans[:, k] * ns_per_tick, stage)
    exact_within_hdr(summary["tick_to_trade"], spans.sum(axis=1) * ns_per_tick, "tick_to_trade")


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_a_stage_guard_stamps_its_begin_and_its_end_once_each(probe_threads, tmp_path):
    traces = 2_000
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", str(probe_threads), "guard", str(traces),
                  timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    c = s.meta["counters"]
    assert c["produced"] == c["drained"] == 4 * traces
    assert (c["traces_complete"], c["traces_incomplete"]) == (traces, 0)
    assert all(s.summary()[stage]["count"] == traces for stage in ("feed", "strategy", "send"))


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_run_without_tickscope_the_ring_is_removed_and_its_drops_said_once(probe_threads, tmp_path):
    rings = tmp_path / "rings"
    env = {**cli_env(collector_pid=False), "TICKSCOPE_RING_DIR": str(rings)}
    out = subprocess.run([str(probe_threads), "flood", "1000"], env=env, capture_output=True, text=True,
                         timeout=HANG_GUARD_S)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stderr == (
        "tickscope-probe: 936 of 1000 records dropped: no collector attached (run under "
        "`tickscope profile -- CMD` or attach `tickscope live` to keep them)\n"
    )
    assert list(rings.iterdir()) == []


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_an_error_returned_from_main_prints_one_line(probe_threads, tmp_path):
    out = subprocess.run(
        [str(probe_threads), "bad-dims"], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert out.returncode == 1 and "panicked" not in out.stderr
    assert out.stderr == (
        'Error: probe points: at most 4 dimensions per ring: got 5 (["venue", "side", "symbol", "type", "tif"])\n'
    )


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_live_tells_a_dead_rust_writers_rings_from_a_live_ones(probe_threads, tmp_path):
    """Two Probe writers leave their main thread's ring open: one is killed, one keeps running.
    `live` drains both, counts the dead one as died and removes its ring; the live one's stays."""
    traces = 1000
    rings, out = tmp_path / "rings", tmp_path / "s"
    rings.mkdir()
    env = {**os.environ, "TICKSCOPE_RING_DIR": str(rings)}
    writers = [subprocess.Popen([str(probe_threads), "wait", str(traces)], env=env, stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]  # fmt: skip
    live = None
    try:
        for w in writers:
            assert w.stdout.readline() == "ready\n"
        dead, alive = writers
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=HANG_GUARD_S)
        live = start_cli("live", str(rings), "--no-live", "--out", str(out))

        def saved():
            try:
                return json.loads((out / "meta.json").read_text()).get("counters", {})
            except (OSError, ValueError):
                return {}

        deadline = time.monotonic() + HANG_GUARD_S
        while not (saved().get("drained") == 2 * 4 * traces and saved().get("writers_died") == 1):
            assert live.poll() is None, live.communicate()
            assert time.monotonic() < deadline, f"hang guard: {saved()}"
            time.sleep(0.2)
        left = {int(p.name.split(".")[1]) for p in find_rings(rings)}
        live.send_signal(signal.SIGTERM)
        _, stderr = live.communicate(timeout=HANG_GUARD_S)
        assert "Traceback" not in stderr, stderr
    finally:
        for p in [*writers, live]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert left == {alive.pid}, "the dead writer's drained ring is removed, the live writer's stays"


@pytest.mark.slow  # a cargo build
@needs_cargo
def test_the_readmes_rust_example_builds_and_its_traces_are_complete_under_profile(tmp_path):
    from tickscope.collectors.run.bench import rust_crate

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```rust\n(.*?)```", readme, re.S)
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "Cargo.toml").write_text(f'[package]\nname = "readme"\nversion = "0.0.0"\nedition = "2021"\n\n'
                                    f'[dependencies]\ntickscope-probe = {{ path = "{rust_crate()}" }}\n')  # fmt: skip
    (app / "src" / "main.rs").write_text(example)
    build = subprocess.run(["cargo", "build", "--offline", "--quiet", "--target-dir", str(tmp_path / "target")],
                           cwd=app, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    exe = tmp_path / "target" / "debug" / "readme"
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", str(exe), timeout=600)
    assert out.returncode == 0, out.stderr
    c = Session.load(tmp_path / "s").meta["counters"]
    assert c["produced"] == c["drained"] == 3000
    assert (c["traces_complete"], c["traces_incomplete"], c["traces_clock_skew"]) == (1000, 0, 0)
