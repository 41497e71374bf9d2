"""Fixtures and tool checks for every test (pytest loads this file itself). Plain harness code the
test files import lives in tests/support/."""

import os
import shutil
import signal

import pytest


@pytest.fixture
def ring_dir(tmp_path, monkeypatch):
    d = tmp_path / "rings"
    d.mkdir()
    monkeypatch.setenv("TICKSCOPE_RING_DIR", str(d))
    return d


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_tool(what: str, install: str) -> None:
    """A test needs a tool this host lacks: outside CI it skips, naming the install command; under
    ``CI=true`` it fails, because ``.ci/run`` installs every tool a test runs and a skip there would
    hide a missing install step until a fresh machine refuses the landing."""
    reason = f"{what} is not installed here ({install}; .ci/run installs it)"
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(*names: str, install: str) -> str:
    """The path of the first of ``names`` on PATH, or ``missing_tool`` (skip, or fail under CI)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    missing_tool(" / ".join(names), install)


def needs_tool(*names: str, install: str):
    """Mark a test that runs every one of ``names``: checked at set-up by ``need_tool``."""
    return pytest.mark.needs_tool(*names, install=install)


def pytest_configure(config):
    # A suite started in the background (`.ci/run &`, nohup) inherits Ctrl-C ignored, and so would
    # every tickscope the tests start: their Ctrl-C tests would then test nothing but a hang. The
    # tests send SIGINT as a terminal does; the ones about an ignored SIGINT set it themselves.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "needs_tool(*names, install): the test runs these tools")
    config.addinivalue_line("markers", 'slow: cargo builds, long runs, huge files; -m "not slow" skips them')


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_tool"):
        for name in mark.args:
            need_tool(name, install=mark.kwargs["install"])


@pytest.fixture(scope="session")
def c_build(tmp_path_factory):
    """Compile probe/examples/*.c with gcc (skipped outside CI, failed in it, where there is none)."""
    from support.native import c_example

    out = tmp_path_factory.mktemp("cbuild")
    return lambda name: c_example(name, out)


@pytest.fixture(autouse=True)
def tests_collect_the_rings_they_make(monkeypatch, tmp_path_factory):
    """A test that makes a ring reads it afterwards, as a collector would: announce the test process
    as that collector, so a writer's close() (or exit) leaves its ring for the test to read instead
    of removing it as it does with no collector about, and give every test (and the processes it
    starts) a ring directory of its own, so nothing lands in the shared /dev/shm/tickscope. Tests of
    the defaults unset both."""
    monkeypatch.setenv("TICKSCOPE_COLLECTOR_PID", str(os.getpid()))
    monkeypatch.setenv("TICKSCOPE_RING_DIR", str(tmp_path_factory.mktemp("rings")))


def pytest_sessionstart(session):
    """Once per test run, before any test and, under xdist, before its workers start: each worker
    did this itself, all at once, so on a fresh clone three workers compiled the same kernels side
    by side (~37 s of each worker's start on the 2-vCPU CI host), two of them for nothing.

    Our modules' bytecode, written once: the suite starts an interpreter for every collector,
    venue, trader and subject it runs; with PYTHONDONTWRITEBYTECODE set (the CI host) each one
    compiled our ~70 modules from source again, 0.1 s of CPU per collector, 0.23 s per profile run
    of the bundled pipeline. Interpreters still read bytecode under that setting, and a source
    edited later is recompiled in memory (the timestamp no longer matches), never stale.

    Every kernel a collector runs, compiled into numba's disk cache (or found there): a first
    compile takes seconds, and no test's hang guard may include it. The collectors the tests start
    as processes, and the workers (``native_kernels``), then load them from that cache."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller did it before starting it
    import compileall
    from pathlib import Path

    from tickscope.collectors.rings.collector import load_kernels

    root = Path(__file__).resolve().parent.parent
    for d in ("probe", "collectors", "reports", "pipeline", "tests/support", "tests/programs"):
        compileall.compile_dir(root / d, quiet=2, workers=1)
    compileall.compile_file(root / "main.py", quiet=2)
    load_kernels()


@pytest.fixture(scope="session", autouse=True)
def native_kernels():
    """The collector's kernels loaded in this test process too (from the cache pytest_sessionstart
    filled: ~0.6 s), before any test that runs one in-process."""
    from tickscope.collectors.rings.collector import load_kernels

    load_kernels()
