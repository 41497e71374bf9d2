"""Harness pieces the test files share: the subject they profile, the flags that keep a run quiet,
and loopback ports. Fixtures and tool checks live in conftest.py; this is plain importable code
(``from support import ...``, found the same way as ``conftest``: pytest puts tests/ on sys.path)."""

import socket
import sys

from conftest import PROGRAMS

# The bundled test subject: a probed tick loop (``tick_subject.py N [--rate ...]``).
SUBJECT = [sys.executable, str(PROGRAMS / "tick_subject.py")]

# Side collectors off and no live screen: a test run measures only what it asserts on.
QUIET = ["--no-perf", "--no-hiccup", "--no-live"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free a moment ago (TCP, or UDP with ``socket.SOCK_DGRAM``): nobody listens
    there until the test starts something that does."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
