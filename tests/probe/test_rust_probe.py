"""The Rust crate (probe/rust) and the Python reader agree on every byte: cargo-built writers,
read directly and under the real ``tickscope profile``."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_tool
from support import PROGRAMS, QUIET
from support.cli import run_cli
from support.native import exact_within_hdr, needs_cargo, rust_example
from tickscope.collectors.rings.clocks import fit_tsc, tsc_facts
from tickscope.collectors.rings.host_tsc import host_tsc_domain
from tickscope.collectors.rings.reader import RingReader, find_rings
from tickscope.collectors.run.bench import bench_rust_probe, rust_crate
from tickscope.collectors.session import Session
from tickscope.probe import layout as L

STAGES = ["feed", "strategy", "send"]  # spans 1..3 of the example's four points
# The crate stamps rdtsc only where the collector trusts the TSC as one host clock (invariant and
# listed by the kernel as a clocksource), else CLOCK_MONOTONIC (and says so).
TSC_TRUSTED = platform.machine() == "x86_64" and host_tsc_domain(tsc_facts())[0]
HOST_CLOCK = "Tsc" if TSC_TRUSTED else "Monotonic"
CLOCKSOURCES = Path("/sys/devices/system/clocksource/clocksource0/available_clocksource")


def span(i, k):
    """Ticks between point k-1 and k of trace index i: the formula of examples/rust_writer.rs."""
    return 1000 * k + (i * 7919 % 1000) * 23 * k


@pytest.fixture(scope="module")
def rust_writer():
    return rust_example("rust_writer")


def run_writer(exe, ring_dir, *args, check=True):
    out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir)), check=check)  # fmt: skip
    return out if not check else dict(kv.split("=") for kv in out.stdout.split())


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_layout_constants_match_the_python_module(rust_writer):
    rust = json.loads(subprocess.run([str(rust_writer), "layout"], capture_output=True, check=True).stdout)
    python = {k: v for k, v in vars(L).items() if k.isupper() and isinstance(v, int)}
    python["CALIB_ENTRY_SIZE"] = L.CALIB_ENTRY.size
    assert rust == python


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_cargo_unit_tests_pass_with_probes_and_without():
    crate = rust_crate()
    for features in ([], ["--no-default-features"]):
        out = subprocess.run(["cargo", "test", "--offline", "--quiet", *features], cwd=crate, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "test result: ok" in out.stdout
        # unit tests, the three integration tests, and the rustdoc examples
        assert out.stdout.count("test result: ok") == 5, out.stdout


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_a_point_of_another_enum_or_a_bare_id_does_not_compile():
    out = subprocess.run(["cargo", "test", "--doc", "--offline", "points"], cwd=rust_crate(), capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("typed::points (line") == 3 and out.stdout.count("compile fail ... ok") == 2, (
        out.stdout
    )


@pytest.mark.slow  # cargo
@needs_cargo
def test_the_crate_packages_its_sources_and_nothing_else():
    crate = rust_crate()
    out = subprocess.run(["cargo", "package", "--list", "--allow-dirty", "--offline"], cwd=crate,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    listed = set(out.stdout.split())
    tracked = {p.relative_to(crate).as_posix() for p in crate.rglob("*")
               if p.is_file() and "target" not in p.relative_to(crate).parts and p.name != "Cargo.lock"}  # fmt: skip
    generated = {".cargo_vcs_info.json", "Cargo.toml.orig", "Cargo.lock"}
    assert listed - generated == tracked, (listed ^ tracked) - generated
    assert all(p.startswith(("src/", "examples/", "tests/")) or "/" not in p for p in listed)


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_point_records_read_exactly_from_python(rust_writer, ring_dir):
    stats = run_writer(rust_writer, ring_dir, "points", 1000)
    assert (stats["produced"], stats["dropped"], stats["clock"]) == ("4000", "0", HOST_CLOCK)
    (path,) = find_rings(ring_dir)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    r = RingReader(path)
    assert (r.kind, r.record_size, r.n_points, r.writer_name) == (L.KIND_POINT, 32, 4, "rust-points")
    assert [(p.name, p.stage, p.flags) for p in r.points] == [
        ("md.rx", "", 0), ("md.decoded", "feed", 0), ("signal", "strategy", 0), ("order.tx", "send", L.POINT_TRADE)
    ]  # fmt: skip
    domain = L.CLOCK_BY_NAME[HOST_CLOCK.lower()]
    assert r.clock_domain == domain and all(p.clock == domain for p in r.points)
    assert r.writer_closed and not r.writer_alive()
    rec = r.drain()
    assert rec.size == 4000 and r.produced == 4000
    assert np.array_equal(rec["trace"], np.repeat(np.arange(1, 1001), 4))
    assert np.array_equal(rec["point"], np.tile(np.arange(4), 1000))
    ts = rec["ts"].astype(np.int64).reshape(1000, 4)
    spans = np.array([[span(i, k) for k in (1, 2, 3)] for i in range(1000)])
    assert np.array_equal(np.diff(ts, axis=1), spans), "record_ts stores the stamp it is given"
    assert np.array_equal(rec["dims"].reshape(1000, 4)[:, 1:], spans)
    assert set(rec["thread"]) == {r.writer_tid}
    if HOST_CLOCK == "Tsc":
        cal = fit_tsc(r.calibration_pairs())
        assert cal is not None and cal.pairs >= 2 and 1e8 < cal.hz < 1e10


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_tick_records_read_exactly_from_python(rust_writer, ring_dir):
    stats = run_writer(rust_writer, ring_dir, "ticks", 1000)
    assert (stats["produced"], stats["dropped"]) == ("1000", "0")
    r = RingReader(find_rings(ring_dir)[0])
    assert (r.kind, r.record_size, r.n_points, r.writer_name) == (L.KIND_TICK, 8 * 4 + 24, 4, "rust-ticks")
    rec = r.drain()
    assert rec.size == 1000
    assert np.array_equal(rec["trace"], np.arange(1, 1001)) and np.array_equal(rec["dims"], np.arange(1000))
    spans = np.array([[span(i, k) for k in (1, 2, 3)] for i in range(1000)])
    assert np.array_equal(np.diff(rec["ts"].astype(np.int64), axis=1), spans)


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_a_full_ring_drops_the_newest_and_counts(rust_writer, ring_dir):
    stats = run_writer(rust_writer, ring_dir, "live", 100, 256)
    assert (stats["produced"], stats["dropped"]) == ("400", "144")
    r = RingReader(find_rings(ring_dir)[0])
    rec = r.drain()
    assert r.dropped_full == 144 and rec.size == 256 and r.produced == 400
    assert np.array_equal(rec["trace"], np.repeat(np.arange(1, 65), 4)), "the oldest 64 traces stay"
    assert np.all(np.diff(rec["ts"].astype(np.int64)) >= 0), "stamps of one thread never go back"
    assert set(rec["dims"][rec["point"] == 3]) == {42}


@pytest.mark.slow  # cargo builds
@needs_cargo
@needs_tool("unshare", "mount", install="apt-get install util-linux mount")
def test_a_tsc_the_kernel_dropped_from_its_clocksources_is_not_stamped(rust_writer, ring_dir, tmp_path):
    """Invariant flags are not enough: the kernel's watchdog drops ``tsc`` from the clocksources when
    CPUs disagree, and then the writer stamps CLOCK_MONOTONIC, as the collector would refuse a
    host TSC domain. The list is replaced for the writer alone, in a private mount namespace."""
    if os.geteuid() != 0:
        pytest.skip("needs root to bind-mount over /sys in a mount namespace")
    if not (TSC_TRUSTED and CLOCKSOURCES.is_file()):
        pytest.skip("the TSC is not trusted here anyway: nothing to take away")
    fake = tmp_path / "available_clocksource"
    fake.write_text("hpet acpi_pm \n")
    script = 'mount --bind "$1" "$2" && exec "$3" live 100'
    out = subprocess.run(["unshare", "--mount", "--", "sh", "-c", script, "sh", fake, CLOCKSOURCES, rust_writer],
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    stats = dict(kv.split("=") for kv in out.stdout.split())
    assert (stats["produced"], stats["clock"], stats["invariant"], stats["trusted"]) == (
        "400", "Monotonic", "true", "false")  # fmt: skip
    r = RingReader(find_rings(ring_dir)[0])
    assert r.clock_domain == L.CLOCK_MONOTONIC and all(p.clock == L.CLOCK_MONOTONIC for p in r.points)
    assert r.drain().size == 400
    assert CLOCKSOURCES.read_text().split() != ["hpet", "acpi_pm"], "the host's own list is untouched"


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_no_invariant_tsc_means_monotonic_stamps_declared_as_such(rust_writer, ring_dir, monkeypatch):
    monkeypatch.setenv("TICKSCOPE_CLOCK", "monotonic")  # what a host without invariant TSC gets
    stats = run_writer(rust_writer, ring_dir, "live", 100)
    assert (stats["produced"], stats["clock"]) == ("400", "Monotonic")
    r = RingReader(find_rings(ring_dir)[0])
    assert r.clock_domain == L.CLOCK_MONOTONIC and all(p.clock == L.CLOCK_MONOTONIC for p in r.points)
    ts = r.drain()["ts"].astype(np.int64)
    assert np.all(np.diff(ts) >= 0) and r.created_monotonic_ns <= ts[0] <= ts[-1]
    pairs = r.calibration_pairs()
    assert pairs and all(p[0] == 0 for p in pairs), "no TSC in the pairs: nothing to convert"


@pytest.mark.slow  # cargo builds
@needs_cargo
@pytest.mark.parametrize("mode", ["points", "ticks"])
def test_known_tsc_spans_are_reported_within_hdr_precision_under_profile(rust_writer, tmp_path, mode):
    traces = 20_000
    # CAPACITY holds the whole run; BASE 1; a heartbeat, so a TSC refit, every 256 traces.
    writer = [str(rust_writer), mode, str(traces), str(1 << 17), "1", "256"]
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", *writer)
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    c = s.meta["counters"]
    records = traces * 4 if mode == "points" else traces
    assert c["produced"] == c["drained"] == records and c["dropped_ring_full"] == 0
    assert (c["traces_complete"], c["traces_incomplete"], c["traces_clock_skew"]) == (traces, 0, 0)
    (ring,) = s.meta["rings"]
    assert ring["clocks"] == [HOST_CLOCK.lower()] and ring["closed_cleanly"]
    ns_per_tick = 1e9 / ring["tsc_hz"] if HOST_CLOCK == "Tsc" else 1.0
    spans = np.array([[span(i, k) for k in (1, 2, 3)] for i in range(traces)], dtype=np.float64)
    summary = s.summary()
    # Same-ring stages are TSC differences, to be converted by rate alone (DESIGN.md, "Clocks"). If
    # this fails by a few ns to µs while the records above are exact, it is the collector's TSC
    # conversion shifting a trace whose stamps straddle a refit, not the crate.
    for k, stage in enumerate(STAGES):
        exact_within_hdr(summary[stage], spans[:, k] * ns_per_tick, stage)
    exact_within_hdr(summary["tick_to_trade"], spans.sum(axis=1) * ns_per_tick, "tick_to_trade")


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_a_trace_from_a_rust_and_a_python_process_joins_by_trace_id(rust_writer, tmp_path):
    traces = 500
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable,
                  str(PROGRAMS / "mixed_trace.py"), str(rust_writer), str(traces))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"traces={traces} dropped=0 rust_exit=0" in out.stdout
    s = Session.load(tmp_path / "s")
    c = s.meta["counters"]
    assert c["produced"] == c["drained"] == 3 * traces and c["dropped_ring_full"] == 0
    assert (c["traces_complete"], c["traces_incomplete"], c["traces_clock_skew"]) == (traces, 0, 0)
    rings = {r["writer"]: r for r in s.meta["rings"]}
    assert rings["python-mixed"]["clocks"] == ["monotonic"]
    assert rings["rust-relay"]["clocks"] == [HOST_CLOCK.lower()]
    summary = s.summary()
    assert summary["feed"]["count"] == summary["send"]["count"] == summary["tick_to_trade"]["count"] == traces
    slowest = json.loads((tmp_path / "s" / "slowest.json").read_text())
    writers = [[st["writer"] for st in t["stamps"]] for t in slowest]
    assert writers and all(w == ["python-mixed", "rust-relay", "rust-relay"] for w in writers)


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_bad_capacity_is_a_one_line_error_not_a_panic(rust_writer, ring_dir):
    out = run_writer(rust_writer, ring_dir, "points", 10, 3, check=False)
    assert out.returncode == 1 and "panicked" not in out.stderr
    assert out.stderr == "rust_writer: ring capacity must be a power of 2 >= 2: capacity=3\n"
    assert find_rings(ring_dir) == []


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_unwritable_ring_directory_is_a_one_line_error_naming_it(rust_writer, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # Below a regular file: not creatable even for root.
    out = run_writer(rust_writer, blocker / "rings", "points", 10, check=False)
    assert out.returncode == 1 and "panicked" not in out.stderr
    assert out.stderr.count("\n") == 1
    assert str(blocker / "rings") in out.stderr and "TICKSCOPE_RING_DIR" in out.stderr


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_a_build_without_probes_writes_nothing(ring_dir):
    exe = rust_example("rust_writer", probes=False)
    stats = run_writer(exe, ring_dir, "live", 100)
    assert (stats["produced"], stats["written"], stats["dropped"]) == ("400", "0", "0"), (
        "400 records returned"
    )
    assert list(ring_dir.iterdir()) == [], "no ring file: every probe call compiled to nothing"


QUIET_LIB = """
/// A library that asks for no probes: its own calls are no-ops only if nobody else wants probes.
pub fn record(n: u64) -> (bool, u64) {
    let mut w = tickscope_probe::PointWriter::open("quiet-lib", &["lib.rx", "lib.tx"], 1 << 10).unwrap();
    for i in 0..n {
        w.record(0, i, 0, 0);
        w.record(1, i, 0, 0);
    }
    (tickscope_probe::ENABLED, w.written())
}
"""
APP = """
fn main() {
    let mut w = tickscope_probe::PointWriter::open("app", &["app.rx", "app.tx"], 1 << 10).unwrap();
    for i in 0..10 {
        w.record(0, i, 0, 0);
        w.record(1, i, 0, 0);
    }
    let (lib_enabled, lib_written) = quiet_lib::record(10);
    println!("app_enabled={} app_written={} lib_enabled={lib_enabled} lib_written={lib_written}",
             tickscope_probe::ENABLED, w.written());
}
"""


def cargo_toml(name: str, deps: str, extra: str = "") -> str:
    return (
        f'[package]\nname = "{name}"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n{deps}\n{extra}'
    )


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_probes_are_on_when_any_crate_of_the_binary_enables_them(tmp_path, ring_dir):
    """The feature is additive, as cargo unifies features over the graph: a library depending on
    the probe with ``default-features = false`` cannot silence a binary that wants probes (with a
    subtractive ``off`` it silenced all of them), and a binary whose own feature forwards to
    ``tickscope-probe/enable`` (the README's recipe) gets no probes anywhere without it."""
    probe = f'tickscope-probe = {{ path = "{rust_crate()}", default-features = false }}'
    (tmp_path / "quiet_lib" / "src").mkdir(parents=True)
    (tmp_path / "quiet_lib" / "Cargo.toml").write_text(cargo_toml("quiet_lib", probe))
    (tmp_path / "quiet_lib" / "src" / "lib.rs").write_text(QUIET_LIB)
    (tmp_path / "app" / "src").mkdir(parents=True)
    deps = f'{probe}\nquiet_lib = {{ path = "../quiet_lib" }}'
    (tmp_path / "app" / "Cargo.toml").write_text(
        cargo_toml("app", deps, '[features]\nprobes = ["tickscope-probe/enable"]\n')
    )
    (tmp_path / "app" / "src" / "main.rs").write_text(APP)

    def build_and_run(*features):
        env = dict(os.environ, CARGO_TARGET_DIR=str(tmp_path / "target"))
        out = subprocess.run(["cargo", "run", "--offline", "--quiet", *features], cwd=tmp_path / "app", env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        return dict(kv.split("=") for kv in out.stdout.split())

    assert build_and_run() == {
        "app_enabled": "false",
        "app_written": "0",
        "lib_enabled": "false",
        "lib_written": "0",
    }
    assert list(ring_dir.iterdir()) == [], "nobody asked for probes: no ring file"

    on = build_and_run("--features", "probes")
    assert on == {"app_enabled": "true", "app_written": "20", "lib_enabled": "true", "lib_written": "20"}
    rings = {RingReader(p).writer_name: RingReader(p) for p in find_rings(ring_dir)}
    assert sorted(rings) == ["app", "quiet-lib"]
    lib = rings["quiet-lib"].drain()
    assert lib.size == 20 and np.array_equal(lib["trace"], np.repeat(np.arange(10), 2)), (
        "the quiet library's probes"
    )


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_bench_puts_the_rust_probe_next_to_a_bare_rdtsc_store(tmp_path):
    b = bench_rust_probe(tmp_path)
    assert b["rust_probe_ns"] > 0 and b["rust_tick_stamp_ns"] > 0 and b["rdtsc_store_ns"] > 0
    assert b["rust_probe_ratio"] == round(b["rust_probe_ns"] / b["rdtsc_store_ns"], 2)
    assert b["rust_probe_handle_ns"] > 0 and b["rust_open_us"] > 0
    assert b["rust_probe_handle_ratio"] == round(b["rust_probe_handle_ns"] / b["rust_probe_ns"], 2)
    assert list(tmp_path.iterdir()) == [], "the bench removes its rings"


def test_bench_without_cargo_reports_null_and_why(tmp_path, monkeypatch):
    # no cargo anywhere: not on PATH, nor rustup's ~/.cargo/bin (bench looks there, as profile does)
    for name in ("PATH", "HOME", "CARGO_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    b = bench_rust_probe(tmp_path)
    assert b["rust_probe_ns"] is None and b["rust_tick_stamp_ns"] is None and b["rdtsc_store_ns"] is None
    assert b["rust_probe_handle_ns"] is None and b["rust_open_us"] is None
    assert "cargo" in b["rust_probe_error"]
