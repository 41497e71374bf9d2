import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
PROGRAMS = TESTS / "programs"

# Interim: a few test modules still import helpers from sibling test modules in other folders;
# tests/support is where those helpers belong (being moved there), this keeps them importable.
for _area in ("probe", "collectors", "reports", "pipeline", "cli"):
    if str(TESTS / _area) not in sys.path:
        sys.path.append(str(TESTS / _area))


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
    config.addinivalue_line("markers", "needs_tool(*names, install): the test runs these tools")
    config.addinivalue_line("markers", 'slow: cargo builds, long runs, huge files; -m "not slow" skips them')


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_tool"):
        for name in mark.args:
            need_tool(name, install=mark.kwargs["install"])


@pytest.fixture(scope="session")
def c_build(tmp_path_factory):
    """Compile probe/examples/*.c with gcc (skipped outside CI, failed in it, where there is none)."""
    from tickscope.collectors.bench import build_c

    need_tool("gcc", "cc", install="apt-get install gcc")
    out = tmp_path_factory.mktemp("cbuild")
    return lambda name: build_c(name, out)


def run_cli(*args, timeout=120, env=None, cwd=None):
    """Run the real CLI in a subprocess (as a user would), return CompletedProcess."""
    e = dict(os.environ)
    e.pop("TICKSCOPE_RING_DIR", None)
    e.update(env or {})
    e.setdefault("COLUMNS", "120")
    return subprocess.run(
        [sys.executable, "-m", "tickscope.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=cwd,
    )


@pytest.fixture(autouse=True)
def tests_collect_the_rings_they_make(monkeypatch, tmp_path_factory):
    """A test that makes a ring reads it afterwards, as a collector would: announce the test process
    as that collector, so a writer's close() (or exit) leaves its ring for the test to read instead
    of removing it as it does with no collector about, and give every test (and the processes it
    starts) a ring directory of its own, so nothing lands in the shared /dev/shm/tickscope. Tests of
    the defaults unset both."""
    monkeypatch.setenv("TICKSCOPE_COLLECTOR_PID", str(os.getpid()))
    monkeypatch.setenv("TICKSCOPE_RING_DIR", str(tmp_path_factory.mktemp("rings")))


def send_hostile_mold(md_port: int) -> None:
    """Malformed MoldUDP64/ITCH a feed handler must count and survive (the Python and the Rust
    trader alike), ending with a good end-of-session so the trader stops by itself."""
    import socket

    from tickscope.pipeline import itch

    good = itch.add_order(1, 0, 0, 1, b"B", 100, "AAPL", 1_000_000)
    packets = [
        itch.mold_packet(b"TEST000001", 1, [good, b""]),  # a zero-length message: IndexError once
        b"\x00" * 7,  # shorter than the header
        itch.mold_packet(b"TEST000001", 3, [good])[:-5],  # framing says more than it holds
        itch.mold_packet(b"TEST000001", 4, [b"Z" * 11]),  # unknown type
        itch.mold_packet(b"TEST000001", 5, [itch.add_order(1, 0, 0, 2, b"S", 0, "AAPL", 1_000_100)]),
        itch.mold_packet(b"TEST000001", 6, [itch.order_delete(1, 0, 0, 2)]),
        # Sequence numbers crossing 2^64: the Python trader died in its ring's commit once.
        itch.mold_packet(b"TEST000001", (1 << 64) - 1, [good, good]),
        itch.mold_end_of_session(b"TEST000001", 7),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for p in packets:
            udp.sendto(p, ("127.0.0.1", md_port))
