"""Harness pieces the test files share, as plain importable code (``from support import ...``;
pytest puts tests/ on sys.path for conftest.py, and this package is found the same way). Here: the
subject a test profiles, the flags that keep a run quiet, and loopback ports. Beside it, each module
says what it holds: ``cli`` (the CLI as a process), ``pipeline`` (the bundled venue and trader),
``hostile`` (peers and packets no venue should send), ``native`` (gcc/cargo builds of test
subjects), ``chromium``, ``replay`` (a recorded ITCH day), ``wire_frames`` (captured frames built
by hand). Fixtures and tool checks live in conftest.py. Nothing here imports a test module."""

import socket
import sys
from pathlib import Path

from tickscope.collectors.run.launch import free_port as launch_free_port

TESTS = Path(__file__).resolve().parent.parent
PROGRAMS = TESTS / "programs"  # small subjects the tests run as processes

# The bundled test subject: a probed tick loop (``tick_subject.py N [--rate ...]``).
SUBJECT = [sys.executable, str(PROGRAMS / "tick_subject.py")]

# Side collectors off and no live screen: a test run measures only what it asserts on.
QUIET = ["--no-perf", "--no-hiccup", "--no-live"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free a moment ago (TCP, or UDP with ``socket.SOCK_DGRAM``): nobody listens
    there until the test starts something that does. The product's pick (below the ephemeral range:
    the suite runs two files at once, and their connections take ephemeral ports)."""
    return launch_free_port(kind)


def rss_kb(pid: int) -> int | None:
    """The process's resident set (VmRSS, KiB), or None once it is gone (a run sampled until it ends)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def held_files(pid: int) -> tuple[list[str], list[str]]:
    """What process ``pid`` holds open: its descriptors (what each points to; one closed while
    read is passed over) and the lines of its memory map."""
    import os

    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    with open(f"/proc/{pid}/maps") as f:
        return fds, f.read().splitlines()
