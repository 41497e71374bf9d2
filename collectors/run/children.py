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
- **Nothing it starts outlives the run.** Stopping a child ends its whole process group, what
  it left behind there too (a shell's ``sleep 60 &`` after the shell exited: SIGTERM, then
  SIGKILL after a grace). tickscope is a child subreaper, so a descendant that left the group
  (``setsid``) is re-parented to it when its parent exits, and ended with the run.
- **It honours the signal it is stopped with.** A shell starts background jobs with SIGINT and
  SIGQUIT ignored and children inherit ignored signals across ``exec``; the stop signals are put
  back to their default action in the child so a stop never waits out a timeout.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from typing import NamedTuple

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STRAGGLER_GRACE_S = 2.0  # what a child left behind: from SIGTERM to SIGKILL
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

    guard = [sys.executable, "-m", "tickscope.collectors.run.guard", str(os.getpid()), "--", *argv]
    return spawn_child(guard, death_signal=signal.SIGTERM, **popen)


def stop_child(proc: subprocess.Popen, first: signal.Signals, timeout_s: float = 5.0) -> int | None:
    """Stop the child, then whatever it left in its process group, and reap what is ours.

    The child gets ``first`` (then SIGTERM, then SIGKILL) until it exits, as before. A child's own
    background jobs (``sh -c "sleep 60 & exit 0"``) stay in its group after it is gone, with
    SIGINT ignored as a shell starts them: they get SIGTERM, then SIGKILL after a grace."""
    pgid = proc.pid
    steps = [(first, timeout_s)]
    if first != signal.SIGTERM:
        steps.append((signal.SIGTERM, 2.0))
    steps.append((signal.SIGKILL, 2.0))
    for sig, wait in steps:
        if proc.poll() is not None:
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    end_group(pgid)
    return proc.poll()


def end_group(pgid: int, grace_s: float = STRAGGLER_GRACE_S) -> None:
    """End every process still in group ``pgid``: SIGTERM, SIGKILL after ``grace_s``; those that
    are our children (orphans we adopted, see ``become_subreaper``) are reaped."""
    _end(lambda p: p.pgrp == pgid, grace_s, by_group=False, pgid=pgid)


def end_adopted(keep: set[int], grace_s: float = STRAGGLER_GRACE_S) -> int:
    """End our children that are not in ``keep``, with their process groups: once every child we
    started was stopped, they are orphans we adopted as subreaper. SIGTERM, SIGKILL after a grace,
    reaped. Returns how many there were."""
    me = os.getpid()
    return _end(lambda p: p.ppid == me and p.pid not in keep, grace_s, by_group=True)


def _end(member, grace_s: float, *, by_group: bool, pgid: int | None = None, rounds: int = 10) -> int:
    """SIGTERM then SIGKILL to the processes ``member`` picks (re-read after each step: ending one
    can orphan its children to us), to their groups too when ``by_group`` (never to our own)."""
    ended: set[int] = set()
    for _ in range(rounds):
        alive = _reap_and_list(member)
        if not alive:
            break
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in alive:
                ended.add(pid)
                _signal(pid, pgid, sig, by_group)
            deadline = time.monotonic() + grace_s
            while (alive := _reap_and_list(member)) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not alive:
                break
    return len(ended)


def _signal(pid: int, pgid: int | None, sig: signal.Signals, by_group: bool) -> None:
    try:
        if pgid is not None:
            os.killpg(pgid, sig)
            return
        group = os.getpgid(pid) if by_group else None
        if group is not None and group != os.getpgrp():
            os.killpg(group, sig)
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Proc(NamedTuple):
    pid: int
    ppid: int
    pgrp: int
    zombie: bool


def processes() -> list[_Proc]:
    """Every process on the host (from /proc): pid, parent, process group, and whether a zombie."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            out.append(_Proc(int(name), int(fields[1]), int(fields[2]), fields[0] == b"Z"))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return out


def _reap_and_list(member) -> list[int]:
    """Reap the exited processes ``member`` picks that are our children; list its living ones."""
    me, alive = os.getpid(), []
    for p in processes():
        if not member(p):
            continue
        if not p.zombie:
            alive.append(p.pid)
        elif p.ppid == me:
            try:
                os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                pass
    return alive


def become_subreaper() -> bool:
    """Adopt our orphaned descendants (prctl PR_SET_CHILD_SUBREAPER): a process a target started
    and left behind, even one that left the target's process group (``setsid``), is re-parented
    to us instead of init when its parent exits, so ``end_adopted`` can end it with the run."""
    return _prctl is not None and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def child_pids() -> set[int]:
    """Our living children."""
    me = os.getpid()
    return {p.pid for p in processes() if p.ppid == me and not p.zombie}


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
