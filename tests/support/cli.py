"""The real CLI as a subprocess, as a user runs it: to completion (``run_cli``) or left running for
the test to signal and read (``start_cli``)."""

import os
import subprocess
import sys

CLI = [sys.executable, "-m", "tickscope.main"]


def cli_env(env: dict | None = None, *, collector_pid: bool = True, columns: bool = True) -> dict:
    """The test's environment without its own ring directory (tickscope picks its own, as for a
    user), plus ``env``. ``collector_pid=False`` also drops the test's claim to be the collector
    (tests of what tickscope leaves behind); ``columns`` pins the console width, so tables wrap the
    same on every terminal."""
    e = dict(os.environ)
    e.pop("TICKSCOPE_RING_DIR", None)
    if not collector_pid:
        e.pop("TICKSCOPE_COLLECTOR_PID", None)
    e.update(env or {})
    if columns:
        e.setdefault("COLUMNS", "120")
    return e


def run_cli(*args, timeout=120, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (as a user would), return CompletedProcess."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=cli_env(env), cwd=cwd
    )


def start_cli(*args, env: dict | None = None, collector_pid: bool = True, columns: bool = True,
              **popen) -> subprocess.Popen:  # fmt: skip
    """The CLI started and left running, stdout and stderr piped as text; ``env`` (extra variables),
    ``collector_pid`` and ``columns`` as for ``cli_env``, ``popen`` to ``subprocess.Popen``."""
    return subprocess.Popen([*CLI, *args], env=cli_env(env, collector_pid=collector_pid, columns=columns),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)  # fmt: skip
