"""tickscope-probe-tracing (probe/rust_tracing): a `tracing` service's spans and events become
probe records through the layer, built offline against Debian's tracing crates."""

import json
import subprocess

import pytest

from support import QUIET
from support.cli import run_cli
from support.native import needs_cargo, tracing_crate_build, tracing_example
from tickscope.collectors.session import Session


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("tracing-crate")


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_spans_and_events_of_a_service_become_exact_counts_under_profile(work, tmp_path):
    traces = 5_000
    exe = tracing_example("tracing_subject", work)
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", str(exe), str(traces), timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"traces={traces} unmatched=0" in out.stdout
    s = Session.load(tmp_path / "s")
    c = s.meta["counters"]
    assert c["produced"] == c["drained"] == 4 * traces and c["dropped_ring_full"] == 0
    assert (c["traces_complete"], c["traces_incomplete"], c["traces_clock_skew"]) == (traces, 0, 0)
    summary = s.summary()
    for stage in ("feed", "strategy", "send", "tick_to_trade"):
        assert summary[stage]["count"] == traces, stage
    assert len(s.meta["rings"]) == 2, "the service thread's ring and the order thread's"


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_the_layers_cost_per_span_is_printed_beside_its_references(work, tmp_path):
    exe = tracing_example("tracing_bench", work)
    out = subprocess.run([str(exe), str(tmp_path)], capture_output=True, text=True, timeout=600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(r) == {"record_ns", "span_noop_ns", "span_probe_ns", "event_probe_ns"}
    assert all(v > 0 for v in r.values()), r
    assert list(tmp_path.iterdir()) == [], "the bench removes its rings"


@pytest.mark.slow  # cargo builds
@needs_cargo
def test_the_layer_crates_tests_and_doc_examples_pass(work):
    out = tracing_crate_build(work, "test")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Doc-tests tickscope_probe_tracing" in out.stderr and "test result: ok" in out.stdout
