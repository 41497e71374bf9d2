"""The processes tickscope starts (venue, trader, a ``-- CMD`` target, the hiccup meter, perf,
py-spy, tcpdump): how they are spawned, stopped and described when they end.

Every child is spawned the same way, so three guarantees hold whatever the parent inherited:

- **It dies with tickscope.** ``PR_SET_PDEATHSIG`` delivers SIGKILL to the child when the thread
  that forked it ends. Children are spawned from the thread that runs the session (the main
  thread of ``tickscope profile``), which lives until the session is over, so the signal fires
  exactly when tickscope itself dies, ``kill -9`` included. A child whose parent died between
  ``fork`` and the ``prctl`` (it would never get the signal) kills itself at once.
- **Only tickscope stops it.** Each child leads its own session and process group: Ctrl-C in the
  terminal reaches tickscope alone, which stops the children in order and saves the session.
- **It honours the signal it is stopped with.** A shell starts background jobs with SIGINT and
  SIGQUIT ignored and children inherit ignored signals across ``exec``; the stop signals are put
  back to their default action in the child so a stop never waits out a timeout.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _load_prctl():
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: children outlive a killed tickscope
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()


class _ChildSetup:
    """Runs in the child between fork and exec: only calls resolved beforehand, no imports."""

    def __init__(self, parent_pid: int, death_signal: signal.Signals):
        self.parent_pid, self.death_signal = parent_pid, death_signal

    def __call__(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, self.death_signal, 0, 0, 0)
        if os.getppid() != self.parent_pid:  # the parent died before the prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)


def spawn_child(argv: list[str], *, env: dict[str, str] | None = None,
                death_signal: signal.Signals = signal.SIGKILL, **popen) -> subprocess.Popen:  # fmt: skip
    """``subprocess.Popen`` for a child tickscope owns (see the module docstring)."""
    return subprocess.Popen(
        argv, env=env, start_new_session=True, preexec_fn=_ChildSetup(os.getpid(), death_signal), **popen
    )


def spawn_guarded(argv: list[str], **popen) -> subprocess.Popen:
    """``spawn_child`` for a program that changes its credentials, which clears the parent-death
    signal (prctl(2)): tcpdump drops root for its own user after opening the interface, and a
    binary with file capabilities (``setcap``) loses it at exec. It runs under ``collectors.guard``,
    a small parent of its own that keeps the parent-death signal (SIGTERM, so it can act on it),
    passes on the signals it is stopped with and ends the program when tickscope dies. The Popen is
    the guard's: signals sent to it reach the program, its exit status is the program's, and both
    share one process group (``os.killpg`` reaches the two)."""
    import sys

    guard = [sys.executable, "-m", "tickscope.collectors.guard", str(os.getpid()), "--", *argv]
    return spawn_child(guard, death_signal=signal.SIGTERM, **popen)


def stop_child(proc: subprocess.Popen, first: signal.Signals, timeout_s: float = 5.0) -> int | None:
    """Signal the child's process group with ``first``, then SIGTERM, then SIGKILL, until it exits."""
    steps = [(first, timeout_s)]
    if first != signal.SIGTERM:
        steps.append((signal.SIGTERM, 2.0))
    steps.append((signal.SIGKILL, 2.0))
    for sig, wait in steps:
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def signal_name(returncode: int | None) -> str | None:
    """``SIGKILL`` for a process killed by signal 9 (Popen's returncode -9; a shell's 137 is not)."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def exit_description(returncode: int) -> str:
    """How a process ended, in the words of the one-line error: 'killed by SIGKILL', 'exited with code 3'."""
    name = signal_name(returncode)
    return f"killed by {name}" if name else f"exited with code {returncode}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed process not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
