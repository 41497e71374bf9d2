"""Native test subjects built once per process: the C examples (gcc), the Rust probe crate's
examples and the Rust trader (cargo). Each checks its tool first (``need_tool``: a skip outside
CI, a failure under it) and builds where the product builds, so a second call is quick."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from conftest import missing_tool, need_tool, needs_tool

CARGO = "apt-get install cargo"
needs_cargo = needs_tool("cargo", install=CARGO)  # a mark for tests that build with cargo


def c_example(name: str, out_dir: Path) -> Path:
    """``probe/examples/<name>`` compiled against the C header into ``out_dir``."""
    from tickscope.collectors.run.bench import build_c

    need_tool("gcc", "cc", install="apt-get install gcc")
    return build_c(name, out_dir)


def rust_example(name: str, probes: bool = True) -> Path:
    """``probe/rust/examples/<name>.rs`` built with cargo (``probes=False``: the crate's probes off)."""
    from tickscope.collectors.run.bench import build_rust

    need_tool("cargo", install=CARGO)
    return build_rust(name, probes=probes)


def rust_trader_binary(loop: str = "busy") -> Path:
    """The Rust reference trader (``pipeline/rust_trader``), built as ``profile --trader rust`` does;
    ``loop="tokio"``: the build with the tokio loop, which needs Debian's tokio offline."""
    from tickscope.collectors.run.launch import TOKIO_APT, build_rust_trader, debian_source_config

    need_tool("cargo", install=CARGO)
    if loop == "tokio" and not debian_source_config():
        missing_tool("tokio (Debian's crate sources, /usr/share/cargo/registry/tokio-1.*)", TOKIO_APT)
    return build_rust_trader(loop=loop)


def known_span(i, k):
    """Ticks between point k-1 and k of trace index i in the known-delay Rust subjects
    (probe/rust/examples/probe_threads.rs, probe/rust_tracing/examples/tokio_subject.rs)."""
    return 1000 * k + (i * 7919 % 1000) * 23 * k


def exact_within_hdr(summary, exact_ns, tag):
    """Count exact; every percentile, min and max within HDR's 0.1 % (+2 ns for ns rounding of
    each TSC stamp) of the exact values."""
    assert summary["count"] == exact_ns.size, tag
    for key, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9), ("p99_99", 99.99)):
        exact = np.percentile(exact_ns, p, method="inverted_cdf")
        assert abs(summary[key] - exact) <= 0.001 * exact + 2, (tag, key, summary[key], exact)
    for key, exact in (("min", exact_ns.min()), ("max", exact_ns.max())):
        assert abs(summary[key] - exact) <= 0.001 * exact + 2, (tag, key, summary[key], exact)


TRACING_DEBS = "apt-get install librust-tracing-dev librust-tracing-subscriber-dev librust-tokio-dev"


def tracing_crate_build(work: Path, *cargo_args: str) -> subprocess.CompletedProcess:
    """Runs ``cargo <cargo_args> --offline`` on a copy of probe/rust_tracing (and the probe crate
    it depends on) in ``work``, with a CARGO_HOME of its own whose --config replaces crates.io by
    Debian's crates as a directory source: no registry is reachable here, and the checkout's own
    crates (and their lock files) stay as they are. A skip outside CI, a failure under it, when
    cargo or the Debian crates are missing."""
    from tickscope.collectors.run.launch import DEBIAN_CRATES, debian_source_config

    need_tool("cargo", install=CARGO)
    debian = debian_source_config(needs=("tracing-0.1*", "tracing-subscriber-0.3*", "tokio-1.*"))
    if not debian:
        missing_tool(f"Debian's tracing and tokio crates in {DEBIAN_CRATES}", TRACING_DEBS)
    probe = Path(__file__).resolve().parents[2] / "probe"
    skip = shutil.ignore_patterns("target", "Cargo.lock")
    for crate in ("rust", "rust_tracing"):
        if not (work / crate).exists():
            shutil.copytree(probe / crate, work / crate, ignore=skip, symlinks=True)
    home = work / "cargo-home"  # of its own: the user's registry cache is neither read nor written
    home.mkdir(exist_ok=True)
    env = {**os.environ, "CARGO_HOME": str(home)}
    return subprocess.run(["cargo", *cargo_args, *debian, "--offline", "--target-dir", str(TRACING_TARGET)],
                          cwd=work / "rust_tracing", env=env, capture_output=True, text=True, timeout=900)  # fmt: skip


# One target directory for every build of the layer crate, in the per-user cache: Debian's tokio,
# tracing and tracing-subscriber are compiled once per machine (~15 s each cold on a 2-vCPU host),
# whichever checkout or work directory builds; only the two path crates are rebuilt per copy (cargo
# tells copies apart by their paths). Concurrent builds wait on cargo's lock of the directory.
TRACING_TARGET = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "tickscope-tests"
    / "rust_tracing-target"
)


def tracing_example(name: str, work: Path) -> Path:
    """``probe/rust_tracing/examples/<name>.rs`` built in release (see ``tracing_crate_build``), copied
    into ``work``: the shared target's copy is another checkout's next build."""
    out = tracing_crate_build(work, "build", "--release", "--example", name)
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(shutil.copy2(TRACING_TARGET / "release" / "examples" / name, work / name))
